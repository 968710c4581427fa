//! Block files: the sealed chunks of many series for one stretch of time (normally one
//! [`BLOCK_SPAN_MS`] period), written once, fsynced and never changed; retention deletes them
//! whole. Opening a block reads only its footer and index; chunks are read on demand with
//! positional reads, so the history on disk costs the process no memory until a query needs it.
//!
//! Layout (integers little-endian, varints as in `codec.rs`):
//!
//! ```text
//! "DOBLOCK1" or "DOBLOCK2"                    8-byte magic ("DOBLOCK2": downsampled, below)
//! chunk data, crc32(chunk data)               for every chunk, series by series, oldest first
//! index                                       ("DOBLOCK2" only: uvarint resolution in ms, see
//!                                             `downsample.rs`), uvarint count and uvarints of the blocks this
//!                                             one was merged from, uvarint series count, then
//!                                             per series: labels,
//!                                             uvarint chunk count, per chunk: varint (mint −
//!                                             previous maxt, the first from the block's mint),
//!                                             uvarint (maxt − mint), uvarint data length
//! footer (52 bytes)                           index offset u64, index length u64, mint i64,
//!                                             maxt i64, samples u64, crc32(index) u32,
//!                                             crc32(the 44 bytes before) u32, "DOBE"
//! ```
//!
//! Damage stays where it is: each chunk carries its own checksum, checked when it is read, so a
//! flipped byte costs that chunk only (it is logged once and skipped); a damaged index or footer
//! makes the whole file unreadable, and opening moves it aside, as it does a damaged WAL segment.
//! Chunk offsets are not stored: chunks follow each other in index order.
//!
//! Writing goes to `<name>.tmp`, is fsynced, renamed and the directory fsynced, so a crash
//! leaves either no block or a whole one.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::chunk::Chunk;
use super::codec::{self, Reader};
use super::series::SeriesRef;
use super::wal::sync_dir;
use crate::labels::Labels;

/// The time one block covers: chunks are cut at multiples of it, and the head writes a block
/// for each period once it is [`PERSIST_GRACE_MS`] behind the newest sample. Prometheus' 2 h.
pub const BLOCK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// How long after a period ends its block is written: series scraped a little late, or a
/// backfill slightly behind the rest, still land in the period's own block.
pub const PERSIST_GRACE_MS: i64 = BLOCK_SPAN_MS / 2;

const PREFIX: &str = "block-";
const TMP_SUFFIX: &str = ".tmp";
const MAGIC: &[u8; 8] = b"DOBLOCK1";
/// The magic of a downsampled block: its index starts with the resolution.
const MAGIC_DOWNSAMPLED: &[u8; 8] = b"DOBLOCK2";
const FOOTER_MAGIC: &[u8; 4] = b"DOBE";
const FOOTER_LEN: usize = 52;
const CRC_LEN: usize = 4;

/// Start of the period `t` falls in.
pub fn period_start(t: i64) -> i64 {
    t.div_euclid(BLOCK_SPAN_MS) * BLOCK_SPAN_MS
}

/// End (exclusive) of the period `t` falls in.
pub fn period_end(t: i64) -> i64 {
    period_start(t).saturating_add(BLOCK_SPAN_MS)
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:010}"))
}

/// Block files in `dir` with their sequence numbers, oldest first; leftover temp files of a
/// write a crash interrupted are removed.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if rest.ends_with(TMP_SUFFIX) {
            // Never renamed: its data is still in the WAL and head snapshot that were kept.
            std::fs::remove_file(e.path())?;
            continue;
        }
        if let Ok(seq) = rest.parse::<u64>() {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Where one chunk sits in its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub mint: i64,
    pub maxt: i64,
    /// Byte offset of the chunk's data in the file (its checksum follows the data).
    pub off: u32,
    pub len: u32,
}

/// What a block holds, from its footer and index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockMeta {
    pub mint: i64,
    pub maxt: i64,
    pub samples: u64,
    pub chunks: u64,
    pub series: u64,
    /// Size of the file.
    pub bytes: u64,
    /// Encoded chunk data alone.
    pub chunk_data_bytes: u64,
    /// Per-chunk bookkeeping: each chunk's checksum and index entry.
    pub chunk_meta_bytes: u64,
    /// The window its series were downsampled to (`downsample.rs`); 0: raw samples.
    pub resolution_ms: i64,
}

/// A block's index as read from the file: each series' labels and chunks.
pub struct Parsed {
    pub meta: BlockMeta,
    /// Blocks this one was merged from.
    pub parents: Vec<u64>,
    pub series: Vec<(Labels, Vec<ChunkMeta>)>,
}

/// A chunk that could not be used: checksum mismatch or short read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDamage {
    pub off: u32,
    pub reason: String,
}

/// A loaded block: the open file, its metadata and, per series (by the database's ref), where
/// its chunks are.
pub struct Block {
    pub seq: u64,
    pub path: PathBuf,
    pub meta: BlockMeta,
    file: File,
    /// (series ref, first chunk in `chunks`, number of chunks), sorted by ref.
    series: Vec<(SeriesRef, u32, u32)>,
    chunks: Vec<ChunkMeta>,
    /// Offsets of chunks found damaged: each is logged once.
    damaged: Mutex<HashSet<u32>>,
}

impl Block {
    /// Builds the in-memory form of a block: its series by the database's refs, with their
    /// chunks.
    pub fn new(
        seq: u64,
        path: PathBuf,
        file: File,
        meta: BlockMeta,
        by_ref: impl IntoIterator<Item = (SeriesRef, Vec<ChunkMeta>)>,
    ) -> Block {
        let mut series = Vec::with_capacity(meta.series as usize);
        let mut chunks = Vec::with_capacity(meta.chunks as usize);
        for (r, cs) in by_ref {
            series.push((r, chunks.len() as u32, cs.len() as u32));
            chunks.extend(cs);
        }
        series.sort_unstable_by_key(|s| s.0);
        series.shrink_to_fit();
        chunks.shrink_to_fit();
        Block {
            seq,
            path,
            meta,
            file,
            series,
            chunks,
            damaged: Mutex::new(HashSet::new()),
        }
    }

    /// The chunks of series `r` in this block, oldest first (empty if it has none).
    pub fn chunks_of(&self, r: SeriesRef) -> &[ChunkMeta] {
        match self.series.binary_search_by_key(&r, |s| s.0) {
            Ok(i) => {
                let (_, first, n) = self.series[i];
                &self.chunks[first as usize..(first + n) as usize]
            }
            Err(_) => &[],
        }
    }

    /// Refs of the series this block holds.
    pub fn series_refs(&self) -> impl Iterator<Item = SeriesRef> + '_ {
        self.series.iter().map(|s| s.0)
    }

    /// Bytes this struct holds in memory (the per-series and per-chunk tables).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Block>()
            + self.series.capacity() * std::mem::size_of::<(SeriesRef, u32, u32)>()
            + self.chunks.capacity() * std::mem::size_of::<ChunkMeta>()
            + self.path.as_os_str().len()
    }

    /// Reads one chunk and checks its checksum.
    pub fn read_chunk(&self, c: &ChunkMeta) -> Result<Chunk, ChunkDamage> {
        let mut buf = vec![0u8; c.len as usize + CRC_LEN];
        let damage = |reason: String| ChunkDamage { off: c.off, reason };
        self.file
            .read_exact_at(&mut buf, c.off as u64)
            .map_err(|e| damage(format!("read failed: {e}")))?;
        let (data, crc) = buf.split_at(c.len as usize);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(data) != want {
            return Err(damage("checksum mismatch".into()));
        }
        buf.truncate(c.len as usize);
        Ok(Chunk {
            mint: c.mint,
            maxt: c.maxt,
            data: buf.into_boxed_slice(),
        })
    }

    /// Records a damaged chunk; true the first time it is seen (so it is logged once).
    pub fn note_damage(&self, off: u32) -> bool {
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(off)
    }
}

/// Writes a block atomically under `path(dir, seq)`; returns what a reader would parse.
/// `series`: each series' labels and chunks (oldest first), taken one at a time, so a merge
/// never holds more than one series' chunks. `parents`: the blocks this one replaces (a
/// merge), which opening deletes if a crash left them behind. `resolution_ms`: see
/// [`BlockMeta::resolution_ms`].
pub fn write(
    dir: &Path,
    seq: u64,
    parents: &[u64],
    resolution_ms: i64,
    series: impl IntoIterator<Item = (Labels, Vec<Chunk>)>,
) -> std::io::Result<Parsed> {
    let target = path(dir, seq);
    let mut tmp_name = target.as_os_str().to_owned();
    tmp_name.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp_name);
    let written = write_file(&tmp, parents, resolution_ms, series).and_then(|parsed| {
        std::fs::rename(&tmp, &target)?;
        sync_dir(dir)?;
        Ok(parsed)
    });
    if written.is_err() {
        // A partial file would only take space the next try needs.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn too_big() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "block would exceed 4 GiB of chunk data",
    )
}

fn write_file(
    tmp: &Path,
    parents: &[u64],
    resolution_ms: i64,
    series: impl IntoIterator<Item = (Labels, Vec<Chunk>)>,
) -> std::io::Result<Parsed> {
    let mut w = BufWriter::new(File::create(tmp)?);
    w.write_all(if resolution_ms > 0 {
        MAGIC_DOWNSAMPLED
    } else {
        MAGIC
    })?;
    let mut off = MAGIC.len() as u64;
    let mut meta = BlockMeta {
        mint: i64::MAX,
        maxt: i64::MIN,
        resolution_ms: resolution_ms.max(0),
        ..BlockMeta::default()
    };
    let mut parsed_series = Vec::new();
    for (labels, chunks) in series {
        let mut metas = Vec::with_capacity(chunks.len());
        for c in &chunks {
            let len = u32::try_from(c.data.len()).map_err(|_| too_big())?;
            metas.push(ChunkMeta {
                mint: c.mint,
                maxt: c.maxt,
                off: u32::try_from(off).map_err(|_| too_big())?,
                len,
            });
            w.write_all(&c.data)?;
            w.write_all(&crc32fast::hash(&c.data).to_le_bytes())?;
            off += (c.data.len() + CRC_LEN) as u64;
            meta.mint = meta.mint.min(c.mint);
            meta.maxt = meta.maxt.max(c.maxt);
            meta.samples += c.count() as u64;
            meta.chunks += 1;
            meta.chunk_data_bytes += c.data.len() as u64;
        }
        parsed_series.push((labels, metas));
    }
    meta.series = parsed_series.len() as u64;
    let mut index = Vec::new();
    if resolution_ms > 0 {
        codec::put_uvarint(&mut index, resolution_ms as u64);
    }
    codec::put_uvarint(&mut index, parents.len() as u64);
    for p in parents {
        codec::put_uvarint(&mut index, *p);
    }
    codec::put_uvarint(&mut index, parsed_series.len() as u64);
    for (labels, metas) in &parsed_series {
        codec::put_labels(&mut index, labels);
        codec::put_uvarint(&mut index, metas.len() as u64);
        let mut prev = meta.mint;
        for c in metas {
            let before = index.len();
            codec::put_varint(&mut index, c.mint.wrapping_sub(prev));
            codec::put_uvarint(&mut index, c.maxt.wrapping_sub(c.mint) as u64);
            codec::put_uvarint(&mut index, c.len as u64);
            meta.chunk_meta_bytes += (index.len() - before + CRC_LEN) as u64;
            prev = c.maxt;
        }
    }
    w.write_all(&index)?;
    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.extend_from_slice(&off.to_le_bytes());
    footer.extend_from_slice(&(index.len() as u64).to_le_bytes());
    footer.extend_from_slice(&meta.mint.to_le_bytes());
    footer.extend_from_slice(&meta.maxt.to_le_bytes());
    footer.extend_from_slice(&meta.samples.to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    let crc = crc32fast::hash(&footer);
    footer.extend_from_slice(&crc.to_le_bytes());
    footer.extend_from_slice(FOOTER_MAGIC);
    w.write_all(&footer)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    meta.bytes = off + index.len() as u64 + FOOTER_LEN as u64;
    Ok(Parsed {
        meta,
        parents: parents.to_vec(),
        series: parsed_series,
    })
}

/// Why a block file cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDamage {
    pub offset: u64,
    pub reason: String,
}

/// Opens a block file and reads its footer and index (not its chunks).
pub fn open(path: &Path) -> std::io::Result<(File, Result<Parsed, FileDamage>)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let parsed = read_index(&file, size);
    Ok((file, parsed))
}

fn read_index(file: &File, size: u64) -> Result<Parsed, FileDamage> {
    let bad = |offset: u64, reason: &str| FileDamage {
        offset,
        reason: reason.to_string(),
    };
    let min = (MAGIC.len() + FOOTER_LEN) as u64;
    if size < min {
        return Err(bad(0, "file too short for a block"));
    }
    let footer_at = size - FOOTER_LEN as u64;
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut footer, footer_at)
        .map_err(|e| bad(footer_at, &format!("reading the footer: {e}")))?;
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&footer[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let u32_at =
        |i: usize| u32::from_le_bytes([footer[i], footer[i + 1], footer[i + 2], footer[i + 3]]);
    if &footer[48..52] != FOOTER_MAGIC {
        return Err(bad(
            footer_at,
            "no block footer (not a block, or cut short)",
        ));
    }
    if crc32fast::hash(&footer[..44]) != u32_at(44) {
        return Err(bad(footer_at, "footer checksum mismatch"));
    }
    let (index_off, index_len) = (u64_at(0), u64_at(8));
    if index_off < MAGIC.len() as u64 || index_off.checked_add(index_len) != Some(footer_at) {
        return Err(bad(footer_at, "index bounds do not fit the file"));
    }
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0)
        .map_err(|e| bad(0, &format!("reading the header: {e}")))?;
    let downsampled = match &magic {
        m if m == MAGIC => false,
        m if m == MAGIC_DOWNSAMPLED => true,
        _ => return Err(bad(0, "not a depin-orcha block (magic)")),
    };
    let mut index = vec![0u8; index_len as usize];
    file.read_exact_at(&mut index, index_off)
        .map_err(|e| bad(index_off, &format!("reading the index: {e}")))?;
    if crc32fast::hash(&index) != u32_at(40) {
        return Err(bad(index_off, "index checksum mismatch"));
    }
    let mut meta = BlockMeta {
        mint: u64_at(16) as i64,
        maxt: u64_at(24) as i64,
        samples: u64_at(32),
        bytes: size,
        ..BlockMeta::default()
    };
    let (parents, series) = parse_index(&index, &mut meta, index_off, downsampled)
        .map_err(|e| bad(index_off + e.at as u64, e.what))?;
    Ok(Parsed {
        meta,
        parents,
        series,
    })
}

type IndexEntries = (Vec<u64>, Vec<(Labels, Vec<ChunkMeta>)>);

fn parse_index(
    index: &[u8],
    meta: &mut BlockMeta,
    index_off: u64,
    downsampled: bool,
) -> Result<IndexEntries, codec::Malformed> {
    let mut r = Reader::new(index);
    let malformed = |what| codec::Malformed { at: 0, what };
    if downsampled {
        meta.resolution_ms = i64::try_from(r.uvarint()?)
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| malformed("resolution out of range"))?;
    }
    let np = r.uvarint()? as usize;
    let mut parents = Vec::with_capacity(np.min(index.len()));
    for _ in 0..np {
        parents.push(r.uvarint()?);
    }
    let n = r.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(index.len()));
    let mut off = MAGIC.len() as u64;
    for _ in 0..n {
        let labels = r.labels()?;
        let k = r.uvarint()? as usize;
        let mut metas = Vec::with_capacity(k.min(index.len()));
        let mut prev = meta.mint;
        for _ in 0..k {
            let before = r.position();
            let mint = prev.wrapping_add(r.varint()?);
            let maxt = mint.wrapping_add(r.uvarint()? as i64);
            let len = r.uvarint()?;
            let end = off + len + CRC_LEN as u64;
            if end > index_off || maxt < mint {
                return Err(malformed("chunk entry out of bounds"));
            }
            metas.push(ChunkMeta {
                mint,
                maxt,
                off: off as u32,
                len: len as u32,
            });
            meta.chunk_data_bytes += len;
            meta.chunk_meta_bytes += (r.position() - before + CRC_LEN) as u64;
            off = end;
            prev = maxt;
        }
        meta.chunks += k as u64;
        out.push((labels, metas));
    }
    meta.series = n as u64;
    Ok((parents, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::Sample;

    fn chunk(t0: i64, n: i64, v: f64) -> Chunk {
        let s: Vec<Sample> = (0..n)
            .map(|i| Sample {
                t: t0 + i * 5000,
                v: v + i as f64,
            })
            .collect();
        Chunk::encode(&s)
    }

    fn sample_block(dir: &Path) -> (Labels, Labels, Parsed) {
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b"), ("x", "y")]);
        let parsed = write(
            dir,
            7,
            &[3, 4],
            0,
            [
                (a.clone(), vec![chunk(0, 100, 1.0), chunk(600_000, 50, 2.0)]),
                (b.clone(), vec![chunk(5_000, 200, 3.0)]),
            ],
        )
        .unwrap();
        (a, b, parsed)
    }

    #[test]
    fn a_block_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, written) = sample_block(dir.path());
        assert_eq!(list(dir.path()).unwrap(), vec![(7, path(dir.path(), 7))]);
        let (file, parsed) = open(&path(dir.path(), 7)).unwrap();
        let parsed = parsed.unwrap();
        assert_eq!(parsed.meta, written.meta);
        assert_eq!(parsed.meta.samples, 350);
        assert_eq!(
            (parsed.meta.mint, parsed.meta.maxt),
            (0, 5_000 + 199 * 5000)
        );
        assert_eq!(parsed.series[0].0, a);
        assert_eq!(parsed.series[1].0, b);
        assert_eq!(parsed.series, written.series);
        assert_eq!(parsed.parents, vec![3, 4]);
        let meta = parsed.meta;
        let by_ref = [10, 3]
            .into_iter()
            .zip(parsed.series.into_iter().map(|s| s.1));
        let block = Block::new(7, path(dir.path(), 7), file, meta, by_ref);
        assert_eq!(block.chunks_of(10).len(), 2);
        assert_eq!(block.chunks_of(4).len(), 0);
        let c = block.read_chunk(&block.chunks_of(3)[0]).unwrap();
        assert_eq!(
            c.samples().unwrap(),
            chunk(5_000, 200, 3.0).samples().unwrap()
        );
        assert_eq!(
            block.meta.bytes,
            std::fs::metadata(path(dir.path(), 7)).unwrap().len()
        );
    }

    #[test]
    fn a_downsampled_block_keeps_its_resolution_and_a_raw_one_its_old_format() {
        let dir = tempfile::tempdir().unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        let written = write(dir.path(), 9, &[2], 300_000, [(a, vec![chunk(0, 10, 1.0)])]).unwrap();
        assert_eq!(written.meta.resolution_ms, 300_000);
        let bytes = std::fs::read(path(dir.path(), 9)).unwrap();
        assert_eq!(&bytes[..8], MAGIC_DOWNSAMPLED);
        let parsed = open(&path(dir.path(), 9)).unwrap().1.unwrap();
        assert_eq!(parsed.meta, written.meta);
        assert_eq!(parsed.parents, vec![2]);
        assert_eq!(parsed.series, written.series);
        let (_, _, raw) = sample_block(dir.path());
        assert_eq!(raw.meta.resolution_ms, 0);
        assert_eq!(&std::fs::read(path(dir.path(), 7)).unwrap()[..8], MAGIC);
    }

    #[test]
    fn a_flipped_chunk_byte_costs_that_chunk_and_an_index_byte_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, written) = sample_block(dir.path());
        let p = path(dir.path(), 7);
        let clean = std::fs::read(&p).unwrap();
        // In the second chunk of `a`: that chunk fails, the others read.
        let mut bytes = clean.clone();
        let hit = written.series[0].1[1];
        bytes[hit.off as usize + 3] ^= 0x10;
        std::fs::write(&p, &bytes).unwrap();
        let (file, parsed) = open(&p).unwrap();
        let parsed = parsed.unwrap();
        let meta = parsed.meta;
        let by_ref = [1, 2]
            .into_iter()
            .zip(parsed.series.into_iter().map(|s| s.1));
        let block = Block::new(7, p.clone(), file, meta, by_ref);
        assert_eq!(
            block.read_chunk(&block.chunks_of(1)[1]).unwrap_err().reason,
            "checksum mismatch"
        );
        assert!(block.read_chunk(&block.chunks_of(1)[0]).is_ok());
        assert!(block.read_chunk(&block.chunks_of(2)[0]).is_ok());
        // Every byte of the index and footer: the file is refused, never misread.
        let index_off = written.meta.chunk_data_bytes as usize + 3 * CRC_LEN + MAGIC.len();
        for i in index_off..clean.len() {
            let mut bytes = clean.clone();
            bytes[i] ^= 0x01;
            std::fs::write(&p, &bytes).unwrap();
            assert!(open(&p).unwrap().1.is_err(), "byte {i}");
        }
        // Cut short anywhere: refused.
        for cut in [0, 5, clean.len() / 2, clean.len() - 1] {
            std::fs::write(&p, &clean[..cut]).unwrap();
            assert!(open(&p).unwrap().1.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_failed_write_leaves_no_file_and_leftover_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // The temp name is taken by a directory: creating the file fails.
        let mut tmp = path(dir.path(), 3).into_os_string();
        tmp.push(TMP_SUFFIX);
        std::fs::create_dir(&tmp).unwrap();
        let a = Labels::from_pairs([("__name__", "a")]);
        assert!(write(dir.path(), 3, &[], 0, [(a, vec![chunk(0, 10, 1.0)])]).is_err());
        assert!(!path(dir.path(), 3).exists());
        std::fs::remove_dir(&tmp).unwrap();
        std::fs::write(&tmp, b"half a block").unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        assert!(!PathBuf::from(&tmp).exists(), "the leftover is removed");
    }

    #[test]
    fn periods_are_aligned_also_before_1970() {
        assert_eq!(period_start(0), 0);
        assert_eq!(period_start(BLOCK_SPAN_MS - 1), 0);
        assert_eq!(period_end(BLOCK_SPAN_MS), 2 * BLOCK_SPAN_MS);
        assert_eq!(period_start(-1), -BLOCK_SPAN_MS);
    }
}

//! The head snapshot: the series of the head and what of them is not in a block file yet, in
//! one file written to `snapshot.tmp`, fsynced and renamed to `snapshot`, so a crash leaves
//! either the old or the new one. Sealed chunks are written as they are held in memory
//! (already compressed); open heads as raw samples. Block files hold the rest of the history,
//! so the snapshot stays as small as a few hours of samples.
//!
//! The file is a sequence of framed records (see `codec.rs`): a header (which WAL segments the
//! snapshot covers, the next series ref), one record per series, and an end record. A damaged
//! record costs only its series: loading skips to the next record that checks out.
//!
//! A snapshot that fails is counted and logged by the caller (`persist.rs`); its partial temp
//! file is removed here, so a full disk is not made fuller by the attempt.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::chunk::{self, Chunk};
use super::codec::{self, Damage, Malformed, Reader};
use super::series::SeriesRef;
use super::wal::sync_dir;
use super::Sample;
use crate::labels::Labels;

pub const FILE_NAME: &str = "snapshot";
pub const TMP_NAME: &str = "snapshot.tmp";
const MAGIC: &[u8] = b"DEPIN-ORCHA-SNAPSHOT";
const VERSION: u8 = 1;
const REC_HEADER: u8 = 1;
const REC_SERIES: u8 = 2;
const REC_END: u8 = 3;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Every WAL segment with this number or lower is contained in the snapshot.
    pub wal_seq: u64,
    pub next_ref: SeriesRef,
}

pub struct SnapshotSeries {
    pub sref: SeriesRef,
    pub labels: Labels,
    pub chunks: Vec<Chunk>,
    pub head: Vec<Sample>,
}

/// Writes a snapshot atomically; returns its size in bytes. On failure the temp file is
/// removed and the error names the file it happened on; the previous snapshot stays in place.
pub fn write(
    dir: &Path,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> Result<u64, (PathBuf, std::io::Error)> {
    let tmp = dir.join(TMP_NAME);
    let r = write_tmp_and_rename(dir, &tmp, header, series);
    if r.is_err() {
        // Nothing to do when the temp file was never created or is already renamed.
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The steps of [`write`]; an error names the file it happened on.
fn write_tmp_and_rename(
    dir: &Path,
    tmp: &Path,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> Result<u64, (PathBuf, std::io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut w = BufWriter::new(File::create(tmp).map_err(at(tmp))?);
    let size = write_records(&mut w, header, series).map_err(at(tmp))?;
    let f = w
        .into_inner()
        .map_err(|e| (tmp.to_path_buf(), e.into_error()))?;
    f.sync_all().map_err(at(tmp))?;
    drop(f);
    std::fs::rename(tmp, path(dir)).map_err(at(&path(dir)))?;
    sync_dir(dir).map_err(at(dir))?;
    Ok(size)
}

fn write_records(
    w: &mut BufWriter<File>,
    header: Header,
    series: impl IntoIterator<Item = SnapshotSeries>,
) -> std::io::Result<u64> {
    let mut size = 0u64;
    let mut put = |w: &mut BufWriter<File>, payload: &[u8]| -> std::io::Result<()> {
        let rec = codec::frame(payload);
        size += rec.len() as u64;
        w.write_all(&rec)
    };

    let mut b = vec![REC_HEADER];
    codec::put_bytes(&mut b, MAGIC);
    b.push(VERSION);
    codec::put_uvarint(&mut b, header.wal_seq);
    codec::put_uvarint(&mut b, header.next_ref);
    put(w, &b)?;

    let mut count = 0u64;
    for s in series {
        b.clear();
        b.push(REC_SERIES);
        codec::put_uvarint(&mut b, s.sref);
        codec::put_labels(&mut b, &s.labels);
        codec::put_uvarint(&mut b, s.chunks.len() as u64);
        for c in &s.chunks {
            codec::put_varint(&mut b, c.mint);
            codec::put_bytes(&mut b, &c.data);
        }
        codec::put_uvarint(&mut b, s.head.len() as u64);
        let mut prev = 0i64;
        for x in &s.head {
            codec::put_varint(&mut b, x.t.wrapping_sub(prev));
            b.extend_from_slice(&x.v.to_bits().to_le_bytes());
            prev = x.t;
        }
        put(w, &b)?;
        count += 1;
    }
    b.clear();
    b.push(REC_END);
    codec::put_uvarint(&mut b, count);
    put(w, &b)?;

    Ok(size)
}

#[derive(Default)]
pub struct Loaded {
    pub header: Option<Header>,
    pub series: Vec<SnapshotSeries>,
    /// Stretches that could not be used; the records around them are loaded.
    pub damage: Vec<Damage>,
}

/// Reads a snapshot file: every record that checks out is returned, damaged ones are listed.
pub fn load(bytes: &[u8]) -> Loaded {
    let (frames, mut damage) = codec::read_frames_resync(bytes);
    let mut out = Loaded::default();
    let mut end: Option<u64> = None;
    for (offset, f) in frames {
        match parse(f, offset == 0) {
            Ok(Rec::Header(h)) => out.header = Some(h),
            Ok(Rec::Series(s)) => out.series.push(s),
            Ok(Rec::End(n)) => {
                end = Some(n);
                if damage.is_empty() && n != out.series.len() as u64 {
                    damage.push(Damage {
                        offset,
                        reason: "series count in end record does not match".into(),
                    });
                }
                break;
            }
            Err(reason) => damage.push(Damage { offset, reason }),
        }
    }
    if end.is_none() && damage.is_empty() {
        damage.push(Damage {
            offset: bytes.len() as u64,
            reason: "snapshot ends without its end record".into(),
        });
    }
    out.damage = damage;
    out
}

enum Rec {
    Header(Header),
    Series(SnapshotSeries),
    End(u64),
}

fn parse(f: &[u8], first: bool) -> Result<Rec, String> {
    let mut r = Reader::new(f);
    let m = |e: Malformed| e.to_string();
    let kind = r.u8().map_err(m)?;
    if first != (kind == REC_HEADER) {
        return Err("records out of place (the header is not first)".into());
    }
    match kind {
        REC_HEADER => {
            if r.bytes().map_err(m)? != MAGIC {
                return Err("not a depin-orcha snapshot".into());
            }
            let v = r.u8().map_err(m)?;
            if v != VERSION {
                return Err(format!("snapshot version {v} is unknown"));
            }
            Ok(Rec::Header(Header {
                wal_seq: r.uvarint().map_err(m)?,
                next_ref: r.uvarint().map_err(m)?,
            }))
        }
        REC_SERIES => {
            let sref = r.uvarint().map_err(m)?;
            let labels = r.labels().map_err(m)?;
            let n = r.uvarint().map_err(m)? as usize;
            let mut chunks = Vec::with_capacity(n.min(f.len()));
            for _ in 0..n {
                let mint = r.varint().map_err(m)?;
                let data = r.bytes().map_err(m)?.to_vec();
                chunks.push(
                    Chunk::from_data(mint, data).map_err(|e: chunk::ChunkError| e.to_string())?,
                );
            }
            let n = r.uvarint().map_err(m)? as usize;
            let mut head = Vec::with_capacity(n.min(f.len()));
            let mut t = 0i64;
            for _ in 0..n {
                t = t.wrapping_add(r.varint().map_err(m)?);
                head.push(Sample {
                    t,
                    v: f64::from_bits(r.u64_le().map_err(m)?),
                });
            }
            Ok(Rec::Series(SnapshotSeries {
                sref,
                labels,
                chunks,
                head,
            }))
        }
        REC_END => Ok(Rec::End(r.uvarint().map_err(m)?)),
        _ => Err(format!("unknown record type {kind}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_series(v: f64) -> Vec<SnapshotSeries> {
        vec![SnapshotSeries {
            sref: 1,
            labels: Labels::from_pairs([("__name__", "up")]),
            chunks: vec![],
            head: vec![Sample { t: 1000, v }],
        }]
    }

    fn header() -> Header {
        Header {
            wal_seq: 3,
            next_ref: 2,
        }
    }

    fn held_value(dir: &Path) -> f64 {
        let l = load(&std::fs::read(path(dir)).unwrap());
        assert!(l.damage.is_empty(), "{:?}", l.damage);
        l.series[0].head[0].v
    }

    /// A full disk while the snapshot is written (`snapshot.tmp` leads to `/dev/full`, whose
    /// writes fail with ENOSPC): the old snapshot stays, no temp file is left, the error names
    /// the temp file.
    #[test]
    fn a_snapshot_that_cannot_be_written_leaves_the_old_one_and_no_temp_file() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system to make writes fail");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), header(), one_series(1.0)).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(TMP_NAME)).unwrap();
        let (at, e) = write(dir.path(), header(), one_series(2.0)).unwrap_err();
        assert!(e.to_string().contains("space"), "{e}");
        assert_eq!(at, dir.path().join(TMP_NAME));
        assert!(
            !dir.path().join(TMP_NAME).exists(),
            "the temp file is removed"
        );
        assert_eq!(held_value(dir.path()), 1.0, "the old snapshot is untouched");
        // The disk frees up: the next snapshot is written.
        write(dir.path(), header(), one_series(3.0)).unwrap();
        assert_eq!(held_value(dir.path()), 3.0);
    }

    #[test]
    fn a_snapshot_whose_temp_file_cannot_be_created_fails_without_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TMP_NAME)).unwrap();
        assert!(write(dir.path(), header(), one_series(1.0)).is_err());
        assert!(!path(dir.path()).exists());
    }

    #[test]
    fn a_flipped_byte_costs_only_the_series_it_hits() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<SnapshotSeries> = (0..20)
            .map(|i| SnapshotSeries {
                sref: i,
                labels: Labels::from_pairs([("__name__", format!("s{i}"))]),
                chunks: vec![],
                head: (0..30i64)
                    .map(|k| Sample {
                        t: k * 1000,
                        v: (i as i64 * k) as f64,
                    })
                    .collect(),
            })
            .collect();
        write(dir.path(), header(), many).unwrap();
        let clean = std::fs::read(path(dir.path())).unwrap();
        // Every byte of the series records, one at a time: at most one series is lost.
        let first_series = load(&clean);
        assert_eq!(first_series.series.len(), 20);
        for at in (40..clean.len() - 20).step_by(7) {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x21;
            let l = load(&bytes);
            assert!(
                l.series.len() >= 19,
                "byte {at}: {} series left",
                l.series.len()
            );
            assert!(!l.damage.is_empty(), "byte {at}: damage not reported");
            assert!(l.header.is_some());
        }
    }
}

//! Opening a persistent database: read the block files' indexes (not their chunks), load the
//! head snapshot, replay the WAL segments written after it, read the head's range back from
//! the newest blocks, and carry on logging in a fresh segment. What is already in a block file
//! is skipped in the snapshot and the WAL (a crash between writing a block and the next
//! snapshot leaves it in both).
//!
//! A damaged block file (index or footer) is unusable as a whole; a damaged snapshot or WAL
//! record costs that record, and the records after it are read. Damaged files are renamed to
//! `<name>.corrupt-<unix ms>`, logged with `tracing::warn!` (file, byte offset, reason) and
//! listed in the [`OpenReport`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{self, Block};
use super::codec::{self, Damage};
use super::series::{admit, Admit, MemSeries, SeriesRef};
use super::wal::{self, BatchRecord, WalWriter};
use super::{io_err, lock, persist, snapshot, DamagedFile, Db, Error, OpenReport, Sample};
use crate::labels::Labels;

/// A block file read at open, not yet tied to the series set: its series by their place in
/// [`Found::labels`].
struct FoundBlock {
    seq: u64,
    parents: Vec<u64>,
    path: PathBuf,
    file: File,
    meta: block::BlockMeta,
    series: Vec<(usize, Vec<block::ChunkMeta>)>,
}

/// The block files read at open. Each distinct label set is kept once, however many blocks
/// hold the series (15 days are 180 blocks of the same few hundred series), so opening needs
/// memory for the series, not for the history.
#[derive(Default)]
struct Found {
    blocks: Vec<FoundBlock>,
    labels: Vec<Labels>,
    ids: HashMap<Labels, usize>,
    /// Per label set: the newest sample time in the files.
    maxt: Vec<i64>,
}

impl Found {
    fn add(&mut self, seq: u64, path: PathBuf, file: File, parsed: block::Parsed) {
        let mut series = Vec::with_capacity(parsed.series.len());
        for (labels, chunks) in parsed.series {
            let id = match self.ids.get(&labels) {
                Some(&id) => id,
                None => {
                    self.labels.push(labels.clone());
                    self.maxt.push(i64::MIN);
                    self.ids.insert(labels, self.labels.len() - 1);
                    self.labels.len() - 1
                }
            };
            let maxt = chunks.iter().map(|c| c.maxt).max().unwrap_or(i64::MIN);
            self.maxt[id] = self.maxt[id].max(maxt);
            series.push((id, chunks));
        }
        self.blocks.push(FoundBlock {
            seq,
            parents: parsed.parents,
            path,
            file,
            meta: parsed.meta,
            series,
        });
    }

    fn file_maxt(&self, l: &Labels) -> i64 {
        self.ids.get(l).map_or(i64::MIN, |&id| self.maxt[id])
    }
}

impl Db {
    pub(super) fn recover(&self, dir: &Path) -> Result<OpenReport, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut report = OpenReport::default();

        let found = read_blocks(dir, &mut report)?;
        // Newest time in the files per series: what the snapshot and the WAL hold up to it is
        // already there.
        let file_maxt = |l: &Labels| found.file_maxt(l);

        let covered = self.load_snapshot(dir, &file_maxt, &mut report)?;
        let (closed, newest_seq) = self.replay_wal(dir, covered, &file_maxt, &mut report)?;

        // Everything in memory now comes from the snapshot or the WAL, so new records may refer
        // to these series by ref alone.
        for s in self.head_read().all() {
            s.set_in_wal();
        }
        self.register_found(found);
        self.settle_after_open();
        self.load_head_range();

        let next_seq = newest_seq.max(covered) + 1;
        let mut w = WalWriter::open(dir, next_seq, closed)
            .map_err(io_err(&wal::segment_path(dir, next_seq)))?;
        w.sync = self.opts.sync_wal;
        self.counters
            .wal_bytes
            .store(w.total_bytes(), Ordering::Relaxed);
        lock(&self.commit).wal = Some(w);
        self.persisted_mark.store(
            persist::mark(self.newest.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(report)
    }

    /// Loads the head snapshot; returns the last WAL segment it covers.
    fn load_snapshot(
        &self,
        dir: &Path,
        file_maxt: &dyn Fn(&Labels) -> i64,
        report: &mut OpenReport,
    ) -> Result<u64, Error> {
        let snap = snapshot::path(dir);
        let bytes = match std::fs::read(&snap) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(Error::Io {
                    path: snap,
                    source: e,
                })
            }
        };
        let loaded = snapshot::load(&bytes);
        let mut covered = 0u64;
        if let Some(h) = loaded.header {
            covered = h.wal_seq;
            self.head_write().set_next_ref(h.next_ref);
        }
        report.snapshot_series = loaded.series.len();
        let mut head = self.head_write();
        for s in loaded.series {
            let fm = file_maxt(&s.labels);
            let ms = head.insert(s.sref, s.labels);
            let mut d = ms.lock();
            d.file_maxt = fm;
            let chunks: Vec<_> = s.chunks.into_iter().filter(|c| c.maxt > fm).collect();
            let head_samples: Vec<Sample> = s.head.into_iter().filter(|x| x.t > fm).collect();
            d.last = head_samples.last().copied().or_else(|| {
                chunks
                    .last()
                    .and_then(|c| c.samples().ok())
                    .and_then(|v| v.last().copied())
            });
            for c in chunks {
                d.push_chunk(c);
            }
            d.set_head(&head_samples);
        }
        drop(head);
        if !loaded.damage.is_empty() {
            report.damaged.extend(move_aside(&snap, loaded.damage));
            // Segments the damaged snapshot claimed to cover (left by a crash before their
            // deletion) are now the better source: replay whatever is there.
            covered = 0;
        }
        Ok(covered)
    }

    /// Replays the WAL segments after `covered`; returns the segments kept, with their sizes,
    /// and the newest segment number seen.
    fn replay_wal(
        &self,
        dir: &Path,
        covered: u64,
        file_maxt: &dyn Fn(&Labels) -> i64,
        report: &mut OpenReport,
    ) -> Result<(Vec<(u64, u64)>, u64), Error> {
        let mut kept = Vec::new();
        let mut newest = 0;
        let mut by_wal_ref: HashMap<SeriesRef, Arc<MemSeries>> = HashMap::new();
        for (seq, path) in wal::list_segments(dir).map_err(io_err(dir))? {
            newest = newest.max(seq);
            if seq <= covered {
                // Left over from a crash between writing a snapshot and deleting what it covers.
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            report.wal_segments += 1;
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let (frames, mut damage) = codec::read_frames_resync(&bytes);
            for (offset, f) in frames {
                match BatchRecord::decode(f) {
                    Ok(rec) => {
                        report.wal_records += 1;
                        self.replay(rec, &mut by_wal_ref, file_maxt, report);
                    }
                    Err(e) => damage.push(Damage {
                        offset,
                        reason: e.to_string(),
                    }),
                }
            }
            if damage.is_empty() {
                kept.push((seq, bytes.len() as u64));
            } else {
                report.damaged.extend(move_aside(&path, damage));
            }
        }
        Ok((kept, newest))
    }

    fn replay(
        &self,
        rec: BatchRecord,
        by_wal_ref: &mut HashMap<SeriesRef, Arc<MemSeries>>,
        file_maxt: &dyn Fn(&Labels) -> i64,
        report: &mut OpenReport,
    ) {
        if !rec.series.is_empty() {
            let mut head = self.head_write();
            for (r, labels) in rec.series {
                let known = head.get(&labels).is_some();
                let fm = file_maxt(&labels);
                let s = head.insert(r, labels);
                if !known {
                    s.lock().file_maxt = fm;
                }
                by_wal_ref.insert(r, s);
            }
        }
        for (r, t, v) in rec.samples {
            report.wal_samples += 1;
            let s = match by_wal_ref.get(&r) {
                Some(s) => s.clone(),
                None => match self.head_read().get_ref(r) {
                    Some(s) => s.clone(),
                    None => {
                        report.wal_samples_skipped += 1;
                        continue;
                    }
                },
            };
            let mut d = s.lock();
            if t <= d.file_maxt {
                continue; // already in a block file
            }
            match admit(d.last_key(), t, v) {
                Admit::Append => d.push(Sample { t, v }),
                Admit::Duplicate => {}
                _ => report.wal_samples_skipped += 1,
            }
        }
    }

    /// Ties the blocks read at open to the series set (series only in files get a ref now).
    fn register_found(&self, found: Found) {
        let series: Vec<Arc<MemSeries>> = {
            let mut head = self.head_write();
            found
                .labels
                .iter()
                .zip(&found.maxt)
                .map(|(labels, &maxt)| {
                    let s = head.get_or_create(labels);
                    let mut d = s.lock();
                    d.file_maxt = d.file_maxt.max(maxt);
                    drop(d);
                    s
                })
                .collect()
        };
        let mut blocks = Vec::with_capacity(found.blocks.len());
        let mut next_seq = 1;
        for f in found.blocks {
            next_seq = next_seq.max(f.seq + 1);
            let by_ref: Vec<(SeriesRef, Vec<block::ChunkMeta>)> = f
                .series
                .into_iter()
                .map(|(id, chunks)| {
                    series[id].blocks.fetch_add(1, Ordering::Relaxed);
                    (series[id].sref, chunks)
                })
                .collect();
            blocks.push(Arc::new(Block::new(f.seq, f.path, f.file, f.meta, by_ref)));
        }
        blocks.sort_by_key(|b| (b.meta.mint, b.seq));
        self.next_block_seq.store(next_seq, Ordering::Relaxed);
        *self.blocks_write() = blocks;
    }

    /// After loading: each series' newest sample (from a file when memory has none, so that
    /// appends keep their order), the newest time, and the running counters.
    fn settle_after_open(&self) {
        let blocks = self.blocks_read().clone();
        for s in self.head_read().all() {
            let mut d = s.lock();
            if d.file_maxt > d.last.map_or(i64::MIN, |l| l.t) {
                d.last = last_in_files(&blocks, s.sref, d.file_maxt);
            }
            if let Some(l) = d.last {
                self.newest.fetch_max(l.t, Ordering::Relaxed);
            }
            self.counters.account(d.footprint());
            self.counters
                .mem_bytes
                .fetch_add(s.index_bytes() as i64, Ordering::Relaxed);
        }
    }
}

/// The sample at `maxt` of series `r`, read from the block that holds it.
fn last_in_files(blocks: &[Arc<Block>], r: SeriesRef, maxt: i64) -> Option<Sample> {
    let (b, c) = blocks
        .iter()
        .filter(|b| b.meta.maxt >= maxt)
        .find_map(|b| {
            b.chunks_of(r)
                .iter()
                .find(|c| c.maxt == maxt)
                .map(|c| (b, c))
        })?;
    let samples = b.read_chunk(c).ok()?.samples().ok()?;
    samples.last().copied().or(Some(Sample {
        t: maxt,
        v: f64::NAN,
    }))
}

/// Reads every block file's index; damaged ones are moved aside and reported.
fn read_blocks(dir: &Path, report: &mut OpenReport) -> Result<Found, Error> {
    let mut found = Found::default();
    for (seq, path) in block::list(dir).map_err(io_err(dir))? {
        let (file, parsed) = block::open(&path).map_err(io_err(&path))?;
        match parsed {
            Ok(parsed) => found.add(seq, path, file, parsed),
            Err(d) => {
                drop(file);
                report.damaged.extend(move_aside(
                    &path,
                    vec![Damage {
                        offset: d.offset,
                        reason: d.reason,
                    }],
                ));
            }
        }
    }
    // A crash between writing a merged block and deleting the blocks it replaces leaves both:
    // the merged one holds all of theirs.
    let superseded: std::collections::BTreeSet<u64> = found
        .blocks
        .iter()
        .flat_map(|b| b.parents.iter().copied())
        .collect();
    found.blocks.retain(|b| {
        if !superseded.contains(&b.seq) {
            return true;
        }
        tracing::info!(file = %b.path.display(), "deleting a tsdb block already merged into another");
        if let Err(e) = std::fs::remove_file(&b.path) {
            tracing::warn!(file = %b.path.display(), error = %e, "could not delete a merged tsdb block; it is not read");
        }
        false
    });
    report.blocks = found.blocks.len();
    Ok(found)
}

fn move_aside(path: &Path, damage: Vec<Damage>) -> Vec<DamagedFile> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |x| x.as_millis());
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".corrupt-{ms}"));
    let target: PathBuf = path.with_file_name(name);
    let moved_to = match std::fs::rename(path, &target) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not move damaged tsdb file aside");
            None
        }
    };
    damage
        .into_iter()
        .map(|d| {
            tracing::warn!(
                file = %path.display(),
                offset = d.offset,
                reason = %d.reason,
                moved_to = ?moved_to.as_ref().map(|p| p.display().to_string()),
                "damaged tsdb file: the damaged part is skipped, the rest is loaded, the file is moved aside"
            );
            DamagedFile {
                path: path.to_path_buf(),
                moved_to: moved_to.clone(),
                offset: d.offset,
                reason: d.reason,
            }
        })
        .collect()
}

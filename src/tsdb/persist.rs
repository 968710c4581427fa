//! Writing the head to disk, in two steps that together are a "snapshot":
//!
//! 1. Sealed chunks of every [`BLOCK_SPAN_MS`] period that ended [`PERSIST_GRACE_MS`] before
//!    the newest sample go into one block file per period. Each series' chunks of the period
//!    are re-encoded as one chunk (up to [`FILE_CHUNK_SAMPLES`] samples): the encoder then sees
//!    the whole period, and a file pays one checksum and index entry per series and period.
//!    Chunks written to a file stay in memory while they are within the head's range and are
//!    dropped from memory after that (see [`Db::release_memory`]).
//!    Days entirely in files are then merged into one block each (`compact.rs`).
//! 2. The head snapshot (`snapshot.rs`): every series the WAL refers to, with what of it is not
//!    in a file yet; then the WAL segments it covers are deleted.
//!
//! Commits trigger it when a period comes due (and by size, see `mod.rs`); `run` also calls
//! [`Db::snapshot`] on a timer and at shutdown. A failure is counted
//! (`Gauges::snapshot_failures`) and logged with the file and the error, at most once a minute
//! while failures last; nothing held is lost by it, and the next snapshot tries again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::block::{self, period_start, Block, PERSIST_GRACE_MS};
use super::chunk::Chunk;
use super::series::MemSeries;
use super::{lock, snapshot, Counters, Db, Error, Sample};

/// Most samples in one chunk of a block file: a period scraped every second has 7,200.
pub const FILE_CHUNK_SAMPLES: usize = 1 << 13;

/// The period boundary below which sealed chunks are due for block files when the newest
/// sample is at `newest`.
pub(super) fn mark(newest: i64) -> i64 {
    if newest == i64::MIN {
        return i64::MIN;
    }
    period_start(newest.saturating_sub(PERSIST_GRACE_MS))
}

/// One series' chunks due for one block.
struct Due {
    series: Arc<MemSeries>,
    chunks: Vec<Chunk>,
}

impl Db {
    /// Writes the head to disk: chunks due for block files, then the head snapshot, and drops
    /// the WAL segments the snapshot covers. Returns the snapshot's size in bytes (0 for an
    /// in-memory database). Appends wait only while the series are listed, not while files are
    /// written.
    pub fn snapshot(&self) -> Result<u64, Error> {
        self.write_to_disk(false)
    }

    /// Like [`Db::snapshot`], but every sample held goes into block files, open heads
    /// included: for the end of an import (the data is history, not a head still being
    /// written) and for benchmarks that measure the files.
    pub fn flush(&self) -> Result<u64, Error> {
        self.write_to_disk(true)
    }

    fn write_to_disk(&self, everything: bool) -> Result<u64, Error> {
        let Some(dir) = self.opts.path.clone() else {
            return Ok(0);
        };
        let _one = lock(&self.snapshot_lock);
        let newest = self.newest.load(Ordering::Relaxed);
        let upto = if everything { i64::MAX } else { mark(newest) };
        let blocks = self
            .write_blocks(&dir, upto, everything)
            .and_then(|()| self.compact(&dir));
        if blocks.is_ok() {
            self.persisted_mark
                .fetch_max(mark(newest), Ordering::Relaxed);
            self.release_memory();
        }
        let snap = self.write_head_snapshot(&dir);
        self.mem_at_snapshot.store(
            self.counters.mem_bytes.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let result = blocks.and(snap);
        match &result {
            Ok(size) => {
                let mut log = lock(&self.snapshot_failures);
                if let Some((n, lasted)) = log.succeeded(Instant::now()) {
                    tracing::warn!(
                        path = %dir.display(),
                        failures = n,
                        lasted_seconds = lasted.as_secs(),
                        "tsdb snapshots succeed again"
                    );
                }
                Counters::add(&self.counters.snapshots, 1);
                self.counters
                    .last_snapshot_bytes
                    .store(*size, Ordering::Relaxed);
            }
            Err((path, e)) => {
                Counters::add(&self.counters.snapshot_failures, 1);
                let mut log = lock(&self.snapshot_failures);
                if log.failed(Instant::now()) {
                    tracing::error!(
                        path = %path.display(),
                        error = %e,
                        failures = log.pending(),
                        "tsdb snapshot failed (counted in depin_tsdb_snapshot_failures_total); the head and the write-ahead log still hold the data"
                    );
                }
            }
        }
        result.map_err(|(path, source)| Error::Io { path, source })
    }

    /// Seals and collects what is due for block files: per period, each series' unwritten
    /// chunks that end before `upto`.
    fn due_chunks(&self, upto: i64, everything: bool) -> BTreeMap<i64, Vec<Due>> {
        let _cs = lock(&self.commit);
        let mut due: BTreeMap<i64, Vec<Due>> = BTreeMap::new();
        for s in self.head_read().all() {
            let mut d = s.lock();
            if everything || d.head.last_t().is_some_and(|t| t < upto) {
                let before = d.footprint();
                d.seal();
                self.counters.account(d.footprint() - before);
            }
            let fm = d.file_maxt;
            let mut per_period: BTreeMap<i64, Vec<Chunk>> = BTreeMap::new();
            for c in d.chunks.iter().filter(|c| c.maxt > fm && c.maxt < upto) {
                per_period
                    .entry(period_start(c.mint))
                    .or_default()
                    .push(c.clone());
            }
            for (p, chunks) in per_period {
                due.entry(p).or_default().push(Due {
                    series: s.clone(),
                    chunks,
                });
            }
        }
        due
    }

    /// Writes one block file per due period, oldest first; stops at the first failure (later
    /// periods wait for the next try, so each series' files stay a prefix of its history).
    fn write_blocks(
        &self,
        dir: &Path,
        upto: i64,
        everything: bool,
    ) -> Result<(), (PathBuf, std::io::Error)> {
        for (_, mut due) in self.due_chunks(upto, everything) {
            due.sort_by(|a, b| a.series.labels.cmp(&b.series.labels));
            let merged: Vec<Vec<Chunk>> = due.iter().map(|d| merge(&d.series, &d.chunks)).collect();
            let members: Vec<&Due> = due
                .iter()
                .zip(&merged)
                .filter(|(_, c)| !c.is_empty())
                .map(|(d, _)| d)
                .collect();
            if members.is_empty() {
                continue;
            }
            let ws = due
                .iter()
                .zip(merged)
                .filter(|(_, c)| !c.is_empty())
                .map(|(d, chunks)| (d.series.labels.clone(), chunks));
            let seq = self.next_block_seq.fetch_add(1, Ordering::Relaxed);
            let path = block::path(dir, seq);
            let parsed = block::write(dir, seq, &[], 0, ws).map_err(|e| (path.clone(), e))?;
            let file = std::fs::File::open(&path).map_err(|e| (path.clone(), e))?;
            let refs: Vec<u64> = members.iter().map(|d| d.series.sref).collect();
            let written_maxt: Vec<i64> = parsed
                .series
                .iter()
                .map(|(_, cs)| cs.iter().map(|c| c.maxt).max().unwrap_or(i64::MIN))
                .collect();
            let by_ref = refs.into_iter().zip(parsed.series.into_iter().map(|s| s.1));
            let b = Arc::new(Block::new(seq, path, file, parsed.meta, by_ref));
            self.register_block(b, members.iter().map(|d| &d.series).zip(written_maxt));
            Counters::add(&self.counters.blocks_written, 1);
        }
        Ok(())
    }

    /// Makes a block written by this process visible to readers and marks its series' chunks
    /// as written.
    fn register_block<'a>(
        &self,
        b: Arc<Block>,
        members: impl Iterator<Item = (&'a Arc<MemSeries>, i64)>,
    ) {
        let _cs = lock(&self.commit);
        {
            let mut blocks = self.blocks_write();
            let at = blocks.partition_point(|x| (x.meta.mint, x.seq) < (b.meta.mint, b.seq));
            blocks.insert(at, b);
        }
        let head = self.head_read();
        for (s, maxt) in members {
            s.blocks.fetch_add(1, Ordering::Relaxed);
            // A series retention removed meanwhile is not brought back; the block goes by
            // retention too.
            if head.get_ref(s.sref).is_some_and(|h| Arc::ptr_eq(h, s)) {
                let mut d = s.lock();
                d.file_maxt = d.file_maxt.max(maxt);
            }
        }
    }

    /// Drops from memory the chunks that are in block files and older than the head's range.
    pub(super) fn release_memory(&self) {
        let newest = self.newest.load(Ordering::Relaxed);
        if newest == i64::MIN {
            return;
        }
        let cutoff = newest.saturating_sub(self.head_range_ms());
        let _cs = lock(&self.commit);
        for s in self.head_read().all() {
            let mut d = s.lock();
            let before = d.footprint();
            if d.release_persisted_before(cutoff) > 0 {
                self.counters.account(d.footprint() - before);
            }
        }
    }

    /// Reads back into memory the chunks of block files within the head's range that memory
    /// does not hold (after a restart, or when the range grew).
    pub(super) fn load_head_range(&self) {
        let _one = lock(&self.snapshot_lock);
        let newest = self.newest.load(Ordering::Relaxed);
        if newest == i64::MIN {
            return;
        }
        let cutoff = newest.saturating_sub(self.head_range_ms());
        let blocks = self.blocks_in(cutoff, i64::MAX);
        if blocks.is_empty() {
            return;
        }
        let _cs = lock(&self.commit);
        for s in self.head_read().all() {
            let mut d = s.lock();
            let mem_mint = d.mem_mint();
            if mem_mint <= cutoff {
                continue;
            }
            let mut metas: Vec<(&Block, &block::ChunkMeta)> = blocks
                .iter()
                .flat_map(|b| {
                    b.chunks_of(s.sref)
                        .iter()
                        .filter(|c| c.maxt >= cutoff && c.maxt < mem_mint)
                        .map(move |c| (b.as_ref(), c))
                })
                .collect();
            metas.sort_by_key(|(_, c)| std::cmp::Reverse(c.mint));
            let before = d.footprint();
            for (b, c) in metas {
                match b.read_chunk(c) {
                    Ok(chunk) => d.push_front_chunk(chunk),
                    Err(damage) => {
                        if b.note_damage(c.off) {
                            Counters::add(&self.counters.chunks_unreadable, 1);
                            tracing::warn!(file = %b.path.display(), offset = c.off, series = %s.labels, reason = %damage.reason, "damaged chunk in a tsdb block skipped");
                        }
                        // Memory holds a suffix of the series' history: stop at the gap.
                        break;
                    }
                }
            }
            self.counters.account(d.footprint() - before);
        }
    }

    /// Writes the head snapshot and drops the WAL segments it covers; returns its size.
    fn write_head_snapshot(&self, dir: &Path) -> Result<u64, (PathBuf, std::io::Error)> {
        let (covered, unwritten, next_ref, captured) = {
            let mut cs = lock(&self.commit);
            let (covered, unwritten) = match cs.wal.as_mut() {
                Some(w) => {
                    let covered = w.rotate().map_err(|e| (w.path(), e))?;
                    (covered, w.take_unwritten())
                }
                None => (0, Vec::new()),
            };
            let h = self.head_read();
            let captured: Vec<snapshot::SnapshotSeries> = h
                .all()
                .iter()
                .filter_map(|s| {
                    let d = s.lock();
                    let chunks: Vec<Chunk> = d
                        .chunks
                        .iter()
                        .filter(|c| !d.is_persisted(c))
                        .cloned()
                        .collect();
                    let head = d.head.samples();
                    (s.is_in_wal() || !chunks.is_empty() || !head.is_empty()).then(|| {
                        snapshot::SnapshotSeries {
                            sref: s.sref,
                            labels: s.labels.clone(),
                            chunks,
                            head,
                        }
                    })
                })
                .collect();
            (covered, unwritten, h.next_ref(), captured)
        };
        let header = snapshot::Header {
            wal_seq: covered,
            next_ref,
        };
        let size = match snapshot::write(dir, header, captured) {
            Ok(size) => size,
            Err(e) => {
                if let Some(w) = lock(&self.commit).wal.as_mut() {
                    w.restore_unwritten(unwritten);
                }
                return Err(e);
            }
        };
        if let Some(w) = lock(&self.commit).wal.as_mut() {
            w.remove_covered(covered, &self.counters)?;
        }
        tracing::debug!(path = %snapshot::path(dir).display(), bytes = size, wal_seq = covered, "tsdb head snapshot written");
        Ok(size)
    }
}

/// A series' chunks of one period as the block file keeps them: decoded and re-encoded as one
/// chunk (or several of [`FILE_CHUNK_SAMPLES`]).
fn merge(s: &MemSeries, chunks: &[Chunk]) -> Vec<Chunk> {
    let mut samples: Vec<Sample> = Vec::new();
    for c in chunks {
        match c.samples() {
            Ok(v) => samples.extend(v),
            Err(e) => {
                tracing::warn!(series = %s.labels, mint = c.mint, error = %e, "undecodable chunk left out of the block file");
            }
        }
    }
    samples
        .chunks(FILE_CHUNK_SAMPLES)
        .map(Chunk::encode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::BLOCK_SPAN_MS;

    #[test]
    fn the_mark_is_a_period_boundary_a_grace_behind_the_newest() {
        assert_eq!(mark(i64::MIN), i64::MIN);
        let h = 3600 * 1000;
        assert_eq!(BLOCK_SPAN_MS, 2 * h);
        // At 3:30 the period 0-2 h is due (3:30 - 1 h = 2:30, in the period 2-4 h).
        assert_eq!(mark(3 * h + h / 2), 2 * h);
        assert_eq!(mark(2 * h + h / 2), 0);
    }
}

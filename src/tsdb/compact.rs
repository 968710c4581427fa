//! Merging block files as they age: once a whole UTC day ([`COMPACT_SPAN_MS`]) is written to
//! files, its 2 h blocks (and any a backfill added) become one block. The chunks are copied as
//! they are, series by series; what a day's file saves is the labels and headers repeated in
//! twelve files, and the tables a loaded block keeps in memory: 15 days are 15 files, not 180.
//!
//! The merged block names the blocks it replaces in its index. It is written (temp file,
//! fsync, rename) before they are deleted, and opening deletes parents that a crash left beside
//! their merged block, so no sample is ever in two loaded blocks. A chunk that fails its
//! checksum while being copied is left out, logged and counted, as a query would skip it.
//!
//! With [`Options::downsample_after_ms`](super::Options), a day older than that (and than the
//! head's range, so memory no longer holds it) is written downsampled instead (`downsample.rs`):
//! its raw blocks become one block of resolution [`downsample::WINDOW_MS`], by the same
//! write-once, fsync and rename steps. Blocks already downsampled are never rewritten; a
//! backfill into a downsampled day becomes a second downsampled block of that day.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{self, Block};
use super::chunk::Chunk;
use super::downsample;
use super::series::SeriesRef;
use super::{lock, persist, Counters, Db, Sample};
use crate::labels::Labels;

/// The span of a merged block: a day, aligned to UTC midnight.
pub const COMPACT_SPAN_MS: i64 = 24 * 3600 * 1000;

fn day_start(t: i64) -> i64 {
    t.div_euclid(COMPACT_SPAN_MS) * COMPACT_SPAN_MS
}

impl Db {
    /// Merges the raw blocks of every day that is entirely written to files and has more than
    /// one; downsamples those of days old enough.
    pub(super) fn compact(&self, dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
        let newest = self.newest.load(Ordering::Relaxed);
        let mark = persist::mark(newest);
        let downsample_before = self
            .opts
            .downsample_after_ms
            .map(|after| newest.saturating_sub(after.max(self.head_range_ms())));
        let mut days: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
        for b in self.blocks_read().iter() {
            let day = day_start(b.meta.mint);
            if b.meta.resolution_ms == 0
                && day_start(b.meta.maxt) == day
                && day + COMPACT_SPAN_MS <= mark
            {
                days.entry(day).or_default().push(b.clone());
            }
        }
        for (day, group) in days {
            if downsample_before.is_some_and(|before| day + COMPACT_SPAN_MS <= before) {
                self.merge_blocks(dir, &group, downsample::WINDOW_MS)?;
            } else if group.len() > 1 {
                self.merge_blocks(dir, &group, 0)?;
            }
        }
        Ok(())
    }

    /// Writes one block with every chunk of `group` (downsampled to `resolution_ms` if not 0),
    /// then unloads and deletes the group.
    fn merge_blocks(
        &self,
        dir: &Path,
        group: &[Arc<Block>],
        resolution_ms: i64,
    ) -> Result<(), (PathBuf, std::io::Error)> {
        let refs: BTreeSet<SeriesRef> = group.iter().flat_map(|b| b.series_refs()).collect();
        let mut members: Vec<_> = {
            let head = self.head_read();
            refs.iter()
                .filter_map(|r| head.get_ref(*r).cloned())
                .collect()
        };
        members.sort_by(|a, b| a.labels.cmp(&b.labels));
        let series = members.iter().filter_map(|s| {
            let mut metas: Vec<(&Block, &block::ChunkMeta)> = group
                .iter()
                .flat_map(|b| b.chunks_of(s.sref).iter().map(move |c| (b.as_ref(), c)))
                .collect();
            metas.sort_by_key(|(_, c)| c.mint);
            let chunks: Vec<Chunk> = metas
                .into_iter()
                .filter_map(|(b, c)| match b.read_chunk(c) {
                    Ok(chunk) => Some(chunk),
                    Err(d) => {
                        if b.note_damage(c.off) {
                            Counters::add(&self.counters.chunks_unreadable, 1);
                        }
                        tracing::warn!(file = %b.path.display(), offset = c.off, series = %s.labels, reason = %d.reason, "damaged chunk left out of a merged tsdb block");
                        None
                    }
                })
                .collect();
            (!chunks.is_empty()).then(|| (s.labels.clone(), chunks))
        });
        let parents: Vec<u64> = group.iter().map(|b| b.seq).collect();
        let seq = self.next_block_seq.fetch_add(1, Ordering::Relaxed);
        let path = block::path(dir, seq);
        let written = if resolution_ms > 0 {
            block::write(dir, seq, &parents, resolution_ms, downsampled(series))
        } else {
            block::write(dir, seq, &parents, 0, series)
        };
        let parsed = written.map_err(|e| (path.clone(), e))?;
        let file = std::fs::File::open(&path).map_err(|e| (path.clone(), e))?;
        let by_ref = self.refs_of(parsed.series, resolution_ms > 0);
        let merged = Arc::new(Block::new(seq, path, file, parsed.meta, by_ref));
        self.swap_blocks(merged, group);
        Counters::add(&self.counters.blocks_written, 1);
        Ok(())
    }

    /// The series refs of a written block's series. A downsampled block names aggregate
    /// series the head may not know yet: they are created, as an append would.
    fn refs_of(
        &self,
        series: Vec<(Labels, Vec<block::ChunkMeta>)>,
        create: bool,
    ) -> Vec<(SeriesRef, Vec<block::ChunkMeta>)> {
        let _cs = create.then(|| lock(&self.commit));
        series
            .into_iter()
            .filter_map(|(labels, cs)| {
                let s = if create {
                    self.series_for(&labels)
                } else {
                    self.head_read().get(&labels)?.clone()
                };
                let maxt = cs.iter().map(|c| c.maxt).max().unwrap_or(i64::MIN);
                let mut d = s.lock();
                d.file_maxt = d.file_maxt.max(maxt);
                drop(d);
                Some((s.sref, cs))
            })
            .collect()
    }

    /// Loads `merged` and unloads and deletes `group` in one step for readers.
    fn swap_blocks(&self, merged: Arc<Block>, group: &[Arc<Block>]) {
        let _cs = lock(&self.commit);
        let head = self.head_read();
        for r in merged.series_refs() {
            if let Some(s) = head.get_ref(r) {
                s.blocks.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut removed = Vec::new();
        {
            let mut blocks = self.blocks_write();
            let at =
                blocks.partition_point(|x| (x.meta.mint, x.seq) < (merged.meta.mint, merged.seq));
            blocks.insert(at, merged);
            // Retention may have dropped some of the group meanwhile: those are accounted.
            blocks.retain(|b| {
                let gone = group.iter().any(|g| Arc::ptr_eq(g, b));
                if gone {
                    removed.push(b.clone());
                }
                !gone
            });
        }
        for b in removed {
            for r in b.series_refs() {
                if let Some(s) = head.get_ref(r) {
                    s.blocks.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if let Err(e) = std::fs::remove_file(&b.path) {
                tracing::warn!(file = %b.path.display(), error = %e, "could not delete a tsdb block that was merged; opening deletes it");
            }
        }
    }
}

/// The downsampled form of a day's series (see `downsample.rs`), sorted by labels. Unlike a
/// plain merge it holds the day's output at once: a gauge adds series that sort elsewhere.
fn downsampled(series: impl Iterator<Item = (Labels, Vec<Chunk>)>) -> Vec<(Labels, Vec<Chunk>)> {
    let mut out = Vec::new();
    for (labels, chunks) in series {
        let mut samples: Vec<Sample> = Vec::new();
        for c in &chunks {
            match c.samples() {
                Ok(s) => samples.extend(s),
                Err(e) => {
                    tracing::warn!(series = %labels, error = %e, "undecodable chunk left out of a downsampled tsdb block");
                }
            }
        }
        // Blocks of one day may overlap (a backfill): one sample per time, the first kept.
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        for (l, kept) in downsample::downsample(&labels, &samples) {
            let chunks = kept
                .chunks(persist::FILE_CHUNK_SAMPLES)
                .map(Chunk::encode)
                .collect();
            out.push((l, chunks));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_aligned_to_utc_midnight() {
        assert_eq!(day_start(0), 0);
        assert_eq!(day_start(COMPACT_SPAN_MS - 1), 0);
        assert_eq!(day_start(-1), -COMPACT_SPAN_MS);
    }
}

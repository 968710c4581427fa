//! Retention and the size cap.
//!
//! Time: chunks in memory that end more than `Options::retention_ms` before the newest sample
//! (measured back from the newest sample, not the wall clock, so a simulation or an import of
//! old data keeps what it wrote) are dropped, and block files once all their samples are that
//! old, whole. The same pass drops from memory the chunks that are in block files and older
//! than the head's range.
//!
//! Size: while the block files, the WAL and memory together take more than
//! `Options::max_bytes`, the oldest block files go first; if memory alone is still over what
//! is left, the oldest chunks in memory go (those already in a file cost nothing: they are
//! read from the file from then on).
//!
//! Series left with nothing in memory and in no block file are removed from the index. Runs
//! inside a commit, so it never races the appender.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::Block;
use super::chunk::Chunk;
use super::series::MemSeries;
use super::{CommitState, Counters, Db};

/// Retention looks at all series at most once per this much (sample) time.
const RETENTION_CHECK_MS: i64 = 60_000;

impl Db {
    pub(super) fn maintain(&self, cs: &mut CommitState) {
        let newest = self.newest.load(Ordering::Relaxed);
        if newest == i64::MIN {
            return;
        }
        if cs.retention_checked_at == i64::MIN
            || newest - cs.retention_checked_at >= RETENTION_CHECK_MS
        {
            cs.retention_checked_at = newest;
            self.apply_retention(cs, newest);
        }
        if let Some(cap) = self.opts.max_bytes {
            self.apply_size_cap(cs, cap as i64);
        }
    }

    fn apply_retention(&self, cs: &mut CommitState, newest: i64) {
        let cutoff = newest.saturating_sub(self.opts.retention_ms);
        let release = newest.saturating_sub(self.head_range_ms());
        let all = self.head_read().all();
        let (mut chunks, mut samples) = (0, 0);
        let mut empty = Vec::new();
        for s in &all {
            let mut d = s.lock();
            let before = d.footprint();
            let (c, n) = d.truncate_before(cutoff);
            chunks += c;
            samples += n;
            d.release_persisted_before(release);
            self.counters.account(d.footprint() - before);
            if d.is_empty() && n > 0 {
                empty.push(s.clone());
            }
        }
        let old: Vec<Arc<Block>> = self
            .blocks_read()
            .iter()
            .filter(|b| b.meta.maxt < cutoff)
            .cloned()
            .collect();
        for b in old {
            chunks += b.meta.chunks;
            samples += b.meta.samples;
            empty.extend(self.drop_block(&b));
        }
        Counters::add(&self.counters.retention_dropped_chunks, chunks);
        Counters::add(&self.counters.retention_dropped_samples, samples);
        self.remove_series(cs, &empty);
    }

    /// Unloads and deletes a block file; returns the series it held that now hold nothing.
    fn drop_block(&self, b: &Arc<Block>) -> Vec<Arc<MemSeries>> {
        self.blocks_write().retain(|x| !Arc::ptr_eq(x, b));
        if let Err(e) = std::fs::remove_file(&b.path) {
            tracing::warn!(file = %b.path.display(), error = %e, "could not delete a tsdb block that retention dropped; it is no longer read");
        }
        let head = self.head_read();
        b.series_refs()
            .filter_map(|r| head.get_ref(r).cloned())
            .filter(|s| s.blocks.fetch_sub(1, Ordering::Relaxed) == 1 && s.lock().is_empty())
            .collect()
    }

    fn apply_size_cap(&self, cs: &mut CommitState, cap: i64) {
        let postings = self.head_read().index().bytes() as i64;
        let (_, block_bytes, block_mem) = self.block_totals();
        let wal = self.counters.wal_bytes.load(Ordering::Relaxed) as i64;
        let mem = self.counters.mem_bytes.load(Ordering::Relaxed);
        // The files count with their bytes on disk and the tables they keep in memory.
        let mut files = (block_bytes + block_mem) as i64;
        if mem + postings + files + wal <= cap {
            return;
        }
        let mut empty = Vec::new();
        while mem + postings + files + wal > cap {
            let oldest = self
                .blocks_read()
                .iter()
                .min_by_key(|b| (b.meta.maxt, b.seq))
                .cloned();
            let Some(b) = oldest else { break };
            files -= (b.meta.bytes + b.memory_bytes() as u64) as i64;
            Counters::add(&self.counters.memory_dropped_chunks, b.meta.chunks);
            Counters::add(&self.counters.memory_dropped_samples, b.meta.samples);
            Counters::add(&self.counters.memory_dropped_bytes, b.meta.bytes);
            empty.extend(self.drop_block(&b));
        }
        self.remove_series(cs, &empty);
        // `mem_bytes` counts chunks, heads and each series' labels; the postings, the files
        // and the WAL count too, so what is left for memory is the cap minus them.
        let budget = cap - postings - files - wal;
        if self.counters.mem_bytes.load(Ordering::Relaxed) > budget {
            self.apply_memory_cap(cs, budget);
        }
    }

    fn apply_memory_cap(&self, cs: &mut CommitState, cap: i64) {
        let all = self.head_read().all();
        // Oldest chunk first across all series: a min-heap on each series' oldest chunk end.
        let mut heap: BinaryHeap<Reverse<(i64, usize)>> = all
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.lock().chunks.front().map(|c| Reverse((c.maxt, i))))
            .collect();
        let mut empty = Vec::new();
        while self.counters.mem_bytes.load(Ordering::Relaxed) > cap {
            let Some(Reverse((_, i))) = heap.pop() else {
                break;
            };
            let mut d = all[i].lock();
            let before = d.footprint();
            let Some(c) = d.pop_chunk() else {
                continue;
            };
            self.counters.account(d.footprint() - before);
            if !d.is_persisted(&c) {
                // Lost for good: count it. A chunk in a file is only read from there now.
                let freed = (c.data_bytes() + Chunk::META_BYTES) as u64;
                Counters::add(&self.counters.memory_dropped_chunks, 1);
                Counters::add(&self.counters.memory_dropped_samples, c.count() as u64);
                Counters::add(&self.counters.memory_dropped_bytes, freed);
            }
            match d.chunks.front() {
                Some(next) => heap.push(Reverse((next.maxt, i))),
                None if d.is_empty() && all[i].blocks.load(Ordering::Relaxed) == 0 => {
                    empty.push(all[i].clone())
                }
                None => {}
            }
        }
        self.remove_series(cs, &empty);
    }

    fn remove_series(&self, cs: &mut CommitState, empty: &[Arc<MemSeries>]) {
        if empty.is_empty() {
            return;
        }
        cs.last_batch.clear();
        let mut removed = HashSet::new();
        let mut h = self.head_write();
        for s in empty {
            let gone = {
                let d = s.lock();
                d.is_empty() && d.pending.is_none() && s.blocks.load(Ordering::Relaxed) == 0
            };
            if gone && h.get_ref(s.sref).is_some_and(|x| Arc::ptr_eq(x, s)) {
                h.remove(s.sref);
                removed.insert(s.sref);
                self.counters
                    .mem_bytes
                    .fetch_sub(s.index_bytes() as i64, Ordering::Relaxed);
            }
        }
        cs.scrape_cache.forget(&removed);
    }
}

//! Retention and the memory cap: dropping whole old chunks when they fall out of
//! `Options::retention_ms` (measured back from the newest sample, not the wall clock, so a
//! simulation or an import of old data keeps what it wrote), and dropping the oldest chunks of
//! any series while more than `Options::max_bytes` are held. Series left empty are removed from
//! the index. Runs inside a commit, so it never races the appender.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::chunk::Chunk;
use super::series::MemSeries;
use super::{CommitState, Db};

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
            self.apply_retention(cs, newest.saturating_sub(self.opts.retention_ms));
        }
        if let Some(cap) = self.opts.max_bytes {
            // `mem_bytes` counts chunks, heads and each series' labels; the postings of the
            // label index count too (as in `stats().total_bytes`), so what is left for the
            // rest is the cap minus them.
            let postings = self.head_read().index().bytes() as i64;
            let cap = cap as i64 - postings;
            if self.mem_bytes.load(Ordering::Relaxed) > cap {
                self.apply_memory_cap(cs, cap);
            }
        }
    }

    fn apply_retention(&self, cs: &mut CommitState, cutoff: i64) {
        let all = self.head_read().all();
        let (mut chunks, mut samples) = (0, 0);
        let mut empty = Vec::new();
        for s in &all {
            let mut d = s.lock();
            let (c, n, freed) = d.truncate_before(cutoff);
            chunks += c;
            samples += n;
            self.mem_bytes.fetch_sub(freed, Ordering::Relaxed);
            if d.is_empty() && n > 0 {
                empty.push(s.clone());
            }
        }
        self.counters
            .retention_dropped_chunks
            .fetch_add(chunks, Ordering::Relaxed);
        self.counters
            .retention_dropped_samples
            .fetch_add(samples, Ordering::Relaxed);
        self.remove_series(cs, &empty);
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
        while self.mem_bytes.load(Ordering::Relaxed) > cap {
            let Some(Reverse((_, i))) = heap.pop() else {
                break;
            };
            let mut d = all[i].lock();
            let Some(c) = d.pop_chunk() else {
                continue;
            };
            let freed = (c.data_bytes() + Chunk::META_BYTES) as u64;
            self.mem_bytes.fetch_sub(freed as i64, Ordering::Relaxed);
            self.counters
                .memory_dropped_chunks
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .memory_dropped_samples
                .fetch_add(c.count() as u64, Ordering::Relaxed);
            self.counters
                .memory_dropped_bytes
                .fetch_add(freed, Ordering::Relaxed);
            match d.chunks.front() {
                Some(next) => heap.push(Reverse((next.maxt, i))),
                None if d.is_empty() => empty.push(all[i].clone()),
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
        let mut removed = std::collections::HashSet::new();
        let mut h = self.head_write();
        for s in empty {
            if s.lock().is_empty() {
                h.remove(s.sref);
                removed.insert(s.sref);
                self.mem_bytes
                    .fetch_sub(s.index_bytes() as i64, Ordering::Relaxed);
            }
        }
        cs.scrape_cache.forget(&removed);
    }
}

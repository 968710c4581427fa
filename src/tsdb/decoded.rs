//! The read side's cache of decoded samples: sealed chunks (and the open head as of a given
//! length) decoded once and shared by the queries that read them again. Rules and the
//! optimizer evaluate the same windows (`rate(x[1d])`, `max_over_time(x[1d])`) every interval,
//! and without it every evaluation decoded every chunk of the window anew.
//!
//! An entry in memory is keyed by (series ref, time of its first sample, number of samples). A
//! sealed chunk never changes, and the open head only grows, so a head with the same first
//! sample and length holds the same samples; a head that was cut, truncated or reloaded gets a
//! new key. Refs are never reused within one database. A chunk of a block file is keyed by the
//! block's sequence number and the chunk's offset: block files are never changed and their
//! numbers never reused. The cache is bounded by a number of samples
//! (16 bytes each); the least recently used entries go first. It never changes what a query
//! returns, only how often chunks are decoded.

use std::collections::HashMap;
use std::sync::Arc;

use super::series::SeriesRef;
use super::Sample;

/// Samples held at most: 2 MiB of decoded samples.
pub const DEFAULT_CAPACITY: usize = 1 << 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A chunk or open head in memory: (series, first sample time, samples).
    Mem(SeriesRef, i64, usize),
    /// A chunk of a block file: (block sequence number, chunk offset).
    File(u64, u32),
}

pub struct DecodedCache {
    entries: HashMap<Key, (Arc<[Sample]>, u64)>,
    samples: usize,
    capacity: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl DecodedCache {
    pub fn new(capacity: usize) -> Self {
        DecodedCache {
            entries: HashMap::new(),
            samples: 0,
            capacity,
            tick: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, key: &Key) -> Option<Arc<[Sample]>> {
        self.tick += 1;
        match self.entries.get_mut(key) {
            Some((s, used)) => {
                *used = self.tick;
                self.hits += 1;
                Some(s.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, key: Key, samples: Arc<[Sample]>) {
        if samples.len() > self.capacity {
            return;
        }
        self.tick += 1;
        let n = samples.len();
        if let Some((old, _)) = self.entries.insert(key, (samples, self.tick)) {
            self.samples -= old.len();
        }
        self.samples += n;
        if self.samples > self.capacity {
            self.evict(self.capacity * 3 / 4);
        }
    }

    /// Drops the least recently used entries until at most `keep` samples are held.
    fn evict(&mut self, keep: usize) {
        let mut by_use: Vec<(u64, Key, usize)> = self
            .entries
            .iter()
            .map(|(k, (s, used))| (*used, *k, s.len()))
            .collect();
        by_use.sort_unstable_by_key(|e| e.0);
        for (_, k, n) in by_use {
            if self.samples <= keep {
                break;
            }
            self.entries.remove(&k);
            self.samples -= n;
        }
    }

    /// Bytes held: the decoded samples, their shared allocations' counts, and the table.
    pub fn bytes(&self) -> usize {
        let arc_header = 2 * std::mem::size_of::<usize>();
        let slot = std::mem::size_of::<(Key, (Arc<[Sample]>, u64))>() + 1;
        self.samples * std::mem::size_of::<Sample>()
            + self.entries.len() * arc_header
            + self.entries.capacity() * slot
    }

    /// (hits, misses) since the database was opened.
    #[cfg(test)]
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    #[cfg(test)]
    pub fn samples(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize) -> Arc<[Sample]> {
        (0..n)
            .map(|i| Sample {
                t: i as i64,
                v: i as f64,
            })
            .collect()
    }

    #[test]
    fn keeps_within_capacity_and_drops_the_least_recently_used() {
        let mut c = DecodedCache::new(400);
        let k = |r| Key::Mem(r, 0, 120);
        c.insert(k(1), run(120));
        c.insert(k(2), run(120));
        c.insert(k(3), run(120));
        // Touch 1 so that 2 is the oldest when 4 overflows the capacity; eviction goes down
        // to three quarters of it (300 samples), so 3 goes as well.
        assert!(c.get(&k(1)).is_some());
        c.insert(k(4), run(120));
        assert!(c.samples() <= 300);
        assert!(c.get(&k(2)).is_none(), "least recently used entry kept");
        assert!(c.get(&k(1)).is_some());
        assert!(c.get(&k(4)).is_some());
        // A head that grew is another entry, and a file chunk never meets a memory one.
        assert!(c.get(&Key::Mem(1, 0, 121)).is_none());
        assert!(c.get(&Key::File(1, 0)).is_none());
    }

    #[test]
    fn bytes_follow_what_is_held() {
        let mut c = DecodedCache::new(10_000);
        assert_eq!(c.bytes(), 0);
        c.insert(Key::Mem(1, 0, 1_000), run(1_000));
        let one = c.bytes();
        assert!(one >= 16_000, "{one}");
        for i in 2..100 {
            c.insert(Key::File(i, 0), run(1_000));
        }
        // Never more than the capacity in samples, plus a table of at most a few dozen slots.
        assert!(c.samples() <= 10_000);
        assert!(c.bytes() <= 10_000 * 16 + 64 * 64, "{}", c.bytes());
    }
}

//! One series in memory: its labels, its sealed chunks (oldest first) and the open head buffer
//! that collects samples until [`CHUNK_SAMPLES`] of them (or [`CHUNK_SPAN_MS`] of time) can be
//! sealed into a compressed chunk.
//!
//! The head collects samples in Prometheus' streaming XOR format (a few bytes per sample instead
//! of 16); when it is cut, its samples are re-encoded as a whole by `chunk.rs`, which can then
//! pick the best encoding. Head bytes are counted separately in the stats.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chunk::{Chunk, CHUNK_SAMPLES};
use super::decoded::DecodedCache;
use super::xor::XorAppender;
use super::Sample;
use crate::labels::Labels;

/// A chunk is also cut when its samples span this much time, so that sparse series do not keep
/// hours of samples uncompressed and retention can drop old data in whole chunks.
pub const CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Identity of a series inside the database, stable across WAL and snapshot.
pub type SeriesRef = u64;

pub struct MemSeries {
    pub sref: SeriesRef,
    pub labels: Labels,
    data: Mutex<SeriesData>,
    /// A WAL record (or the snapshot the WAL continues) already names this series, so later
    /// records can refer to it by `sref` alone.
    pub in_wal: AtomicBool,
}

#[derive(Default, Clone)]
pub struct SeriesData {
    pub chunks: VecDeque<Chunk>,
    /// `data_bytes + META_BYTES` of `chunks`, kept as chunks come and go.
    pub chunk_bytes: usize,
    pub head: XorAppender,
    /// The newest sample, also when the head was just sealed and is empty.
    pub last: Option<Sample>,
    /// The newest sample of the batch being committed, accepted but not yet applied.
    pub pending: Option<(i64, u64)>,
}

/// What an append would do with a sample, decided before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Append,
    /// Same timestamp and bit-identical value as the newest sample: nothing to do.
    Duplicate,
    /// Older than the newest sample.
    OutOfOrder,
    /// Same timestamp as the newest sample but another value.
    DuplicateTimestamp,
}

pub fn admit(last: Option<(i64, u64)>, t: i64, v: f64) -> Admit {
    match last {
        Some((lt, _)) if t < lt => Admit::OutOfOrder,
        Some((lt, lv)) if t == lt && lv == v.to_bits() => Admit::Duplicate,
        Some((lt, _)) if t == lt => Admit::DuplicateTimestamp,
        _ => Admit::Append,
    }
}

impl MemSeries {
    pub fn new(sref: SeriesRef, labels: Labels) -> Self {
        MemSeries {
            sref,
            labels,
            data: Mutex::new(SeriesData::default()),
            in_wal: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SeriesData> {
        // A panic while holding the lock cannot leave the data half-written in a way that
        // matters more than losing the series, so keep serving it.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_in_wal(&self) -> bool {
        self.in_wal.load(Ordering::Acquire)
    }

    pub fn set_in_wal(&self) {
        self.in_wal.store(true, Ordering::Release)
    }

    /// Bytes held for this series' labels, its index entries and its bookkeeping.
    pub fn index_bytes(&self) -> usize {
        let labels: usize = self
            .labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 48 + 8)
            .sum();
        labels + std::mem::size_of::<MemSeries>() + 64
    }

    /// Samples in `[mint, maxt]`, in time order, taking decoded chunks from `cache` and
    /// leaving the ones it decodes there.
    pub fn samples_in_cached(
        &self,
        mint: i64,
        maxt: i64,
        cache: Option<&Mutex<DecodedCache>>,
    ) -> Vec<Sample> {
        enum Part {
            Decoded(Arc<[Sample]>),
            Chunk(Chunk),
            Head(XorAppender),
        }
        // Copy the overlapping chunks out (or take their decoded samples from the cache) and
        // decode without the lock, so the appender waits only for the copy.
        let parts: Vec<Part> = {
            let d = self.lock();
            let overlaps = |lo: i64, hi: i64| hi >= mint && lo <= maxt;
            let mut c = cache.map(lock_cache);
            let mut parts: Vec<Part> = d
                .chunks
                .iter()
                .filter(|ch| overlaps(ch.mint, ch.maxt))
                .map(|ch| {
                    match c
                        .as_mut()
                        .and_then(|c| c.get(self.sref, ch.mint, ch.count()))
                    {
                        Some(s) => Part::Decoded(s),
                        None => Part::Chunk(ch.clone()),
                    }
                })
                .collect();
            if let (Some(lo), Some(hi)) = (d.head.first_t(), d.head.last_t()) {
                if overlaps(lo, hi) {
                    parts.push(
                        match c.as_mut().and_then(|c| c.get(self.sref, lo, d.head.len())) {
                            Some(s) => Part::Decoded(s),
                            None => Part::Head(d.head.clone()),
                        },
                    );
                }
            }
            parts
        };
        let mut out = Vec::new();
        let mut take = |all: &[Sample]| {
            let lo = all.partition_point(|s| s.t < mint);
            let hi = all.partition_point(|s| s.t <= maxt);
            if lo < hi {
                out.extend_from_slice(&all[lo..hi]);
            }
        };
        for p in parts {
            let decoded: Arc<[Sample]> = match p {
                Part::Decoded(s) => {
                    take(&s);
                    continue;
                }
                Part::Chunk(c) => match c.samples() {
                    Ok(s) => s.into(),
                    Err(e) => {
                        tracing::warn!(series = %self.labels, mint = c.mint, error = %e, "undecodable chunk skipped");
                        continue;
                    }
                },
                Part::Head(h) => h.samples().into(),
            };
            take(&decoded);
            if let (Some(c), Some(first)) = (cache, decoded.first()) {
                lock_cache(c).insert(self.sref, first.t, decoded.clone());
            }
        }
        out
    }

    /// Whether any sample lies in `[mint, maxt]`, decoding only when bounds cannot tell.
    pub fn has_sample_in(&self, mint: i64, maxt: i64) -> bool {
        let d = self.lock();
        let bounded = |lo: i64, hi: i64| hi >= mint && lo <= maxt;
        if let (Some(lo), Some(hi)) = (d.head.first_t(), d.head.last_t()) {
            if bounded(lo, hi)
                && (lo >= mint
                    || hi <= maxt
                    || d.head.samples().iter().any(|s| s.t >= mint && s.t <= maxt))
            {
                return true;
            }
        }
        for c in d.chunks.iter().filter(|c| bounded(c.mint, c.maxt)) {
            // An end inside the range is a sample inside it; a chunk straddling the whole range
            // must be decoded to tell.
            if c.mint >= mint
                || c.maxt <= maxt
                || c.samples()
                    .is_ok_and(|s| s.iter().any(|s| s.t >= mint && s.t <= maxt))
            {
                return true;
            }
        }
        false
    }
}

fn lock_cache(c: &Mutex<DecodedCache>) -> MutexGuard<'_, DecodedCache> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl SeriesData {
    pub fn last_key(&self) -> Option<(i64, u64)> {
        self.last.map(|s| (s.t, s.v.to_bits()))
    }

    /// Appends a sample already admitted; returns the change in bytes held.
    pub fn push(&mut self, s: Sample) -> i64 {
        let before = self.bytes();
        if self
            .head
            .first_t()
            .is_some_and(|f| s.t.saturating_sub(f) >= CHUNK_SPAN_MS)
        {
            self.seal();
        }
        self.head.append(s);
        self.last = Some(s);
        self.pending = None;
        if self.head.len() >= CHUNK_SAMPLES {
            self.seal();
        }
        self.bytes() as i64 - before as i64
    }

    /// Turns the open head into a compressed chunk.
    pub fn seal(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let c = Chunk::encode(&self.head.samples());
        self.chunk_bytes += c.data_bytes() + Chunk::META_BYTES;
        self.chunks.push_back(c);
        self.head = XorAppender::default();
    }

    /// Replaces the open head with these samples (from a snapshot).
    pub fn set_head(&mut self, samples: &[Sample]) {
        self.head = XorAppender::default();
        for s in samples {
            self.head.append(*s);
        }
    }

    pub fn push_chunk(&mut self, c: Chunk) {
        self.chunk_bytes += c.data_bytes() + Chunk::META_BYTES;
        self.chunks.push_back(c);
    }

    pub fn pop_chunk(&mut self) -> Option<Chunk> {
        let c = self.chunks.pop_front()?;
        self.chunk_bytes -= c.data_bytes() + Chunk::META_BYTES;
        Some(c)
    }

    pub fn head_bytes(&self) -> usize {
        self.head.allocated_bytes()
    }

    /// Bytes held for samples: chunks with their bookkeeping, and the open head.
    pub fn bytes(&self) -> usize {
        self.chunk_bytes + self.head_bytes()
    }

    #[cfg(test)]
    pub fn samples(&self) -> usize {
        self.chunks.iter().map(|c| c.count()).sum::<usize>() + self.head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.head.is_empty()
    }

    /// Drops whole chunks that end before `cutoff`, and head samples older than it once no
    /// chunk is left. Returns (chunks dropped, samples dropped, bytes freed).
    pub fn truncate_before(&mut self, cutoff: i64) -> (u64, u64, i64) {
        let before = self.bytes();
        let (mut chunks, mut samples) = (0u64, 0u64);
        while self.chunks.front().is_some_and(|c| c.maxt < cutoff) {
            if let Some(c) = self.pop_chunk() {
                chunks += 1;
                samples += c.count() as u64;
            }
        }
        if self.chunks.is_empty() && self.head.first_t().is_some_and(|t| t < cutoff) {
            let all = self.head.samples();
            let keep: Vec<Sample> = all.iter().filter(|s| s.t >= cutoff).copied().collect();
            samples += (all.len() - keep.len()) as u64;
            self.set_head(&keep);
        }
        (chunks, samples, before as i64 - self.bytes() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_sealed_every_chunk_samples_and_after_the_span() {
        let n = 2 * CHUNK_SAMPLES as i64 + 10;
        let mut d = SeriesData::default();
        for i in 0..n {
            d.push(Sample {
                t: i * 5000,
                v: i as f64,
            });
        }
        assert_eq!(d.chunks.len(), 2);
        assert_eq!(d.head.len(), 10);
        d.push(Sample {
            t: n * 5000 + CHUNK_SPAN_MS,
            v: 0.0,
        });
        assert_eq!(d.chunks.len(), 3);
        assert_eq!(d.head.len(), 1);
        assert_eq!(d.samples(), n as usize + 1);
    }

    #[test]
    fn admit_follows_prometheus_rules() {
        let last = Some((10, 1.5f64.to_bits()));
        assert_eq!(admit(last, 9, 1.0), Admit::OutOfOrder);
        assert_eq!(admit(last, 10, 1.5), Admit::Duplicate);
        assert_eq!(admit(last, 10, 2.0), Admit::DuplicateTimestamp);
        assert_eq!(admit(last, 11, 2.0), Admit::Append);
        assert_eq!(admit(None, -5, 2.0), Admit::Append);
    }

    #[test]
    fn truncation_drops_whole_chunks_only() {
        let mut d = SeriesData::default();
        let c = CHUNK_SAMPLES as i64;
        for i in 0..(2 * c + 60) {
            d.push(Sample { t: i, v: 1.0 });
        }
        // Samples before c + 5 are asked to go: only the first chunk (0..c) goes whole.
        let (chunks, samples, freed) = d.truncate_before(c + 5);
        assert_eq!((chunks, samples), (1, CHUNK_SAMPLES as u64));
        assert!(freed > 0);
        assert_eq!(d.samples(), CHUNK_SAMPLES + 60);
    }
}

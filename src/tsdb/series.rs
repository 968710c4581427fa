//! One series in memory: its labels, its sealed chunks (oldest first) and the open head buffer
//! that collects samples until [`CHUNK_SAMPLES`] of them (or [`CHUNK_SPAN_MS`] of time) can be
//! sealed into a compressed chunk.
//!
//! The head keeps its samples uncompressed so that the chunk encoder sees a whole chunk at once
//! and can choose the best encoding; its bytes are counted separately in the stats.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::chunk::{Chunk, CHUNK_SAMPLES};
use super::Sample;
use crate::labels::Labels;

/// A chunk is also cut when its samples span this much time, so that sparse series do not keep
/// hours of samples uncompressed and retention can drop old data in whole chunks.
pub const CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Identity of a series inside the database, stable across WAL and snapshot.
pub type SeriesRef = u64;

const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();

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
    pub head: Vec<Sample>,
    /// The newest sample, also when the head was just sealed and is empty.
    pub last: Option<Sample>,
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

    /// Samples in `[mint, maxt]`, in time order.
    pub fn samples_in(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        // Copy the chunk handles out and decode without the lock, so the appender waits only
        // for the copy.
        let (chunks, head): (Vec<Chunk>, Vec<Sample>) = {
            let d = self.lock();
            (
                d.chunks
                    .iter()
                    .filter(|c| c.maxt >= mint && c.mint <= maxt)
                    .cloned()
                    .collect(),
                d.head
                    .iter()
                    .filter(|s| s.t >= mint && s.t <= maxt)
                    .copied()
                    .collect(),
            )
        };
        let mut out = Vec::new();
        for c in &chunks {
            match c.samples() {
                Ok(s) => out.extend(s.into_iter().filter(|s| s.t >= mint && s.t <= maxt)),
                Err(e) => {
                    tracing::warn!(series = %self.labels, mint = c.mint, error = %e, "undecodable chunk skipped")
                }
            }
        }
        out.extend(head);
        out
    }

    /// Whether any sample lies in `[mint, maxt]`, decoding only when chunk bounds cannot tell.
    pub fn has_sample_in(&self, mint: i64, maxt: i64) -> bool {
        let d = self.lock();
        if d.head.iter().any(|s| s.t >= mint && s.t <= maxt) {
            return true;
        }
        for c in d.chunks.iter().filter(|c| c.maxt >= mint && c.mint <= maxt) {
            if (c.mint >= mint) || (c.maxt <= maxt) {
                return true;
            }
            // The chunk straddles the whole range: only its samples can say.
            if c.samples()
                .is_ok_and(|s| s.iter().any(|s| s.t >= mint && s.t <= maxt))
            {
                return true;
            }
        }
        false
    }
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
            .first()
            .is_some_and(|f| s.t - f.t >= CHUNK_SPAN_MS)
        {
            self.seal();
        }
        self.head.push(s);
        self.last = Some(s);
        if self.head.len() >= CHUNK_SAMPLES {
            self.seal();
        }
        self.bytes() as i64 - before as i64
    }

    /// Turns the head buffer into a compressed chunk.
    pub fn seal(&mut self) {
        if self.head.is_empty() {
            return;
        }
        self.chunks.push_back(Chunk::encode(&self.head));
        // Let the next head grow from nothing: most series hold one partial head, and a full
        // 120-sample buffer for each would cost more than the reallocations.
        self.head = Vec::new();
    }

    pub fn head_bytes(&self) -> usize {
        self.head.capacity() * SAMPLE_BYTES
    }

    pub fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.data_bytes() + Chunk::META_BYTES)
            .sum::<usize>()
            + self.head_bytes()
    }

    #[cfg(test)]
    pub fn samples(&self) -> usize {
        self.chunks.iter().map(|c| c.count()).sum::<usize>() + self.head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.head.is_empty()
    }

    /// Drops whole chunks that end before `cutoff` and head samples older than it. Returns
    /// (chunks dropped, samples dropped, bytes freed).
    pub fn truncate_before(&mut self, cutoff: i64) -> (u64, u64, i64) {
        let before = self.bytes();
        let (mut chunks, mut samples) = (0u64, 0u64);
        while self.chunks.front().is_some_and(|c| c.maxt < cutoff) {
            if let Some(c) = self.chunks.pop_front() {
                chunks += 1;
                samples += c.count() as u64;
            }
        }
        if self.chunks.is_empty() {
            let old = self.head.partition_point(|s| s.t < cutoff);
            if old > 0 {
                self.head.drain(..old);
                samples += old as u64;
            }
        }
        (chunks, samples, before as i64 - self.bytes() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_sealed_every_120_samples_and_after_the_span() {
        let mut d = SeriesData::default();
        for i in 0..250 {
            d.push(Sample {
                t: i * 5000,
                v: i as f64,
            });
        }
        assert_eq!(d.chunks.len(), 2);
        assert_eq!(d.head.len(), 10);
        d.push(Sample {
            t: 250 * 5000 + CHUNK_SPAN_MS,
            v: 0.0,
        });
        assert_eq!(d.chunks.len(), 3);
        assert_eq!(d.head.len(), 1);
        assert_eq!(d.samples(), 251);
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
        for i in 0..300 {
            d.push(Sample { t: i, v: 1.0 });
        }
        let (chunks, samples, freed) = d.truncate_before(125);
        assert_eq!((chunks, samples), (1, 120));
        assert!(freed > 0);
        assert_eq!(d.samples(), 180);
    }
}

//! One series in memory: its labels, its sealed chunks (oldest first) and the open head buffer
//! that collects samples until [`CHUNK_SAMPLES`] of them can be sealed into a compressed chunk,
//! or the sample crosses into the next [`super::BLOCK_SPAN_MS`] period (chunks never straddle a
//! period, so each block file takes whole chunks).
//!
//! The head collects samples in Prometheus' streaming XOR format (a few bytes per sample instead
//! of 16); when it is cut, its samples are re-encoded as a whole by `chunk.rs`, which can then
//! pick the best encoding. Head bytes are counted separately in the stats.
//!
//! Sealed chunks that are also in block files (`maxt <= file_maxt`) stay in memory while they
//! are within the head's range, so that rules and the controller read memory; older ones are
//! dropped from memory and read from the files.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::block::period_end;
use super::chunk::{Chunk, CHUNK_SAMPLES};
use super::xor::XorAppender;
use super::Sample;
use crate::labels::Labels;

/// Identity of a series inside the database, stable across WAL and snapshot.
pub type SeriesRef = u64;

pub struct MemSeries {
    pub sref: SeriesRef,
    pub labels: Labels,
    data: Mutex<SeriesData>,
    /// A WAL record (or the snapshot the WAL continues) already names this series, so later
    /// records can refer to it by `sref` alone.
    pub in_wal: AtomicBool,
    /// Loaded block files holding chunks of this series: a series is removed only when this is
    /// 0 and nothing of it is in memory.
    pub blocks: AtomicU32,
}

#[derive(Clone)]
pub struct SeriesData {
    pub chunks: VecDeque<Chunk>,
    /// `data_bytes + META_BYTES` of `chunks`, kept as chunks come and go.
    pub chunk_bytes: usize,
    /// Samples in `chunks`, kept as chunks come and go.
    pub chunk_samples: usize,
    pub head: XorAppender,
    /// The newest sample, also when the head was just sealed and is empty.
    pub last: Option<Sample>,
    /// The newest sample of the batch being committed, accepted but not yet applied.
    pub pending: Option<(i64, u64)>,
    /// Time of the newest sample of this series in block files (`i64::MIN`: none). Every
    /// sample up to it has been written to a file; memory holds it only as a cache.
    pub file_maxt: i64,
}

impl Default for SeriesData {
    fn default() -> Self {
        SeriesData {
            chunks: VecDeque::new(),
            chunk_bytes: 0,
            chunk_samples: 0,
            head: XorAppender::default(),
            last: None,
            pending: None,
            file_maxt: i64::MIN,
        }
    }
}

/// What a series holds in memory, for the database's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub bytes: i64,
    pub samples: i64,
    pub chunks: i64,
}

impl std::ops::Sub for Footprint {
    type Output = Footprint;
    fn sub(self, o: Footprint) -> Footprint {
        Footprint {
            bytes: self.bytes - o.bytes,
            samples: self.samples - o.samples,
            chunks: self.chunks - o.chunks,
        }
    }
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
            blocks: AtomicU32::new(0),
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
}

impl SeriesData {
    pub fn last_key(&self) -> Option<(i64, u64)> {
        self.last.map(|s| (s.t, s.v.to_bits()))
    }

    /// Appends a sample already admitted.
    pub fn push(&mut self, s: Sample) {
        if self.head.first_t().is_some_and(|f| s.t >= period_end(f)) {
            self.seal();
        }
        self.head.append(s);
        self.last = Some(s);
        self.pending = None;
        if self.head.len() >= CHUNK_SAMPLES {
            self.seal();
        }
    }

    /// Turns the open head into a compressed chunk.
    pub fn seal(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let c = Chunk::encode(&self.head.samples());
        self.head = XorAppender::default();
        self.push_chunk(c);
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
        self.chunk_samples += c.count();
        self.chunks.push_back(c);
    }

    /// Puts a chunk read back from a block file before the ones held (it must be older).
    pub fn push_front_chunk(&mut self, c: Chunk) {
        self.chunk_bytes += c.data_bytes() + Chunk::META_BYTES;
        self.chunk_samples += c.count();
        self.chunks.push_front(c);
    }

    pub fn pop_chunk(&mut self) -> Option<Chunk> {
        let c = self.chunks.pop_front()?;
        self.chunk_bytes -= c.data_bytes() + Chunk::META_BYTES;
        self.chunk_samples -= c.count();
        Some(c)
    }

    pub fn head_bytes(&self) -> usize {
        self.head.allocated_bytes()
    }

    /// Bytes held for samples: chunks with their bookkeeping, and the open head.
    pub fn bytes(&self) -> usize {
        self.chunk_bytes + self.head_bytes()
    }

    pub fn footprint(&self) -> Footprint {
        Footprint {
            bytes: self.bytes() as i64,
            samples: (self.chunk_samples + self.head.len()) as i64,
            chunks: self.chunks.len() as i64,
        }
    }

    #[cfg(test)]
    pub fn samples(&self) -> usize {
        self.chunks.iter().map(|c| c.count()).sum::<usize>() + self.head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.head.is_empty()
    }

    /// Time of the oldest sample held in memory (`i64::MAX` when none): older samples of the
    /// series are read from block files.
    pub fn mem_mint(&self) -> i64 {
        self.chunks
            .front()
            .map(|c| c.mint)
            .or(self.head.first_t())
            .unwrap_or(i64::MAX)
    }

    /// Whether a sealed chunk is also in a block file.
    pub fn is_persisted(&self, c: &Chunk) -> bool {
        c.maxt <= self.file_maxt
    }

    /// Drops whole chunks that end before `cutoff`, and head samples older than it once no
    /// chunk is left. Returns (chunks dropped, samples dropped).
    pub fn truncate_before(&mut self, cutoff: i64) -> (u64, u64) {
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
        (chunks, samples)
    }

    /// Drops chunks that are in block files and end before `cutoff` (they are read from the
    /// files from now on). Returns how many.
    pub fn release_persisted_before(&mut self, cutoff: i64) -> usize {
        let mut n = 0;
        while self
            .chunks
            .front()
            .is_some_and(|c| c.maxt < cutoff && c.maxt <= self.file_maxt)
        {
            self.pop_chunk();
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::BLOCK_SPAN_MS;

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
            t: n * 5000 + BLOCK_SPAN_MS,
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
        let before = d.footprint();
        let (chunks, samples) = d.truncate_before(c + 5);
        assert_eq!((chunks, samples), (1, CHUNK_SAMPLES as u64));
        assert!((before - d.footprint()).bytes > 0);
        assert_eq!(d.samples(), CHUNK_SAMPLES + 60);
    }
}

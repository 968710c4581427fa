//! What the database holds and has done, in numbers: running counters kept up to date as data
//! comes and goes ([`Counters`], read cheaply as [`Gauges`] for `/metrics`), and [`Stats`], a
//! full walk over every series for benchmarks and tests (which check that the running counters
//! equal the walk).
//!
//! The tsdb owns these numbers; it never writes to a metrics registry. The metrics layer reads
//! [`Db::gauges`] when `/metrics` is gathered.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::chunk::Chunk;
use super::series::Footprint;
use super::Db;

/// Running counters. Sizes are signed so that a delta applied out of order never wraps.
#[derive(Default)]
pub struct Counters {
    /// Bytes of samples in memory (chunks, open heads) and per-series labels and bookkeeping:
    /// what the memory cap limits, less the postings.
    pub(super) mem_bytes: AtomicI64,
    pub(super) mem_samples: AtomicI64,
    pub(super) mem_chunks: AtomicI64,
    /// Bytes of every WAL segment kept on disk.
    pub(super) wal_bytes: AtomicU64,
    pub(super) retention_dropped_chunks: AtomicU64,
    pub(super) retention_dropped_samples: AtomicU64,
    pub(super) memory_dropped_chunks: AtomicU64,
    pub(super) memory_dropped_samples: AtomicU64,
    pub(super) memory_dropped_bytes: AtomicU64,
    pub(super) out_of_order: AtomicU64,
    pub(super) duplicate_timestamp: AtomicU64,
    pub(super) snapshots: AtomicU64,
    pub(super) last_snapshot_bytes: AtomicU64,
    pub(super) wal_write_failures: AtomicU64,
    pub(super) snapshot_failures: AtomicU64,
    pub(super) chunks_unreadable: AtomicU64,
    pub(super) blocks_written: AtomicU64,
}

impl Counters {
    /// Applies what one series' change did to memory.
    pub(super) fn account(&self, delta: Footprint) {
        self.mem_bytes.fetch_add(delta.bytes, Ordering::Relaxed);
        self.mem_samples.fetch_add(delta.samples, Ordering::Relaxed);
        self.mem_chunks.fetch_add(delta.chunks, Ordering::Relaxed);
    }

    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Cheap numbers for `/metrics`, from the running counters (no walk over the series).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Series known (with samples in memory, in block files or both).
    pub series: u64,
    /// Samples held in memory: sealed chunks and open heads.
    pub head_samples: u64,
    pub head_chunks: u64,
    /// Bytes in memory: samples, labels, postings, per-series bookkeeping and the tables of
    /// the loaded blocks.
    pub memory_bytes: u64,
    /// How far back from the newest sample the head keeps samples in memory.
    pub head_range_ms: i64,
    /// Newest sample time, if any.
    pub max_time: Option<i64>,
    pub blocks: u64,
    /// Bytes of the block files on disk.
    pub block_bytes: u64,
    /// Bytes of every WAL segment on disk.
    pub wal_bytes: u64,
    pub query_cache_bytes: u64,
    pub wal_write_failures: u64,
    pub snapshot_failures: u64,
    /// Chunks of block files that failed their checksum when read (each counted once).
    pub chunks_unreadable: u64,
    pub blocks_written: u64,
}

/// What the database holds and has dropped, counted by walking every series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub series: u64,
    /// Samples held in memory, in sealed chunks and open heads.
    pub samples: u64,
    pub chunks: u64,
    /// Samples in sealed chunks in memory.
    pub chunk_samples: u64,
    /// Encoded bytes of the sealed chunks in memory.
    pub chunk_bytes: u64,
    /// Per-chunk bookkeeping besides the encoded bytes (bounds, count, allocation).
    pub chunk_meta_bytes: u64,
    pub head_samples: u64,
    /// Allocated bytes of the uncompressed open heads.
    pub head_bytes: u64,
    /// Labels, postings, per-series bookkeeping and the tables of loaded blocks.
    pub index_bytes: u64,
    /// Everything above: the memory the stored data takes.
    pub total_bytes: u64,
    /// `(chunk_bytes + chunk_meta_bytes + head_bytes) / samples`: sample storage, index excluded.
    pub bytes_per_sample: f64,
    /// `chunk_bytes / chunk_samples`: the compression of sealed chunks alone.
    pub chunk_bytes_per_sample: f64,
    /// Oldest and newest sample time, in memory or in block files.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub blocks: u64,
    /// Samples, chunks and bytes in block files.
    pub block_samples: u64,
    pub block_chunks: u64,
    pub block_bytes: u64,
    /// Of `block_bytes`: encoded chunk data, and each chunk's checksum and index entry.
    pub block_chunk_data_bytes: u64,
    pub block_chunk_meta_bytes: u64,
    pub retention_dropped_chunks: u64,
    pub retention_dropped_samples: u64,
    pub memory_dropped_chunks: u64,
    pub memory_dropped_samples: u64,
    pub memory_dropped_bytes: u64,
    pub out_of_order_samples: u64,
    pub duplicate_timestamp_samples: u64,
    pub wal_bytes: u64,
    pub snapshots: u64,
    pub last_snapshot_bytes: u64,
}

impl Db {
    /// The running counters, for `/metrics`: no walk over the series.
    pub fn gauges(&self) -> Gauges {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (blocks, block_bytes, block_mem) = self.block_totals();
        let postings = self.head_read().index().bytes() as i64;
        let newest = self.newest.load(Ordering::Relaxed);
        Gauges {
            series: self.head_read().len() as u64,
            head_samples: c.mem_samples.load(Ordering::Relaxed).max(0) as u64,
            head_chunks: c.mem_chunks.load(Ordering::Relaxed).max(0) as u64,
            memory_bytes: (c.mem_bytes.load(Ordering::Relaxed) + postings + block_mem as i64).max(0)
                as u64,
            head_range_ms: self.head_range_ms(),
            max_time: (newest != i64::MIN).then_some(newest),
            blocks,
            block_bytes,
            wal_bytes: load(&c.wal_bytes),
            query_cache_bytes: self.query_cache_bytes(),
            wal_write_failures: load(&c.wal_write_failures),
            snapshot_failures: load(&c.snapshot_failures),
            chunks_unreadable: load(&c.chunks_unreadable),
            blocks_written: load(&c.blocks_written),
        }
    }

    /// Counts what is held, walking every series and block.
    pub fn stats(&self) -> Stats {
        let all = self.head_read().all();
        let index_postings = self.head_read().index().bytes() as u64;
        let mut st = Stats {
            series: all.len() as u64,
            index_bytes: index_postings,
            ..Stats::default()
        };
        for s in &all {
            st.index_bytes += s.index_bytes() as u64;
            let d = s.lock();
            st.chunks += d.chunks.len() as u64;
            for c in &d.chunks {
                st.chunk_samples += c.count() as u64;
                st.chunk_bytes += c.data_bytes() as u64;
                st.chunk_meta_bytes += Chunk::META_BYTES as u64;
            }
            st.head_samples += d.head.len() as u64;
            st.head_bytes += d.head_bytes() as u64;
            let first = d.chunks.front().map(|c| c.mint).or(d.head.first_t());
            st.min_time = min_opt(st.min_time, first);
            st.max_time = st.max_time.max(d.last.map(|x| x.t));
        }
        for b in self.blocks_read().iter() {
            st.blocks += 1;
            st.block_samples += b.meta.samples;
            st.block_chunks += b.meta.chunks;
            st.block_bytes += b.meta.bytes;
            st.block_chunk_data_bytes += b.meta.chunk_data_bytes;
            st.block_chunk_meta_bytes += b.meta.chunk_meta_bytes;
            st.index_bytes += b.memory_bytes() as u64;
            st.min_time = min_opt(st.min_time, Some(b.meta.mint));
            st.max_time = st.max_time.max(Some(b.meta.maxt));
        }
        st.samples = st.chunk_samples + st.head_samples;
        st.total_bytes = st.chunk_bytes + st.chunk_meta_bytes + st.head_bytes + st.index_bytes;
        if st.samples > 0 {
            st.bytes_per_sample =
                (st.chunk_bytes + st.chunk_meta_bytes + st.head_bytes) as f64 / st.samples as f64;
        }
        if st.chunk_samples > 0 {
            st.chunk_bytes_per_sample = st.chunk_bytes as f64 / st.chunk_samples as f64;
        }
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        st.retention_dropped_chunks = load(&c.retention_dropped_chunks);
        st.retention_dropped_samples = load(&c.retention_dropped_samples);
        st.memory_dropped_chunks = load(&c.memory_dropped_chunks);
        st.memory_dropped_samples = load(&c.memory_dropped_samples);
        st.memory_dropped_bytes = load(&c.memory_dropped_bytes);
        st.out_of_order_samples = load(&c.out_of_order);
        st.duplicate_timestamp_samples = load(&c.duplicate_timestamp);
        st.snapshots = load(&c.snapshots);
        st.last_snapshot_bytes = load(&c.last_snapshot_bytes);
        st.wal_bytes = self.wal_bytes_on_disk();
        st
    }

    /// Bytes of the WAL segments in the storage directory, listed and summed (the walk the
    /// running `wal_bytes` counter stands for).
    fn wal_bytes_on_disk(&self) -> u64 {
        let Some(dir) = &self.opts.path else {
            return 0;
        };
        super::wal::list_segments(dir)
            .map(|segs| {
                segs.iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

//! The in-memory time series database: series with their labels, samples in compressed chunks,
//! the inverted label index, retention and a memory cap, and the write-ahead log and snapshots
//! that let history survive a restart.
//!
//! It owns storage only: it never evaluates PromQL (that is `promql`) and never polls nodes
//! (that is `coordinator`). Readers go through the [`Queryable`] trait.
//!
//! Files: `chunk.rs` (compression, with `intseq.rs`, `bits.rs` and `xor.rs`), `series.rs` (one
//! series and its open head), `head.rs` + `index.rs` (the series set and postings),
//! `retention.rs`, `wal.rs`, `snapshot.rs` and `recovery.rs` (with `codec.rs` for their bytes),
//! `import.rs` (OpenMetrics text import); `tests.rs` tests the whole.
//!
//! Concurrency: many readers, one appender. Readers hold the series-set lock only to collect
//! the series they need and each series' lock only to copy the chunks they overlap; commits are
//! serialized by their own lock, which also orders WAL records and snapshots.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::labels::{Labels, Matcher};

mod bits;
pub mod chunk;
mod codec;
mod decoded;
pub mod failures;
mod head;
pub mod import;
mod index;
mod intseq;
mod recovery;
mod retention;
mod series;
mod snapshot;
#[cfg(test)]
mod tests;
mod wal;
pub mod xor;

pub use import::{import_openmetrics, ImportError, ImportStats};

use head::Head;
use series::{admit, Admit, MemSeries};
use wal::{BatchRecord, WalWriter};

/// Bit pattern of Prometheus' staleness marker: a NaN that means "this series ended here".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One sample: a timestamp in milliseconds since the epoch and a float value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// A series and its samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The read side of storage, as the PromQL engine, the query API and the rules see it.
pub trait Queryable: Send + Sync {
    /// Every series that passes all `matchers`, with its samples in `[mint, maxt]` (inclusive,
    /// milliseconds), staleness markers included. Series with no sample in the range are left
    /// out. Sorted by labels.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series>;

    /// As [`Queryable::select`], one series at a time in no particular order, so a caller can
    /// count what it holds and stop (`each` returns false) before the rest is read.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        each: &mut dyn FnMut(Series) -> bool,
    ) {
        for s in self.select(matchers, mint, maxt) {
            if !each(s) {
                return;
            }
        }
    }

    /// Label sets of the series that pass `matchers` and have a sample in `[mint, maxt]`.
    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.select(matchers, mint, maxt)
            .into_iter()
            .map(|s| s.labels)
            .collect()
    }

    /// Sorted, unique label names of the series that pass any of the `matcher_sets` (all series
    /// when empty) within `[mint, maxt]`.
    fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String>;

    /// Sorted, unique values of label `name`, with the same selection as `label_names`.
    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("out of order sample for {labels} at {t}")]
    OutOfOrder { labels: String, t: i64 },
    #[error("storage I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Prometheus' "duplicate sample for timestamp": same time as the newest sample, other value.
    #[error("duplicate sample for timestamp {t} with a different value for {labels}")]
    DuplicateTimestamp { labels: String, t: i64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the database is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory for the WAL and snapshots; `None` keeps everything in memory only.
    pub path: Option<PathBuf>,
    /// Samples older than this (relative to the newest sample) are dropped.
    pub retention_ms: i64,
    /// Upper bound for the bytes held in memory; the oldest data goes first. `None`: no cap.
    pub max_bytes: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            path: None,
            retention_ms: 15 * 24 * 3600 * 1000,
            max_bytes: None,
        }
    }
}

/// What the database holds and has dropped, for `/metrics` and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub series: u64,
    /// Samples held, in sealed chunks and open heads.
    pub samples: u64,
    pub chunks: u64,
    /// Samples in sealed chunks.
    pub chunk_samples: u64,
    /// Encoded bytes of the sealed chunks.
    pub chunk_bytes: u64,
    /// Per-chunk bookkeeping besides the encoded bytes (bounds, count, allocation).
    pub chunk_meta_bytes: u64,
    pub head_samples: u64,
    /// Allocated bytes of the uncompressed open heads.
    pub head_bytes: u64,
    /// Labels, postings and per-series bookkeeping.
    pub index_bytes: u64,
    /// Everything above; what `Options::max_bytes` limits.
    pub total_bytes: u64,
    /// `(chunk_bytes + chunk_meta_bytes + head_bytes) / samples`: sample storage, index excluded.
    pub bytes_per_sample: f64,
    /// `chunk_bytes / chunk_samples`: the compression of sealed chunks alone.
    pub chunk_bytes_per_sample: f64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
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

/// A file that could not be read to its end when the database was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedFile {
    pub path: PathBuf,
    /// Where the file was renamed to (`<name>.corrupt-<unix ms>`), if the rename worked.
    pub moved_to: Option<PathBuf>,
    /// Byte offset of the first record that could not be used.
    pub offset: u64,
    pub reason: String,
}

/// What `Db::open` found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub snapshot_series: usize,
    pub wal_segments: usize,
    pub wal_records: usize,
    pub wal_samples: usize,
    /// WAL samples that could not be applied (unknown series after damage, out of order).
    pub wal_samples_skipped: usize,
    pub damaged: Vec<DamagedFile>,
}

/// A sample a batch did not store, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// Position of the sample in the batch.
    pub index: usize,
    pub labels: Labels,
    pub t: i64,
    pub out_of_order: bool,
}

impl Rejected {
    fn to_error(&self) -> Error {
        let labels = self.labels.to_string();
        if self.out_of_order {
            Error::OutOfOrder { labels, t: self.t }
        } else {
            Error::DuplicateTimestamp { labels, t: self.t }
        }
    }
}

/// The outcome of [`Db::append_batch`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendReport {
    pub appended: usize,
    /// Samples identical to the newest one of their series (same time, same value bits).
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// A WAL segment beyond this size makes the next commit write a snapshot, so the log (and the
/// replay at startup) stays bounded even if nobody calls [`Db::snapshot`].
const AUTO_SNAPSHOT_WAL_BYTES: u64 = 256 << 20;

struct CommitState {
    wal: Option<WalWriter>,
    /// Newest time at which retention last ran.
    retention_checked_at: i64,
    /// The series of the previous batch, by position: a scrape lists the same series in the
    /// same order every time, so comparing labels with these spares most hash lookups.
    /// Cleared whenever series are removed, so it never holds a series no longer in the head.
    last_batch: Vec<Arc<MemSeries>>,
    /// What the samples of earlier `ingest_scrape` calls resolved to (see [`ScrapeCache`]).
    scrape_cache: ScrapeCache,
    /// When a snapshot the WAL's size asked for last failed: the next try waits
    /// [`AUTO_SNAPSHOT_RETRY`], so a full disk does not cost a whole snapshot per append.
    auto_snapshot_failed_at: Option<std::time::Instant>,
}

/// How long after a failed size-triggered snapshot the next one is tried.
const AUTO_SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Prometheus' scrape cache: the series each sample of the previous scrape went to, keyed by
/// the sample's identity as the registry lists it (family name, suffix, label pairs in the
/// registry's order). A scrape that repeats the previous one then builds no label sets and
/// looks up no series by labels; only new samples do. Entries whose series retention removed
/// are dropped with it, so the cache never holds a series no longer in the head.
#[derive(Default)]
struct ScrapeCache {
    entries: std::collections::HashMap<Vec<u8>, ScrapeEntry>,
    /// Number of the current scrape; an entry seen in the previous one but not in this one
    /// gets a staleness marker.
    generation: u64,
}

struct ScrapeEntry {
    series: Arc<MemSeries>,
    seen: u64,
}

impl ScrapeCache {
    fn forget(&mut self, removed: &HashSet<series::SeriesRef>) {
        self.entries
            .retain(|_, e| !removed.contains(&e.series.sref));
    }
}

/// Appends a length-prefixed string to a scrape-cache key, so no two label sets share a key.
fn key_push(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

#[derive(Default)]
struct Counters {
    retention_dropped_chunks: AtomicU64,
    retention_dropped_samples: AtomicU64,
    memory_dropped_chunks: AtomicU64,
    memory_dropped_samples: AtomicU64,
    memory_dropped_bytes: AtomicU64,
    out_of_order: AtomicU64,
    duplicate_timestamp: AtomicU64,
    snapshots: AtomicU64,
    last_snapshot_bytes: AtomicU64,
}

/// The database. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    opts: Options,
    head: RwLock<Head>,
    commit: Mutex<CommitState>,
    /// Decoded chunks that queries read again (see `decoded.rs`).
    decoded: Mutex<decoded::DecodedCache>,
    snapshot_lock: Mutex<()>,
    /// Bytes held (chunks, heads, index), kept up to date by deltas for the memory cap.
    mem_bytes: AtomicI64,
    /// Newest sample time in the database, `i64::MIN` when empty.
    newest: AtomicI64,
    counters: Counters,
    report: OpenReport,
}

impl Default for Db {
    fn default() -> Self {
        Db::with_options(Options::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Db {
    fn with_options(opts: Options) -> Db {
        Db {
            opts,
            head: RwLock::new(Head::default()),
            commit: Mutex::new(CommitState {
                last_batch: Vec::new(),
                wal: None,
                retention_checked_at: i64::MIN,
                scrape_cache: ScrapeCache::default(),
                auto_snapshot_failed_at: None,
            }),
            decoded: Mutex::new(decoded::DecodedCache::new(decoded::DEFAULT_CAPACITY)),
            snapshot_lock: Mutex::new(()),
            mem_bytes: AtomicI64::new(0),
            newest: AtomicI64::new(i64::MIN),
            counters: Counters::default(),
            report: OpenReport::default(),
        }
    }

    /// Opens the database: with `opts.path`, loads the snapshot, replays the WAL after it and
    /// keeps logging there. Damaged files are moved aside and reported (see
    /// [`Db::open_report`]); the database opens with everything before the damage.
    pub fn open(opts: Options) -> Result<Db, Error> {
        let mut db = Db::with_options(opts);
        if let Some(dir) = db.opts.path.clone() {
            db.report = db.recover(&dir)?;
            if !db.report.damaged.is_empty() {
                // What was read from the damaged files now lives only in memory: write it out
                // before anything else, so the next start does not depend on them.
                db.snapshot()?;
            }
        }
        let mut cs = lock(&db.commit);
        db.maintain(&mut cs);
        drop(cs);
        Ok(db)
    }

    pub fn in_memory() -> Db {
        Db::default()
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// What opening found on disk: snapshot, WAL replay, damaged files.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    fn head_read(&self) -> RwLockReadGuard<'_, Head> {
        self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    fn head_write(&self) -> RwLockWriteGuard<'_, Head> {
        self.head.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one sample (one WAL record when persistent). Samples of a series must come in
    /// time order; repeating the newest sample exactly is a no-op.
    pub fn append(&self, labels: &Labels, t: i64, v: f64) -> Result<(), Error> {
        let r = self.append_batch(&[(labels.clone(), t, v)])?;
        match r.rejected.first() {
            Some(rej) => Err(rej.to_error()),
            None => Ok(()),
        }
    }

    /// Appends a batch as one unit: one WAL record and one fsync. Samples that are out of order
    /// or clash with a stored timestamp are left out and listed in the report; the others are
    /// stored. A WAL write that fails (full disk, read-only storage) does not fail the append:
    /// `wal.rs` counts and logs it, and the batch is kept in memory, durable again with the
    /// next snapshot that succeeds. `Err` is left for a WAL that refuses the record outright
    /// (nothing of the batch is stored then).
    pub fn append_batch(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendReport, Error> {
        self.commit_with(|db, cs| {
            let series = db.resolve(cs, samples);
            let batch: Vec<(&Arc<MemSeries>, i64, f64)> = series
                .iter()
                .zip(samples)
                .map(|(s, (_, t, v))| (s, *t, *v))
                .collect();
            db.commit_locked(cs, &batch)
        })
    }

    /// Runs one commit under the commit lock, then writes a snapshot if the WAL grew too big.
    /// The batch is stored whatever the snapshot does: a failed one is counted and logged by
    /// [`Db::snapshot`] and tried again [`AUTO_SNAPSHOT_RETRY`] later, not at every append.
    fn commit_with(
        &self,
        f: impl FnOnce(&Db, &mut CommitState) -> Result<AppendReport, Error>,
    ) -> Result<AppendReport, Error> {
        let (report, wants_snapshot) = {
            let mut cs = lock(&self.commit);
            let r = f(self, &mut cs)?;
            let big = cs
                .wal
                .as_ref()
                .is_some_and(|w| w.bytes() > AUTO_SNAPSHOT_WAL_BYTES);
            let waiting = cs
                .auto_snapshot_failed_at
                .is_some_and(|t| t.elapsed() < AUTO_SNAPSHOT_RETRY);
            (r, big && !waiting)
        };
        if wants_snapshot {
            let failed = match self.snapshot() {
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?AUTO_SNAPSHOT_RETRY, "the snapshot the write-ahead log's size asked for failed; the batch is stored");
                    true
                }
            };
            lock(&self.commit).auto_snapshot_failed_at = failed.then(std::time::Instant::now);
        }
        Ok(report)
    }

    /// Finds or creates the series of each sample.
    fn resolve(&self, cs: &mut CommitState, samples: &[(Labels, i64, f64)]) -> Vec<Arc<MemSeries>> {
        let mut out: Vec<Option<Arc<MemSeries>>> = Vec::with_capacity(samples.len());
        let mut missing = Vec::new();
        {
            let h = self.head_read();
            for (i, (l, _, _)) in samples.iter().enumerate() {
                // Same position in the previous batch (scrapes), or the previous sample
                // (imports send a series' samples together), before the hash lookup.
                let known = cs
                    .last_batch
                    .get(i)
                    .filter(|p| p.labels == *l)
                    .or_else(|| {
                        out.last()
                            .and_then(|p| p.as_ref())
                            .filter(|p| p.labels == *l)
                    })
                    .cloned();
                match known.or_else(|| h.get(l).cloned()) {
                    Some(s) => out.push(Some(s)),
                    None => {
                        out.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let mut h = self.head_write();
            for i in missing {
                let known = h.get(&samples[i].0).is_some();
                let s = h.get_or_create(&samples[i].0);
                if !known {
                    self.mem_bytes
                        .fetch_add(s.index_bytes() as i64, Ordering::Relaxed);
                }
                out[i] = Some(s);
            }
        }
        let series: Vec<Arc<MemSeries>> = out.into_iter().flatten().collect();
        cs.last_batch.clone_from(&series);
        series
    }

    /// Commits samples whose series are already resolved (`series`, time, value).
    fn commit_locked(
        &self,
        cs: &mut CommitState,
        batch: &[(&Arc<MemSeries>, i64, f64)],
    ) -> Result<AppendReport, Error> {
        let mut report = AppendReport::default();
        if batch.is_empty() {
            return Ok(report);
        }
        let series: Vec<&Arc<MemSeries>> = batch.iter().map(|b| b.0).collect();
        let samples = batch;

        // Decide every sample before writing anything, so the WAL holds exactly what is applied.
        // A series may occur more than once in a batch: `pending` holds its newest accepted
        // sample until the batch is applied (only the committer, under the commit lock, uses it).
        let mut accepted: Vec<usize> = Vec::with_capacity(samples.len());
        for (i, (s, t, v)) in samples.iter().enumerate() {
            let mut d = s.lock();
            let last = d.pending.or_else(|| d.last_key());
            match admit(last, *t, *v) {
                Admit::Append => {
                    d.pending = Some((*t, v.to_bits()));
                    accepted.push(i);
                }
                Admit::Duplicate => report.duplicates += 1,
                Admit::OutOfOrder | Admit::DuplicateTimestamp => {
                    let out_of_order = *t < last.map_or(i64::MIN, |l| l.0);
                    let c = if out_of_order {
                        &self.counters.out_of_order
                    } else {
                        &self.counters.duplicate_timestamp
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    report.rejected.push(Rejected {
                        index: i,
                        labels: s.labels.clone(),
                        t: *t,
                        out_of_order,
                    });
                }
            }
        }

        if let Some(w) = cs.wal.as_mut() {
            if !accepted.is_empty() {
                let mut rec = BatchRecord::default();
                let mut named = HashSet::new();
                for &i in &accepted {
                    let s = &series[i];
                    if !s.is_in_wal() && named.insert(s.sref) {
                        rec.series.push((s.sref, s.labels.clone()));
                    }
                    rec.samples.push((s.sref, samples[i].1, samples[i].2));
                }
                if let Err(e) = w.log(&rec.encode()) {
                    for &i in &accepted {
                        series[i].lock().pending = None;
                    }
                    return Err(Error::Io {
                        path: w.path(),
                        source: e,
                    });
                }
                for &i in &accepted {
                    series[i].set_in_wal();
                }
            }
        }

        for &i in &accepted {
            let (_, t, v) = samples[i];
            let delta = series[i].lock().push(Sample { t, v });
            self.mem_bytes.fetch_add(delta, Ordering::Relaxed);
            self.newest.fetch_max(t, Ordering::Relaxed);
        }
        report.appended = accepted.len();
        self.maintain(cs);
        Ok(report)
    }

    /// Writes what a scrape of the process' own registry returned at time `t`, as Prometheus
    /// would store a scrape: counters and gauges as they are, histograms as `_bucket{le}`,
    /// `_sum` and `_count`, summaries as quantiles, `_sum` and `_count`. Series that were in the
    /// previous scrape and are missing now get a staleness marker.
    ///
    /// The whole scrape is one batch (one WAL record, one fsync). Samples that are out of order
    /// or clash with a stored timestamp are skipped while the rest is stored; the first such
    /// sample is then returned as the error.
    pub fn ingest_scrape(
        &self,
        t: i64,
        families: &[prometheus::proto::MetricFamily],
    ) -> Result<usize, Error> {
        let mut scraped = 0;
        let report = self.commit_with(|db, cs| {
            let mut cache = std::mem::take(&mut cs.scrape_cache);
            cache.generation += 1;
            let generation = cache.generation;
            let mut batch: Vec<(Arc<MemSeries>, i64, f64)> = Vec::new();
            let mut key = Vec::new();
            for_each_scrape_sample(families, &mut key, |key, labels, v| {
                let entry = match cache.entries.get_mut(key) {
                    Some(e) => e,
                    None => {
                        let series = db.series_for(&labels());
                        cache
                            .entries
                            .entry(key.to_vec())
                            .or_insert(ScrapeEntry { series, seen: 0 })
                    }
                };
                entry.seen = generation;
                batch.push((entry.series.clone(), t, v));
            });
            scraped = batch.len();
            // Series of the previous scrape that are missing now end with a staleness marker
            // (once: their entries go), unless another entry wrote to the same series.
            let written: HashSet<series::SeriesRef> = batch.iter().map(|b| b.0.sref).collect();
            cache.entries.retain(|_, e| {
                if e.seen == generation {
                    return true;
                }
                if e.seen + 1 == generation && !written.contains(&e.series.sref) {
                    batch.push((e.series.clone(), t, stale_nan()));
                }
                false
            });
            cs.scrape_cache = cache;
            let refs: Vec<(&Arc<MemSeries>, i64, f64)> =
                batch.iter().map(|(s, t, v)| (s, *t, *v)).collect();
            db.commit_locked(cs, &refs)
        })?;
        match report.rejected.first() {
            Some(r) => Err(r.to_error()),
            None => Ok(scraped),
        }
    }

    /// The series with these labels, created if missing (the appender's side, commit lock held).
    fn series_for(&self, labels: &Labels) -> Arc<MemSeries> {
        if let Some(s) = self.head_read().get(labels) {
            return s.clone();
        }
        let mut h = self.head_write();
        let known = h.get(labels).is_some();
        let s = h.get_or_create(labels);
        if !known {
            self.mem_bytes
                .fetch_add(s.index_bytes() as i64, Ordering::Relaxed);
        }
        s
    }

    /// Writes a snapshot of everything held and drops the WAL segments it covers. Returns the
    /// snapshot's size in bytes (0 for an in-memory database). Appends wait only while the
    /// series are being listed, not while the file is written.
    pub fn snapshot(&self) -> Result<u64, Error> {
        let Some(dir) = self.opts.path.clone() else {
            return Ok(0);
        };
        let _one = lock(&self.snapshot_lock);
        let (covered, next_ref, captured) = {
            let mut cs = lock(&self.commit);
            let covered = match cs.wal.as_mut() {
                Some(w) => {
                    let p = w.path();
                    w.rotate().map_err(io_err(&p))?
                }
                None => 0,
            };
            let h = self.head_read();
            let captured: Vec<snapshot::SnapshotSeries> = h
                .all()
                .iter()
                .map(|s| {
                    let d = s.lock();
                    snapshot::SnapshotSeries {
                        sref: s.sref,
                        labels: s.labels.clone(),
                        chunks: d.chunks.iter().cloned().collect(),
                        head: d.head.samples(),
                    }
                })
                .collect();
            (covered, h.next_ref(), captured)
        };
        let header = snapshot::Header {
            wal_seq: covered,
            next_ref,
        };
        let size =
            snapshot::write(&dir, header, captured).map_err(io_err(&snapshot::path(&dir)))?;
        for (seq, p) in wal::list_segments(&dir).map_err(io_err(&dir))? {
            if seq <= covered {
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_snapshot_bytes
            .store(size, Ordering::Relaxed);
        tracing::debug!(path = %snapshot::path(&dir).display(), bytes = size, wal_seq = covered, "tsdb snapshot written");
        Ok(size)
    }

    /// Bytes of the cache of decoded chunks queries share (bounded by its capacity; not in
    /// [`Stats::total_bytes`], which is the stored data `max_bytes` limits).
    pub fn query_cache_bytes(&self) -> u64 {
        lock(&self.decoded).bytes() as u64
    }

    /// Counts what is held, walking every series.
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
                st.chunk_meta_bytes += chunk::Chunk::META_BYTES as u64;
            }
            st.head_samples += d.head.len() as u64;
            st.head_bytes += d.head_bytes() as u64;
            let first = d.chunks.front().map(|c| c.mint).or(d.head.first_t());
            let last = d.last.map(|x| x.t);
            st.min_time = match (st.min_time, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            st.max_time = st.max_time.max(last);
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
        st.retention_dropped_chunks = c.retention_dropped_chunks.load(Ordering::Relaxed);
        st.retention_dropped_samples = c.retention_dropped_samples.load(Ordering::Relaxed);
        st.memory_dropped_chunks = c.memory_dropped_chunks.load(Ordering::Relaxed);
        st.memory_dropped_samples = c.memory_dropped_samples.load(Ordering::Relaxed);
        st.memory_dropped_bytes = c.memory_dropped_bytes.load(Ordering::Relaxed);
        st.out_of_order_samples = c.out_of_order.load(Ordering::Relaxed);
        st.duplicate_timestamp_samples = c.duplicate_timestamp.load(Ordering::Relaxed);
        st.snapshots = c.snapshots.load(Ordering::Relaxed);
        st.last_snapshot_bytes = c.last_snapshot_bytes.load(Ordering::Relaxed);
        st.wal_bytes = lock(&self.commit).wal.as_ref().map_or(0, |w| w.bytes());
        st
    }

    /// Seals every open head into a chunk. Benchmarks use it to measure fully compressed data;
    /// the appender never needs it.
    pub fn seal_heads(&self) {
        let _cs = lock(&self.commit);
        for s in self.head_read().all() {
            let mut d = s.lock();
            let before = d.bytes() as i64;
            d.seal();
            self.mem_bytes
                .fetch_add(d.bytes() as i64 - before, Ordering::Relaxed);
        }
    }

    /// Series handles passing any of the matcher sets (all when empty), sorted by ref.
    fn selected(&self, matcher_sets: &[Vec<Matcher>]) -> Vec<Arc<MemSeries>> {
        let h = self.head_read();
        if matcher_sets.is_empty() {
            return h.all();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for ms in matcher_sets {
            for s in h.select(ms) {
                if seen.insert(s.sref) {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// Flattens metric families into `(labels, value)` pairs the way the exposition format does.
pub fn scrape_samples(families: &[prometheus::proto::MetricFamily]) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    let mut key = Vec::new();
    for_each_scrape_sample(families, &mut key, |_, labels, v| out.push((labels(), v)));
    out
}

/// Calls `f(key, labels, value)` for every sample of the families, in exposition order:
/// counters and gauges as they are, histograms as `_bucket{le}`, `_sum` and `_count`,
/// summaries as quantiles, `_sum` and `_count`. `key` identifies the sample's series by what
/// the registry lists (name, suffix, label pairs in its order) without building its label set;
/// `labels()` builds the set, for the samples that need it.
fn for_each_scrape_sample(
    families: &[prometheus::proto::MetricFamily],
    key: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &dyn Fn() -> Labels, f64),
) {
    use prometheus::proto::MetricType;
    for fam in families {
        let name = fam.name();
        for m in fam.get_metric() {
            key.clear();
            key_push(key, name);
            for l in m.get_label() {
                key_push(key, l.name());
                key_push(key, l.value());
            }
            let base_len = key.len();
            let mut emit = |suffix: &str, extra: Option<(&str, String)>, v: f64| {
                key.truncate(base_len);
                key.push(0xff);
                key_push(key, suffix);
                if let Some((k, val)) = &extra {
                    key_push(key, k);
                    key_push(key, val);
                }
                let build = || {
                    let mut p: Vec<(String, String)> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), l.value().to_string()))
                        .collect();
                    p.push(("__name__".into(), format!("{name}{suffix}")));
                    if let Some((k, val)) = &extra {
                        p.push((k.to_string(), val.clone()));
                    }
                    Labels::from_pairs(p)
                };
                f(key, &build, v);
            };
            match fam.get_field_type() {
                MetricType::COUNTER => emit("", None, m.get_counter().value()),
                MetricType::GAUGE => emit("", None, m.get_gauge().value()),
                // The crate's registry never produces untyped metrics.
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        emit(
                            "_bucket",
                            Some(("le", fmt_float(b.upper_bound()))),
                            b.cumulative_count() as f64,
                        );
                    }
                    emit(
                        "_bucket",
                        Some(("le", "+Inf".into())),
                        h.get_sample_count() as f64,
                    );
                    emit("_sum", None, h.get_sample_sum());
                    emit("_count", None, h.get_sample_count() as f64);
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        emit("", Some(("quantile", fmt_float(q.quantile()))), q.value());
                    }
                    emit("_sum", None, s.sample_sum());
                    emit("_count", None, s.sample_count() as f64);
                }
            }
        }
    }
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` does for label values like `le`.
fn fmt_float(f: f64) -> String {
    if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

impl Queryable for Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let candidates = self.head_read().select(matchers);
        let mut out: Vec<Series> = candidates
            .iter()
            .filter_map(|s| {
                let samples = s.samples_in_cached(mint, maxt, Some(&self.decoded));
                (!samples.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        each: &mut dyn FnMut(Series) -> bool,
    ) {
        let candidates = self.head_read().select(matchers);
        for s in candidates {
            let samples = s.samples_in_cached(mint, maxt, Some(&self.decoded));
            if !samples.is_empty()
                && !each(Series {
                    labels: s.labels.clone(),
                    samples,
                })
            {
                return;
            }
        }
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let candidates = self.head_read().select(matchers);
        let mut out: Vec<Labels> = candidates
            .iter()
            .filter(|s| s.has_sample_in(mint, maxt))
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .selected(matcher_sets)
            .iter()
            .filter(|s| s.has_sample_in(mint, maxt))
            .flat_map(|s| s.labels.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let mut vals: Vec<String> = self
            .selected(matcher_sets)
            .iter()
            .filter(|s| s.labels.get(name).is_some() && s.has_sample_in(mint, maxt))
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        vals
    }
}

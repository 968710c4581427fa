//! The time series database: series with their labels, samples in compressed chunks, the
//! inverted label index, and on disk block files, a write-ahead log and a head snapshot.
//!
//! The head in memory holds each series' recent samples: at least [`Db::head_range_ms`] back
//! from the newest sample (enough for the longest range the rules and the controller read, see
//! [`Db::require_head_range`]) plus what is not yet in a file. Once a [`block::BLOCK_SPAN_MS`]
//! period is [`block::PERSIST_GRACE_MS`] behind the newest sample, its sealed chunks go into an
//! immutable block file under `Options::path`; what is older than the head's range is then read
//! from the files on demand. The WAL and the head snapshot cover only what is not in a file yet,
//! so a restart reads the block indexes and a few hours of head, whatever the retention.
//!
//! It owns storage only: it never evaluates PromQL (that is `promql`), never polls nodes (that
//! is `coordinator`) and never writes to a metrics registry (the metrics layer reads
//! [`Db::gauges`]). Readers go through the [`Queryable`] trait.
//!
//! Files: `chunk.rs` (compression, with `intseq.rs`, `bits.rs` and `xor.rs`), `series.rs` (one
//! series and its open head), `head.rs` + `index.rs` (the series set and postings), `block.rs`
//! (block files), `persist.rs` (writing the head to disk: blocks and snapshots), `compact.rs`
//! (merging a day's blocks into one, with `downsample.rs` for days past
//! `Options::downsample_after_ms`), `query.rs`
//! (reading memory and files as one), `retention.rs`, `wal.rs`, `snapshot.rs` and
//! `recovery.rs` (with `codec.rs` for their bytes), `scrape.rs` (storing a registry scrape),
//! `stats.rs` (running counters and the full walk), `import.rs` (OpenMetrics text import);
//! `tests.rs` tests the whole.
//!
//! Concurrency: many readers, one appender. Readers hold the series-set lock only to collect
//! the series they need and each series' lock only to copy the chunks they overlap; commits are
//! serialized by their own lock, which also orders WAL records and snapshots.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::labels::Labels;

mod bits;
mod block;
pub mod chunk;
mod codec;
mod compact;
mod decoded;
pub mod downsample;
mod head;
pub mod import;
mod index;
mod intseq;
mod persist;
mod query;
mod recovery;
mod retention;
mod scrape;
mod series;
mod snapshot;
mod stats;
#[cfg(test)]
mod tests;
mod wal;
pub mod xor;

pub use block::BLOCK_SPAN_MS;
pub use import::{import_openmetrics, ImportError, ImportStats};
pub use scrape::scrape_samples;
pub use stats::{Gauges, Stats};

use block::Block;
use head::Head;
use scrape::ScrapeCache;
use series::{admit, Admit, MemSeries};
use stats::Counters;
use wal::{BatchRecord, FailureLog, WalWriter};

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
    fn select(&self, matchers: &[crate::labels::Matcher], mint: i64, maxt: i64) -> Vec<Series>;

    /// As [`Queryable::select`], one series at a time in no particular order, so a caller can
    /// count what it holds and stop (`each` returns false) before the rest is read.
    fn select_each(
        &self,
        matchers: &[crate::labels::Matcher],
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
    fn series(&self, matchers: &[crate::labels::Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.select(matchers, mint, maxt)
            .into_iter()
            .map(|s| s.labels)
            .collect()
    }

    /// Sorted, unique label names of the series that pass any of the `matcher_sets` (all series
    /// when empty) within `[mint, maxt]`.
    fn label_names(
        &self,
        matcher_sets: &[Vec<crate::labels::Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String>;

    /// Sorted, unique values of label `name`, with the same selection as `label_names`.
    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<crate::labels::Matcher>],
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

/// What the head keeps in memory at least, back from the newest sample, unless
/// [`Options::head_range_ms`] says otherwise: Prometheus' head holds 2-3 h.
pub const DEFAULT_HEAD_RANGE_MS: i64 = 3 * 3600 * 1000;

/// Added to a range the readers ask for in [`Db::require_head_range`], so that a rule
/// evaluated a little late still finds its whole range in memory.
pub const HEAD_RANGE_MARGIN_MS: i64 = 3600 * 1000;

/// How the database is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory for block files, the WAL and the head snapshot; `None` keeps everything in
    /// memory only.
    pub path: Option<PathBuf>,
    /// Samples older than this (relative to the newest sample) are dropped: chunks in memory,
    /// and block files once all their samples are that old.
    pub retention_ms: i64,
    /// Most bytes the stored data may take: block files, WAL segments and what memory holds.
    /// The oldest block files go first, then the oldest chunks in memory. `None`: no cap.
    pub max_bytes: Option<u64>,
    /// The least the head keeps in memory, back from the newest sample.
    pub head_range_ms: i64,
    /// fsync every WAL record before the commit returns. Off only for writers that can redo
    /// their work after a crash (a simulation writing a storage directory): the records still
    /// reach the file, block files and snapshots are still fsynced.
    pub sync_wal: bool,
    /// Days of block files older than this (and than the head's range) are downsampled by
    /// compaction (`downsample.rs`). `None`: raw samples are kept for the whole retention.
    pub downsample_after_ms: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            path: None,
            retention_ms: 15 * 24 * 3600 * 1000,
            max_bytes: None,
            head_range_ms: DEFAULT_HEAD_RANGE_MS,
            sync_wal: true,
            downsample_after_ms: None,
        }
    }
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
    pub blocks: usize,
    pub snapshot_series: usize,
    pub wal_segments: usize,
    pub wal_records: usize,
    pub wal_samples: usize,
    /// WAL samples that could not be applied (unknown series after damage, out of order).
    pub wal_samples_skipped: usize,
    /// Files (or, in a damaged snapshot or WAL segment, stretches of records) that could not be
    /// used. A damaged record costs only itself: the records after it are read.
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

/// Memory grown by this much since the last snapshot makes the next commit write one: a
/// backfill (which moves the newest time once, then fills in behind it) is written to block
/// files in slices of this size instead of piling up in memory.
const BULK_PERSIST_BYTES: i64 = 64 << 20;

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
    /// When a snapshot a commit asked for last failed: the next try waits
    /// [`AUTO_SNAPSHOT_RETRY`], so a full disk does not cost a whole snapshot per append.
    auto_snapshot_failed_at: Option<std::time::Instant>,
}

/// How long after a failed automatic snapshot the next one is tried.
const AUTO_SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// The database. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    opts: Options,
    head: RwLock<Head>,
    /// Loaded block files, sorted by (mint, seq).
    blocks: RwLock<Vec<Arc<Block>>>,
    next_block_seq: AtomicU64,
    commit: Mutex<CommitState>,
    /// Decoded chunks that queries read again (see `decoded.rs`).
    decoded: Mutex<decoded::DecodedCache>,
    /// Serializes snapshots (block writes, head snapshots) and block deletions.
    snapshot_lock: Mutex<()>,
    snapshot_failures: Mutex<FailureLog>,
    /// Newest sample time in the database, `i64::MIN` when empty.
    newest: AtomicI64,
    /// What the head keeps in memory, back from the newest sample.
    head_range: AtomicI64,
    /// The period boundary below which the last snapshot wrote sealed chunks to block files.
    persisted_mark: AtomicI64,
    /// `mem_bytes` right after the last snapshot (see [`BULK_PERSIST_BYTES`]).
    mem_at_snapshot: AtomicI64,
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
        let head_range = opts.head_range_ms;
        Db {
            opts,
            head: RwLock::new(Head::default()),
            blocks: RwLock::new(Vec::new()),
            next_block_seq: AtomicU64::new(1),
            commit: Mutex::new(CommitState {
                last_batch: Vec::new(),
                wal: None,
                retention_checked_at: i64::MIN,
                scrape_cache: ScrapeCache::default(),
                auto_snapshot_failed_at: None,
            }),
            decoded: Mutex::new(decoded::DecodedCache::new(decoded::DEFAULT_CAPACITY)),
            snapshot_lock: Mutex::new(()),
            snapshot_failures: Mutex::new(FailureLog::new()),
            newest: AtomicI64::new(i64::MIN),
            head_range: AtomicI64::new(head_range),
            persisted_mark: AtomicI64::new(i64::MIN),
            mem_at_snapshot: AtomicI64::new(0),
            counters: Counters::default(),
            report: OpenReport::default(),
        }
    }

    /// Opens the database: with `opts.path`, reads the block files' indexes, loads the head
    /// snapshot, replays the WAL after it and keeps logging there. Damaged files are moved
    /// aside and reported (see [`Db::open_report`]); the database opens with the rest.
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

    /// What opening found on disk: blocks, snapshot, WAL replay, damaged files.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    fn head_read(&self) -> RwLockReadGuard<'_, Head> {
        self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    fn head_write(&self) -> RwLockWriteGuard<'_, Head> {
        self.head.write().unwrap_or_else(|e| e.into_inner())
    }

    fn blocks_read(&self) -> RwLockReadGuard<'_, Vec<Arc<Block>>> {
        self.blocks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn blocks_write(&self) -> RwLockWriteGuard<'_, Vec<Arc<Block>>> {
        self.blocks.write().unwrap_or_else(|e| e.into_inner())
    }

    /// (block files, their bytes on disk, bytes of their tables in memory).
    fn block_totals(&self) -> (u64, u64, u64) {
        let b = self.blocks_read();
        (
            b.len() as u64,
            b.iter().map(|b| b.meta.bytes).sum(),
            b.iter().map(|b| b.memory_bytes() as u64).sum(),
        )
    }

    /// How far back from the newest sample the head keeps samples in memory.
    pub fn head_range_ms(&self) -> i64 {
        self.head_range.load(Ordering::Relaxed)
    }

    /// Asks the head to keep at least `range_ms` (plus [`HEAD_RANGE_MARGIN_MS`]) in memory: the
    /// longest range the loaded rules and estimators read, so that their evaluations never go
    /// to the files. Replaces the previous request (rules may be reloaded with shorter
    /// ranges); never below [`Options::head_range_ms`]. A longer range is filled from the block
    /// files at once.
    pub fn require_head_range(&self, range_ms: i64) {
        let want = range_ms
            .saturating_add(HEAD_RANGE_MARGIN_MS)
            .max(self.opts.head_range_ms);
        let before = self.head_range.swap(want, Ordering::Relaxed);
        if want > before {
            self.load_head_range();
        }
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
    /// `wal.rs` counts and logs it, keeps the record and writes it before the next one, so the
    /// batch is durable as soon as the disk takes writes again; meanwhile it is in memory.
    /// `Err` is left for a WAL that refuses the record outright (nothing of the batch is
    /// stored then).
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

    /// Runs one commit under the commit lock, then writes a snapshot if one is due (see
    /// [`Db::snapshot_due`]). The batch is stored whatever the snapshot does: a failed one is
    /// counted and logged by [`Db::snapshot`] and tried again [`AUTO_SNAPSHOT_RETRY`] later,
    /// not at every append.
    fn commit_with(
        &self,
        f: impl FnOnce(&Db, &mut CommitState) -> Result<AppendReport, Error>,
    ) -> Result<AppendReport, Error> {
        let (report, wants_snapshot) = {
            let mut cs = lock(&self.commit);
            let r = f(self, &mut cs)?;
            let due = self.snapshot_due(&cs);
            (r, due)
        };
        if wants_snapshot {
            let failed = match self.snapshot() {
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?AUTO_SNAPSHOT_RETRY, "writing the head to disk failed; the batch is stored");
                    true
                }
            };
            lock(&self.commit).auto_snapshot_failed_at = failed.then(std::time::Instant::now);
        }
        Ok(report)
    }

    /// Whether a commit should write the head to disk now: a period is due for its block file,
    /// the WAL grew past [`AUTO_SNAPSHOT_WAL_BYTES`], or a backfill grew memory by
    /// [`BULK_PERSIST_BYTES`].
    fn snapshot_due(&self, cs: &CommitState) -> bool {
        if self.opts.path.is_none()
            || cs
                .auto_snapshot_failed_at
                .is_some_and(|t| t.elapsed() < AUTO_SNAPSHOT_RETRY)
        {
            return false;
        }
        let big_wal = cs
            .wal
            .as_ref()
            .is_some_and(|w| w.bytes() > AUTO_SNAPSHOT_WAL_BYTES);
        let mark = persist::mark(self.newest.load(Ordering::Relaxed));
        let prev = self.persisted_mark.load(Ordering::Relaxed);
        let mut period_due = mark > prev;
        if period_due && (prev == i64::MIN || mark - prev > BLOCK_SPAN_MS) {
            // The newest time jumped by more than a period: the first samples, a backfill that
            // writes one series far ahead of the others, or the first scrape after a long stop.
            // The periods in between are written with the next period that comes due at the
            // normal pace, or by size, rather than one series at a time now.
            self.persisted_mark.store(mark, Ordering::Relaxed);
            period_due = false;
        }
        let grown = self.counters.mem_bytes.load(Ordering::Relaxed)
            - self.mem_at_snapshot.load(Ordering::Relaxed)
            > BULK_PERSIST_BYTES;
        big_wal || period_due || grown
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
                    self.counters
                        .mem_bytes
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
                if let Err(e) = w.log(&rec.encode(), &self.counters) {
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
            let mut d = series[i].lock();
            let before = d.footprint();
            d.push(Sample { t, v });
            self.counters.account(d.footprint() - before);
            self.newest.fetch_max(t, Ordering::Relaxed);
        }
        report.appended = accepted.len();
        self.maintain(cs);
        Ok(report)
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
            self.counters
                .mem_bytes
                .fetch_add(s.index_bytes() as i64, Ordering::Relaxed);
        }
        s
    }

    /// Bytes of the cache of decoded chunks queries share (bounded by its capacity; not in
    /// [`Stats::total_bytes`], which is the stored data `max_bytes` limits).
    pub fn query_cache_bytes(&self) -> u64 {
        lock(&self.decoded).bytes() as u64
    }

    /// Seals every open head into a chunk. Benchmarks use it to measure fully compressed data;
    /// the appender never needs it.
    pub fn seal_heads(&self) {
        let _cs = lock(&self.commit);
        for s in self.head_read().all() {
            let mut d = s.lock();
            let before = d.footprint();
            d.seal();
            self.counters.account(d.footprint() - before);
        }
    }
}

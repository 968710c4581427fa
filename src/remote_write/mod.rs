//! Remote write: pushes every sample the tsdb stores to central Prometheus-compatible stores
//! (Prometheus with `--web.enable-remote-write-receiver`, VictoriaMetrics, Mimir, …) with the
//! remote write 1.0 protocol, through a durable queue per remote so an outage of the central
//! store loses nothing that fits the queue. It reads the [`Db`]; it never writes it, and it
//! does not touch the scrape loop.
//!
//! How samples are found: the tsdb accepts samples of a series only in time order, so a
//! per-series cursor (newest timestamp already queued) finds exactly the new samples of every
//! series, whichever loop wrote them (scrapes, recorded rules, staleness markers) and however
//! their batches interleave. Every `read_interval` the reader selects all series over
//! `[newest queued − SLACK, ∞)`, keeps what lies past each series' cursor, adds the external
//! labels, applies each remote's `write_relabel_configs`, and appends the result to each
//! remote's queue (one fsync per queue per pass); then it persists the cursors
//! (`<storage>/remote_write/cursors`). Samples committed with a timestamp more than `SLACK`
//! older than the newest queued one are not pushed (a receiver would reject them as out of
//! order anyway); neither is the history stored before remote write was first configured.
//!
//! Files: `proto.rs` (wire format), `relabel.rs`, `queue.rs` (durable queue), `client.rs`
//! (HTTP); metrics `depin_remote_write_*{remote}` live here.

pub mod client;
pub mod proto;
pub mod queue;
pub mod relabel;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use tokio::sync::{watch, Notify};

use crate::config::remote_write::RemoteWriteConfig;
use crate::labels::Labels;
use crate::tsdb::{Db, Queryable};
use client::{Outcome, Sender};
use queue::Queue;

/// How far back of the newest queued sample the reader looks for late samples of other series.
pub const SLACK_MS: i64 = 60_000;

/// How often the reader looks for new samples by default.
pub const DEFAULT_READ_INTERVAL: Duration = Duration::from_secs(1);

/// How long a shutdown keeps trying to flush what is queued (the rest stays on disk).
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("remote write queue at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registering the remote write metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `depin_remote_write_*` families, labelled by `remote` (the remote's name).
#[derive(Clone)]
pub struct RemoteMetrics {
    pub samples: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dropped: IntCounterVec,
    pub queue_samples: GaugeVec,
    pub queue_lag: GaugeVec,
    pub bytes: IntCounterVec,
    pub last_send: GaugeVec,
}

impl RemoteMetrics {
    pub fn register(registry: &Registry) -> Result<RemoteMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["remote"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), &["remote"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(RemoteMetrics {
            samples: counter(
                "depin_remote_write_samples_total",
                "Samples the remote accepted.",
            )?,
            failed: counter(
                "depin_remote_write_failed_samples_total",
                "Samples the remote refused for good (HTTP 4xx other than 429) and that were dropped.",
            )?,
            retried: counter(
                "depin_remote_write_retried_samples_total",
                "Samples whose send failed in a way worth retrying (5xx, 429, network, timeout), counted per attempt.",
            )?,
            dropped: counter(
                "depin_remote_write_dropped_samples_total",
                "Samples dropped unsent because the queue was over its capacity (oldest first).",
            )?,
            queue_samples: gauge(
                "depin_remote_write_queue_samples",
                "Samples in the durable queue waiting to be sent.",
            )?,
            queue_lag: gauge(
                "depin_remote_write_queue_lag_seconds",
                "Newest queued sample timestamp minus newest sent sample timestamp.",
            )?,
            bytes: counter(
                "depin_remote_write_bytes_total",
                "Compressed request body bytes the remote accepted.",
            )?,
            last_send: gauge(
                "depin_remote_write_last_send_timestamp_seconds",
                "Unix time of the last successful send.",
            )?,
        })
    }
}

/// One remote: its config, queue and HTTP sender.
struct Remote {
    cfg: RemoteWriteConfig,
    queue: Arc<Mutex<Queue>>,
    queue_dir: PathBuf,
    sender: Sender,
    appended: Arc<Notify>,
}

/// The per-series cursors: the newest timestamp queued for each series.
#[derive(Default)]
struct Cursors {
    series: HashMap<Labels, i64>,
    /// Newest timestamp queued over all series.
    newest: Option<i64>,
    /// Lower bound when nothing was queued yet: remote write starts with the samples after it.
    start: i64,
}

/// Pushes the tsdb's samples to the configured remotes. Build it after the Db, then
/// `tokio::spawn(writer.run(shutdown))`.
pub struct RemoteWriter {
    remotes: Vec<Arc<Remote>>,
    external_labels: Labels,
    db: Arc<Db>,
    cursors: Mutex<Cursors>,
    cursor_path: PathBuf,
    metrics: RemoteMetrics,
    read_interval: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RemoteWriter {
    /// Opens the queues under `<storage_path>/remote_write/<name>/` (keeping what is unsent
    /// from an earlier run), restores the read cursors and registers the metrics in
    /// `registry`. With no configs it does nothing and `run` returns at once (no metrics are
    /// registered, no directory is made).
    pub fn new(
        configs: &[RemoteWriteConfig],
        external_labels: &Labels,
        db: Arc<Db>,
        storage_path: &Path,
        registry: &Registry,
    ) -> Result<RemoteWriter, RemoteWriteError> {
        let base = storage_path.join("remote_write");
        let cursor_path = base.join("cursors");
        let metrics = RemoteMetrics::register(&Registry::new())?;
        let mut w = RemoteWriter {
            remotes: Vec::new(),
            external_labels: external_labels.clone(),
            db,
            cursors: Mutex::new(Cursors::default()),
            cursor_path,
            metrics,
            read_interval: DEFAULT_READ_INTERVAL,
        };
        if configs.is_empty() {
            return Ok(w);
        }
        w.metrics = RemoteMetrics::register(registry)?;
        for cfg in configs {
            let dir = base.join(&cfg.name);
            let (q, report) =
                Queue::open(&dir, cfg.queue.capacity).map_err(|source| RemoteWriteError::Io {
                    path: dir.clone(),
                    source,
                })?;
            if report.truncated_bytes > 0 {
                tracing::warn!(remote = %cfg.name, path = %dir.display(), bytes = report.truncated_bytes, "remote write queue had a torn or damaged tail; cut it");
            }
            if report.samples > 0 {
                tracing::info!(remote = %cfg.name, samples = report.samples, "remote write queue holds unsent samples from the last run");
            }
            let name = cfg.name.as_str();
            w.metrics
                .queue_samples
                .with_label_values(&[name])
                .set(q.pending_samples() as f64);
            for c in [
                &w.metrics.samples,
                &w.metrics.failed,
                &w.metrics.retried,
                &w.metrics.dropped,
                &w.metrics.bytes,
            ] {
                c.with_label_values(&[name]);
            }
            w.metrics.queue_lag.with_label_values(&[name]).set(0.0);
            w.metrics.last_send.with_label_values(&[name]).set(0.0);
            w.remotes.push(Arc::new(Remote {
                sender: Sender::new(cfg)?,
                cfg: cfg.clone(),
                queue: Arc::new(Mutex::new(q)),
                queue_dir: dir,
                appended: Arc::new(Notify::new()),
            }));
        }
        let cursors = match load_cursors(&w.cursor_path) {
            Some(c) => c,
            None => {
                // Written at once, so a crash before the first pass still starts from here.
                let c = Cursors {
                    start: now_ms(),
                    ..Cursors::default()
                };
                save_cursors(&w.cursor_path, &c).map_err(|source| RemoteWriteError::Io {
                    path: w.cursor_path.clone(),
                    source,
                })?;
                c
            }
        };
        w.cursors = Mutex::new(cursors);
        Ok(w)
    }

    /// How often the reader looks for new samples (default 1s).
    pub fn with_read_interval(mut self, every: Duration) -> RemoteWriter {
        self.read_interval = every;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.remotes.is_empty()
    }

    /// Samples queued and not yet sent, over all remotes.
    pub fn pending_samples(&self) -> u64 {
        self.remotes
            .iter()
            .map(|r| lock(&r.queue).pending_samples())
            .sum()
    }

    /// Queues the samples stored since the last pass; returns how many samples were read (before
    /// relabelling). Synchronous: reads the Db and fsyncs the queues.
    pub fn read_once(&self) -> Result<usize, RemoteWriteError> {
        if self.remotes.is_empty() {
            return Ok(0);
        }
        let mut cur = lock(&self.cursors);
        let mint = cur
            .newest
            .map_or(cur.start, |n| n - SLACK_MS)
            .max(cur.start);
        let found = self.db.select(&[], mint, i64::MAX);
        // New samples per series, with the external labels added (the series' own labels win,
        // as in Prometheus).
        let mut fresh: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        let mut read = 0;
        for s in found {
            let after = cur.series.get(&s.labels).copied().unwrap_or(mint - 1);
            let new: Vec<(i64, f64)> = s
                .samples
                .iter()
                .filter(|x| x.t > after)
                .map(|x| (x.t, x.v))
                .collect();
            let Some(&(last, _)) = new.last() else {
                continue;
            };
            read += new.len();
            match cur.series.get_mut(&s.labels) {
                Some(t) => *t = last,
                None => {
                    cur.series.insert(s.labels.clone(), last);
                }
            }
            cur.newest = Some(cur.newest.map_or(last, |n| n.max(last)));
            fresh.push((self.with_external(&s.labels), new));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        for r in &self.remotes {
            let recs = encode_records(&fresh, r);
            let mut q = lock(&r.queue);
            let dropped = q.append(&recs).map_err(|source| RemoteWriteError::Io {
                path: r.queue_dir.clone(),
                source,
            })?;
            let name = r.cfg.name.as_str();
            if dropped > 0 {
                self.metrics
                    .dropped
                    .with_label_values(&[name])
                    .inc_by(dropped);
                tracing::warn!(
                    remote = name,
                    samples = dropped,
                    "remote write queue is full: dropped the oldest samples"
                );
            }
            self.update_gauges(r, &q);
            drop(q);
            r.appended.notify_one();
        }
        // Cursors after the queues: a crash between the two sends a pass twice rather than
        // never.
        if let Some(n) = cur.newest {
            let floor = n - SLACK_MS;
            cur.series.retain(|_, t| *t >= floor);
        }
        save_cursors(&self.cursor_path, &cur).map_err(|source| RemoteWriteError::Io {
            path: self.cursor_path.clone(),
            source,
        })?;
        Ok(read)
    }

    fn with_external(&self, l: &Labels) -> Labels {
        if self.external_labels.is_empty() {
            return l.clone();
        }
        let mut b = l.builder();
        for e in self.external_labels.iter() {
            if l.get(&e.name).is_none() {
                b.set(e.name.clone(), e.value.clone());
            }
        }
        b.build()
    }

    fn update_gauges(&self, r: &Remote, q: &Queue) {
        let name = r.cfg.name.as_str();
        self.metrics
            .queue_samples
            .with_label_values(&[name])
            .set(q.pending_samples() as f64);
        self.metrics
            .queue_lag
            .with_label_values(&[name])
            .set(q.lag_seconds());
    }

    /// Reads and sends until `shutdown` turns true (or its sender is dropped); then reads once
    /// more and tries to flush for a few seconds. What is not sent stays queued on disk and
    /// goes out after the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.remotes.is_empty() {
            return;
        }
        let me = Arc::new(self);
        let (flush_tx, flush_rx) = watch::channel(false);
        let mut senders = tokio::task::JoinSet::new();
        for r in &me.remotes {
            senders.spawn(send_loop(me.clone(), r.clone(), flush_rx.clone()));
        }
        let mut tick = tokio::time::interval(me.read_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
            failing = me.read_pass(failing).await;
        }
        me.read_pass(failing).await;
        let _ = flush_tx.send(true);
        while senders.join_next().await.is_some() {}
    }

    async fn read_pass(self: &Arc<Self>, failing: bool) -> bool {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.read_once()).await {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!("remote write: queueing samples works again");
                }
                false
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::error!(error = %e, "remote write: cannot queue samples");
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "remote write: reader task failed");
                true
            }
        }
    }
}

/// Splits the fresh samples into records of at most `max_samples_per_send` samples, relabelled
/// for this remote, each a snappy-compressed `WriteRequest`.
fn encode_records(fresh: &[(Labels, Vec<(i64, f64)>)], r: &Remote) -> Vec<(u32, i64, Vec<u8>)> {
    let max = r.cfg.queue.max_samples_per_send.max(1);
    let mut out = Vec::new();
    let mut req = proto::WriteRequest::default();
    let mut n = 0usize;
    let mut max_t = i64::MIN;
    let mut flush = |req: &mut proto::WriteRequest, n: &mut usize, max_t: &mut i64| {
        if *n == 0 {
            return;
        }
        let raw = proto::encode(req);
        // Compressing our own freshly encoded bytes cannot fail short of running out of
        // memory; an empty body would then be skipped by the receiver.
        let z = proto::compress(&raw).unwrap_or_default();
        out.push((*n as u32, *max_t, z));
        req.timeseries.clear();
        *n = 0;
        *max_t = i64::MIN;
    };
    for (labels, samples) in fresh {
        let Some(labels) = relabel::process(labels, &r.cfg.write_relabel_configs) else {
            continue;
        };
        for part in samples.chunks(max) {
            if n + part.len() > max {
                flush(&mut req, &mut n, &mut max_t);
            }
            req.timeseries
                .push(proto::time_series(&labels, part.iter().copied()));
            n += part.len();
            max_t = max_t.max(part.last().map_or(i64::MIN, |x| x.0));
        }
    }
    flush(&mut req, &mut n, &mut max_t);
    out
}

/// Concatenated protobuf messages are one message with the repeated fields joined, so the
/// records of a batch become one request by decompressing and appending them.
fn join_records(bodies: &[Vec<u8>]) -> Result<Vec<u8>, snap::Error> {
    let mut raw = Vec::new();
    for b in bodies {
        raw.extend(proto::decompress(b)?);
    }
    proto::compress(&raw)
}

async fn send_loop(w: Arc<RemoteWriter>, r: Arc<Remote>, mut flush: watch::Receiver<bool>) {
    let name = r.cfg.name.clone();
    let q = &r.cfg.queue;
    let mut backoff = q.min_backoff;
    let mut flush_deadline: Option<Instant> = None;
    let mut failing = false;
    loop {
        let flushing = *flush.borrow();
        if flushing && flush_deadline.is_none() {
            flush_deadline = Some(Instant::now() + SHUTDOWN_FLUSH);
        }
        if flush_deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        // Wait for a full batch or for the oldest record to reach batch_send_deadline.
        let (pending, oldest) = {
            let g = lock(&r.queue);
            (g.pending_samples(), g.oldest_appended())
        };
        let Some(oldest) = oldest else {
            if flushing {
                return;
            }
            tokio::select! {
                _ = r.appended.notified() => {}
                _ = flush.changed() => {}
            }
            continue;
        };
        let due = oldest + q.batch_send_deadline;
        if !flushing && (pending as usize) < q.max_samples_per_send && Instant::now() < due {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = r.appended.notified() => {}
                _ = flush.changed() => {}
            }
            continue;
        }
        let queue = r.queue.clone();
        let max = q.max_samples_per_send;
        let batch = match tokio::task::spawn_blocking(move || lock(&queue).peek(max)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(remote = %name, error = %e, "remote write: cannot read the queue");
                tokio::time::sleep(q.max_backoff).await;
                continue;
            }
            Err(_) => return,
        };
        let Some(last) = batch.last().map(|b| b.0.clone()) else {
            continue;
        };
        let samples: u64 = batch.iter().map(|b| b.0.samples as u64).sum();
        let bodies: Vec<Vec<u8>> = batch.into_iter().map(|b| b.1).collect();
        let body = match join_records(&bodies) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                // A record that passed its CRC but does not decompress: nothing will fix it.
                tracing::error!(remote = %name, error = %e, samples, "remote write: dropping an unreadable batch");
                w.metrics.failed.with_label_values(&[&name]).inc_by(samples);
                commit(&w, &r, last, false).await;
                continue;
            }
        };
        let size = body.len() as u64;
        // A shutdown gives a send in flight SHUTDOWN_FLUSH more, not the whole remote_timeout;
        // a batch cut off stays queued and goes out after the next start.
        let send = r.sender.send(body);
        tokio::pin!(send);
        let outcome = tokio::select! {
            o = &mut send => o,
            _ = async { let _ = flush.wait_for(|f| *f).await; } => {
                match tokio::time::timeout(SHUTDOWN_FLUSH, &mut send).await {
                    Ok(o) => o,
                    Err(_) => return,
                }
            }
        };
        match outcome {
            Outcome::Sent => {
                if failing {
                    tracing::info!(remote = %name, "remote write: sending works again");
                    failing = false;
                }
                backoff = q.min_backoff;
                count_sent(&w, &name, samples, size);
                commit(&w, &r, last, true).await;
            }
            Outcome::Drop(why) => {
                tracing::warn!(remote = %name, samples, reason = %why, "remote write: the remote refused the samples; dropped");
                w.metrics.failed.with_label_values(&[&name]).inc_by(samples);
                commit(&w, &r, last, false).await;
            }
            Outcome::Retry(why) => {
                w.metrics
                    .retried
                    .with_label_values(&[&name])
                    .inc_by(samples);
                if !failing {
                    tracing::warn!(remote = %name, samples, reason = %why, "remote write: send failed; retrying with backoff");
                    failing = true;
                }
                if flushing {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = flush.changed() => {}
                }
                backoff = (backoff * 2).min(q.max_backoff);
            }
        }
    }
}

/// A batch the remote took: its samples and bytes, and when.
fn count_sent(w: &RemoteWriter, name: &str, samples: u64, size: u64) {
    w.metrics.samples.with_label_values(&[name]).inc_by(samples);
    w.metrics.bytes.with_label_values(&[name]).inc_by(size);
    w.metrics
        .last_send
        .with_label_values(&[name])
        .set(now_ms() as f64 / 1000.0);
}

async fn commit(w: &Arc<RemoteWriter>, r: &Arc<Remote>, last: queue::RecordMeta, sent: bool) {
    let (w2, r2) = (w.clone(), r.clone());
    let res = tokio::task::spawn_blocking(move || {
        let mut q = lock(&r2.queue);
        let res = q.commit(&last, sent);
        w2.update_gauges(&r2, &q);
        res
    })
    .await;
    if let Ok(Err(e)) = res {
        tracing::error!(remote = %r.cfg.name, error = %e, "remote write: cannot persist the queue position (the batch may be sent again after a restart)");
    }
}

/// Cursor file: `newest: i64 | start: i64 | count: u32 | (t: i64 | len: u32 | labels text)* |
/// crc32`. Labels as `name\0value\0…`. A damaged file counts as absent (remote write starts
/// from now again).
fn save_cursors(path: &Path, c: &Cursors) -> std::io::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(&c.newest.unwrap_or(i64::MIN).to_le_bytes());
    b.extend_from_slice(&c.start.to_le_bytes());
    b.extend_from_slice(&(c.series.len() as u32).to_le_bytes());
    for (l, t) in &c.series {
        b.extend_from_slice(&t.to_le_bytes());
        let mut text = Vec::new();
        for x in l.iter() {
            text.extend_from_slice(x.name.as_bytes());
            text.push(0);
            text.extend_from_slice(x.value.as_bytes());
            text.push(0);
        }
        b.extend_from_slice(&(text.len() as u32).to_le_bytes());
        b.extend_from_slice(&text);
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

fn load_cursors(path: &Path) -> Option<Cursors> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 24 {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        tracing::warn!(path = %path.display(), "remote write cursor file is damaged; starting from now");
        return None;
    }
    let i64_at = |o: usize| -> Option<i64> {
        Some(i64::from_le_bytes(body.get(o..o + 8)?.try_into().ok()?))
    };
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(body.get(o..o + 4)?.try_into().ok()?))
    };
    let newest = i64_at(0)?;
    let start = i64_at(8)?;
    let n = u32_at(16)?;
    let mut o = 20;
    let mut series = HashMap::new();
    for _ in 0..n {
        let t = i64_at(o)?;
        let len = u32_at(o + 8)? as usize;
        let text = body.get(o + 12..o + 12 + len)?;
        o += 12 + len;
        let parts: Vec<&[u8]> = text.split(|c| *c == 0).collect();
        let pairs = parts.chunks_exact(2).map(|p| {
            (
                String::from_utf8_lossy(p[0]).into_owned(),
                String::from_utf8_lossy(p[1]).into_owned(),
            )
        });
        series.insert(Labels::from_pairs(pairs), t);
    }
    Some(Cursors {
        series,
        newest: (newest != i64::MIN).then_some(newest),
        start,
    })
}

#[cfg(test)]
mod tests;

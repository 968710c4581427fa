//! The notifier: delivers the alerts of the alerting rules to Alertmanagers over their API v2
//! (`POST <base>/api/v2/alerts`), as Prometheus' `notifier/notifier.go` does. It owns the
//! bounded queue of pending alerts, batching, the HTTP client, retries and the
//! `depin_notifications_*` metrics. It does not decide when an alert fires, resolves or is
//! resent: the alerting rules do, and hand every alert to [`Notifier::send`].
//!
//! How it behaves, and where it differs from Prometheus:
//!
//! - `send` only enqueues (a mutex held for a copy, never across I/O), so rule evaluation is
//!   never blocked by a slow or dead Alertmanager. External labels are added there, to every
//!   alert that lacks the label (Prometheus' `relabelAlerts`); alert relabelling is not done.
//! - The queue holds at most `queue_capacity` alerts (default 10000). When full, the oldest
//!   alerts are dropped and counted in `depin_notifications_dropped_total`: the rules resend
//!   every firing alert regularly, so the newest state is the one worth keeping.
//! - One task sends batches of at most `max_batch_size` alerts (64, the batch size of
//!   Prometheus before 3.x, which later made it configurable with a default of 256) to every
//!   Alertmanager at once, each request cut after `timeout` (10s).
//! - Retries, which Prometheus does not do within a batch: a request that fails in a way a
//!   later attempt may fix (connection refused or reset, timeout, HTTP 5xx or 429) is retried
//!   after 0.5s, 1s, 2s, … (doubling, at most `retry.max_backoff`), for at most
//!   `retry.max_attempts` attempts (default 4) and at most `retry.max_elapsed` (default 30s)
//!   from the first attempt, whichever ends first. Other 4xx answers are not retried: the
//!   Alertmanager rejected the alerts themselves. While a batch is retried the next one waits,
//!   and the queue keeps filling up to its bound, so the worst delay a dead Alertmanager adds
//!   to a batch is `retry.max_elapsed`. An Alertmanager whose last batch failed after all its
//!   attempts gets a single attempt per batch until one succeeds, so that a dead one among
//!   several does not hold every batch for its retries (the rules resend firing alerts anyway).
//! - A batch counts as delivered when at least one Alertmanager accepted it (as Prometheus);
//!   otherwise its alerts are counted as dropped.
//! - On shutdown the batch in flight may finish and the queue is drained, together for at most
//!   `drain_timeout` (5s); what is left then is counted as dropped.
//! - `http://` and `https://` (rustls; the certificate is checked against Mozilla's roots plus
//!   the PEM certificates of `--alertmanager.ca-file`, for a private CA or a self-signed
//!   Alertmanager). Basic auth and service discovery are not implemented: a URL with
//!   credentials is rejected rather than sent without them.
//!
//! Metrics (Prometheus' names with our prefix): `depin_notifications_sent_total{alertmanager}`
//! (alerts accepted), `…_errors_total{alertmanager}` (alerts in a failed request, counted
//! once per failed attempt, so a retried and then accepted batch shows in both),
//! `…_dropped_total`, `…_queue_length`, `…_queue_capacity`,
//! `…_latency_seconds{alertmanager}` (a histogram of each request's duration: the Rust
//! `prometheus` crate has no summary with quantiles) and `…_alertmanagers_discovered`. The
//! `alertmanager` label is the full URL alerts are posted to, as in Prometheus.
//!
//! # What `main` calls
//!
//! ```ignore
//! let notifier = Notifier::new(NotifierOptions {
//!     alertmanager_urls: args.alertmanager_urls.clone(),        // --alertmanager.url (repeatable)
//!     external_labels: external_labels.clone(),                 // global.external_labels
//!     queue_capacity: args.notification_queue_capacity,         // default DEFAULT_QUEUE_CAPACITY
//!     timeout: args.alertmanager_timeout,                       // default DEFAULT_TIMEOUT
//!     ..Default::default()
//! }, metrics.registry())?;
//! // Its own stop signal, sent after the rule manager has returned, so that the alerts of
//! // the last evaluation are still sent (and drained for up to 5s).
//! let (notifier_stop, notifier_stop_rx) = tokio::sync::watch::channel(false);
//! let notifier_task = tokio::spawn(notifier.clone().run(notifier_stop_rx));
//! let rules_task = tokio::spawn(manager.run(stop_rx.clone(), move |a| notifier.send(a)));
//! // on shutdown: stop_tx.send(true); rules_task.await; notifier_stop.send(true);
//! // notifier_task.await;
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::core::Collector;
use prometheus::{Counter, CounterVec, Gauge, HistogramOpts, HistogramVec, Opts, Registry};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::compat::calendar::rfc3339_millis;
use crate::labels::Labels;

#[cfg(test)]
mod tests;

/// Default bound of the queue (Prometheus' `--alertmanager.notification-queue-capacity`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Most alerts in one request (Prometheus' `maxBatchSize` before it became configurable).
pub const DEFAULT_MAX_BATCH_SIZE: usize = 64;
/// Longest time one request may take (Prometheus' `alertmanager_config.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the queue is drained on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The path Alertmanager's API v2 takes alerts on, after the URL's own path prefix.
pub const ALERTS_PATH: &str = "/api/v2/alerts";
/// Most bytes of an answer read: enough for Alertmanager's validation messages.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most characters of an error answer quoted in a log line.
const MAX_QUOTED_BODY: usize = 512;

/// The alerts the rules hand over (Prometheus' `notifier.Alert`): labels, annotations,
/// `starts_at` / `ends_at` in milliseconds since the epoch (an `ends_at` in the past means
/// resolved), `generator_url` (empty: not sent).
pub use super::Alert;

/// How failed requests are retried; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per batch and Alertmanager, the first included (1: no retry).
    pub max_attempts: u32,
    /// Wait before the first retry; each further wait doubles.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one, and the last is cut there.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NotifierOptions {
    /// Alertmanager base URLs (`--alertmanager.url`, repeatable), e.g. `http://127.0.0.1:9093`
    /// or `http://proxy/alertmanager` (a path prefix). Every alert goes to every one.
    pub alertmanager_urls: Vec<String>,
    /// Added to every alert that lacks the label (config `global.external_labels`).
    pub external_labels: Labels,
    /// `--alertmanager.notification-queue-capacity`.
    pub queue_capacity: usize,
    pub max_batch_size: usize,
    /// Per request (`--alertmanager.timeout`).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How long the queue is drained on shutdown.
    pub drain_timeout: Duration,
    /// PEM certificates trusted besides Mozilla's roots for https Alertmanagers
    /// (`--alertmanager.ca-file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            alertmanager_urls: Vec::new(),
            external_labels: Labels::empty(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("--alertmanager.url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("--alertmanager.url {url:?} is given twice")]
    DuplicateUrl { url: String },
    #[error("{option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("registering metric {name}: {source}")]
    Metric {
        name: &'static str,
        source: prometheus::Error,
    },
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("bad response status {status}: {body}")]
    Status { status: StatusCode, body: String },
}

impl SendError {
    /// Whether a later attempt may succeed: not when the Alertmanager rejected the alerts.
    fn retryable(&self) -> bool {
        match self {
            SendError::Request(_) => false,
            SendError::Transport(_) | SendError::Timeout(_) => true,
            SendError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

/// One Alertmanager: where alerts are posted, and that URL as the metrics' label.
#[derive(Debug)]
struct Alertmanager {
    uri: Uri,
    label: String,
    /// Its last batch failed even after retries: the next batches get one attempt each until
    /// one succeeds, so a dead Alertmanager does not slow the delivery to the others.
    down: AtomicBool,
}

struct NotifierMetrics {
    sent: CounterVec,
    errors: CounterVec,
    dropped: Counter,
    queue_length: Gauge,
    latency: HistogramVec,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Inner {
    opts: NotifierOptions,
    alertmanagers: Vec<Alertmanager>,
    queue: Mutex<VecDeque<Alert>>,
    /// Woken by `send`; holds one permit when nobody waits, so no wake-up is lost.
    more: Notify,
    metrics: NotifierMetrics,
    client: HttpClient,
    user_agent: HeaderValue,
}

/// The handle: cheap to clone; `send` from the rules, `run` once on its own task.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("alertmanagers", &self.alertmanagers())
            .field("queue_length", &self.queue_len())
            .finish()
    }
}

/// The URL alerts are posted to: the base URL's path as prefix, then `/api/v2/alerts`.
fn alerts_url(raw: &str) -> Result<Alertmanager, NotifierError> {
    let invalid = |reason: String| NotifierError::InvalidUrl {
        url: raw.to_string(),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        s => return Err(invalid(format!("scheme {s:?} is not http or https"))),
    }
    let Some(host) = url.host_str() else {
        return Err(invalid("no host".into()));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported (basic auth is not implemented)".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "a query or fragment is not allowed, only a path prefix".into(),
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let prefix = url.path().trim_end_matches('/');
    // `url` keeps IPv6 hosts in brackets in host_str, as a URI authority needs them.
    let label = format!("{}://{host}:{port}{prefix}{ALERTS_PATH}", url.scheme());
    let uri = label
        .parse::<Uri>()
        .map_err(|e| invalid(format!("not a valid request URI {label:?}: {e}")))?;
    Ok(Alertmanager {
        uri,
        label,
        down: AtomicBool::new(false),
    })
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    c: Result<C, prometheus::Error>,
) -> Result<C, NotifierError> {
    let c = c.map_err(|source| NotifierError::Metric { name, source })?;
    registry
        .register(Box::new(c.clone()))
        .map_err(|source| NotifierError::Metric { name, source })?;
    Ok(c)
}

impl NotifierMetrics {
    fn new(
        registry: &Registry,
        capacity: usize,
        alertmanagers: &[Alertmanager],
    ) -> Result<Self, NotifierError> {
        let am = &["alertmanager"];
        let sent = register(
            registry,
            "depin_notifications_sent_total",
            CounterVec::new(
                Opts::new(
                    "depin_notifications_sent_total",
                    "Total number of alerts sent (accepted by the Alertmanager).",
                ),
                am,
            ),
        )?;
        let errors = register(
            registry,
            "depin_notifications_errors_total",
            CounterVec::new(
                Opts::new(
                    "depin_notifications_errors_total",
                    "Total number of sent alerts affected by errors, once per failed attempt.",
                ),
                am,
            ),
        )?;
        let dropped = register(
            registry,
            "depin_notifications_dropped_total",
            Counter::new(
                "depin_notifications_dropped_total",
                "Total number of alerts dropped: queue full, or not delivered to any Alertmanager.",
            ),
        )?;
        let queue_length = register(
            registry,
            "depin_notifications_queue_length",
            Gauge::new(
                "depin_notifications_queue_length",
                "The number of alert notifications in the queue.",
            ),
        )?;
        let queue_capacity = register(
            registry,
            "depin_notifications_queue_capacity",
            Gauge::new(
                "depin_notifications_queue_capacity",
                "The capacity of the alert notifications queue.",
            ),
        )?;
        queue_capacity.set(capacity as f64);
        let latency = register(
            registry,
            "depin_notifications_latency_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "depin_notifications_latency_seconds",
                    "Duration of each request sending alert notifications, in seconds.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                am,
            ),
        )?;
        let discovered = register(
            registry,
            "depin_notifications_alertmanagers_discovered",
            Gauge::new(
                "depin_notifications_alertmanagers_discovered",
                "The number of alertmanagers discovered and active.",
            ),
        )?;
        discovered.set(alertmanagers.len() as f64);
        // Series exist from the start at 0, so rate() sees the first error (as Prometheus).
        for a in alertmanagers {
            sent.with_label_values(&[&a.label]);
            errors.with_label_values(&[&a.label]);
        }
        Ok(NotifierMetrics {
            sent,
            errors,
            dropped,
            queue_length,
            latency,
        })
    }
}

impl Notifier {
    /// Validates the options and registers the metrics in `registry`. Builds no task: call
    /// [`Notifier::run`] on a tokio runtime to start sending.
    pub fn new(opts: NotifierOptions, registry: &Registry) -> Result<Notifier, NotifierError> {
        if opts.queue_capacity == 0 {
            return Err(NotifierError::InvalidOption {
                option: "--alertmanager.notification-queue-capacity",
                reason: "must be at least 1".into(),
            });
        }
        if opts.max_batch_size == 0 {
            return Err(NotifierError::InvalidOption {
                option: "max_batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if opts.timeout.is_zero() {
            return Err(NotifierError::InvalidOption {
                option: "--alertmanager.timeout",
                reason: "must be more than 0s".into(),
            });
        }
        let mut alertmanagers: Vec<Alertmanager> = Vec::new();
        for raw in &opts.alertmanager_urls {
            let am = alerts_url(raw)?;
            if alertmanagers.iter().any(|a| a.label == am.label) {
                return Err(NotifierError::DuplicateUrl { url: raw.clone() });
            }
            alertmanagers.push(am);
        }
        let metrics = NotifierMetrics::new(registry, opts.queue_capacity, &alertmanagers)?;
        // https with Mozilla's roots and the ca_file, as the node client.
        let connector = crate::net::http::pooled_connector(opts.timeout, opts.ca_file.as_deref())
            .map_err(|reason| NotifierError::InvalidOption {
            option: "--alertmanager.ca-file",
            reason,
        })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let user_agent =
            HeaderValue::from_static(concat!("depin-orcha/", env!("CARGO_PKG_VERSION")));
        Ok(Notifier {
            inner: Arc::new(Inner {
                queue: Mutex::new(VecDeque::with_capacity(opts.queue_capacity.min(1024))),
                opts,
                alertmanagers,
                more: Notify::new(),
                metrics,
                client,
                user_agent,
            }),
        })
    }

    /// The URLs alerts are posted to.
    pub fn alertmanagers(&self) -> Vec<String> {
        self.inner
            .alertmanagers
            .iter()
            .map(|a| a.label.clone())
            .collect()
    }

    /// Alerts waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.inner.lock_queue().len()
    }

    /// Queues alerts for every Alertmanager and returns at once; never waits for the network.
    /// Adds the external labels. When the queue is full the oldest alerts are dropped.
    /// Without any Alertmanager configured the alerts are discarded (nothing to send them to).
    pub fn send(&self, alerts: Vec<Alert>) {
        let inner = &self.inner;
        if alerts.is_empty() || inner.alertmanagers.is_empty() {
            return;
        }
        let mut alerts: Vec<Alert> = alerts
            .into_iter()
            .map(|a| with_external_labels(a, &inner.opts.external_labels))
            .collect();
        let cap = inner.opts.queue_capacity;
        let mut dropped = 0;
        if alerts.len() > cap {
            // More than the whole queue at once: keep the newest, as Prometheus does.
            let d = alerts.len() - cap;
            alerts.drain(..d);
            dropped += d;
        }
        {
            let mut q = inner.lock_queue();
            let over = (q.len() + alerts.len()).saturating_sub(cap);
            q.drain(..over);
            dropped += over;
            q.extend(alerts);
            inner.metrics.queue_length.set(q.len() as f64);
        }
        if dropped > 0 {
            inner.metrics.dropped.inc_by(dropped as f64);
            tracing::warn!(
                num_dropped = dropped,
                capacity = cap,
                "alert notification queue full, dropping the oldest alerts"
            );
        }
        inner.more.notify_one();
    }

    /// Sends queued alerts until `shutdown` turns true (or its sender is dropped), then drains
    /// the queue for at most `drain_timeout`. Run it once, on its own task.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        tracing::info!(alertmanagers = ?self.alertmanagers(), "notifier started");
        let mut drain_deadline = None;
        while drain_deadline.is_none() {
            if *shutdown.borrow() {
                break;
            }
            let batch = inner.next_batch();
            if batch.is_empty() {
                tokio::select! {
                    _ = inner.more.notified() => continue,
                    _ = stopped(&mut shutdown) => break,
                }
            }
            let send = inner.send_batch(&batch, None);
            tokio::pin!(send);
            let delivered = tokio::select! {
                d = &mut send => Some(d),
                _ = stopped(&mut shutdown) => {
                    // Shutdown with a batch in flight: let it finish within the drain time
                    // rather than cut it and send it again.
                    let deadline = Instant::now() + inner.opts.drain_timeout;
                    drain_deadline = Some(deadline);
                    tokio::time::timeout_at(deadline, send).await.ok()
                }
            };
            match delivered {
                Some(true) => {}
                Some(false) => {
                    inner.count_dropped(batch.len(), "no Alertmanager accepted the alerts")
                }
                None => inner.count_dropped(
                    batch.len(),
                    "shutdown: the drain timeout passed while the alerts were sent",
                ),
            }
        }
        let deadline = drain_deadline.unwrap_or_else(|| Instant::now() + inner.opts.drain_timeout);
        inner.drain(deadline).await;
        tracing::info!("notifier stopped");
    }
}

/// Resolves once the shutdown flag is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Adds each external label the alert lacks (the alert's own value wins, as in Prometheus).
fn with_external_labels(mut alert: Alert, external: &Labels) -> Alert {
    if external.is_empty() {
        return alert;
    }
    let mut b = alert.labels.builder();
    for l in external.iter() {
        if alert.labels.get(&l.name).is_none() {
            b.set(l.name.clone(), l.value.clone());
        }
    }
    alert.labels = b.build();
    alert
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<Alert>> {
        // A panic while holding this lock leaves a consistent VecDeque; keep going.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_batch(&self) -> Vec<Alert> {
        let mut q = self.lock_queue();
        let n = q.len().min(self.opts.max_batch_size);
        let batch: Vec<Alert> = q.drain(..n).collect();
        self.metrics.queue_length.set(q.len() as f64);
        batch
    }

    fn count_dropped(&self, n: usize, why: &str) {
        if n == 0 {
            return;
        }
        self.metrics.dropped.inc_by(n as f64);
        tracing::warn!(
            num_dropped = n,
            reason = why,
            "dropping alert notifications"
        );
    }

    /// Sends what is queued until empty or until `deadline`; what is left is dropped.
    async fn drain(&self, deadline: Instant) {
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                return;
            }
            let result = if Instant::now() >= deadline {
                Err(())
            } else {
                tokio::time::timeout_at(deadline, self.send_batch(&batch, Some(deadline)))
                    .await
                    .map_err(|_| ())
            };
            match result {
                Ok(true) => {}
                Ok(false) => {
                    self.count_dropped(batch.len(), "no Alertmanager accepted the alerts");
                }
                Err(()) => {
                    let rest = {
                        let mut q = self.lock_queue();
                        let n = q.len();
                        q.clear();
                        self.metrics.queue_length.set(0.0);
                        n
                    };
                    self.count_dropped(
                        batch.len() + rest,
                        "shutdown: the drain timeout passed before the queue was sent",
                    );
                    return;
                }
            }
        }
    }

    /// Sends one batch to every Alertmanager at once; true when at least one accepted it.
    async fn send_batch(&self, batch: &[Alert], deadline: Option<Instant>) -> bool {
        let payload = match encode(batch) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "encoding alerts for Alertmanager API v2 failed");
                return false;
            }
        };
        let sends = self
            .alertmanagers
            .iter()
            .map(|am| self.send_with_retry(am, payload.clone(), batch.len(), deadline));
        join_all(sends).await.into_iter().any(|ok| ok)
    }

    /// Sends to one Alertmanager, retrying as [`RetryPolicy`] says; true once accepted.
    async fn send_with_retry(
        &self,
        am: &Alertmanager,
        payload: Bytes,
        count: usize,
        deadline: Option<Instant>,
    ) -> bool {
        let retry = &self.opts.retry;
        let start = Instant::now();
        let mut end = start + retry.max_elapsed;
        if let Some(d) = deadline {
            end = end.min(d);
        }
        let mut backoff = retry.initial_backoff;
        let max_attempts = if am.down.load(Ordering::Relaxed) {
            1
        } else {
            retry.max_attempts
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Instant::now();
            let timeout = self.opts.timeout.min(end.saturating_duration_since(now));
            let result =
                match tokio::time::timeout(timeout, self.send_one(am, payload.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(SendError::Timeout(timeout)),
                };
            self.metrics
                .latency
                .with_label_values(&[&am.label])
                .observe(now.elapsed().as_secs_f64());
            let err = match result {
                Ok(()) => {
                    self.metrics
                        .sent
                        .with_label_values(&[&am.label])
                        .inc_by(count as f64);
                    if am.down.swap(false, Ordering::Relaxed) {
                        tracing::info!(alertmanager = %am.label, "Alertmanager accepts alerts again");
                    } else if attempt > 1 {
                        tracing::info!(alertmanager = %am.label, count, attempt, "alerts sent after retrying");
                    }
                    return true;
                }
                Err(e) => e,
            };
            self.metrics
                .errors
                .with_label_values(&[&am.label])
                .inc_by(count as f64);
            let retry_at = Instant::now() + backoff;
            let give_up = !err.retryable() || attempt >= max_attempts || retry_at >= end;
            if give_up {
                if err.retryable() {
                    am.down.store(true, Ordering::Relaxed);
                }
                tracing::error!(
                    alertmanager = %am.label,
                    count,
                    attempts = attempt,
                    error = %err,
                    "error sending alerts"
                );
                return false;
            }
            tracing::debug!(
                alertmanager = %am.label,
                count,
                attempt,
                error = %err,
                retry_in = ?backoff,
                "error sending alerts; retrying"
            );
            tokio::time::sleep_until(retry_at).await;
            backoff = (backoff * 2).min(retry.max_backoff);
        }
    }

    async fn send_one(&self, am: &Alertmanager, payload: Bytes) -> Result<(), SendError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(am.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, self.user_agent.clone())
            .body(Full::new(payload))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| SendError::Transport(error_chain(&e)))?;
        let status = resp.status();
        // Read the answer so the connection can be reused, and quote it when it is an error.
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&body).trim().to_string();
        if text.len() > MAX_QUOTED_BODY {
            let mut cut = MAX_QUOTED_BODY;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Err(SendError::Status { status, body: text })
    }
}

/// Runs futures concurrently on this task and returns their outputs in order (so a cancelled
/// send cancels every request, which spawned tasks would not).
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// "connection refused" rather than hyper-util's bare "client error (Connect)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// A label set as the JSON object Alertmanager takes (keys sorted, as Go marshals maps).
struct LabelSet<'a>(&'a Labels);

impl Serialize for LabelSet<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0.iter() {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

/// Alertmanager's `postableAlert`, fields in the order Prometheus writes them.
#[derive(Serialize)]
struct PostableAlert<'a> {
    #[serde(skip_serializing_if = "is_empty_labels")]
    annotations: LabelSet<'a>,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
    labels: LabelSet<'a>,
}

fn is_empty_labels(l: &LabelSet<'_>) -> bool {
    l.0.is_empty()
}

/// The request body: a JSON array of postable alerts.
pub fn encode(alerts: &[Alert]) -> Result<Bytes, serde_json::Error> {
    let body: Vec<PostableAlert<'_>> = alerts
        .iter()
        .map(|a| PostableAlert {
            annotations: LabelSet(&a.annotations),
            ends_at: rfc3339_millis(a.ends_at),
            starts_at: rfc3339_millis(a.starts_at),
            generator_url: &a.generator_url,
            labels: LabelSet(&a.labels),
        })
        .collect();
    serde_json::to_vec(&body).map(Bytes::from)
}

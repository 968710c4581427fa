//! The in-memory time series database: series with their labels, samples, the label index,
//! retention, and the write-ahead log and snapshots that let history survive a restart.
//!
//! It owns storage only: it never evaluates PromQL (that is `promql`) and never polls nodes
//! (that is `coordinator`). Readers go through the [`Queryable`] trait.
//!
//! SKELETON: the storage below is a plain `Vec` per series so that every other module can be
//! built against the final API. The tsdb work replaces the internals (compressed chunks, an
//! inverted index, WAL + snapshots, retention, memory cap) behind the same API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use crate::labels::{Labels, Matcher};

mod bits;
pub mod chunk;
pub mod xor;

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

    /// Label sets of the series that pass `matchers` and have a sample in `[mint, maxt]`.
    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        self.select(matchers, mint, maxt).into_iter().map(|s| s.labels).collect()
    }

    /// Sorted, unique label names of the series that pass any of the `matcher_sets` (all series
    /// when empty) within `[mint, maxt]`.
    fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String>;

    /// Sorted, unique values of label `name`, with the same selection as `label_names`.
    fn label_values(&self, name: &str, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("out of order sample for {labels} at {t}")]
    OutOfOrder { labels: String, t: i64 },
    #[error("storage I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
        Options { path: None, retention_ms: 15 * 24 * 3600 * 1000, max_bytes: None }
    }
}

/// The database. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Default)]
pub struct Db {
    inner: RwLock<HashMap<Labels, Vec<Sample>>>,
    /// Series written by the previous `ingest_scrape`, to mark the ones that vanish as stale.
    last_scrape: RwLock<Vec<Labels>>,
}

impl Db {
    pub fn open(_opts: Options) -> Result<Db, Error> {
        Ok(Db::default())
    }

    pub fn in_memory() -> Db {
        Db::default()
    }

    /// Appends one sample. Samples of a series must come in time order.
    pub fn append(&self, labels: &Labels, t: i64, v: f64) -> Result<(), Error> {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let s = m.entry(labels.clone()).or_default();
        if let Some(last) = s.last() {
            if t < last.t {
                return Err(Error::OutOfOrder { labels: labels.to_string(), t });
            }
        }
        s.push(Sample { t, v });
        Ok(())
    }

    /// Writes what a scrape of the process' own registry returned at time `t`, as Prometheus
    /// would store a scrape: counters and gauges as they are, histograms as `_bucket{le}`,
    /// `_sum` and `_count`, summaries as quantiles, `_sum` and `_count`. Series that were in the
    /// previous scrape and are missing now get a staleness marker.
    pub fn ingest_scrape(&self, t: i64, families: &[prometheus::proto::MetricFamily]) -> Result<usize, Error> {
        let samples = scrape_samples(families);
        let mut now: Vec<Labels> = Vec::with_capacity(samples.len());
        for (l, v) in &samples {
            self.append(l, t, *v)?;
            now.push(l.clone());
        }
        let mut last = self.last_scrape.write().unwrap_or_else(|e| e.into_inner());
        let current: std::collections::HashSet<&Labels> = now.iter().collect();
        for gone in last.iter().filter(|l| !current.contains(l)) {
            self.append(gone, t, stale_nan())?;
        }
        *last = now;
        Ok(samples.len())
    }
}

/// Flattens metric families into `(labels, value)` pairs the way the exposition format does.
pub fn scrape_samples(families: &[prometheus::proto::MetricFamily]) -> Vec<(Labels, f64)> {
    use prometheus::proto::MetricType;
    let mut out = Vec::new();
    for fam in families {
        let name = fam.name();
        for m in fam.get_metric() {
            let base: Vec<(String, String)> =
                m.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string())).collect();
            let with = |suffix: &str, extra: Option<(&str, String)>| {
                let mut p = base.clone();
                p.push(("__name__".into(), format!("{name}{suffix}")));
                if let Some((k, v)) = extra {
                    p.push((k.into(), v));
                }
                Labels::from_pairs(p)
            };
            match fam.get_field_type() {
                MetricType::COUNTER => out.push((with("", None), m.get_counter().value())),
                MetricType::GAUGE => out.push((with("", None), m.get_gauge().value())),
                // The crate's registry never produces untyped metrics.
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        out.push((with("_bucket", Some(("le", fmt_float(b.upper_bound())))), b.cumulative_count() as f64));
                    }
                    out.push((with("_bucket", Some(("le", "+Inf".into()))), h.get_sample_count() as f64));
                    out.push((with("_sum", None), h.get_sample_sum()));
                    out.push((with("_count", None), h.get_sample_count() as f64));
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        out.push((with("", Some(("quantile", fmt_float(q.quantile())))), q.value()));
                    }
                    out.push((with("_sum", None), s.sample_sum()));
                    out.push((with("_count", None), s.sample_count() as f64));
                }
            }
        }
    }
    out
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
        let m = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Series> = m
            .iter()
            .filter(|(l, _)| matchers.iter().all(|mt| mt.matches_labels(l)))
            .filter_map(|(l, s)| {
                let samples: Vec<Sample> = s.iter().filter(|x| x.t >= mint && x.t <= maxt).copied().collect();
                (!samples.is_empty()).then(|| Series { labels: l.clone(), samples })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut names: Vec<String> = selected(self, matcher_sets, mint, maxt)
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn label_values(&self, name: &str, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut vals: Vec<String> = selected(self, matcher_sets, mint, maxt)
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        vals
    }
}

fn selected(db: &Db, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Labels> {
    if matcher_sets.is_empty() {
        return db.series(&[], mint, maxt);
    }
    let mut all: Vec<Labels> = matcher_sets.iter().flat_map(|ms| db.series(ms, mint, maxt)).collect();
    all.sort();
    all.dedup();
    all
}

//! Storing a scrape of the process' own registry as Prometheus stores a scrape: the families
//! flattened into samples (histograms as `_bucket{le}`, `_sum`, `_count`, …), a scrape cache
//! that spares label lookups for series seen in the previous scrape, and staleness markers for
//! series that vanished.

use std::collections::HashSet;
use std::sync::Arc;

use super::series::{self, MemSeries};
use super::{stale_nan, Db, Error};
use crate::labels::Labels;

/// Prometheus' scrape cache: the series each sample of the previous scrape went to, keyed by
/// the sample's identity as the registry lists it (family name, suffix, label pairs in the
/// registry's order). A scrape that repeats the previous one then builds no label sets and
/// looks up no series by labels; only new samples do. Entries whose series retention removed
/// are dropped with it, so the cache never holds a series no longer in the head.
#[derive(Default)]
pub(super) struct ScrapeCache {
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
    pub(super) fn forget(&mut self, removed: &HashSet<series::SeriesRef>) {
        self.entries
            .retain(|_, e| !removed.contains(&e.series.sref));
    }
}

/// Appends a length-prefixed string to a scrape-cache key, so no two label sets share a key.
fn key_push(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

impl Db {
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

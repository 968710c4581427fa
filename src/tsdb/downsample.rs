//! Downsampling old history (`--storage.downsample.after`): what one series keeps of a block
//! once its samples are older than that, per [`WINDOW_MS`] window. Compaction (`compact.rs`)
//! applies it when it writes a day's block; this file is the pure per-series part.
//!
//! Windows are left-open like PromQL ranges: window `k` holds the samples with
//! `k·W − W < t ≤ k·W`, so a range `(t − r, t]` with `t` and `r` multiples of `W` is a whole
//! number of windows. A window that a block boundary cuts is handled as two windows, each
//! with its own samples; nothing below relies on a window being whole.
//!
//! - **Counters** (by the Prometheus naming convention: a name ending in `_total`, `_count`,
//!   `_sum` or `_bucket`) keep a subset of their own samples: the first and last of every
//!   window, both samples around every reset (a value below the previous one), and stale
//!   markers. `increase`/`rate` over an aligned range read the first and last sample in the
//!   range and the value before each reset, all of which are kept, so they are unchanged.
//! - **Gauges** are replaced by one sample per window, stamped at the window's last sample:
//!   the average in the series itself (so graphs and instant queries still show it), and the
//!   minimum, maximum, sum and count in series named `<name>:min_5m`, `:max_5m`, `:sum_5m`
//!   and `:count_5m` (the recording-rule naming style, so `name` selectors never match them).
//!   The sum and count make the average over any aligned range exact:
//!   `sum_over_time(g:sum_5m[r]) / sum_over_time(g:count_5m[r])`. Stale markers are kept in
//!   the series itself.
//!
//! Thanos keeps the same five aggregates in one chunk type that its query layer picks from;
//! here they are plain series so that PromQL reads them without knowing about downsampling.

use super::{is_stale_nan, Sample};
use crate::labels::Labels;

/// The window downsampled series are kept at: 5 minutes, Thanos' first resolution. A
/// 15 s scrape keeps about 2-3 of 20 counter samples per window, and 5 of 20 for a gauge.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// The suffixes of the aggregate series of a gauge, in the order [`downsample`] returns them.
pub const AGGREGATE_SUFFIXES: [&str; 4] = [":min_5m", ":max_5m", ":sum_5m", ":count_5m"];

/// The window (its end, a multiple of [`WINDOW_MS`]) that holds time `t`.
pub fn window_end(t: i64) -> i64 {
    // ceil(t / W) · W, also for t < 0.
    -((-t).div_euclid(WINDOW_MS)) * WINDOW_MS
}

/// Whether a series is a counter by the Prometheus naming conventions.
pub fn is_counter(labels: &Labels) -> bool {
    let name = labels.metric_name().unwrap_or("");
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Whether a series is one of the aggregates [`downsample`] writes.
pub fn is_aggregate(labels: &Labels) -> bool {
    let name = labels.metric_name().unwrap_or("");
    AGGREGATE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// What a series keeps of `samples` (its samples in one block, oldest first): the series
/// itself and, for a gauge, its aggregate series. Series without samples are left out.
pub fn downsample(labels: &Labels, samples: &[Sample]) -> Vec<(Labels, Vec<Sample>)> {
    if samples.is_empty() {
        return Vec::new();
    }
    if is_counter(labels) || is_aggregate(labels) || labels.metric_name().is_none() {
        return vec![(labels.clone(), counter_subset(samples))];
    }
    let [avg, min, max, sum, count] = gauge_aggregates(samples);
    let name = labels.metric_name().unwrap_or_default();
    let mut out = vec![(labels.clone(), avg)];
    for (suffix, s) in AGGREGATE_SUFFIXES.iter().zip([min, max, sum, count]) {
        let mut b = labels.builder();
        b.set("__name__", format!("{name}{suffix}"));
        out.push((b.build(), s));
    }
    out.retain(|(_, s)| !s.is_empty());
    out
}

/// The samples of a counter that keep `increase`/`rate` over aligned ranges exact.
pub fn counter_subset(samples: &[Sample]) -> Vec<Sample> {
    let n = samples.len();
    let mut keep = vec![false; n];
    let mut prev_value: Option<usize> = None;
    for i in 0..n {
        let w = window_end(samples[i].t);
        if i == 0 || window_end(samples[i - 1].t) != w || i + 1 == n {
            keep[i] = true;
        }
        if i + 1 < n && window_end(samples[i + 1].t) != w {
            keep[i] = true;
        }
        let v = samples[i].v;
        if is_stale_nan(v) {
            keep[i] = true;
            continue;
        }
        // PromQL drops stale markers from ranges: a reset is a drop below the previous value.
        if let Some(p) = prev_value {
            if v < samples[p].v {
                keep[p] = true;
                keep[i] = true;
            }
        }
        prev_value = Some(i);
    }
    samples
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(s, _)| *s)
        .collect()
}

/// Per window: [average (with stale markers), min, max, sum, count].
fn gauge_aggregates(samples: &[Sample]) -> [Vec<Sample>; 5] {
    let mut out: [Vec<Sample>; 5] = Default::default();
    let mut i = 0;
    while i < samples.len() {
        let w = window_end(samples[i].t);
        let mut j = i;
        let (mut min, mut max, mut sum, mut count, mut last_t) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0u64, None);
        let mut stale = None;
        while j < samples.len() && window_end(samples[j].t) == w {
            let s = samples[j];
            if is_stale_nan(s.v) {
                stale = Some(s);
            } else {
                // NaN values other than stale markers: min/max as PromQL's min_over_time
                // (NaN only if all are NaN), sum and count take them like sum_over_time.
                if s.v < min || min.is_nan() {
                    min = s.v;
                }
                if s.v > max || max.is_nan() {
                    max = s.v;
                }
                sum += s.v;
                count += 1;
                last_t = Some(s.t);
                stale = None;
            }
            j += 1;
        }
        if let Some(t) = last_t {
            let at = |v| Sample { t, v };
            out[0].push(at(sum / count as f64));
            out[1].push(at(min));
            out[2].push(at(max));
            out[3].push(at(sum));
            out[4].push(at(count as f64));
        }
        if let Some(s) = stale {
            out[0].push(s);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::stale_nan;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn windows_are_left_open_and_aligned() {
        assert_eq!(window_end(0), 0);
        assert_eq!(window_end(1), WINDOW_MS);
        assert_eq!(window_end(WINDOW_MS), WINDOW_MS);
        assert_eq!(window_end(-1), 0);
        assert_eq!(window_end(-WINDOW_MS), -WINDOW_MS);
    }

    #[test]
    fn counters_keep_window_edges_and_both_sides_of_every_reset() {
        let m = 60_000;
        // Window (0, 5m]: 1..5 min; a reset between 3 and 4 min. Window (5m, 10m]: 6..10.
        let raw: Vec<Sample> = [1.0, 2.0, 3.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .enumerate()
            .map(|(i, v)| s((i as i64 + 1) * m, *v))
            .collect();
        let kept: Vec<i64> = counter_subset(&raw).iter().map(|x| x.t / m).collect();
        assert_eq!(kept, vec![1, 3, 4, 5, 6, 10]);
        let names = Labels::from_pairs([("__name__", "x_total")]);
        assert_eq!(downsample(&names, &raw).len(), 1);
    }

    #[test]
    fn a_reset_across_a_stale_marker_is_still_kept() {
        let m = 60_000;
        let raw = vec![
            s(m, 1.0),
            s(2 * m, 9.0),
            s(3 * m, stale_nan()),
            s(4 * m, 2.0),
            s(5 * m, 3.0),
        ];
        let kept: Vec<i64> = counter_subset(&raw).iter().map(|x| x.t / m).collect();
        assert_eq!(kept, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn gauges_become_one_sample_per_window_and_four_aggregates() {
        let m = 60_000;
        let raw: Vec<Sample> = (1..=10).map(|i| s(i * m, (i * i % 7) as f64)).collect();
        let labels = Labels::from_pairs([("__name__", "g"), ("node", "a")]);
        let out = downsample(&labels, &raw);
        let names: Vec<&str> = out.iter().map(|(l, _)| l.metric_name().unwrap()).collect();
        assert_eq!(
            names,
            ["g", "g:min_5m", "g:max_5m", "g:sum_5m", "g:count_5m"]
        );
        assert_eq!(out[1].0.get("node"), Some("a"));
        for (k, w) in raw.chunks(5).enumerate() {
            let vals: Vec<f64> = w.iter().map(|x| x.v).collect();
            let sum: f64 = vals.iter().sum();
            let t = w[4].t;
            assert_eq!(out[0].1[k], s(t, sum / 5.0));
            assert_eq!(
                out[1].1[k],
                s(t, vals.iter().cloned().fold(f64::INFINITY, f64::min))
            );
            assert_eq!(
                out[2].1[k],
                s(t, vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
            );
            assert_eq!(out[3].1[k], s(t, sum));
            assert_eq!(out[4].1[k], s(t, 5.0));
        }
        // Aggregates are never aggregated again.
        assert_eq!(downsample(&out[1].0, &out[1].1).len(), 1);
    }
}

//! Functions of a range vector: `rate`/`increase`/`delta` with Prometheus' extrapolation,
//! `irate`/`idelta`, the `*_over_time` family, `changes`/`resets`, `deriv`/`predict_linear`
//! (least squares) and `double_exponential_smoothing`.

use std::cmp::Ordering;

use super::{finish, fmt_g, matrix_arg, scalar_arg, FnCall};
use crate::labels::Labels;
use crate::promql::numeric::kahan_inc;
use crate::promql::value::{InstantSample, Value};
use crate::promql::{Annotations, Error};
use crate::tsdb::Sample;

/// The value of a function of this family, or `None` when `c` names another.
pub(super) fn call(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Option<Value>, Error> {
    let v = match c.name {
        "rate" => extrapolated_rate(c, annotations, true, true)?,
        "increase" => extrapolated_rate(c, annotations, true, false)?,
        "delta" => extrapolated_rate(c, annotations, false, false)?,
        "last_over_time" => over_time_keep_name(c, |s| s[s.len() - 1].v)?,
        "first_over_time" => over_time_keep_name(c, |s| s[0].v)?,
        name if is_per_series(name) => {
            let window = c.window.unwrap_or_default();
            over_time(c, |s| series_value(name, s, window))?
        }
        "quantile_over_time" => quantile_over_time(c, annotations)?,
        "predict_linear" => {
            let duration = scalar_arg(c, 1)?;
            let ts = c.ts;
            over_time(c, |s| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, ts);
                    slope * duration + intercept
                })
            })?
        }
        "double_exponential_smoothing" | "holt_winters" => smoothing(c)?,
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// Whether `name` is a function of one range vector whose value for a series depends only on
/// that series' samples in the window (and the window), and whose output drops `__name__`:
/// [`series_value`] computes it, and the engine may call that per series without building a
/// matrix per step.
pub(crate) fn is_per_series(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "mad_over_time"
            | "changes"
            | "resets"
            | "deriv"
    )
}

/// The value of a function for which [`is_per_series`] holds, for one series' samples `s` in
/// the window `(start, end]` (not empty); `None` when the series has no value.
pub(crate) fn series_value(name: &str, s: &[Sample], (start, end): (i64, i64)) -> Option<f64> {
    match name {
        "rate" | "increase" | "delta" => (s.len() >= 2).then(|| {
            let range_secs = (end - start) as f64 / 1000.0;
            extrapolate(s, start, end, range_secs, name != "delta", name == "rate")
        }),
        "irate" => instant_value(s, true),
        "idelta" => instant_value(s, false),
        "avg_over_time" => Some(avg_over_time(s)),
        "sum_over_time" => Some(sum_over_time(s)),
        "count_over_time" => Some(s.len() as f64),
        "min_over_time" => Some(compare_over_time(s, |cur, m| cur < m || m.is_nan()).0),
        "max_over_time" => Some(compare_over_time(s, |cur, m| cur > m || m.is_nan()).0),
        "ts_of_min_over_time" => {
            Some(compare_over_time(s, |cur, m| cur <= m || m.is_nan()).1 as f64 / 1000.0)
        }
        "ts_of_max_over_time" => {
            Some(compare_over_time(s, |cur, m| cur >= m || m.is_nan()).1 as f64 / 1000.0)
        }
        "ts_of_first_over_time" => Some(s[0].t as f64 / 1000.0),
        "ts_of_last_over_time" => Some(s[s.len() - 1].t as f64 / 1000.0),
        "present_over_time" => Some(1.0),
        "stddev_over_time" => Some(variance_over_time(s).sqrt()),
        "stdvar_over_time" => Some(variance_over_time(s)),
        "mad_over_time" => Some(mad_over_time(s)),
        "changes" => {
            let n = s
                .windows(2)
                .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
                .count();
            Some(n as f64)
        }
        "resets" => Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
        "deriv" => (s.len() >= 2).then(|| linear_regression(s, s[0].t).0),
        _ => None,
    }
}

/// The info `rate` and `increase` add for a series with a value whose name is not a counter's.
pub(crate) fn note_counter_name(labels: &Labels, annotations: &mut Annotations) {
    if let Some(name) = labels.metric_name() {
        if !["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|x| name.ends_with(x))
        {
            annotations.info(format!(
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
            ));
        }
    }
}

/// `quantile_over_time(q, m)`, warning when `q` is outside [0, 1] and there is data.
fn quantile_over_time(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Value, Error> {
    let q = scalar_arg(c, 0)?;
    let m = matrix_arg(c, 1)?;
    if (q.is_nan() || !(0.0..=1.0).contains(&q)) && m.iter().any(|s| !s.samples.is_empty()) {
        annotations.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            fmt_g(q)
        ));
    }
    over_time_at(c, 1, |s| {
        let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
        Some(quantile(q, &mut vals))
    })
}

/// `double_exponential_smoothing(m, sf, tf)` (formerly `holt_winters`) with its factor checks.
fn smoothing(c: &FnCall<'_>) -> Result<Value, Error> {
    let sf = scalar_arg(c, 1)?;
    let tf = scalar_arg(c, 2)?;
    // Prometheus validates the factors only when it has a series to smooth.
    if matrix_arg(c, 0)?.iter().all(|s| s.samples.is_empty()) {
        return Ok(Value::Vector(Vec::new()));
    }
    if sf <= 0.0 || sf >= 1.0 {
        return Err(Error::Eval(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(Error::Eval(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    over_time(c, |s| double_exponential_smoothing(s, sf, tf))
}

/// Applies `f` to each series of the range-vector argument at `idx`; the output drops
/// `__name__`. Series for which `f` returns `None` are left out.
fn over_time_at(
    c: &FnCall<'_>,
    idx: usize,
    f: impl Fn(&[Sample]) -> Option<f64>,
) -> Result<Value, Error> {
    let m = matrix_arg(c, idx)?;
    let out = m
        .iter()
        .filter(|s| !s.samples.is_empty())
        .filter_map(|s| {
            f(&s.samples).map(|v| InstantSample {
                labels: s.labels.without_metric_name(),
                t: c.ts,
                v,
            })
        })
        .collect();
    finish(out)
}

fn over_time(c: &FnCall<'_>, f: impl Fn(&[Sample]) -> Option<f64>) -> Result<Value, Error> {
    over_time_at(c, 0, f)
}

/// For `last_over_time` and `first_over_time`, which keep the metric name.
fn over_time_keep_name(c: &FnCall<'_>, f: impl Fn(&[Sample]) -> f64) -> Result<Value, Error> {
    let m = matrix_arg(c, 0)?;
    let out = m
        .iter()
        .filter(|s| !s.samples.is_empty())
        .map(|s| InstantSample {
            labels: s.labels.clone(),
            t: c.ts,
            v: f(&s.samples),
        })
        .collect();
    finish(out)
}

fn sum_over_time(s: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in s {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

fn avg_over_time(s: &[Sample]) -> f64 {
    let (mut sum, mut count) = (s[0].v, 1.0);
    let (mut mean, mut kahan_c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, p) in s[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(p.v, sum, kahan_c);
            if !new_sum.is_infinite() {
                (sum, kahan_c) = (new_sum, new_c);
                continue;
            }
            // Switch to an incremental mean to avoid overflow.
            incremental = true;
            mean = sum / (count - 1.0);
            kahan_c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, kahan_c) = kahan_inc(p.v / count, q * mean, q * kahan_c);
    }
    if incremental {
        mean + kahan_c
    } else {
        sum / count + kahan_c / count
    }
}

/// Returns the selected value and its timestamp (`compareOverTime`).
fn compare_over_time(s: &[Sample], better: impl Fn(f64, f64) -> bool) -> (f64, i64) {
    let (mut best, mut t) = (s[0].v, s[0].t);
    for p in s {
        if better(p.v, best) {
            best = p.v;
            t = p.t;
        }
    }
    (best, t)
}

fn variance_over_time(s: &[Sample]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn mad_over_time(s: &[Sample]) -> f64 {
    if s.iter().any(|p| p.v.is_nan()) {
        return f64::NAN;
    }
    let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
    let median = quantile(0.5, &mut vals);
    let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
    quantile(0.5, &mut dev)
}

/// Prometheus' `quantile` (the φ-quantile with linear interpolation between closest ranks).
fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // vectorByValueHeap's order: NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(p.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * p.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (a, b) = (s[s.len() - 2], s[s.len() - 1]);
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    let mut v = b.v;
    // A drop is a counter reset for irate; NaN compares as "no drop", as in Go.
    if !is_rate || b.v.partial_cmp(&a.v) != Some(Ordering::Less) {
        v = b.v - a.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

fn double_exponential_smoothing(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards its edges
/// (Prometheus' `extrapolatedRate`).
fn extrapolated_rate(
    c: &FnCall<'_>,
    annotations: &mut Annotations,
    is_counter: bool,
    is_rate: bool,
) -> Result<Value, Error> {
    let m = matrix_arg(c, 0)?;
    let window = c
        .window
        .ok_or_else(|| Error::Eval(format!("{}(): the engine passed no range window", c.name)))?;
    let name = match (is_counter, is_rate) {
        (true, true) => "rate",
        (true, false) => "increase",
        _ => "delta",
    };
    let mut out = Vec::new();
    for series in m {
        let Some(v) = series_value(name, &series.samples, window) else {
            continue;
        };
        out.push(InstantSample {
            labels: series.labels.without_metric_name(),
            t: c.ts,
            v,
        });
        if is_counter {
            note_counter_name(&series.labels, annotations);
        }
    }
    finish(out)
}

fn extrapolate(
    s: &[Sample],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    let n1 = s.len() - 1;
    let (first_t, last_t) = (s[0].t, s[n1].t);
    let mut result = s[n1].v - s[0].v;
    if is_counter {
        for w in s.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled_interval / n1 as f64;
    let threshold = avg_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg_between / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past the zero point.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && s[0].v >= 0.0 {
            duration_to_zero = sampled_interval * (s[0].v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg_between / 2.0;
    }
    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= range_secs;
    }
    result * factor
}

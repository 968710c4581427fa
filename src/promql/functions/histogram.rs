//! Classic histograms: `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` over
//! `le` buckets (Prometheus' `BucketQuantile` and `BucketFraction`). The native-histogram
//! functions give no output, as float series hold no native histograms.

use std::cmp::Ordering;

use super::{finish, fmt_g, fmt_openmetrics, scalar_arg, string_arg, vector_arg, FnCall};
use crate::labels::Labels;
use crate::promql::value::{InstantSample, Value, Vector};
use crate::promql::{Annotations, Error};

/// The value of a function of this family, or `None` when `c` names another.
pub(super) fn call(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Option<Value>, Error> {
    let v = match c.name {
        "histogram_quantile" => histogram_quantile(c, annotations)?,
        "histogram_fraction" => histogram_fraction(c, annotations)?,
        "histogram_quantiles" => histogram_quantiles(c, annotations)?,
        // Only native histograms have these; float series give no output.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            vector_arg(c, 0)?;
            Value::Vector(Vec::new())
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    upper_bound: f64,
    count: f64,
}

/// Groups the `le` buckets of the vector by their labels without `le` (the output keeps the
/// group's labels without `__name__`). Buckets with a missing or malformed `le` are skipped with
/// a warning.
fn bucket_groups(v: &Vector, annotations: &mut Annotations) -> Vec<(Labels, Labels, Vec<Bucket>)> {
    let mut groups: Vec<(Labels, Labels, Vec<Bucket>)> = Vec::new();
    for s in v {
        let le = s.labels.get("le").unwrap_or("");
        let Some(ub) = parse_go_float(le) else {
            let mut msg = format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?}"
            );
            if let Some(n) = s.labels.metric_name() {
                msg.push_str(&format!(" for metric name {n:?}"));
            }
            annotations.warn(msg);
            continue;
        };
        let key = s.labels.drop(&["le".to_string()]);
        let b = Bucket {
            upper_bound: ub,
            count: s.v,
        };
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.2.push(b),
            None => {
                let out = key.without_metric_name();
                groups.push((key, out, vec![b]));
            }
        }
    }
    groups
}

/// Go's `strconv.ParseFloat` for the forms an `le` label takes.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => {
            return Some(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn sort_buckets(b: &mut [Bucket]) {
    b.sort_by(|x, y| {
        x.upper_bound
            .partial_cmp(&y.upper_bound)
            .unwrap_or(Ordering::Equal)
    });
}

fn coalesce_buckets(b: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for x in b.iter() {
        match out.last_mut() {
            Some(last) if last.upper_bound == x.upper_bound => last.count += x.count,
            _ => out.push(*x),
        }
    }
    *b = out;
}

/// `almost.Equal` as Prometheus has it: bucket deltas here, expected values in the test
/// scripts (`promqltest`).
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Returns whether monotonicity had to be forced, and the smallest and largest bucket bounds
/// and the largest difference involved.
fn ensure_monotonic(b: &mut [Bucket]) -> (bool, f64, f64, f64) {
    let (mut forced, mut min_b, mut max_b, mut max_diff) =
        (false, f64::INFINITY, f64::NEG_INFINITY, 0.0);
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let curr = x.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            x.count = prev;
            continue;
        }
        if curr < prev {
            x.count = prev;
            forced = true;
            min_b = min_b.min(x.upper_bound);
            max_b = max_b.max(x.upper_bound);
            if prev - curr > max_diff {
                max_diff = prev - curr;
            }
            continue;
        }
        prev = curr;
    }
    (forced, min_b, max_b, max_diff)
}

/// Prometheus' `BucketQuantile`; also returns whether monotonicity was forced.
fn bucket_quantile(q: f64, mut b: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    sort_buckets(&mut b);
    if b.last().is_none_or(|x| x.upper_bound != f64::INFINITY) {
        return (f64::NAN, false);
    }
    coalesce_buckets(&mut b);
    let (forced, ..) = ensure_monotonic(&mut b);
    if b.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = b[b.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket.
    let k = b[..b.len() - 1]
        .iter()
        .position(|x| x.count >= rank)
        .unwrap_or(b.len() - 1);
    let v = if k == b.len() - 1 {
        b[b.len() - 2].upper_bound
    } else if k == 0 && b[0].upper_bound <= 0.0 {
        b[0].upper_bound
    } else {
        let mut bucket_start = 0.0;
        let bucket_end = b[k].upper_bound;
        let mut count = b[k].count;
        if k > 0 {
            bucket_start = b[k - 1].upper_bound;
            count -= b[k - 1].count;
            rank -= b[k - 1].count;
        }
        bucket_start + (bucket_end - bucket_start) * (rank / count)
    };
    (v, forced)
}

fn histogram_quantile(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Value, Error> {
    let q = scalar_arg(c, 0)?;
    let v = vector_arg(c, 1)?;
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        annotations.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            fmt_g(q)
        ));
    }
    let mut out = Vec::new();
    for (key, labels, buckets) in bucket_groups(v, annotations) {
        let (value, forced) = bucket_quantile(q, buckets);
        if forced {
            annotations.info(format!(
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                key.metric_name().unwrap_or("")
            ));
        }
        out.push(InstantSample {
            labels,
            t: c.ts,
            v: value,
        });
    }
    finish(out)
}

/// `histogram_quantiles(v, "label", q1, q2, …)`: one output per group and quantile, the quantile
/// in `label` (as OpenMetrics formats floats).
fn histogram_quantiles(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    let label = string_arg(c, 1)?;
    let qs: Vec<f64> = (2..c.args.len())
        .map(|i| scalar_arg(c, i))
        .collect::<Result<_, _>>()?;
    for &q in &qs {
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            annotations.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                fmt_g(q)
            ));
        }
    }
    let groups = bucket_groups(v, annotations);
    let mut out = Vec::new();
    for &q in &qs {
        for (key, labels, buckets) in &groups {
            let (value, forced) = bucket_quantile(q, buckets.clone());
            if forced {
                annotations.info(format!(
                    "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                    key.metric_name().unwrap_or("")
                ));
            }
            let mut b = labels.builder();
            b.set(label, fmt_openmetrics(q));
            out.push(InstantSample {
                labels: b.build(),
                t: c.ts,
                v: value,
            });
        }
    }
    finish(out)
}

/// Prometheus' `BucketFraction`.
fn bucket_fraction(lower: f64, upper: f64, mut b: Vec<Bucket>) -> f64 {
    sort_buckets(&mut b);
    if b.last().is_none_or(|x| x.upper_bound != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce_buckets(&mut b);
    let count = b[b.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if b[0].upper_bound <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            lower_bound = b[i - 1].upper_bound;
        }
        let upper_bound = x.upper_bound;
        let interpolate = |v: f64, rank: f64| {
            if lower_bound == f64::NEG_INFINITY {
                x.count
            } else {
                rank + (x.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower, rank);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper, rank);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = x.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn histogram_fraction(c: &FnCall<'_>, annotations: &mut Annotations) -> Result<Value, Error> {
    let lower = scalar_arg(c, 0)?;
    let upper = scalar_arg(c, 1)?;
    let v = vector_arg(c, 2)?;
    let out = bucket_groups(v, annotations)
        .into_iter()
        .map(|(_, labels, buckets)| InstantSample {
            labels,
            t: c.ts,
            v: bucket_fraction(lower, upper, buckets),
        })
        .collect();
    finish(out)
}

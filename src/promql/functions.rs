//! PromQL's functions (`rate`, `histogram_quantile`, `label_replace`, …), each evaluated for one
//! step of a query. The engine evaluates the arguments and calls [`call`] once per step; this
//! module owns only the per-step arithmetic, ported from Prometheus 3 `promql/functions.go` and
//! `promql/quantile.go` with the same numerics (Kahan–Neumaier sums, the same order of float
//! operations), so results match Prometheus bit for bit where its tests require it.
//!
//! It does not select series, apply `offset`/`@`, or build range-query matrices (the engine
//! does). Native histograms are not stored by this project, so only float samples exist here.
//!
//! Name handling follows Prometheus: every function drops `__name__` from its output except
//! `last_over_time`, `first_over_time`, `sort*`, `label_replace`/`label_join` (which keep all
//! labels they do not change), `vector`/`time`-like functions produce no labels, and `absent*`
//! derive labels from the selector's equality matchers.

use std::cmp::Ordering;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use super::numeric::{go_max, go_min, kahan_inc};
use super::value::{InstantSample, Matrix, Value, Vector};
use super::{Annotations, Error};
use crate::compat::strconv::format_float;
use crate::labels::{Labels, METRIC_NAME};
use crate::tsdb::Sample;

/// An argument as the engine evaluated it for this step.
#[derive(Clone, Debug)]
pub enum FnArg {
    Scalar(f64),
    String(String),
    Vector(Vector),
    /// For a range-vector argument: each series' samples inside this step's window, staleness
    /// markers already removed.
    Matrix(Matrix),
}

/// One call of a function at one evaluation step.
pub struct FnCall<'a> {
    pub name: &'a str,
    pub args: Vec<FnArg>,
    /// The unevaluated argument expressions: `absent()` and `absent_over_time()` derive their
    /// output labels from the selector's equality matchers.
    pub arg_exprs: &'a [Box<Expr>],
    /// The evaluation time of this step, milliseconds.
    pub ts: i64,
    /// For a range-vector argument, the step's window `(start, end]` in milliseconds (after
    /// `offset` and `@`); `rate`, `increase` and `delta` extrapolate to its edges.
    pub window: Option<(i64, i64)>,
}

/// Evaluates one function call. Returns `Value::Vector` for most functions and `Value::Scalar`
/// for `scalar`, `time`, `pi`, … . Functions drop `__name__` where Prometheus does.
pub fn call(c: FnCall<'_>, annotations: &mut Annotations) -> Result<Value, Error> {
    let name = c.name;
    let scalar = |v: f64| Ok(Value::Scalar { t: c.ts, v });
    match name {
        // --- scalars --------------------------------------------------------------------------
        "time" => scalar(c.ts as f64 / 1000.0),
        "pi" => scalar(std::f64::consts::PI),
        "scalar" => {
            let v = vector_arg(&c, 0)?;
            scalar(if v.len() == 1 { v[0].v } else { f64::NAN })
        }
        "max_of" => scalar(go_max(scalar_arg(&c, 0)?, scalar_arg(&c, 1)?)),
        "min_of" => scalar(go_min(scalar_arg(&c, 0)?, scalar_arg(&c, 1)?)),
        "vector" => Ok(Value::Vector(vec![InstantSample {
            labels: Labels::empty(),
            t: c.ts,
            v: scalar_arg(&c, 0)?,
        }])),

        // --- element-wise float functions ------------------------------------------------------
        "abs" => simple(&c, f64::abs),
        "ceil" => simple(&c, f64::ceil),
        "floor" => simple(&c, f64::floor),
        "exp" => simple(&c, f64::exp),
        "sqrt" => simple(&c, f64::sqrt),
        "ln" => simple(&c, f64::ln),
        "log2" => simple(&c, f64::log2),
        "log10" => simple(&c, f64::log10),
        "sin" => simple(&c, f64::sin),
        "cos" => simple(&c, f64::cos),
        "tan" => simple(&c, f64::tan),
        "asin" => simple(&c, f64::asin),
        "acos" => simple(&c, f64::acos),
        "atan" => simple(&c, f64::atan),
        "sinh" => simple(&c, f64::sinh),
        "cosh" => simple(&c, f64::cosh),
        "tanh" => simple(&c, f64::tanh),
        "asinh" => simple(&c, f64::asinh),
        "acosh" => simple(&c, f64::acosh),
        "atanh" => simple(&c, f64::atanh),
        "rad" => simple(&c, |v| v * std::f64::consts::PI / 180.0),
        "deg" => simple(&c, |v| v * 180.0 / std::f64::consts::PI),
        "sgn" => simple(&c, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "round" => {
            let to_nearest = if c.args.len() >= 2 {
                scalar_arg(&c, 1)?
            } else {
                1.0
            };
            let inv = 1.0 / to_nearest;
            simple(&c, |f| (f * inv + 0.5).floor() / inv)
        }
        "clamp" => clamp(&c, scalar_arg(&c, 1)?, scalar_arg(&c, 2)?),
        "clamp_max" => clamp(&c, f64::NEG_INFINITY, scalar_arg(&c, 1)?),
        "clamp_min" => clamp(&c, scalar_arg(&c, 1)?, f64::INFINITY),
        "timestamp" => {
            let out = vector_arg(&c, 0)?
                .iter()
                .map(|s| InstantSample {
                    labels: s.labels.without_metric_name(),
                    t: c.ts,
                    v: s.t as f64 / 1000.0,
                })
                .collect();
            finish(out)
        }

        // --- date functions --------------------------------------------------------------------
        "days_in_month" => date(&c, |d| days_in_month(d.year, d.month) as f64),
        "day_of_month" => date(&c, |d| d.day as f64),
        "day_of_week" => date(&c, |d| d.weekday as f64),
        "day_of_year" => date(&c, |d| d.yday as f64),
        "hour" => date(&c, |d| d.hour as f64),
        "minute" => date(&c, |d| d.minute as f64),
        "month" => date(&c, |d| d.month as f64),
        "year" => date(&c, |d| d.year as f64),

        // --- sorting and labels ----------------------------------------------------------------
        "sort" => sort_by_value(&c, false),
        "sort_desc" => sort_by_value(&c, true),
        "sort_by_label" => sort_by_label(&c, false),
        "sort_by_label_desc" => sort_by_label(&c, true),
        "label_replace" => label_replace(&c),
        "label_join" => label_join(&c),
        "absent" => {
            if !vector_arg(&c, 0)?.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![InstantSample {
                labels: absent_labels(c.arg_exprs.first().map(|b| b.as_ref())),
                t: c.ts,
                v: 1.0,
            }]))
        }
        "absent_over_time" => {
            if matrix_arg(&c, 0)?.iter().any(|s| !s.samples.is_empty()) {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(vec![InstantSample {
                labels: absent_labels(c.arg_exprs.first().map(|b| b.as_ref())),
                t: c.ts,
                v: 1.0,
            }]))
        }

        // --- histograms (classic buckets) ------------------------------------------------------
        "histogram_quantile" => histogram_quantile(&c, annotations),
        "histogram_fraction" => histogram_fraction(&c, annotations),
        "histogram_quantiles" => histogram_quantiles(&c, annotations),
        // Only native histograms have these; float series give no output.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            vector_arg(&c, 0)?;
            Ok(Value::Vector(Vec::new()))
        }

        // --- range-vector functions ------------------------------------------------------------
        "rate" => extrapolated_rate(&c, annotations, true, true),
        "increase" => extrapolated_rate(&c, annotations, true, false),
        "delta" => extrapolated_rate(&c, annotations, false, false),
        "irate" => over_time(&c, |s| instant_value(s, true)),
        "idelta" => over_time(&c, |s| instant_value(s, false)),
        "avg_over_time" => over_time(&c, |s| Some(avg_over_time(s))),
        "sum_over_time" => over_time(&c, |s| Some(sum_over_time(s))),
        "count_over_time" => over_time(&c, |s| Some(s.len() as f64)),
        "min_over_time" => over_time(&c, |s| {
            Some(compare_over_time(s, |cur, m| cur < m || m.is_nan()).0)
        }),
        "max_over_time" => over_time(&c, |s| {
            Some(compare_over_time(s, |cur, m| cur > m || m.is_nan()).0)
        }),
        "ts_of_min_over_time" => over_time(&c, |s| {
            Some(compare_over_time(s, |cur, m| cur <= m || m.is_nan()).1 as f64 / 1000.0)
        }),
        "ts_of_max_over_time" => over_time(&c, |s| {
            Some(compare_over_time(s, |cur, m| cur >= m || m.is_nan()).1 as f64 / 1000.0)
        }),
        "ts_of_first_over_time" => over_time(&c, |s| Some(s[0].t as f64 / 1000.0)),
        "ts_of_last_over_time" => over_time(&c, |s| Some(s[s.len() - 1].t as f64 / 1000.0)),
        "last_over_time" => over_time_keep_name(&c, |s| s[s.len() - 1].v),
        "first_over_time" => over_time_keep_name(&c, |s| s[0].v),
        "present_over_time" => over_time(&c, |_| Some(1.0)),
        "stddev_over_time" => over_time(&c, |s| Some(variance_over_time(s).sqrt())),
        "stdvar_over_time" => over_time(&c, |s| Some(variance_over_time(s))),
        "mad_over_time" => over_time(&c, |s| Some(mad_over_time(s))),
        "quantile_over_time" => {
            let q = scalar_arg(&c, 0)?;
            let m = matrix_arg(&c, 1)?;
            if (q.is_nan() || !(0.0..=1.0).contains(&q)) && m.iter().any(|s| !s.samples.is_empty())
            {
                annotations.warn(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    fmt_g(q)
                ));
            }
            over_time_at(&c, 1, |s| {
                let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
                Some(quantile(q, &mut vals))
            })
        }
        "changes" => over_time(&c, |s| {
            let n = s
                .windows(2)
                .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
                .count();
            Some(n as f64)
        }),
        "resets" => over_time(&c, |s| {
            Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64)
        }),
        "deriv" => over_time(&c, |s| {
            (s.len() >= 2).then(|| linear_regression(s, s[0].t).0)
        }),
        "predict_linear" => {
            let duration = scalar_arg(&c, 1)?;
            let ts = c.ts;
            over_time(&c, |s| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, ts);
                    slope * duration + intercept
                })
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let sf = scalar_arg(&c, 1)?;
            let tf = scalar_arg(&c, 2)?;
            // Prometheus validates the factors only when it has a series to smooth.
            if matrix_arg(&c, 0)?.iter().all(|s| s.samples.is_empty()) {
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
            over_time(&c, |s| double_exponential_smoothing(s, sf, tf))
        }

        _ => Err(Error::Eval(format!("function {name} is not implemented"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Argument access

fn arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a FnArg, Error> {
    c.args
        .get(i)
        .ok_or_else(|| Error::Eval(format!("{}(): missing argument {}", c.name, i + 1)))
}

fn vector_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a Vector, Error> {
    match arg(c, i)? {
        FnArg::Vector(v) => Ok(v),
        other => Err(Error::Eval(format!(
            "{}(): argument {} must be an instant vector, got {other:?}",
            c.name,
            i + 1
        ))),
    }
}

fn matrix_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a Matrix, Error> {
    match arg(c, i)? {
        FnArg::Matrix(m) => Ok(m),
        _ => Err(Error::Eval(format!(
            "{}(): argument {} must be a range vector",
            c.name,
            i + 1
        ))),
    }
}

fn scalar_arg(c: &FnCall<'_>, i: usize) -> Result<f64, Error> {
    match arg(c, i)? {
        FnArg::Scalar(v) => Ok(*v),
        _ => Err(Error::Eval(format!(
            "{}(): argument {} must be a scalar",
            c.name,
            i + 1
        ))),
    }
}

fn string_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a str, Error> {
    match arg(c, i)? {
        FnArg::String(s) => Ok(s),
        _ => Err(Error::Eval(format!(
            "{}(): argument {} must be a string",
            c.name,
            i + 1
        ))),
    }
}

/// Returns the vector, failing as Prometheus does when dropping `__name__` made two elements
/// identical.
fn finish(out: Vector) -> Result<Value, Error> {
    if out.len() > 1 {
        let mut ls: Vec<&Labels> = out.iter().map(|s| &s.labels).collect();
        ls.sort();
        if ls.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Eval(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(Value::Vector(out))
}

// ---------------------------------------------------------------------------------------------
// Element-wise functions

fn simple(c: &FnCall<'_>, f: impl Fn(f64) -> f64) -> Result<Value, Error> {
    let out = vector_arg(c, 0)?
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: f(s.v),
        })
        .collect();
    finish(out)
}

fn clamp(c: &FnCall<'_>, min: f64, max: f64) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    if max < min {
        return Ok(Value::Vector(Vec::new()));
    }
    // Go's math.Max/math.Min: NaN wins.
    let out = v
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: go_max(min, go_min(max, s.v)),
        })
        .collect();
    finish(out)
}

/// A civil date-time in UTC, from Unix seconds.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// 0 = Sunday, as Go's `time.Weekday`.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = is_leap(year);
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day + u32::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `int64(f)` conversion on amd64: NaN and out-of-range values become `i64::MIN`.
fn go_int64(f: f64) -> i64 {
    // 2^63 is exactly representable; everything in [-2^63, 2^63) converts.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

fn date(c: &FnCall<'_>, f: impl Fn(&Civil) -> f64) -> Result<Value, Error> {
    if c.args.is_empty() {
        let v = f(&civil(c.ts.div_euclid(1000)));
        return Ok(Value::Vector(vec![InstantSample {
            labels: Labels::empty(),
            t: c.ts,
            v,
        }]));
    }
    let out = vector_arg(c, 0)?
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: f(&civil(go_int64(s.v))),
        })
        .collect();
    finish(out)
}

// ---------------------------------------------------------------------------------------------
// Sorting and labels

fn sort_by_value(c: &FnCall<'_>, desc: bool) -> Result<Value, Error> {
    let mut v = vector_arg(c, 0)?.clone();
    // NaN sorts last in both directions, as Prometheus' heap orderings make it.
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
    });
    Ok(Value::Vector(v))
}

fn sort_by_label(c: &FnCall<'_>, desc: bool) -> Result<Value, Error> {
    let mut v = vector_arg(c, 0)?.clone();
    let names: Vec<&str> = (1..c.args.len())
        .map(|i| string_arg(c, i))
        .collect::<Result<_, _>>()?;
    v.sort_by(|a, b| {
        for n in &names {
            let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if x == y {
                continue;
            }
            let less = natsort_less(x, y);
            return match (less, desc) {
                (true, false) | (false, true) => Ordering::Less,
                _ => Ordering::Greater,
            };
        }
        let o = a.labels.cmp(&b.labels);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    Ok(Value::Vector(v))
}

/// `github.com/facette/natsort.Compare` (the version Prometheus pins): chunks of digits compare
/// as integers, other chunks as strings.
fn natsort_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                if i > start {
                    out.push(&s[start..i]);
                }
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let last_a = i + 1 == ca.len();
        let last_b = i + 1 == cb.len();
        if let (Ok(xi), Ok(yi)) = (x.parse::<i64>(), y.parse::<i64>()) {
            if xi == yi {
                if last_a {
                    return true;
                } else if last_b {
                    return false;
                }
                continue;
            }
            return xi < yi;
        }
        if x == y {
            if last_a {
                return true;
            } else if last_b {
                return false;
            }
            continue;
        }
        return x < y;
    }
    false
}

/// Prometheus 3 accepts any non-empty UTF-8 label name.
fn valid_label_name(n: &str) -> bool {
    !n.is_empty()
}

fn label_replace(c: &FnCall<'_>) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    let dst = string_arg(c, 1)?;
    let repl = string_arg(c, 2)?;
    let src = string_arg(c, 3)?;
    let re_str = string_arg(c, 4)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        Error::Eval(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let src_val = s.labels.get(src).unwrap_or("");
        let labels = match re.captures(src_val) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                let mut b = s.labels.builder();
                b.set(dst, res);
                b.build()
            }
            None => s.labels.clone(),
        };
        out.push(InstantSample {
            labels,
            t: s.t,
            v: s.v,
        });
    }
    finish(out)
}

fn label_join(c: &FnCall<'_>) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    let dst = string_arg(c, 1)?;
    let sep = string_arg(c, 2)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.len() {
        let s = string_arg(c, i)?;
        if !valid_label_name(s) {
            return Err(Error::Eval(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .iter()
        .map(|s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            let mut b = s.labels.builder();
            b.set(dst, joined.join(sep));
            InstantSample {
                labels: b.build(),
                t: s.t,
                v: s.v,
            }
        })
        .collect();
    finish(out)
}

/// The labels `absent(sel)` reports: the selector's `name="value"` matchers (other than the
/// metric name); a label matched more than once, or not by equality, is left out.
fn absent_labels(e: Option<&Expr>) -> Labels {
    let vs = match e {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = Labels::empty().builder();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(&m.name.as_str()) {
            b.set(m.name.clone(), m.value.clone());
            has.push(&m.name);
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

// ---------------------------------------------------------------------------------------------
// Range-vector functions

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
    let (range_start, range_end) = c
        .window
        .ok_or_else(|| Error::Eval(format!("{}(): the engine passed no range window", c.name)))?;
    let range_secs = (range_end - range_start) as f64 / 1000.0;
    let mut out = Vec::new();
    for series in m {
        let s = &series.samples;
        if s.len() < 2 {
            continue;
        }
        let v = extrapolate(s, range_start, range_end, range_secs, is_counter, is_rate);
        out.push(InstantSample {
            labels: series.labels.without_metric_name(),
            t: c.ts,
            v,
        });
        if is_counter {
            if let Some(name) = series.labels.metric_name() {
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

// ---------------------------------------------------------------------------------------------
// Classic histograms

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

/// `almost.Equal` as Prometheus uses it for small bucket deltas.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
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

/// Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`), as annotations print numbers.
fn fmt_g(v: f64) -> String {
    format_float(v, 'g', -1)
}

/// `labels.FormatOpenMetricsFloat`: `%g`, with `.0` added to integral values.
fn fmt_openmetrics(v: f64) -> String {
    let s = fmt_g(v);
    if v.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::Series;

    fn series(name: &str, pts: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "a")]),
            samples: pts.iter().map(|&(t, v)| Sample { t, v }).collect(),
        }
    }

    fn run(
        name: &str,
        args: Vec<FnArg>,
        ts: i64,
        window: Option<(i64, i64)>,
    ) -> (Value, Annotations) {
        let mut a = Annotations::default();
        let v = call(
            FnCall {
                name,
                args,
                arg_exprs: &[],
                ts,
                window,
            },
            &mut a,
        )
        .expect("call");
        (v, a)
    }

    fn single(v: &Value) -> f64 {
        match v {
            Value::Vector(v) if v.len() == 1 => v[0].v,
            Value::Scalar { v, .. } => *v,
            other => panic!("want one value, got {other:?}"),
        }
    }

    #[test]
    fn rate_extrapolates_and_handles_counter_resets() {
        // 0, 10, 20, ..., sampled every 60s, window (0, 300s]: Prometheus gives 1/6 per second.
        let s = series(
            "c_total",
            &[
                (60_000, 10.0),
                (120_000, 20.0),
                (180_000, 30.0),
                (240_000, 40.0),
                (300_000, 50.0),
            ],
        );
        let (v, a) = run(
            "rate",
            vec![FnArg::Matrix(vec![s])],
            300_000,
            Some((0, 300_000)),
        );
        assert!((single(&v) - 50.0 / 300.0).abs() < 1e-12, "{v:?}");
        assert!(a.infos.is_empty());
        // A reset from 30 to 5 counts the 30 already seen.
        let s = series("c", &[(0, 10.0), (60_000, 30.0), (120_000, 5.0)]);
        let (v, a) = run(
            "increase",
            vec![FnArg::Matrix(vec![s])],
            120_000,
            Some((0, 120_000)),
        );
        assert_eq!(single(&v), 25.0 * 120.0 / 120.0 + 0.0);
        assert_eq!(
            a.infos.len(),
            1,
            "a name without _total gets the info annotation"
        );
    }

    #[test]
    fn histogram_quantile_interpolates_in_classic_buckets() {
        let b = |le: &str, v: f64| InstantSample {
            labels: Labels::from_pairs([("__name__", "h_bucket"), ("le", le)]),
            t: 0,
            v,
        };
        let v = vec![b("0.1", 50.0), b("0.5", 100.0), b("+Inf", 100.0)];
        let (r, _) = run(
            "histogram_quantile",
            vec![FnArg::Scalar(0.75), FnArg::Vector(v)],
            0,
            None,
        );
        assert!((single(&r) - 0.3).abs() < 1e-12);
        // Non-monotonic input is fixed and annotated.
        let v = vec![b("1", 10.0), b("2", 8.0), b("+Inf", 10.0)];
        let (_, a) = run(
            "histogram_quantile",
            vec![FnArg::Scalar(0.5), FnArg::Vector(v)],
            0,
            None,
        );
        assert_eq!(a.infos.len(), 1);
    }

    #[test]
    fn label_replace_expands_groups_and_rejects_bad_regex() {
        let v = vec![InstantSample {
            labels: Labels::from_pairs([("__name__", "m"), ("src", "a-b")]),
            t: 0,
            v: 1.0,
        }];
        let args = |re: &str| {
            vec![
                FnArg::Vector(v.clone()),
                FnArg::String("dst".into()),
                FnArg::String("$2.$1".into()),
                FnArg::String("src".into()),
                FnArg::String(re.into()),
            ]
        };
        let (r, _) = run("label_replace", args("(.*)-(.*)"), 0, None);
        let Value::Vector(r) = r else { panic!() };
        assert_eq!(r[0].labels.get("dst"), Some("b.a"));
        assert_eq!(r[0].labels.metric_name(), Some("m"));
        let mut a = Annotations::default();
        let e = call(
            FnCall {
                name: "label_replace",
                args: args("(.*"),
                arg_exprs: &[],
                ts: 0,
                window: None,
            },
            &mut a,
        );
        assert_eq!(
            e,
            Err(Error::Eval(
                "invalid regular expression in label_replace(): (.*".into()
            ))
        );
    }

    #[test]
    fn dates_are_utc() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let t = 1_709_214_300.0;
        let v = |name| {
            let s = InstantSample {
                labels: Labels::empty(),
                t: 0,
                v: t,
            };
            single(&run(name, vec![FnArg::Vector(vec![s])], 0, None).0)
        };
        assert_eq!(v("year"), 2024.0);
        assert_eq!(v("month"), 2.0);
        assert_eq!(v("day_of_month"), 29.0);
        assert_eq!(v("days_in_month"), 29.0);
        assert_eq!(v("day_of_week"), 4.0);
        assert_eq!(v("day_of_year"), 60.0);
        assert_eq!(v("hour"), 13.0);
        assert_eq!(v("minute"), 45.0);
    }

    #[test]
    fn sums_are_compensated() {
        let pts: Vec<(i64, f64)> = vec![(0, 1e100), (1, 1.0), (2, -1e100)];
        let (v, _) = run(
            "sum_over_time",
            vec![FnArg::Matrix(vec![series("x", &pts)])],
            0,
            None,
        );
        assert_eq!(single(&v), 1.0);
    }

    fn vec_of(vals: &[(&str, f64)]) -> Vector {
        vals.iter()
            .map(|&(i, v)| InstantSample {
                labels: Labels::from_pairs([("__name__", "m"), ("i", i)]),
                t: 0,
                v,
            })
            .collect()
    }

    #[test]
    fn sort_puts_nan_last_both_ways() {
        let v = vec_of(&[("a", 2.0), ("b", f64::NAN), ("c", 1.0)]);
        let order = |name| {
            let (r, _) = run(name, vec![FnArg::Vector(v.clone())], 0, None);
            let Value::Vector(r) = r else { panic!() };
            r.iter()
                .map(|s| s.labels.get("i").unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("")
        };
        assert_eq!(order("sort"), "cab");
        assert_eq!(order("sort_desc"), "acb");
    }

    #[test]
    fn absent_takes_labels_from_equality_matchers() {
        let e = crate::promql::parse(r#"absent(nope{job="a", instance=~"x", env="p", env="q"})"#)
            .unwrap();
        let Expr::Call(call_expr) = &e else { panic!() };
        let mut a = Annotations::default();
        let c = FnCall {
            name: "absent",
            args: vec![FnArg::Vector(vec![])],
            arg_exprs: &call_expr.args.args,
            ts: 5,
            window: None,
        };
        let Ok(Value::Vector(r)) = super::call(c, &mut a) else {
            panic!()
        };
        assert_eq!(r[0].labels.to_string(), r#"{job="a"}"#);
        assert_eq!(r[0].v, 1.0);
    }

    #[test]
    fn clamp_with_min_above_max_is_empty_and_names_are_dropped() {
        let v = vec_of(&[("a", 5.0)]);
        let (r, _) = run(
            "clamp",
            vec![
                FnArg::Vector(v.clone()),
                FnArg::Scalar(2.0),
                FnArg::Scalar(1.0),
            ],
            0,
            None,
        );
        assert_eq!(r, Value::Vector(vec![]));
        let (r, _) = run(
            "clamp_max",
            vec![FnArg::Vector(v), FnArg::Scalar(3.0)],
            0,
            None,
        );
        let Value::Vector(r) = r else { panic!() };
        assert_eq!((r[0].v, r[0].labels.metric_name()), (3.0, None));
    }

    #[test]
    fn irate_treats_a_drop_as_a_reset_and_idelta_does_not() {
        let s = series("c_total", &[(0, 10.0), (10_000, 30.0), (20_000, 5.0)]);
        let (r, _) = run(
            "irate",
            vec![FnArg::Matrix(vec![s.clone()])],
            20_000,
            Some((-40_000, 20_000)),
        );
        assert_eq!(single(&r), 0.5);
        let (r, _) = run(
            "idelta",
            vec![FnArg::Matrix(vec![s])],
            20_000,
            Some((-40_000, 20_000)),
        );
        assert_eq!(single(&r), -25.0);
    }

    #[test]
    fn predict_linear_and_deriv_follow_the_least_squares_line() {
        let s = series("g", &[(0, 1.0), (60_000, 3.0), (120_000, 5.0)]);
        let (r, _) = run(
            "deriv",
            vec![FnArg::Matrix(vec![s.clone()])],
            120_000,
            Some((0, 120_000)),
        );
        assert!((single(&r) - 2.0 / 60.0).abs() < 1e-12);
        let (r, _) = run(
            "predict_linear",
            vec![FnArg::Matrix(vec![s]), FnArg::Scalar(60.0)],
            120_000,
            Some((0, 120_000)),
        );
        assert!((single(&r) - 7.0).abs() < 1e-9);
    }

    #[test]
    fn quantile_over_time_warns_on_bad_quantile() {
        let s = series("g", &[(0, 1.0), (1, 2.0), (2, 4.0)]);
        let (r, a) = run(
            "quantile_over_time",
            vec![FnArg::Scalar(0.5), FnArg::Matrix(vec![s.clone()])],
            2,
            Some((0, 2)),
        );
        assert_eq!((single(&r), a.warnings.len()), (2.0, 0));
        let (r, a) = run(
            "quantile_over_time",
            vec![FnArg::Scalar(1.5), FnArg::Matrix(vec![s])],
            2,
            Some((0, 2)),
        );
        assert_eq!(single(&r), f64::INFINITY);
        assert_eq!(
            a.warnings,
            vec!["PromQL warning: quantile value should be between 0 and 1, got 1.5".to_string()]
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(fmt_g(1e6), "1e+06");
        assert_eq!(fmt_g(123456.0), "123456");
        assert_eq!(fmt_g(0.00001), "1e-05");
        assert_eq!(fmt_openmetrics(0.25), "0.25");
        assert_eq!(fmt_openmetrics(2.0), "2.0");
    }

    #[test]
    fn natural_sort() {
        assert!(natsort_less("a2", "a10"));
        assert!(!natsort_less("a10", "a2"));
        assert!(natsort_less("abc", "abd"));
    }
}

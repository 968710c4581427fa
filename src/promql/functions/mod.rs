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
//!
//! By family: `math` (scalars and element-wise float functions), `date` (calendar fields of a
//! timestamp), `labels` (sorting, label rewriting, `absent*`), `range` (functions of a range
//! vector: rates, `*_over_time`, regression, smoothing) and `histogram` (classic `le` buckets).

mod date;
mod histogram;
mod labels;
mod math;
mod range;

pub(crate) use histogram::almost_equal;
pub(crate) use range::{is_per_series, note_counter_name, series_value};

use promql_parser::parser::Expr;

use super::value::{Matrix, Value, Vector};
use super::{Annotations, Error};
use crate::compat::strconv::format_float;
use crate::labels::Labels;

#[cfg(test)]
use super::value::InstantSample;
#[cfg(test)]
use crate::tsdb::Sample;
#[cfg(test)]
use labels::natsort_less;

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
    if let Some(v) = math::call(&c)? {
        return Ok(v);
    }
    if let Some(v) = date::call(&c)? {
        return Ok(v);
    }
    if let Some(v) = labels::call(&c)? {
        return Ok(v);
    }
    if let Some(v) = histogram::call(&c, annotations)? {
        return Ok(v);
    }
    if let Some(v) = range::call(&c, annotations)? {
        return Ok(v);
    }
    Err(Error::Eval(format!(
        "function {} is not implemented",
        c.name
    )))
}

// ---------------------------------------------------------------------------------------------
// Argument access

pub(super) fn arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a FnArg, Error> {
    c.args
        .get(i)
        .ok_or_else(|| Error::Eval(format!("{}(): missing argument {}", c.name, i + 1)))
}

pub(super) fn vector_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a Vector, Error> {
    match arg(c, i)? {
        FnArg::Vector(v) => Ok(v),
        other => Err(Error::Eval(format!(
            "{}(): argument {} must be an instant vector, got {other:?}",
            c.name,
            i + 1
        ))),
    }
}

pub(super) fn matrix_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a Matrix, Error> {
    match arg(c, i)? {
        FnArg::Matrix(m) => Ok(m),
        _ => Err(Error::Eval(format!(
            "{}(): argument {} must be a range vector",
            c.name,
            i + 1
        ))),
    }
}

pub(super) fn scalar_arg(c: &FnCall<'_>, i: usize) -> Result<f64, Error> {
    match arg(c, i)? {
        FnArg::Scalar(v) => Ok(*v),
        _ => Err(Error::Eval(format!(
            "{}(): argument {} must be a scalar",
            c.name,
            i + 1
        ))),
    }
}

pub(super) fn string_arg<'a>(c: &'a FnCall<'_>, i: usize) -> Result<&'a str, Error> {
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
pub(super) fn finish(out: Vector) -> Result<Value, Error> {
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

/// Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`), as annotations print numbers.
pub(super) fn fmt_g(v: f64) -> String {
    format_float(v, 'g', -1)
}

/// `labels.FormatOpenMetricsFloat`: `%g`, with `.0` added to integral values.
pub(super) fn fmt_openmetrics(v: f64) -> String {
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

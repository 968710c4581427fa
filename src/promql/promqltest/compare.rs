//! Comparing a query's outcome with a case's expectations: errors, annotations, and the value
//! (floats within test.go's relative epsilon).

use super::script::{EvalCmd, ExpectKind, ExpectedSeries, MsgMatch};
use super::series::SeqValue;
use crate::promql::{Error, InstantSample, QueryResult, Value};
use crate::tsdb::{is_stale_nan, Series};

/// Relative error allowed for sample values (`defaultEpsilon` in test.go).
pub(super) const EPSILON: f64 = 0.000001;

/// Prometheus' `almost.Equal` with the scripts' epsilon; a stale marker equals only a stale
/// marker.
pub(super) fn almost_equal(a: f64, b: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    crate::promql::functions::almost_equal(a, b, EPSILON)
}

/// Checks error expectations, annotations, then the value (test.go's exec + compareResult).
pub(super) fn check_result(
    ev: &EvalCmd,
    res: Result<QueryResult, Error>,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    let r = match res {
        Err(e) => {
            if !ev.is_fail() {
                return Err(format!("error evaluating query: {e}"));
            }
            let msg = e.to_string();
            if let Some(m) = &ev.expected_fail_message {
                if *m != msg {
                    return Err(format!("expected error {m:?}, but got: {msg}"));
                }
            }
            if let Some(r) = &ev.expected_fail_regexp {
                if !r.is_match(&msg) {
                    return Err(format!(
                        "expected error matching pattern {:?}, but got: {msg}",
                        r.as_str()
                    ));
                }
            }
            if let Some(m) = ev.expects_of(ExpectKind::Fail).first() {
                if !m.matches_error(&msg) {
                    return Err(format!(
                        "expected error matching {}, but got: {msg}",
                        m.describe()
                    ));
                }
            }
            return Ok(());
        }
        Ok(r) => r,
    };
    if ev.is_fail() {
        return Err(format!(
            "expected error evaluating query but got none (result: {})",
            show_value(&r.value)
        ));
    }
    check_annotations(ev, &r.annotations)?;
    compare_result(ev, &r.value, start, end, step)
}

pub(super) fn check_annotations(
    ev: &EvalCmd,
    a: &crate::promql::Annotations,
) -> Result<(), String> {
    if ev.warn && a.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.info && a.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    check_annotations_of(&ev.expects_of(ExpectKind::Warn), &a.warnings, "warn")?;
    check_annotations_of(&ev.expects_of(ExpectKind::Info), &a.infos, "info")?;
    if ev.has(ExpectKind::NoWarn) && !a.warnings.is_empty() {
        return Err(format!("unexpected warning annotations: {:?}", a.warnings));
    }
    if ev.has(ExpectKind::NoInfo) && !a.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", a.infos));
    }
    Ok(())
}

pub(super) fn check_annotations_of(
    expected: &[&MsgMatch],
    actual: &[String],
    kind: &str,
) -> Result<(), String> {
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for e in expected {
        if !actual.iter().any(|a| e.matches_annotation(a)) {
            return Err(format!(
                "expected {kind} annotation matching {} but no matching annotation was found, found: {actual:?}",
                e.describe()
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.matches_annotation(a)) {
            return Err(format!("unexpected {kind} annotation {a:?}"));
        }
    }
    Ok(())
}

pub(super) fn assert_sorted(m: &[crate::tsdb::Series]) -> Result<(), String> {
    for w in m.windows(2) {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but {} sorts after {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    Ok(())
}

pub(super) fn show_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(vec) => {
            let items: Vec<String> = vec
                .iter()
                .map(|s| format!("{} {}", s.labels, s.v))
                .collect();
            format!("vector [{}]", items.join(", "))
        }
        Value::Matrix(m) => {
            let items: Vec<String> = m.iter().map(show_series).collect();
            format!("matrix [{}]", items.join(", "))
        }
    }
}

pub(super) fn show_series(s: &crate::tsdb::Series) -> String {
    let pts: Vec<String> = s
        .samples
        .iter()
        .map(|p| format!("{}@{}", p.v, p.t))
        .collect();
    format!("{} [{}]", s.labels, pts.join(" "))
}

/// Compares a query's value with the case's expected series, scalar or string.
pub(super) fn compare_result(
    ev: &EvalCmd,
    v: &Value,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    let expect_scalar = ev.expected_scalar.is_some();
    match v {
        Value::Matrix(m) => {
            if ev.is_ordered() {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if expect_scalar {
                return Err(format!("expected scalar result, but got {}", show_value(v)));
            }
            compare_matrix(ev, v, m, start, end, step)
        }
        Value::Vector(vec) => {
            if expect_scalar {
                return Err(format!("expected scalar result, but got {}", show_value(v)));
            }
            compare_vector(ev, v, vec)
        }
        Value::Scalar { v: got, .. } => {
            let Some(want) = ev.expected_scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {got}"
                ));
            };
            if !almost_equal(want, *got) {
                return Err(format!("expected scalar {want} but got {got}"));
            }
            Ok(())
        }
        Value::String { s, .. } => {
            let want = ev.expected_string.as_deref().unwrap_or("");
            if want != s {
                return Err(format!("expected string {want:?} but got {s:?}"));
            }
            Ok(())
        }
    }
}

/// A range result: every series expected, each with the expected points at `start + i*step`.
fn compare_matrix(
    ev: &EvalCmd,
    v: &Value,
    m: &[Series],
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    assert_sorted(m)?;
    let mut seen = vec![false; ev.expected.len()];
    for s in m {
        let Some(k) = ev.expected.iter().position(|e| e.labels == s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has {}",
                s.labels,
                show_series(s)
            ));
        };
        seen[k] = true;
        compare_series(&ev.expected[k], s, start, end, step)?;
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        return Err(format!(
            "expected metric {} not found (result: {})",
            ev.expected[k].labels,
            show_value(v)
        ));
    }
    Ok(())
}

/// One series of a range result against its expectation.
fn compare_series(
    exp: &ExpectedSeries,
    s: &Series,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    let mut want = Vec::new();
    for (i, e) in exp.vals.iter().enumerate() {
        let t = start + i as i64 * step;
        if t > end {
            return Err(format!(
                "expected {} points for {}, but query time range cannot return this many points",
                exp.vals.len(),
                exp.labels
            ));
        }
        if let SeqValue::Float(f) = e {
            want.push((t, *f));
        }
    }
    if want.len() != s.samples.len() {
        return Err(format!(
            "expected {} float points for {}, but got {}",
            want.len(),
            exp.labels,
            show_series(s)
        ));
    }
    for (i, ((t, f), got)) in want.iter().zip(&s.samples).enumerate() {
        if *t != got.t {
            return Err(format!(
                "expected float value at index {i} for {} to have timestamp {t}, but it had timestamp {} (result has {})",
                exp.labels,
                got.t,
                show_series(s)
            ));
        }
        if !almost_equal(got.v, *f) {
            return Err(format!(
                "expected float value at index {i} (t={t}) for {} to be {f}, but got {} (result has {})",
                exp.labels,
                got.v,
                show_series(s)
            ));
        }
    }
    Ok(())
}

/// An instant result: every series expected, in position when the case is ordered.
fn compare_vector(ev: &EvalCmd, v: &Value, vec: &[InstantSample]) -> Result<(), String> {
    let mut seen = vec![false; ev.expected.len()];
    for (pos, s) in vec.iter().enumerate() {
        let Some(k) = ev.expected.iter().position(|e| e.labels == s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has value {}",
                s.labels, s.v
            ));
        };
        let exp = &ev.expected[k];
        if ev.is_ordered() && exp.pos != pos + 1 {
            return Err(format!(
                "expected metric {} at position {} but was at {}",
                s.labels,
                exp.pos,
                pos + 1
            ));
        }
        let want = match exp.vals.first() {
            Some(SeqValue::Float(f)) => *f,
            // test.go compares an omitted (`_`) expectation as the value 0.
            Some(SeqValue::Omitted) => 0.0,
            _ => {
                return Err(format!(
                    "expected no value for {} but got {}",
                    s.labels, s.v
                ))
            }
        };
        if !almost_equal(want, s.v) {
            return Err(format!("expected {want} for {} but got {}", s.labels, s.v));
        }
        seen[k] = true;
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        return Err(format!(
            "expected metric {} not found (result: {})",
            ev.expected[k].labels,
            show_value(v)
        ));
    }
    Ok(())
}

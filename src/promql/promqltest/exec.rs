//! Running the commands: loading series into an in-memory [`Db`], evaluating each case through
//! the [`Engine`] (as an instant query, in range mode and with `@` pinned), and the skip rules.

use promql_parser::parser::{Expr, VectorSelector};
use regex::Regex;

use super::at::at_modifier_variants;
use super::compare::{assert_sorted, check_result, compare_result};
use super::script::{EvalCmd, EvalKind, LoadCmd};
use super::series::SeqValue;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::{Engine, QueryResult, Value};
use crate::tsdb::Db;

/// Experimental functions we do not implement (skip rule 2).
pub(super) const SKIPPED_EXPERIMENTAL_FUNCTIONS: &[&str] = &["info", "start_timestamp"];

/// Functions that only read native histograms (skip rule 1).
pub(super) const NATIVE_HISTOGRAM_FUNCTIONS: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_stddev",
    "histogram_stdvar",
];

/// Words whose presence explains a parse failure as experimental syntax (skip rule 3).
pub(super) const EXPERIMENTAL_SYNTAX: &[&str] = &[
    "anchored",
    "smoothed",
    "fill(",
    "fill_left(",
    "fill_right(",
    "fill (",
];

pub(super) struct State {
    pub(super) db: Db,
    /// Series that hold native histograms in Prometheus (skip rule 1).
    pub(super) native: Vec<Labels>,
    pub(super) engine: Engine,
}

pub(super) enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl State {
    pub(super) fn load(&mut self, l: &LoadCmd) -> Result<(), String> {
        for (labels, vals) in &l.series {
            if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
                self.native.push(labels.clone());
                continue;
            }
            for (k, v) in vals.iter().enumerate() {
                if let SeqValue::Float(f) = v {
                    self.db
                        .append(labels, k as i64 * l.interval_ms, *f)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if l.with_nhcb {
            for (labels, _) in &l.series {
                let name = labels.metric_name().unwrap_or("");
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s));
                if let Some(base) = base {
                    let mut b = labels.builder();
                    b.set(METRIC_NAME, base).del("le");
                    let h = b.build();
                    if !self.native.contains(&h) {
                        self.native.push(h);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn eval(&self, ev: &EvalCmd) -> Outcome {
        if let Some(e) = &ev.error {
            return Outcome::Fail(format!("error in the case: {e}"));
        }
        if ev.expects_histogram {
            return Outcome::Skip("expects a native histogram result".into());
        }
        let expr = match crate::promql::parse(&ev.expr) {
            Ok(e) => e,
            Err(e) => {
                if let Some(w) = EXPERIMENTAL_SYNTAX.iter().find(|w| ev.expr.contains(*w)) {
                    return Outcome::Skip(format!(
                        "experimental syntax `{}` not supported by the parser",
                        w.trim_end_matches('(')
                    ));
                }
                // Like a query that fails to be created in test.go: fine if a failure is expected.
                if ev.is_fail() {
                    return match check_result(ev, Err(e), 0, 0, 0) {
                        Ok(()) => Outcome::Pass,
                        Err(m) => Outcome::Fail(m),
                    };
                }
                return Outcome::Fail(format!("parse error: {e}"));
            }
        };
        if let Some(reason) = self.skip_reason(&expr) {
            return Outcome::Skip(reason);
        }
        match ev.kind {
            EvalKind::Range { start, end, step } => {
                let res = self.engine.range_query(&self.db, &expr, start, end, step);
                match check_result(ev, res, start, end, step) {
                    Ok(()) => Outcome::Pass,
                    Err(m) => Outcome::Fail(m),
                }
            }
            EvalKind::Instant { at } => {
                if let Err(m) = self.run_instant(ev, &expr, at) {
                    return Outcome::Fail(m);
                }
                for (variant, t) in at_modifier_variants(&expr, at) {
                    if let Err(m) = self.run_instant(ev, &variant, t) {
                        return Outcome::Fail(format!(
                            "with every selector pinned by `@ {}` and evaluated at {t}ms: {m}",
                            at as f64 / 1000.0
                        ));
                    }
                }
                Outcome::Pass
            }
        }
    }

    pub(super) fn run_instant(&self, ev: &EvalCmd, expr: &Expr, at: i64) -> Result<(), String> {
        let res = self.engine.instant_query(&self.db, expr, at);
        let (start, end, step) = ev.range_vector.unwrap_or((at, at, 0));
        let instant_was_scalar = matches!(
            res,
            Ok(QueryResult {
                value: Value::Scalar { .. },
                ..
            })
        );
        let ok = res.is_ok();
        check_result(ev, res, start, end, step)?;
        if !ok || ev.excluded_from_range_mode() {
            return Ok(());
        }
        if Regex::new(r"(start|end|range|step)\(\)").is_ok_and(|r| r.is_match(&ev.expr)) {
            return Ok(());
        }
        // Range mode: the same expression as a range query around `at` must give the same
        // result at `at`.
        let rr = self
            .engine
            .range_query(
                &self.db,
                expr,
                at.saturating_sub(60_000),
                at.saturating_add(60_000),
                60_000,
            )
            .map_err(|e| format!("error evaluating query in range mode: {e}"))?;
        if ev.is_ordered() {
            return Ok(());
        }
        let Value::Matrix(m) = rr.value else {
            return Err(format!(
                "range mode: range query returned a {}, want a matrix",
                rr.value.type_name()
            ));
        };
        assert_sorted(&m).map_err(|e| format!("range mode: {e}"))?;
        let mut vec = Vec::new();
        for s in &m {
            if let Some(p) = s.samples.iter().find(|p| p.t == at) {
                vec.push(crate::promql::InstantSample {
                    labels: s.labels.clone(),
                    t: p.t,
                    v: p.v,
                });
            }
        }
        let value = if instant_was_scalar {
            match vec.first() {
                Some(x) => Value::Scalar { t: at, v: x.v },
                None => {
                    return Err(
                        "range mode: no value at the evaluation time for a scalar expression"
                            .into(),
                    )
                }
            }
        } else {
            Value::Vector(vec)
        };
        compare_result(ev, &value, start, end, step).map_err(|e| format!("range mode: {e}"))
    }

    /// Why a case cannot run here (see the module doc), or `None`.
    pub(super) fn skip_reason(&self, expr: &Expr) -> Option<String> {
        let mut reason = None;
        walk(expr, &mut |e| {
            if reason.is_some() {
                return;
            }
            match e {
                Expr::Call(c) => {
                    let n = c.func.name;
                    if SKIPPED_EXPERIMENTAL_FUNCTIONS.contains(&n) {
                        reason = Some(format!("experimental function {n}()"));
                    } else if NATIVE_HISTOGRAM_FUNCTIONS.contains(&n) {
                        reason = Some(format!("native histogram function {n}()"));
                    }
                }
                Expr::VectorSelector(vs) => {
                    if let Some(l) = self.native.iter().find(|l| selector_matches(vs, l)) {
                        reason = Some(format!("selects native histogram series {l}"));
                    }
                }
                Expr::MatrixSelector(ms) => {
                    if let Some(l) = self.native.iter().find(|l| selector_matches(&ms.vs, l)) {
                        reason = Some(format!("selects native histogram series {l}"));
                    }
                }
                _ => {}
            }
        });
        reason
    }
}

/// Calls `f` on `e` and every expression below it.
pub(super) fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, f);
            }
        }
        _ => {}
    }
}

pub(super) fn selector_matches(vs: &VectorSelector, l: &Labels) -> bool {
    let get = |n: &str| l.get(n).unwrap_or("").to_string();
    if let Some(n) = &vs.name {
        if get(METRIC_NAME) != *n {
            return false;
        }
    }
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(&get(&m.name)));
    if vs.matchers.or_matchers.is_empty() {
        all(&vs.matchers.matchers)
    } else {
        vs.matchers.or_matchers.iter().any(|ms| all(ms))
    }
}

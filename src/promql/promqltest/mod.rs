//! Runner for Prometheus' `promqltest` scripts (`load`, `clear`, `eval instant|range`,
//! `expect …`), the format of `promql/promqltest/` in the Prometheus repository. It owns the
//! script parser, loading into an in-memory [`Db`], evaluation through [`Engine`] and the
//! comparison of results; it never evaluates PromQL itself. `depin-orcha test promql FILE…`
//! and `tests/promqltest.rs` call [`run_file`] / [`run_script`].
//!
//! Semantics follow Prometheus 3.14's `test.go`: every `eval` is one case; floats compare with
//! `almost.Equal` (relative epsilon 1e-6, NaN equals NaN, a stale marker only equals a stale
//! marker); `expect fail|warn|info|no_warn|no_info|ordered` and the deprecated `eval_fail`,
//! `eval_warn`, `eval_info`, `eval_ordered`, `expected_fail_message`, `expected_fail_regexp`;
//! `expect range vector from … to … step …` and `expect string "…"`. An instant case is also run
//! as a range query from t-1m to t+1m step 1m and its middle step compared ("range mode"), as
//! Prometheus does, unless it expects a range vector or a string, is ordered, or calls
//! `start()`/`end()`/`range()`/`step()`. Like test.go, an instant case is then run again with
//! `@ <t>` on every selector and subquery, at the times -10t, 0, t/5, t and 10t (-1s, 0, 1s when
//! t is 0), unless it calls a function whose value depends on the evaluation time.
//!
//! Annotation positions: `promql-parser` keeps no source positions, so an annotation of ours
//! without a trailing `(line:col)` is compared with the expected message after removing the
//! expected one's `(line:col)` suffix (for `regex:` expectations, the annotation is also tried
//! with the position the pattern spells out, or ` (1:1)`).
//!
//! A parse error in the script is a failure of the case (or `load`) on that line; the rest of the
//! file still runs.
//!
//! Skip rules (a skipped case is reported with its reason, never counted as passed):
//! 1. native histograms: the case expects a `{{…}}` result, or one of its selectors can match a
//!    series that was loaded with `{{…}}` samples or built by `load_with_nhcb` (the float series
//!    of an NHCB load are still loaded), or it calls a function that only reads native
//!    histograms (`histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
//!    `histogram_stdvar`);
//! 2. experimental functions (marked `Experimental` in Prometheus 3.14 `parser/functions.go`)
//!    that we do not implement: `info` (needs `target_info` joins), `start`, `end`, `range`,
//!    `step` (need the query's range, which a function call does not see), `start_timestamp`
//!    (needs stored start timestamps). The experimental features we do implement run like any
//!    other case: `double_exponential_smoothing`, `histogram_quantiles`, `mad_over_time`,
//!    `sort_by_label`, `sort_by_label_desc`, `ts_of_{first,last,min,max}_over_time`, `max_of`,
//!    `min_of`, and the `limitk`/`limit_ratio` aggregations;
//! 3. experimental syntax that `promql-parser` cannot parse (the `anchored`/`smoothed` range
//!    modifiers, `fill…` binary-operator modifiers, duration expressions): a parse failure of an
//!    expression that uses one of these words is a skip, any other parse failure a failure.

mod at;
mod compare;
mod exec;
mod script;
mod series;

use std::fmt;
use std::path::Path;

use crate::promql::Engine;
use crate::tsdb::Db;

use exec::{Outcome, State};
use script::{parse_script, Command};
pub use series::{parse_series, SeqValue};

#[cfg(test)]
use crate::compat::duration::parse_model_duration;
#[cfg(test)]
use crate::tsdb::{is_stale_nan, stale_nan};
#[cfg(test)]
use at::{at_modifier, at_modifier_variants};
#[cfg(test)]
use compare::almost_equal;
#[cfg(test)]
use exec::walk;
#[cfg(test)]
use promql_parser::parser::Expr;
#[cfg(test)]
use regex::Regex;
#[cfg(test)]
use script::{EvalKind, MsgMatch};

/// A case that did not pass: where, what, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseFailure {
    /// 1-based line of the `eval` (or `load`, or the offending line of a script error).
    pub line: usize,
    pub expr: String,
    pub message: String,
}

/// A case that was not run, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseSkip {
    pub line: usize,
    pub expr: String,
    pub reason: String,
}

/// The outcome of one script.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub failures: Vec<CaseFailure>,
    pub skips: Vec<CaseSkip>,
}

impl FileReport {
    fn fail(&mut self, line: usize, expr: &str, message: impl Into<String>) {
        self.failed += 1;
        self.failures.push(CaseFailure {
            line,
            expr: expr.to_string(),
            message: message.into(),
        });
    }

    fn skip(&mut self, line: usize, expr: &str, reason: impl Into<String>) {
        self.skipped += 1;
        self.skips.push(CaseSkip {
            line,
            expr: expr.to_string(),
            reason: reason.into(),
        });
    }

    /// Share of the cases that ran (passed + failed) that passed, in percent; 100 when none ran.
    pub fn pass_percent(&self) -> f64 {
        let ran = self.passed + self.failed;
        if ran == 0 {
            100.0
        } else {
            100.0 * self.passed as f64 / ran as f64
        }
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.failures {
            writeln!(
                f,
                "FAIL {}:{}: {}\n    {}",
                self.name, x.line, x.expr, x.message
            )?;
        }
        for s in &self.skips {
            writeln!(
                f,
                "SKIP {}:{}: {} ({})",
                self.name, s.line, s.expr, s.reason
            )?;
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Runs one `.test` file. An unreadable file is one failure at line 0.
pub fn run_file(path: &Path) -> FileReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text),
        Err(e) => {
            let mut r = FileReport {
                name,
                ..FileReport::default()
            };
            r.fail(0, "", format!("cannot read script: {e}"));
            r
        }
    }
}

/// Runs a script given as text; `name` only labels the report.
pub fn run_script(name: &str, text: &str) -> FileReport {
    let mut report = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    let mut state = State {
        db: Db::in_memory(),
        native: Vec::new(),
        engine: Engine::default(),
    };
    for cmd in parse_script(text) {
        match cmd {
            Command::Clear => {
                state.db = Db::in_memory();
                state.native.clear();
            }
            Command::Load(l) => {
                if let Err(e) = state.load(&l) {
                    report.fail(l.line, "load", e);
                }
            }
            // An engine panic fails this case only, so the rest of the report survives.
            Command::Eval(ev) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.eval(&ev)))
                    .unwrap_or_else(|p| {
                        Outcome::Fail(format!("engine panicked: {}", panic_text(&*p)))
                    }) {
                    Outcome::Pass => report.passed += 1,
                    Outcome::Fail(m) => report.fail(ev.line, &ev.expr, m),
                    Outcome::Skip(m) => report.skip(ev.line, &ev.expr, m),
                }
            }
            Command::Invalid {
                line,
                text,
                message,
            } => report.fail(line, &text, message),
        }
    }
    report
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn floats(vals: &[SeqValue]) -> Vec<Option<f64>> {
        vals.iter()
            .map(|v| match v {
                SeqValue::Float(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn expanding_notation() {
        let (l, v) = parse_series(r#"my_metric{env="prod"} 5 2+3x2 _ stale"#).unwrap();
        assert_eq!(l.to_string(), r#"my_metric{env="prod"}"#);
        assert_eq!(
            &floats(&v)[..5],
            &[Some(5.0), Some(2.0), Some(5.0), Some(8.0), None]
        );
        assert!(matches!(v[5], SeqValue::Float(f) if is_stale_nan(f)));
        assert_eq!(v.len(), 6);

        let (_, v) = parse_series("m 1+1x3 _x2 5").unwrap();
        assert_eq!(
            floats(&v),
            vec![
                Some(1.0),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                None,
                None,
                Some(5.0)
            ]
        );

        let (_, v) = parse_series("m -2-3x2 7x2 -Inf Inf NaN 1e3 0x2").unwrap();
        let f = floats(&v);
        assert_eq!(
            &f[..6],
            &[
                Some(-2.0),
                Some(-5.0),
                Some(-8.0),
                Some(7.0),
                Some(7.0),
                Some(7.0)
            ]
        );
        assert_eq!(f[6], Some(f64::NEG_INFINITY));
        assert_eq!(f[7], Some(f64::INFINITY));
        assert!(f[8].is_some_and(f64::is_nan));
        assert_eq!(&f[9..], &[Some(1000.0), Some(0.0), Some(0.0), Some(0.0)]);
    }

    #[test]
    fn increments_accumulate_like_prometheus() {
        let (_, v) = parse_series("m 0+0.1x3").unwrap();
        // Repeated addition: 0.1+0.1+0.1 is not 0.3 in floating point.
        assert_eq!(floats(&v)[3], Some(0.1 + 0.1 + 0.1));
    }

    #[test]
    fn label_sets_and_histograms() {
        let (l, v) =
            parse_series(r#"{__name__="a", b='x\"y', "c.d"="e",} 1 {{schema:0 sum:1 count:2}}x1"#)
                .unwrap();
        assert_eq!(l.get("b"), Some("x\"y"));
        assert_eq!(l.get("c.d"), Some("e"));
        assert_eq!(l.metric_name(), Some("a"));
        assert_eq!(
            v,
            vec![
                SeqValue::Float(1.0),
                SeqValue::Histogram,
                SeqValue::Histogram
            ]
        );
        assert!(parse_series("m 1 zz").is_err());
        assert!(parse_series(r#"m{a="b" 1"#).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_model_duration("0"), Ok(0));
        assert_eq!(parse_model_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_model_duration("1111111s"), Ok(1_111_111_000));
        assert_eq!(parse_model_duration("10ms"), Ok(10));
        assert!(parse_model_duration("1s1m").is_err());
        assert!(parse_model_duration("").is_err());
    }

    #[test]
    fn script_parser_reads_expectations() {
        let script = "load 1m\n  m{a=\"1\"} 1 2\n\n# c\neval instant at 1m m\n  expect warn msg: w (1:1)\n  expect no_info\n  m{a=\"1\"} 2\n\neval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 _\n\neval instant at 0 1\n  1\n";
        let cmds = parse_script(script);
        assert_eq!(cmds.len(), 4);
        let Command::Load(l) = &cmds[0] else {
            panic!("want load")
        };
        assert_eq!(l.interval_ms, 60_000);
        let Command::Eval(e) = &cmds[1] else {
            panic!("want eval")
        };
        assert_eq!(e.line, 5);
        assert_eq!(e.expects.len(), 2);
        assert_eq!(e.expected[0].pos, 1);
        let Command::Eval(r) = &cmds[2] else {
            panic!("want eval")
        };
        assert_eq!(
            r.kind,
            EvalKind::Range {
                start: 0,
                end: 120_000,
                step: 60_000
            }
        );
        let Command::Eval(s) = &cmds[3] else {
            panic!("want eval")
        };
        assert_eq!(s.expected_scalar, Some(1.0));
    }

    #[test]
    fn script_errors_are_failures_with_line_numbers() {
        let r = run_script(
            "t",
            "load 1m\n  m 1\n\nbogus line\n\neval instant at 1m m\n  m{ 1\n",
        );
        assert_eq!(r.failed, 2, "{r}");
        assert_eq!(r.failures[0].line, 4);
        assert_eq!(r.failures[1].line, 6);
        assert!(r.to_string().ends_with("0 passed, 2 failed, 0 skipped"));
    }

    #[test]
    fn deprecated_forms_ordering_and_staleness_against_the_engine() {
        let script = r#"
load 1m
  m{a="1"} 1 2 stale
  m{a="2"} 5 _ 7

eval_ordered instant at 0 sort_desc(m)
  m{a="2"} 5
  m{a="1"} 1

eval_ordered instant at 0 sort(m)
  m{a="2"} 5
  m{a="1"} 1

eval_fail instant at 0 m / on() m
  expected_fail_regexp many-to-many

eval range from 0 to 3m step 1m m
  m{a="1"} 1 2 _ _
  m{a="2"} 5 5 7 7

eval range from 0 to 3m step 1m m
  m{a="1"} 1 2 2 2
  m{a="2"} 5 5 7 7
"#;
        let r = run_script("t", script);
        assert_eq!((r.passed, r.failed, r.skipped), (3, 2, 0), "{r}");
        // The second ordered case and the last range case (the stale marker ends `a="1"`).
        assert_eq!(
            r.failures.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![10, 21],
            "{r}"
        );
    }

    #[test]
    fn unparsable_expressions_fail_unless_failure_is_expected() {
        let r = run_script(
            "t",
            "eval instant at 0 sum(\n  expect fail\n\neval instant at 0 sum(\n  {} 1\n",
        );
        assert_eq!((r.passed, r.failed), (1, 1), "{r}");
        assert!(r.failures[0].message.starts_with("parse error"), "{r}");
    }

    #[test]
    fn native_histograms_and_experimental_functions_are_skipped() {
        let script = "load 1m\n  h {{schema:0 sum:1 count:1}}\n  f 1\n\neval instant at 0 h\n  {} 1\n\neval instant at 0 info(f)\n  f 1\n\neval instant at 0 f\n  f {{schema:0 sum:1 count:1}}\n";
        let r = run_script("t", script);
        assert_eq!((r.passed, r.failed, r.skipped), (0, 0, 3), "{r}");
        assert!(r.skips[1].reason.contains("info"));
    }

    #[test]
    fn at_modifier_variants_pin_selectors_outside_subqueries() {
        let e =
            crate::promql::parse("sum(rate(a[5m])) + max_over_time(b[10m:1m]) + c @ 5").unwrap();
        let v = at_modifier_variants(&e, 60_000);
        let times: Vec<i64> = v.iter().map(|x| x.1).collect();
        assert_eq!(times, vec![-600_000, 0, 12_000, 60_000, 600_000]);
        let mut ats = Vec::new();
        walk(&v[0].0, &mut |x| match x {
            Expr::VectorSelector(vs) => ats.push(("vs", vs.at.clone())),
            Expr::MatrixSelector(ms) => ats.push(("ms", ms.vs.at.clone())),
            Expr::Subquery(sq) => ats.push(("sq", sq.at.clone())),
            _ => {}
        });
        let pinned = Some(at_modifier(60_000));
        let kept = Some(at_modifier(5_000));
        // rate's selector, the subquery (its inner selector untouched), and `c` keeps its own @.
        assert_eq!(
            ats,
            vec![
                ("ms", pinned.clone()),
                ("sq", pinned),
                ("vs", None),
                ("vs", kept)
            ]
        );
        assert_eq!(at_modifier_variants(&e, 0).len(), 3);
        let unsafe_expr = crate::promql::parse("time() + a").unwrap();
        assert!(at_modifier_variants(&unsafe_expr, 60_000).is_empty());
    }

    #[test]
    fn almost_equal_matches_prometheus() {
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(stale_nan(), f64::NAN));
        assert!(almost_equal(1.0, 1.0000000001));
        assert!(!almost_equal(1.0, 1.00001));
        assert!(!almost_equal(0.0, 1e-300));
    }

    #[test]
    fn annotation_positions_are_tolerated_only_when_ours_lack_them() {
        let m = MsgMatch::Exact("PromQL warning: x (1:7)".into());
        assert!(m.matches_annotation("PromQL warning: x"));
        assert!(m.matches_annotation("PromQL warning: x (1:7)"));
        assert!(!m.matches_annotation("PromQL warning: x (1:8)"));
        let r = MsgMatch::Regex(Regex::new(r"PromQL info: y .* \(1:21\)").unwrap());
        assert!(r.matches_annotation("PromQL info: y z"));
        assert!(!r.matches_annotation("PromQL info: y z (1:2)"));
    }
}

//! Reading storage for the engine: instant vector selectors (lookback, staleness), matrix
//! selectors and subqueries (left-open windows `(t - range, t]`), and the `offset` and `@`
//! modifiers. Each selector reads storage once for the whole query range; the per-step work is
//! slicing what was read.

use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::engine::{Evaluated, Evaluator, CHECK_EVERY, DEFAULT_SUBQUERY_STEP_MS};
use super::limits::{labels_bytes, HELD_SAMPLE_BYTES, READ_SAMPLE_BYTES};
use super::value::{Matrix, Sample, Series};
use super::Error;
use crate::labels::{Labels, MatchOp, Matcher, METRIC_NAME};
use crate::tsdb::is_stale_nan;

/// A range-vector argument: series read (or computed by a subquery) for the whole query range,
/// and how to find one step's window `(end - range, end]` in them.
pub(crate) struct RangeArg {
    pub series: Matrix,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// Samples of `series` counted against `--query.max-samples` while this argument lives:
    /// a subquery's points; not a matrix selector's raw samples, which (as in Prometheus)
    /// count only per step, for the window a function sees.
    pub held: usize,
}

impl RangeArg {
    /// The window `(start, end]` of the step at `ts`, after `offset` and `@`.
    pub fn window(&self, ts: i64) -> (i64, i64) {
        let end = self.at.unwrap_or(ts) - self.offset;
        (end - self.range, end)
    }

    /// Each series' samples in the window of the step at `ts`; series without any are left out.
    pub fn window_matrix(&self, ts: i64) -> (Matrix, (i64, i64)) {
        let (start, end) = self.window(ts);
        let mut out = Vec::new();
        for s in &self.series {
            let lo = s.samples.partition_point(|p| p.t <= start);
            let hi = s.samples.partition_point(|p| p.t <= end);
            if lo < hi {
                out.push(Series {
                    labels: s.labels.clone(),
                    samples: s.samples[lo..hi].to_vec(),
                });
            }
        }
        (out, (start, end))
    }
}

/// Milliseconds of an `offset` (negative for `offset -5m`).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Regex matchers compiled so far, by (op, label name, value): rules and the optimizer evaluate
/// the same selectors every interval, and compiling the regex was a visible part of each query.
/// Bounded: emptied when it reaches [`REGEX_CACHE_ENTRIES`] (ad-hoc API queries can be many),
/// and patterns longer than [`REGEX_CACHE_MAX_PATTERN`] are not kept (a megabyte pattern
/// compiles to tens of megabytes, which would stay held outside any query's budget).
static REGEX_CACHE: std::sync::LazyLock<std::sync::Mutex<RegexCache>> =
    std::sync::LazyLock::new(Default::default);

type RegexCache = std::collections::HashMap<(MatchOp, String, String), Matcher>;

const REGEX_CACHE_ENTRIES: usize = 1024;
const REGEX_CACHE_MAX_PATTERN: usize = 1024;

/// A regex matcher, from the cache when this one was compiled before. `fallback` is the
/// parser's own (already valid) form of the pattern, tried when `value` does not compile.
fn regex_matcher(
    op: MatchOp,
    name: &str,
    value: &str,
    fallback: &str,
) -> Result<Matcher, regex::Error> {
    let compile = || Matcher::new(op, name, value).or_else(|_| Matcher::new(op, name, fallback));
    if value.len() > REGEX_CACHE_MAX_PATTERN {
        return compile();
    }
    let key = (op, name.to_string(), value.to_string());
    if let Some(m) = lock_cache().get(&key) {
        return Ok(m.clone());
    }
    // Compiled outside the lock: a long pattern must not hold up every other query's lookups.
    let m = compile()?;
    let mut cache = lock_cache();
    if cache.len() >= REGEX_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, m.clone());
    Ok(m)
}

fn lock_cache() -> std::sync::MutexGuard<'static, RegexCache> {
    REGEX_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The storage matchers of a selector: one set, or several for `{a="1" or b="2"}`.
pub(crate) fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, Error> {
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, Error> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(n) = &vs.name {
            out.push(Matcher::equal(METRIC_NAME, n.clone()));
        }
        for m in ms {
            let built = match &m.op {
                PMatchOp::Equal => Ok(Matcher::equal(m.name.clone(), m.value.clone())),
                PMatchOp::NotEqual => {
                    Matcher::new(MatchOp::NotEqual, m.name.clone(), m.value.clone())
                }
                PMatchOp::Re(re) => regex_matcher(MatchOp::Regex, &m.name, &m.value, re.as_str()),
                PMatchOp::NotRe(re) => {
                    regex_matcher(MatchOp::NotRegex, &m.name, &m.value, re.as_str())
                }
            };
            out.push(built.map_err(|e| {
                Error::Eval(format!(
                    "invalid regular expression in matcher {}: {}",
                    m.name,
                    super::regex_error_reason(&e)
                ))
            })?);
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers)?])
    } else {
        vs.matchers.or_matchers.iter().map(|g| convert(g)).collect()
    }
}

impl Evaluator<'_> {
    /// Milliseconds of an `@` modifier; `start()` and `end()` are the outermost query's.
    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// The first and last reference times (evaluation time minus offset, or `@` minus offset)
    /// of a selector over this evaluator's steps.
    fn ref_range(&self, at: Option<i64>, offset: i64) -> (i64, i64) {
        match at {
            Some(a) => (a - offset, a - offset),
            None => (self.start - offset, self.last_ts() - offset),
        }
    }

    /// The series of a selector with their samples in `[mint, maxt]`, staleness markers kept,
    /// sorted by labels. Read one series at a time, each charged against the memory budget as
    /// it arrives (what was read stays charged until the query ends), so a selector over more
    /// history than the budget stops after at most one series too many.
    fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Matrix, Error> {
        let sets = matcher_sets(vs)?;
        let mut out: Matrix = Vec::new();
        let mut failed = None;
        for ms in &sets {
            let st = &mut *self.st;
            self.q.select_each(ms, mint, maxt, &mut |s| {
                let bytes = s.samples.len() * READ_SAMPLE_BYTES + labels_bytes(&s.labels);
                match st.charge(bytes).and_then(|()| st.check_alive()) {
                    Ok(()) => {
                        if !s.samples.is_empty() {
                            out.push(s);
                        }
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        if sets.len() > 1 {
            out.dedup_by(|a, b| a.labels == b.labels);
        }
        Ok(out)
    }

    /// An instant vector selector at every step: the latest sample in `(ref - lookback, ref]`
    /// unless it is a staleness marker. Also returns each point's own sample timestamp, which
    /// `timestamp()` reports.
    pub(crate) fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
    ) -> Result<(Matrix, Vec<Vec<i64>>), Error> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (lo, hi) = self.ref_range(at, offset);
        let raw = self.select(vs, lo - self.lookback + 1, hi)?;
        let steps = self.steps();
        let mut out = Vec::with_capacity(raw.len());
        let mut origs = Vec::with_capacity(raw.len());
        for s in raw {
            self.st.check_alive()?;
            let mut pts = Vec::new();
            let mut orig = Vec::new();
            let mut j = 0;
            // Points are charged as they are made: one series over a subquery's millions of
            // steps must stop at the budget, not after it has been built.
            let mut charged = 0;
            for k in 0..steps {
                if k % CHECK_EVERY == CHECK_EVERY - 1 {
                    self.st.check_alive()?;
                }
                if pts.len() >= charged + CHECK_EVERY {
                    self.st.charge(CHECK_EVERY * HELD_SAMPLE_BYTES)?;
                    charged += CHECK_EVERY;
                }
                let ts = self.step_ts(k);
                let r = at.unwrap_or(ts) - offset;
                while j < s.samples.len() && s.samples[j].t <= r {
                    j += 1;
                }
                // With `@` the reference time is the same at every step; the cursor stays put.
                if j == 0 {
                    continue;
                }
                let smp = s.samples[j - 1];
                if smp.t <= r - self.lookback || is_stale_nan(smp.v) {
                    continue;
                }
                pts.push(Sample { t: ts, v: smp.v });
                orig.push(smp.t);
            }
            self.st.uncharge(charged * HELD_SAMPLE_BYTES);
            if !pts.is_empty() {
                self.st.hold(pts.len())?;
                out.push(Series {
                    labels: s.labels,
                    samples: pts,
                });
                origs.push(orig);
            }
        }
        Ok((out, origs))
    }

    /// A matrix selector's series for the whole query range, staleness markers removed.
    pub(crate) fn select_range(&mut self, ms: &MatrixSelector) -> Result<RangeArg, Error> {
        let offset = offset_ms(&ms.vs.offset);
        let at = self.at_ms(&ms.vs.at);
        let range = ms.range.as_millis() as i64;
        let (lo, hi) = self.ref_range(at, offset);
        let mut series = self.select(&ms.vs, lo - range + 1, hi)?;
        for s in &mut series {
            s.samples.retain(|p| !is_stale_nan(p.v));
        }
        series.retain(|s| !s.samples.is_empty());
        Ok(RangeArg {
            series,
            range,
            offset,
            at,
            held: 0,
        })
    }

    /// Evaluates a subquery's inner expression on its own step grid (aligned to absolute
    /// multiples of the step, as Prometheus does) covering all windows of this evaluator.
    pub(crate) fn eval_subquery(&mut self, sq: &SubqueryExpr) -> Result<RangeArg, Error> {
        let offset = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = sq.range.as_millis() as i64;
        let step = match sq.step.map(|d| d.as_millis() as i64) {
            Some(s) if s > 0 => s,
            _ => DEFAULT_SUBQUERY_STEP_MS,
        };
        let (lo, hi) = self.ref_range(at, offset);
        let mut start = step * ((lo - range) / step);
        if start <= lo - range {
            start += step;
        }
        // Any node of the inner expression may make a vector as long as the subquery's steps:
        // at least one must fit in the budget (`x[30d:1ms]` has 2.6 billion steps).
        let steps = if start > hi {
            0
        } else {
            ((hi - start) / step + 1) as usize
        };
        let step_bytes = steps.saturating_mul(HELD_SAMPLE_BYTES);
        self.st.charge(step_bytes)?;
        let series = self.eval_subquery_steps(&sq.expr, start, hi, step);
        self.st.uncharge(step_bytes);
        let series = series?;
        let held = series.iter().map(|s| s.samples.len()).sum();
        Ok(RangeArg {
            series,
            range,
            offset,
            at,
            held,
        })
    }

    /// The inner expression of a subquery over its own steps `start..=hi`.
    fn eval_subquery_steps(
        &mut self,
        expr: &Expr,
        start: i64,
        hi: i64,
        step: i64,
    ) -> Result<Matrix, Error> {
        let series = if start > hi {
            Vec::new()
        } else {
            let mut child = self.child(start, hi, step);
            match child.eval(expr)? {
                Evaluated::Vector(m) => m,
                Evaluated::Scalar(v) => {
                    let samples = v
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Sample {
                            t: child.step_ts(i),
                            v: *v,
                        })
                        .collect();
                    vec![Series {
                        labels: Labels::empty(),
                        samples,
                    }]
                }
                other => {
                    return Err(Error::Eval(format!(
                        "subquery is only allowed on instant vector or scalar, got {}",
                        other.type_name()
                    )))
                }
            }
        };
        Ok(series)
    }

    /// A range-vector argument of a function: a matrix selector or a subquery.
    pub(crate) fn eval_range_arg(&mut self, e: &Expr) -> Result<Option<RangeArg>, Error> {
        match e {
            Expr::MatrixSelector(ms) => Ok(Some(self.select_range(ms)?)),
            Expr::Subquery(sq) => Ok(Some(self.eval_subquery(sq)?)),
            Expr::Paren(p) => self.eval_range_arg(&p.expr),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::engine::testutil::{add, instant_full, range};
    use crate::promql::engine::{EngineOptions, QueryState};
    use crate::promql::{parse, Value};
    use crate::tsdb::{stale_nan, Db};

    /// `x` with value = minute at every minute from 0 to 20m.
    fn db() -> Db {
        let db = Db::in_memory();
        add(
            &db,
            "x",
            &[],
            &(0..=20).map(|m| (m * 60, m as f64)).collect::<Vec<_>>(),
        );
        db
    }

    fn matrix_times(db: &Db, q: &str, t: i64) -> Vec<i64> {
        match instant_full(db, q, t).unwrap().value {
            Value::Matrix(m) => m
                .iter()
                .flat_map(|s| s.samples.iter().map(|p| p.t / 1000))
                .collect(),
            other => panic!("expected matrix, got {other:?}"),
        }
    }

    #[test]
    fn subquery_steps_are_aligned_to_absolute_multiples() {
        let db = db();
        // Window (7m - 5m, 7m] = (120s, 420s]; 2m steps aligned to 0: 240s and 360s.
        assert_eq!(matrix_times(&db, "x[5m:2m]", 420), vec![240, 360]);
        // With an offset the window moves back: (60s, 360s] -> 120s, 240s, 360s.
        assert_eq!(
            matrix_times(&db, "x[5m:2m] offset 1m", 420),
            vec![120, 240, 360]
        );
        // `@` fixes the window whatever the evaluation time.
        assert_eq!(matrix_times(&db, "x[4m:2m] @ 600", 100), vec![480, 600]);
    }

    #[test]
    fn matrix_selector_drops_stale_markers() {
        let db = Db::in_memory();
        add(&db, "y", &[], &[(0, 1.0), (60, stale_nan()), (120, 3.0)]);
        assert_eq!(matrix_times(&db, "y[5m]", 120), vec![0, 120]);
    }

    #[test]
    fn at_start_and_end_refer_to_the_query_range() {
        let db = db();
        let r = range(&db, "x @ start() - x @ end()", 60, 600, 60).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].1.iter().all(|&(_, v)| v == -9.0), "{r:?}");
        assert_eq!(r[0].1.len(), 10);
    }

    #[test]
    fn subquery_window_feeds_range_arguments_per_step() {
        let db = db();
        let q = parse("x[3m:1m] offset 2m").unwrap();
        let Expr::Subquery(sq) = &q else {
            panic!("not a subquery")
        };
        let mut st = QueryState::new(&EngineOptions::default(), Default::default());
        let mut ev = Evaluator::new(&db, &mut st, 600_000, 720_000, 60_000, 300_000);
        let arg = ev.eval_subquery(sq).unwrap();
        let (m, w) = arg.window_matrix(720_000);
        assert_eq!(w, (420_000, 600_000));
        let ts: Vec<i64> = m[0].samples.iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![480_000, 540_000, 600_000]);
    }

    #[test]
    fn a_subquery_longer_than_the_budget_is_refused_before_it_is_built() {
        use crate::promql::{Engine, Error, Limits, MemoryBudget};
        let db = db();
        let budget = MemoryBudget::new(64 << 20);
        let mut limits = Limits {
            memory: budget.reservation(),
            cancel: None,
            deadline: None,
        };
        // 86.4 million steps: 2.7 GiB at 32 bytes each, refused before any is made.
        let q = parse("count_over_time(x[1d:1ms])").unwrap();
        let err = Engine::default()
            .instant_query_limited(&db, &q, 1_200_000, &mut limits)
            .unwrap_err();
        assert!(matches!(err, Error::Memory(_)), "{err:?}");
        assert!(err.to_string().contains("--query.max-memory"), "{err}");
        // The same shape within the budget runs, and what it held goes back with the limits.
        let q = parse("count_over_time(x[20m:1s])").unwrap();
        let r = Engine::default()
            .instant_query_limited(&db, &q, 1_200_000, &mut limits)
            .unwrap();
        match r.value {
            Value::Vector(v) => assert_eq!(v[0].v, 1200.0),
            other => panic!("{other:?}"),
        }
        assert!(budget.used_bytes() > 0);
        drop(limits);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn storage_reads_stop_at_the_budget_and_canceled_queries_stop() {
        use crate::promql::{Engine, Error, Limits, MemoryBudget, Reservation};
        let db = Db::in_memory();
        let pts: Vec<(i64, f64)> = (0..1000).map(|t| (t, t as f64)).collect();
        for i in 0..50 {
            add(&db, "m", &[("i", &i.to_string())], &pts);
        }
        let q = parse("max_over_time(m[1000s])").unwrap();
        let budget = MemoryBudget::new(100_000);
        let mut limits = Limits {
            memory: budget.reservation(),
            cancel: None,
            deadline: None,
        };
        // 50 series of 16 KB each: the read stops once the budget is reached.
        let err = Engine::default()
            .instant_query_limited(&db, &q, 1_000_000, &mut limits)
            .unwrap_err();
        assert!(matches!(err, Error::Memory(_)), "{err:?}");
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut canceled = Limits::new(Reservation::default(), flag);
        let err = Engine::default()
            .instant_query_limited(&db, &q, 1_000_000, &mut canceled)
            .unwrap_err();
        assert_eq!(err, Error::Canceled("expression evaluation"));
        assert_eq!(err.error_type(), "canceled");
    }

    #[test]
    fn regex_errors_give_the_reason_without_the_pattern() {
        let long = format!("({}", "a".repeat(10_000));
        let err = crate::promql::parse(&format!("up{{job=~\"{long}\"}}"))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.contains("unclosed group"), "{err}");
        assert!(err.contains("(10001 bytes)"), "{err}");
    }

    #[test]
    fn regex_matchers_are_anchored_and_or_groups_union() {
        let db = Db::in_memory();
        add(&db, "m", &[("a", "foo")], &[(0, 1.0)]);
        add(&db, "m", &[("a", "foobar")], &[(0, 2.0)]);
        let r = crate::promql::engine::testutil::instant(&db, "m{a=~\"foo\"}", 0).unwrap();
        assert_eq!(r.len(), 1);
        let r = crate::promql::engine::testutil::instant(&db, "m{a=\"foo\" or a=\"foobar\"}", 0)
            .unwrap();
        assert_eq!(r.len(), 2);
    }
}

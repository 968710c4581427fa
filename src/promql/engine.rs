//! Instant and range query evaluation over the `promql-parser` AST, with Prometheus 3 semantics.
//!
//! Like Prometheus' `promql/engine.go`, every expression is evaluated once for the whole query
//! range: an instant query is a range query with one step. A node yields one series per label
//! set with a point at each step where it has a value ([`Evaluated::Vector`]), or one value per
//! step ([`Evaluated::Scalar`]). Selectors read storage once per node for the whole range and
//! slice per step. The parts live in sibling files: `selector` (vector/matrix selectors,
//! subqueries, offset and `@`), `call` (function calls), `binary` (operators) and `aggregate`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;

use super::limits::{Limits, HELD_SAMPLE_BYTES};
use super::value::{InstantSample, Matrix, Sample, Series, Value};
use super::{Annotations, Error};
use crate::labels::Labels;
use crate::tsdb::Queryable;
use Error::Eval;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus' default: 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock budget of one query (`--query.timeout`).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: DEFAULT_LOOKBACK_MS,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A query's value with the annotations it produced.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
}

#[derive(Clone, Debug, Default)]
pub struct Engine {
    pub opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// Evaluates `expr` at `ts_ms`. Returns a scalar, string or vector (or a matrix for a bare
    /// range selector), as `/api/v1/query` does.
    pub fn instant_query(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        ts_ms: i64,
    ) -> Result<QueryResult, Error> {
        self.instant_query_limited(q, expr, ts_ms, &mut Limits::default())
    }

    /// [`Engine::instant_query`] within `limits`: its memory is charged to `limits.memory`, and
    /// it stops when `limits.cancel` is set. What the result holds stays charged on return.
    pub fn instant_query_limited(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        ts_ms: i64,
        limits: &mut Limits,
    ) -> Result<QueryResult, Error> {
        let mut st = QueryState::new(&self.opts, std::mem::take(limits));
        let r = self.instant_in(q, expr, ts_ms, &mut st);
        *limits = std::mem::take(&mut st.limits);
        r
    }

    fn instant_in(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        ts_ms: i64,
        st: &mut QueryState,
    ) -> Result<QueryResult, Error> {
        let value = {
            let mut ev = Evaluator::new(q, st, ts_ms, ts_ms, 1, self.opts.lookback_delta_ms);
            match ev.eval(expr)? {
                Evaluated::Scalar(v) => Value::Scalar {
                    t: ts_ms,
                    v: v.first().copied().unwrap_or(f64::NAN),
                },
                Evaluated::String(s) => Value::String { t: ts_ms, s },
                Evaluated::Vector(m) => Value::Vector(
                    m.into_iter()
                        .filter_map(|s| {
                            let v = s.samples.first()?.v;
                            Some(InstantSample {
                                labels: s.labels,
                                t: ts_ms,
                                v,
                            })
                        })
                        .collect(),
                ),
                Evaluated::Matrix(mut m) => {
                    m.sort_by(|a, b| a.labels.cmp(&b.labels));
                    Value::Matrix(m)
                }
            }
        };
        Ok(QueryResult {
            value,
            annotations: std::mem::take(&mut st.annotations),
        })
    }

    /// Evaluates `expr` at every step from `start_ms` to `end_ms` inclusive. Returns a matrix,
    /// as `/api/v1/query_range` does (scalars become one series without labels).
    pub fn range_query(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, Error> {
        self.range_query_limited(q, expr, start_ms, end_ms, step_ms, &mut Limits::default())
    }

    /// [`Engine::range_query`] within `limits`, as [`Engine::instant_query_limited`].
    pub fn range_query_limited(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        limits: &mut Limits,
    ) -> Result<QueryResult, Error> {
        let mut st = QueryState::new(&self.opts, std::mem::take(limits));
        let r = self.range_in(q, expr, (start_ms, end_ms, step_ms), &mut st);
        *limits = std::mem::take(&mut st.limits);
        r
    }

    fn range_in(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        (start_ms, end_ms, step_ms): (i64, i64, i64),
        st: &mut QueryState,
    ) -> Result<QueryResult, Error> {
        if step_ms <= 0 {
            return Err(Error::Eval(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            t => {
                let name = if t == ValueType::Matrix {
                    "range vector"
                } else {
                    "string"
                };
                return Err(Error::Eval(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let value = {
            let mut ev = Evaluator::new(
                q,
                st,
                start_ms,
                end_ms,
                step_ms,
                self.opts.lookback_delta_ms,
            );
            let steps = ev.steps();
            match ev.eval(expr)? {
                Evaluated::Scalar(v) => Value::Matrix(vec![Series {
                    labels: Labels::empty(),
                    samples: v
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Sample {
                            t: ev.step_ts(i),
                            v: *v,
                        })
                        .take(steps)
                        .collect(),
                }]),
                Evaluated::Vector(mut m) => {
                    m.sort_by(|a, b| a.labels.cmp(&b.labels));
                    Value::Matrix(m)
                }
                Evaluated::Matrix(_) | Evaluated::String(_) => {
                    return Err(Error::Eval(
                        "invalid expression type for range query".into(),
                    ));
                }
            }
        };
        Ok(QueryResult {
            value,
            annotations: std::mem::take(&mut st.annotations),
        })
    }
}

/// Prometheus' default lookback delta, used when the options leave it at zero.
pub(crate) const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The default step of a subquery without one (`[5m:]`): Prometheus uses the global evaluation
/// interval, whose default is one minute.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// What one query shares across its nested evaluators (subqueries): the annotations and the
/// limits.
pub(crate) struct QueryState {
    pub annotations: Annotations,
    deadline: Option<Instant>,
    max_samples: usize,
    held: usize,
    /// The memory budget's share and the cancellation flag of this query.
    pub limits: Limits,
}

impl QueryState {
    pub fn new(opts: &EngineOptions, limits: Limits) -> Self {
        QueryState {
            annotations: Annotations::default(),
            deadline: match (Instant::now().checked_add(opts.timeout), limits.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            max_samples: opts.max_samples,
            held: 0,
            limits,
        }
    }

    /// `--query.timeout` and the client's going away: checked between steps and series, and
    /// every [`CHECK_EVERY`] points inside long loops.
    pub fn check_alive(&self) -> Result<(), Error> {
        if self.limits.is_canceled() {
            return Err(Error::Canceled("expression evaluation"));
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(Error::Timeout("expression evaluation")),
            _ => Ok(()),
        }
    }

    /// Accounts for `n` more samples held in memory (`--query.max-samples`, and
    /// [`HELD_SAMPLE_BYTES`] each against the memory budget).
    pub fn hold(&mut self, n: usize) -> Result<(), Error> {
        self.held += n;
        if self.held > self.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        self.charge(n.saturating_mul(HELD_SAMPLE_BYTES))
    }

    /// The samples of an intermediate result that was consumed.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.held);
        self.held -= n;
        self.limits.memory.shrink(n * HELD_SAMPLE_BYTES);
    }

    /// Charges `bytes` of memory that is not a held sample (storage reads, step vectors)
    /// against the budget; they stay charged until the query ends or [`QueryState::uncharge`].
    pub fn charge(&mut self, bytes: usize) -> Result<(), Error> {
        self.limits.memory.grow(bytes).map_err(Error::Memory)
    }

    pub fn uncharge(&mut self, bytes: usize) {
        self.limits.memory.shrink(bytes);
    }
}

/// Long loops check [`QueryState::check_alive`] and charge their growth every this many points.
pub(crate) const CHECK_EVERY: usize = 4096;

/// A node's value over all steps of the evaluator's range.
#[derive(Clone, Debug)]
pub(crate) enum Evaluated {
    /// An instant vector at every step: one series per label set, points at step timestamps.
    Vector(Matrix),
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    /// A range vector; only the result of a bare matrix selector or subquery in an instant query.
    Matrix(Matrix),
}

impl Evaluated {
    pub fn num_samples(&self) -> usize {
        match self {
            Evaluated::Vector(m) | Evaluated::Matrix(m) => m.iter().map(|s| s.samples.len()).sum(),
            Evaluated::Scalar(_) | Evaluated::String(_) => 0,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Evaluated::Vector(_) => "vector",
            Evaluated::Scalar(_) => "scalar",
            Evaluated::String(_) => "string",
            Evaluated::Matrix(_) => "matrix",
        }
    }
}

/// Evaluates expressions over the steps `start, start+interval, … <= end`.
pub(crate) struct Evaluator<'a> {
    pub q: &'a dyn Queryable,
    pub st: &'a mut QueryState,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    pub lookback: i64,
    /// The outermost query's start and end, which `@ start()` and `@ end()` refer to, also
    /// inside subqueries.
    pub query_start: i64,
    pub query_end: i64,
    /// The outermost query's step (0 for an instant query), for `step()`.
    pub query_step: i64,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        q: &'a dyn Queryable,
        st: &'a mut QueryState,
        start: i64,
        end: i64,
        interval: i64,
        lookback: i64,
    ) -> Self {
        Evaluator {
            q,
            st,
            start,
            end,
            interval: interval.max(1),
            // As Prometheus: a zero (unset) lookback delta means the default five minutes.
            lookback: if lookback > 0 {
                lookback
            } else {
                DEFAULT_LOOKBACK_MS
            },
            query_start: start,
            query_end: end,
            query_step: if start == end { 0 } else { interval },
        }
    }

    /// An evaluator for a subquery's own steps, sharing this query's state.
    pub fn child(&mut self, start: i64, end: i64, interval: i64) -> Evaluator<'_> {
        Evaluator {
            q: self.q,
            st: &mut *self.st,
            start,
            end,
            interval: interval.max(1),
            lookback: self.lookback,
            query_start: self.query_start,
            query_end: self.query_end,
            query_step: self.query_step,
        }
    }

    pub fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.interval + 1) as usize
    }

    pub fn step_ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    /// The last step actually evaluated (the end aligned down to the step grid).
    pub fn last_ts(&self) -> i64 {
        self.step_ts(self.steps().saturating_sub(1))
    }

    pub fn is_instant(&self) -> bool {
        self.start == self.end
    }

    /// Index of the step at `ts` (which must be on the grid).
    pub fn step_index(&self, ts: i64) -> usize {
        ((ts - self.start) / self.interval) as usize
    }

    pub fn eval(&mut self, e: &Expr) -> Result<Evaluated, Error> {
        self.st.check_alive()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Evaluated::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Evaluated::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => self.eval_unary(&u.expr),
            Expr::VectorSelector(vs) => Ok(Evaluated::Vector(self.eval_vector_selector(vs)?.0)),
            Expr::MatrixSelector(ms) => {
                if !self.is_instant() {
                    return Err(Error::Eval(
                        "cannot do range evaluation of matrix selector".into(),
                    ));
                }
                let arg = self.select_range(ms)?;
                Ok(Evaluated::Matrix(arg.window_matrix(self.start).0))
            }
            Expr::Subquery(sq) => {
                if !self.is_instant() {
                    return Err(Error::Eval(
                        "cannot do range evaluation of a subquery".into(),
                    ));
                }
                let arg = self.eval_subquery(sq)?;
                Ok(Evaluated::Matrix(arg.window_matrix(self.start).0))
            }
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Aggregate(a) => self.eval_aggregate(a),
            Expr::Call(c) => self.eval_call(c),
            Expr::Extension(x) => Err(Eval(format!("unsupported expression extension {x:?}"))),
        }
    }

    /// Evaluates an expression that must yield an instant vector.
    pub fn eval_vector(&mut self, e: &Expr) -> Result<Matrix, Error> {
        match self.eval(e)? {
            Evaluated::Vector(m) => Ok(m),
            other => Err(Error::Eval(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an expression that must yield a scalar.
    pub fn eval_scalar(&mut self, e: &Expr) -> Result<Vec<f64>, Error> {
        match self.eval(e)? {
            Evaluated::Scalar(v) => Ok(v),
            other => Err(Error::Eval(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_unary(&mut self, e: &Expr) -> Result<Evaluated, Error> {
        match self.eval(e)? {
            Evaluated::Scalar(v) => Ok(Evaluated::Scalar(v.into_iter().map(|x| -x).collect())),
            Evaluated::Vector(m) => {
                let m: Matrix = m
                    .into_iter()
                    .map(|s| Series {
                        labels: s.labels.without_metric_name(),
                        samples: s.samples.into_iter().map(|p| Sample { t: p.t, v: -p.v }).collect(),
                    })
                    .collect();
                Ok(Evaluated::Vector(merge_same_labels(m)?))
            }
            other => Err(Error::Eval(format!(
                "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                other.type_name()
            ))),
        }
    }
}

/// Walks the series of an instant-vector result step by step: the points of each series are
/// on the step grid in time order, so one cursor per series suffices.
pub(crate) struct Cursor {
    pos: Vec<usize>,
}

impl Cursor {
    pub fn new(m: &Matrix) -> Self {
        Cursor {
            pos: vec![0; m.len()],
        }
    }

    /// The `(series index, value)` pairs that have a point at `ts`, in series order.
    pub fn gather(&mut self, m: &Matrix, ts: i64, out: &mut Vec<(usize, f64)>) {
        out.clear();
        for (i, s) in m.iter().enumerate() {
            let p = &mut self.pos[i];
            while *p < s.samples.len() && s.samples[*p].t < ts {
                *p += 1;
            }
            if *p < s.samples.len() && s.samples[*p].t == ts {
                out.push((i, s.samples[*p].v));
                *p += 1;
            }
        }
    }
}

/// Collects the output vectors of the steps into series, in order of first appearance (which
/// keeps an instant query's order), rejecting two samples with one label set at one step.
#[derive(Default)]
pub(crate) struct Out {
    series: Matrix,
    index: HashMap<Labels, usize>,
    last: Vec<i64>,
    /// Slots pushed at the current and the previous step, in push order: steps mostly repeat
    /// the previous step's label sets in the same order, and comparing labels is cheaper than
    /// hashing them.
    cur_ts: Option<i64>,
    order: Vec<usize>,
    prev: Vec<usize>,
}

impl Out {
    pub fn push(
        &mut self,
        st: &mut QueryState,
        ts: i64,
        labels: &Labels,
        v: f64,
    ) -> Result<(), Error> {
        if self.cur_ts != Some(ts) {
            self.cur_ts = Some(ts);
            std::mem::swap(&mut self.order, &mut self.prev);
            self.order.clear();
        }
        let i = match self.prev.get(self.order.len()) {
            Some(&c) if self.series[c].labels == *labels => c,
            _ => self.slot(labels),
        };
        self.order.push(i);
        self.push_at(st, i, ts, v)
    }

    /// The output series for `labels`, created on first use. Callers that produce the same
    /// label sets at every step cache the slot to avoid hashing labels per sample.
    pub fn slot(&mut self, labels: &Labels) -> usize {
        if let Some(&i) = self.index.get(labels) {
            return i;
        }
        let i = self.series.len();
        self.index.insert(labels.clone(), i);
        self.series.push(Series {
            labels: labels.clone(),
            samples: Vec::new(),
        });
        self.last.push(i64::MIN);
        i
    }

    pub fn push_at(&mut self, st: &mut QueryState, i: usize, ts: i64, v: f64) -> Result<(), Error> {
        if self.last[i] == ts {
            return Err(Eval(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        self.last[i] = ts;
        self.series[i].samples.push(Sample { t: ts, v });
        st.hold(1)
    }

    pub fn finish(self) -> Matrix {
        // Series whose label set was looked up but never got a point are left out.
        self.series
            .into_iter()
            .filter(|s| !s.samples.is_empty())
            .collect()
    }
}

/// Merges series that ended up with one label set (e.g. after dropping `__name__`); two points
/// of such series at one time are an error, as in Prometheus.
pub(crate) fn merge_same_labels(m: Matrix) -> Result<Matrix, Error> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(m.len());
    let mut out: Matrix = Vec::with_capacity(m.len());
    let mut merged = Vec::new();
    for s in m {
        match index.get(&s.labels) {
            Some(&i) => {
                out[i].samples.extend(s.samples);
                merged.push(i);
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    merged.sort_unstable();
    merged.dedup();
    for i in merged {
        let s = &mut out[i].samples;
        s.sort_by_key(|p| p.t);
        if s.windows(2).any(|w| w[0].t == w[1].t) {
            return Err(Eval(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(out)
}

/// Prometheus' `labels.String()`: `{__name__="up", job="x"}` (the metric name inside braces).
pub(crate) fn labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|x| format!("{}={}", x.name, go_quote(&x.value)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `strconv.Quote` for the usual label values.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Strips parentheses around an expression.
pub(crate) fn unwrap_paren(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Helpers for the unit tests of the engine's files.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::labels::Labels;
    use crate::promql::{parse, Engine, EngineOptions, Error, QueryResult, Value};
    use crate::tsdb::Db;

    /// Appends a series given as `name{a="1"}`-free pairs: name, labels, `(seconds, value)`.
    pub fn add(db: &Db, name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        pairs.push(("__name__".into(), name.into()));
        let l = Labels::from_pairs(pairs);
        for (t, v) in samples {
            db.append(&l, t * 1000, *v).unwrap();
        }
    }

    pub fn instant_full(db: &Db, q: &str, t_secs: i64) -> Result<QueryResult, Error> {
        Engine::new(EngineOptions::default()).instant_query(db, &parse(q)?, t_secs * 1000)
    }

    /// An instant query's vector as `(labels, value)` in result order.
    pub fn instant(db: &Db, q: &str, t_secs: i64) -> Result<Vec<(String, f64)>, Error> {
        match instant_full(db, q, t_secs)?.value {
            Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect()),
            Value::Scalar { v, .. } => Ok(vec![("scalar".into(), v)]),
            other => panic!("expected a vector, got {other:?}"),
        }
    }

    /// One series of a range result: labels and `(seconds, value)` points.
    pub type RangeSeries = (String, Vec<(i64, f64)>);

    /// A range query's matrix as `(labels, [(seconds, value)])`, sorted by labels.
    pub fn range(
        db: &Db,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<RangeSeries>, Error> {
        match Engine::default()
            .range_query(db, &parse(q)?, start * 1000, end * 1000, step * 1000)?
            .value
        {
            Value::Matrix(m) => Ok(m
                .into_iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.samples.iter().map(|p| (p.t / 1000, p.v)).collect(),
                    )
                })
                .collect()),
            other => panic!("expected a matrix, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::parse;
    use crate::tsdb::{stale_nan, Db};

    fn lbl(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    /// `http_requests_total{job="api", instance=i}` for i in 0..2, one sample per minute from
    /// t=0 to 10m with value minute*(i+1).
    fn db() -> Db {
        let db = Db::in_memory();
        for i in 0..2 {
            let l = lbl(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", &i.to_string()),
            ]);
            for m in 0..=10 {
                db.append(&l, m * 60_000, (m * (i + 1)) as f64).unwrap();
            }
        }
        db
    }

    fn instant(db: &Db, q: &str, t: i64) -> Result<Value, Error> {
        Engine::default()
            .instant_query(db, &parse(q)?, t)
            .map(|r| r.value)
    }

    fn vector(v: Value) -> Vec<(String, f64)> {
        match v {
            Value::Vector(v) => {
                let mut out: Vec<(String, f64)> =
                    v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            other => panic!("expected vector, got {other:?}"),
        }
    }

    #[test]
    fn scalar_arithmetic_and_precedence() {
        let db = Db::in_memory();
        assert_eq!(
            instant(&db, "1 + 2 * 3 ^ 2", 0).unwrap(),
            Value::Scalar { t: 0, v: 19.0 }
        );
        assert_eq!(
            instant(&db, "-5 % 3", 0).unwrap(),
            Value::Scalar { t: 0, v: -2.0 }
        );
        assert_eq!(
            instant(&db, "2 > bool 1", 0).unwrap(),
            Value::Scalar { t: 0, v: 1.0 }
        );
    }

    #[test]
    fn lookback_window_is_left_open_and_five_minutes() {
        let db = Db::in_memory();
        let l = lbl(&[("__name__", "x")]);
        db.append(&l, 0, 1.0).unwrap();
        assert_eq!(
            vector(instant(&db, "x", 299_999).unwrap()),
            vec![("x".into(), 1.0)]
        );
        assert!(vector(instant(&db, "x", 300_000).unwrap()).is_empty());
    }

    #[test]
    fn stale_marker_hides_the_series() {
        let db = Db::in_memory();
        let l = lbl(&[("__name__", "x")]);
        db.append(&l, 0, 1.0).unwrap();
        db.append(&l, 10_000, stale_nan()).unwrap();
        assert_eq!(vector(instant(&db, "x", 5_000).unwrap()).len(), 1);
        assert!(vector(instant(&db, "x", 20_000).unwrap()).is_empty());
    }

    #[test]
    fn offset_and_at_modifiers() {
        let db = db();
        let v = vector(
            instant(
                &db,
                "http_requests_total{instance=\"1\"} offset 5m",
                600_000,
            )
            .unwrap(),
        );
        assert_eq!(v[0].1, 10.0);
        let v = vector(instant(&db, "http_requests_total{instance=\"1\"} @ 120", 600_000).unwrap());
        assert_eq!(v[0].1, 4.0);
        let v = vector(
            instant(
                &db,
                "http_requests_total{instance=\"1\"} offset -2m",
                60_000,
            )
            .unwrap(),
        );
        assert_eq!(v[0].1, 6.0);
    }

    #[test]
    fn bare_matrix_selector_is_left_open() {
        let db = db();
        match instant(&db, "http_requests_total{instance=\"0\"}[2m]", 600_000).unwrap() {
            Value::Matrix(m) => {
                assert_eq!(m.len(), 1);
                let ts: Vec<i64> = m[0].samples.iter().map(|s| s.t).collect();
                assert_eq!(ts, vec![540_000, 600_000]);
            }
            other => panic!("expected matrix, got {other:?}"),
        }
    }

    #[test]
    fn aggregation_by_and_without() {
        let db = db();
        assert_eq!(
            vector(instant(&db, "sum(http_requests_total)", 600_000).unwrap()),
            vec![("{}".into(), 30.0)]
        );
        assert_eq!(
            vector(instant(&db, "max without (instance) (http_requests_total)", 600_000).unwrap()),
            vec![("{job=\"api\"}".into(), 20.0)]
        );
        assert_eq!(
            vector(instant(&db, "count by (job) (http_requests_total)", 600_000).unwrap())[0].1,
            2.0
        );
    }

    #[test]
    fn vector_matching_drops_name_and_detects_ambiguity() {
        let db = db();
        let v = vector(
            instant(
                &db,
                "http_requests_total / on(instance) http_requests_total",
                600_000,
            )
            .unwrap(),
        );
        assert_eq!(
            v,
            vec![
                ("{instance=\"0\"}".into(), 1.0),
                ("{instance=\"1\"}".into(), 1.0)
            ]
        );
        let err = instant(
            &db,
            "http_requests_total + on(job) http_requests_total",
            600_000,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("found duplicate series for the match group {job=\"api\"}"),
            "{err}"
        );
    }

    #[test]
    fn range_query_steps_are_inclusive_and_sorted() {
        let db = db();
        let r = Engine::default()
            .range_query(
                &db,
                &parse("http_requests_total").unwrap(),
                0,
                600_000,
                60_000,
            )
            .unwrap();
        match r.value {
            Value::Matrix(m) => {
                assert_eq!(m.len(), 2);
                assert_eq!(m[0].samples.len(), 11);
                assert!(m[0].labels < m[1].labels);
            }
            other => panic!("expected matrix, got {other:?}"),
        }
    }

    #[test]
    fn too_many_samples_is_an_error() {
        let db = db();
        let e = Engine::new(EngineOptions {
            max_samples: 5,
            ..Default::default()
        });
        let err = e
            .range_query(
                &db,
                &parse("http_requests_total").unwrap(),
                0,
                600_000,
                60_000,
            )
            .unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err:?}");
    }

    #[test]
    fn labels_print_as_prometheus() {
        assert_eq!(
            labels_string(&lbl(&[("__name__", "a"), ("b", "c")])),
            "{__name__=\"a\", b=\"c\"}"
        );
    }

    #[test]
    fn exhausted_timeout_stops_the_query() {
        let db = db();
        let e = Engine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..Default::default()
        });
        let err = e
            .range_query(
                &db,
                &parse("sum(http_requests_total)").unwrap(),
                0,
                600_000,
                60_000,
            )
            .unwrap_err();
        assert_eq!(err, Error::Timeout("expression evaluation"));
        assert_eq!(err.error_type(), "timeout");
    }

    #[test]
    fn range_query_rejects_range_vectors_and_bad_steps() {
        let db = db();
        let e = Engine::default();
        let err = e
            .range_query(
                &db,
                &parse("http_requests_total[5m]").unwrap(),
                0,
                60_000,
                1000,
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid expression type \"range vector\""),
            "{err}"
        );
        assert!(e
            .range_query(&db, &parse("1").unwrap(), 0, 60_000, 0)
            .is_err());
    }

    #[test]
    fn unary_minus_drops_the_name_and_detects_collisions() {
        let db = db();
        let v = vector(instant(&db, "-http_requests_total{instance=\"1\"}", 600_000).unwrap());
        assert_eq!(v, vec![("{instance=\"1\", job=\"api\"}".into(), -20.0)]);
        let db2 = Db::in_memory();
        testutil::add(&db2, "a", &[("job", "x")], &[(0, 1.0)]);
        testutil::add(&db2, "b", &[("job", "x")], &[(0, 2.0)]);
        let err = instant(&db2, "-{job=\"x\"}", 0).unwrap_err();
        assert!(err.to_string().contains("same labelset"), "{err}");
    }
}

//! Instant and range query evaluation over the AST.
//!
//! SKELETON: the API is fixed; the evaluation is the engine work.

use std::time::Duration;

use promql_parser::parser::Expr;

use super::value::Value;
use super::{Annotations, Error};
use crate::tsdb::Queryable;

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
        EngineOptions { lookback_delta_ms: 5 * 60 * 1000, max_samples: 50_000_000, timeout: Duration::from_secs(120) }
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
    pub fn instant_query(&self, q: &dyn Queryable, expr: &Expr, ts_ms: i64) -> Result<QueryResult, Error> {
        let _ = (q, ts_ms);
        match expr {
            Expr::NumberLiteral(n) => Ok(QueryResult { value: Value::Scalar { t: ts_ms, v: n.val }, annotations: Annotations::default() }),
            _ => Err(Error::Eval("not implemented".into())),
        }
    }

    /// Evaluates `expr` at every step from `start_ms` to `end_ms` inclusive. Returns a matrix,
    /// as `/api/v1/query_range` does (scalars become one series without labels).
    pub fn range_query(&self, q: &dyn Queryable, expr: &Expr, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResult, Error> {
        let _ = (q, expr, start_ms, end_ms, step_ms);
        Err(Error::Eval("not implemented".into()))
    }
}

//! PromQL evaluation over the `promql-parser` AST with Prometheus 3 semantics.
//!
//! - `value`: the values an expression evaluates to (scalar, string, instant vector, matrix).
//! - `engine`: instant and range queries, the step-wise evaluator and limits (timeout, max
//!   samples); with `selector` (lookback, staleness, offset/@, matrix selectors, subqueries),
//!   `call` (function calls), `binary` (arithmetic, comparison and set operators) and
//!   `aggregate` (aggregation operators).
//! - `functions`: every float function, called by the engine once per evaluation step.
//! - `promqltest`: the runner for Prometheus' own `.test` scripts (`depin-orcha test promql`).
//!
//! It reads storage only through [`crate::tsdb::Queryable`] and takes time as arguments: it is
//! synchronous and deterministic, and never looks at the wall clock except for `--query.timeout`.

mod aggregate;
mod binary;
mod call;
pub mod engine;
pub mod functions;
mod numeric;
pub mod promqltest;
mod selector;
pub mod value;

pub use engine::{Engine, EngineOptions, QueryResult};
pub use promql_parser::parser::Expr;
pub use value::{InstantSample, Matrix, Value, Vector};

/// What can go wrong with a query. The variants map onto the Prometheus API's `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The expression does not parse (`bad_data`); the message carries the parser's position.
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (`execution`), e.g. many-to-many matching or a bad argument.
    #[error("{0}")]
    Eval(String),
    /// `--query.timeout` ran out (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// `--query.max-samples` was exceeded (`execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
}

impl Error {
    /// The Prometheus HTTP API's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) => "bad_data",
            Error::Eval(_) | Error::TooManySamples(_) => "execution",
            Error::Timeout(_) => "timeout",
        }
    }
}

/// Parses an expression; the error text keeps the parser's position.
pub fn parse(expr: &str) -> Result<Expr, Error> {
    promql_parser::parser::parse(expr).map_err(Error::Parse)
}

/// Warnings and infos that Prometheus attaches to a result (`warnings` / `infos` in the API,
/// `expect warn` / `expect info` in test scripts), e.g. "metric might not be a counter".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
    pub fn info(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

//! PromQL's functions (`rate`, `histogram_quantile`, `label_replace`, …), each evaluated for one
//! step of a query. The engine evaluates the arguments and calls [`call`] once per step.
//!
//! SKELETON: the signature is fixed; the bodies are the functions work.

use promql_parser::parser::Expr;

use super::value::{Matrix, Value, Vector};
use super::{Annotations, Error};

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
    let _ = annotations;
    Err(Error::Eval(format!("function {} is not implemented", c.name)))
}

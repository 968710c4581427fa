//! The values a PromQL expression evaluates to, in Prometheus' vocabulary.

use crate::labels::Labels;
pub use crate::tsdb::{Sample, Series};

/// One element of an instant vector. `t` is the evaluation time, except where Prometheus keeps
/// the sample's own time (the `timestamp()` function reads it).
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

pub type Vector = Vec<InstantSample>;

/// A range vector, or the result of a range query: series with samples in time order.
pub type Matrix = Vec<Series>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vector),
    Matrix(Matrix),
}

impl Value {
    /// The API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

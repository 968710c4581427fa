//! PromQL estimators: parsed once, refused when they cannot give one number per node, and
//! widened to a subquery for the confidence of `value_per_hour`.

use promql_parser::parser::value::ValueType;
use serde_yaml::Value;

use super::scalar::show;
use crate::optimizer::{ConfidenceRule, Query};
use crate::schema::diag::Diagnostics;

/// Parses a PromQL estimator at `path`. Range vectors and strings are refused: an estimator
/// gives one number per node.
pub(super) fn query(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Query> {
    let Value::String(text) = v else {
        d.error(
            path,
            format!("expected a PromQL expression as a string, got {}", show(v)),
        );
        return None;
    };
    match crate::promql::parse(text) {
        Ok(expr) => match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => Some(Query {
                text: text.clone(),
                expr,
                path: path.to_string(),
                history: None,
            }),
            t => {
                d.error(
                    path,
                    format!(
                        "invalid PromQL: the expression gives a {t}, expected an instant vector or a scalar"
                    ),
                );
                None
            }
        },
        Err(e) => {
            d.error(path, format!("invalid PromQL: {e}"));
            None
        }
    }
}

/// `(text)[window:resolution]` for the confidence of `value_per_hour`.
pub(super) fn with_history(
    mut q: Query,
    conf: &ConfidenceRule,
    d: &mut Diagnostics,
) -> Option<Query> {
    // A subquery takes a vector only: a scalar estimator is looked at through vector().
    let inner = if q.expr.value_type() == ValueType::Scalar {
        format!("vector({})", q.text)
    } else {
        format!("({})", q.text)
    };
    let text = format!(
        "{}[{}s:{}s]",
        inner,
        conf.window.as_secs().max(1),
        conf.resolution.as_secs().max(1)
    );
    match crate::promql::parse(&text) {
        Ok(e) => {
            q.history = Some(e);
            Some(q)
        }
        Err(e) => {
            d.error(
                &q.path,
                format!("cannot look at the history of this expression: {e}"),
            );
            None
        }
    }
}

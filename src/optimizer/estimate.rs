//! Evaluating the estimators of the rules over the tsdb at one time ([`gather_inputs`]) and the
//! confidence of each node's `value_per_hour` from its recent history (the formula is in the
//! `optimizer` module doc).

use std::collections::HashMap;

use super::{CurrentNode, Inputs, LeftOut, NodeInputs, OptimizationRules, Query};
use crate::labels::Labels;
use crate::promql::{Engine, Value};
use crate::resources::{Allocation, Resource, Resources};
use crate::tsdb::Queryable;

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("host capacity {resource} = {value} is not a finite number of 0 or more")]
    Capacity { resource: &'static str, value: f64 },
    #[error("node \"{0}\" is listed twice")]
    DuplicateNode(String),
}

/// Evaluates every estimator at `ts_ms` for each node of `current`. A node without rules, or
/// whose `value_per_hour`, `demand` or `demand_cap` estimator fails or returns nothing for it,
/// is left out with the reason (its allocation stays). A usage estimator that returns nothing
/// only makes the model assume a saturation (the explanation says so).
pub fn gather_inputs(
    rules: &OptimizationRules,
    db: &dyn Queryable,
    engine: &Engine,
    ts_ms: i64,
    current: &[CurrentNode],
    capacity: &Allocation,
) -> Result<Inputs, GatherError> {
    for r in Resource::ALL {
        let v = capacity.get(r);
        if !(v.is_finite() && v >= 0.0) {
            return Err(GatherError::Capacity {
                resource: r.key(),
                value: v,
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    // A protocol's expression serves all its nodes: evaluate it once per plan.
    let mut cache = Cache::default();
    let mut nodes = Vec::new();
    let mut left_out = Vec::new();
    for c in current {
        if !seen.insert(c.node.as_str()) {
            return Err(GatherError::DuplicateNode(c.node.clone()));
        }
        match gather_node(rules, db, engine, ts_ms, c, &mut cache) {
            Ok(n) => nodes.push(n),
            Err(reason) => left_out.push(LeftOut {
                node: c.node.clone(),
                allocation: c.allocation,
                reason,
            }),
        }
    }
    Ok(Inputs {
        ts_ms,
        host_capacity: *capacity,
        nodes,
        left_out,
    })
}

/// Results by (key path, history?): the same key path is the same expression.
type Cache = HashMap<(String, bool), Result<Value, String>>;

/// Evaluates `expr` (the query at `path`, or its history) once per plan.
fn cached<'a>(
    cache: &'a mut Cache,
    engine: &Engine,
    db: &dyn Queryable,
    path: &str,
    history: bool,
    expr: &crate::promql::Expr,
    ts_ms: i64,
) -> &'a Result<Value, String> {
    cache.entry((path.to_string(), history)).or_insert_with(|| {
        engine
            .instant_query(db, expr, ts_ms)
            .map(|r| r.value)
            .map_err(|e| format!("{path}: the query failed: {e}"))
    })
}

fn gather_node(
    rules: &OptimizationRules,
    db: &dyn Queryable,
    engine: &Engine,
    ts_ms: i64,
    c: &CurrentNode,
    cache: &mut Cache,
) -> Result<NodeInputs, String> {
    let rule = rules.for_node(&c.node, &c.protocol).ok_or_else(|| {
        format!(
            "no rules for node \"{}\" or protocol \"{}\"",
            c.node, c.protocol
        )
    })?;
    let vq = rule.value_per_hour.as_ref().ok_or_else(|| {
        format!(
            "no value_per_hour for this node (nodes.{} or protocols.{})",
            c.node, c.protocol
        )
    })?;
    let value_per_hour = required(cache, engine, db, vq, ts_ms, &c.node)?;
    let demand = match &rule.demand {
        Some(q) => required(cache, engine, db, q, ts_ms, &c.node)?,
        None => 1.0,
    };
    let mut usage: Resources<Option<f64>> = Resources::default();
    for (r, q) in &rule.usage {
        // Usage only shapes the knee; without it the model assumes a saturation.
        usage.set(
            *r,
            evaluate(cache, engine, db, q, ts_ms, &c.node)
                .ok()
                .flatten(),
        );
    }
    let mut demand_cap: Resources<Option<f64>> = Resources::default();
    for (r, resp) in &rule.response {
        if let Some(q) = &resp.demand_cap {
            demand_cap.set(*r, Some(required(cache, engine, db, q, ts_ms, &c.node)?));
        }
    }
    let (cv, samples) = match &vq.history {
        Some(h) => history_cv(cache, engine, db, &vq.path, h, ts_ms, &c.node),
        None => (None, 0),
    };
    let conf = &rules.confidence;
    let confidence = match cv {
        Some(cv) if samples >= conf.min_samples => confidence_from_cv(cv, conf.cv_half),
        _ => 0.0,
    };
    Ok(NodeInputs {
        node: c.node.clone(),
        protocol: c.protocol.clone(),
        current: c.allocation,
        value_per_hour,
        demand,
        usage,
        demand_cap,
        cv,
        history_samples: samples,
        confidence,
    })
}

/// `1 / (1 + cv / cv_half)`: 1 for a steady estimate, 0.5 at `cv_half`, towards 0 beyond.
pub fn confidence_from_cv(cv: f64, cv_half: f64) -> f64 {
    if cv.is_finite() && cv >= 0.0 && cv_half > 0.0 {
        1.0 / (1.0 + cv / cv_half)
    } else {
        0.0
    }
}

/// The estimator's value for `node`, or why there is none.
fn required(
    cache: &mut Cache,
    engine: &Engine,
    db: &dyn Queryable,
    q: &Query,
    ts_ms: i64,
    node: &str,
) -> Result<f64, String> {
    match evaluate(cache, engine, db, q, ts_ms, node)? {
        Some(v) => Ok(v),
        None => Err(format!(
            "{} returned nothing for this node at this time (no data yet?)",
            q.path
        )),
    }
}

/// The element of a result that belongs to `node`: the one with `node="<node>"`, else the only
/// element when it has no `node` label.
fn pick<'a, T>(items: &'a [T], labels: impl Fn(&T) -> &Labels, node: &str) -> Option<&'a T> {
    items
        .iter()
        .find(|s| labels(s).get("node") == Some(node))
        .or_else(|| match items {
            [only] if labels(only).get("node").is_none() => Some(only),
            _ => None,
        })
}

fn evaluate(
    cache: &mut Cache,
    engine: &Engine,
    db: &dyn Queryable,
    q: &Query,
    ts_ms: i64,
    node: &str,
) -> Result<Option<f64>, String> {
    let v = match cached(cache, engine, db, &q.path, false, &q.expr, ts_ms) {
        Err(e) => return Err(e.clone()),
        Ok(Value::Scalar { v, .. }) => Some(*v),
        Ok(Value::Vector(vec)) => pick(vec, |s| &s.labels, node).map(|s| s.v),
        Ok(_) => None,
    };
    Ok(v.filter(|x| x.is_finite()))
}

/// Coefficient of variation and number of points of the history subquery for `node`; None
/// when there are no points or the mean is 0 while the values move.
fn history_cv(
    cache: &mut Cache,
    engine: &Engine,
    db: &dyn Queryable,
    path: &str,
    h: &crate::promql::Expr,
    ts_ms: i64,
    node: &str,
) -> (Option<f64>, usize) {
    let Ok(Value::Matrix(m)) = cached(cache, engine, db, path, true, h, ts_ms) else {
        return (None, 0);
    };
    let Some(series) = pick(m, |s| &s.labels, node) else {
        return (None, 0);
    };
    let xs: Vec<f64> = series
        .samples
        .iter()
        .map(|s| s.v)
        .filter(|v| v.is_finite())
        .collect();
    (coefficient_of_variation(&xs), xs.len())
}

/// σ / |μ| with the population standard deviation, as `stddev_over_time / avg_over_time`;
/// 0 for a series that is 0 throughout, None for one that averages 0 but moves.
pub fn coefficient_of_variation(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    if mean == 0.0 {
        // A node that steadily earns nothing (Grass in USD) is known exactly.
        return (sd == 0.0).then_some(0.0);
    }
    Some(sd / mean.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cv_and_confidence() {
        assert_eq!(coefficient_of_variation(&[2.0, 2.0, 2.0]), Some(0.0));
        // Mean 2, population σ 1.
        assert_eq!(coefficient_of_variation(&[1.0, 3.0]), Some(0.5));
        assert_eq!(coefficient_of_variation(&[0.0, 0.0]), Some(0.0));
        assert_eq!(coefficient_of_variation(&[-1.0, 1.0]), None);
        assert_eq!(confidence_from_cv(0.0, 0.25), 1.0);
        assert_eq!(confidence_from_cv(0.25, 0.25), 0.5);
        assert!(confidence_from_cv(1.0, 0.25) < 0.25);
    }
}

//! The `planner:` and `exploration_budget:` keys: which planner decides, and what the learning
//! planner may put at risk on probes.

use serde_yaml::Value;

use super::scalar::{number, show};
use crate::optimizer::{ExplorationBudget, PlannerKind};
use crate::schema::diag::Diagnostics;

/// `planner`: `model` (default) or `learning`.
pub(super) fn validate_planner(v: Option<&Value>, d: &mut Diagnostics) -> Option<PlannerKind> {
    match v.map(|v| (v, v.as_str())) {
        None | Some((_, Some("model"))) => Some(PlannerKind::Model),
        Some((_, Some("learning"))) => Some(PlannerKind::Learning),
        Some((v, _)) => {
            d.error(
                "planner",
                format!("must be model or learning, got {}", show(v)),
            );
            None
        }
    }
}

/// `exploration_budget`: what a learning planner may put at risk on probes per day (default
/// 0): USD as a number, or a percent of what the nodes earn per day.
pub(super) fn validate_exploration(
    v: Option<&Value>,
    d: &mut Diagnostics,
) -> Option<ExplorationBudget> {
    let Some(v) = v else {
        return Some(ExplorationBudget::default());
    };
    let parsed = match v {
        Value::String(s) if s.trim().ends_with('%') => s
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(|p| ExplorationBudget::Share(p / 100.0)),
        _ => number(v)
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(ExplorationBudget::Usd),
    };
    if parsed.is_none() {
        d.error(
            "exploration_budget",
            format!(
                "must be USD per day (a number, 0 or more) or a percent of the day's earnings (2%), got {}",
                show(v)
            ),
        );
    }
    parsed
}

//! The `planner:` and `exploration_budget:` keys: which planner decides, and what the learning
//! planner may put at risk on probes.

use serde_yaml::Value;

use super::scalar::{number, show};
use crate::optimizer::PlannerKind;
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

/// `exploration_budget`: USD per day a learning planner may put at risk on probes (default 0).
pub(super) fn validate_exploration(v: Option<&Value>, d: &mut Diagnostics) -> Option<f64> {
    match v.map(|v| (v, number(v))) {
        None => Some(0.0),
        Some((_, Some(x))) if x.is_finite() && x >= 0.0 => Some(x),
        Some((v, _)) => {
            d.error(
                "exploration_budget",
                format!(
                    "must be a number of USD per day, 0 or more, got {}",
                    show(v)
                ),
            );
            None
        }
    }
}

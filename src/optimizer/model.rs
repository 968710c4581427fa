//! The earnings model of one node (the module doc of `optimizer` has its equations): response
//! curves, their fit from the estimates, the model's value at an allocation, and the plan built
//! from a solution.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Inputs, LeftOut, OptimizationRules, Plan, Problem};
use crate::adapters::{Allocation, Resource};

/// A concave, nondecreasing piecewise-linear curve through `points` (x ascending, starting at
/// (0, 0)), flat after the last point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
}

/// Resources that earn together: `min_r curve_r(a_r)`, weighted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub weight: f64,
    pub curves: Vec<ResourceCurve>,
}

/// The curve of one resource of a group, in the resource's units.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceCurve {
    #[serde(with = "super::resource_key")]
    pub resource: Resource,
    pub curve: Curve,
}

pub fn build_problem(_rules: &OptimizationRules, inputs: &Inputs) -> (Problem, Vec<LeftOut>) {
    (
        Problem {
            models: Vec::new(),
            available: inputs.host_capacity,
            capacity: inputs.host_capacity,
        },
        Vec::new(),
    )
}

pub fn make_plan(
    rules: &OptimizationRules,
    ts_ms: i64,
    _problem: &Problem,
    _target: &BTreeMap<String, Allocation>,
    left_out: Vec<LeftOut>,
) -> Plan {
    Plan {
        ts_ms,
        current: BTreeMap::new(),
        target: BTreeMap::new(),
        moves: Vec::new(),
        current_usd_per_hour: 0.0,
        target_usd_per_hour: 0.0,
        expected_gain_usd_per_hour: 0.0,
        improvement: 0.0,
        confidence: 0.0,
        switching_cost_usd: 0.0,
        hold_hours: rules.gates.min_hold.as_secs_f64() / 3600.0,
        roi: None,
        left_out,
        explanation: Vec::new(),
    }
}

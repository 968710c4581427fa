//! The exact solver: the linear program of the module doc (each concave curve as its
//! segments filled in order, the minimum over a together group as one bound per member,
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
    // Per node and resource that moves: (grant p, release q) in capacity fractions.
    let mut moves: Vec<[Option<(Variable, Variable)>; 4]> =
        Vec::with_capacity(problem.models.len());
    // Per resource: the capacity row's terms.
    let mut cap_terms: [Vec<(Variable, f64)>; 4] = Default::default();
    for m in &problem.models {
        let mut per = [None; 4];
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if !m.moves(r) {
                continue;
            }
            let (u, cur) = (unit.get(r), m.current.get(r));
            let p = lp.add_var(-MOVE_PENALTY, (0.0, (m.upper.get(r) - cur).max(0.0) / u));
            let q = lp.add_var(-MOVE_PENALTY, (0.0, (cur - m.lower.get(r)).max(0.0) / u));
            cap_terms[i].push((p, 1.0));
            cap_terms[i].push((q, -1.0));
            per[i] = Some((p, q));
        }
        moves.push(per);
    }
    for (m, per) in problem.models.iter().zip(&moves) {
        let value_coef = m.scale / ceiling;
        for g in &m.groups {
            // A group of one resource earns its curve directly; a group of several earns e,
            // bounded by each member's curve (e ≤ min_r h_r).
            let together = g.curves.len() > 1;
            let e = together.then(|| lp.add_var(value_coef * g.weight, (0.0, f64::INFINITY)));
            for c in &g.curves {
                let r = c.resource;
                let idx = Resource::ALL.iter().position(|x| *x == r).unwrap_or(0);
                let (lo, hi) = (m.lower.get(r), m.upper.get(r));
                let base = c.curve.value(lo);
                let Some((p, q)) = per[idx] else {
                    // Fixed: the curve is a constant; it bounds e in a group.
                    if let Some(e) = e {
                        lp.add_constraint(
                            [(e, 1.0)],
                            ComparisonOp::Le,
                            c.curve.value(m.current.get(r)),
                        );
                    }
                    continue;
                };
                let u = unit.get(r);
                // a = lo + Σ δ = current + u·(p − q)  ⇔  Σ δ/u − p + q = (current − lo)/u
                let mut link: Vec<(Variable, f64)> = vec![(p, -1.0), (q, 1.0)];
                let mut rise: Vec<(Variable, f64)> = Vec::new();
                for (len, slope) in c.curve.segments_within(lo, hi) {
                    let obj = if together {
                        0.0
                    } else {
                        value_coef * g.weight * slope * u
                    };
                    let d = lp.add_var(obj, (0.0, len / u));
                    link.push((d, 1.0));
                    if slope != 0.0 {
                        rise.push((d, -slope * u));
                    }
                }
                lp.add_constraint(
                    link.as_slice(),
                    ComparisonOp::Eq,
                    (m.current.get(r) - lo) / u,
                );
                if let Some(e) = e {
                    // e ≤ h(lo) + Σ slope·δ
                    rise.push((e, 1.0));
                    lp.add_constraint(rise.as_slice(), ComparisonOp::Le, base);
                }
            }
        }
    }
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        if cap_terms[i].is_empty() {
            continue;
        }
        let held: f64 = problem.models.iter().map(|m| m.current.get(r)).sum();
        let rhs = (problem.available.get(r) - held) / unit.get(r);
        lp.add_constraint(cap_terms[i].as_slice(), ComparisonOp::Le, rhs);
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
    for (m, per) in problem.models.iter().zip(&moves) {
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

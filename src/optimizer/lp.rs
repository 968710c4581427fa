//! The exact solver: the linear program of the module doc (each concave curve as its
//! segments filled in order, the minimum over a together group as one bound per member,
//! capacity per resource, ranges per node), solved with `microlp`. Amounts are scaled to
//! fractions of capacity and earnings to the problem's total ceiling so that every coefficient
//! stays near 1, as the solver asks.

use std::collections::BTreeMap;

use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp, Variable};

use super::{NodeModel, Problem};
use crate::resources::{Allocation, Resource};

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
    check_feasible(problem, &unit)?;
    let ceiling = ceiling(problem);
    if !(ceiling > 0.0 && ceiling.is_finite()) {
        // Nothing earns anything: any feasible split is as good as the current one.
        return Ok(problem
            .models
            .iter()
            .map(|m| (m.node.clone(), m.current))
            .collect());
    }

    let mut lp = Lp::new(OptimizationDirection::Maximize);
    // Per node and moving resource: the δ variables whose sum (in capacity fractions) is the
    // allocation above the lower bound. The first curve of a resource defines them; another
    // curve of the same resource (a hand-built problem may have one) is linked to them.
    let mut primary: Vec<[Option<Vec<Variable>>; 4]> = Vec::with_capacity(problem.models.len());
    let mut cap_terms: [Vec<(Variable, f64)>; 4] = Default::default();
    for m in &problem.models {
        let own = add_node(&mut lp, m, m.scale / ceiling, &unit, &mut cap_terms);
        primary.push(own);
    }
    add_capacity(&mut lp, problem, &unit, &cap_terms);
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
    for (m, own) in problem.models.iter().zip(&primary) {
        let mut a = m.current;
        for r in Resource::ALL {
            if let Some(vars) = &own[index(r)] {
                let filled: f64 = vars.iter().map(|d| sol.var_value(*d)).sum();
                let v = m.lower.get(r) + unit.get(r) * filled;
                a.set(r, v.clamp(m.lower.get(r), m.upper.get(r)));
            }
        }
        out.insert(m.node.clone(), a);
    }
    Ok(out)
}

/// Every resource's lower bounds, summed over the nodes, fit what is available.
fn check_feasible(problem: &Problem, unit: &Allocation) -> Result<(), SolveError> {
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
    Ok(())
}

/// The most the nodes could earn: the value of every curve at its top.
fn ceiling(problem: &Problem) -> f64 {
    problem
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
        .sum()
}

/// One node's variables and constraints: per group and moving resource the δ variables of its
/// curve's segments (the tie-break on their slopes), their terms in the capacity rows, and the
/// tie-break alone for a resource that may move but earns nothing. Returns the node's primary
/// δs per resource.
fn add_node(
    lp: &mut Lp,
    m: &NodeModel,
    value_coef: f64,
    unit: &Allocation,
    cap_terms: &mut [Vec<(Variable, f64)>; 4],
) -> [Option<Vec<Variable>>; 4] {
    let mut own: [Option<Vec<Variable>>; 4] = Default::default();
    for g in &m.groups {
        // A group of one resource earns its curve directly; a group of several earns e,
        // bounded by each member's curve (e ≤ min_r h_r).
        let together = g.curves.len() > 1;
        let e = together.then(|| lp.add_var(value_coef * g.weight, (0.0, f64::INFINITY)));
        for c in &g.curves {
            let r = c.resource;
            let idx = index(r);
            if !m.moves(r) {
                // Fixed: the curve is a constant; it bounds e in a group.
                if let Some(e) = e {
                    lp.add_constraint(
                        [(e, 1.0)],
                        ComparisonOp::Le,
                        c.curve.value(m.current.get(r)),
                    );
                }
                continue;
            }
            let (lo, hi, u) = (m.lower.get(r), m.upper.get(r), unit.get(r));
            let is_primary = own[idx].is_none();
            let cur = m.current.get(r).clamp(lo, hi);
            let mut vars = Vec::new();
            let mut rise: Vec<(Variable, f64)> = Vec::new();
            let below = c
                .curve
                .segments_within(lo, cur)
                .into_iter()
                .map(|s| (s, 1.0));
            let above = c
                .curve
                .segments_within(cur, hi)
                .into_iter()
                .map(|s| (s, -1.0));
            for ((len, slope), side) in below.chain(above) {
                let earn = if together {
                    0.0
                } else {
                    value_coef * g.weight * slope * u
                };
                // The tie-break −λ·|a − a⁰| as slopes: +λ for filling up to a⁰, −λ after.
                let tie = if is_primary { side * MOVE_PENALTY } else { 0.0 };
                let d = lp.add_var(earn + tie, (0.0, len / u));
                vars.push(d);
                if slope != 0.0 {
                    rise.push((d, -slope * u));
                }
            }
            if let Some(e) = e {
                // e ≤ h(lo) + Σ slope·δ
                rise.push((e, 1.0));
                lp.add_constraint(rise.as_slice(), ComparisonOp::Le, c.curve.value(lo));
            }
            match &own[idx] {
                None => {
                    cap_terms[idx].extend(vars.iter().map(|d| (*d, 1.0)));
                    own[idx] = Some(vars);
                }
                Some(first) => {
                    let link: Vec<(Variable, f64)> = vars
                        .iter()
                        .map(|d| (*d, 1.0))
                        .chain(first.iter().map(|d| (*d, -1.0)))
                        .collect();
                    lp.add_constraint(link.as_slice(), ComparisonOp::Eq, 0.0);
                }
            }
        }
    }
    // A resource that may move but earns nothing for this node: only the tie-break.
    for r in Resource::ALL {
        let idx = index(r);
        if own[idx].is_some() || !m.moves(r) {
            continue;
        }
        let (lo, hi, u) = (m.lower.get(r), m.upper.get(r), unit.get(r));
        let cur = m.current.get(r).clamp(lo, hi);
        let d0 = lp.add_var(MOVE_PENALTY, (0.0, (cur - lo) / u));
        let d1 = lp.add_var(-MOVE_PENALTY, (0.0, (hi - cur) / u));
        cap_terms[idx].extend([(d0, 1.0), (d1, 1.0)]);
        own[idx] = Some(vec![d0, d1]);
    }
    own
}

/// One row per resource: the δs of every node fit what is left after the lower bounds (and
/// the fixed resources' current amounts).
fn add_capacity(
    lp: &mut Lp,
    problem: &Problem,
    unit: &Allocation,
    cap_terms: &[Vec<(Variable, f64)>; 4],
) {
    for r in Resource::ALL {
        let idx = index(r);
        if cap_terms[idx].is_empty() {
            continue;
        }
        // What the nodes hold without the δs: the lower bound of a moving resource, the
        // current amount of a fixed one.
        let base: f64 = problem
            .models
            .iter()
            .map(|m| {
                if m.moves(r) {
                    m.lower.get(r)
                } else {
                    m.current.get(r)
                }
            })
            .sum();
        let rhs = (problem.available.get(r) - base) / unit.get(r);
        lp.add_constraint(cap_terms[idx].as_slice(), ComparisonOp::Le, rhs);
    }
}

/// The position of `r` in [`Resource::ALL`].
fn index(r: Resource) -> usize {
    match r {
        Resource::CpuCores => 0,
        Resource::MemoryBytes => 1,
        Resource::DiskBytes => 2,
        Resource::BandwidthBytesPerSecond => 3,
    }
}

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
///
/// The program falls apart into one part per set of resources that some node needs together
/// ([`parts`]): each part is solved on its own, a resource that no moving `needs_together`
/// group ties to another by [`fill`] (exact, and linear in the segments rather than the
/// simplex's superlinear cost on a hundred nodes), the others by the linear program.
pub fn solve(problem: &Problem) -> Result<BTreeMap<String, Allocation>, SolveError> {
    let unit = problem.capacity.map(|_, c| if c > 0.0 { c } else { 1.0 });
    // Feasibility first, with a message that names the resource.
    check_feasible(problem, &unit)?;
    let ceiling = ceiling(problem);
    let mut out: BTreeMap<String, Allocation> = problem
        .models
        .iter()
        .map(|m| (m.node.clone(), m.current))
        .collect();
    if !(ceiling > 0.0 && ceiling.is_finite()) {
        // Nothing earns anything: any feasible split is as good as the current one.
        return Ok(out);
    }
    for part in parts(problem) {
        let filled = match part.as_slice() {
            [r] if fillable(problem, *r) => fill(problem, *r, ceiling, &unit)?,
            _ => solve_part(problem, &part, ceiling, &unit)?,
        };
        for (m, f) in problem.models.iter().zip(&filled) {
            let a = out.get_mut(&m.node).expect("every node has an entry");
            for r in &part {
                if let Some(x) = f[index(*r)] {
                    let v = m.lower.get(*r) + unit.get(*r) * x;
                    a.set(*r, v.clamp(m.lower.get(*r), m.upper.get(*r)));
                }
            }
        }
    }
    Ok(out)
}

/// Per node, per resource (by [`index`]): the δs of the solution summed, in capacity fractions
/// above the lower bound; `None` where the node's resource does not move.
type Filled = Vec<[Option<f64>; 4]>;

/// The resources that must be solved together: those that a `needs_together` group of some
/// node moves at once are linked, each connected set is a part (the capacity rows of
/// different parts share no variable).
fn parts(problem: &Problem) -> Vec<Vec<Resource>> {
    let mut root = [0usize, 1, 2, 3];
    fn find(root: &mut [usize; 4], i: usize) -> usize {
        let mut i = i;
        while root[i] != i {
            i = root[i];
        }
        i
    }
    for m in &problem.models {
        for g in &m.groups {
            let moving: Vec<usize> = g
                .curves
                .iter()
                .filter(|c| m.moves(c.resource))
                .map(|c| index(c.resource))
                .collect();
            for w in moving.windows(2) {
                let (a, b) = (find(&mut root, w[0]), find(&mut root, w[1]));
                root[a.max(b)] = a.min(b);
            }
        }
    }
    let mut out: Vec<Vec<Resource>> = Vec::new();
    let mut of_root: [Option<usize>; 4] = [None; 4];
    for r in Resource::ALL {
        let top = find(&mut root, index(r));
        match of_root[top] {
            Some(k) => out[k].push(r),
            None => {
                of_root[top] = Some(out.len());
                out.push(vec![r]);
            }
        }
    }
    out
}

/// Whether `r` alone is a fractional knapsack: every node that moves it earns from it through
/// at most one curve, in a group of that curve alone.
fn fillable(problem: &Problem, r: Resource) -> bool {
    problem.models.iter().filter(|m| m.moves(r)).all(|m| {
        let groups: Vec<&super::Group> = m
            .groups
            .iter()
            .filter(|g| g.curves.iter().any(|c| c.resource == r))
            .collect();
        match groups.as_slice() {
            [] => true,
            [g] => g.curves.len() == 1,
            _ => false,
        }
    })
}

/// One resource's part without the simplex: with a single capacity row and segments that a
/// concave curve fills in order, the program is a fractional knapsack, and filling the
/// segments of every node by their value per unit of capacity, best first, while it is
/// positive and capacity is left, is its optimum (the same objective as the program,
/// tie-break included).
fn fill(
    problem: &Problem,
    r: Resource,
    ceiling: f64,
    unit: &Allocation,
) -> Result<Filled, SolveError> {
    let u = unit.get(r);
    // (value per capacity fraction, length in capacity fractions, node)
    let mut items: Vec<(f64, f64, usize)> = Vec::new();
    let mut out: Filled = vec![[None; 4]; problem.models.len()];
    for (i, m) in problem.models.iter().enumerate() {
        if !m.moves(r) {
            continue;
        }
        out[i][index(r)] = Some(0.0);
        let (lo, hi) = (m.lower.get(r), m.upper.get(r));
        let cur = m.current.get(r).clamp(lo, hi);
        let curve = m
            .groups
            .iter()
            .flat_map(|g| g.curves.iter().map(move |c| (g.weight, c)))
            .find(|(_, c)| c.resource == r);
        match curve {
            Some((weight, c)) => {
                let coef = m.scale / ceiling * weight * u;
                for ((len, slope), side) in c.curve.segments_around(lo, cur, hi) {
                    items.push((coef * slope + side * MOVE_PENALTY, len / u, i));
                }
            }
            None => {
                items.push((MOVE_PENALTY, (cur - lo) / u, i));
                items.push((-MOVE_PENALTY, (hi - cur) / u, i));
            }
        }
    }
    let held: f64 = problem
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
    let mut left = (problem.available.get(r) - held) / u;
    if items.is_empty() {
        return Ok(out);
    }
    if left < -1e-9 {
        return Err(SolveError::Infeasible(format!(
            "{}: the nodes that may not move hold more than is available after reserves",
            r.key()
        )));
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (value, len, i) in items {
        if value <= 0.0 || left <= 0.0 {
            break;
        }
        let d = len.min(left);
        if let Some(x) = out[i][index(r)].as_mut() {
            *x += d;
        }
        left -= d;
    }
    Ok(out)
}

/// The linear program of the resources in `part`.
fn solve_part(
    problem: &Problem,
    part: &[Resource],
    ceiling: f64,
    unit: &Allocation,
) -> Result<Filled, SolveError> {
    let mut lp = Lp::new(OptimizationDirection::Maximize);
    // Per node and moving resource: the δ variables whose sum (in capacity fractions) is the
    // allocation above the lower bound. The first curve of a resource defines them; another
    // curve of the same resource (a hand-built problem may have one) is linked to them.
    let mut primary: Vec<[Option<Vec<Variable>>; 4]> = Vec::with_capacity(problem.models.len());
    let mut cap_terms: [Vec<(Variable, f64)>; 4] = Default::default();
    for m in &problem.models {
        let own = add_node(&mut lp, m, part, m.scale / ceiling, unit, &mut cap_terms);
        primary.push(own);
    }
    add_capacity(&mut lp, problem, unit, &cap_terms);
    let outcome = lp.solve().map_err(|e| match e {
        microlp::Error::Infeasible => SolveError::Infeasible(
            "the solver proved that no allocation meets every bound and capacity".into(),
        ),
        other => SolveError::Solver(other.to_string()),
    })?;
    let sol = outcome
        .into_solution()
        .map_err(|_| SolveError::Solver("the solve was interrupted".into()))?;
    Ok(primary
        .iter()
        .map(|own| {
            own.clone()
                .map(|vars| vars.map(|vars| vars.iter().map(|d| sol.var_value(*d)).sum::<f64>()))
        })
        .collect())
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
    part: &[Resource],
    value_coef: f64,
    unit: &Allocation,
    cap_terms: &mut [Vec<(Variable, f64)>; 4],
) -> [Option<Vec<Variable>>; 4] {
    let mut own: [Option<Vec<Variable>>; 4] = Default::default();
    // A group is in the part whose resources it moves (all of them are, see `parts`).
    let in_part = |g: &&super::Group| {
        g.curves
            .iter()
            .any(|c| m.moves(c.resource) && part.contains(&c.resource))
    };
    for g in m.groups.iter().filter(in_part) {
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
            for ((len, slope), side) in c.curve.segments_around(lo, cur, hi) {
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
    for r in part.iter().copied() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::{Curve, Group, ResourceCurve};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn value(p: &Problem, t: &BTreeMap<String, Allocation>) -> f64 {
        p.models.iter().map(|m| m.value(&t[&m.node])).sum()
    }

    /// The reference: every resource in one linear program, no parts and no fill.
    fn whole(p: &Problem) -> Result<BTreeMap<String, Allocation>, SolveError> {
        let unit = p.capacity.map(|_, c| if c > 0.0 { c } else { 1.0 });
        check_feasible(p, &unit)?;
        let filled = solve_part(p, &Resource::ALL, ceiling(p), &unit)?;
        Ok(p.models
            .iter()
            .zip(&filled)
            .map(|(m, f)| {
                let mut a = m.current;
                for r in Resource::ALL {
                    if let Some(x) = f[index(r)] {
                        let v = m.lower.get(r) + unit.get(r) * x;
                        a.set(r, v.clamp(m.lower.get(r), m.upper.get(r)));
                    }
                }
                (m.node.clone(), a)
            })
            .collect())
    }

    /// Nodes of the demo's shapes (Golem's cores and memory together, Storj's disk and
    /// bandwidth apart, bandwidth alone), some resources fixed, some bounds and a reserve.
    fn random_problem(rng: &mut SmallRng) -> Problem {
        let cap = Allocation {
            cpu_cores: 16.0,
            memory_bytes: 32e9,
            disk_bytes: 4e12,
            bandwidth_bytes_per_second: 12.5e6,
        };
        let n = rng.random_range(1..9);
        let mut models = Vec::new();
        for i in 0..n {
            let current = cap.map(|_, c| c * rng.random_range(0.0..1.0) / n as f64);
            let lower = current.map(|_, c| {
                if rng.random_bool(0.3) {
                    c * rng.random_range(0.0..1.0)
                } else {
                    0.0
                }
            });
            let upper = current.map(|r, c| {
                if rng.random_bool(0.15) {
                    c
                } else {
                    c + cap.get(r) * rng.random_range(0.0..0.6)
                }
            });
            let knee = |rng: &mut SmallRng, r: Resource| {
                cap.get(r) / n as f64 * rng.random_range(0.1..3.0)
            };
            let single = |rng: &mut SmallRng, r: Resource| Group {
                weight: rng.random_range(0.0..2.0),
                curves: vec![ResourceCurve {
                    resource: r,
                    curve: Curve::marginal(knee(rng, r), &[]),
                }],
            };
            use Resource::*;
            let groups = match rng.random_range(0..4) {
                0 => {
                    let k = knee(rng, CpuCores);
                    let work = Curve::marginal(1.0, &[]);
                    vec![Group {
                        weight: rng.random_range(0.2..2.0),
                        curves: vec![
                            ResourceCurve {
                                resource: CpuCores,
                                curve: work.stretched(k),
                            },
                            ResourceCurve {
                                resource: MemoryBytes,
                                curve: work.stretched(k * rng.random_range(1e9..4e9)),
                            },
                        ],
                    }]
                }
                1 => vec![single(rng, DiskBytes), single(rng, BandwidthBytesPerSecond)],
                2 => vec![single(rng, BandwidthBytesPerSecond)],
                _ => vec![single(rng, CpuCores), single(rng, BandwidthBytesPerSecond)],
            };
            models.push(NodeModel {
                node: format!("n{i}"),
                protocol: "test".into(),
                current,
                lower,
                upper,
                scale: rng.random_range(0.01..5.0),
                groups,
                confidence: 0.9,
                switching_cost_usd: 0.0,
                notes: Vec::new(),
            });
        }
        // A deep reserve now and then: fixed nodes and lower bounds may not fit.
        let reserve = [1.0, 1.0, 0.8, 0.1][rng.random_range(0..4)];
        let available = cap.map(|_, c| c * reserve);
        Problem {
            models,
            available,
            capacity: cap,
        }
    }

    #[test]
    fn parts_and_fill_earn_what_the_whole_program_earns() {
        let mut rng = SmallRng::seed_from_u64(11);
        let (mut solved, mut infeasible) = (0, 0);
        for case in 0..400 {
            let p = random_problem(&mut rng);
            let (Ok(reference), got) = (whole(&p), solve(&p)) else {
                assert!(
                    solve(&p).is_err(),
                    "case {case}: the whole program is infeasible"
                );
                infeasible += 1;
                continue;
            };
            let got = got.unwrap_or_else(|e| panic!("case {case}: {e}"));
            let (v, r) = (value(&p, &got), value(&p, &reference));
            let scale: f64 = p.models.iter().map(|m| m.scale * 2.0).sum();
            assert!(
                (v - r).abs() <= 1e-6 * scale,
                "case {case}: {v} against {r}"
            );
            for res in Resource::ALL {
                let total: f64 = got.values().map(|a| a.get(res)).sum();
                assert!(
                    total
                        <= p.available
                            .get(res)
                            .max(reference.values().map(|a| a.get(res)).sum())
                            * (1.0 + 1e-9),
                    "case {case}: {} over capacity",
                    res.key()
                );
                for m in &p.models {
                    let x = got[&m.node].get(res);
                    assert!(x >= m.lower.get(res) - 1e-9 && x <= m.upper.get(res) + 1e-9);
                }
            }
            solved += 1;
        }
        assert!(
            solved > 300 && infeasible > 0,
            "{solved} solved, {infeasible} infeasible"
        );
    }
}

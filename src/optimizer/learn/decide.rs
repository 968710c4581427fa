//! The learning planner's decision, pure: the optimizer's problem with every paid curve
//! replaced by the posterior-mean curve its node's [`NodeLearner`] learned, solved by the
//! linear program; then the rule below decides whether to move, to probe, or to hold.
//!
//! # The decision rule
//!
//! A conservative rule with budgeted exploration, after the conservative bandits of Wu et al.
//! (act only while the worst case stays within a budget relative to the baseline) and
//! lower-confidence-bound acting:
//! - **Exploit** when the gain of the solver's target over the allocation in force, minus the
//!   switching cost spread over the hold, is positive at the *pessimistic end* of its band:
//!   the 10 % quantile of the joint posterior of the nodes' gains ([`super::joint`], nodes
//!   independent) in USD/h. The plan's expected gain is the posterior mean (what
//!   `gates.min_improvement` judges, as it judges any planner's expected gain: the quantile
//!   decides whether to move at all; judged by the gate too, it would ask for a gain of 1 % of
//!   the earnings proven at the pessimistic end), its confidence the posterior probability
//!   that the net gain is positive.
//! - Otherwise **venture**: move to the same target when its expected net gain is large (at
//!   least [`VENTURE_MIN_GAIN`] of what the learned nodes earn now), the net gain is positive
//!   with at least `gates.min_confidence`, and what it puts at risk fits the day's exploration
//!   budget: the switching cost plus the pessimistic loss over [`Settings::horizon`] hours (the
//!   hours the values are averaged over, within which the realized-gain check judges the move).
//!   A target worth a fifth more that the band cannot yet prove is an experiment too; waiting
//!   for the 10 % quantile to turn positive on a curve seen at one level only can take days.
//!   The floor keeps small uncertain gains from chaining into a walk away from a good split.
//!   The plan's expected gain is the mean, its confidence P(net gain > 0).
//! - Otherwise **probe**: a move of one paid resource of one node up by at most `max_step`
//!   (a member of a `needs_together` group alone, so the learner sees another mix),
//!   taken from free capacity or from the node whose learned marginal value of it is lowest,
//!   where the node's curve is uncertain (band width above half its mean, or never seen
//!   above its level: a paid resource at its lower bound is never left there without
//!   evidence). The USD at risk is the pessimistic loss over the hold plus the switching
//!   cost; a probe is made only when that fits the day's exploration budget. Its expected
//!   gain is the optimistic end of its band (what it looks for), its confidence the
//!   posterior probability that the loss stays within the budget left.
//! - Otherwise **hold**.
//!
//! A node's paid resources move only once it has [`MIN_OBSERVATIONS`] usable hours and
//! [`SETTLED_HOURS`] of them at the allocation in force (the response to the last change must
//! be seen before the next). Demand learned from usage ([`super::censor`]) caps a curve only
//! where the Kaplan–Meier estimate knows the top (a starved, pinned resource has no cap) and
//! usage seen at two allocations did not follow the allocation.

use std::collections::{BTreeMap, BTreeSet};

use super::{joint, resample, sample_band, Band, NodeLearner};
use crate::optimizer::{Curve, Group, NodeModel, Problem, ResourceCurve};
use crate::resources::{Allocation, Resource};

/// Usable hours before a node's learned curves replace the hold.
pub const MIN_OBSERVATIONS: usize = 12;
/// Usable hours at the allocation in force before the node moves again.
pub const SETTLED_HOURS: usize = 6;
/// The pessimistic end of a band: its 10 % quantile.
pub const ALPHA: f64 = 0.1;
/// Samples of a learned curve below the node's upper bound.
const KNOTS: usize = 24;
/// Usage hours before a demand cap is trusted.
const DEMAND_HOURS: usize = 48;
/// A curve is capped at this multiple of the learned demand cap.
const DEMAND_HEADROOM: f64 = 1.25;
/// A venture's expected net gain, as a fraction of the learned nodes' earnings now.
pub const VENTURE_MIN_GAIN: f64 = 0.1;

/// What the decision needs besides the problem and the learners.
pub struct Settings {
    /// Hours the values are averaged over (daily and weekly cycles).
    pub horizon: usize,
    /// `gates.min_hold` in hours: the switching cost is spread over it.
    pub hold_hours: f64,
    /// USD the exploration budget has left today.
    pub budget_left_usd: f64,
    /// `gates.min_confidence`: the least P(net gain > 0) a venture needs.
    pub min_confidence: f64,
    /// `max_step` per resource in the resource's units (infinite: none).
    pub step: Allocation,
    /// Node and resource pairs not to probe now (probed recently).
    pub skip: BTreeSet<(String, Resource)>,
}

/// A probe: what moves, why, and what it risks.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub node: String,
    pub resource: Resource,
    pub from: f64,
    pub to: f64,
    /// The node it takes from (None: free capacity).
    pub donor: Option<String>,
    pub reason: String,
    pub at_risk_usd: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    Exploit,
    /// A move whose gain is not proven at the pessimistic end; the USD it puts at risk.
    Venture(f64),
    Probe(Probe),
    Hold,
}

/// The decision: the problem on learned curves, the target, the gain band and why.
pub struct Outcome {
    pub problem: Problem,
    pub target: BTreeMap<String, Allocation>,
    pub choice: Choice,
    /// The gain of the target over the allocation in force, USD/h (before switching).
    pub gain: Band,
    /// See the module doc (exploit, venture: P(net gain > 0); probe: P(loss within the budget)).
    pub confidence: f64,
    /// One line per decision step, for the plan's explanation.
    pub notes: Vec<String>,
}

/// Usable hours at the end of the learner's points at `a` (the run since the last change).
pub fn settled_hours(l: &NodeLearner, a: &Allocation) -> usize {
    l.points()
        .iter()
        .rev()
        .take_while(|p| p.allocation == *a)
        .filter(|p| p.excluded.is_none() && p.up >= 0.5)
        .count()
}

fn learned_enough(l: &NodeLearner) -> bool {
    l.observations() >= MIN_OBSERVATIONS
}

/// Hours of the recent history [`earns_nothing`] looks at.
const NOTHING_HOURS: usize = 48;

/// Whether the node earned nothing in every usable hour of its recent history (at least
/// [`MIN_OBSERVATIONS`] of them) while holding some paid resource above its lower bound: what
/// it holds earns it 0 USD/h (a token without a USD price, a node that never earns), so it is
/// free to give away. The learner has no curve for it (the logarithm of 0 earnings is not a
/// point), and without this the node would be held where it is for good. A node at the lower
/// bounds of all its paid resources is not judged: nothing says more would not pay.
/// The usable hours it looked at when it did.
fn earns_nothing(l: &NodeLearner, m: &NodeModel) -> Option<usize> {
    let points = l.points();
    let up: Vec<&super::Point> = points[points.len().saturating_sub(NOTHING_HOURS)..]
        .iter()
        .filter(|p| p.excluded.is_none() && p.up >= 0.5)
        .collect();
    let nothing =
        up.len() >= MIN_OBSERVATIONS
            && up.iter().all(|p| p.tokens <= 0.0)
            && l.spec().groups.iter().flatten().any(|r| {
                m.current.get(*r) > m.lower.get(*r) + 1e-9 * m.lower.get(*r).abs().max(1.0)
            });
    nothing.then_some(up.len())
}

/// The node's value per grid point at `a`, USD/h.
fn values(l: &NodeLearner, index: &[f64], a: &Allocation) -> Vec<f64> {
    l.values(index, a)
}

/// The posterior-mean curve of group `g` of the learner, over the first member's units, the
/// others following the learned mix; the node's other groups held at `base`.
fn group_curve(
    l: &NodeLearner,
    g: usize,
    base: &Allocation,
    top: f64,
    w: &[f64],
    index: &[f64],
) -> Vec<(f64, f64)> {
    let members = &l.spec().groups[g];
    let mix = l.mix(g, w);
    let at = |x: f64| {
        let mut a = *base;
        for (r, m) in members.iter().zip(&mix) {
            a.set(*r, x * m);
        }
        let v = values(l, index, &a);
        v.iter().zip(w).map(|(v, w)| v * w).sum::<f64>()
    };
    let zero = at(0.0);
    let mut xs: Vec<f64> = (0..=KNOTS)
        .map(|i| top * (i as f64 / KNOTS as f64).powi(2))
        .collect();
    xs.push(base.get(members[0]));
    xs.retain(|x| *x >= 0.0 && *x <= top && x.is_finite());
    xs.sort_by(f64::total_cmp);
    xs.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * top.max(1e-12));
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(xs.len());
    let mut slope = f64::INFINITY;
    for x in xs {
        let y = (at(x) - zero).max(0.0);
        match points.last() {
            None => points.push((0.0, 0.0)),
            Some(&(x0, y0)) => {
                // Concave and nondecreasing by construction up to rounding: keep it so.
                let s = ((y - y0) / (x - x0)).clamp(0.0, slope);
                slope = s;
                points.push((x, y0 + s * (x - x0)));
            }
        }
    }
    if points.len() < 2 {
        points.push((top.max(1e-12), 0.0));
    }
    points
}

/// The problem with each learned node's paid groups on its learned curves (scale 1: the
/// learner's values are USD/h); a node not learned enough or not settled keeps its paid
/// resources where they are.
pub fn learned_problem(
    problem: &Problem,
    learners: &BTreeMap<String, &NodeLearner>,
    horizon: usize,
) -> (Problem, Vec<String>) {
    let mut out = problem.clone();
    let mut notes = Vec::new();
    for m in out.models.iter_mut() {
        let Some(l) = learners.get(&m.node) else {
            continue;
        };
        if let Some(hours) = earns_nothing(l, m) {
            for g in &mut m.groups {
                g.weight = 0.0;
            }
            notes.push(format!(
                "{}: earned nothing in its last {hours} usable hours: what it holds is worth 0 USD/h to it",
                m.node
            ));
            continue;
        }
        let unpaid: Vec<Group> = m
            .groups
            .iter()
            .filter(|g| g.weight <= 0.0)
            .cloned()
            .collect();
        let w = l.posterior();
        let index = l.index(horizon);
        let mut groups = unpaid;
        for (g, members) in l.spec().groups.iter().enumerate() {
            let top = members
                .iter()
                .map(|r| l.spec().upper.get(*r))
                .fold(f64::INFINITY, f64::min)
                .max(m.upper.get(members[0]));
            let mut curve = Curve {
                points: group_curve(l, g, &m.current, top, &w, &index),
            };
            if members.len() == 1 {
                let recent = &l.points()[l.points().len().saturating_sub(168)..];
                let d = super::censor::demand(recent, members[0]);
                if let Some(cap) = d.cap.filter(|_| d.hours >= DEMAND_HOURS) {
                    let cap = (cap * DEMAND_HEADROOM).max(m.lower.get(members[0]));
                    curve = curve.capped(cap);
                    notes.push(format!(
                        "{} {}: demand learned from usage ({} h, {} pinned) caps the curve at {}",
                        m.node,
                        members[0].key(),
                        d.hours,
                        d.pinned,
                        crate::optimizer::fmt_amount(members[0], cap)
                    ));
                } else if let Some(e) = d.elasticity.filter(|e| *e >= super::censor::MAX_ELASTICITY)
                {
                    notes.push(format!(
                        "{} {}: usage follows the allocation (elasticity {e:.2}): it caps nothing",
                        m.node,
                        members[0].key(),
                    ));
                }
            }
            let mix = l.mix(g, &w);
            groups.push(Group {
                weight: 1.0,
                curves: members
                    .iter()
                    .zip(&mix)
                    .map(|(r, k)| ResourceCurve {
                        resource: *r,
                        curve: curve.stretched(*k),
                    })
                    .collect(),
            });
        }
        m.groups = groups;
        m.scale = 1.0;
        let settled = settled_hours(l, &m.current);
        if !learned_enough(l) || settled < SETTLED_HOURS {
            for r in l.spec().groups.iter().flatten() {
                m.lower.set(*r, m.current.get(*r));
                m.upper.set(*r, m.current.get(*r));
            }
            notes.push(format!(
                "{}: paid resources held ({} h learned, {} h at this allocation; {} and {} needed)",
                m.node,
                l.observations(),
                settled,
                MIN_OBSERVATIONS,
                SETTLED_HOURS
            ));
        }
    }
    (out, notes)
}

/// The joint gain of moving the nodes in `to` from their allocation in force, per sample.
fn joint_gain(
    problem: &Problem,
    learners: &BTreeMap<String, &NodeLearner>,
    to: &BTreeMap<String, Allocation>,
    horizon: usize,
) -> Vec<f64> {
    let mut parts = Vec::new();
    for (m, t) in moved(problem, to) {
        let Some(l) = learners.get(&m.node) else {
            continue;
        };
        let index = l.index(horizon);
        let here = values(l, &index, &m.current);
        let there = values(l, &index, t);
        let d: Vec<f64> = there.iter().zip(&here).map(|(a, b)| a - b).collect();
        parts.push(resample(&d, &l.posterior()));
    }
    if parts.is_empty() {
        return vec![0.0; super::JOINT_SAMPLES];
    }
    joint(&parts)
}

/// What the learned nodes earn at their allocation in force by their posterior-mean curves,
/// USD/h (a node that earns nothing counts 0).
fn learned_rate(
    problem: &Problem,
    learners: &BTreeMap<String, &NodeLearner>,
    horizon: usize,
) -> f64 {
    problem
        .models
        .iter()
        .filter_map(|m| {
            let l = learners.get(&m.node)?;
            if earns_nothing(l, m).is_some() || !learned_enough(l) {
                return None;
            }
            let v = values(l, &l.index(horizon), &m.current);
            Some(
                v.iter()
                    .zip(&l.posterior())
                    .map(|(v, w)| v * w)
                    .sum::<f64>(),
            )
        })
        .sum()
}

/// The nodes of `problem` that `to` moves from their allocation in force, with their targets.
pub fn moved<'a>(
    problem: &'a Problem,
    to: &'a BTreeMap<String, Allocation>,
) -> impl Iterator<Item = (&'a NodeModel, &'a Allocation)> {
    problem
        .models
        .iter()
        .filter_map(|m| to.get(&m.node).filter(|t| **t != m.current).map(|t| (m, t)))
}

/// The switching cost of the nodes `to` moves, USD.
fn switching_usd(problem: &Problem, to: &BTreeMap<String, Allocation>) -> f64 {
    moved(problem, to).map(|(m, _)| m.switching_cost_usd).sum()
}

fn switching_per_hour(problem: &Problem, to: &BTreeMap<String, Allocation>, hold: f64) -> f64 {
    switching_usd(problem, to) / hold.max(1e-9)
}

/// Decides on `problem` (the optimizer's, bounds and `max_step` applied) with the learners.
pub fn decide(
    problem: &Problem,
    learners: &BTreeMap<String, &NodeLearner>,
    target: impl Fn(&Problem) -> Option<BTreeMap<String, Allocation>>,
    s: &Settings,
) -> Outcome {
    let (learned, mut notes) = learned_problem(problem, learners, s.horizon);
    let current: BTreeMap<String, Allocation> = learned
        .models
        .iter()
        .map(|m| (m.node.clone(), m.current))
        .collect();
    if let Some(t) = target(&learned).filter(|t| *t != current) {
        let samples = joint_gain(&learned, learners, &t, s.horizon);
        let gain = sample_band(&samples, ALPHA);
        let cost = switching_per_hour(&learned, &t, s.hold_hours);
        let p = samples.iter().filter(|g| **g - cost > 0.0).count() as f64 / samples.len() as f64;
        notes.push(format!(
            "learned curves: the solver's target gains {:+.4} USD/h (10 %: {:+.4}, 90 %: {:+.4}) against {:.4} USD/h of switching over the hold",
            gain.mean, gain.lo, gain.hi, cost
        ));
        if gain.lo - cost > 0.0 {
            return Outcome {
                problem: learned,
                target: t,
                choice: Choice::Exploit,
                gain,
                confidence: p,
                notes,
            };
        }
        notes.push("not at the pessimistic end: no move for gain".into());
        let rate = learned_rate(&learned, learners, s.horizon);
        let at_risk = switching_usd(&learned, &t) + (-gain.lo).max(0.0) * s.horizon as f64;
        if rate > 0.0
            && gain.mean - cost >= VENTURE_MIN_GAIN * rate
            && p >= s.min_confidence
            && at_risk <= s.budget_left_usd
        {
            notes.push(format!(
                "venture: expected net gain {:+.4} USD/h is at least {:.0} % of the {:.4} USD/h the learned nodes earn, P(net gain > 0) = {:.2}, {:.4} USD at risk of {:.4} left today",
                gain.mean - cost,
                VENTURE_MIN_GAIN * 100.0,
                rate,
                p,
                at_risk,
                s.budget_left_usd
            ));
            return Outcome {
                problem: learned,
                target: t,
                choice: Choice::Venture(at_risk),
                gain,
                confidence: p,
                notes,
            };
        }
    }
    match probe(&learned, learners, s) {
        Some((p, t, gain, confidence)) => {
            notes.push(format!("probe: {}", p.reason));
            Outcome {
                problem: learned,
                target: t,
                choice: Choice::Probe(p),
                gain,
                confidence,
                notes,
            }
        }
        None => Outcome {
            problem: learned,
            target: current,
            choice: Choice::Hold,
            gain: Band::default(),
            confidence: 1.0,
            notes,
        },
    }
}

/// Why `r` of `m` is worth a probe, if it is.
/// `learned` is the node's [`NodeLearner::learned`] at its allocation in force.
fn uncertain(
    l: &NodeLearner,
    m: &NodeModel,
    learned: &[super::Learned],
    r: Resource,
    lower_bound: f64,
) -> Option<String> {
    let b = learned.iter().find(|x| x.resource == r)?.marginal;
    let at_lower = m.current.get(r) <= lower_bound + 1e-9 * lower_bound.abs().max(1.0);
    let levels = l.levels(r);
    if at_lower && levels < 2 {
        return Some(format!(
            "{} {} is at its lower bound and was never seen above it",
            m.node,
            r.key()
        ));
    }
    if b.hi - b.lo > 0.5 * b.mean.abs() && b.hi > 0.0 {
        return Some(format!(
            "{} {}: marginal value {:.3e} USD/h per unit, band {:.3e} to {:.3e} ({} levels seen)",
            m.node,
            r.key(),
            b.mean,
            b.lo,
            b.hi,
            levels
        ));
    }
    None
}

type ProbeResult = (Probe, BTreeMap<String, Allocation>, Band, f64);

/// The probe with the largest optimistic gain whose risk fits the budget.
fn probe(
    problem: &Problem,
    learners: &BTreeMap<String, &NodeLearner>,
    s: &Settings,
) -> Option<ProbeResult> {
    if s.budget_left_usd <= 0.0 {
        return None;
    }
    let mut best: Option<ProbeResult> = None;
    let holding: BTreeMap<Resource, f64> = Resource::ALL
        .into_iter()
        .map(|r| (r, problem.models.iter().map(|m| m.current.get(r)).sum()))
        .collect();
    for m in &problem.models {
        let Some(l) = learners.get(&m.node) else {
            continue;
        };
        if settled_hours(l, &m.current) < SETTLED_HOURS || earns_nothing(l, m).is_some() {
            continue;
        }
        // At most once per node: every paid resource of it reads the same curves.
        let learned = std::cell::OnceCell::new();
        let learned = || {
            learned.get_or_init(|| {
                l.learned(
                    &m.current,
                    s.horizon,
                    &s.step.map(|_, v| if v.is_finite() { v } else { 1.0 }),
                )
            })
        };
        // A member of a `needs_together` group is probed alone: the group's points all lie on
        // the mix the node was given, which cannot tell which member limits it.
        for r in l.spec().groups.iter().flatten().copied() {
            if s.skip.contains(&(m.node.clone(), r)) {
                continue;
            }
            let (cur, up) = (m.current.get(r), m.upper.get(r));
            let want = (up - cur).min(s.step.get(r));
            if want <= 0.0 || !want.is_finite() {
                continue;
            }
            let Some(reason) = uncertain(l, m, learned(), r, m.lower.get(r).min(cur)) else {
                continue;
            };
            let free = (problem.available.get(r) - holding[&r]).max(0.0);
            let mut t: BTreeMap<String, Allocation> = BTreeMap::new();
            let (amount, donor) = if free >= want {
                (want, None)
            } else {
                // The donor whose learned (or zero, unpaid) marginal value of r is lowest.
                let d = problem
                    .models
                    .iter()
                    .filter(|d| d.node != m.node && d.current.get(r) - d.lower.get(r) > 0.0)
                    .map(|d| (d, marginal_mean(learners.get(&d.node).copied(), d, r, s)))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                let Some(d) = d else {
                    continue;
                };
                let give = (d.0.current.get(r) - d.0.lower.get(r)).min(want - free);
                let mut da = d.0.current;
                da.set(r, d.0.current.get(r) - give);
                t.insert(d.0.node.clone(), da);
                (free + give, Some(d.0.node.clone()))
            };
            let mut a = m.current;
            a.set(r, cur + amount);
            t.insert(m.node.clone(), a);
            let samples = joint_gain(problem, learners, &t, s.horizon);
            let gain = sample_band(&samples, ALPHA);
            let cost = switching_usd(problem, &t);
            let at_risk = (-gain.lo).max(0.0) * s.hold_hours + cost;
            if at_risk > s.budget_left_usd || gain.hi <= 0.0 {
                continue;
            }
            let within = samples
                .iter()
                .filter(|g| (-**g).max(0.0) * s.hold_hours + cost <= s.budget_left_usd)
                .count() as f64
                / samples.len() as f64;
            if best.as_ref().is_some_and(|b| b.2.hi >= gain.hi) {
                continue;
            }
            let mut full = t.clone();
            for x in &problem.models {
                full.entry(x.node.clone()).or_insert(x.current);
            }
            best = Some((
                Probe {
                    node: m.node.clone(),
                    resource: r,
                    from: cur,
                    to: cur + amount,
                    donor,
                    reason: format!(
                        "{reason}; up by {} puts {:.4} USD at risk of {:.4} left today, may gain {:+.4} USD/h",
                        crate::optimizer::fmt_amount(r, amount),
                        at_risk,
                        s.budget_left_usd,
                        gain.hi
                    ),
                    at_risk_usd: at_risk,
                },
                full,
                gain,
                within,
            ));
        }
    }
    best
}

/// The posterior-mean marginal value of `r` at `d`'s allocation (0 when `d` is not paid for it).
fn marginal_mean(l: Option<&NodeLearner>, d: &NodeModel, r: Resource, s: &Settings) -> f64 {
    let Some(l) = l.filter(|l| earns_nothing(l, d).is_none()) else {
        return 0.0;
    };
    let step = s.step.map(|_, v| if v.is_finite() { v } else { 1.0 });
    l.learned(&d.current, s.horizon, &step)
        .iter()
        .find(|x| x.resource == r)
        .map(|x| x.marginal.mean)
        .unwrap_or(0.0)
}

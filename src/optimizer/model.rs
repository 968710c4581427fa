//! The earnings model of one node (the module doc of `optimizer` has its equations): response
//! curves, their fit from the estimates, the model's value at an allocation, and the plan built
//! from a solution. Both solvers work on exactly this model, so their results compare.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    fmt_amount, Inputs, LeftOut, Move, NodeInputs, NodeModel, NodeRule, OptimizationRules, Plan,
    Problem, ResponseModel,
};
use crate::resources::{Allocation, Resource, Resources};

/// A concave, nondecreasing piecewise-linear curve through `points` (x ascending, the first at
/// x = 0), flat after the last point. Its value is the minimum of its segments' lines, which
/// is what the linear program sees.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
}

/// Resources that earn together: `weight · min_r curve_r(a_r)`.
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

/// Where `1 − exp(−x/k)` is sampled, in knees.
const MARGINAL_KNOTS: [f64; 10] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// Saturation is clamped into this range before the knee is fitted: 0 or 1 would put the knee
/// at infinity or zero.
const SATURATION_RANGE: (f64, f64) = (0.05, 0.95);

/// Saturation assumed when a node has no usage estimator.
const DEFAULT_SATURATION: f64 = 0.5;

impl Curve {
    /// Checks that `points` make a curve the model can use: finite, x strictly ascending from
    /// 0, y from 0, nondecreasing, and concave (each segment's slope at most the one before).
    pub fn new(points: Vec<(f64, f64)>) -> Result<Curve, String> {
        if points.len() < 2 {
            return Err("a curve needs at least two points".into());
        }
        if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return Err("every point must be finite".into());
        }
        if points[0] != (0.0, 0.0) {
            return Err(format!(
                "the first point must be [0, 0] (nothing allocated earns nothing), got [{}, {}]",
                points[0].0, points[0].1
            ));
        }
        let mut last_slope = f64::INFINITY;
        for (i, w) in points.windows(2).enumerate() {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x1 <= x0 {
                return Err(format!(
                    "x must increase: point {} ({x1}) is not after point {i} ({x0})",
                    i + 1
                ));
            }
            if y1 < y0 {
                return Err(format!(
                    "y must not decrease: point {} ({y1}) is below point {i} ({y0})",
                    i + 1
                ));
            }
            let slope = (y1 - y0) / (x1 - x0);
            // A little slack for decimals written by hand (0.1 + 0.2 …).
            if slope > last_slope * (1.0 + 1e-9) + 1e-12 {
                return Err(format!(
                    "the curve must be concave (diminishing returns): the slope rises from {} to {} at point {i}",
                    fmt_num(last_slope),
                    fmt_num(slope)
                ));
            }
            last_slope = slope;
        }
        Ok(Curve { points })
    }

    /// `1 − exp(−x/knee)` sampled at [`MARGINAL_KNOTS`] knees, plus at `extra` x values that
    /// fall inside (the node's bounds and current allocation, so the model is exact there).
    pub fn marginal(knee: f64, extra: &[f64]) -> Curve {
        let knee = knee.max(f64::MIN_POSITIVE);
        let mut xs: Vec<f64> = MARGINAL_KNOTS.iter().map(|t| t * knee).collect();
        let last = knee * MARGINAL_KNOTS[MARGINAL_KNOTS.len() - 1];
        xs.extend(extra.iter().copied().filter(|x| *x > 0.0 && *x < last));
        xs.sort_by(f64::total_cmp);
        xs.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * last);
        Curve {
            points: xs
                .into_iter()
                .map(|x| (x, 1.0 - (-x / knee).exp()))
                .collect(),
        }
    }

    /// The lines `(alpha, beta)` (y = alpha + beta·x) of the segments that meet `[lo, hi]`, and
    /// the flat line after the last point when `hi` reaches past it. On `[lo, hi]` the curve is
    /// the minimum of these lines: every line of a concave curve lies on or above it.
    pub fn lines_within(&self, lo: f64, hi: f64) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for w in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x1 < lo || x0 > hi {
                continue;
            }
            let beta = (y1 - y0) / (x1 - x0);
            out.push((y0 - beta * x0, beta));
        }
        let (xl, yl) = self.points[self.points.len() - 1];
        if hi >= xl || out.is_empty() {
            out.push((yl, 0.0));
        }
        out
    }

    /// The segments of `[lo, hi]` split at `cur`, each with the side of `cur` it lies on:
    /// +1 below (filling up to `cur`), −1 above (moving away from it).
    pub fn segments_around(
        &self,
        lo: f64,
        cur: f64,
        hi: f64,
    ) -> impl Iterator<Item = ((f64, f64), f64)> {
        let below = self.segments_within(lo, cur).into_iter().map(|s| (s, 1.0));
        let above = self.segments_within(cur, hi).into_iter().map(|s| (s, -1.0));
        below.chain(above)
    }

    /// The pieces of the curve between `lo` and `hi` as `(length, slope)`, in order, with the
    /// flat part after the last point when `hi` reaches past it: `value(lo) + Σ slope·δ` with
    /// each `δ ∈ [0, length]` filled in order is the curve on `[lo, hi]`. Concavity (falling
    /// slopes) is what makes a maximiser fill them in order.
    pub fn segments_within(&self, lo: f64, hi: f64) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for w in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            let (a, b) = (x0.max(lo), x1.min(hi));
            if b > a {
                out.push((b - a, (y1 - y0) / (x1 - x0)));
            }
        }
        let xl = self.points[self.points.len() - 1].0;
        let start = xl.max(lo);
        if hi > start {
            out.push((hi - start, 0.0));
        }
        out
    }

    /// The curve's value at `x`: linear between points, flat after the last, the first
    /// segment's line before 0.
    pub fn value(&self, x: f64) -> f64 {
        let p = &self.points;
        let n = p.len();
        if x >= p[n - 1].0 {
            return p[n - 1].1;
        }
        let i = p.partition_point(|(px, _)| *px <= x).clamp(1, n - 1);
        let ((x0, y0), (x1, y1)) = (p[i - 1], p[i]);
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }

    /// The same curve over `x · factor` (a curve in work units → one resource's units).
    pub fn stretched(&self, factor: f64) -> Curve {
        Curve {
            points: self.points.iter().map(|(x, y)| (x * factor, *y)).collect(),
        }
    }

    /// The curve flattened from `cap` on: more than `cap` earns what `cap` earns.
    pub fn capped(&self, cap: f64) -> Curve {
        let cap = cap.max(0.0);
        let mut points: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|(x, _)| *x < cap)
            .collect();
        if points.is_empty() {
            points.push((0.0, 0.0));
        }
        points.push((
            cap.max(points[points.len() - 1].0 + f64::EPSILON),
            self.value(cap),
        ));
        Curve { points }
    }

    /// The highest value the curve reaches.
    pub fn ceiling(&self) -> f64 {
        self.points.last().map(|p| p.1).unwrap_or(0.0)
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else {
        format!("{v:.4}")
    }
}

impl Group {
    /// `min_r curve_r(a_r)`, not weighted.
    pub fn value(&self, a: &Allocation) -> f64 {
        self.curves
            .iter()
            .map(|c| c.curve.value(a.get(c.resource)))
            .fold(f64::INFINITY, f64::min)
    }
}

impl NodeModel {
    /// The model's earnings at `a`, USD per hour.
    pub fn value(&self, a: &Allocation) -> f64 {
        self.scale
            * self
                .groups
                .iter()
                .map(|g| g.weight * g.value(a))
                .sum::<f64>()
    }

    /// Whether the model moves `r` at all.
    pub fn moves(&self, r: Resource) -> bool {
        self.upper.get(r) > self.lower.get(r)
    }
}

/// The elasticity of `1 − exp(−z)` at `z`: `z / (exp(z) − 1)`, decreasing from 1 at 0 to 0.
fn elasticity(z: f64) -> f64 {
    if z < 1e-9 {
        1.0
    } else {
        z / z.exp_m1()
    }
}

/// The `z = x⁰/knee` at which the elasticity equals `s` (bisection; `elasticity` is monotone).
pub fn knee_ratio_for_saturation(s: f64) -> f64 {
    let s = s.clamp(SATURATION_RANGE.0, SATURATION_RANGE.1);
    let (mut lo, mut hi) = (1e-9_f64, 60.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if elasticity(mid) > s {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Fits each planned node's model; nodes whose model cannot be fitted are returned as left out.
pub fn build_problem(rules: &OptimizationRules, inputs: &Inputs) -> (Problem, Vec<LeftOut>) {
    build(rules, inputs, Fit::Strict)
}

/// How [`fit`] treats a paid curve it cannot fit from the node's present.
#[derive(Clone, Copy, PartialEq)]
pub enum Fit {
    /// The model planner's: an `auto` knee of a resource the node holds none of, or a model
    /// that earns nothing now, leaves the node out (nothing to scale from).
    Strict,
    /// The learning planner's, which replaces every paid curve and the scale with what it
    /// learned: such a node stays in, with a placeholder knee at the top of its range and a
    /// scale of 0, so a starved node can be given its resource back.
    Placeholder,
}

/// [`build_problem`] with the fitting mode given.
pub fn build(rules: &OptimizationRules, inputs: &Inputs, mode: Fit) -> (Problem, Vec<LeftOut>) {
    let capacity = rules.capacity(&inputs.host_capacity);
    let mut available = rules.available(&inputs.host_capacity);
    let mut models = Vec::new();
    let mut left_out = Vec::new();
    for n in &inputs.nodes {
        match fit(rules, n, &capacity, mode) {
            Ok(m) => models.push(m),
            Err(reason) => left_out.push(LeftOut {
                node: n.node.clone(),
                allocation: n.current,
                reason,
            }),
        }
    }
    for l in inputs.left_out.iter().chain(left_out.iter()) {
        available = available.map(|r, v| v - l.allocation.get(r));
    }
    (
        Problem {
            models,
            available,
            capacity,
        },
        left_out,
    )
}

/// One node's model from its estimates and rules.
fn fit(
    rules: &OptimizationRules,
    n: &NodeInputs,
    capacity: &Allocation,
    mode: Fit,
) -> Result<NodeModel, String> {
    let rule = rules
        .for_node(&n.node, &n.protocol)
        .ok_or_else(|| "no rules for this node or its protocol".to_string())?;
    let a0 = n.current;
    let mut notes = Vec::new();

    // Per resource: the range the plan may use (bounds ∩ current ± max_step).
    let range = |r: Resource| plan_range(rules, &rule, capacity, &a0, r);

    let grouped = groups_of(&rule, &mut notes)?;

    let mut groups = Vec::new();
    let mut lower = a0;
    let mut upper = a0;
    for (resources, ratio) in grouped {
        let first = resources[0];
        let response = rule.response.get(&first);
        let ratio = group_ratio(&resources, ratio, &a0)?;
        // Work units: x = min_r a_r / ρ_r.
        let x0 = resources
            .iter()
            .zip(&ratio)
            .map(|(r, rho)| a0.get(*r) / rho)
            .fold(f64::INFINITY, f64::min);
        let mut x_lo = f64::INFINITY;
        let mut x_hi = f64::INFINITY;
        for (r, rho) in resources.iter().zip(&ratio) {
            let (lo, hi) = range(*r);
            lower.set(*r, lo);
            upper.set(*r, hi);
            x_lo = x_lo.min(lo / rho);
            x_hi = x_hi.min(hi / rho);
        }
        let model = response
            .map(|r| r.model.clone())
            .unwrap_or(ResponseModel::Marginal { knee: None });
        let work_curve = work_curve(
            model,
            &resources,
            &ratio,
            [x0, x_lo, x_hi],
            n,
            mode,
            &mut notes,
        )?;
        let mut curves = Vec::new();
        for (r, rho) in resources.iter().zip(&ratio) {
            let mut c = work_curve.stretched(*rho);
            if let Some(cap) = n.demand_cap.get(*r) {
                c = c.capped(cap);
                notes.push(format!(
                    "{}: demand caps what earns at {}",
                    r.key(),
                    fmt_amount(*r, cap)
                ));
            }
            curves.push(ResourceCurve {
                resource: *r,
                curve: c,
            });
        }
        groups.push(Group {
            weight: response.map(|r| r.weight).unwrap_or(1.0),
            curves,
        });
    }

    let at_current: f64 = groups.iter().map(|g| g.weight * g.value(&a0)).sum();
    let v = n.value_per_hour.max(0.0) * n.demand.max(0.0);
    let scale = if at_current > 0.0 {
        v / at_current
    } else {
        0.0
    };
    if mode == Fit::Strict && (at_current.is_nan() || at_current <= 0.0) {
        return Err(
            "the model earns nothing at the current allocation, so its scale cannot be fitted"
                .into(),
        );
    }
    let switching_cost_usd = rule
        .switching_cost
        .map(|c| c.usd(n.value_per_hour))
        .unwrap_or(0.0);
    Ok(NodeModel {
        node: n.node.clone(),
        protocol: n.protocol.clone(),
        current: a0,
        lower,
        upper,
        scale,
        groups,
        confidence: n.confidence,
        switching_cost_usd,
        notes,
    })
}

/// The range the plan may use for `r`: its bounds ∩ current ± max_step; outside its bounds, one
/// step towards them.
fn plan_range(
    rules: &OptimizationRules,
    rule: &NodeRule,
    capacity: &Allocation,
    a0: &Allocation,
    r: Resource,
) -> (f64, f64) {
    let (bmin, bmax) = rule
        .bounds
        .get(&r)
        .copied()
        .unwrap_or((0.0, capacity.get(r)));
    let cur = a0.get(r);
    let step = rules
        .gates
        .max_step
        .get(r)
        .map(|s| s.limit(capacity.get(r)))
        .unwrap_or(f64::INFINITY);
    let lo = bmin.max(cur - step).max(0.0);
    let hi = bmax.min(cur + step);
    if lo <= hi {
        (lo, hi)
    } else if cur < bmin {
        // Outside its bounds: move towards them by at most one step.
        let v = (cur + step).min(bmin);
        (v, v)
    } else {
        let v = (cur - step).max(bmax).max(0.0);
        (v, v)
    }
}

/// A node's groups: the resources of each, and the ratio its rules give, if any.
type Grouped = Vec<(Vec<Resource>, Option<Vec<f64>>)>;

/// The node's groups: each needs_together entry, then each remaining resource with a response.
fn groups_of(rule: &NodeRule, notes: &mut Vec<String>) -> Result<Grouped, String> {
    let mut grouped: Grouped = Vec::new();
    for t in rule.needs_together.iter().flatten() {
        // The loader refuses this within one block; a node's response laid over its
        // protocol's group (or the reverse) can still bring it together: say so.
        for r in t.resources.iter().skip(1) {
            if rule.response.contains_key(r) {
                notes.push(format!(
                    "{}'s own response is not used: it is in needs_together after {}, whose response the group follows",
                    r.key(),
                    t.resources[0].key()
                ));
            }
        }
        grouped.push((t.resources.clone(), t.ratio.clone()));
    }
    for r in rule.response.keys() {
        if !grouped.iter().any(|(rs, _)| rs.contains(r)) {
            grouped.push((vec![*r], None));
        }
    }
    if grouped.is_empty() {
        return Err(
            "no response model: the rules say nothing about what more resources earn".into(),
        );
    }

    Ok(grouped)
}

/// A group's mix per work unit: the rules' ratio, or the current allocation's.
fn group_ratio(
    resources: &[Resource],
    ratio: Option<Vec<f64>>,
    a0: &Allocation,
) -> Result<Vec<f64>, String> {
    let first = resources[0];
    let ratio: Vec<f64> = match ratio {
        Some(r) => r,
        None => {
            let base = a0.get(first);
            if resources.len() > 1 && base <= 0.0 {
                return Err(format!(
                    "holds no {} now, so the mix of {} cannot be taken from the current allocation: give needs_together a ratio",
                    first.key(),
                    keys(resources)
                ));
            }
            resources
                .iter()
                .map(|r| if base > 0.0 { a0.get(*r) / base } else { 1.0 })
                .collect()
        }
    };
    if ratio.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(format!(
            "the mix of {} has a resource the node holds none of: give needs_together a ratio",
            keys(resources)
        ));
    }
    Ok(ratio)
}

/// The earnings curve of one work unit of a group: the rules' curve or knee, or a knee fitted
/// from the binding resource's saturation. `x` is the work units now, at the lower and at the
/// upper end of the range.
fn work_curve(
    model: ResponseModel,
    resources: &[Resource],
    ratio: &[f64],
    x: [f64; 3],
    n: &NodeInputs,
    mode: Fit,
    notes: &mut Vec<String>,
) -> Result<Curve, String> {
    let first = resources[0];
    let a0 = n.current;
    let [x0, x_lo, x_hi] = x;
    Ok(match model {
        ResponseModel::Curve { points } => {
            let c = Curve { points };
            c.stretched(1.0 / ratio[0])
        }
        ResponseModel::Marginal { knee: Some(k) } => {
            let knee = k / ratio[0];
            notes.push(format!(
                "{}: knee at {} (from the rules)",
                keys(resources),
                fmt_amount(first, knee * ratio[0])
            ));
            Curve::marginal(knee, &[x0, x_lo, x_hi])
        }
        ResponseModel::Marginal { knee: None } => {
            if x0 <= 0.0 && mode == Fit::Placeholder {
                let top = if x_hi.is_finite() && x_hi > 0.0 {
                    x_hi
                } else {
                    1.0
                };
                let knee = top / knee_ratio_for_saturation(DEFAULT_SATURATION);
                notes.push(format!(
                    "{}: holds none now: placeholder knee at {}",
                    keys(resources),
                    fmt_amount(first, knee * ratio[0])
                ));
                return Ok(Curve::marginal(knee, &[x0, x_lo, x_hi]));
            }
            if x0 <= 0.0 {
                return Err(format!(
                    "holds no {} now, so the knee of its curve cannot be fitted: give response.{}.knee",
                    keys(resources),
                    first.key()
                ));
            }
            // The binding resource's saturation: it is the one that limits the work.
            let binding = resources
                .iter()
                .zip(ratio)
                .min_by(|a, b| (a0.get(*a.0) / a.1).total_cmp(&(a0.get(*b.0) / b.1)))
                .map(|(r, _)| *r)
                .unwrap_or(first);
            let (s, how) = match n.usage.get(binding) {
                Some(u) if a0.get(binding) > 0.0 && u.is_finite() => (
                    u / a0.get(binding),
                    format!("saturation {:.2}", u / a0.get(binding)),
                ),
                _ => (
                    DEFAULT_SATURATION,
                    format!(
                        "no usage of {}: saturation assumed {DEFAULT_SATURATION}",
                        binding.key()
                    ),
                ),
            };
            let knee = x0 / knee_ratio_for_saturation(s);
            notes.push(format!(
                "{}: knee at {} (fitted, {how})",
                keys(resources),
                fmt_amount(first, knee * ratio[0])
            ));
            Curve::marginal(knee, &[x0, x_lo, x_hi])
        }
    })
}

fn keys(rs: &[Resource]) -> String {
    rs.iter().map(|r| r.key()).collect::<Vec<_>>().join("+")
}

/// Below this fraction of capacity a difference is rounding, not a move.
const MOVE_TOLERANCE: f64 = 1e-6;

/// The plan for `target` on `problem`: moves (releases first), values, costs, explanation.
pub fn make_plan(
    rules: &OptimizationRules,
    ts_ms: i64,
    problem: &Problem,
    target: &BTreeMap<String, Allocation>,
    left_out: Vec<LeftOut>,
) -> Plan {
    let hold_hours = rules.gates.min_hold.as_secs_f64() / 3600.0;
    let mut current_map = BTreeMap::new();
    let mut target_map = BTreeMap::new();
    let mut releases = Vec::new();
    let mut grants = Vec::new();
    let mut current_usd = 0.0;
    let mut target_usd = 0.0;
    let mut switching = 0.0;
    let mut changed_conf = f64::INFINITY;
    let mut all_conf = f64::INFINITY;
    let mut explanation = Vec::new();
    for m in &problem.models {
        let want = target.get(&m.node).copied().unwrap_or(m.current);
        // Snap rounding noise back to the current value, and stay inside the range.
        let to = snapped(m, &want, &problem.capacity);
        let now = m.value(&m.current);
        let then = m.value(&to);
        current_usd += now;
        target_usd += then;
        all_conf = all_conf.min(m.confidence);
        let moved = Resource::ALL
            .into_iter()
            .any(|r| to.get(r) != m.current.get(r));
        if moved {
            switching += m.switching_cost_usd;
            changed_conf = changed_conf.min(m.confidence);
            node_moves(
                m,
                &to,
                then - now,
                &problem.capacity,
                &mut releases,
                &mut grants,
            );
        }
        explanation.push(format!(
            "{}: earns {:.4} USD/h now by the model, {:.4} USD/h at the target; confidence {:.2}{}",
            m.node,
            now,
            then,
            m.confidence,
            if m.notes.is_empty() {
                String::new()
            } else {
                format!("; {}", m.notes.join("; "))
            }
        ));
        current_map.insert(m.node.clone(), m.current);
        target_map.insert(m.node.clone(), to);
    }
    for l in &left_out {
        current_map.insert(l.node.clone(), l.allocation);
        target_map.insert(l.node.clone(), l.allocation);
    }
    let mut moves = releases;
    moves.append(&mut grants);
    let gain = target_usd - current_usd;
    let confidence = if moves.is_empty() {
        all_conf
    } else {
        changed_conf
    };
    let confidence = if confidence.is_finite() {
        confidence
    } else {
        0.0
    };
    let improvement = if current_usd > 0.0 {
        gain / current_usd
    } else if gain > 0.0 {
        1.0
    } else {
        0.0
    };
    let roi = (switching > 0.0).then(|| (gain * hold_hours - switching) / switching);
    Plan {
        ts_ms,
        current: current_map,
        target: target_map,
        moves,
        current_usd_per_hour: current_usd,
        target_usd_per_hour: target_usd,
        expected_gain_usd_per_hour: gain,
        improvement,
        confidence,
        switching_cost_usd: switching,
        hold_hours,
        roi,
        left_out,
        explanation,
    }
}

/// `want` for one node, with rounding noise snapped back to the current value and kept inside
/// the node's range.
fn snapped(m: &NodeModel, want: &Allocation, capacity: &Allocation) -> Allocation {
    Resources::<f64>::default().map(|r, _| {
        let (cur, t) = (m.current.get(r), want.get(r));
        let tol = MOVE_TOLERANCE * capacity.get(r).max(1.0);
        if (t - cur).abs() <= tol || !t.is_finite() {
            cur
        } else {
            t.clamp(m.lower.get(r), m.upper.get(r))
        }
    })
}

/// One node's moves to `to`, its expected `gain` shared by how much of the capacity each
/// resource moves; releases and grants apart, so releases can go first.
fn node_moves(
    m: &NodeModel,
    to: &Allocation,
    gain: f64,
    capacity: &Allocation,
    releases: &mut Vec<Move>,
    grants: &mut Vec<Move>,
) {
    let changed: Vec<Resource> = Resource::ALL
        .into_iter()
        .filter(|r| to.get(*r) != m.current.get(*r))
        .collect();
    let frac =
        |r: Resource| (to.get(r) - m.current.get(r)).abs() / capacity.get(r).max(f64::MIN_POSITIVE);
    let total: f64 = changed.iter().map(|r| frac(*r)).sum();
    for r in changed {
        let mv = Move {
            node: m.node.clone(),
            resource: r,
            from: m.current.get(r),
            to: to.get(r),
            expected_gain_usd_per_hour: if total > 0.0 {
                gain * frac(r) / total
            } else {
                0.0
            },
            confidence: m.confidence,
        };
        if mv.is_release() {
            releases.push(mv);
        } else {
            grants.push(mv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_checks_concavity_and_start() {
        assert!(Curve::new(vec![(0.0, 0.0), (1.0, 0.5), (2.0, 0.8)]).is_ok());
        let e = Curve::new(vec![(0.0, 0.0), (1.0, 0.2), (2.0, 0.8)]).unwrap_err();
        assert!(e.contains("concave"), "{e}");
        let e = Curve::new(vec![(1.0, 0.0), (2.0, 0.8)]).unwrap_err();
        assert!(e.contains("first point"), "{e}");
        let e = Curve::new(vec![(0.0, 0.0), (2.0, 0.5), (1.0, 0.8)]).unwrap_err();
        assert!(e.contains("x must increase"), "{e}");
    }

    #[test]
    fn curve_value_is_min_of_its_lines() {
        let c = Curve::marginal(2.0, &[3.3]);
        for i in 0..200 {
            let x = i as f64 * 0.1;
            let by_lines = c
                .lines_within(0.0, 100.0)
                .iter()
                .map(|(a, b)| a + b * x)
                .fold(f64::INFINITY, f64::min);
            assert!((by_lines - c.value(x)).abs() < 1e-12, "x={x}");
        }
        // Sampled from 1 − exp(−x/k): exact at the knots, below the smooth curve between them
        // (a chord of a concave function), and flat at the end.
        assert!((c.value(2.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!(c.value(2.5) <= 1.0 - (-1.25f64).exp());
        assert_eq!(c.value(100.0), c.value(12.0));
    }

    #[test]
    fn lines_within_a_range_give_the_curve_there() {
        let c = Curve::marginal(1.0, &[]);
        let ls = c.lines_within(0.9, 1.6);
        assert!(ls.len() < c.points.len());
        for i in 0..=70 {
            let x = 0.9 + i as f64 * 0.01;
            let v = ls
                .iter()
                .map(|(a, b)| a + b * x)
                .fold(f64::INFINITY, f64::min);
            assert!((v - c.value(x)).abs() < 1e-12);
        }
    }

    #[test]
    fn segments_within_a_range_add_up_to_the_curve() {
        let c = Curve::marginal(1.0, &[]);
        for (lo, hi) in [(0.0, 10.0), (0.3, 1.7), (2.0, 2.0), (5.0, 9.0)] {
            let segs = c.segments_within(lo, hi);
            let len: f64 = segs.iter().map(|s| s.0).sum();
            let rise: f64 = segs.iter().map(|s| s.0 * s.1).sum();
            assert!((len - (hi - lo)).abs() < 1e-12, "{lo} {hi}");
            assert!(
                (c.value(lo) + rise - c.value(hi)).abs() < 1e-12,
                "{lo} {hi}"
            );
            assert!(segs.windows(2).all(|w| w[0].1 >= w[1].1), "slopes fall");
        }
    }

    #[test]
    fn cap_flattens() {
        let c = Curve::marginal(1.0, &[]).capped(0.6);
        assert_eq!(c.value(5.0), c.value(0.6));
        assert!(c.value(0.6) > c.value(0.3));
        assert!(Curve::new(c.points.clone()).is_ok());
    }

    #[test]
    fn knee_from_saturation() {
        // A starved node (uses all it has) is far below its knee; an idle one far above.
        let starved = knee_ratio_for_saturation(0.95);
        let idle = knee_ratio_for_saturation(0.1);
        assert!(starved < 0.2 && idle > 3.0, "{starved} {idle}");
        let z = knee_ratio_for_saturation(0.5);
        assert!((elasticity(z) - 0.5).abs() < 1e-9);
    }

    fn rules(text: &str) -> OptimizationRules {
        crate::optimizer::parse_str(text, "t.yml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn golem_inputs(cpu: f64, mem: f64, usage_cpu: Option<f64>) -> Inputs {
        let gib = 1073741824.0;
        Inputs {
            ts_ms: 0,
            host_capacity: Resources {
                cpu_cores: 8.0,
                memory_bytes: 16.0 * gib,
                disk_bytes: 1e12,
                bandwidth_bytes_per_second: 1e7,
            },
            nodes: vec![NodeInputs {
                node: "golem".into(),
                protocol: "golem".into(),
                current: Resources {
                    cpu_cores: cpu,
                    memory_bytes: mem * gib,
                    disk_bytes: 0.0,
                    bandwidth_bytes_per_second: 0.0,
                },
                value_per_hour: 0.02,
                demand: 1.5,
                usage: Resources {
                    cpu_cores: usage_cpu,
                    ..Resources::default()
                },
                demand_cap: Resources::default(),
                cv: Some(0.1),
                history_samples: 12,
                confidence: 0.7,
            }],
            left_out: Vec::new(),
        }
    }

    const GOLEM: &str = "gates: {max_step: {cpu_cores: 1}}\nnodes:\n  golem:\n    value_per_hour: '1'\n    response: {cpu_cores: marginal}\n    needs_together: [cpu_cores, memory_bytes]\n    bounds: {cpu_cores: [1, 6]}\n";

    #[test]
    fn fit_matches_current_earnings_and_ranges() {
        let r = rules(GOLEM);
        let (p, out) = build_problem(&r, &golem_inputs(5.0, 10.0, Some(2.5)));
        assert!(out.is_empty(), "{out:?}");
        let m = &p.models[0];
        // The model earns value_per_hour × demand at the current allocation.
        assert!((m.value(&m.current) - 0.03).abs() < 1e-12);
        // bounds [1, 6] ∩ 5 ± 1 core; memory has no step limit and no bound: 0 … capacity.
        assert_eq!((m.lower.cpu_cores, m.upper.cpu_cores), (4.0, 6.0));
        assert_eq!(m.upper.memory_bytes, 16.0 * 1073741824.0);
        // Disk is not modelled for golem: it stays where it is.
        assert_eq!(m.lower.disk_bytes, m.upper.disk_bytes);
        // The current mix (5 cores : 10 GiB) is the ratio: more cores alone earn nothing.
        let mut more_cpu = m.current;
        more_cpu.cpu_cores = 6.0;
        assert_eq!(m.value(&more_cpu), m.value(&m.current));
        let mut both = more_cpu;
        both.memory_bytes = 12.0 * 1073741824.0;
        assert!(m.value(&both) > m.value(&m.current));
        assert!(
            m.notes.iter().any(|n| n.contains("saturation 0.50")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn a_starved_node_gains_more_from_the_next_core_than_an_idle_one() {
        let r = rules(GOLEM);
        let gain = |usage: f64| {
            let (p, _) = build_problem(&r, &golem_inputs(4.0, 8.0, Some(usage)));
            let m = &p.models[0];
            let mut a = m.current;
            a.cpu_cores = 5.0;
            a.memory_bytes = 10.0 * 1073741824.0;
            m.value(&a) / m.value(&m.current) - 1.0
        };
        let (starved, idle) = (gain(3.9), gain(0.5));
        assert!(starved > 2.0 * idle && idle > 0.0, "{starved} {idle}");
    }

    #[test]
    fn a_node_outside_its_bounds_moves_towards_them_one_step() {
        let r = rules(GOLEM);
        let (p, _) = build_problem(&r, &golem_inputs(8.0, 16.0, None));
        let m = &p.models[0];
        assert_eq!((m.lower.cpu_cores, m.upper.cpu_cores), (7.0, 7.0));
        assert!(
            m.notes.iter().any(|n| n.contains("saturation assumed")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn a_node_without_the_resources_of_its_group_is_left_out_with_the_reason() {
        let r = rules(GOLEM);
        let (p, out) = build_problem(&r, &golem_inputs(0.0, 8.0, None));
        assert!(p.models.is_empty());
        assert!(
            out[0].reason.contains("give needs_together a ratio"),
            "{out:?}"
        );
        // With a ratio the mix is known, but a knee cannot be fitted from zero cores.
        let r = rules(&GOLEM.replace(
            "needs_together: [cpu_cores, memory_bytes]",
            "needs_together: {resources: [cpu_cores, memory_bytes], ratio: [1, 2GiB]}",
        ));
        let (_, out) = build_problem(&r, &golem_inputs(0.0, 8.0, None));
        assert!(out[0].reason.contains("knee"), "{out:?}");
        // A planner that learns the curve itself keeps the starved node, with a placeholder.
        let (p, out) = build(&r, &golem_inputs(0.0, 8.0, None), Fit::Placeholder);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(p.models.len(), 1);
        assert!(
            p.models[0]
                .notes
                .iter()
                .any(|n| n.contains("placeholder knee")),
            "{:?}",
            p.models[0].notes
        );
    }
}

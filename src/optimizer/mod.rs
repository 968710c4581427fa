//! The optimizer: reads `rules/optimization.yml` ([`OptimizationRules`], loaded by
//! [`load_file`]/[`parse_str`] in `rules.rs`), evaluates its PromQL estimators over the tsdb
//! ([`gather_inputs`], `estimate.rs`), fits each node's earnings model ([`NodeModel`],
//! `model.rs`), finds the best split of the host's resources with a linear program
//! (`lp.rs`; the first prototype's greedy search is kept as [`greedy::plan`] as a baseline) and
//! turns the result into a [`Plan`] a person can read. It is pure and deterministic: it takes
//! the time as an argument and never applies anything. Gates (min improvement, confidence, rate
//! limit, min hold), execution, rollback and history belong to `reallocation`; the plan only
//! carries the numbers the gates decide on (see [`Gates`]).
//!
//! # The model
//!
//! Node *i* earns, in USD per hour, at allocation *a* (one amount per resource *r*):
//!
//! ```text
//! E_i(a) = C_i · Σ_g w_g · min_{r ∈ g} h_r(a_r)
//! ```
//!
//! * *g* runs over the node's **groups**: a `needs_together` list (Golem needs threads and
//!   memory together, so earnings follow the scarcer of the two) or a single resource with a
//!   `response`. Resources a node has no response for are not moved for it.
//! * *h_r* is the **response curve** of resource *r*: concave, nondecreasing, piecewise linear
//!   through breakpoints `(x_0 = 0, y_0 = 0), (x_1, y_1), …`, flat after the last one.
//!   Concave means diminishing returns: every further unit earns at most what the one before
//!   earned.
//!   * `model: marginal` samples `h(x) = 1 − exp(−x / k)` at `x = k · {0, ¼, ½, ¾, 1, 1.5, 2,
//!     3, 4, 6}` (and at the node's upper bound when that lies inside), so the curve reaches
//!     63 % of its ceiling at the **knee** *k*. The knee is given (`knee: 4`) or fitted:
//!     the elasticity of earnings to allocation at the current allocation *a⁰*,
//!     `ε(x) = x·h'(x)/h(x) = (x/k)/(exp(x/k) − 1)`, is set equal to the node's **saturation**
//!     `s = usage / a⁰` (clamped to [0.05, 0.95]; 0.5 without a usage estimator): a node that
//!     uses all it has is starved (ε near 1, almost linear: more pays), a node that uses a
//!     tenth of it is near its ceiling. Solving `ε(a⁰/k) = s` by bisection gives *k*.
//!   * `model: curve` takes the breakpoints as written (x in the resource's units, y relative),
//!     checked to be concave and nondecreasing.
//!   * In a group, resource *r* with ratio *ρ_r* (`ratio: [1, 2GiB]`: one core per 2 GiB) uses
//!     the group's curve in "work units": `h_r(a_r) = h_g(a_r / ρ_r)`, so
//!     `min_r h_r(a_r) = h_g(min_r a_r / ρ_r)`. Without a ratio the current mix is the ratio.
//!   * **Demand cap**: a `demand_cap` estimator (in the resource's units) flattens the curve
//!     there: `h_r(a) = h_r(min(a, cap_r))`. More allocation than the market asks for earns
//!     nothing.
//! * *w_g* is the group's `weight` (default 1).
//! * The **scale** *C_i* is fitted so that the model earns what the node earns now, times the
//!   demand estimate *d* (1 when not given, a ratio of expected to current demand, e.g. from
//!   `predict_linear`): `C_i = V_i · d_i / Σ_g w_g · min_{r∈g} h_r(a⁰_r)`, where *V_i* is the
//!   `value_per_hour` estimate. A node whose model earns nothing at *a⁰* cannot be fitted and is
//!   left out (its allocation stays).
//!
//! The sum of concave functions and the minimum of concave functions are concave, so *E_i* is
//! concave and the best split is a linear program (exact on this model, not an approximation
//! of it). Each curve on the node's range `[lo, hi]` is cut into its segments `k` (length
//! `ℓ_k`, slope `s_k`; also cut at the current allocation *a⁰*), each filled by a variable
//! `δ_k ∈ [0, ℓ_k]`, so that `a = lo + Σ_k δ_k`:
//!
//! ```text
//! maximise   Σ_i C_i [ Σ_{g single} w_g Σ_k s_k δ_ik + Σ_{g together} w_g e_ig ]
//!              + λ Σ_ik ±δ_ik                      (+ below a⁰, − above: the tie-break)
//! subject to e_ig ≤ h_r(lo_ir) + Σ_k s_rk δ_irk              for every r of a together group g
//!            Σ_i (lo_ir + Σ_k δ_irk) ≤ cap_r − reserve_r − fixed_r          for every r
//!            0 ≤ δ_irk ≤ ℓ_rk
//! ```
//!
//! Slopes fall because the curve is concave, so a maximiser fills the segments in order and
//! `h(lo) + Σ s·δ` is the curve at the allocation; the minimum over a group becomes one bound
//! on *e* per member. `[lo, hi]` is the node's `bounds` intersected with `a⁰ ± max_step`, and
//! *fixed_r* what the nodes outside the plan hold. The tie-break `−λ·|a − a⁰|` (λ = 10⁻⁶ of
//! the total ceiling of earnings per whole capacity moved) becomes `+λ` on the segments up to
//! *a⁰* and `−λ` after: among equally good splits, the one that moves least wins. Amounts are
//! scaled to fractions of capacity and earnings to that ceiling, so the solver sees numbers
//! near 1. With one row per together member and one per resource, 100 nodes make a few
//! hundred rows.
//!
//! # Confidence
//!
//! For each node, the **coefficient of variation** of its `value_per_hour` over the last
//! `confidence.window` (default 1h), sampled every `confidence.resolution` (default 5m) by the
//! subquery `(value_per_hour)[window:resolution]`: `CV = σ / |μ|` with σ the population
//! standard deviation, the same numbers as PromQL's `stddev_over_time` / `avg_over_time`.
//! The node's confidence is `c = 1 / (1 + CV / cv_half)`, with `cv_half` =
//! `confidence.cv_half` (default 0.25): a steady estimate gives 1, one that swings by a
//! quarter of its mean gives 0.5. Fewer than `confidence.min_samples` (default 3) points, or a
//! mean of 0 with values that move, give 0; a series that is 0 throughout (a node that earns
//! nothing in USD) has CV 0. The plan's confidence is the lowest confidence of the nodes it changes
//! (of all planned nodes when it changes none).
//!
//! # Gain, switching cost, ROI
//!
//! `expected_gain_usd_per_hour = Σ_i E_i(target) − Σ_i E_i(current)`. Each changed node costs
//! its `switching_cost`: `downtime: 5m` loses `V_i · 5/60` USD, `usd: 0.02` costs that amount.
//! Over the hold period *H* (`gates.min_hold`) the plan returns `gain · H`, so
//! `roi = (gain · H − switching_cost) / switching_cost` (none when switching is free), and
//! `payback_within_hold: f` asks for `gain · H ≥ f · switching_cost`.
//! A move's own gain is its node's change in earnings shared among the node's moves in
//! proportion to the fraction of capacity each moves; releases show the loss they cause.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actuators::rule::ActuatorRule;
use crate::promql::Expr;
use crate::resources::{Allocation, Resource, Resources};
use crate::schema::diag::Diag;

mod estimate;
pub mod explain;
pub mod greedy;
pub mod learn;
mod lp;
pub mod metrics;
mod model;
mod rules;

pub use estimate::{gather_inputs, GatherError};
pub use lp::SolveError;
pub use metrics::OptimizerMetrics;
pub use model::{Curve, Group, ResourceCurve};
pub use rules::{load_file, parse_str, Errors};

// ---------------------------------------------------------------------------------------------
// Rules (the validated `rules/optimization.yml`)
// ---------------------------------------------------------------------------------------------

/// The validated optimization rules.
#[derive(Clone, Debug)]
pub struct OptimizationRules {
    /// Where the rules came from (file path), for messages.
    pub origin: String,
    /// `interval`: how often to plan (default 60s).
    pub interval: Duration,
    /// `gates`: the thresholds `reallocation` applies to a plan.
    pub gates: Gates,
    /// `confidence`: how the confidence of estimates is measured.
    pub confidence: ConfidenceRule,
    /// `resources`: capacity and reserve per resource; a resource not listed is taken at the
    /// host's capacity with no reserve.
    pub resources: BTreeMap<Resource, ResourceRule>,
    /// `protocols.<protocol>`: defaults for every node of that protocol.
    pub protocols: BTreeMap<String, NodeRule>,
    /// `nodes.<name>`: rules for one node; each key set here overrides the protocol's (the
    /// maps `usage`, `response` and `bounds` per resource).
    pub nodes: BTreeMap<String, NodeRule>,
    /// `planner`: what plans: the fitted model (default) or the learner.
    pub planner: PlannerKind,
    /// `exploration_budget`: what the learning planner may put at risk on probes and ventures
    /// per day.
    pub exploration_budget: ExplorationBudget,
    /// Findings that do not stop the rules from loading, as `FILE:LINE:COL: path: message`.
    pub warnings: Vec<Diag>,
}

/// `planner`: which planner decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannerKind {
    /// The model fitted from the estimators now (`value_per_hour`, usage, knees).
    #[default]
    Model,
    /// Curves learned from each node's own history (`optimizer::learn`), with probes.
    Learning,
}

/// `exploration_budget`: earnings the learning planner may put at risk on probes and ventures
/// per day.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplorationBudget {
    /// A number: USD per day.
    Usd(f64),
    /// A percent: that share of what the planned nodes earn per day now (their
    /// `value_per_hour` × 24), so one rules file fits a small host and a large one.
    Share(f64),
}

impl Default for ExplorationBudget {
    fn default() -> Self {
        ExplorationBudget::Usd(0.0)
    }
}

impl ExplorationBudget {
    /// USD per day, for nodes earning `usd_per_hour` together now.
    pub fn usd_per_day(&self, usd_per_hour: f64) -> f64 {
        match *self {
            ExplorationBudget::Usd(x) => x,
            ExplorationBudget::Share(f) => f * usd_per_hour.max(0.0) * 24.0,
        }
    }
}

/// `gates`: when a plan may be carried out. The optimizer fills in the numbers a gate compares
/// ([`Plan::improvement`], [`Plan::confidence`], [`Plan::roi`]); `reallocation` decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Gates {
    /// `min_improvement`: expected gain as a fraction of the current earnings rate (default
    /// 0.05, written `5%`).
    pub min_improvement: f64,
    /// `min_confidence`: 0–1 (default 0.7).
    pub min_confidence: f64,
    /// `max_reallocations_per_hour`: applied plans per rolling hour (default 4).
    pub max_reallocations_per_hour: u32,
    /// `max_reallocations_per_day`: applied plans per rolling 24 hours (None: unchecked).
    pub max_reallocations_per_day: Option<u32>,
    /// `max_reallocations_per_30_days`: applied plans per rolling 30 days, paced by a token
    /// bucket that holds at most the daily limit (None: unchecked). See
    /// `reallocation::gates::saved_reallocations`.
    pub max_reallocations_per_30_days: Option<u32>,
    /// `min_hold`: a node's allocation stays at least this long after a change (default 1h).
    /// Also the period over which switching costs must pay back.
    pub min_hold: Duration,
    /// `max_step`: the most one move may change one resource of one node.
    pub max_step: Resources<Option<Step>>,
    /// `payback_within_hold`: the gain over `min_hold` must be at least this many times the
    /// switching cost (`true` = 1, `false` = not checked; default 1).
    pub payback_within_hold: Option<f64>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min_improvement: 0.05,
            min_confidence: 0.7,
            max_reallocations_per_hour: 4,
            max_reallocations_per_day: None,
            max_reallocations_per_30_days: None,
            min_hold: Duration::from_secs(3600),
            max_step: Resources::default(),
            payback_within_hold: Some(1.0),
        }
    }
}

/// A limit on one move: a fraction of the resource's capacity (`25%`) or an amount in the
/// resource's units (`2`, `4GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Fraction(f64),
    Absolute(f64),
}

impl Step {
    /// The limit in the resource's units for a resource of `capacity`.
    pub fn limit(self, capacity: f64) -> f64 {
        match self {
            Step::Fraction(f) => f * capacity,
            Step::Absolute(v) => v,
        }
    }
}

/// `confidence`: the history window behind [`Plan::confidence`] (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidenceRule {
    /// `window`: how far back (default 1h).
    pub window: Duration,
    /// `resolution`: subquery step (default 5m).
    pub resolution: Duration,
    /// `cv_half`: the coefficient of variation that gives confidence 0.5 (default 0.25).
    pub cv_half: f64,
    /// `min_samples`: fewer points give confidence 0 (default 3).
    pub min_samples: usize,
}

impl Default for ConfidenceRule {
    fn default() -> Self {
        ConfidenceRule {
            window: Duration::from_secs(3600),
            resolution: Duration::from_secs(300),
            cv_half: 0.25,
            min_samples: 3,
        }
    }
}

/// `resources.<resource>`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceRule {
    /// `capacity`: `auto` (the host's capacity) or an amount.
    pub capacity: Capacity,
    /// `reserve`: kept free for the host itself (default 0).
    pub reserve: f64,
}

impl Default for ResourceRule {
    fn default() -> Self {
        ResourceRule {
            capacity: Capacity::Auto,
            reserve: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    Auto,
    Value(f64),
}

/// A PromQL estimator: its text, parsed expression and the key path it came from.
#[derive(Clone, Debug)]
pub struct Query {
    pub text: String,
    pub expr: Expr,
    /// `nodes.golem.value_per_hour`, for messages.
    pub path: String,
    /// `(text)[window:resolution]`, for the confidence of `value_per_hour` (None elsewhere).
    pub history: Option<Expr>,
}

/// The rules of one node (`nodes.<name>`) or one protocol (`protocols.<protocol>`). Every field
/// is optional so that a node block can override only some keys of its protocol's block;
/// [`OptimizationRules::for_node`] merges them.
#[derive(Clone, Debug, Default)]
pub struct NodeRule {
    /// Key path of the block (`nodes.golem`), for messages.
    pub path: String,
    /// `value_per_hour`: PromQL, USD per hour earned now. Required after merging.
    pub value_per_hour: Option<Query>,
    /// `demand`: PromQL, expected demand relative to now (1 = as now).
    pub demand: Option<Query>,
    /// `usage.<resource>`: PromQL, what the node uses (resource units).
    pub usage: BTreeMap<Resource, Query>,
    /// `response.<resource>`: how earnings follow the resource.
    pub response: BTreeMap<Resource, Response>,
    /// `needs_together`: resources that only earn together.
    pub needs_together: Option<Vec<Together>>,
    /// `bounds.<resource>`: `[min, max]` in the resource's units.
    pub bounds: BTreeMap<Resource, (f64, f64)>,
    /// `actuator`: how a new allocation is applied (parsed here, carried out by `actuators`).
    pub actuator: Option<ActuatorRule>,
    /// `switching_cost`: what one change of this node costs.
    pub switching_cost: Option<SwitchingCost>,
}

/// `response.<resource>`.
#[derive(Clone, Debug)]
pub struct Response {
    pub model: ResponseModel,
    /// `demand_cap`: PromQL, the allocation (resource units) beyond which more earns nothing.
    pub demand_cap: Option<Query>,
    /// `weight`: this group's weight *w_g* (default 1).
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ResponseModel {
    /// `model: marginal`, `knee: auto | amount`: `1 − exp(−x / knee)`.
    Marginal { knee: Option<f64> },
    /// `model: curve`, `points: [[x, y], …]`: concave, nondecreasing, x in resource units.
    Curve { points: Vec<(f64, f64)> },
}

/// One `needs_together` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Together {
    pub resources: Vec<Resource>,
    /// `ratio`: the amount of each resource per work unit, in the order of `resources`; None =
    /// the current mix.
    pub ratio: Option<Vec<f64>>,
}

/// `switching_cost`: lost earnings while the node restarts, and/or a fixed amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SwitchingCost {
    /// `downtime`: the node earns nothing this long after a change.
    pub downtime: Duration,
    /// `usd`: a fixed cost per change.
    pub usd: f64,
}

impl SwitchingCost {
    /// The cost in USD of one change of a node that earns `usd_per_hour`.
    pub fn usd(&self, usd_per_hour: f64) -> f64 {
        self.usd + usd_per_hour.max(0.0) * self.downtime.as_secs_f64() / 3600.0
    }
}

impl OptimizationRules {
    /// The rules of node `name` running `protocol`: the node's block over the protocol's, key
    /// by key; `usage`, `response` and `bounds` resource by resource (a node that sets only
    /// its memory bounds keeps its protocol's disk bounds). None when neither exists (the
    /// node is not planned).
    pub fn for_node(&self, name: &str, protocol: &str) -> Option<NodeRule> {
        /// The protocol's entries with the node's laid over them.
        fn merged<T: Clone>(
            node: &BTreeMap<Resource, T>,
            protocol: &BTreeMap<Resource, T>,
        ) -> BTreeMap<Resource, T> {
            let mut out = protocol.clone();
            out.extend(node.iter().map(|(r, v)| (*r, v.clone())));
            out
        }
        let n = self.nodes.get(name);
        let p = self.protocols.get(protocol);
        match (n, p) {
            (None, None) => None,
            (Some(n), None) => Some(n.clone()),
            (None, Some(p)) => Some(p.clone()),
            (Some(n), Some(p)) => Some(NodeRule {
                path: n.path.clone(),
                value_per_hour: n
                    .value_per_hour
                    .clone()
                    .or_else(|| p.value_per_hour.clone()),
                demand: n.demand.clone().or_else(|| p.demand.clone()),
                usage: merged(&n.usage, &p.usage),
                response: merged(&n.response, &p.response),
                needs_together: n
                    .needs_together
                    .clone()
                    .or_else(|| p.needs_together.clone()),
                bounds: merged(&n.bounds, &p.bounds),
                actuator: n.actuator.clone().or_else(|| p.actuator.clone()),
                switching_cost: n.switching_cost.or(p.switching_cost),
            }),
        }
    }

    /// Capacity minus reserve per resource, `auto` taken from `host` (the host's capacity).
    pub fn available(&self, host: &Allocation) -> Allocation {
        host.map(|r, h| {
            let rule = self.resources.get(&r).copied().unwrap_or_default();
            let cap = match rule.capacity {
                Capacity::Auto => h,
                Capacity::Value(v) => v,
            };
            (cap - rule.reserve).max(0.0)
        })
    }

    /// The capacity per resource (`auto` taken from `host`), before reserves.
    pub fn capacity(&self, host: &Allocation) -> Allocation {
        host.map(|r, h| match self.resources.get(&r).map(|x| x.capacity) {
            Some(Capacity::Value(v)) => v,
            _ => h,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs (what the estimators said at one time)
// ---------------------------------------------------------------------------------------------

/// A node as it runs now: the caller knows its protocol and its allocation in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentNode {
    pub node: String,
    pub protocol: String,
    pub allocation: Allocation,
}

/// Estimates for one node at one time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeInputs {
    pub node: String,
    pub protocol: String,
    /// The allocation in force.
    pub current: Allocation,
    /// `value_per_hour` now, USD/h.
    pub value_per_hour: f64,
    /// `demand` (1 when not given).
    pub demand: f64,
    /// `usage.<r>` where given.
    pub usage: Resources<Option<f64>>,
    /// `response.<r>.demand_cap` where given.
    pub demand_cap: Resources<Option<f64>>,
    /// Coefficient of variation of `value_per_hour` over the confidence window (None with too
    /// little history).
    pub cv: Option<f64>,
    /// Points in the confidence window.
    pub history_samples: usize,
    /// 0–1, from `cv` (see the module doc).
    pub confidence: f64,
}

/// A node that is not planned, and why. Its allocation stays and counts against capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub node: String,
    pub allocation: Allocation,
    pub reason: String,
}

/// Everything [`plan`] needs, gathered at one time by [`gather_inputs`] (or built by hand in
/// tests and the simulator).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inputs {
    pub ts_ms: i64,
    /// The host's capacity (before `resources.*.capacity` overrides and reserves).
    pub host_capacity: Allocation,
    pub nodes: Vec<NodeInputs>,
    pub left_out: Vec<LeftOut>,
}

// ---------------------------------------------------------------------------------------------
// The model the solvers work on
// ---------------------------------------------------------------------------------------------

/// One node's fitted earnings model: `E(a) = scale · Σ_g w_g · min_{r∈g} h_r(a_r)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeModel {
    pub node: String,
    pub protocol: String,
    /// The allocation in force (resources outside every group stay there).
    pub current: Allocation,
    /// Lowest allocation per resource the plan may give (bounds ∩ current − max_step).
    pub lower: Allocation,
    /// Highest allocation per resource the plan may give (bounds ∩ current + max_step).
    pub upper: Allocation,
    /// *C* in USD per hour.
    pub scale: f64,
    pub groups: Vec<Group>,
    /// 0–1.
    pub confidence: f64,
    /// USD per change of this node.
    pub switching_cost_usd: f64,
    /// Why the curve looks as it does (knees, caps), for the explanation.
    pub notes: Vec<String>,
}

/// The allocation problem: the models and what they may share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub models: Vec<NodeModel>,
    /// Per resource: what the planned nodes may hold together (capacity − reserve − what the
    /// left-out nodes hold).
    pub available: Allocation,
    /// Per resource: the capacity, the unit for scaling and for fractional `max_step`.
    pub capacity: Allocation,
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/// One change of one resource of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub node: String,
    #[serde(with = "resource_key")]
    pub resource: Resource,
    pub from: f64,
    pub to: f64,
    /// This move's share of its node's change in earnings (negative for a release).
    pub expected_gain_usd_per_hour: f64,
    /// The node's confidence.
    pub confidence: f64,
}

impl Move {
    pub fn is_release(&self) -> bool {
        self.to < self.from
    }
}

/// The optimizer's proposal. `reallocation` gates it, applies `target` and records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Evaluation time, ms since the epoch.
    pub ts_ms: i64,
    /// Allocation in force per node (planned and left-out nodes).
    pub current: BTreeMap<String, Allocation>,
    /// Proposed allocation per node (= current for left-out nodes).
    pub target: BTreeMap<String, Allocation>,
    /// Releases first, then grants, so that the host never holds more than its capacity.
    pub moves: Vec<Move>,
    /// The model's earnings at the current allocation (value_per_hour × demand), USD/h.
    pub current_usd_per_hour: f64,
    /// The model's earnings at the target, USD/h.
    pub target_usd_per_hour: f64,
    pub expected_gain_usd_per_hour: f64,
    /// expected gain / current earnings (0 when nothing is earned now).
    pub improvement: f64,
    /// 0–1 (see the module doc).
    pub confidence: f64,
    /// Sum of the changed nodes' switching costs, USD.
    pub switching_cost_usd: f64,
    /// `gates.min_hold` in hours: the period the gain is counted over.
    pub hold_hours: f64,
    /// `(gain · hold − switching cost) / switching cost`; None when switching is free.
    pub roi: Option<f64>,
    /// Nodes not planned, with the reason.
    pub left_out: Vec<LeftOut>,
    /// Plain-words lines: the model per node, what was left out and why, the result.
    pub explanation: Vec<String>,
}

impl Plan {
    /// Whether the gain pays back `factor` times the switching cost within the hold.
    pub fn pays_back(&self, factor: f64) -> bool {
        self.expected_gain_usd_per_hour * self.hold_hours >= factor * self.switching_cost_usd
    }
}

pub(crate) mod resource_key {
    use crate::resources::Resource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.key())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        let s = String::deserialize(d)?;
        super::resource_from_key(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown resource \"{s}\"")))
    }
}

/// `cpu_cores` → [`Resource::CpuCores`], …
pub fn resource_from_key(s: &str) -> Option<Resource> {
    Resource::ALL.into_iter().find(|r| r.key() == s)
}

/// An amount of `r` in words, to three significant digits: `2.5 cores`, `9.5GiB` (memory in
/// binary units), `1.79TB`, `5.06MB/s` (disk and bandwidth in decimal units, as sold).
pub fn fmt_amount(r: Resource, v: f64) -> String {
    let trim = crate::schema::units::trim_float;
    let scaled = |units: &[(&str, f64)]| -> String {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        for (u, m) in units {
            if a >= *m {
                return format!("{sign}{}{u}", trim(sig3(a / m)));
            }
        }
        format!("{sign}{}B", trim(sig3(a)))
    };
    match r {
        Resource::CpuCores => format!("{} cores", trim(round3(v))),
        Resource::MemoryBytes => scaled(&[
            ("TiB", 1099511627776.0),
            ("GiB", 1073741824.0),
            ("MiB", 1048576.0),
            ("KiB", 1024.0),
        ]),
        Resource::DiskBytes => scaled(&[("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)]),
        Resource::BandwidthBytesPerSecond => {
            format!("{}/s", scaled(&[("GB", 1e9), ("MB", 1e6), ("kB", 1e3)]))
        }
    }
}

/// `v` rounded to three significant digits.
fn sig3(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 2 - v.abs().log10().floor() as i32;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.moves.is_empty() {
            writeln!(
                f,
                "No change: the current split earns {:.4} USD/h and the model finds nothing better.",
                self.current_usd_per_hour
            )?;
        } else {
            writeln!(
                f,
                "Plan: {} move(s), expected gain {:+.4} USD/h ({:+.1} % of {:.4} USD/h now), confidence {:.2}.",
                self.moves.len(),
                self.expected_gain_usd_per_hour,
                self.improvement * 100.0,
                self.current_usd_per_hour,
                self.confidence
            )?;
            for m in &self.moves {
                let verb = if m.is_release() { "release" } else { "grant" };
                writeln!(
                    f,
                    "  - {} {}: {} {} ({} → {}), expected {:+.4} USD/h, confidence {:.2}",
                    m.node,
                    m.resource.key(),
                    verb,
                    fmt_amount(m.resource, (m.to - m.from).abs()),
                    fmt_amount(m.resource, m.from),
                    fmt_amount(m.resource, m.to),
                    m.expected_gain_usd_per_hour,
                    m.confidence
                )?;
            }
            match self.roi {
                Some(roi) => writeln!(
                    f,
                    "Switching costs {:.4} USD; over the {} h hold the gain returns {:.4} USD (ROI {:+.1} %).",
                    self.switching_cost_usd,
                    round3(self.hold_hours),
                    self.expected_gain_usd_per_hour * self.hold_hours,
                    roi * 100.0
                )?,
                None => writeln!(f, "Switching is free for the nodes involved.")?,
            }
        }
        for l in &self.left_out {
            writeln!(f, "  not planned: {}: {}", l.node, l.reason)?;
        }
        for line in &self.explanation {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Fits the models of `inputs` under `rules` (nodes whose model cannot be fitted join
/// `left_out`).
pub fn build_problem(rules: &OptimizationRules, inputs: &Inputs) -> (Problem, Vec<LeftOut>) {
    model::build_problem(rules, inputs)
}

/// [`build_problem`] for a planner that replaces the paid curves and the scale with its own:
/// a node whose curve cannot be fitted from its present (starved of a paid resource, earning
/// nothing) stays in with a placeholder (see [`model::Fit::Placeholder`]).
pub fn build_problem_for_learning(
    rules: &OptimizationRules,
    inputs: &Inputs,
) -> (Problem, Vec<LeftOut>) {
    model::build(rules, inputs, model::Fit::Placeholder)
}

/// The best plan under the model: fits the models, solves the linear program and explains the
/// result. A solver failure yields a plan without moves whose explanation says why.
pub fn plan(rules: &OptimizationRules, inputs: &Inputs) -> Plan {
    let (problem, mut left_out) = build_problem(rules, inputs);
    let mut all_left = inputs.left_out.clone();
    all_left.append(&mut left_out);
    let (target, note) = match lp::solve(&problem) {
        Ok(t) => (t, None),
        Err(e) => (
            problem
                .models
                .iter()
                .map(|m| (m.node.clone(), m.current))
                .collect(),
            Some(format!("the solver found no plan: {e}")),
        ),
    };
    let mut plan = model::make_plan(rules, inputs.ts_ms, &problem, &target, all_left);
    if let Some(n) = note {
        plan.explanation.push(n);
    }
    plan
}

/// The same as [`plan`] but with the greedy baseline as solver.
pub fn plan_greedy(rules: &OptimizationRules, inputs: &Inputs) -> Plan {
    let (problem, mut left_out) = build_problem(rules, inputs);
    let mut all_left = inputs.left_out.clone();
    all_left.append(&mut left_out);
    let target = greedy::plan(&problem);
    model::make_plan(rules, inputs.ts_ms, &problem, &target, all_left)
}

/// The plan that takes `problem`'s nodes to `target` (moves, values, switching costs and the
/// explanation), for a planner that built the problem and chose the target itself.
pub fn plan_for(
    rules: &OptimizationRules,
    ts_ms: i64,
    problem: &Problem,
    target: &BTreeMap<String, Allocation>,
    left_out: Vec<LeftOut>,
) -> Plan {
    model::make_plan(rules, ts_ms, problem, target, left_out)
}

/// Solves a problem with the linear program: the target allocation per node.
pub fn solve(problem: &Problem) -> Result<BTreeMap<String, Allocation>, SolveError> {
    lp::solve(problem)
}

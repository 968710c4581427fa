//! What the controller has learned about each node, for a person: per paid resource the hours
//! learned from, the levels visited, what one more unit is worth in USD per hour at the
//! allocation in force (with its band), the knee, and whether the curve is still uncertain.
//! Built from a [`NodeLearner`]; shown by `plan` (text and JSON), `/api/v1/plan` and the
//! learning gauges (`metrics.rs`).
//!
//! # Definitions
//!
//! * **Marginal value** of resource *r* at allocation *a*: the slope of the node's value over
//!   the next `horizon` hours between *a* and *a* + δ (δ = [`STEP_SHARE`] of the node's upper
//!   range of *r*; below *a* at the top of the range), in tokens per hour per unit of *r*
//!   under each grid point of the posterior, times the token's USD price. Its band is the
//!   posterior's [`ALPHA`] and 1 − [`ALPHA`] quantiles; `mean` is the posterior mean.
//! * **Uncertain**: the curve cannot yet be trusted to decide on, for the first of these
//!   reasons ([`Uncertainty`]): fewer than [`MIN_OBSERVATIONS`] usable hours; only one level
//!   of the resource seen (one level fixes a point of the curve, not its shape: the market's
//!   index absorbs the rest); or a marginal band wider than [`MAX_SPREAD`] times its mean.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::fmt_amount;
use super::learn::{Band, NodeLearner};
use crate::resources::{Allocation, Resource};

/// The band is the posterior's 10 % and 90 % quantiles.
pub const ALPHA: f64 = 0.1;
/// Usable hours before a curve can be other than uncertain.
pub const MIN_OBSERVATIONS: usize = 24;
/// A marginal band wider than this share of its mean is uncertain.
pub const MAX_SPREAD: f64 = 0.5;
/// The finite difference of the marginal value, as a share of the node's upper range.
pub const STEP_SHARE: f64 = 0.01;

/// Why a learned curve is not yet to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Uncertainty {
    /// Fewer than [`MIN_OBSERVATIONS`] usable hours.
    FewObservations,
    /// The resource was held at one level only.
    OneLevel,
    /// The marginal band is wider than [`MAX_SPREAD`] times its mean.
    WideBand,
}

impl Uncertainty {
    fn words(self) -> &'static str {
        match self {
            Uncertainty::FewObservations => "few hours learned",
            Uncertainty::OneLevel => "only one level seen",
            Uncertainty::WideBand => "wide band",
        }
    }
}

/// What was learned about one paid resource of a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceLearning {
    #[serde(with = "super::resource_key")]
    pub resource: Resource,
    /// Usable hours the curve was learned from (the node's, shared by its resources).
    pub observations: usize,
    /// Distinct amounts of the resource among the hours learned from.
    pub levels: usize,
    /// The allocation in force, in the resource's base unit.
    pub at: f64,
    /// USD per hour one more unit (core, byte, byte/s) would earn at `at`.
    pub marginal_usd_per_hour: Band,
    /// The knee (63 % of the resource's part of the ceiling), in the resource's base unit.
    pub knee: Band,
    /// None when the curve can be decided on.
    pub uncertain: Option<Uncertainty>,
}

/// What was learned about one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLearning {
    pub node: String,
    /// Usable hours learned from.
    pub observations: usize,
    /// Hours taken as market shocks (no curve explains them; they move the level only).
    pub shocks: usize,
    /// USD per token unit used to convert (the caller's price).
    pub usd_per_token: f64,
    /// The hours the values are averaged over.
    pub horizon_hours: usize,
    /// One entry per paid resource, in the order of the learner's groups.
    pub resources: Vec<ResourceLearning>,
    /// The probe the planner makes on this node and why (set by the planner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

impl NodeLearning {
    /// What `learner` says about `node` at allocation `current`, over the next `horizon`
    /// hours, with `usd_per_token` USD per token unit.
    pub fn new(
        node: &str,
        learner: &NodeLearner,
        current: &Allocation,
        usd_per_token: f64,
        horizon: usize,
    ) -> NodeLearning {
        let upper = learner.spec().upper;
        let step = upper.map(|r, u| (u.max(current.get(r)) * STEP_SHARE).max(1e-9));
        let resources = learner
            .learned(current, horizon, &step)
            .into_iter()
            .map(|l| {
                let marginal = scale(l.marginal, usd_per_token);
                ResourceLearning {
                    resource: l.resource,
                    observations: l.observations,
                    levels: l.levels,
                    at: current.get(l.resource),
                    marginal_usd_per_hour: marginal,
                    knee: l.knee,
                    uncertain: uncertainty(l.observations, l.levels, &marginal),
                }
            })
            .collect();
        NodeLearning {
            node: node.to_string(),
            observations: learner.observations(),
            shocks: learner.shocks(),
            usd_per_token,
            horizon_hours: horizon,
            resources,
            probe: None,
        }
    }

    /// Whether any paid resource's curve is uncertain.
    pub fn uncertain(&self) -> bool {
        self.resources.iter().any(|r| r.uncertain.is_some())
    }

    /// The entry of `r`, when the node is paid for it.
    pub fn resource(&self, r: Resource) -> Option<&ResourceLearning> {
        self.resources.iter().find(|x| x.resource == r)
    }
}

fn scale(b: Band, f: f64) -> Band {
    Band {
        lo: b.lo * f,
        mean: b.mean * f,
        hi: b.hi * f,
    }
}

/// See the module doc.
pub fn uncertainty(observations: usize, levels: usize, marginal: &Band) -> Option<Uncertainty> {
    if observations < MIN_OBSERVATIONS {
        Some(Uncertainty::FewObservations)
    } else if levels < 2 {
        Some(Uncertainty::OneLevel)
    } else if narrow(marginal) {
        None
    } else {
        Some(Uncertainty::WideBand)
    }
}

/// Whether the band is at most [`MAX_SPREAD`] times its mean wide (false for NaN bounds).
fn narrow(b: &Band) -> bool {
    b.hi - b.lo <= MAX_SPREAD * b.mean.abs()
}

/// The unit a person prices a resource in: its name and its size in base units.
pub fn display_unit(r: Resource) -> (&'static str, f64) {
    match r {
        Resource::CpuCores => ("core", 1.0),
        Resource::MemoryBytes => ("GiB", 1073741824.0),
        Resource::DiskBytes => ("TB", 1e12),
        Resource::BandwidthBytesPerSecond => ("MB/s", 1e6),
    }
}

/// `v` with three significant digits, without an exponent for the USD amounts seen here.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    format!("{v:.decimals$}")
}

impl fmt::Display for NodeLearning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Learned for {}: {} h used, {} as market shocks; marginal USD/h at the allocation in force over {} h (10–90 %):",
            self.node, self.observations, self.shocks, self.horizon_hours
        )?;
        for r in &self.resources {
            let (unit, size) = display_unit(r.resource);
            let m = scale(r.marginal_usd_per_hour, size);
            write!(
                f,
                "  - {} at {}: {} USD/h per {unit} ({} to {}), knee {} ({} to {}), {} level(s) seen",
                r.resource.key(),
                fmt_amount(r.resource, r.at),
                sig(m.mean),
                sig(m.lo),
                sig(m.hi),
                fmt_amount(r.resource, r.knee.mean),
                fmt_amount(r.resource, r.knee.lo),
                fmt_amount(r.resource, r.knee.hi),
                r.levels
            )?;
            match r.uncertain {
                Some(u) => writeln!(f, "; uncertain: {}", u.words())?,
                None => writeln!(f)?,
            }
        }
        if let Some(p) = &self.probe {
            writeln!(f, "  - probe: {p}")?;
        }
        Ok(())
    }
}

/// Every node's learning as `plan` prints it, one block per node.
pub fn render_text(nodes: &[NodeLearning]) -> String {
    nodes.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::learn::{Point, Spec};
    use crate::resources::Resources;

    const MB: f64 = 1e6;

    fn bw(v: f64) -> Allocation {
        Allocation {
            bandwidth_bytes_per_second: v,
            ..Default::default()
        }
    }

    fn learner() -> NodeLearner {
        NodeLearner::new(Spec {
            groups: vec![vec![Resource::BandwidthBytesPerSecond]],
            upper: bw(8.0 * MB),
            guesses: Default::default(),
        })
    }

    /// A deterministic noise in [−1, 1] (a 64-bit LCG's high bits).
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// `rate · (1 − exp(−a/knee)) · exp(daily · cos(2πh/24) + noise)`, the bandwidth moved
    /// every 77 hours through `levels`.
    fn feed(l: &mut NodeLearner, rate: f64, knee: f64, daily: f64, levels: &[f64], hours: i64) {
        let mut s = 7;
        for hour in 0..hours {
            let i = (hour / 77) as usize % levels.len();
            let a = bw(levels[i]);
            let season = daily * (std::f64::consts::TAU * (hour % 24) as f64 / 24.0).cos();
            let g = -(-a.bandwidth_bytes_per_second / knee).exp_m1();
            let changed = hour > 0 && hour % 77 <= 1;
            l.add(Point {
                hour,
                tokens: rate * g * (season + 0.1 * noise(&mut s)).exp(),
                up: 1.0,
                allocation: a,
                usage_avg: Resources::default(),
                usage_max: Resources::default(),
                excluded: changed.then_some(crate::optimizer::learn::Exclusion::Settle),
            });
        }
    }

    #[test]
    fn a_known_curve_gives_a_marginal_whose_band_holds_the_truth() {
        let mut l = learner();
        // A knee on the learner's grid, so that the truth is one of the curves it weighs.
        let knees = &l.grid().knees[0][0];
        let mut axis: Vec<f64> = knees.clone();
        axis.sort_by(f64::total_cmp);
        axis.dedup();
        let knee = axis[10];
        assert!(knee > 1.0 * MB && knee < 4.0 * MB, "{knee}");
        let (rate, daily) = (10.0, 0.5);
        let levels = [1.0 * MB, 4.0 * MB, 2.0 * MB, 6.0 * MB, 0.5 * MB, 3.0 * MB];
        feed(&mut l, rate, knee, daily, &levels, 24 * 21);
        let at = bw(3.0 * MB);
        let usd = 0.25;
        let n = NodeLearning::new("grass", &l, &at, usd, 24);
        let r = n.resource(Resource::BandwidthBytesPerSecond).unwrap();
        // Truth: rate · the mean over a day of exp(daily · cos) (I₀(0.5) = 1.0635) · the
        // slope of 1 − e^(−a/k) over the same step, in USD (× 0.25 per token).
        let d = 8.0 * MB * STEP_SHARE;
        let slope = ((-3.0 * MB / knee).exp() - (-(3.0 * MB + d) / knee).exp()) / d;
        let truth = rate * 1.0635 * slope * usd;
        let m = r.marginal_usd_per_hour;
        assert!(m.lo > 0.0 && m.lo <= m.hi, "{m:?}");
        // The band is the spread over curves; the market level's own error (a few % after
        // three weeks of ±10 % noise) is not in it, hence the 8 %.
        assert!(
            m.lo <= truth * 1.08 && m.hi >= truth / 1.08,
            "{m:?} vs {truth}"
        );
        assert!(
            r.knee.lo <= knee * 1.01 && r.knee.hi >= knee * 0.99,
            "{:?}",
            r.knee
        );
        assert_eq!(r.levels, levels.len());
        assert_eq!(r.uncertain, None, "{n}");
        assert!(!n.uncertain());
        let text = render_text(std::slice::from_ref(&n));
        assert!(text.starts_with("Learned for grass: "), "{text}");
        assert!(
            text.contains("  - bandwidth_bytes_per_second at 3MB/s: ")
                && text.contains(" USD/h per MB/s (")
                && text.contains("6 level(s) seen\n"),
            "{text}"
        );
        let json = serde_json::to_value(&n).expect("serializes");
        assert_eq!(
            json["resources"][0]["resource"],
            "bandwidth_bytes_per_second"
        );
        assert!(json["resources"][0]["uncertain"].is_null());
        let back: NodeLearning = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, n);
    }

    #[test]
    fn a_fresh_learner_says_uncertain() {
        let l = learner();
        let mut n = NodeLearning::new("grass", &l, &bw(2.0 * MB), 1.0, 24);
        assert_eq!(n.observations, 0);
        let r = &n.resources[0];
        assert_eq!(r.uncertain, Some(Uncertainty::FewObservations));
        // The prior's knees span 1/300 to 10 times the range.
        assert!(r.knee.hi / r.knee.lo > 100.0, "{:?}", r.knee);
        assert!(n.uncertain());
        n.probe = Some("bandwidth_bytes_per_second +1MB/s: never seen above 2MB/s".into());
        let text = render_text(std::slice::from_ref(&n));
        assert!(text.contains("; uncertain: few hours learned\n"), "{text}");
        assert!(
            text.ends_with(
                "  - probe: bandwidth_bytes_per_second +1MB/s: never seen above 2MB/s\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&n).expect("serializes");
        assert_eq!(json["resources"][0]["uncertain"], "few_observations");
    }

    #[test]
    fn one_level_learns_no_shape() {
        let mut l = learner();
        feed(&mut l, 10.0, 2.0 * MB, 0.3, &[3.0 * MB], 24 * 7);
        let n = NodeLearning::new("grass", &l, &bw(3.0 * MB), 1.0, 24);
        assert!(n.observations >= MIN_OBSERVATIONS);
        assert_eq!(n.resources[0].levels, 1);
        assert_eq!(n.resources[0].uncertain, Some(Uncertainty::OneLevel));
    }

    #[test]
    fn the_uncertainty_rule() {
        let b = |lo, mean, hi| Band { lo, mean, hi };
        assert_eq!(uncertainty(100, 3, &b(0.9, 1.0, 1.2)), None);
        assert_eq!(
            uncertainty(100, 3, &b(0.5, 1.0, 1.2)),
            Some(Uncertainty::WideBand)
        );
        assert_eq!(
            uncertainty(100, 3, &b(f64::NAN, 1.0, 1.2)),
            Some(Uncertainty::WideBand)
        );
        assert_eq!(
            uncertainty(23, 3, &b(1.0, 1.0, 1.0)),
            Some(Uncertainty::FewObservations)
        );
    }
}

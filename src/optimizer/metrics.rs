//! The optimizer's own metrics: `depin_optimizer_expected_gain_usd_per_hour`,
//! `depin_optimizer_confidence` (gauges of the latest plan),
//! `depin_optimizer_plan_duration_seconds` (a histogram of how long planning took), and what
//! the learner has learned per node and paid resource (`depin_optimizer_learned_*`, from a
//! [`NodeLearning`]), the probes planned (`depin_optimizer_probes_total`) and the ventures
//! applied (`depin_optimizer_ventures_total`).

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use super::explain::NodeLearning;
use super::Plan;
use crate::resources::Resource;

/// The `bound` label of the marginal value: the band's lower end, its mean, its upper end.
pub const BOUNDS: [&str; 3] = ["lower", "mean", "upper"];

/// Buckets from a small LP (≈ 0.1 ms) to a large host with slow PromQL (seconds).
pub const PLAN_DURATION_BUCKETS: [f64; 10] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Clone)]
pub struct OptimizerMetrics {
    pub expected_gain: Gauge,
    pub confidence: Gauge,
    pub plan_duration: Histogram,
    /// `{node, resource, bound}`: USD per hour of one more unit (core, byte, byte/s).
    pub learned_marginal: GaugeVec,
    /// `{node, resource}`: usable hours the curve was learned from.
    pub learned_observations: GaugeVec,
    /// `{node, resource}`: distinct amounts of the resource seen.
    pub learned_levels: GaugeVec,
    /// `{node, resource}`: 1 while the curve is uncertain (see `explain`).
    pub learned_uncertain: GaugeVec,
    /// `{node, resource}`: probe moves applied.
    pub probes: IntCounterVec,
    /// `{node}`: ventures in force that moved the node.
    pub ventures: IntCounterVec,
}

impl OptimizerMetrics {
    /// Creates the three families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<OptimizerMetrics, prometheus::Error> {
        let expected_gain = Gauge::with_opts(Opts::new(
            "depin_optimizer_expected_gain_usd_per_hour",
            "Expected gain of the latest plan over the current split, in USD per hour.",
        ))?;
        let confidence = Gauge::with_opts(Opts::new(
            "depin_optimizer_confidence",
            "Confidence of the latest plan, 0 to 1 (from the variation of the estimates).",
        ))?;
        let plan_duration = Histogram::with_opts(
            HistogramOpts::new(
                "depin_optimizer_plan_duration_seconds",
                "Time to gather the estimates and solve one plan, in seconds.",
            )
            .buckets(PLAN_DURATION_BUCKETS.to_vec()),
        )?;
        let per_resource =
            |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["node", "resource"]);
        let learned_marginal = GaugeVec::new(
            Opts::new(
                "depin_optimizer_learned_marginal_usd_per_hour",
                "USD per hour one more unit of the resource (core, byte, byte/s) earns at the allocation in force, as learned; bound: lower (10 %), mean, upper (90 %) of the posterior.",
            ),
            &["node", "resource", "bound"],
        )?;
        let learned_observations = per_resource(
            "depin_optimizer_learned_observations",
            "Usable hours the node's learned curve of the resource comes from.",
        )?;
        let learned_levels = per_resource(
            "depin_optimizer_learned_levels",
            "Distinct amounts of the resource the node held during the hours learned from.",
        )?;
        let learned_uncertain = per_resource(
            "depin_optimizer_learned_uncertain",
            "1 while the learned curve is uncertain (few hours, one level, or a wide band), else 0.",
        )?;
        let probes = IntCounterVec::new(
            Opts::new(
                "depin_optimizer_probes_total",
                "Probe moves the learning planner made to learn a node's curve of the resource, each counted once when first planned (the gates may still hold it back).",
            ),
            &["node", "resource"],
        )?;
        registry.register(Box::new(expected_gain.clone()))?;
        registry.register(Box::new(confidence.clone()))?;
        registry.register(Box::new(plan_duration.clone()))?;
        registry.register(Box::new(learned_marginal.clone()))?;
        registry.register(Box::new(learned_observations.clone()))?;
        registry.register(Box::new(learned_levels.clone()))?;
        registry.register(Box::new(learned_uncertain.clone()))?;
        let ventures = IntCounterVec::new(
            Opts::new(
                "depin_optimizer_ventures_total",
                "Moves of the node the learning planner ventured (a large expected gain not yet proven at the pessimistic end, at the exploration budget's risk), counted once in force.",
            ),
            &["node"],
        )?;
        registry.register(Box::new(probes.clone()))?;
        registry.register(Box::new(ventures.clone()))?;
        Ok(OptimizerMetrics {
            expected_gain,
            confidence,
            plan_duration,
            learned_marginal,
            learned_observations,
            learned_levels,
            learned_uncertain,
            probes,
            ventures,
        })
    }

    /// Records a plan and how long it took.
    pub fn observe(&self, plan: &Plan, seconds: f64) {
        self.expected_gain.set(plan.expected_gain_usd_per_hour);
        self.confidence.set(plan.confidence);
        self.plan_duration.observe(seconds);
    }

    /// Sets the learning gauges of `node` from `learning` (its resources not paid any more
    /// are removed first).
    pub fn observe_node(&self, node: &str, learning: &NodeLearning) {
        self.forget_node(node);
        for r in &learning.resources {
            let key = r.resource.key();
            let m = r.marginal_usd_per_hour;
            for (bound, v) in BOUNDS.into_iter().zip([m.lo, m.mean, m.hi]) {
                self.learned_marginal
                    .with_label_values(&[node, key, bound])
                    .set(v);
            }
            self.learned_observations
                .with_label_values(&[node, key])
                .set(r.observations as f64);
            self.learned_levels
                .with_label_values(&[node, key])
                .set(r.levels as f64);
            self.learned_uncertain
                .with_label_values(&[node, key])
                .set(if r.uncertain.is_some() { 1.0 } else { 0.0 });
            // The probe counter exists from 0 on, so that its increase reads before a probe.
            self.probes.with_label_values(&[node, key]);
        }
        self.ventures.with_label_values(&[node]);
    }

    /// Removes `node`'s learning gauges (a node gone from the config or the planner). The
    /// probe counter stays: a counter that vanishes and comes back reads as a reset.
    pub fn forget_node(&self, node: &str) {
        for r in Resource::ALL {
            let key = r.key();
            for bound in BOUNDS {
                let _ = self
                    .learned_marginal
                    .remove_label_values(&[node, key, bound]);
            }
            let _ = self.learned_observations.remove_label_values(&[node, key]);
            let _ = self.learned_levels.remove_label_values(&[node, key]);
            let _ = self.learned_uncertain.remove_label_values(&[node, key]);
        }
    }

    /// Counts a venture of `node`, once in force.
    pub fn venture_applied(&self, node: &str) {
        self.ventures.with_label_values(&[node]).inc();
    }

    /// Counts one probe move of `resource` of `node`, when first planned.
    pub fn probe_applied(&self, node: &str, resource: Resource) {
        self.probes.with_label_values(&[node, resource.key()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn the_latest_plan_shows_on_metrics() {
        let registry = Registry::new();
        let m = OptimizerMetrics::register(&registry).expect("fresh registry");
        let plan = Plan {
            ts_ms: 0,
            current: Default::default(),
            target: Default::default(),
            moves: Vec::new(),
            current_usd_per_hour: 1.0,
            target_usd_per_hour: 1.25,
            expected_gain_usd_per_hour: 0.25,
            improvement: 0.25,
            confidence: 0.8,
            switching_cost_usd: 0.0,
            hold_hours: 1.0,
            roi: None,
            left_out: Vec::new(),
            explanation: Vec::new(),
        };
        m.observe(&plan, 0.0004);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encodes");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("depin_optimizer_expected_gain_usd_per_hour 0.25"),
            "{text}"
        );
        assert!(text.contains("depin_optimizer_confidence 0.8"), "{text}");
        assert!(
            text.contains("depin_optimizer_plan_duration_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        // A second registration in the same registry is refused, not silently doubled.
        assert!(OptimizerMetrics::register(&registry).is_err());
    }

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encodes");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn what_was_learned_shows_per_node_and_resource() {
        use crate::optimizer::explain::{NodeLearning, ResourceLearning, Uncertainty};
        use crate::optimizer::learn::Band;
        let registry = Registry::new();
        let m = OptimizerMetrics::register(&registry).expect("fresh registry");
        let resource = |r, lo, mean, hi, uncertain| ResourceLearning {
            resource: r,
            observations: 300,
            levels: 3,
            at: 1.0,
            marginal_usd_per_hour: Band { lo, mean, hi },
            knee: Band::default(),
            uncertain,
        };
        let mut storj = NodeLearning {
            node: "storj".into(),
            observations: 300,
            shocks: 2,
            usd_per_token: 0.5,
            horizon_hours: 24,
            resources: vec![
                resource(Resource::DiskBytes, 1e-12, 2e-12, 3e-12, None),
                resource(
                    Resource::BandwidthBytesPerSecond,
                    0.0,
                    1e-9,
                    8e-9,
                    Some(Uncertainty::WideBand),
                ),
            ],
            probe: None,
        };
        m.observe_node("storj", &storj);
        assert!(
            text(&registry).contains("depin_optimizer_ventures_total{node=\"storj\"} 0"),
            "a node's venture counter reads 0 before its first venture"
        );
        m.probe_applied("storj", Resource::BandwidthBytesPerSecond);
        m.venture_applied("storj");
        let t = text(&registry);
        for line in [
            "depin_optimizer_learned_marginal_usd_per_hour{bound=\"lower\",node=\"storj\",resource=\"disk_bytes\"} 0.000000000001",
            "depin_optimizer_learned_marginal_usd_per_hour{bound=\"upper\",node=\"storj\",resource=\"bandwidth_bytes_per_second\"} 0.000000008",
            "depin_optimizer_learned_observations{node=\"storj\",resource=\"disk_bytes\"} 300",
            "depin_optimizer_learned_levels{node=\"storj\",resource=\"disk_bytes\"} 3",
            "depin_optimizer_learned_uncertain{node=\"storj\",resource=\"bandwidth_bytes_per_second\"} 1",
            "depin_optimizer_learned_uncertain{node=\"storj\",resource=\"disk_bytes\"} 0",
            "depin_optimizer_probes_total{node=\"storj\",resource=\"bandwidth_bytes_per_second\"} 1",
            "depin_optimizer_ventures_total{node=\"storj\"} 1",
        ] {
            assert!(t.contains(line), "{line} not in\n{t}");
        }
        // A resource no longer paid loses its series; a forgotten node loses all of them.
        storj.resources.truncate(1);
        m.observe_node("storj", &storj);
        let t = text(&registry);
        assert!(
            !t.contains("learned_uncertain{node=\"storj\",resource=\"bandwidth"),
            "{t}"
        );
        assert!(
            t.contains("learned_levels{node=\"storj\",resource=\"disk_bytes\"} 3"),
            "{t}"
        );
        m.forget_node("storj");
        let t = text(&registry);
        assert!(!t.contains("depin_optimizer_learned_"), "{t}");
        assert!(t.contains("depin_optimizer_probes_total"), "{t}");
        assert!(t.contains("depin_optimizer_ventures_total"), "{t}");
        assert!(
            t.contains("depin_optimizer_probes_total{node=\"storj\",resource=\"disk_bytes\"} 0"),
            "{t}"
        );
    }
}

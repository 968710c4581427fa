//! The optimizer's own metrics: `depin_optimizer_expected_gain_usd_per_hour`,
//! `depin_optimizer_confidence` (gauges of the latest plan) and
//! `depin_optimizer_plan_duration_seconds` (a histogram of how long planning took).

use prometheus::{Gauge, Histogram, HistogramOpts, Opts, Registry};

use super::Plan;

/// Buckets from a small LP (≈ 0.1 ms) to a large host with slow PromQL (seconds).
pub const PLAN_DURATION_BUCKETS: [f64; 10] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Clone)]
pub struct OptimizerMetrics {
    pub expected_gain: Gauge,
    pub confidence: Gauge,
    pub plan_duration: Histogram,
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
        registry.register(Box::new(expected_gain.clone()))?;
        registry.register(Box::new(confidence.clone()))?;
        registry.register(Box::new(plan_duration.clone()))?;
        Ok(OptimizerMetrics {
            expected_gain,
            confidence,
            plan_duration,
        })
    }

    /// Records a plan and how long it took.
    pub fn observe(&self, plan: &Plan, seconds: f64) {
        self.expected_gain.set(plan.expected_gain_usd_per_hour);
        self.confidence.set(plan.confidence);
        self.plan_duration.observe(seconds);
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
}

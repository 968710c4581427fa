//! One node's pipeline: what becomes of a poll's result. An observation turns into the node's
//! series (earnings as monotonic counters, allocation, usage, protocol gauges, skipped values),
//! its health and the log lines of its transitions; a failure into the error counters, ended
//! usage series and the backoff. A plain state machine, driven by the coordinator's tokio task
//! in `run` and by the simulator's virtual clock in `simulate`, so both run the same code.
//!
//! Earnings: a node reports cumulative totals that may drop (Storj's payout estimate restarts
//! every month, a node reinstall starts from 0). `depin_earnings_total` is monotonic the way a
//! Prometheus counter is read: a report lower than the previous one is a reset and the new
//! value is all earned since (added as the delta). A drop of less than
//! [`JITTER_TOLERANCE`] of the previous value is a correction, not a reset: it adds nothing and
//! the previous value stays the baseline. The first report of a node is taken whole (the
//! series starts at the node's own total). `depin_earnings_usd_total` adds each delta times the
//! token's price at the time the delta is seen.

use std::collections::{HashMap, HashSet};

use super::health::{HealthBoard, LastError};
use crate::adapters::prices::PriceTable;
use crate::adapters::{Health, Observation, PollError};
use crate::metrics::{ExtraKey, Metrics, NodeLabels};
use crate::resources::{Allocation, Resource};

/// A drop smaller than this fraction of the previous report is a correction, not a reset.
pub const JITTER_TOLERANCE: f64 = 0.01;

/// The earned amount in a new report, given the previous baseline; and the new baseline.
pub fn earned_delta(previous: Option<f64>, reported: f64) -> (f64, f64) {
    match previous {
        None => (reported, reported),
        Some(prev) if reported >= prev => (reported - prev, reported),
        Some(prev) if reported >= prev * (1.0 - JITTER_TOLERANCE) => (0.0, prev),
        Some(_) => (reported, reported),
    }
}

/// What a pipeline writes to: the node series, the prices the USD counters read, the health.
pub struct PollContext<'a> {
    pub metrics: &'a Metrics,
    pub prices: &'a PriceTable,
    pub health: &'a HealthBoard,
}

/// One node's state between polls.
pub struct NodePipeline {
    labels: NodeLabels,
    /// The configured allocation, shown when the node does not report its own.
    configured: Option<Allocation>,
    /// Baseline of each token's reported cumulative value.
    last_reported: HashMap<String, f64>,
    failures: u32,
    /// None before the first poll.
    up: Option<bool>,
    extras: HashSet<ExtraKey>,
    /// Protocol gauges the registry refused, logged once each.
    refused_extras: HashSet<String>,
    /// Skipped fields already logged (each is logged once; the counter counts them all).
    skipped_logged: HashSet<String>,
}

impl NodePipeline {
    pub fn new(labels: NodeLabels, configured: Option<Allocation>) -> NodePipeline {
        NodePipeline {
            labels,
            configured,
            last_reported: HashMap::new(),
            failures: 0,
            up: None,
            extras: HashSet::new(),
            refused_extras: HashSet::new(),
            skipped_logged: HashSet::new(),
        }
    }

    /// The node's series before its first poll: the error counters at 0, the configured
    /// allocation.
    pub fn start(&self, m: &Metrics) {
        m.init_poll_errors(&self.labels);
        if let Some(a) = self.configured {
            for r in Resource::ALL {
                m.set_allocation(&self.labels, r, a.get(r));
            }
        }
    }

    pub fn labels(&self) -> &NodeLabels {
        &self.labels
    }

    /// Failed polls in a row (0 after a success): the coordinator's backoff.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes one poll's result, which took `seconds`, at clock time `now_ms`.
    pub fn record(
        &mut self,
        ctx: &PollContext<'_>,
        now_ms: i64,
        seconds: f64,
        result: Result<Observation, PollError>,
    ) {
        ctx.metrics.observe_poll_duration(&self.labels, seconds);
        match result.and_then(check_observation) {
            Ok(obs) => self.on_success(ctx, now_ms, obs),
            Err(e) => self.on_failure(ctx, &e),
        }
    }

    fn on_success(&mut self, ctx: &PollContext<'_>, now_ms: i64, obs: Observation) {
        let m = ctx.metrics;
        for (token, &reported) in &obs.earnings {
            let (delta, baseline) = earned_delta(self.last_reported.get(token).copied(), reported);
            self.last_reported.insert(token.clone(), baseline);
            let usd = ctx.prices.get(token).map(|p| delta * p);
            m.add_earnings(&self.labels, token, delta, usd);
        }
        for r in Resource::ALL {
            if let Some(a) = obs.allocation.get(r).or(self.configured.map(|a| a.get(r))) {
                m.set_allocation(&self.labels, r, a);
            }
            m.set_usage(&self.labels, r, obs.usage.get(r));
        }
        for field in &obs.skipped {
            m.count_skipped(&self.labels, field);
            if self.skipped_logged.insert(field.clone()) {
                tracing::warn!(
                    node = self.labels.node(),
                    field = field.as_str(),
                    "skipping a value the node sent (wrong type, missing, or a counter that went backwards); counted in depin_adapter_values_skipped_total"
                );
            }
        }
        let mut now_extras = HashSet::new();
        for g in &obs.gauges {
            match m.set_extra(&self.labels, g) {
                Ok(k) => {
                    now_extras.insert(k);
                }
                Err(e) => {
                    if self.refused_extras.insert(g.name.clone()) {
                        tracing::warn!(node = self.labels.node(), error = %e, "ignoring a gauge the node reports");
                    }
                }
            }
        }
        for gone in self.extras.difference(&now_extras) {
            m.remove_extra(gone);
        }
        self.extras = now_extras;
        m.set_up(&self.labels, true);
        m.set_last_success(&self.labels, now_ms as f64 / 1000.0);
        m.set_consecutive_failures(&self.labels, 0);

        match self.up {
            Some(false) => tracing::info!(
                node = self.labels.node(),
                protocol = self.labels.protocol(),
                after_failures = self.failures,
                "node is up again"
            ),
            None => tracing::debug!(
                node = self.labels.node(),
                protocol = self.labels.protocol(),
                "first poll succeeded"
            ),
            Some(true) => {}
        }
        self.up = Some(true);
        self.failures = 0;
        let degraded = match obs.health {
            Health::Healthy => None,
            Health::Degraded(why) => Some(why),
        };
        ctx.health.update(self.labels.node(), |h| {
            h.up = true;
            h.polled = true;
            h.last_success_ms = Some(now_ms);
            h.consecutive_failures = 0;
            h.last_error = None;
            h.degraded = degraded;
        });
    }

    fn on_failure(&mut self, ctx: &PollContext<'_>, e: &PollError) {
        let m = ctx.metrics;
        self.failures = self.failures.saturating_add(1);
        m.set_up(&self.labels, false);
        m.count_poll_error(&self.labels, e.reason());
        m.set_consecutive_failures(&self.labels, self.failures);
        // What the node uses is unknown now: end those series instead of repeating old values.
        for r in Resource::ALL {
            m.set_usage(&self.labels, r, None);
        }
        for k in self.extras.drain() {
            m.remove_extra(&k);
        }
        if self.up != Some(false) {
            tracing::warn!(
                node = self.labels.node(),
                protocol = self.labels.protocol(),
                reason = e.reason(),
                error = %e,
                "node is down"
            );
        }
        self.up = Some(false);
        let failures = self.failures;
        let err = LastError {
            reason: e.reason().to_string(),
            message: e.to_string(),
        };
        ctx.health.update(self.labels.node(), |h| {
            h.up = false;
            h.polled = true;
            h.consecutive_failures = failures;
            h.last_error = Some(err);
        });
    }
}

/// Leaves out earnings a counter cannot take (negative or non-finite) and counts them as
/// skipped (`field="earnings/<token>"`): the node answered, so the rest of the observation holds.
pub fn check_observation(mut obs: Observation) -> Result<Observation, PollError> {
    let bad: Vec<String> = obs
        .earnings
        .iter()
        .filter(|(_, v)| !v.is_finite() || **v < 0.0)
        .map(|(t, _)| t.clone())
        .collect();
    for token in bad {
        obs.earnings.remove(&token);
        obs.skipped.push(format!("earnings/{token}"));
    }
    Ok(obs)
}

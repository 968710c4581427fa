//! One node's pipeline: what becomes of a poll's result. An observation turns into the node's
//! series (allocation, usage, protocol gauges, skipped values), its readings into the earnings
//! ledger's counters, its health and the log lines of its transitions; a failure into the
//! error counters, ended usage series and the backoff. A plain state machine, driven by the
//! coordinator's tokio task in `run` and by the simulator's virtual clock in `simulate`, so
//! both run the same code.
//!
//! The primary call ([`NodePipeline::record`]) decides whether the node is up. A secondary
//! endpoint's result ([`NodePipeline::record_endpoint`]) moves only its own series: on failure
//! they keep their last values, `depin_adapter_endpoint_up` turns 0 and its last success time
//! stays, so their age shows; the node stays up.
//!
//! Earnings: the readings of an answer (and the generic kinds' cumulative totals, read as
//! Prometheus counters) go to the ledger ([`crate::earnings`]), which journals them before any
//! counter moves; the paging positions it journaled are handed back to the caller, which gives
//! them to the adapter.

use std::collections::{HashMap, HashSet};

use super::health::{HealthBoard, LastError};
use crate::adapters::decimal::Decimal;
use crate::adapters::prices::PriceTable;
use crate::adapters::reading::Reading;
use crate::adapters::{Health, Observation, PollError};
use crate::earnings::{Earnings, Event};
use crate::metrics::{ExtraKey, Metrics, NodeLabels};
use crate::resources::{Allocation, Resource};

/// Paging positions the ledger journaled: `(name, value)` for [`crate::adapters::Adapter::set_cursor`].
pub type Cursors = Vec<(String, serde_json::Value)>;

/// The key of the primary call's gauges.
const PRIMARY: &str = "";

/// What a pipeline writes to: the node series, the prices the USD counters read, the health.
pub struct PollContext<'a> {
    pub metrics: &'a Metrics,
    pub prices: &'a PriceTable,
    pub health: &'a HealthBoard,
    pub earnings: &'a Earnings,
}

/// One node's state between polls.
pub struct NodePipeline {
    labels: NodeLabels,
    /// The configured allocation, shown when the node does not report its own.
    configured: Option<Allocation>,
    failures: u32,
    /// None before the first poll.
    up: Option<bool>,
    /// The protocol gauges shown, per endpoint ([`PRIMARY`] for the primary call).
    extras: HashMap<String, HashSet<ExtraKey>>,
    /// Whether each secondary endpoint's last call succeeded.
    endpoint_up: HashMap<String, bool>,
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
            failures: 0,
            up: None,
            extras: HashMap::new(),
            endpoint_up: HashMap::new(),
            refused_extras: HashSet::new(),
            skipped_logged: HashSet::new(),
        }
    }

    /// The node's series before its first poll: the error counters at 0, the configured
    /// allocation, its earnings counters as the ledger holds them.
    pub fn start(&self, m: &Metrics, earnings: &Earnings) {
        earnings.add_node(self.labels.values().to_vec());
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

    /// Takes one poll's result, which took `seconds`, at clock time `now_ms`; returns the
    /// paging positions journaled.
    pub fn record(
        &mut self,
        ctx: &PollContext<'_>,
        now_ms: i64,
        seconds: f64,
        result: Result<Observation, PollError>,
    ) -> Cursors {
        ctx.metrics.observe_poll_duration(&self.labels, seconds);
        match result.and_then(check_observation) {
            Ok(obs) => self.on_success(ctx, now_ms, obs),
            Err(e) => {
                self.on_failure(ctx, &e);
                Vec::new()
            }
        }
    }

    /// Takes the result of one call of the secondary endpoint `endpoint`.
    pub fn record_endpoint(
        &mut self,
        ctx: &PollContext<'_>,
        now_ms: i64,
        endpoint: &str,
        result: Result<Observation, PollError>,
    ) -> Cursors {
        let m = ctx.metrics;
        let was_up = self
            .endpoint_up
            .insert(endpoint.to_string(), result.is_ok());
        match result.and_then(check_observation) {
            Ok(obs) => {
                if was_up == Some(false) {
                    tracing::info!(
                        node = self.labels.node(),
                        endpoint,
                        "endpoint answers again"
                    );
                }
                m.set_endpoint(&self.labels, endpoint, true, Some(now_ms as f64 / 1000.0));
                let cursors = self.book(ctx, now_ms, &obs);
                self.show(ctx, endpoint, &obs);
                cursors
            }
            Err(e) => {
                if was_up != Some(false) {
                    tracing::warn!(
                        node = self.labels.node(),
                        endpoint,
                        reason = e.reason(),
                        error = %e,
                        "a secondary endpoint of the node fails; its series keep their last values, the node stays up"
                    );
                }
                m.set_endpoint(&self.labels, endpoint, false, None);
                Vec::new()
            }
        }
    }

    /// Hands the answer's readings to the ledger; returns the paging positions journaled.
    fn book(&mut self, ctx: &PollContext<'_>, now_ms: i64, obs: &Observation) -> Cursors {
        let mut readings = obs.readings.clone();
        for (token, v) in &obs.earnings {
            if let Ok(d) = Decimal::parse(&v.to_string()) {
                readings.push(Reading::counter(token, d));
            }
        }
        if readings.is_empty() {
            return Vec::new();
        }
        let node = self.labels.node();
        let account = obs.account.as_deref().unwrap_or(node);
        let price = |t: &str| ctx.prices.get(t);
        match ctx.earnings.apply(node, account, now_ms, &readings, &price) {
            Ok(change) => {
                for e in &change.events {
                    log_event(node, e);
                }
                change.cursors
            }
            Err(e) => {
                // Nothing moved; the node's next answer carries the same money.
                tracing::error!(node, error = %e, "cannot record earnings; they are read again at the next poll");
                Vec::new()
            }
        }
    }

    /// The answer's skipped values and protocol gauges (those of `endpoint` only).
    fn show(&mut self, ctx: &PollContext<'_>, endpoint: &str, obs: &Observation) {
        let m = ctx.metrics;
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
        let before = self.extras.insert(endpoint.to_string(), now_extras);
        let now = &self.extras[endpoint];
        for gone in before.unwrap_or_default().difference(now) {
            // Another endpoint may show the same series now.
            if !self.extras.values().any(|s| s.contains(gone)) {
                m.remove_extra(gone);
            }
        }
    }

    fn on_success(&mut self, ctx: &PollContext<'_>, now_ms: i64, obs: Observation) -> Cursors {
        let m = ctx.metrics;
        let cursors = self.book(ctx, now_ms, &obs);
        for r in Resource::ALL {
            if let Some(a) = obs.allocation.get(r).or(self.configured.map(|a| a.get(r))) {
                m.set_allocation(&self.labels, r, a);
            }
            m.set_usage(&self.labels, r, obs.usage.get(r));
        }
        self.show(ctx, PRIMARY, &obs);
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
        cursors
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
        // The primary call's gauges are unknown now; a secondary endpoint's keep their age.
        for k in self.extras.remove(PRIMARY).unwrap_or_default() {
            if !self.extras.values().any(|s| s.contains(&k)) {
                m.remove_extra(&k);
            }
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

/// Logs what an operator should hear about: a correction with its cause, a reversal.
fn log_event(node: &str, e: &Event) {
    match e {
        Event::Corrected {
            stream,
            period,
            token,
            amount,
            cause,
        } => tracing::warn!(
            node,
            stream = stream.as_str(),
            period = period.as_str(),
            amount = %amount,
            token = token.as_str(),
            cause = cause.as_deref().unwrap_or("the value stayed down"),
            "a drop of what the node reports is final: counted in depin_earnings_corrections_total, never credited again"
        ),
        Event::Reversed {
            stream,
            period,
            amount,
        } => tracing::info!(
            node,
            stream = stream.as_str(),
            period = period.as_str(),
            amount = %amount,
            "a pending drop came back; nothing is credited twice"
        ),
        Event::LateReading { stream, period } => tracing::debug!(
            node,
            stream = stream.as_str(),
            period = period.as_str(),
            "ignoring a reading of a closed period"
        ),
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

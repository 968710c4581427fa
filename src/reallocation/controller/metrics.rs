//! The controller's metrics: reallocations by outcome, the last one's time and realized gain,
//! paused and dry-run flags, each gate's verdict on the last plan and the last plan's target.

use prometheus::{Gauge, GaugeVec, IntCounterVec, Opts, Registry};

use crate::reallocation::history::Outcome;

/// The controller's metrics.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub reallocations: IntCounterVec,
    pub last_timestamp: Gauge,
    pub realized_gain: Gauge,
    pub paused: Gauge,
    pub dry_run: Gauge,
    pub gate_verdict: GaugeVec,
    /// `depin_planned_allocation_<resource>{node,protocol}`: the last plan's target, one
    /// family per resource like `depin_allocation_*`, so dashboards set them side by side.
    pub planned: Vec<(crate::resources::Resource, GaugeVec)>,
}

impl ControllerMetrics {
    pub fn register(registry: &Registry) -> Result<ControllerMetrics, prometheus::Error> {
        let reallocations = IntCounterVec::new(
            Opts::new(
                "depin_reallocations_total",
                "Reallocations by outcome: applied, rolled_back, rejected (gates or pre-flight), rollback_failed.",
            ),
            &["outcome"],
        )?;
        let last_timestamp = Gauge::with_opts(Opts::new(
            "depin_reallocation_last_timestamp_seconds",
            "When the last reallocation that touched nodes ended, in seconds since the epoch.",
        ))?;
        let realized_gain = Gauge::with_opts(Opts::new(
            "depin_reallocation_realized_gain_usd_per_hour",
            "Realized gain of the last measured reallocation: earnings rate over the hold period after it minus before it, in USD per hour.",
        ))?;
        let paused = Gauge::with_opts(Opts::new(
            "depin_controller_paused",
            "1 while the reallocation controller is paused, else 0.",
        ))?;
        let dry_run = Gauge::with_opts(Opts::new(
            "depin_controller_dry_run",
            "1 when the controller only plans and logs (--controller.dry-run), else 0.",
        ))?;
        let gate_verdict = GaugeVec::new(
            Opts::new(
                "depin_gate_verdict",
                "Verdict of each gate on the last plan: 1 pass, 0 block.",
            ),
            &["gate"],
        )?;
        let mut planned = Vec::new();
        for r in crate::resources::Resource::ALL {
            let g = GaugeVec::new(
                Opts::new(
                    format!("depin_planned_allocation_{}", r.key()),
                    format!(
                        "The node's share of the host in the last plan, in {}.",
                        r.unit()
                    ),
                ),
                &["node", "protocol"],
            )?;
            registry.register(Box::new(g.clone()))?;
            planned.push((r, g));
        }
        for o in Outcome::ALL {
            reallocations.with_label_values(&[o.as_str()]);
        }
        registry.register(Box::new(reallocations.clone()))?;
        registry.register(Box::new(last_timestamp.clone()))?;
        registry.register(Box::new(realized_gain.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(dry_run.clone()))?;
        registry.register(Box::new(gate_verdict.clone()))?;
        Ok(ControllerMetrics {
            reallocations,
            last_timestamp,
            realized_gain,
            paused,
            dry_run,
            gate_verdict,
            planned,
        })
    }
}

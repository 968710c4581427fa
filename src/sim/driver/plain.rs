//! The strategies without the pipeline (static and the oracle): an allocation chosen each
//! hour, set on the simulated nodes directly, counted by the same ledger.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ledger::{time_in_allocation, Ledger};
use super::report::StrategyResult;
use super::Setup;
use crate::adapters::Adapter;
use crate::app::stepped::now_or_never;
use crate::clock::{ManualClock, SharedClock, HOUR_MS};
use crate::resources::Allocation;
use crate::sim::node::ScenarioNode;
use crate::sim::scenario::Scenario;

/// A strategy without the pipeline: `choose(hour_start)` gives the allocation of each hour
/// (None: keep).
pub(super) fn run_plain(
    sc: &Scenario,
    s: &Setup,
    free_switching: bool,
    mut choose: impl FnMut(i64) -> Option<BTreeMap<String, Allocation>>,
) -> StrategyResult {
    let clock = ManualClock::new(s.start);
    let shared: SharedClock = Arc::new(clock.clone());
    let nodes: Vec<Arc<ScenarioNode>> = sc
        .nodes
        .iter()
        .map(|n| {
            let mut spec = n.clone();
            if free_switching {
                spec.switch_cost_usd = 0.0;
                spec.switch_downtime_ms = 0;
            }
            ScenarioNode::new(&spec, s.seed, shared.clone())
        })
        .collect();
    let mut ledger = Ledger::new(nodes.len(), s.start);
    let mut path: Vec<(i64, BTreeMap<String, Allocation>)> = Vec::new();
    let mut changes = 0;
    let mut t = s.start;
    let mut next_choice = s.start;
    while t < s.end {
        if t >= next_choice {
            if let Some(a) = choose(t) {
                if path.last().map(|p| &p.1) != Some(&a) {
                    if !path.is_empty() {
                        changes += 1;
                    }
                    for n in &nodes {
                        if let Some(to) = a.get(n.name()) {
                            let _ = now_or_never(crate::adapters::Allocatable::set_allocation(
                                n.as_ref(),
                                *to,
                            ));
                        }
                    }
                    path.push((t, a));
                }
            }
            next_choice += HOUR_MS;
        }
        t = (t + s.poll_ms).min(s.end);
        clock.set(t);
        ledger.step(&nodes, sc, t);
    }
    if path.is_empty() {
        path.push((
            s.start,
            sc.nodes
                .iter()
                .map(|n| (n.name.clone(), n.allocation))
                .collect(),
        ));
    }
    let cost: f64 = nodes.iter().map(|n| n.switches().1).sum();
    StrategyResult {
        earned_usd: ledger.usd - cost,
        reallocations: changes,
        switching_cost_usd: cost,
        time_in_allocation_hours: time_in_allocation(sc, &path, s.end),
        path,
        earned_curve: ledger.curve,
    }
}

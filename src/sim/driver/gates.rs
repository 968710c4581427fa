//! The gates checked from a run's history: applied reallocations per rolling hour and the
//! time each node held an allocation.

use std::collections::{BTreeMap, BTreeSet};

use super::report::GateCheck;
use crate::clock::HOUR_MS;
use crate::optimizer::OptimizationRules;
use crate::reallocation::Outcome;

/// Verifies from the history that the applied reallocations kept to the gates.
pub fn check_gates(
    rules: &OptimizationRules,
    history: &[crate::reallocation::history::Summary],
) -> GateCheck {
    let g = &rules.gates;
    let hold_ms = g.min_hold.as_millis() as i64;
    let mut applied: Vec<_> = history
        .iter()
        .filter(|h| h.outcome == Some(Outcome::Applied))
        .collect();
    applied.sort_by_key(|h| h.started_ms);
    let mut violations = Vec::new();
    let mut most = 0;
    for (i, h) in applied.iter().enumerate() {
        let in_hour = applied[i..]
            .iter()
            .take_while(|o| o.started_ms < h.started_ms + HOUR_MS)
            .count();
        most = most.max(in_hour);
    }
    if most > g.max_reallocations_per_hour as usize {
        violations.push(format!(
            "{most} reallocations within one hour, more than max_reallocations_per_hour {}",
            g.max_reallocations_per_hour
        ));
    }
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    let mut shortest: Option<i64> = None;
    for h in &applied {
        // A reallocation may have several steps for one node (a release, then an acquire).
        let touched: BTreeSet<&str> = h.steps.iter().map(|s| s.node.as_str()).collect();
        for node in touched {
            if let Some(&prev) = last.get(node) {
                let held = h.started_ms - prev;
                shortest = Some(shortest.map_or(held, |s: i64| s.min(held)));
                if held < hold_ms {
                    violations.push(format!(
                        "node {} changed again after {}s (reallocation {}, source {:?}), less than min_hold {}s",
                        node,
                        held / 1000,
                        h.id,
                        h.source,
                        hold_ms / 1000
                    ));
                }
            }
            last.insert(node, h.finished_ms.unwrap_or(h.started_ms));
        }
    }
    GateCheck {
        max_reallocations_per_hour: g.max_reallocations_per_hour,
        min_hold_seconds: g.min_hold.as_secs_f64(),
        most_in_an_hour: most,
        shortest_hold_seconds: shortest.map(|s| s as f64 / 1000.0),
        ok: violations.is_empty(),
        violations,
    }
}

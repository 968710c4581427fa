//! The gates checked from a run's history: applied reallocations per rolling hour, day and 30
//! days, and the time each node held an allocation.

use std::collections::{BTreeMap, BTreeSet};

use super::report::GateCheck;
use crate::clock::{DAY_MS, HOUR_MS};
use crate::optimizer::OptimizationRules;
use crate::reallocation::gates::BUDGET_WINDOW_MS;
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
    // The most applied reallocations that started within any `window_ms`.
    let most_within = |window_ms: i64| {
        (0..applied.len())
            .map(|i| {
                applied[i..]
                    .iter()
                    .take_while(|o| o.started_ms < applied[i].started_ms + window_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let most = most_within(HOUR_MS);
    if most > g.max_reallocations_per_hour as usize {
        violations.push(format!(
            "{most} reallocations within one hour, more than max_reallocations_per_hour {}",
            g.max_reallocations_per_hour
        ));
    }
    let most_in_a_day = most_within(DAY_MS);
    let most_in_30_days = most_within(BUDGET_WINDOW_MS);
    for (limit, n, window_ms, key) in [
        (
            g.max_reallocations_per_day,
            most_in_a_day,
            DAY_MS,
            "max_reallocations_per_day",
        ),
        (
            g.max_reallocations_per_30_days,
            most_in_30_days,
            BUDGET_WINDOW_MS,
            "max_reallocations_per_30_days",
        ),
    ] {
        let Some(limit) = limit else { continue };
        if n > limit as usize {
            violations.push(format!(
                "{n} reallocations within {}, more than {key} {limit}",
                crate::reallocation::gates::fmt_duration(window_ms)
            ));
        }
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
        max_reallocations_per_day: g.max_reallocations_per_day,
        most_in_a_day,
        max_reallocations_per_30_days: g.max_reallocations_per_30_days,
        most_in_30_days,
        shortest_hold_seconds: shortest.map(|s| s as f64 / 1000.0),
        ok: violations.is_empty(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reallocation::history::{Source, Step, Summary};
    use crate::resources::Allocation;

    fn applied(id: u64, started_ms: i64, node: &str) -> Summary {
        Summary {
            id,
            started_ms,
            source: Source::Controller,
            steps: vec![Step {
                node: node.to_string(),
                from: Allocation::default(),
                to: Allocation::default(),
            }],
            summary: String::new(),
            expected_gain_usd_per_hour: None,
            outcome: Some(Outcome::Applied),
            reason: String::new(),
            finished_ms: Some(started_ms),
            steps_done: 1,
            undo_errors: Vec::new(),
            realized_gain_usd_per_hour: None,
            realized_note: None,
            blocked_by: Vec::new(),
            blocked_by_preflight: false,
        }
    }

    #[test]
    fn the_daily_and_30_day_limits_are_checked_from_the_history() {
        let mut rules = crate::optimizer::parse_str(
            "gates:\n  max_reallocations_per_day: 2\n  max_reallocations_per_30_days: 3\nnodes:\n  a:\n    value_per_hour: 'vector(1)'\n",
            "t.yml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Every 13 hours, alternating nodes: within the hold and the hourly and daily limits,
        // but four in 40 hours is more than three in 30 days.
        let h: Vec<Summary> = (0..4)
            .map(|i| applied(i, i as i64 * 13 * HOUR_MS, ["a", "b"][i as usize % 2]))
            .collect();
        let c = check_gates(&rules, &h);
        assert!(!c.ok);
        assert_eq!(
            (c.most_in_an_hour, c.most_in_a_day, c.most_in_30_days),
            (1, 2, 4)
        );
        assert_eq!(
            c.violations,
            ["4 reallocations within 30days, more than max_reallocations_per_30_days 3"]
        );
        rules.gates.max_reallocations_per_30_days = Some(4);
        assert!(check_gates(&rules, &h).ok);
        let h: Vec<Summary> = (0..3)
            .map(|i| applied(i, i as i64 * 2 * HOUR_MS, ["a", "b", "c"][i as usize]))
            .collect();
        assert_eq!(
            check_gates(&rules, &h).violations,
            ["3 reallocations within 1day, more than max_reallocations_per_day 2"]
        );
    }
}

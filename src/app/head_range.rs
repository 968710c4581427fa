//! Keeps the time series storage's head (what it holds in memory) as long as the longest range
//! the loaded rules and the controller's estimators read, so their evaluations never go to the
//! block files: the rule manager's groups are looked at again every minute (they may be
//! reloaded), the optimization rules once when the controller starts.

use std::sync::Arc;
use std::time::Duration;

use crate::optimizer::{NodeRule, OptimizationRules, Query};
use crate::promql::lookback::farthest_ms;
use crate::rules::RuleManager;
use crate::tsdb::Db;

/// How far back the optimization rules' estimators read (their history subqueries included).
pub fn optimization_rules_ms(rules: &OptimizationRules, lookback_delta_ms: i64) -> i64 {
    let query = |q: &Query| {
        let history = q
            .history
            .as_ref()
            .map_or(0, |h| farthest_ms(h, lookback_delta_ms));
        farthest_ms(&q.expr, lookback_delta_ms).max(history)
    };
    let node = |n: &NodeRule| {
        n.value_per_hour
            .iter()
            .chain(&n.demand)
            .chain(n.usage.values())
            .chain(n.response.values().filter_map(|r| r.demand_cap.as_ref()))
            .map(query)
            .max()
            .unwrap_or(0)
    };
    rules
        .protocols
        .values()
        .chain(rules.nodes.values())
        .map(node)
        .max()
        .unwrap_or(0)
}

/// How far back the loaded recording and alerting rules read, their groups' query offsets
/// included.
pub fn rule_groups_ms(rules: &RuleManager, lookback_delta_ms: i64) -> i64 {
    rules
        .groups()
        .iter()
        .map(|g| {
            let g = g.lock().unwrap_or_else(|e| e.into_inner());
            let offset = g.group.query_offset_ms().unwrap_or(0);
            g.group
                .rules()
                .iter()
                .map(|r| farthest_ms(r.expr(), lookback_delta_ms) + offset)
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// Every `every`, asks `db` to keep what the rules (and `estimators_ms`) read in memory, until
/// `stop` turns true.
pub async fn keep(
    db: Arc<Db>,
    rules: Arc<RuleManager>,
    estimators_ms: i64,
    lookback_delta_ms: i64,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let want = rule_groups_ms(&rules, lookback_delta_ms).max(estimators_ms);
        let db = db.clone();
        // Growing the range reads the files: off the async threads.
        let _ = tokio::task::spawn_blocking(move || db.require_head_range(want)).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_optimization_rules_read_a_day_back() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/optimization.yml");
        let rules = crate::optimizer::load_file(&path).unwrap();
        let ms = optimization_rules_ms(&rules, 300_000);
        assert!(ms >= 86_400_000, "{ms}");
        assert!(ms < 3 * 86_400_000, "{ms}");
    }
}

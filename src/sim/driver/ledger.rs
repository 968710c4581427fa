//! The ledger every strategy is counted by (token earnings per step times the price then),
//! and the time each node spent in each allocation.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::HOUR_MS;
use crate::optimizer;
use crate::resources::{Allocation, Resource};
use crate::sim::node::ScenarioNode;
use crate::sim::scenario::Scenario;

/// Counts USD the same way for every strategy: token earnings per step × price then.
pub(super) struct Ledger {
    pub(super) last_tokens: Vec<f64>,
    pub(super) usd: f64,
    pub(super) curve: Vec<(i64, f64)>,
    pub(super) next_sample: i64,
}

impl Ledger {
    pub(super) fn new(n: usize, start: i64) -> Ledger {
        Ledger {
            last_tokens: vec![0.0; n],
            usd: 0.0,
            curve: vec![(start, 0.0)],
            next_sample: start + HOUR_MS,
        }
    }

    pub(super) fn step(&mut self, nodes: &[Arc<ScenarioNode>], sc: &Scenario, now: i64) {
        for (i, n) in nodes.iter().enumerate() {
            let t = n.earned_tokens();
            self.usd += (t - self.last_tokens[i]) * sc.price(n.token(), now);
            self.last_tokens[i] = t;
        }
        if now >= self.next_sample {
            self.curve.push((now, self.usd));
            self.next_sample += HOUR_MS;
        }
    }
}

pub(super) fn fmt_alloc(a: &Allocation, used: &[Resource]) -> String {
    used.iter()
        .map(|&r| format!("{}={}", r.key(), optimizer::fmt_amount(r, a.get(r))))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn time_in_allocation(
    sc: &Scenario,
    path: &[(i64, BTreeMap<String, Allocation>)],
    end: i64,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (i, (t, allocs)) in path.iter().enumerate() {
        let until = path.get(i + 1).map(|p| p.0).unwrap_or(end);
        for n in &sc.nodes {
            if let Some(a) = allocs.get(&n.name) {
                *out.entry(n.name.clone())
                    .or_default()
                    .entry(fmt_alloc(a, &n.protocol.resources()))
                    .or_default() += (until - t) as f64 / HOUR_MS as f64;
            }
        }
    }
    out
}

//! The hindsight oracle: for every hour, the allocation that earns most in the true market of
//! that hour, water-filled per resource within the rules' capacity, reserves and bounds.

use std::collections::BTreeMap;

use crate::adapters::sim::market::Market;
use crate::clock::HOUR_MS;
use crate::optimizer::OptimizationRules;
use crate::resources::{Allocation, Resource};
use crate::sim::scenario::Scenario;

/// The oracle's choice for the hour starting at `h0`: per resource, the capacity the rules
/// leave (capacity − reserve) water-filled over the nodes by the true value of the hour
/// (Σ over its minutes of price × rate × noise, 0 while the node is down), within bounds.
pub(super) fn oracle_choice(
    sc: &Scenario,
    rules: &OptimizationRules,
    markets: &mut [Market],
    h0: i64,
    end: i64,
) -> BTreeMap<String, Allocation> {
    let available = rules.available(&sc.capacity);
    // weight[node][resource]: USD-weighted rate that the resource's saturation unlocks.
    let mut weights: Vec<BTreeMap<Resource, f64>> = vec![BTreeMap::new(); sc.nodes.len()];
    for (i, n) in sc.nodes.iter().enumerate() {
        let m = &mut markets[i];
        let mut t = h0;
        while t < (h0 + HOUR_MS).min(end) {
            if !m.is_down(t) {
                let price = sc.price(n.protocol.token(), t);
                let noise = m.noise_at(t);
                for (rate, res) in m.component_rates(t) {
                    for r in res {
                        *weights[i].entry(*r).or_default() += price * rate * noise / 60.0;
                    }
                }
            }
            t += 60_000;
        }
    }
    let mut out: BTreeMap<String, Allocation> = sc
        .nodes
        .iter()
        .map(|n| (n.name.clone(), Allocation::default()))
        .collect();
    for r in Resource::ALL {
        let items: Vec<(f64, f64, f64, f64)> = sc
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (lo, hi) = rules
                    .for_node(&n.name, n.protocol.name())
                    .and_then(|nr| nr.bounds.get(&r).copied())
                    .unwrap_or((0.0, f64::INFINITY));
                let w = weights[i].get(&r).copied().unwrap_or(0.0);
                let need = n.market.need.get(r).max(f64::MIN_POSITIVE);
                (w, need, lo, hi)
            })
            .collect();
        let alloc = water_fill(&items, available.get(r));
        for (i, n) in sc.nodes.iter().enumerate() {
            if let Some(a) = out.get_mut(&n.name) {
                a.set(r, alloc[i]);
            }
        }
    }
    out
}

/// Maximizes Σ wᵢ(1 − e^(−aᵢ/needᵢ)) with Σ aᵢ ≤ cap and loᵢ ≤ aᵢ ≤ hiᵢ: every node at its
/// lower bound, the rest where the marginal values are equal (bisection on the multiplier).
pub fn water_fill(items: &[(f64, f64, f64, f64)], cap: f64) -> Vec<f64> {
    let lows: f64 = items.iter().map(|i| i.2).sum();
    if lows >= cap {
        let k = if lows > 0.0 { cap.max(0.0) / lows } else { 0.0 };
        return items.iter().map(|i| i.2 * k).collect();
    }
    let at = |lambda: f64| -> Vec<f64> {
        items
            .iter()
            .map(|&(w, need, lo, hi)| {
                if w <= 0.0 {
                    return lo;
                }
                // f'(a) = w/need · e^(−a/need) = λ  ⇒  a = need · ln(w / (need λ)).
                let a = need * (w / (need * lambda)).ln();
                a.clamp(lo, hi.min(cap))
            })
            .collect()
    };
    let (mut lo_l, mut hi_l) = (-80.0f64, 80.0f64); // ln λ
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    if sum(&at(lo_l.exp())) <= cap {
        return at(lo_l.exp());
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo_l + hi_l);
        if sum(&at(mid.exp())) > cap {
            lo_l = mid;
        } else {
            hi_l = mid;
        }
    }
    at(hi_l.exp())
}

//! The hindsight oracles: for every hour (`oracle`) or every UTC day (`daily_oracle`), the
//! allocation that earns most in the true market of that span, water-filled per resource
//! within the rules' capacity, reserves and bounds.

use std::collections::BTreeMap;

use super::plain::run_plain;
use super::report::StrategyResult;
use super::Setup;
use crate::adapters::sim::market::Market;
use crate::clock::{DAY_MS, HOUR_MS};
use crate::optimizer::OptimizationRules;
use crate::resources::{Allocation, Resource};
use crate::sim::scenario::Scenario;

/// The hourly and the daily oracle, run over `s` (free switching). They read the true market:
/// the same draws as the nodes', each from its own copy, asked about each span once, in order
/// (a market's demand walk restarts when asked about an earlier hour).
pub(super) fn run_oracles(
    sc: &Scenario,
    s: &Setup,
    rules: &OptimizationRules,
) -> (StrategyResult, StrategyResult) {
    let fresh_markets = || -> Vec<Market> {
        sc.nodes
            .iter()
            .map(|n| {
                Market::new(
                    n.protocol,
                    n.market.clone(),
                    s.seed ^ crate::adapters::sim::market::seed_from_name(&n.name),
                )
            })
            .collect()
    };
    let mut markets = fresh_markets();
    let oracle = run_plain(sc, s, true, |h0| {
        Some(oracle_choice(sc, rules, &mut markets, h0, s.end))
    });
    let mut markets = fresh_markets();
    let mut today: Option<(i64, BTreeMap<String, Allocation>)> = None;
    let daily = run_plain(sc, s, true, |h0| {
        let day = h0.div_euclid(DAY_MS);
        if today.as_ref().map(|d| d.0) != Some(day) {
            let a = daily_oracle_choice(sc, rules, &mut markets, h0, (s.start, s.end));
            today = Some((day, a));
        }
        today.as_ref().map(|d| d.1.clone())
    });
    (oracle, daily)
}

/// The oracle's choice for the hour starting at `h0`.
fn oracle_choice(
    sc: &Scenario,
    rules: &OptimizationRules,
    markets: &mut [Market],
    h0: i64,
    end: i64,
) -> BTreeMap<String, Allocation> {
    choice_over(sc, rules, markets, h0, (h0 + HOUR_MS).min(end))
}

/// The daily oracle's choice for the UTC day that holds `t` (cut to the run's `[start, end)`):
/// one allocation for the whole day, so it changes at most once a day, at midnight — the
/// ceiling of a strategy that knows the market but moves as seldom as the gates ask.
fn daily_oracle_choice(
    sc: &Scenario,
    rules: &OptimizationRules,
    markets: &mut [Market],
    t: i64,
    (start, end): (i64, i64),
) -> BTreeMap<String, Allocation> {
    let day = t.div_euclid(DAY_MS) * DAY_MS;
    choice_over(sc, rules, markets, day.max(start), (day + DAY_MS).min(end))
}

/// The allocation that earns most over `[from, to)`: per resource, the capacity the rules
/// leave (capacity − reserve) water-filled over the nodes by the true value of the span
/// (Σ over its minutes of price × rate × noise, 0 while the node is down), within bounds.
/// A resource's saturation does not depend on time, so the best allocation for a span is the
/// water-filling of the summed weights.
fn choice_over(
    sc: &Scenario,
    rules: &OptimizationRules,
    markets: &mut [Market],
    from: i64,
    to: i64,
) -> BTreeMap<String, Allocation> {
    let available = rules.available(&sc.capacity);
    // weight[node][resource]: USD-weighted rate that the resource's saturation unlocks.
    let mut weights: Vec<BTreeMap<Resource, f64>> = vec![BTreeMap::new(); sc.nodes.len()];
    for (i, n) in sc.nodes.iter().enumerate() {
        let m = &mut markets[i];
        let mut t = from;
        while t < to {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{DAY_MS, HOUR_MS};

    /// Two Streamr nodes sharing the uplink, one busy at noon and idle at midnight, the other
    /// the reverse; no drift, no noise.
    fn opposite_days() -> (Scenario, OptimizationRules, Vec<Market>) {
        let market = |peak: f64| {
            format!(
                "{{rate_per_hour: 10, need: {{bandwidth_bytes_per_second: 1MB}}, daily_amplitude: 0.9, peak_hour: {peak}, weekly_amplitude: 0, drift: 0, noise: 0}}"
            )
        };
        let text = format!(
            "days: 2\nseed: 1\nhost:\n  capacity: {{cpu_cores: 4, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 4MB}}\nprices:\n  DATA: 1\nnodes:\n  - name: noon\n    protocol: streamr\n    allocation: {{bandwidth_bytes_per_second: 2MB}}\n    market: {}\n  - name: midnight\n    protocol: streamr\n    allocation: {{bandwidth_bytes_per_second: 2MB}}\n    market: {}\n",
            market(12.0),
            market(0.0)
        );
        let sc =
            crate::sim::scenario::parse_str(&text, "t.yml", "t").unwrap_or_else(|e| panic!("{e}"));
        let rules = crate::optimizer::parse_str(
            "nodes:\n  noon:\n    value_per_hour: 'vector(1)'\n",
            "rules.yml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let markets = sc
            .nodes
            .iter()
            .map(|n| Market::new(n.protocol, n.market.clone(), 1))
            .collect();
        (sc, rules, markets)
    }

    fn bandwidth(c: &BTreeMap<String, Allocation>, node: &str) -> f64 {
        c[node].get(Resource::BandwidthBytesPerSecond)
    }

    #[test]
    fn the_hourly_oracle_follows_the_day_and_the_daily_one_holds_the_split_of_the_whole_day() {
        let (sc, rules, mut markets) = opposite_days();
        let (start, end) = (sc.start_ms, sc.start_ms + 2 * DAY_MS);
        let noon = sc.start_ms + 12 * HOUR_MS;
        let at_noon = oracle_choice(&sc, &rules, &mut markets, noon, end);
        // Demand 1.9 against 0.1 at 1 MB/s knees: ln 19 MB/s more for the busy one.
        assert!(bandwidth(&at_noon, "noon") > 3.3e6, "{at_noon:?}");
        let (sc, rules, mut markets) = opposite_days();
        let at_midnight = oracle_choice(&sc, &rules, &mut markets, sc.start_ms + DAY_MS, end);
        assert!(
            bandwidth(&at_midnight, "midnight") > 3.3e6,
            "{at_midnight:?}"
        );
        // Over a whole day both earn alike: an even split, whatever the hour asked at.
        for t in [sc.start_ms, noon, noon + 5 * HOUR_MS] {
            let (sc, rules, mut markets) = opposite_days();
            let day = daily_oracle_choice(&sc, &rules, &mut markets, t, (start, end));
            let (a, b) = (bandwidth(&day, "noon"), bandwidth(&day, "midnight"));
            assert!((a - b).abs() < 0.02 * (a + b), "{day:?}");
            assert!((a + b - 4e6).abs() < 1e3, "{day:?}");
        }
    }
}

//! What a simulation run reports: each strategy's result, the gate check from the history,
//! and the text rendering of it all.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::DAY_MS;
use crate::resources::Allocation;

/// One strategy's result.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyResult {
    pub earned_usd: f64,
    /// Applied changes of allocation (controller strategies: from the history; oracle: hours
    /// whose allocation differed from the previous hour's).
    pub reallocations: u64,
    pub switching_cost_usd: f64,
    /// Per node: allocation (as text) → hours spent in it.
    pub time_in_allocation_hours: BTreeMap<String, BTreeMap<String, f64>>,
    /// The allocation path: (ms, node → allocation) at each change, for plots.
    #[serde(skip)]
    pub path: Vec<(i64, BTreeMap<String, Allocation>)>,
    /// Cumulative USD sampled every hour, for plots.
    #[serde(skip)]
    pub earned_curve: Vec<(i64, f64)>,
}

/// What the history says about the gates.
#[derive(Clone, Debug, Serialize)]
pub struct GateCheck {
    pub max_reallocations_per_hour: u32,
    pub min_hold_seconds: f64,
    /// The most applied reallocations in any rolling hour.
    pub most_in_an_hour: usize,
    pub max_reallocations_per_day: Option<u32>,
    /// The most applied reallocations in any rolling day.
    pub most_in_a_day: usize,
    pub max_reallocations_per_30_days: Option<u32>,
    /// The most applied reallocations in any rolling 30 days (all of them in a shorter run).
    pub most_in_30_days: usize,
    /// The shortest time a node kept an allocation before the next change (seconds).
    pub shortest_hold_seconds: Option<f64>,
    pub ok: bool,
    pub violations: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub days: f64,
    pub seed: u64,
    pub poll_interval_seconds: f64,
    pub polls: u64,
    pub earned_usd: BTreeMap<String, f64>,
    pub fraction_of_oracle: f64,
    /// depin-orcha's earnings over the daily oracle's (one allocation per UTC day, in
    /// hindsight): above 1 where moving more than once a day paid.
    pub fraction_of_daily_oracle: f64,
    pub gain_over_static: f64,
    pub gain_over_greedy: f64,
    pub reallocations: u64,
    pub reallocations_greedy: u64,
    pub rejected_plans: u64,
    /// How often each gate (or pre-flight check) blocked a plan.
    pub rejected_by: BTreeMap<String, u64>,
    pub gates: GateCheck,
    pub gates_greedy: GateCheck,
    /// Alerts that went firing (distinct alert and start), by alert name.
    pub alerts_fired: BTreeMap<String, u64>,
    pub strategies: BTreeMap<String, StrategyResult>,
    /// Per strategy (depin_orcha, greedy, static, daily_oracle), each simulated day's earnings as a fraction
    /// of the oracle's that day (None: the oracle earned nothing). Where the month's gap is
    /// lost: the first days of learning, a shock, a drift two moves a day cannot follow.
    pub fraction_of_oracle_by_day: BTreeMap<String, Vec<Option<f64>>>,
    pub wall_seconds: f64,
    /// CPU seconds of the depin-orcha run by part: `poll` (polls, metric updates, the
    /// ledger), `scrape` (registry gather and tsdb ingest; `scrape_gather` is the gather
    /// alone), `rules` (recording and alerting rules), `controller` (optimizer, gates,
    /// reallocation). Left out of the JSON: it differs from run to run.
    #[serde(skip)]
    pub cpu_seconds: BTreeMap<String, f64>,
}

impl Report {
    /// The text report.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Scenario {}: {} days, seed {}, poll every {}s ({} polls), {:.1}s wall time",
            self.scenario,
            self.days,
            self.seed,
            self.poll_interval_seconds,
            self.polls,
            self.wall_seconds
        );
        let _ = writeln!(
            s,
            "\n{:<12} {:>12} {:>10} {:>14}",
            "strategy", "earned USD", "of oracle", "reallocations"
        );
        let oracle = self.earned_usd.get("oracle").copied().unwrap_or(0.0);
        for k in ["depin_orcha", "greedy", "static", "oracle", "daily_oracle"] {
            if let Some(r) = self.strategies.get(k) {
                let _ = writeln!(
                    s,
                    "{:<12} {:>12.2} {:>9.1}% {:>14}",
                    k,
                    r.earned_usd,
                    if oracle > 0.0 {
                        100.0 * r.earned_usd / oracle
                    } else {
                        0.0
                    },
                    r.reallocations
                );
            }
        }
        let _ = writeln!(
            s,
            "\ndepin-orcha: {:.1}% of oracle ({:.1}% of the daily oracle), {:+.1}% over static, {:+.1}% over greedy; {} plans rejected by the gates",
            100.0 * self.fraction_of_oracle,
            100.0 * self.fraction_of_daily_oracle,
            100.0 * self.gain_over_static,
            100.0 * self.gain_over_greedy,
            self.rejected_plans
        );
        if !self.rejected_by.is_empty() {
            let by: Vec<String> = self
                .rejected_by
                .iter()
                .map(|(g, n)| format!("{g} {n}"))
                .collect();
            let _ = writeln!(s, "Blocked by: {}", by.join(", "));
        }
        if !self.fraction_of_oracle_by_day.is_empty() {
            let _ = writeln!(s, "Of the oracle by day (%):");
            for k in ["depin_orcha", "greedy", "static", "daily_oracle"] {
                if let Some(days) = self.fraction_of_oracle_by_day.get(k) {
                    let d: Vec<String> = days
                        .iter()
                        .map(|f| f.map_or("-".into(), |f| format!("{:.0}", 100.0 * f)))
                        .collect();
                    let _ = writeln!(s, "  {k:<12} {}", d.join(" "));
                }
            }
        }
        let g = &self.gates;
        let limit = |l: Option<u32>| l.map_or("none".to_string(), |l| l.to_string());
        let _ = writeln!(
            s,
            "Gates (from the history): at most {} reallocations in any hour (limit {}), {} in any day (limit {}), {} in any 30 days (limit {}), shortest hold {} (min_hold {}s): {}",
            g.most_in_an_hour,
            g.max_reallocations_per_hour,
            g.most_in_a_day,
            limit(g.max_reallocations_per_day),
            g.most_in_30_days,
            limit(g.max_reallocations_per_30_days),
            g.shortest_hold_seconds
                .map(|x| format!("{x:.0}s"))
                .unwrap_or_else(|| "-".into()),
            g.min_hold_seconds,
            if g.ok { "never exceeded".to_string() } else { format!("EXCEEDED: {}", g.violations.join("; ")) }
        );
        let _ = writeln!(s, "\nAlerts fired:");
        if self.alerts_fired.is_empty() {
            let _ = writeln!(s, "  none");
        }
        for (a, n) in &self.alerts_fired {
            let _ = writeln!(s, "  {a}: {n}");
        }
        if let Some(r) = self.strategies.get("depin_orcha") {
            let _ = writeln!(s, "\nTime in each allocation (depin-orcha, hours):");
            for (node, m) in &r.time_in_allocation_hours {
                let mut v: Vec<_> = m.iter().collect();
                v.sort_by(|a, b| b.1.total_cmp(a.1));
                let _ = writeln!(s, "  {node}:");
                for (a, h) in v.iter().take(5) {
                    let _ = writeln!(s, "    {h:>7.1}  {a}");
                }
                if v.len() > 5 {
                    let _ = writeln!(s, "    … {} more", v.len() - 5);
                }
            }
        }
        s
    }
}

/// [`by_day`] of each named strategy against the oracle over `span` (start, end).
pub fn by_day_of(
    strategies: &[(&str, &StrategyResult)],
    oracle: &StrategyResult,
    span: (i64, i64),
) -> BTreeMap<String, Vec<Option<f64>>> {
    strategies
        .iter()
        .map(|(k, r)| {
            let days = by_day(&r.earned_curve, &oracle.earned_curve, span.0, span.1);
            (k.to_string(), days)
        })
        .collect()
}

/// Each day's earnings of a cumulative USD `curve` over the oracle's `oracle` that day, for the
/// days from `start` to `end` (the last one partial when the run is): the increase of each
/// curve between its last samples at or before the day's bounds.
fn by_day(curve: &[(i64, f64)], oracle: &[(i64, f64)], start: i64, end: i64) -> Vec<Option<f64>> {
    let at = |c: &[(i64, f64)], t: i64| {
        let i = c.partition_point(|p| p.0 <= t);
        if i == 0 {
            0.0
        } else {
            c[i - 1].1
        }
    };
    let mut out = Vec::new();
    let mut d0 = start;
    while d0 < end {
        let d1 = (d0 + DAY_MS).min(end);
        let o = at(oracle, d1) - at(oracle, d0);
        let x = at(curve, d1) - at(curve, d0);
        out.push((o > 0.0).then(|| x / o));
        d0 = d1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::by_day;
    use crate::clock::HOUR_MS as H;

    #[test]
    fn each_day_is_the_increase_of_both_curves_over_that_day() {
        // Hourly samples over 2.5 days: the strategy earns 1 USD/h, then 2 USD/h from hour 24;
        // the oracle 2 USD/h throughout, nothing in the last half day.
        let curve: Vec<(i64, f64)> = (0..=60)
            .map(|h| {
                (
                    h * H,
                    if h <= 24 {
                        h as f64
                    } else {
                        24.0 + 2.0 * (h - 24) as f64
                    },
                )
            })
            .collect();
        let oracle: Vec<(i64, f64)> = (0..=60).map(|h| (h * H, 2.0 * h.min(48) as f64)).collect();
        assert_eq!(
            by_day(&curve, &oracle, 0, 60 * H),
            vec![Some(0.5), Some(1.0), None]
        );
    }
}

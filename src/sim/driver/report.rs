//! What a simulation run reports: each strategy's result, the gate check from the history,
//! and the text rendering of it all.

use std::collections::BTreeMap;

use serde::Serialize;

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
        for k in ["depin_orcha", "greedy", "static", "oracle"] {
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
            "\ndepin-orcha: {:.1}% of oracle, {:+.1}% over static, {:+.1}% over greedy; {} plans rejected by the gates",
            100.0 * self.fraction_of_oracle,
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
        let g = &self.gates;
        let _ = writeln!(
            s,
            "Gates (from the history): at most {} reallocations in any hour (limit {}), shortest hold {} (min_hold {}s): {}",
            g.most_in_an_hour,
            g.max_reallocations_per_hour,
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

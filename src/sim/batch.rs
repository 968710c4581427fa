//! Runs the markets of `simulate --random N --seed S` ([`crate::sim::random`]) one after
//! another (or `jobs` at a time), each exactly like a scenario file through
//! [`crate::sim::driver::simulate`], and sums them up: per market the fraction of the oracle,
//! the gains over static and greedy and the applied reallocations; over all of them the
//! distribution.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::optimizer::OptimizationRules;
use crate::sim::driver::{simulate, Options, Report, SimError};
use crate::sim::random::{draw, RandomMarket};

/// One market's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct MarketRun {
    /// 1-based: market `index` of the seed.
    pub index: u64,
    pub nodes: Vec<String>,
    pub starved: bool,
    /// The scenario file that gives this market.
    pub scenario: String,
    pub report: Report,
}

/// Quantiles of one number over the markets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    pub worst: f64,
    pub p10: f64,
    pub median: f64,
    pub mean: f64,
    pub best: f64,
}

impl Spread {
    fn of(mut xs: Vec<f64>) -> Spread {
        if xs.is_empty() {
            return Spread::default();
        }
        xs.sort_by(f64::total_cmp);
        let q = |p: f64| {
            // Linear interpolation between the closest ranks.
            let at = p * (xs.len() - 1) as f64;
            let (i, f) = (at.floor() as usize, at.fract());
            xs[i] + (xs[(i + 1).min(xs.len() - 1)] - xs[i]) * f
        };
        Spread {
            worst: xs[0],
            p10: q(0.1),
            median: q(0.5),
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            best: xs[xs.len() - 1],
        }
    }
}

/// The distribution over the markets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub markets: usize,
    pub fraction_of_oracle: Spread,
    /// Of the daily oracle (one allocation per UTC day, in hindsight).
    pub fraction_of_daily_oracle: Spread,
    pub gain_over_static: Spread,
    pub gain_over_greedy: Spread,
    /// Markets where depin-orcha earned more than static / greedy.
    pub beat_static: usize,
    pub beat_greedy: usize,
    pub reallocations_max: u64,
    pub reallocations_median: f64,
    pub reallocations_greedy_max: u64,
    /// Markets whose history shows a gate exceeded.
    pub gate_violations: usize,
}

/// Everything `simulate --random` prints with `--output json`.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    pub seed: u64,
    pub days: f64,
    pub summary: Summary,
    pub markets: Vec<MarketRun>,
}

/// Called with each market as it finishes.
pub type OnMarket = Box<dyn Fn(&MarketRun) + Send + Sync>;

/// How to run the markets.
pub struct BatchOptions {
    pub count: u64,
    /// Run market `only` alone (1 ≤ `only` ≤ `count`).
    pub only: Option<u64>,
    pub seed: u64,
    pub days: f64,
    /// Markets run at once (each run itself uses two threads: depin-orcha and greedy).
    pub jobs: usize,
    /// The driver's options; `days`, `seed` and `rules` are set per market.
    pub base: Options,
    /// Called with each market as it finishes (in the order they finish).
    pub on_market: Option<OnMarket>,
}

/// Draws and runs the markets; the result lists them by index.
pub fn run(opts: BatchOptions) -> Result<BatchReport, SimError> {
    let (first, last) = match opts.only {
        Some(k) => (k, k.min(opts.count)),
        None => (1, opts.count),
    };
    let next = AtomicU64::new(first);
    let out: Mutex<Vec<MarketRun>> = Mutex::new(Vec::new());
    let failed: Mutex<Option<SimError>> = Mutex::new(None);
    let rules: &OptimizationRules = &opts.base.rules;
    let worker = || loop {
        let k = next.fetch_add(1, Ordering::SeqCst);
        if k > last || failed.lock().map(|f| f.is_some()).unwrap_or(true) {
            return;
        }
        let m: RandomMarket = draw(opts.seed, k, opts.days, rules);
        let mut o = opts.base.clone();
        o.days = None;
        o.seed = None;
        o.rules = m.rules.clone();
        match simulate(&m.scenario, &o) {
            Ok(report) => {
                let run = MarketRun {
                    index: k,
                    nodes: m.scenario.nodes.iter().map(|n| n.name.clone()).collect(),
                    starved: m.starved,
                    scenario: m.text,
                    report,
                };
                if let Some(f) = &opts.on_market {
                    f(&run);
                }
                if let Ok(mut v) = out.lock() {
                    v.push(run);
                }
            }
            Err(e) => {
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert(e);
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..opts.jobs.max(1) {
            s.spawn(worker);
        }
        worker();
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut markets = out.into_inner().unwrap_or_default();
    markets.sort_by_key(|m| m.index);
    Ok(BatchReport {
        seed: opts.seed,
        days: opts.days,
        summary: summarize(&markets),
        markets,
    })
}

pub fn summarize(markets: &[MarketRun]) -> Summary {
    let field = |f: fn(&Report) -> f64| Spread::of(markets.iter().map(|m| f(&m.report)).collect());
    let mut reallocs: Vec<f64> = markets
        .iter()
        .map(|m| m.report.reallocations as f64)
        .collect();
    reallocs.sort_by(f64::total_cmp);
    let earned = |m: &MarketRun, k: &str| m.report.earned_usd.get(k).copied().unwrap_or(0.0);
    Summary {
        markets: markets.len(),
        fraction_of_oracle: field(|r| r.fraction_of_oracle),
        fraction_of_daily_oracle: field(|r| r.fraction_of_daily_oracle),
        gain_over_static: field(|r| r.gain_over_static),
        gain_over_greedy: field(|r| r.gain_over_greedy),
        beat_static: markets
            .iter()
            .filter(|m| earned(m, "depin_orcha") > earned(m, "static"))
            .count(),
        beat_greedy: markets
            .iter()
            .filter(|m| earned(m, "depin_orcha") > earned(m, "greedy"))
            .count(),
        reallocations_max: markets
            .iter()
            .map(|m| m.report.reallocations)
            .max()
            .unwrap_or(0),
        reallocations_median: Spread::of(reallocs).median,
        reallocations_greedy_max: markets
            .iter()
            .map(|m| m.report.reallocations_greedy)
            .max()
            .unwrap_or(0),
        gate_violations: markets.iter().filter(|m| !m.report.gates.ok).count(),
    }
}

/// The header of the per-market lines.
pub fn header() -> String {
    format!(
        "{:<16} {:>5} {:>9} {:>9} {:>10} {:>10} {:>14} {:>6}  start",
        "market",
        "nodes",
        "of oracle",
        "of daily",
        "vs static",
        "vs greedy",
        "reallocations",
        "gates"
    )
}

/// One line per market.
pub fn line(m: &MarketRun) -> String {
    let r = &m.report;
    format!(
        "{:<16} {:>5} {:>8.1}% {:>8.1}% {:>+9.1}% {:>+9.1}% {:>8} ({:>3}) {:>6}  {}",
        r.scenario,
        m.nodes.len(),
        100.0 * r.fraction_of_oracle,
        100.0 * r.fraction_of_daily_oracle,
        100.0 * r.gain_over_static,
        100.0 * r.gain_over_greedy,
        r.reallocations,
        r.reallocations_greedy,
        if r.gates.ok { "ok" } else { "EXCEEDED" },
        if m.starved { "starved" } else { "-" }
    )
}

impl BatchReport {
    /// The distribution, after the per-market lines.
    pub fn render_summary(&self) -> String {
        let s = &self.summary;
        let pct = |x: &Spread| {
            format!(
                "worst {:.1} %, 10 % quantile {:.1} %, median {:.1} %, mean {:.1} %, best {:.1} %",
                100.0 * x.worst,
                100.0 * x.p10,
                100.0 * x.median,
                100.0 * x.mean,
                100.0 * x.best
            )
        };
        format!(
            "\n{} markets of seed {}, {} days each.\n\
             Fraction of the oracle: {}\n\
             Fraction of the daily oracle (one allocation a day, in hindsight): {}\n\
             Gain over static: {}; more than static on {} of {}\n\
             Gain over greedy: {}; more than greedy on {} of {}\n\
             Applied reallocations: at most {}, median {} (greedy at most {})\n\
             Gates exceeded on {} markets\n",
            s.markets,
            self.seed,
            self.days,
            pct(&s.fraction_of_oracle),
            pct(&s.fraction_of_daily_oracle),
            pct(&s.gain_over_static),
            s.beat_static,
            s.markets,
            pct(&s.gain_over_greedy),
            s.beat_greedy,
            s.markets,
            s.reallocations_max,
            s.reallocations_median,
            s.reallocations_greedy_max,
            s.gate_violations
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_quantiles() {
        let s = Spread::of(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.worst, s.median, s.mean, s.best), (1.0, 3.0, 3.0, 5.0));
        assert!((s.p10 - 1.4).abs() < 1e-12, "{s:?}");
        assert_eq!(Spread::of(vec![7.0]).median, 7.0);
    }
}

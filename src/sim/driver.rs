//! The simulation driver behind `depin-orcha simulate`: a virtual clock steps through the
//! scenario one poll interval at a time and drives the very code of `run`, synchronously:
//! each node's adapter is polled and its answer goes through `run`'s node pipeline
//! ([`NodePipeline`]: series, earnings, health), the registry
//! is scraped into a [`Db`] every scrape interval, the shipped recording and alerting rules run
//! through [`RuleManager::tick`], and every optimization interval [`Controller::tick`] plans
//! (optimizer), gates and reallocates through the `sim` actuator.
//!
//! Strategies, on the same market and the same random draws (each node's noise and demand walk
//! are functions of (seed, node, minute/hour), never of the allocation path):
//! - `depin_orcha`: the controller with the planner the rules name
//!   ([`crate::reallocation::controller::planner_for`]);
//! - `greedy`: the same controller, gates and actuators with the prototype's greedy solver
//!   ([`optimizer::plan_greedy`]);
//! - `static`: the starting allocation, never changed;
//! - `oracle`: for every hour, the allocation that earns most in the true market of that hour
//!   (it knows the demand, the noise and the prices), water-filled per resource within the
//!   rules' capacity, reserves and bounds; no gates, no switching cost: the ceiling.
//! - `daily_oracle`: the same, but one allocation per UTC day (the best for the whole day, set
//!   at midnight): the ceiling of a strategy that knows the market and moves at most once a
//!   day (30 reallocations in 30 days). Its gap to `oracle` is what no controller moving that
//!   seldom can win (a daily cycle followed hour by hour); the gap from `depin_orcha` to it is
//!   what learning the market costs.
//!
//! Earnings of every strategy are counted the same way: each node's token earnings per poll
//! step times the token's price at that time, minus the switching costs paid.

mod controller;
mod gates;
mod ledger;
mod oracle;
mod plain;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::controller::{run_controller, Pipeline};
use self::oracle::run_oracles;
use self::plain::run_plain;
use crate::app::AppError;
use crate::optimizer::OptimizationRules;
use crate::sim::scenario::Scenario;
use crate::tsdb::Db;

pub use self::controller::{run_metrics_only, GreedyPlanner, Rejections};
pub use self::gates::check_gates;
pub use self::oracle::water_fill;
pub use self::report::{GateCheck, Report, StrategyResult};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The stepped stack could not be assembled (rule files, the controller).
    #[error(transparent)]
    Setup(#[from] AppError),
    /// A strategy's thread panicked.
    #[error("{0}")]
    Panicked(&'static str),
    /// The planner the rules ask for could not start.
    #[error("the planner: {0}")]
    Planner(String),
}

/// How to run a scenario.
#[derive(Clone)]
pub struct Options {
    /// Overrides the scenario's `days`.
    pub days: Option<f64>,
    /// Overrides the scenario's `seed`.
    pub seed: Option<u64>,
    /// Overrides the scenario's `poll_interval` (tests use 60s to run faster).
    pub poll_interval: Option<Duration>,
    /// The optimization rules (the same file `run` uses).
    pub rules: OptimizationRules,
    /// Recording and alerting rule files (the shipped ones).
    pub rule_files: Vec<PathBuf>,
    /// Called with the fraction done (0–1) of the depin-orcha run now and then.
    pub progress: Option<Arc<dyn Fn(f64) + Send + Sync>>,
}

/// The span, seed and poll step of one run, the same for every strategy.
struct Setup {
    start: i64,
    end: i64,
    seed: u64,
    poll_ms: i64,
}

fn setup(sc: &Scenario, opts: &Options) -> Setup {
    let days = opts.days.unwrap_or(sc.days);
    let poll = opts.poll_interval.unwrap_or(sc.poll_interval);
    Setup {
        start: sc.start_ms,
        end: sc.start_ms + (days * 86_400_000.0) as i64,
        seed: opts.seed.unwrap_or(sc.seed),
        poll_ms: (poll.as_millis() as i64).max(1),
    }
}

/// Runs the scenario: depin-orcha and greedy through the controller, static and the oracle on
/// the market directly; all on the same draws.
pub fn simulate(sc: &Scenario, opts: &Options) -> Result<Report, SimError> {
    simulate_into(sc, opts, None)
}

/// [`simulate`], with the depin-orcha strategy's series (scrapes, rule results, alerts)
/// written into `storage` instead of a throwaway in-memory database.
pub fn simulate_into(
    sc: &Scenario,
    opts: &Options,
    storage: Option<Arc<Db>>,
) -> Result<Report, SimError> {
    let started = Instant::now();
    let days = opts.days.unwrap_or(sc.days);
    let poll = opts.poll_interval.unwrap_or(sc.poll_interval);
    let s = setup(sc, opts);
    let seed = s.seed;
    let planner = crate::reallocation::controller::planner_for(&opts.rules, None, s.start, None)
        .map_err(SimError::Planner)?;
    // The two controller runs are independent: one thread each (two cores).
    let (orcha, greedy) = std::thread::scope(|scope| {
        let g = scope.spawn(|| {
            let db = Arc::new(Db::in_memory());
            run_controller(
                sc,
                &s,
                opts,
                Box::new(GreedyPlanner),
                None,
                Pipeline::Full,
                db,
            )
        });
        let o = run_controller(
            sc,
            &s,
            opts,
            planner,
            opts.progress.as_deref(),
            Pipeline::Full,
            storage.unwrap_or_else(|| Arc::new(Db::in_memory())),
        );
        let g = g
            .join()
            .unwrap_or_else(|_| Err(SimError::Panicked("the greedy run panicked")));
        (o, g)
    });
    let (orcha, gates, rejected, alerts, phases) = orcha?;
    let (greedy, gates_greedy, _, _, _) = greedy?;
    let stat = run_plain(sc, &s, false, |_| None);
    let (oracle, daily) = run_oracles(sc, &s, &opts.rules);
    let o = oracle.earned_usd;
    let fraction_of_oracle_by_day = report::by_day_of(
        &[
            ("depin_orcha", &orcha),
            ("greedy", &greedy),
            ("static", &stat),
            ("daily_oracle", &daily),
        ],
        &oracle,
        (s.start, s.end),
    );
    let ratio = |a: f64, b: f64| if b.abs() > 0.0 { a / b - 1.0 } else { 0.0 };
    let earned: BTreeMap<String, f64> = [
        ("depin_orcha", orcha.earned_usd),
        ("static", stat.earned_usd),
        ("greedy", greedy.earned_usd),
        ("oracle", o),
        ("daily_oracle", daily.earned_usd),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let report = Report {
        scenario: sc.name.clone(),
        days,
        seed,
        poll_interval_seconds: poll.as_secs_f64(),
        polls: ((s.end - s.start) / s.poll_ms) as u64 * sc.nodes.len() as u64,
        fraction_of_oracle: if o > 0.0 { orcha.earned_usd / o } else { 0.0 },
        fraction_of_daily_oracle: if daily.earned_usd > 0.0 {
            orcha.earned_usd / daily.earned_usd
        } else {
            0.0
        },
        gain_over_static: ratio(orcha.earned_usd, stat.earned_usd),
        gain_over_greedy: ratio(orcha.earned_usd, greedy.earned_usd),
        reallocations: orcha.reallocations,
        reallocations_greedy: greedy.reallocations,
        rejected_plans: rejected.plans,
        rejected_by: rejected.by_check,
        gates,
        gates_greedy,
        alerts_fired: alerts,
        earned_usd: earned,
        fraction_of_oracle_by_day,
        strategies: [
            ("depin_orcha", orcha),
            ("static", stat),
            ("greedy", greedy),
            ("oracle", oracle),
            ("daily_oracle", daily),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: [
            ("poll", phases.poll),
            ("scrape", phases.scrape),
            ("scrape_gather", phases.gather),
            ("rules", phases.rules),
            ("controller", phases.controller),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_secs_f64()))
        .collect(),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::water_fill;

    #[test]
    fn water_fill_equalises_marginal_values_within_bounds() {
        // Two equal nodes share equally; a node with no value stays at its lower bound.
        let a = water_fill(
            &[
                (1.0, 1.0, 0.0, 10.0),
                (1.0, 1.0, 0.0, 10.0),
                (0.0, 1.0, 0.5, 10.0),
            ],
            4.5,
        );
        assert!(
            (a[0] - 2.0).abs() < 1e-6 && (a[1] - 2.0).abs() < 1e-6,
            "{a:?}"
        );
        assert_eq!(a[2], 0.5);
        // The richer node gets more; marginal values w/need·e^(−a/need) are equal.
        let a = water_fill(&[(4.0, 1.0, 0.0, 10.0), (1.0, 1.0, 0.0, 10.0)], 3.0);
        let m0 = 4.0 * (-a[0]).exp();
        let m1 = (-a[1]).exp();
        assert!(a[0] > a[1] && (m0 - m1).abs() < 1e-6, "{a:?}");
        // An upper bound caps, the rest goes to the other.
        let a = water_fill(&[(4.0, 1.0, 0.0, 1.0), (1.0, 1.0, 0.0, 10.0)], 3.0);
        assert!(
            (a[0] - 1.0).abs() < 1e-9 && (a[1] - 2.0).abs() < 1e-6,
            "{a:?}"
        );
    }
}

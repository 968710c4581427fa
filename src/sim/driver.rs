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
//! - `depin_orcha`: the controller with the planner the rules name ([`crate::reallocation::controller::planner_for`]);
//! - `greedy`: the same controller, gates and actuators with the prototype's greedy solver
//!   ([`optimizer::plan_greedy`]);
//! - `static`: the starting allocation, never changed;
//! - `oracle`: for every hour, the allocation that earns most in the true market of that hour
//!   (it knows the demand, the noise and the prices), water-filled per resource within the
//!   rules' capacity, reserves and bounds; no gates, no switching cost: the ceiling.
//!
//! Earnings of every strategy are counted the same way: each node's token earnings per poll
//! step times the token's price at that time, minus the switching costs paid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::adapters::sim::market::Market;
use crate::adapters::Adapter;
use crate::app::stepped::{now_or_never, SteppedApp, SteppedOptions};
use crate::app::AppError;
use crate::clock::{ManualClock, SharedClock};
use crate::optimizer::{self, OptimizationRules, Plan};
use crate::reallocation::controller::{PlanInput, Planner};
use crate::reallocation::Outcome;
use crate::resources::{Allocation, Resource};
use crate::sim::node::ScenarioNode;
use crate::sim::scenario::Scenario;
use crate::tsdb::Db;

const MS_PER_HOUR: i64 = 3_600_000;

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

/// The greedy baseline: the optimizer's inputs, the prototype's greedy solver.
pub struct GreedyPlanner;

impl Planner for GreedyPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        Ok(optimizer::plan_greedy(i.rules, &i.gather()?))
    }
}

/// Counts USD the same way for every strategy: token earnings per step × price then.
struct Ledger {
    last_tokens: Vec<f64>,
    usd: f64,
    curve: Vec<(i64, f64)>,
    next_sample: i64,
}

impl Ledger {
    fn new(n: usize, start: i64) -> Ledger {
        Ledger {
            last_tokens: vec![0.0; n],
            usd: 0.0,
            curve: vec![(start, 0.0)],
            next_sample: start + MS_PER_HOUR,
        }
    }

    fn step(&mut self, nodes: &[Arc<ScenarioNode>], sc: &Scenario, now: i64) {
        for (i, n) in nodes.iter().enumerate() {
            let t = n.earned_tokens();
            self.usd += (t - self.last_tokens[i]) * sc.price(n.token(), now);
            self.last_tokens[i] = t;
        }
        if now >= self.next_sample {
            self.curve.push((now, self.usd));
            self.next_sample += MS_PER_HOUR;
        }
    }
}

fn fmt_alloc(a: &Allocation, used: &[Resource]) -> String {
    used.iter()
        .map(|&r| format!("{}={}", r.key(), optimizer::fmt_amount(r, a.get(r))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn time_in_allocation(
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
                    .or_default() += (until - t) as f64 / MS_PER_HOUR as f64;
            }
        }
    }
    out
}

/// CPU time of the calling thread (not wall time: the build machine is shared).
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time spent in each part of a controller run.
#[derive(Default, Debug, Clone, Copy)]
struct Phases {
    /// Polls, the ledger and the loop itself: the rest.
    poll: Duration,
    gather: Duration,
    scrape: Duration,
    rules: Duration,
    controller: Duration,
}

struct Setup {
    start: i64,
    end: i64,
    seed: u64,
    poll_ms: i64,
}

/// Plans the gates or pre-flight rejected: how many, and how often each check blocked one
/// (a plan blocked by two gates counts for both).
#[derive(Clone, Debug, Default)]
pub struct Rejections {
    pub plans: u64,
    pub by_check: BTreeMap<String, u64>,
}

/// The strategies of the controller: the full pipeline of `run`.
/// What a controller run returns: its result, the gate check, rejected plans, alerts fired and
/// where its CPU time went.
type ControllerRun = (
    StrategyResult,
    GateCheck,
    Rejections,
    BTreeMap<String, u64>,
    Phases,
);

fn run_controller(
    sc: &Scenario,
    s: &Setup,
    opts: &Options,
    planner: Box<dyn Planner>,
    progress: Option<&(dyn Fn(f64) + Send + Sync)>,
    pipeline: Pipeline,
    db: Arc<Db>,
) -> Result<ControllerRun, SimError> {
    let clock = ManualClock::new(s.start);
    let shared: SharedClock = Arc::new(clock.clone());
    let nodes: Vec<Arc<ScenarioNode>> = sc
        .nodes
        .iter()
        .map(|n| ScenarioNode::new(n, s.seed, shared.clone()))
        .collect();
    let mut app = SteppedApp::build(
        nodes
            .iter()
            .map(|n| n.clone() as Arc<dyn Adapter>)
            .collect(),
        SteppedOptions {
            clock: clock.clone(),
            capacity: sc.capacity,
            poll_interval: Duration::from_millis(s.poll_ms as u64),
            evaluation_interval: sc.evaluation_interval,
            rule_files: opts.rule_files.clone(),
            rules: opts.rules.clone(),
            planner,
            db,
        },
    )?;

    let scrape_ms = sc.scrape_interval.as_millis() as i64;
    let plan_ms = (opts.rules.interval.as_millis() as i64).max(1);
    let mut ledger = Ledger::new(nodes.len(), s.start);
    let current = |nodes: &[Arc<ScenarioNode>]| -> BTreeMap<String, Allocation> {
        nodes
            .iter()
            .map(|n| {
                (
                    n.name().to_string(),
                    crate::adapters::Allocatable::allocation(n.as_ref()),
                )
            })
            .collect()
    };
    let mut path = vec![(s.start, current(&nodes))];
    let mut fired: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut alerts_fired: BTreeMap<String, u64> = BTreeMap::new();
    let (mut next_scrape, mut next_plan) = (s.start + scrape_ms, s.start + plan_ms);
    let mut t = s.start;
    let total = (s.end - s.start).max(1) as f64;
    let mut next_progress = s.start;
    let mut phases = Phases::default();
    let run_started = cpu_now();
    while t < s.end {
        t = (t + s.poll_ms).min(s.end);
        clock.set(t);
        for token in sc.prices.keys() {
            app.set_price(token, sc.price(token, t));
        }
        app.poll(t);
        ledger.step(&nodes, sc, t);
        if t >= next_scrape {
            let t0 = cpu_now();
            let fams = app.gather();
            let tg = cpu_now();
            phases.gather += tg - t0;
            app.ingest(t, &fams);
            let t1 = cpu_now();
            phases.scrape += t1 - t0;
            let ticked = match pipeline {
                Pipeline::Full => app.evaluate_rules(t),
                Pipeline::MetricsOnly => Vec::new(),
            };
            phases.rules += cpu_now() - t1;
            for a in ticked {
                if a.ends_at > t {
                    let name = a.labels.get("alertname").unwrap_or_default().to_string();
                    if fired.insert((format!("{:?}", a.labels), a.starts_at)) {
                        *alerts_fired.entry(name).or_default() += 1;
                    }
                }
            }
            next_scrape += scrape_ms;
        }
        if t >= next_plan && pipeline == Pipeline::Full {
            let t0 = cpu_now();
            if let Err(e) = app.plan() {
                tracing::debug!(error = %e, "simulate: controller round failed");
            }
            phases.controller += cpu_now() - t0;
            let now = current(&nodes);
            if path.last().map(|p| &p.1) != Some(&now) {
                path.push((t, now));
            }
            next_plan += plan_ms;
        }
        if let Some(p) = progress {
            if t >= next_progress {
                p((t - s.start) as f64 / total);
                next_progress += 6 * MS_PER_HOUR;
            }
        }
    }
    tracing::debug!(
        poll_cpu_s = phases.poll.as_secs_f64(),
        gather_cpu_s = phases.gather.as_secs_f64(),
        scrape_cpu_s = phases.scrape.as_secs_f64(),
        rules_cpu_s = phases.rules.as_secs_f64(),
        controller_cpu_s = phases.controller.as_secs_f64(),
        "simulate: where a controller run spent its CPU time"
    );
    phases.poll = cpu_now()
        .saturating_sub(run_started)
        .saturating_sub(phases.scrape + phases.rules + phases.controller);
    let (mut switches, mut cost) = (0, 0.0);
    for n in &nodes {
        let (k, c) = n.switches();
        switches += k;
        cost += c;
    }
    let _ = switches;
    let history = app.controller().history_summaries();
    let applied: Vec<_> = history
        .iter()
        .filter(|h| h.outcome == Some(Outcome::Applied))
        .collect();
    let mut rejected = Rejections::default();
    for h in history
        .iter()
        .filter(|h| h.outcome == Some(Outcome::Rejected))
    {
        rejected.plans += 1;
        let checks = h.blocked_by.iter().map(|g| g.as_str());
        let preflight = h.blocked_by_preflight.then_some("pre-flight");
        for check in checks.chain(preflight) {
            *rejected.by_check.entry(check.to_string()).or_default() += 1;
        }
    }
    let gates = check_gates(&opts.rules, &history);
    let result = StrategyResult {
        earned_usd: ledger.usd - cost,
        reallocations: applied.len() as u64,
        switching_cost_usd: cost,
        time_in_allocation_hours: time_in_allocation(sc, &path, s.end),
        path,
        earned_curve: ledger.curve,
    };
    Ok((result, gates, rejected, alerts_fired, phases))
}

/// How much of `run`'s pipeline a controller run drives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    /// Polls, metrics, scrapes into the tsdb, rules, optimizer, gates and reallocation.
    Full,
    /// Only polls, metrics and scrapes into the tsdb (the allocation never changes): the
    /// baseline that benchmarks compare the full run against.
    MetricsOnly,
}

/// Runs the scenario's polls and scrapes as `run` does, without rules and controller (the
/// starting allocation stays); returns the wall seconds it took. The baseline of
/// `benches/simulate_30d.rs`.
pub fn run_metrics_only(sc: &Scenario, opts: &Options) -> Result<f64, SimError> {
    let started = Instant::now();
    let s = setup(sc, opts);
    run_controller(
        sc,
        &s,
        opts,
        Box::new(GreedyPlanner),
        None,
        Pipeline::MetricsOnly,
        Arc::new(Db::in_memory()),
    )?;
    Ok(started.elapsed().as_secs_f64())
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
            .take_while(|o| o.started_ms < h.started_ms + MS_PER_HOUR)
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

/// A strategy without the pipeline: `choose(hour_start)` gives the allocation of each hour
/// (None: keep).
fn run_plain(
    sc: &Scenario,
    s: &Setup,
    free_switching: bool,
    mut choose: impl FnMut(i64) -> Option<BTreeMap<String, Allocation>>,
) -> StrategyResult {
    let clock = ManualClock::new(s.start);
    let shared: SharedClock = Arc::new(clock.clone());
    let nodes: Vec<Arc<ScenarioNode>> = sc
        .nodes
        .iter()
        .map(|n| {
            let mut spec = n.clone();
            if free_switching {
                spec.switch_cost_usd = 0.0;
                spec.switch_downtime_ms = 0;
            }
            ScenarioNode::new(&spec, s.seed, shared.clone())
        })
        .collect();
    let mut ledger = Ledger::new(nodes.len(), s.start);
    let mut path: Vec<(i64, BTreeMap<String, Allocation>)> = Vec::new();
    let mut changes = 0;
    let mut t = s.start;
    let mut next_choice = s.start;
    while t < s.end {
        if t >= next_choice {
            if let Some(a) = choose(t) {
                if path.last().map(|p| &p.1) != Some(&a) {
                    if !path.is_empty() {
                        changes += 1;
                    }
                    for n in &nodes {
                        if let Some(to) = a.get(n.name()) {
                            let _ = now_or_never(crate::adapters::Allocatable::set_allocation(
                                n.as_ref(),
                                *to,
                            ));
                        }
                    }
                    path.push((t, a));
                }
            }
            next_choice += MS_PER_HOUR;
        }
        t = (t + s.poll_ms).min(s.end);
        clock.set(t);
        ledger.step(&nodes, sc, t);
    }
    if path.is_empty() {
        path.push((
            s.start,
            sc.nodes
                .iter()
                .map(|n| (n.name.clone(), n.allocation))
                .collect(),
        ));
    }
    let cost: f64 = nodes.iter().map(|n| n.switches().1).sum();
    StrategyResult {
        earned_usd: ledger.usd - cost,
        reallocations: changes,
        switching_cost_usd: cost,
        time_in_allocation_hours: time_in_allocation(sc, &path, s.end),
        path,
        earned_curve: ledger.curve,
    }
}

/// The oracle's choice for the hour starting at `h0`: per resource, the capacity the rules
/// leave (capacity − reserve) water-filled over the nodes by the true value of the hour
/// (Σ over its minutes of price × rate × noise, 0 while the node is down), within bounds.
fn oracle_choice(
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
        while t < (h0 + MS_PER_HOUR).min(end) {
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
    let mut markets: Vec<Market> = sc
        .nodes
        .iter()
        .map(|n| {
            Market::new(
                n.protocol,
                n.market.clone(),
                seed ^ crate::adapters::sim::market::seed_from_name(&n.name),
            )
        })
        .collect();
    let oracle = run_plain(sc, &s, true, |h0| {
        Some(oracle_choice(sc, &opts.rules, &mut markets, h0, s.end))
    });
    let o = oracle.earned_usd;
    let ratio = |a: f64, b: f64| if b.abs() > 0.0 { a / b - 1.0 } else { 0.0 };
    let earned: BTreeMap<String, f64> = [
        ("depin_orcha", orcha.earned_usd),
        ("static", stat.earned_usd),
        ("greedy", greedy.earned_usd),
        ("oracle", o),
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
        strategies: [
            ("depin_orcha", orcha),
            ("static", stat),
            ("greedy", greedy),
            ("oracle", oracle),
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

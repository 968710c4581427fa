//! The controller strategies: the stepped stack of `run` (polls, scrapes into the tsdb, rules,
//! optimizer, gates, reallocation) driven by the virtual clock, and where its CPU time went.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gates::check_gates;
use super::ledger::{time_in_allocation, Ledger};
use super::report::{GateCheck, StrategyResult};
use super::{setup, Options, Setup, SimError};
use crate::adapters::Adapter;
use crate::app::stepped::{SteppedApp, SteppedOptions};
use crate::clock::{ManualClock, SharedClock, HOUR_MS};
use crate::optimizer::{self, Plan};
use crate::reallocation::controller::{PlanInput, Planner};
use crate::reallocation::Outcome;
use crate::resources::Allocation;
use crate::sim::node::ScenarioNode;
use crate::sim::scenario::Scenario;
use crate::tsdb::Db;

/// The greedy baseline: the optimizer's inputs, the prototype's greedy solver.
pub struct GreedyPlanner;

impl Planner for GreedyPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        Ok(optimizer::plan_greedy(i.rules, &i.gather()?))
    }
}

/// CPU time of the calling thread (not wall time: the build machine is shared).
pub(super) fn cpu_now() -> Duration {
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
pub(super) struct Phases {
    /// Polls, the ledger and the loop itself: the rest.
    pub(super) poll: Duration,
    pub(super) gather: Duration,
    pub(super) scrape: Duration,
    pub(super) rules: Duration,
    pub(super) controller: Duration,
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
pub(super) type ControllerRun = (
    StrategyResult,
    GateCheck,
    Rejections,
    BTreeMap<String, u64>,
    Phases,
);

pub(super) fn run_controller(
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
    let mut path = vec![(s.start, current(&nodes))];
    let mut alerts = Alerts::default();
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
            scrape(&app, t, pipeline, &mut phases, &mut alerts);
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
                next_progress += 6 * HOUR_MS;
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
    let applied = history
        .iter()
        .filter(|h| h.outcome == Some(Outcome::Applied))
        .count();
    let rejected = rejections(&history);
    let gates = check_gates(&opts.rules, &history);
    let result = StrategyResult {
        earned_usd: ledger.usd - cost,
        reallocations: applied as u64,
        switching_cost_usd: cost,
        time_in_allocation_hours: time_in_allocation(sc, &path, s.end),
        path,
        earned_curve: ledger.curve,
    };
    Ok((result, gates, rejected, alerts.by_name, phases))
}

/// Each node's allocation now.
fn current(nodes: &[Arc<ScenarioNode>]) -> BTreeMap<String, Allocation> {
    nodes
        .iter()
        .map(|n| {
            (
                n.name().to_string(),
                crate::adapters::Allocatable::allocation(n.as_ref()),
            )
        })
        .collect()
}

/// Alerts that went firing: each (labels, start) once, counted by alert name.
#[derive(Default)]
struct Alerts {
    fired: BTreeSet<(String, i64)>,
    by_name: BTreeMap<String, u64>,
}

/// One scrape at `t`: gather the registry, ingest into the tsdb, then (full pipeline) the
/// recording and alerting rules, with the CPU time of each part.
fn scrape(app: &SteppedApp, t: i64, pipeline: Pipeline, phases: &mut Phases, alerts: &mut Alerts) {
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
            if alerts
                .fired
                .insert((format!("{:?}", a.labels), a.starts_at))
            {
                *alerts.by_name.entry(name).or_default() += 1;
            }
        }
    }
}

/// The plans the history shows rejected, by the checks that blocked them.
fn rejections(history: &[crate::reallocation::history::Summary]) -> Rejections {
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
    rejected
}

/// How much of `run`'s pipeline a controller run drives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pipeline {
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

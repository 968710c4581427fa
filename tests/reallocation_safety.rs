//! Safe reallocation end to end on simulated nodes: a failure at any step rolls every step
//! back; the minimum hold and the rate limit hold across a restart (the history is reopened
//! from disk); a node that is down is frozen; an intent a crash left without outcome is
//! resolved at start; a move that made things worse is undone after its hold; dry run never
//! applies. Time is a manual clock; tokio's clock is paused so verification retries do not
//! sleep for real.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use depin_orcha::actuators::{self, ActFuture, Actuator, ActuatorError, VerifySpec};
use depin_orcha::adapters::sim::market::{MarketParams, Protocol};
use depin_orcha::adapters::sim::{SimNode, SimSpec};
use depin_orcha::adapters::Allocatable;
use depin_orcha::clock::{Clock, ManualClock, SharedClock};
use depin_orcha::coordinator::NodeHealth;
use depin_orcha::labels::Labels;
use depin_orcha::optimizer::{ConfidenceRule, Gates, Move, OptimizationRules, Plan};
use depin_orcha::promql::Engine;
use depin_orcha::reallocation::controller::{ControllerParts, Frozen};
use depin_orcha::reallocation::execute;
use depin_orcha::reallocation::{
    ApplyRequest, ControlledNode, Controller, ControllerOptions, HealthSource, History, Outcome,
    PlanInput, Planner, Record, Source, Step,
};
use depin_orcha::resources::{Allocation, Resource, Resources};
use depin_orcha::tsdb::Db;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;

fn alloc(cpu: f64, mem_gb: f64) -> Allocation {
    Allocation {
        cpu_cores: cpu,
        memory_bytes: mem_gb * 1e9,
        disk_bytes: 1e11,
        bandwidth_bytes_per_second: 1e6,
    }
}

const CAPACITY: Allocation = Allocation {
    cpu_cores: 12.0,
    memory_bytes: 24e9,
    disk_bytes: 1e12,
    bandwidth_bytes_per_second: 1e7,
};

/// Three sim nodes on one manual clock.
struct World {
    clock: ManualClock,
    nodes: BTreeMap<String, Arc<SimNode>>,
    start: BTreeMap<String, Allocation>,
}

fn world() -> World {
    let clock = ManualClock::new(T0);
    let start: BTreeMap<String, Allocation> = [
        ("golem".to_string(), alloc(4.0, 8.0)),
        ("storj".to_string(), alloc(2.0, 4.0)),
        ("streamr".to_string(), alloc(2.0, 4.0)),
    ]
    .into();
    let nodes = start
        .iter()
        .map(|(n, a)| {
            let p = match n.as_str() {
                "golem" => Protocol::Golem,
                "storj" => Protocol::Storj,
                _ => Protocol::Streamr,
            };
            let spec = SimSpec {
                protocol: p,
                allocation: *a,
                seed: 7,
                market: MarketParams::defaults(p),
                fault: None,
            };
            let shared: SharedClock = Arc::new(clock.clone());
            (n.clone(), Arc::new(SimNode::new(n, &spec, shared)))
        })
        .collect();
    World {
        clock,
        nodes,
        start,
    }
}

impl World {
    fn allocations(&self) -> BTreeMap<String, Allocation> {
        self.nodes
            .iter()
            .map(|(n, s)| (n.clone(), s.allocation()))
            .collect()
    }
}

/// How the fault shows.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `apply` returns an error and changes nothing.
    ApplyFails,
    /// `apply` puts a different allocation in force, so verification fails.
    AppliesWrong,
}

/// Wraps a sim actuator; the `fail_at`-th apply over all nodes (0-based) fails.
struct Faulty {
    inner: Arc<dyn Actuator>,
    node: Arc<SimNode>,
    applies: Arc<AtomicUsize>,
    fail_at: Option<usize>,
    fault: Fault,
}

impl Actuator for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        self.inner.check(node)
    }
    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        let n = self.applies.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_at {
            return match self.fault {
                Fault::ApplyFails => Box::pin(async move {
                    Err(ActuatorError::Failed {
                        node: node.to_string(),
                        action: "apply",
                        detail: "injected fault".into(),
                    })
                }),
                Fault::AppliesWrong => Box::pin(async move {
                    let wrong = Allocation {
                        cpu_cores: to.cpu_cores + 0.5,
                        ..*to
                    };
                    let _ = self.node.set_allocation(wrong).await;
                    Ok(())
                }),
            };
        }
        self.inner.apply(node, to)
    }
    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        self.inner.verify(node, expected)
    }
    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        self.inner.undo(node, previous)
    }
}

fn faulty_actuators(
    w: &World,
    fail_at: Option<usize>,
    fault: Fault,
) -> BTreeMap<String, Arc<dyn Actuator>> {
    let applies = Arc::new(AtomicUsize::new(0));
    w.nodes
        .iter()
        .map(|(n, node)| {
            let inner: Arc<dyn Actuator> = Arc::new(
                actuators::sim::SimActuator::new(node.clone(), VerifySpec::default()).unwrap(),
            );
            let a: Arc<dyn Actuator> = Arc::new(Faulty {
                inner,
                node: node.clone(),
                applies: applies.clone(),
                fail_at,
                fault,
            });
            (n.clone(), a)
        })
        .collect()
}

/// A target that needs every kind of step: golem gives cores and gets memory, storj gets
/// cores and gives memory, streamr gets a core.
fn mixed_target() -> BTreeMap<String, Allocation> {
    [
        ("golem".to_string(), alloc(2.0, 10.0)),
        ("storj".to_string(), alloc(3.0, 2.0)),
        ("streamr".to_string(), alloc(3.0, 4.0)),
    ]
    .into()
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_any_step_rolls_every_step_back() {
    let steps = execute::steps_for(&world().start, &mixed_target());
    let n = steps.len();
    assert_eq!(n, 5, "two releases, three grants: {steps:?}");
    for fault in [Fault::ApplyFails, Fault::AppliesWrong] {
        for k in 0..n {
            let w = world();
            let acts = faulty_actuators(&w, Some(k), fault);
            let history = Mutex::new(History::in_memory());
            let journal = |r: Record| history.lock().unwrap().append(r);
            let report = execute::execute(1, &steps, &acts, &journal, &w.clock).await;
            assert_eq!(
                report.outcome,
                Outcome::RolledBack,
                "fault {fault:?} at step {} of {n}: {}",
                k + 1,
                report.reason
            );
            assert_eq!(report.steps_done, k);
            assert!(
                report
                    .reason
                    .starts_with(&format!("step {} of {n}:", k + 1)),
                "{}",
                report.reason
            );
            assert_eq!(
                w.allocations(),
                w.start,
                "fault {fault:?} at step {}: every node is back where it started",
                k + 1
            );
        }
    }
    // Without a fault every step lands.
    let w = world();
    let acts = faulty_actuators(&w, None, Fault::ApplyFails);
    let history = Mutex::new(History::in_memory());
    let journal = |r: Record| history.lock().unwrap().append(r);
    let report = execute::execute(1, &steps, &acts, &journal, &w.clock).await;
    assert_eq!(report.outcome, Outcome::Applied);
    assert_eq!(w.allocations(), mixed_target());
    let h = history.lock().unwrap();
    assert_eq!(
        h.records().len(),
        2 * n,
        "a start and a done record per step"
    );
}

/// Health from a set of nodes that are down; the others answered just now.
struct FakeHealth {
    clock: ManualClock,
    names: Vec<String>,
    down: Mutex<BTreeSet<String>>,
}

impl HealthSource for FakeHealth {
    fn snapshot(&self) -> Vec<NodeHealth> {
        let down = self.down.lock().unwrap();
        self.names
            .iter()
            .map(|n| NodeHealth {
                name: n.clone(),
                protocol: "sim".into(),
                up: !down.contains(n),
                polled: true,
                last_success_ms: Some(
                    self.clock.now_ms() - if down.contains(n) { 60_000 } else { 0 },
                ),
                consecutive_failures: 0,
                last_error: None,
                degraded: None,
            })
            .collect()
    }
}

/// Proposes `target` for every node that is not frozen, with a fixed gain and confidence; it
/// remembers the frozen nodes it was given.
struct FixedPlanner {
    target: Mutex<BTreeMap<String, Allocation>>,
    gain: f64,
    frozen_seen: Mutex<BTreeMap<String, Frozen>>,
}

impl Planner for FixedPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        let (rules, now_ms, current, frozen) = (i.rules, i.now_ms, i.current, i.frozen);
        *self.frozen_seen.lock().unwrap() = frozen.clone();
        let want = self.target.lock().unwrap().clone();
        let cur: BTreeMap<String, Allocation> = current
            .iter()
            .map(|c| (c.node.clone(), c.allocation))
            .collect();
        let mut target = cur.clone();
        let mut moves = Vec::new();
        for (n, t) in &want {
            if frozen.contains_key(n) {
                continue;
            }
            let from = cur[n];
            for r in Resource::ALL {
                if from.get(r) != t.get(r) {
                    moves.push(Move {
                        node: n.clone(),
                        resource: r,
                        from: from.get(r),
                        to: t.get(r),
                        expected_gain_usd_per_hour: 0.0,
                        confidence: 0.9,
                    });
                }
            }
            target.insert(n.clone(), *t);
        }
        Ok(Plan {
            ts_ms: now_ms,
            current: cur,
            target,
            moves,
            current_usd_per_hour: 1.0,
            target_usd_per_hour: 1.0 + self.gain,
            expected_gain_usd_per_hour: self.gain,
            improvement: self.gain,
            confidence: 0.9,
            switching_cost_usd: 0.0,
            hold_hours: rules.gates.min_hold.as_secs_f64() / 3600.0,
            roi: None,
            left_out: Vec::new(),
            explanation: vec!["fixed test plan".into()],
        })
    }
}

fn rules(gates: Gates) -> OptimizationRules {
    OptimizationRules {
        origin: "test".into(),
        planner: Default::default(),
        exploration_budget: Default::default(),
        interval: Duration::from_secs(60),
        gates,
        confidence: ConfidenceRule::default(),
        resources: BTreeMap::new(),
        protocols: BTreeMap::new(),
        nodes: BTreeMap::new(),
        warnings: Vec::new(),
    }
}

struct Setup {
    controller: Arc<Controller>,
    health: Arc<FakeHealth>,
    planner: Arc<FixedPlanner>,
    db: Arc<Db>,
}

struct PlannerRef(Arc<FixedPlanner>);
impl Planner for PlannerRef {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        self.0.plan(i)
    }
}

fn controller(
    w: &World,
    history: History,
    gates: Gates,
    dry_run: bool,
    acts: BTreeMap<String, Arc<dyn Actuator>>,
) -> Setup {
    let health = Arc::new(FakeHealth {
        clock: w.clock.clone(),
        names: w.nodes.keys().cloned().collect(),
        down: Mutex::new(BTreeSet::new()),
    });
    let planner = Arc::new(FixedPlanner {
        target: Mutex::new(BTreeMap::new()),
        gain: 0.2,
        frozen_seen: Mutex::new(BTreeMap::new()),
    });
    let db = Arc::new(Db::in_memory());
    let nodes = w
        .nodes
        .iter()
        .map(|(n, node)| ControlledNode {
            name: n.clone(),
            protocol: "sim".into(),
            adapter: node.clone(),
            actuator: acts.get(n).cloned(),
            poll_interval: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(4),
            configured: Some(w.start[n]),
        })
        .collect();
    let controller = Controller::new(ControllerParts {
        rules: rules(gates),
        options: ControllerOptions {
            dry_run,
            rollback_margin: 0.1,
            host_capacity: CAPACITY,
        },
        nodes,
        planner: Box::new(PlannerRef(planner.clone())),
        health: health.clone(),
        db: db.clone(),
        engine: Engine::default(),
        clock: Arc::new(w.clock.clone()),
        history,
        registry: prometheus::Registry::new(),
    })
    .unwrap();
    Setup {
        controller,
        health,
        planner,
        db,
    }
}

fn manual(node: &str, cpu: f64) -> ApplyRequest {
    let mut m = BTreeMap::new();
    m.insert(
        node.to_string(),
        Resources {
            cpu_cores: Some(cpu),
            ..Default::default()
        },
    );
    ApplyRequest {
        allocations: Some(m),
        force: false,
    }
}

fn sim_actuators(w: &World) -> BTreeMap<String, Arc<dyn Actuator>> {
    faulty_actuators(w, None, Fault::ApplyFails)
}

#[tokio::test(start_paused = true)]
async fn a_rollback_through_the_controller_is_recorded() {
    let w = world();
    let s = controller(
        &w,
        History::in_memory(),
        Gates::default(),
        false,
        faulty_actuators(&w, Some(1), Fault::AppliesWrong),
    );
    let mut m = BTreeMap::new();
    for (n, a) in mixed_target() {
        m.insert(n, a.map(|_, v| Some(v)));
    }
    let req = ApplyRequest {
        allocations: Some(m),
        force: false,
    };
    let e = s.controller.handle_request(1, req).await.unwrap();
    assert!(
        e.decision
            .to_string()
            .starts_with("rolled_back: step 2 of 5"),
        "{}",
        e.decision
    );
    assert_eq!(w.allocations(), w.start);
    let h = s.controller.history_summaries();
    assert_eq!(h[0].outcome, Some(Outcome::RolledBack));
    assert_eq!(h[0].steps_done, 1);
}

#[tokio::test(start_paused = true)]
async fn the_hold_and_the_rate_limit_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gates = Gates {
        max_reallocations_per_hour: 2,
        ..Gates::default()
    };
    {
        let s = controller(
            &w,
            History::open(dir.path()).unwrap(),
            gates.clone(),
            false,
            sim_actuators(&w),
        );
        let e = s
            .controller
            .handle_request(1, manual("golem", 3.0))
            .await
            .unwrap();
        assert!(
            e.decision.to_string().starts_with("applied"),
            "{}",
            e.decision
        );
    }
    // Restart half-way through the hold: a new controller reads the history from disk.
    w.clock.advance(30 * MIN);
    let s = controller(
        &w,
        History::open(dir.path()).unwrap(),
        gates.clone(),
        false,
        sim_actuators(&w),
    );
    let e = s
        .controller
        .handle_request(2, manual("golem", 5.0))
        .await
        .unwrap();
    assert!(
        e.decision.to_string().contains(
            "min_hold: golem changed at 2026-01-01T00:00:00Z and is held until 2026-01-01T01:00:00Z (30m left)"
        ),
        "{}",
        e.decision
    );
    assert_eq!(
        w.nodes["golem"].allocation().cpu_cores,
        3.0,
        "nothing changed"
    );
    // The loop keeps the held node out of the plan.
    *s.planner.target.lock().unwrap() = [("golem".to_string(), alloc(5.0, 8.0))].into();
    let e = s.controller.tick().await.unwrap();
    assert!(e.steps.is_empty(), "{e:?}");
    let held = s.planner.frozen_seen.lock().unwrap()["golem"].clone();
    assert!(matches!(held, Frozen::Held { .. }), "{held:?}");
    assert!(held
        .to_string()
        .starts_with("held until 2026-01-01T01:00:00Z"));
    // Another node is free: a second reallocation this hour is allowed, the third is not.
    let e = s
        .controller
        .handle_request(3, manual("storj", 3.0))
        .await
        .unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
    drop(s);
    w.clock.advance(MIN);
    let s = controller(
        &w,
        History::open(dir.path()).unwrap(),
        gates.clone(),
        false,
        sim_actuators(&w),
    );
    let e = s
        .controller
        .handle_request(4, manual("streamr", 3.0))
        .await
        .unwrap();
    assert!(
        e.decision
            .to_string()
            .contains("max_reallocations_per_hour: 2 reallocation(s) in the last hour; at most 2 per hour: wait"),
        "{}",
        e.decision
    );
    // Once the hour and the hold are over, golem can move again.
    w.clock.advance(30 * MIN);
    let e = s
        .controller
        .handle_request(5, manual("golem", 5.0))
        .await
        .unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
    assert_eq!(w.nodes["golem"].allocation().cpu_cores, 5.0);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_is_down_is_frozen() {
    let w = world();
    let s = controller(
        &w,
        History::in_memory(),
        Gates::default(),
        false,
        sim_actuators(&w),
    );
    s.health.down.lock().unwrap().insert("storj".into());
    // The loop's plan leaves storj out…
    *s.planner.target.lock().unwrap() = [
        ("golem".to_string(), alloc(3.0, 8.0)),
        ("storj".to_string(), alloc(3.0, 4.0)),
    ]
    .into();
    let e = s.controller.tick().await.unwrap();
    assert_eq!(
        s.planner.frozen_seen.lock().unwrap().get("storj").cloned(),
        Some(Frozen::Down)
    );
    assert!(e.steps.iter().all(|st| st.node != "storj"), "{:?}", e.steps);
    assert_eq!(w.nodes["storj"].allocation(), w.start["storj"]);
    // …and pre-flight refuses an operator's request that touches it, even with force.
    let mut req = manual("storj", 1.0);
    req.force = true;
    let e = s.controller.handle_request(9, req).await.unwrap();
    assert!(
        e.decision.to_string().contains("storj: the node is down"),
        "{}",
        e.decision
    );
    assert_eq!(w.nodes["storj"].allocation(), w.start["storj"]);
    // Back up: it moves.
    s.health.down.lock().unwrap().clear();
    let e = s
        .controller
        .handle_request(10, manual("storj", 1.0))
        .await
        .unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
}

fn pending_intent(id: u64, steps: &[Step], started: usize, done: usize) -> Vec<Record> {
    let mut r = vec![Record::Intent {
        id,
        t_ms: T0,
        source: Source::Controller,
        steps: steps.to_vec(),
        expected_gain_usd_per_hour: Some(0.1),
        current_usd_per_hour: Some(1.0),
        hold_ms: 3_600_000,
        summary: "test".into(),
    }];
    for i in 0..started {
        r.push(Record::StepStarted {
            id,
            index: i,
            t_ms: T0,
        });
        if i < done {
            r.push(Record::StepDone {
                id,
                index: i,
                t_ms: T0,
            });
        }
    }
    r
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_reallocation_is_resolved_at_start() {
    let steps = execute::steps_for(&world().start, &mixed_target());
    // Crash after step 2 was applied but before it was recorded as done: undone.
    {
        let dir = tempfile::tempdir().unwrap();
        let w = world();
        let mut h = History::open(dir.path()).unwrap();
        for r in pending_intent(1, &steps, 2, 1) {
            h.append(r).unwrap();
        }
        drop(h);
        for st in &steps[..2] {
            w.nodes[&st.node].set_allocation(st.to).await.unwrap();
        }
        assert_ne!(w.allocations(), w.start);
        let s = controller(
            &w,
            History::open(dir.path()).unwrap(),
            Gates::default(),
            false,
            sim_actuators(&w),
        );
        let r = s.controller.recover().await.unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack, "{}", r.reason);
        assert_eq!(w.allocations(), w.start);
        let h = History::open(dir.path()).unwrap();
        assert!(h.pending().is_none(), "the outcome is durable");
        assert_eq!(h.summaries()[0].outcome, Some(Outcome::RolledBack));
    }
    // Crash after the last step landed but before its record: verified complete.
    {
        let dir = tempfile::tempdir().unwrap();
        let w = world();
        let mut h = History::open(dir.path()).unwrap();
        for r in pending_intent(1, &steps, steps.len(), steps.len() - 1) {
            h.append(r).unwrap();
        }
        drop(h);
        for st in &steps {
            w.nodes[&st.node].set_allocation(st.to).await.unwrap();
        }
        let s = controller(
            &w,
            History::open(dir.path()).unwrap(),
            Gates::default(),
            false,
            sim_actuators(&w),
        );
        let r = s.controller.recover().await.unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Applied, "{}", r.reason);
        assert_eq!(w.allocations(), mixed_target());
        // It counts for the hold like any applied reallocation.
        assert!(History::open(dir.path())
            .unwrap()
            .last_change()
            .contains_key("golem"));
    }
    // Crash before any step: nothing to undo.
    {
        let w = world();
        let mut h = History::in_memory();
        for r in pending_intent(1, &steps, 0, 0) {
            h.append(r).unwrap();
        }
        let s = controller(&w, h, Gates::default(), false, sim_actuators(&w));
        let r = s.controller.recover().await.unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert_eq!(w.allocations(), w.start);
    }
}

/// Appends `depin_earnings_usd_total` from `from_ms` to `to_ms` every minute at `usd_per_hour`,
/// starting at `start`; returns the last value.
fn earn(db: &Db, from_ms: i64, to_ms: i64, usd_per_hour: f64, start: f64) -> f64 {
    let l = Labels::from_pairs([("__name__", "depin_earnings_usd_total"), ("node", "golem")]);
    let mut v = start;
    let mut t = from_ms;
    while t <= to_ms {
        db.append(&l, t, v).unwrap();
        t += MIN;
        v += usd_per_hour / 60.0;
    }
    v - usd_per_hour / 60.0
}

/// Applies a move of golem and storj at T0 + 1 h after an hour at 1 USD/h; the hour after it
/// earns 0.5 USD/h, and the clock stands at the end of that hour, the planner with no target.
/// Returns the allocations the move gave.
async fn a_worse_move(w: &World, s: &Setup) -> BTreeMap<String, Allocation> {
    let v = earn(&s.db, T0, T0 + 60 * MIN, 1.0, 0.0);
    let moved: BTreeMap<String, Allocation> = [
        ("golem".to_string(), alloc(2.0, 8.0)),
        ("storj".to_string(), alloc(4.0, 4.0)),
    ]
    .into();
    *s.planner.target.lock().unwrap() = moved.clone();
    let e = s.controller.tick().await.unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
    earn(&s.db, T0 + 61 * MIN, T0 + 120 * MIN, 0.5, v + 0.5 / 60.0);
    w.clock.set(T0 + 120 * MIN);
    *s.planner.target.lock().unwrap() = BTreeMap::new();
    moved
}

#[tokio::test(start_paused = true)]
async fn a_move_that_made_things_worse_is_undone_after_its_hold() {
    let w = world();
    w.clock.set(T0 + 60 * MIN);
    let s = controller(
        &w,
        History::in_memory(),
        Gates::default(),
        false,
        sim_actuators(&w),
    );
    a_worse_move(&w, &s).await;
    assert_eq!(s.controller.measure_realized().await.unwrap(), 1);
    assert_eq!(w.allocations(), w.start, "the move was undone");
    let h = s.controller.history_summaries();
    let first = h.iter().find(|x| x.source == Source::Controller).unwrap();
    let g = first.realized_gain_usd_per_hour.unwrap();
    assert!((g + 0.5).abs() < 0.05, "{g}");
    assert!(
        first
            .realized_note
            .as_deref()
            .unwrap()
            .contains("rollback 2: applied"),
        "{:?}",
        first.realized_note
    );
    let rb = h
        .iter()
        .find(|x| x.source == Source::RealizedRollback)
        .unwrap();
    assert_eq!(rb.outcome, Some(Outcome::Applied));
    // Measured once: the rollback itself is not judged again.
    assert_eq!(s.controller.measure_realized().await.unwrap(), 0);
}

/// The safety net is a reallocation too: when the day's limit is spent, a move that made
/// things worse stays, and the realized-gain note says which gate refused its undo.
#[tokio::test(start_paused = true)]
async fn a_worse_move_is_not_undone_past_the_daily_limit() {
    let w = world();
    w.clock.set(T0 + 60 * MIN);
    let gates = Gates {
        max_reallocations_per_day: Some(1),
        ..Gates::default()
    };
    let s = controller(&w, History::in_memory(), gates, false, sim_actuators(&w));
    let moved = a_worse_move(&w, &s).await;
    assert_eq!(s.controller.measure_realized().await.unwrap(), 1);
    let mut after = w.start.clone();
    after.extend(moved);
    assert_eq!(w.allocations(), after, "the worse move stays");
    let h = s.controller.history_summaries();
    assert!(
        h.iter().all(|x| x.source != Source::RealizedRollback),
        "no rollback was recorded: {h:?}"
    );
    let first = h.iter().find(|x| x.source == Source::Controller).unwrap();
    assert!(first.realized_gain_usd_per_hour.unwrap() < 0.0);
    let note = first.realized_note.as_deref().unwrap();
    assert!(
        note.contains("not rolled back: max_reallocations_per_day: 1 reallocation(s) in the last 24 hours; at most 1 per day"),
        "{note}"
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_but_never_applies() {
    let w = world();
    let s = controller(
        &w,
        History::in_memory(),
        Gates::default(),
        true,
        sim_actuators(&w),
    );
    *s.planner.target.lock().unwrap() = [
        ("golem".to_string(), alloc(3.0, 8.0)),
        ("storj".to_string(), alloc(3.0, 4.0)),
    ]
    .into();
    let e = s.controller.tick().await.unwrap();
    assert_eq!(
        e.decision.to_string(),
        "dry run: would apply golem: cpu_cores 4 → 3; storj: cpu_cores 2 → 3"
    );
    assert!(e.gates.pass);
    assert_eq!(w.allocations(), w.start);
    assert!(s.controller.request(manual("golem", 1.0)).is_err());
    assert!(s.controller.history_summaries().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_loop_applies_a_plan_that_passes_and_rejects_one_that_does_not() {
    let w = world();
    let s = controller(
        &w,
        History::in_memory(),
        Gates::default(),
        false,
        sim_actuators(&w),
    );
    let target: BTreeMap<String, Allocation> = [
        ("golem".to_string(), alloc(3.0, 8.0)),
        ("storj".to_string(), alloc(3.0, 4.0)),
    ]
    .into();
    *s.planner.target.lock().unwrap() = target.clone();
    let e = s.controller.tick().await.unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
    assert_eq!(w.nodes["golem"].allocation().cpu_cores, 3.0);
    // A plan over capacity never reaches the nodes.
    *s.planner.target.lock().unwrap() = [("streamr".to_string(), alloc(9.0, 4.0))].into();
    let e = s.controller.tick().await.unwrap();
    assert!(
        e.decision.to_string().starts_with("rejected by pre-flight: cpu_cores: the nodes would hold 15 together, more than the 12 available"),
        "{}",
        e.decision
    );
    assert_eq!(w.nodes["streamr"].allocation(), w.start["streamr"]);
    // The same rejection again is counted but written once.
    s.controller.tick().await.unwrap();
    let rejected = s
        .controller
        .history_summaries()
        .iter()
        .filter(|x| x.outcome == Some(Outcome::Rejected))
        .count();
    assert_eq!(rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn the_loop_resolves_first_then_plans_every_interval_unless_paused() {
    let w = world();
    let steps = execute::steps_for(&w.start, &mixed_target());
    let mut h = History::in_memory();
    for r in pending_intent(1, &steps, 0, 0) {
        h.append(r).unwrap();
    }
    let s = controller(&w, h, Gates::default(), false, sim_actuators(&w));
    *s.planner.target.lock().unwrap() = [("golem".to_string(), alloc(3.0, 8.0))].into();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(s.controller.clone().run(rx));
    // Before the first interval: the interrupted reallocation is resolved, nothing planned.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let h = s.controller.history_summaries();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].outcome, Some(Outcome::RolledBack));
    assert_eq!(w.allocations(), w.start);
    // One interval in: the plan is applied.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(w.nodes["golem"].allocation().cpu_cores, 3.0);
    // Paused: the next rounds change nothing.
    s.controller.pause("test").unwrap();
    *s.planner.target.lock().unwrap() = [("streamr".to_string(), alloc(1.0, 4.0))].into();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(w.nodes["streamr"].allocation(), w.start["streamr"]);
    assert!(s
        .controller
        .last_evaluation()
        .unwrap()
        .decision
        .to_string()
        .starts_with("paused: apply streamr"));
    s.controller.resume("test").unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.nodes["streamr"].allocation().cpu_cores, 1.0);
    stop.send_replace(true);
    task.await.unwrap();
}

/// The 30-day budget through the controller: spent, remembered across a restart from the
/// history file, refilled at its even pace.
#[tokio::test(start_paused = true)]
async fn the_30_day_budget_survives_a_restart_and_refills_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gates = Gates {
        max_reallocations_per_day: Some(2),
        max_reallocations_per_30_days: Some(3),
        ..Gates::default()
    };
    let start = |w: &World| {
        controller(
            w,
            History::open(dir.path()).unwrap(),
            gates.clone(),
            false,
            sim_actuators(w),
        )
    };
    {
        let s = start(&w);
        for (id, node) in [(1, "golem"), (2, "storj")] {
            let e = s
                .controller
                .handle_request(id, manual(node, 3.0))
                .await
                .unwrap();
            assert!(
                e.decision.to_string().starts_with("applied"),
                "{}",
                e.decision
            );
        }
    }
    // A day and an hour later the daily limit is free again, but the bucket (two, refilled
    // by one in 30 days) is not: the month's third is a month away.
    w.clock.advance(25 * 60 * MIN);
    let s = start(&w);
    let e = s
        .controller
        .handle_request(3, manual("streamr", 3.0))
        .await
        .unwrap();
    let d = e.decision.to_string();
    assert!(!d.contains("max_reallocations_per_day"), "{d}");
    assert!(
        d.contains("max_reallocations_per_30_days: 2 reallocation(s) in the last 30 days, 0.03 of 2 saved (refills 0.03 a day, at most 3 in 30 days): wait 28days"),
        "{d}"
    );
    assert_eq!(
        w.nodes["streamr"].allocation().cpu_cores,
        w.start["streamr"].cpu_cores
    );
    w.clock.advance(29 * 24 * 60 * MIN);
    let e = s
        .controller
        .handle_request(4, manual("streamr", 3.0))
        .await
        .unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
}

//! The controller: every `interval` of the optimization rules it measures the realized gain of
//! reallocations whose hold has ended (undoing one that made things worse), reads each node's
//! allocation in force, plans (through a [`Planner`], the optimizer by default) with the nodes
//! that must not move kept out of the plan (held, down, stale, without actuator), gates the
//! plan, runs pre-flight and executes it; in dry-run mode it stops after the gates and logs
//! what it would do. Pause/resume is durable (it is in the history), so a paused controller
//! stays paused across a restart.
//!
//! At most one reallocation runs at a time (the loop and the API share one lock). Metrics:
//! `depin_reallocations_total{outcome}`, `depin_reallocation_last_timestamp_seconds`,
//! `depin_reallocation_realized_gain_usd_per_hour`, `depin_controller_paused`,
//! `depin_controller_dry_run`, `depin_gate_verdict{gate}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Gauge, GaugeVec, IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::watch;

use super::execute::{self, describe, steps_for, ExecReport};
use super::gates::{self, Gate, GateReport, Mode};
use super::history::{History, HistoryError, Outcome, Record, Source, Step};
use super::preflight::{self, NodeFacts, Preflight};
use super::realized;
use crate::actuators::Actuator;
use crate::adapters::Adapter;
use crate::clock::SharedClock;
use crate::coordinator::{HealthBoard, NodeHealth};
use crate::optimizer::{self, CurrentNode, Move, OptimizationRules, Plan};
use crate::promql::Engine;
use crate::resources::{Allocation, Resource};
use crate::tsdb::Db;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("planning failed: {0}")]
    Plan(String),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    BadRequest(String),
    #[error("a reallocation is already in progress")]
    Busy,
    #[error("the controller runs with --controller.dry-run: nothing is applied")]
    DryRun,
    #[error("metric registration: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Where node health comes from: the coordinator's [`HealthBoard`] (tests give their own).
pub trait HealthSource: Send + Sync {
    fn snapshot(&self) -> Vec<NodeHealth>;
}

impl HealthSource for HealthBoard {
    fn snapshot(&self) -> Vec<NodeHealth> {
        HealthBoard::snapshot(self)
    }
}

/// What a planner gets: the allocations in force and the nodes that must keep theirs.
pub struct PlanInput<'a> {
    pub rules: &'a OptimizationRules,
    pub db: &'a Db,
    pub engine: &'a Engine,
    pub now_ms: i64,
    pub current: &'a [CurrentNode],
    pub host_capacity: &'a Allocation,
    /// Nodes that must keep their allocation, with the reason; a planner must leave them as
    /// they are (and count what they hold).
    pub frozen: &'a BTreeMap<String, String>,
}

impl PlanInput<'_> {
    /// The optimizer's inputs: every estimator evaluated now, and the frozen nodes (held, down,
    /// stale, without actuator) moved to `left_out` with their reason, so no planner moves them.
    pub fn gather(&self) -> Result<optimizer::Inputs, String> {
        let mut inputs = optimizer::gather_inputs(
            self.rules,
            self.db,
            self.engine,
            self.now_ms,
            self.current,
            self.host_capacity,
        )
        .map_err(|e| e.to_string())?;
        let (keep, out): (Vec<_>, Vec<_>) = inputs
            .nodes
            .into_iter()
            .partition(|n| !self.frozen.contains_key(&n.node));
        inputs.nodes = keep;
        for n in out {
            inputs.left_out.push(optimizer::LeftOut {
                reason: self.frozen.get(&n.node).cloned().unwrap_or_default(),
                node: n.node,
                allocation: n.current,
            });
        }
        Ok(inputs)
    }
}

/// Plans from the allocations in force.
pub trait Planner: Send + Sync {
    fn plan(&self, input: &PlanInput<'_>) -> Result<Plan, String>;
}

/// The optimizer: [`optimizer::gather_inputs`], frozen nodes moved to `left_out`, then
/// [`optimizer::plan`]; each plan feeds the `depin_optimizer_*` metrics when they are
/// registered.
#[derive(Default)]
pub struct OptimizerPlanner {
    metrics: Option<optimizer::OptimizerMetrics>,
}

impl OptimizerPlanner {
    /// A planner whose plans show in `registry` (expected gain, confidence, plan duration).
    pub fn with_metrics(
        registry: &prometheus::Registry,
    ) -> Result<OptimizerPlanner, prometheus::Error> {
        Ok(OptimizerPlanner {
            metrics: Some(optimizer::OptimizerMetrics::register(registry)?),
        })
    }
}

impl Planner for OptimizerPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        // Wall time on purpose: the duration metric measures our own work, not market time.
        let started = std::time::Instant::now();
        let inputs = i.gather()?;
        let plan = optimizer::plan(i.rules, &inputs);
        if let Some(m) = &self.metrics {
            m.observe(&plan, started.elapsed().as_secs_f64());
        }
        Ok(plan)
    }
}

/// One node as the controller sees it.
#[derive(Clone)]
pub struct ControlledNode {
    pub name: String,
    pub protocol: String,
    pub adapter: Arc<dyn Adapter>,
    /// None: the node is observed and counted, never changed.
    pub actuator: Option<Arc<dyn Actuator>>,
    pub poll_interval: Duration,
    pub poll_timeout: Duration,
    /// The configured allocation: fills in the resources the node does not report.
    pub configured: Option<Allocation>,
}

#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// `--controller.dry-run`: plan, gate and log; never apply.
    pub dry_run: bool,
    /// A reallocation whose realized gain is a loss of more than this fraction of the earnings
    /// rate before it is undone (not in the rules' `gates` yet; default
    /// [`super::DEFAULT_ROLLBACK_MARGIN`]).
    pub rollback_margin: f64,
    /// The host's capacity (the config's `host.capacity`).
    pub host_capacity: Allocation,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub reallocations: IntCounterVec,
    pub last_timestamp: Gauge,
    pub realized_gain: Gauge,
    pub paused: Gauge,
    pub dry_run: Gauge,
    pub gate_verdict: GaugeVec,
    /// `depin_planned_allocation_<resource>{node,protocol}`: the last plan's target, one
    /// family per resource like `depin_allocation_*`, so dashboards set them side by side.
    pub planned: Vec<(crate::resources::Resource, GaugeVec)>,
}

impl ControllerMetrics {
    pub fn register(registry: &Registry) -> Result<ControllerMetrics, prometheus::Error> {
        let reallocations = IntCounterVec::new(
            Opts::new(
                "depin_reallocations_total",
                "Reallocations by outcome: applied, rolled_back, rejected (gates or pre-flight), rollback_failed.",
            ),
            &["outcome"],
        )?;
        let last_timestamp = Gauge::with_opts(Opts::new(
            "depin_reallocation_last_timestamp_seconds",
            "When the last reallocation that touched nodes ended, in seconds since the epoch.",
        ))?;
        let realized_gain = Gauge::with_opts(Opts::new(
            "depin_reallocation_realized_gain_usd_per_hour",
            "Realized gain of the last measured reallocation: earnings rate over the hold period after it minus before it, in USD per hour.",
        ))?;
        let paused = Gauge::with_opts(Opts::new(
            "depin_controller_paused",
            "1 while the reallocation controller is paused, else 0.",
        ))?;
        let dry_run = Gauge::with_opts(Opts::new(
            "depin_controller_dry_run",
            "1 when the controller only plans and logs (--controller.dry-run), else 0.",
        ))?;
        let gate_verdict = GaugeVec::new(
            Opts::new(
                "depin_gate_verdict",
                "Verdict of each gate on the last plan: 1 pass, 0 block.",
            ),
            &["gate"],
        )?;
        let mut planned = Vec::new();
        for r in crate::resources::Resource::ALL {
            let g = GaugeVec::new(
                Opts::new(
                    format!("depin_planned_allocation_{}", r.key()),
                    format!(
                        "The node's share of the host in the last plan, in {}.",
                        r.unit()
                    ),
                ),
                &["node", "protocol"],
            )?;
            registry.register(Box::new(g.clone()))?;
            planned.push((r, g));
        }
        for o in Outcome::ALL {
            reallocations.with_label_values(&[o.as_str()]);
        }
        registry.register(Box::new(reallocations.clone()))?;
        registry.register(Box::new(last_timestamp.clone()))?;
        registry.register(Box::new(realized_gain.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(dry_run.clone()))?;
        registry.register(Box::new(gate_verdict.clone()))?;
        Ok(ControllerMetrics {
            reallocations,
            last_timestamp,
            realized_gain,
            paused,
            dry_run,
            gate_verdict,
            planned,
        })
    }
}

/// One plan with everything decided about it: what `GET /api/v1/plan` and `depin-orcha plan`
/// show.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub ts_ms: i64,
    pub source: Source,
    pub mode: Mode,
    pub plan: Plan,
    /// Nodes kept out of the plan, with the reason (held, down, stale, no actuator).
    pub frozen: BTreeMap<String, String>,
    pub gates: GateReport,
    /// The pure part of pre-flight (actuators are asked only before executing).
    pub preflight: Preflight,
    /// The steps it would take, in order.
    pub steps: Vec<Step>,
    /// What the controller did or would do, in words.
    pub decision: String,
}

/// What `depin-orcha plan` prints: the evaluation, as text or JSON.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub evaluation: Evaluation,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.evaluation;
        write!(f, "{}", e.plan)?;
        if !e.frozen.is_empty() {
            writeln!(f, "Kept out of the plan:")?;
            for (n, why) in &e.frozen {
                writeln!(f, "  - {n}: {why}")?;
            }
        }
        writeln!(f, "Gates:")?;
        for v in &e.gates.verdicts {
            writeln!(
                f,
                "  [{}] {}: {}",
                if v.pass { "pass" } else { "BLOCK" },
                v.gate.as_str(),
                v.reason
            )?;
        }
        if e.preflight.pass {
            writeln!(f, "Pre-flight: pass")?;
        } else {
            writeln!(f, "Pre-flight:")?;
            for p in &e.preflight.problems {
                writeln!(f, "  [BLOCK] {p}")?;
            }
        }
        if !e.steps.is_empty() {
            writeln!(f, "Steps:")?;
            for (i, s) in e.steps.iter().enumerate() {
                writeln!(f, "  {}. {}", i + 1, describe(std::slice::from_ref(s)))?;
            }
        }
        writeln!(f, "Decision: {}", e.decision)
    }
}

/// What `POST /api/v1/reallocations` asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyRequest {
    /// None: the current plan. Some: these allocations (resources not given keep theirs).
    pub allocations: Option<BTreeMap<String, crate::resources::Resources<Option<f64>>>>,
    /// Skip the gates (not pre-flight).
    pub force: bool,
}

/// What the optimization rules decide, swapped whole on a reload: the rules, the nodes with
/// the actuators built from them, and the pre-flight facts (bounds, actuator). A round takes
/// one [`Model`] at its start and keeps it to its end, so a reload never mixes two rule sets
/// in one decision.
pub struct Model {
    pub rules: OptimizationRules,
    nodes: BTreeMap<String, ControlledNode>,
    facts: BTreeMap<String, NodeFacts>,
    actuators: BTreeMap<String, Arc<dyn Actuator>>,
}

impl Model {
    fn new(rules: OptimizationRules, list: Vec<ControlledNode>) -> Model {
        let mut facts = BTreeMap::new();
        let mut actuators = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for n in list {
            let bounds = rules
                .for_node(&n.name, &n.protocol)
                .map(|r| r.bounds)
                .unwrap_or_default();
            facts.insert(
                n.name.clone(),
                NodeFacts {
                    poll_interval: n.poll_interval,
                    bounds,
                    actuator: n.actuator.clone(),
                },
            );
            if let Some(a) = &n.actuator {
                actuators.insert(n.name.clone(), a.clone());
            }
            nodes.insert(n.name.clone(), n);
        }
        Model {
            rules,
            nodes,
            facts,
            actuators,
        }
    }

    /// The nodes, sorted by name.
    pub fn nodes(&self) -> impl Iterator<Item = &ControlledNode> {
        self.nodes.values()
    }
}

pub struct Controller {
    model: std::sync::RwLock<Arc<Model>>,
    /// Counts rule replacements, so the loop restarts its timer when the interval changes.
    generation: watch::Sender<u64>,
    opts: ControllerOptions,
    planner: Box<dyn Planner>,
    health: Arc<dyn HealthSource>,
    db: Arc<Db>,
    engine: Engine,
    clock: SharedClock,
    history: Mutex<History>,
    metrics: ControllerMetrics,
    paused: AtomicBool,
    last: Mutex<Option<Evaluation>>,
    /// The last rejection written to the history: the same one again is only counted.
    last_rejection: Mutex<Option<(Vec<Step>, Vec<Gate>)>>,
    /// The allocation last read from each node, for a node that does not answer.
    last_known: Mutex<BTreeMap<String, Allocation>>,
    exec_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The parts a controller is built from.
pub struct ControllerParts {
    pub rules: OptimizationRules,
    pub options: ControllerOptions,
    pub nodes: Vec<ControlledNode>,
    pub planner: Box<dyn Planner>,
    pub health: Arc<dyn HealthSource>,
    pub db: Arc<Db>,
    pub engine: Engine,
    pub clock: SharedClock,
    pub history: History,
    pub registry: Registry,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere leaves whole records behind: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Controller {
    pub fn new(parts: ControllerParts) -> Result<Arc<Controller>, ControllerError> {
        let metrics = ControllerMetrics::register(&parts.registry)?;
        let model = Model::new(parts.rules, parts.nodes);
        let paused = parts.history.paused().unwrap_or(false);
        metrics.paused.set(if paused { 1.0 } else { 0.0 });
        metrics
            .dry_run
            .set(if parts.options.dry_run { 1.0 } else { 0.0 });
        let report = parts.history.open_report().clone();
        if let Some(b) = report.torn_tail_bytes {
            tracing::warn!(
                bytes = b,
                path = ?parts.history.path(),
                "the reallocation history ended in a torn record (a crash while writing it); it was ignored"
            );
        }
        if !report.damaged_lines.is_empty() {
            tracing::warn!(lines = ?report.damaged_lines, path = ?parts.history.path(), "damaged records in the reallocation history were skipped");
        }
        Ok(Arc::new(Controller {
            model: std::sync::RwLock::new(Arc::new(model)),
            generation: watch::Sender::new(0),
            opts: parts.options,
            planner: parts.planner,
            health: parts.health,
            db: parts.db,
            engine: parts.engine,
            clock: parts.clock,
            history: Mutex::new(parts.history),
            metrics,
            paused: AtomicBool::new(paused),
            last: Mutex::new(None),
            last_rejection: Mutex::new(None),
            last_known: Mutex::new(BTreeMap::new()),
            exec_lock: Arc::new(tokio::sync::Mutex::new(())),
        }))
    }

    /// The rules and nodes in force now (a reload swaps them; this copy stays whole).
    pub fn model(&self) -> Arc<Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts new optimization rules in force, with the nodes (and actuators) built from them.
    /// A round already running finishes with the rules it started with.
    pub fn replace_rules(&self, rules: OptimizationRules, nodes: Vec<ControlledNode>) {
        let m = Arc::new(Model::new(rules, nodes));
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = m;
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn is_dry_run(&self) -> bool {
        self.opts.dry_run
    }

    /// The last evaluation (of the loop or a request).
    pub fn last_evaluation(&self) -> Option<Evaluation> {
        lock(&self.last).clone()
    }

    /// Every reallocation, newest first.
    pub fn history_summaries(&self) -> Vec<super::history::Summary> {
        lock(&self.history).summaries()
    }

    /// The allocation last read from each node.
    pub fn known_allocations(&self) -> BTreeMap<String, Allocation> {
        lock(&self.last_known).clone()
    }

    pub fn health(&self) -> Vec<NodeHealth> {
        self.health.snapshot()
    }

    /// Pauses the loop (durably); requests through the API still work.
    pub fn pause(&self, reason: &str) -> Result<(), ControllerError> {
        self.set_paused(true, reason)
    }

    pub fn resume(&self, reason: &str) -> Result<(), ControllerError> {
        self.set_paused(false, reason)
    }

    fn set_paused(&self, paused: bool, reason: &str) -> Result<(), ControllerError> {
        lock(&self.history).append(Record::Control {
            t_ms: self.clock.now_ms(),
            paused,
            reason: reason.to_string(),
        })?;
        self.paused.store(paused, Ordering::SeqCst);
        self.metrics.paused.set(if paused { 1.0 } else { 0.0 });
        tracing::info!(paused, reason, "reallocation controller");
        Ok(())
    }

    /// Reads each node's allocation in force (one poll each, cut at its timeout); resources it
    /// does not report come from the configuration; a node that does not answer keeps the last
    /// allocation read (or the configured one).
    pub async fn read_current(&self) -> Vec<CurrentNode> {
        self.read_current_in(&self.model()).await
    }

    async fn read_current_in(&self, m: &Model) -> Vec<CurrentNode> {
        let mut out = Vec::with_capacity(m.nodes.len());
        for n in m.nodes.values() {
            let base = lock(&self.last_known)
                .get(&n.name)
                .copied()
                .or(n.configured)
                .unwrap_or_default();
            let polled = tokio::time::timeout(n.poll_timeout, n.adapter.poll()).await;
            let allocation = match polled {
                Ok(Ok(obs)) => {
                    let a = base.map(|r, b| obs.allocation.get(r).unwrap_or(b));
                    lock(&self.last_known).insert(n.name.clone(), a);
                    a
                }
                _ => base,
            };
            out.push(CurrentNode {
                node: n.name.clone(),
                protocol: n.protocol.clone(),
                allocation,
            });
        }
        out
    }

    /// Nodes that must keep their allocation now, with the reason.
    fn frozen(&self, m: &Model, now_ms: i64, health: &[NodeHealth]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let last_change = lock(&self.history).last_change();
        let hold_ms = m.rules.gates.min_hold.as_millis() as i64;
        for (name, n) in &m.nodes {
            if n.actuator.is_none() {
                out.insert(name.clone(), "no actuator is configured".to_string());
                continue;
            }
            if let Some(&t) = last_change.get(name) {
                if now_ms < t + hold_ms {
                    out.insert(
                        name.clone(),
                        format!(
                            "held until {} (changed at {}, min_hold {})",
                            gates::fmt_time(t + hold_ms),
                            gates::fmt_time(t),
                            humantime::format_duration(m.rules.gates.min_hold)
                        ),
                    );
                    continue;
                }
            }
            match health.iter().find(|h| &h.name == name) {
                Some(h) if !h.up => {
                    out.insert(name.clone(), "the node is down".to_string());
                }
                Some(h) => {
                    let max_age =
                        n.poll_interval.as_millis() as i64 * preflight::STALE_POLLS as i64;
                    if h.last_success_ms.is_none_or(|t| now_ms - t > max_age) {
                        out.insert(
                            name.clone(),
                            format!(
                                "its data is stale (no successful poll within {} poll intervals)",
                                preflight::STALE_POLLS
                            ),
                        );
                    }
                }
                None => {
                    out.insert(name.clone(), "the coordinator does not poll it".to_string());
                }
            }
        }
        out
    }

    fn gate_context<'a>(
        &'a self,
        m: &'a Model,
        now_ms: i64,
        mode: Mode,
        last_change: &'a BTreeMap<String, i64>,
        done: usize,
    ) -> gates::Context<'a> {
        gates::Context {
            now_ms,
            gates: &m.rules.gates,
            capacity: &self.opts.host_capacity,
            reallocations_last_hour: done,
            last_change,
            mode,
        }
    }

    fn judge(
        &self,
        m: &Model,
        plan: Plan,
        source: Source,
        mode: Mode,
        frozen: BTreeMap<String, String>,
    ) -> Evaluation {
        let now = self.clock.now_ms();
        let (last_change, done) = {
            let h = lock(&self.history);
            (h.last_change(), h.reallocations_since(now - 3_600_000))
        };
        let ctx = self.gate_context(m, now, mode, &last_change, done);
        let gates = gates::evaluate(&plan, &ctx);
        let health = self.health.snapshot();
        let available = m.rules.available(&self.opts.host_capacity);
        let preflight = preflight::check_plan(
            now,
            &plan.current,
            &plan.target,
            &available,
            &m.facts,
            &health,
        );
        let steps = steps_for(&plan.current, &plan.target);
        let decision = if steps.is_empty() {
            "nothing to do".to_string()
        } else if !gates.pass {
            format!("rejected by the gates: {}", gates.blocking().join("; "))
        } else if !preflight.pass {
            format!("rejected by pre-flight: {}", preflight.problems.join("; "))
        } else if self.opts.dry_run {
            format!("dry run: would apply {}", describe(&steps))
        } else {
            format!("apply {}", describe(&steps))
        };
        Evaluation {
            ts_ms: now,
            source,
            mode,
            plan,
            frozen,
            gates,
            preflight,
            steps,
            decision,
        }
    }

    /// Reads the nodes, plans with the frozen nodes kept out, gates and pre-flights (the pure
    /// part). Changes nothing.
    pub async fn evaluate(&self, source: Source) -> Result<Evaluation, ControllerError> {
        self.evaluate_in(&self.model(), source).await
    }

    async fn evaluate_in(&self, m: &Model, source: Source) -> Result<Evaluation, ControllerError> {
        let current = self.read_current_in(m).await;
        let now = self.clock.now_ms();
        let health = self.health.snapshot();
        let frozen = self.frozen(m, now, &health);
        let plan = self
            .planner
            .plan(&PlanInput {
                rules: &m.rules,
                db: &self.db,
                engine: &self.engine,
                now_ms: now,
                current: &current,
                host_capacity: &self.opts.host_capacity,
                frozen: &frozen,
            })
            .map_err(ControllerError::Plan)?;
        for (node, target) in &plan.target {
            let protocol = m.nodes.get(node).map(|n| n.protocol.as_str()).unwrap_or("");
            for (r, g) in &self.metrics.planned {
                g.with_label_values(&[node.as_str(), protocol])
                    .set(target.get(*r));
            }
        }
        let e = self.judge(m, plan, source, Mode::Plan, frozen);
        for v in &e.gates.verdicts {
            self.metrics
                .gate_verdict
                .with_label_values(&[v.gate.as_str()])
                .set(if v.pass { 1.0 } else { 0.0 });
        }
        Ok(e)
    }

    /// A plan for allocations an operator gave: moves from the differences, no expected gain.
    async fn manual_plan(
        &self,
        m: &Model,
        wanted: &BTreeMap<String, crate::resources::Resources<Option<f64>>>,
    ) -> Result<Plan, ControllerError> {
        for n in wanted.keys() {
            if !m.nodes.contains_key(n) {
                return Err(ControllerError::BadRequest(format!(
                    "allocations.{n}: no such node; known nodes: {}",
                    m.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let current: BTreeMap<String, Allocation> = self
            .read_current_in(m)
            .await
            .into_iter()
            .map(|c| (c.node, c.allocation))
            .collect();
        let mut target = current.clone();
        let mut moves = Vec::new();
        for (n, w) in wanted {
            let Some(t) = target.get_mut(n) else { continue };
            for r in Resource::ALL {
                if let Some(v) = w.get(r) {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(ControllerError::BadRequest(format!(
                            "allocations.{n}.{}: must be a finite number of 0 or more, got {v}",
                            r.key()
                        )));
                    }
                    let from = t.get(r);
                    if from != v {
                        moves.push(Move {
                            node: n.clone(),
                            resource: r,
                            from,
                            to: v,
                            expected_gain_usd_per_hour: 0.0,
                            confidence: 1.0,
                        });
                    }
                    t.set(r, v);
                }
            }
        }
        moves.sort_by_key(|m| !m.is_release());
        Ok(Plan {
            ts_ms: self.clock.now_ms(),
            current,
            target,
            moves,
            current_usd_per_hour: 0.0,
            target_usd_per_hour: 0.0,
            expected_gain_usd_per_hour: 0.0,
            improvement: 0.0,
            confidence: 1.0,
            switching_cost_usd: 0.0,
            hold_hours: m.rules.gates.min_hold.as_secs_f64() / 3600.0,
            roi: None,
            left_out: Vec::new(),
            explanation: vec!["an allocation given through the control API".into()],
        })
    }

    fn count(&self, outcome: Outcome) {
        self.metrics
            .reallocations
            .with_label_values(&[outcome.as_str()])
            .inc();
        if outcome != Outcome::Rejected {
            self.metrics
                .last_timestamp
                .set(self.clock.now_ms() as f64 / 1000.0);
        }
    }

    /// Records a rejection (the same one as last time from the loop is only counted).
    fn reject(&self, id: Option<u64>, e: &Evaluation) -> Result<(), ControllerError> {
        self.count(Outcome::Rejected);
        let blocking: Vec<Gate> = e
            .gates
            .verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| v.gate)
            .collect();
        if e.source == Source::Controller {
            let key = (e.steps.clone(), blocking);
            let mut last = lock(&self.last_rejection);
            if last.as_ref() == Some(&key) {
                return Ok(());
            }
            *last = Some(key);
        }
        let mut reasons = e.gates.blocking();
        reasons.extend(e.preflight.problems.iter().cloned());
        let mut h = lock(&self.history);
        let id = id.unwrap_or_else(|| h.next_id());
        h.append(Record::Rejected {
            id,
            t_ms: self.clock.now_ms(),
            source: e.source,
            steps: e.steps.clone(),
            reasons,
        })?;
        Ok(())
    }

    /// Intent, steps, outcome: the whole durable life of one reallocation.
    async fn carry_out(
        &self,
        m: &Model,
        id: u64,
        source: Source,
        steps: &[Step],
        expected: Option<f64>,
        current_rate: Option<f64>,
    ) -> Result<ExecReport, ControllerError> {
        let summary = describe(steps);
        lock(&self.history).append(Record::Intent {
            id,
            t_ms: self.clock.now_ms(),
            source,
            steps: steps.to_vec(),
            expected_gain_usd_per_hour: expected,
            current_usd_per_hour: current_rate,
            hold_ms: m.rules.gates.min_hold.as_millis() as i64,
            summary: summary.clone(),
        })?;
        let journal = |r: Record| lock(&self.history).append(r);
        let report = execute::execute(id, steps, &m.actuators, &journal, self.clock.as_ref()).await;
        self.finish(id, &report)?;
        // What the nodes hold now, verified, for `GET /api/v1/allocations` until the next read.
        let mut known = lock(&self.last_known);
        match report.outcome {
            Outcome::Applied => {
                for s in steps {
                    known.insert(s.node.clone(), s.to);
                }
            }
            Outcome::RolledBack => {
                for s in steps.iter().rev() {
                    known.insert(s.node.clone(), s.from);
                }
            }
            _ => {}
        }
        drop(known);
        match report.outcome {
            Outcome::Applied => tracing::info!(id, steps = %summary, "reallocation applied"),
            Outcome::RolledBack => {
                tracing::warn!(id, reason = %report.reason, "reallocation rolled back")
            }
            _ => {}
        }
        Ok(report)
    }

    fn finish(&self, id: u64, report: &ExecReport) -> Result<(), ControllerError> {
        lock(&self.history).append(Record::Outcome {
            id,
            t_ms: self.clock.now_ms(),
            outcome: report.outcome,
            reason: report.reason.clone(),
            undo_errors: report.undo_errors.clone(),
        })?;
        self.count(report.outcome);
        if report.outcome == Outcome::RollbackFailed {
            tracing::error!(id, reason = %report.reason, errors = ?report.undo_errors, "a reallocation could not be undone; pausing the controller");
            self.pause(&format!(
                "reallocation {id} could not be undone: {}",
                report.undo_errors.join("; ")
            ))?;
        }
        Ok(())
    }

    /// Pre-flight with the actuators, then execution; a rejection is recorded.
    async fn run_evaluation(
        &self,
        m: &Model,
        id: u64,
        mut e: Evaluation,
    ) -> Result<Evaluation, ControllerError> {
        if e.steps.is_empty() {
            return Ok(e);
        }
        if e.gates.pass && e.preflight.pass {
            let changed = preflight::changed_nodes(&e.plan.current, &e.plan.target);
            e.preflight = e
                .preflight
                .clone()
                .merge(preflight::check_actuators(&changed, &m.facts).await);
            if !e.preflight.pass {
                e.decision = format!(
                    "rejected by pre-flight: {}",
                    e.preflight.problems.join("; ")
                );
            }
        }
        if !(e.gates.pass && e.preflight.pass) {
            self.reject(Some(id), &e)?;
            return Ok(e);
        }
        let expected = (e.mode == Mode::Plan).then_some(e.plan.expected_gain_usd_per_hour);
        let rate = (e.mode == Mode::Plan).then_some(e.plan.current_usd_per_hour);
        let r = self
            .carry_out(m, id, e.source, &e.steps, expected, rate)
            .await?;
        e.decision = format!("{}: {}", r.outcome.as_str(), r.reason);
        Ok(e)
    }

    /// Resolves an intent a crash left without outcome (call once at start, before the loop).
    pub async fn recover(&self) -> Result<Option<ExecReport>, ControllerError> {
        let pending = lock(&self.history).pending();
        let Some(p) = pending else { return Ok(None) };
        let _guard = self.exec_lock.lock().await;
        tracing::warn!(
            id = p.id,
            "a reallocation was interrupted (crash or kill); resolving it"
        );
        let report = execute::recover(&p, &self.model().actuators).await;
        self.finish(p.id, &report)?;
        tracing::info!(id = p.id, outcome = report.outcome.as_str(), reason = %report.reason, "interrupted reallocation resolved");
        Ok(Some(report))
    }

    /// Measures the reallocations whose hold has ended; undoes one that made things worse
    /// (not in dry run). Returns how many were measured.
    pub async fn measure_realized(&self) -> Result<usize, ControllerError> {
        let model = self.model();
        let now = self.clock.now_ms();
        let due: Vec<_> = lock(&self.history)
            .unmeasured()
            .into_iter()
            .filter(|u| now >= u.applied_ms + u.hold_ms)
            .collect();
        for u in &due {
            let (id, steps) = (&u.id, &u.steps);
            let m = realized::measure(
                &self.engine,
                self.db.as_ref(),
                u.applied_ms,
                u.hold_ms,
                u.expected_gain_usd_per_hour,
                self.opts.rollback_margin,
            );
            if let Some(g) = m.realized_gain_usd_per_hour {
                self.metrics.realized_gain.set(g);
            }
            let mut note = m.note.clone();
            let mut rollback_id = None;
            if m.worse {
                if self.opts.dry_run {
                    note.push_str(" (dry run: not rolled back)");
                } else {
                    match self.rollback_realized(&model, *id, steps).await {
                        Ok((rid, what)) => {
                            rollback_id = rid;
                            note.push_str(&format!(" ({what})"));
                        }
                        Err(e) => note.push_str(&format!(" (rollback not possible: {e})")),
                    }
                }
            }
            tracing::info!(id, note = %note, "realized gain measured");
            lock(&self.history).append(Record::Realized {
                id: *id,
                t_ms: now,
                before_usd_per_hour: m.before_usd_per_hour,
                after_usd_per_hour: m.after_usd_per_hour,
                realized_gain_usd_per_hour: m.realized_gain_usd_per_hour,
                expected_gain_usd_per_hour: m.expected_gain_usd_per_hour,
                rollback_id,
                note,
            })?;
        }
        Ok(due.len())
    }

    /// Puts back the allocations from before reallocation `of`, if the nodes still hold what
    /// it gave them. Bypasses the gates (it is the safety net) but not pre-flight.
    async fn rollback_realized(
        &self,
        m: &Model,
        of: u64,
        steps: &[Step],
    ) -> Result<(Option<u64>, String), ControllerError> {
        let _guard = self.exec_lock.lock().await;
        let mut before: BTreeMap<String, Allocation> = BTreeMap::new();
        let mut after: BTreeMap<String, Allocation> = BTreeMap::new();
        for s in steps {
            before.entry(s.node.clone()).or_insert(s.from);
            after.insert(s.node.clone(), s.to);
        }
        let current: BTreeMap<String, Allocation> = self
            .read_current_in(m)
            .await
            .into_iter()
            .map(|c| (c.node, c.allocation))
            .collect();
        for (n, a) in &after {
            if current.get(n) != Some(a) {
                return Ok((
                    None,
                    format!("not rolled back: {n} no longer holds what reallocation {of} gave it"),
                ));
            }
        }
        let mut target = current.clone();
        target.extend(before);
        let health = self.health.snapshot();
        let available = m.rules.available(&self.opts.host_capacity);
        let changed = preflight::changed_nodes(&current, &target);
        let pf = preflight::check_plan(
            self.clock.now_ms(),
            &current,
            &target,
            &available,
            &m.facts,
            &health,
        )
        .merge(preflight::check_actuators(&changed, &m.facts).await);
        let steps = steps_for(&current, &target);
        let id = lock(&self.history).next_id();
        if !pf.pass {
            lock(&self.history).append(Record::Rejected {
                id,
                t_ms: self.clock.now_ms(),
                source: Source::RealizedRollback,
                steps,
                reasons: pf.problems.clone(),
            })?;
            self.count(Outcome::Rejected);
            return Ok((Some(id), format!("rollback {id} rejected by pre-flight")));
        }
        let r = self
            .carry_out(m, id, Source::RealizedRollback, &steps, None, None)
            .await?;
        Ok((Some(id), format!("rollback {id}: {}", r.outcome.as_str())))
    }

    /// One round of the loop.
    pub async fn tick(&self) -> Result<Evaluation, ControllerError> {
        // Paused means no automatic change at all, rollbacks of worse moves included: their
        // measurement waits for the resume (it reads the windows around the change, so it
        // loses nothing by waiting).
        if !self.is_paused() {
            self.measure_realized().await?;
        }
        let m = self.model();
        let mut e = self.evaluate_in(&m, Source::Controller).await?;
        if self.is_paused() {
            e.decision = format!("paused: {}", e.decision);
        } else if e.steps.is_empty() || self.opts.dry_run {
            // Nothing to do, or the decision already says what a dry run would do.
        } else if !(e.gates.pass && e.preflight.pass) {
            self.reject(None, &e)?;
        } else {
            match self.exec_lock.clone().try_lock_owned() {
                Err(_) => e.decision = "skipped: a reallocation is in progress".into(),
                Ok(_guard) => {
                    let id = lock(&self.history).next_id();
                    e = self.run_evaluation(&m, id, e).await?;
                }
            }
        }
        tracing::info!(decision = %e.decision, "reallocation controller");
        *lock(&self.last) = Some(e.clone());
        Ok(e)
    }

    /// Starts a reallocation for an API request; returns its id at once (the work runs in a
    /// task; its outcome appears in the history under that id).
    pub fn request(self: &Arc<Self>, req: ApplyRequest) -> Result<u64, ControllerError> {
        if self.opts.dry_run {
            return Err(ControllerError::DryRun);
        }
        let guard = self
            .exec_lock
            .clone()
            .try_lock_owned()
            .map_err(|_| ControllerError::Busy)?;
        let id = lock(&self.history).next_id();
        let me = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = me.handle_request(id, req).await {
                tracing::error!(id, error = %e, "reallocation request failed");
            }
        });
        Ok(id)
    }

    /// The work of [`Controller::request`], awaited (tests and callers that want the result).
    pub async fn handle_request(
        &self,
        id: u64,
        req: ApplyRequest,
    ) -> Result<Evaluation, ControllerError> {
        let m = self.model();
        let e = match &req.allocations {
            None => {
                let mut e = self.evaluate_in(&m, Source::ApiPlan).await?;
                if req.force {
                    let last_change = lock(&self.history).last_change();
                    let ctx = self.gate_context(&m, e.ts_ms, Mode::Forced, &last_change, 0);
                    e.gates = gates::evaluate(&e.plan, &ctx);
                    e.mode = Mode::Forced;
                }
                e
            }
            Some(a) => {
                let plan = self.manual_plan(&m, a).await?;
                let mode = if req.force {
                    Mode::Forced
                } else {
                    Mode::Manual
                };
                self.judge(&m, plan, Source::ApiManual, mode, BTreeMap::new())
            }
        };
        let e = self.run_evaluation(&m, id, e).await?;
        *lock(&self.last) = Some(e.clone());
        Ok(e)
    }

    /// Resolves an interrupted reallocation, then runs [`Controller::tick`] every `interval`
    /// until `shutdown` turns true. The first round comes one interval in, when the tsdb has
    /// data for the estimators.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "resolving an interrupted reallocation failed");
        }
        let interval = |c: &Controller| c.model().rules.interval.max(Duration::from_millis(10));
        let timer = |every: Duration| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut every = interval(&self);
        let mut tick = timer(every);
        let mut reloaded = self.generation.subscribe();
        loop {
            let round = tokio::select! {
                _ = tick.tick() => true,
                // A reload: the round after it waits for the new interval.
                Ok(()) = reloaded.changed() => false,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if round {
                if let Err(e) = self.tick().await {
                    tracing::error!(error = %e, "reallocation controller round failed");
                }
            } else {
                // Another interval: the next round comes one new interval on (not at the end
                // of an old interval of, say, an hour).
                let now_every = interval(&self);
                if now_every != every {
                    every = now_every;
                    tick = timer(every);
                }
            }
        }
    }
}

/// `depin-orcha plan`: one evaluation with everything the controller would decide, never
/// applied. The caller polls the nodes once and writes the scrape into `db` first (see the
/// lead's wiring notes), so the estimators have data.
pub async fn plan_once(controller: &Controller) -> Result<PlanReport, ControllerError> {
    let mut e = controller.evaluate(Source::Controller).await?;
    if !e.steps.is_empty() && e.gates.pass && e.preflight.pass {
        let changed = preflight::changed_nodes(&e.plan.current, &e.plan.target);
        e.preflight = e
            .preflight
            .clone()
            .merge(preflight::check_actuators(&changed, &controller.model().facts).await);
        e.decision = if e.preflight.pass {
            format!(
                "would apply {} (the plan command never applies)",
                describe(&e.steps)
            )
        } else {
            format!(
                "rejected by pre-flight: {}",
                e.preflight.problems.join("; ")
            )
        };
    }
    Ok(PlanReport { evaluation: e })
}

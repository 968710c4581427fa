//! The controller: every `interval` of the optimization rules it measures the realized gain of
//! reallocations whose hold has ended (undoing one that made things worse), reads each node's
//! allocation in force, plans (through a [`Planner`], the optimizer by default) with the nodes
//! that must not move kept out of the plan (held, down, stale, without actuator), gates the
//! plan, runs pre-flight and executes it; in dry-run mode it stops after the gates and logs
//! what it would do. Pause/resume is durable (it is in the history), so a paused controller
//! stays paused across a restart.
//!
//! Split by what it does:
//! - `decide`: the pure part: which nodes are frozen and why, the gates and pre-flight on a
//!   plan, the [`Decision`], a plan from an operator's allocations;
//! - `act`: carrying a decision out (intent, steps, verification, rollback), recovering an
//!   interrupted one, measuring the realized gain and undoing a move that made things worse;
//! - `schedule`: the loop (`interval`, reloads), one round ([`Controller::tick`]), requests from
//!   the control API and [`plan_once`] for `depin-orcha plan`;
//! - `planner`: what a planner gets and the optimizer as the default one;
//! - `learning`: the planner on curves learned from each node's history (`planner: learning`);
//! - `metrics`: the controller's own metrics.
//!
//! This file holds the controller's state: the rules in force, the nodes, the history, and
//! what was last read from each node.
//!
//! At most one reallocation runs at a time (the loop and the API share one lock). Metrics:
//! `depin_reallocations_total{outcome}`, `depin_reallocation_last_timestamp_seconds`,
//! `depin_reallocation_realized_gain_usd_per_hour`, `depin_controller_paused`,
//! `depin_controller_dry_run`, `depin_gate_verdict{gate}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::watch;

use super::gates::Gate;
use super::history::{History, HistoryError, Record, Step};
use super::preflight::NodeFacts;
use crate::actuators::Actuator;
use crate::adapters::Adapter;
use crate::clock::SharedClock;
use crate::coordinator::NodeHealth;
use crate::optimizer::{CurrentNode, OptimizationRules};
use crate::promql::Engine;
use crate::resources::Allocation;
use crate::tsdb::Db;

mod act;
mod decide;
mod learning;
mod metrics;
mod planner;
mod schedule;

pub use decide::{Decision, Evaluation, Frozen, PlanReport};
pub use learning::{planner_for, LearningPlanner};
pub use metrics::ControllerMetrics;
pub use planner::{HealthSource, OptimizerPlanner, PlanInput, Planner};
pub use schedule::plan_once;

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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    /// Each node's allocation as the history's last applied reallocation left it, with its id:
    /// what the node holds when nothing has been read from it since a restart.
    pub fn applied_allocations(&self) -> BTreeMap<String, (Allocation, u64)> {
        lock(&self.history).last_applied()
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
    /// does not report come from the last allocation read, else the history's last applied
    /// one, else the configuration; a node that does not answer keeps that allocation.
    pub async fn read_current(&self) -> Vec<CurrentNode> {
        self.read_current_in(&self.model()).await
    }

    pub(super) async fn read_current_in(&self, m: &Model) -> Vec<CurrentNode> {
        let mut out = Vec::with_capacity(m.nodes.len());
        // After a restart nothing has been read yet: what the last applied reallocation left
        // stands for the resources a node does not report, not the configured allocation.
        let applied = self.applied_allocations();
        for n in m.nodes.values() {
            let base = lock(&self.last_known)
                .get(&n.name)
                .copied()
                .or_else(|| applied.get(&n.name).map(|a| a.0))
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
}

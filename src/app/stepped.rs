//! `run`'s parts on a virtual clock, for a driver that moves time itself (`simulate`): the same
//! node pipelines, metrics, storage, rules and controller as [`super::App`], assembled around
//! nodes that answer at once and are moved by the `sim` actuator. The driver moves the clock
//! it gave and calls [`SteppedApp::poll`], [`SteppedApp::gather`] and [`SteppedApp::ingest`],
//! [`SteppedApp::evaluate_rules`] and [`SteppedApp::plan`] when `run`'s loops would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prometheus::proto::MetricFamily;

use super::AppError;
use crate::actuators::{self, ActuatorKind, ActuatorSpec, VerifySpec};
use crate::adapters::prices::PriceTable;
use crate::adapters::{Adapter, PollError};
use crate::clock::{ManualClock, SharedClock};
use crate::coordinator::{HealthBoard, NodePipeline, PollContext};
use crate::labels::Labels;
use crate::metrics::Metrics;
use crate::optimizer::OptimizationRules;
use crate::promql::{Engine, EngineOptions};
use crate::reallocation::controller::{
    ControlledNode, Controller, ControllerError, ControllerOptions, ControllerParts, Planner,
};
use crate::reallocation::{History, DEFAULT_ROLLBACK_MARGIN};
use crate::resources::Allocation;
use crate::rules::notifier::Alert;
use crate::rules::{ManagerOptions, RuleManager};
use crate::tsdb::Db;

/// What a stepped run is made of besides its nodes.
pub struct SteppedOptions {
    /// The virtual clock the driver moves (the nodes read the same one).
    pub clock: ManualClock,
    /// The host's capacity (`depin_host_capacity_*`, the controller's bound).
    pub capacity: Allocation,
    /// How often the nodes are polled (the controller's freshness checks read it).
    pub poll_interval: Duration,
    /// Rule groups without their own interval are evaluated this often.
    pub evaluation_interval: Duration,
    /// Recording and alerting rule files.
    pub rule_files: Vec<PathBuf>,
    /// The optimization rules; a node they name an actuator for is moved.
    pub rules: OptimizationRules,
    /// How the controller plans (the optimizer, or a baseline's solver).
    pub planner: Box<dyn Planner>,
}

/// `run`'s parts, stepped by the caller's clock.
pub struct SteppedApp {
    metrics: Metrics,
    db: Arc<Db>,
    rules: RuleManager,
    health: Arc<HealthBoard>,
    prices: PriceTable,
    nodes: Vec<(Arc<dyn Adapter>, NodePipeline)>,
    controller: Arc<Controller>,
    runtime: tokio::runtime::Runtime,
}

impl SteppedApp {
    /// Assembles the parts around `nodes`, at `o.start_ms`.
    pub fn build(nodes: Vec<Arc<dyn Adapter>>, o: SteppedOptions) -> Result<SteppedApp, AppError> {
        let clock = o.clock;
        let shared: SharedClock = Arc::new(clock.clone());
        let metrics = Metrics::new(&[]).map_err(|e| AppError::new("registering metrics", e))?;
        // The process_* metrics would describe the simulator process at virtual timestamps,
        // which no rule reads and which mean nothing in simulated time; reading /proc for them
        // was a third of each scrape. (The collector is matched by its descriptors.)
        #[cfg(target_os = "linux")]
        let _ = metrics.registry().unregister(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        metrics.set_capacity(&o.capacity);
        let db = Arc::new(Db::in_memory());
        let engine = Engine::new(EngineOptions::default());
        let rules = RuleManager::new(
            ManagerOptions {
                evaluation_interval: o.evaluation_interval,
                registry: metrics.registry().clone(),
                file_poll_interval: Duration::ZERO,
                ..Default::default()
            },
            db.clone(),
            engine.clone(),
            shared.clone(),
            Labels::default(),
            "http://simulate/".into(),
        );
        rules
            .load(&o.rule_files)
            .map_err(|e| AppError::message(format!("rule files: {e}")))?;
        let health = Arc::new(HealthBoard::new(
            nodes.iter().map(|n| (n.name(), n.protocol())),
        ));
        let mut controlled = Vec::new();
        let mut pipelines = Vec::new();
        for n in nodes {
            controlled.push(controlled_node(&n, &o.rules, o.poll_interval)?);
            let labels = metrics.labels_for(n.name(), n.protocol(), &BTreeMap::new());
            let pipeline = NodePipeline::new(labels, None);
            pipeline.start(&metrics);
            pipelines.push((n, pipeline));
        }
        let controller = Controller::new(ControllerParts {
            rules: o.rules,
            options: ControllerOptions {
                dry_run: false,
                rollback_margin: DEFAULT_ROLLBACK_MARGIN,
                host_capacity: o.capacity,
            },
            nodes: controlled,
            planner: o.planner,
            health: health.clone(),
            db: db.clone(),
            engine,
            clock: shared,
            history: History::in_memory(),
            registry: metrics.registry().clone(),
        })
        .map_err(|e| AppError::new("building the controller", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| AppError::new("tokio runtime", e))?;
        Ok(SteppedApp {
            metrics,
            db,
            rules,
            health,
            prices: PriceTable::new(BTreeMap::new()),
            nodes: pipelines,
            controller,
            runtime,
        })
    }

    /// The token's price from now on (the USD counters and `depin_token_price_usd`).
    pub fn set_price(&self, token: &str, usd: f64) {
        self.prices.set(token, usd);
    }

    /// Polls every node once, at the clock's time, through `run`'s node pipeline.
    pub fn poll(&mut self, now_ms: i64) {
        let ctx = PollContext {
            metrics: &self.metrics,
            prices: &self.prices,
            health: &self.health,
        };
        for (adapter, pipeline) in &mut self.nodes {
            let result =
                now_or_never(adapter.poll()).unwrap_or(Err(PollError::Timeout(Duration::ZERO)));
            pipeline.record(&ctx, now_ms, 0.0, result);
        }
    }

    /// The registry as `/metrics` shows it, prices set as the coordinator's scrape sets them.
    pub fn gather(&self) -> Vec<MetricFamily> {
        for (token, usd) in self.prices.snapshot() {
            self.metrics.set_token_price(&token, usd);
        }
        self.metrics.gather()
    }

    /// Writes a gathered registry into the storage at `now_ms`, as the scrape loop does.
    pub fn ingest(&self, now_ms: i64, families: &[MetricFamily]) {
        if let Err(e) = self.db.ingest_scrape(now_ms, families) {
            tracing::warn!(error = %e, "simulate: writing a scrape failed");
        }
    }

    /// Evaluates the rule groups that are due at `now_ms`; the alerts to send.
    pub fn evaluate_rules(&self, now_ms: i64) -> Vec<Alert> {
        self.rules.tick(now_ms)
    }

    /// One round of the controller: plan, gates, pre-flight, reallocation.
    pub fn plan(&self) -> Result<(), ControllerError> {
        self.runtime.block_on(self.controller.tick()).map(|_| ())
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }
}

/// The controller's view of a node: moved by the `sim` actuator when the rules name an
/// actuator for it (its own block or its protocol's).
fn controlled_node(
    n: &Arc<dyn Adapter>,
    rules: &OptimizationRules,
    poll_interval: Duration,
) -> Result<ControlledNode, AppError> {
    let has_actuator = rules
        .for_node(n.name(), n.protocol())
        .and_then(|r| r.actuator)
        .is_some();
    let actuator = if has_actuator {
        let spec = ActuatorSpec {
            kind: ActuatorKind::Sim,
            verify: VerifySpec {
                poll_timeout: Duration::from_secs(4),
                ..VerifySpec::default()
            },
        };
        Some(
            actuators::build(&spec, n.clone())
                .map_err(|e| AppError::new("building the controller", e))?,
        )
    } else {
        None
    };
    Ok(ControlledNode {
        name: n.name().to_string(),
        protocol: n.protocol().to_string(),
        adapter: n.clone(),
        actuator,
        poll_interval,
        poll_timeout: Duration::from_secs(4),
        configured: None,
    })
}

/// Resolves a future that is ready at once (nodes stepped this way answer without waiting).
pub fn now_or_never<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

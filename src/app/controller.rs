//! The controller as `run` and `plan` assemble it: the controlled nodes, the planner and its
//! metrics, the durable history under `--storage.path`; and [`plan_command`], the body of
//! `depin-orcha plan` (one poll cycle, one plan, never applied).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::adapters::Adapter;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::metrics::Metrics;
use crate::optimizer::OptimizationRules;
use crate::promql::Engine;
use crate::reallocation::controller::{
    plan_once, planner_for, Controller, ControllerError, ControllerOptions, ControllerParts,
    HealthSource, PlanReport,
};
use crate::reallocation::{controlled_nodes, History, DEFAULT_ROLLBACK_MARGIN};
use crate::tsdb::Db;

/// Everything `run` needs to start the controller.
pub struct ControllerSetup<'a> {
    pub config: &'a Config,
    pub rules: OptimizationRules,
    /// From [`Coordinator::adapters`], so the controller reads the same node objects.
    pub adapters: Vec<Arc<dyn Adapter>>,
    pub health: Arc<dyn HealthSource>,
    pub db: Arc<Db>,
    pub engine: Engine,
    pub clock: SharedClock,
    pub registry: prometheus::Registry,
    /// `--storage.path`: the history goes to `<path>/reallocations.jsonl`. None: in memory.
    pub storage_path: Option<&'a Path>,
    /// `--controller.dry-run`.
    pub dry_run: bool,
    pub rollback_margin: f64,
}

/// Builds the controller; logs the actuator warnings.
pub fn build_controller(s: ControllerSetup<'_>) -> Result<Arc<Controller>, ControllerError> {
    let (nodes, warnings) = controlled_nodes(s.config, &s.rules, &s.adapters);
    for w in &warnings {
        tracing::warn!(warning = %w, "reallocation");
    }
    let history = match s.storage_path {
        Some(p) => History::open(p)?,
        None => History::in_memory(),
    };
    let planner = planner_for(
        &s.rules,
        s.storage_path,
        s.clock.now_ms(),
        Some(&s.registry),
    )
    .map_err(|e| ControllerError::Plan(format!("starting the planner: {e}")))?;
    let controller = Controller::new(ControllerParts {
        rules: s.rules,
        options: ControllerOptions {
            dry_run: s.dry_run,
            rollback_margin: s.rollback_margin,
            host_capacity: s.config.host.capacity,
        },
        nodes,
        planner,
        health: s.health,
        db: s.db,
        engine: s.engine,
        clock: s.clock,
        history,
        registry: s.registry,
    })?;
    Ok(controller)
}

/// `depin-orcha plan`: polls every node once (the coordinator's own code, into `db`), writes
/// one scrape, plans, gates and pre-flights, and returns the report; nothing is applied and
/// nothing is written to the history (it is read with [`History::load`] when `storage_path`
/// is given, so the hold and the rate limit show as the running instance sees them; the
/// learning planner's hours are read from it too). `storage_path` must be a copy the caller
/// owns: the learning planner appends this poll's hours to the copy's `learning.jsonl`.
/// `db` may hold history already (opened from `--storage.path` by the caller).
pub async fn plan_command(
    config: &Config,
    rules: OptimizationRules,
    db: Arc<Db>,
    clock: SharedClock,
    storage_path: Option<&Path>,
) -> Result<PlanReport, ControllerError> {
    let metrics =
        Arc::new(Metrics::for_config(config).map_err(|e| ControllerError::Plan(e.to_string()))?);
    let coordinator = Coordinator::new(config, metrics.clone(), db.clone(), clock.clone())
        .map_err(|e| ControllerError::Plan(e.to_string()))?;
    let health = coordinator.health();
    let adapters = coordinator.adapters();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(coordinator.run(stop_rx));
    // Every node's first poll ends within its timeout; a little slack for the scheduler.
    let longest = config
        .nodes
        .iter()
        .map(|n| n.poll_timeout)
        .max()
        .unwrap_or_default();
    let _ = tokio::time::timeout(longest + Duration::from_secs(1), health.wait_ready()).await;
    if let Err(e) = db.ingest_scrape(clock.now_ms(), &metrics.gather()) {
        tracing::warn!(error = %e, "cannot write the poll into the tsdb");
    }
    stop.send_replace(true);
    let _ = task.await;
    let history = match storage_path {
        Some(p) => History::load(p)?,
        None => History::in_memory(),
    };
    let (nodes, warnings) = controlled_nodes(config, &rules, &adapters);
    for w in &warnings {
        tracing::warn!(warning = %w, "reallocation");
    }
    // The learning planner replays the hours `run` kept (`learning.jsonl`), so the plan is
    // the one the running instance would make; `storage_path` is a private copy (see
    // `cli::plan`), so the points it adds for this poll go nowhere.
    let planner = planner_for(&rules, storage_path, clock.now_ms(), None)
        .map_err(|e| ControllerError::Plan(format!("starting the planner: {e}")))?;
    let controller = Controller::new(ControllerParts {
        rules,
        options: ControllerOptions {
            dry_run: true,
            rollback_margin: DEFAULT_ROLLBACK_MARGIN,
            host_capacity: config.host.capacity,
        },
        nodes,
        planner,
        health,
        db,
        engine: Engine::default(),
        clock,
        history,
        registry: prometheus::Registry::new(),
    })?;
    plan_once(&controller).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallClock;
    use crate::tsdb::Queryable;

    #[tokio::test]
    async fn plan_command_polls_the_demo_nodes_and_applies_nothing() {
        let config = crate::config::demo();
        let rules = OptimizationRules {
            origin: "test".into(),
            planner: Default::default(),
            exploration_budget: Default::default(),
            interval: Duration::from_secs(60),
            gates: Default::default(),
            confidence: Default::default(),
            resources: Default::default(),
            protocols: Default::default(),
            nodes: Default::default(),
            warnings: Vec::new(),
        };
        let db = Arc::new(Db::in_memory());
        let r = plan_command(&config, rules, db.clone(), Arc::new(WallClock), None)
            .await
            .unwrap();
        // Without rules for them, no node is planned; but the poll landed in the tsdb.
        assert!(r.evaluation.steps.is_empty());
        assert_eq!(r.evaluation.gates.verdicts.len(), 8);
        let up = db.select(
            &[crate::labels::Matcher::equal(
                "__name__",
                "depin_adapter_up",
            )],
            0,
            i64::MAX,
        );
        assert_eq!(up.len(), config.nodes.len());
        let text = r.to_string();
        assert!(text.contains("Gates:"), "{text}");
        assert!(text.contains("Decision: nothing to do"), "{text}");
    }

    #[tokio::test]
    async fn plan_learns_from_the_hours_run_kept_under_the_storage_path() {
        use crate::clock::Clock;
        use crate::optimizer::learn::Point;
        use crate::reallocation::learning::LearningStore;
        use crate::resources::Allocation;

        let config = crate::config::demo();
        let rules = crate::optimizer::load_file(Path::new("rules/optimization.yml")).unwrap();
        assert_eq!(rules.planner, crate::optimizer::PlannerKind::Learning);
        let dir = tempfile::tempdir().unwrap();
        let now_hour = WallClock.now_ms() / 3_600_000;
        {
            let (mut store, _) = LearningStore::open(dir.path(), 0).unwrap();
            for hour in now_hour - 60..now_hour - 12 {
                let p = Point {
                    hour,
                    tokens: 0.5 + 0.1 * (hour % 24) as f64,
                    up: 1.0,
                    allocation: Allocation {
                        cpu_cores: 3.0,
                        memory_bytes: 6.0 * 1024.0 * 1024.0 * 1024.0,
                        ..Default::default()
                    },
                    usage_avg: Default::default(),
                    usage_max: Default::default(),
                    excluded: None,
                };
                store.append("golem", &p).unwrap();
            }
        }
        // What the copied tsdb of a running instance holds: golem's earnings of the last hours,
        // so the node is planned (its estimator has a value).
        let db = Arc::new(Db::in_memory());
        let earnings = crate::labels::Labels::from_pairs([
            ("__name__", "depin_earnings_usd_total"),
            ("node", "golem"),
            ("protocol", "golem"),
        ]);
        let now = WallClock.now_ms();
        for i in 0..=24 {
            let t = now - 2 * 3_600_000 + i * 300_000;
            db.append(&earnings, t, 0.01 * i as f64).unwrap();
        }
        let r = plan_command(&config, rules, db, Arc::new(WallClock), Some(dir.path()))
            .await
            .unwrap();
        let text = r.to_string();
        // The 48 stored hours, not only the tsdb's one poll.
        assert!(
            text.contains("learned golem cpu_cores: 48 h observed"),
            "{text}"
        );
    }
}

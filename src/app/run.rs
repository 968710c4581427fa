//! `run` assembled: [`App::build`] puts the parts together from the config and the flags
//! ([`RunOptions`]), failing before anything runs when a part cannot start; [`App::serve`]
//! runs their tasks until the shutdown future resolves, then stops them in one order: the
//! polls first (their last scrape is stored), remote write (it sends that scrape), the
//! periodic jobs, events, the controller, the rules, the notifier (the last round of alerts
//! still goes out), the server, and a final snapshot.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{controller, head_range, sizes, AppError, Context};
use crate::clock::{SharedClock, WallClock};
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::events::watch::{Sources, WatchOptions, Watcher};
use crate::events::Bus;
use crate::http::rules::RulesApi;
use crate::http::webconfig::WebConfig;
use crate::http::{self, AppState, Server};
use crate::labels::Labels;
use crate::metrics::Metrics;
use crate::optimizer::OptimizationRules;
use crate::promql::{Engine, EngineOptions};
use crate::reallocation::{self, Controller, OptimizationReloader};
use crate::remote_write::RemoteWriter;
use crate::rules::notifier::{Notifier, NotifierOptions};
use crate::rules::{ManagerOptions, RuleManager};
use crate::tsdb::{self, Db};

/// What `run` takes besides the config: its flags, read and checked.
#[derive(Clone)]
pub struct RunOptions {
    pub listen: SocketAddr,
    pub storage_path: PathBuf,
    pub retention: Duration,
    /// `--storage.max-bytes`; 0: no cap.
    pub max_bytes: u64,
    /// `--storage.downsample.after`; none: raw samples for the whole retention.
    pub downsample_after: Option<Duration>,
    pub snapshot_interval: Duration,
    pub engine: EngineOptions,
    /// `--web.external-url`; default `http://<listen address>/`.
    pub external_url: Option<String>,
    /// The optimization rules and the file they came from; none: no controller.
    pub optimization_rules: Option<(PathBuf, OptimizationRules)>,
    pub dry_run: bool,
    /// The bearer token of the state-changing endpoints (`--web.auth-token-file`).
    pub auth_token: Option<String>,
    /// `--rules.file`, added to the config's `rule_files`.
    pub rule_files: Vec<PathBuf>,
    pub resend_delay: Duration,
    pub for_outage_tolerance: Duration,
    pub for_grace_period: Duration,
    pub alertmanager_urls: Vec<String>,
    pub alertmanager_ca_file: Option<PathBuf>,
    pub notification_queue_capacity: usize,
    pub alertmanager_timeout: Duration,
    pub history_retention: Duration,
    pub web_config: Option<Arc<WebConfig>>,
    pub max_connections: usize,
    pub telemetry_path: String,
    /// `--query.max-memory`: what all queries and API reads running at once may hold.
    pub query_max_memory: usize,
    /// `--web.max-streams`: event streams and exports open at once.
    pub max_streams: usize,
}

/// Everything `run` runs, assembled and not started.
pub struct App {
    db: Arc<Db>,
    coordinator: Coordinator,
    rule_manager: Arc<RuleManager>,
    notifier: Notifier,
    controller: Option<(Arc<Controller>, Arc<OptimizationReloader>)>,
    rules_api: Arc<RulesApi>,
    watcher: Watcher,
    remote_writer: RemoteWriter,
    server: Server,
    state: Arc<AppState>,
    snapshot_interval: Duration,
    evaluation_interval: Duration,
    /// How far back the optimization rules' estimators read (the head keeps at least that).
    estimators_ms: i64,
    lookback_delta_ms: i64,
}

/// The parts every later step of [`App::build`] reads.
struct Core {
    clock: SharedClock,
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    engine: Engine,
    coordinator: Coordinator,
}

impl App {
    /// Assembles `run` on the wall clock. Fails, naming the part, when one cannot start: the
    /// storage, the metrics, a node, a rule file, the controller, the address.
    pub fn build(config: &Config, opts: &RunOptions) -> Result<App, AppError> {
        let core = core(config, opts)?;
        let notifier = notifier(config, opts, &core.metrics)?;
        let rule_manager = rule_manager(config, opts, &core)?;
        let mut state = AppState::new(
            core.db.clone(),
            core.engine.clone(),
            core.metrics.registry().clone(),
            core.clock.clone(),
        )
        .with_query_max_memory(opts.query_max_memory)
        .with_max_streams(opts.max_streams);
        state.telemetry_path = opts.telemetry_path.clone();
        compact_history(opts, core.clock.now_ms());
        let controller = match &opts.optimization_rules {
            Some((path, rules)) => Some(controller_parts(config, opts, &core, path, rules)?),
            None => None,
        };
        if let Some((c, _)) = &controller {
            state.extra_routes.push(Arc::new(http::control::ControlApi {
                controller: c.clone(),
                token: opts.auth_token.clone(),
            }));
        }
        // `/-/reload` re-reads the rule files and the optimization rules, as SIGHUP does.
        let mut rules_api =
            RulesApi::new(rule_manager.clone()).with_reload_token(opts.auth_token.clone());
        if let Some((_, r)) = &controller {
            let r = r.clone();
            rules_api = rules_api.with_also_reload(Arc::new(move || r.reload()));
        }
        let rules_api = Arc::new(rules_api);
        state.extra_routes.push(rules_api.clone());
        let bus = Bus::default();
        sizes::register(core.metrics.registry(), &core.db, &bus)
            .context("registering size metrics")?;
        state
            .stream_routes
            .push(Arc::new(http::events::EventsApi::new(bus.clone())));
        state.stream_routes.push(Arc::new(http::export::ExportApi));
        let watcher = Watcher::new(
            bus,
            Sources {
                health: Some(core.coordinator.health()),
                rules: Some(rule_manager.clone()),
                history_file: Some(opts.storage_path.join(reallocation::history::FILE_NAME)),
                clock: core.clock.clone(),
            },
            WatchOptions::default(),
        );
        let remote_writer = RemoteWriter::new(
            &config.remote_write,
            &Labels::from_pairs(config.global.external_labels.clone()),
            core.db.clone(),
            &opts.storage_path,
            core.metrics.registry(),
        )
        .context("remote_write")?
        // Looking for new samples more often than they are scraped only costs reads.
        .with_read_interval(config.global.scrape_interval);
        let state = Arc::new(state);
        let server = Server::bind(opts.listen, state.clone())
            .map_err(AppError::from_error)?
            .with_web_config(opts.web_config.clone())
            .with_max_connections(opts.max_connections);
        tracing::info!(address = %server.local_addr(), "listening");
        Ok(App {
            db: core.db,
            coordinator: core.coordinator,
            rule_manager,
            notifier,
            controller,
            rules_api,
            watcher,
            remote_writer,
            server,
            state,
            snapshot_interval: opts.snapshot_interval,
            evaluation_interval: config.global.evaluation_interval,
            estimators_ms: opts.optimization_rules.as_ref().map_or(0, |(_, rules)| {
                head_range::optimization_rules_ms(rules, opts.engine.lookback_delta_ms)
            }),
            lookback_delta_ms: opts.engine.lookback_delta_ms,
        })
    }

    /// The address the server listens on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Runs every part until `shutdown` resolves, then stops them in the module's order.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        // Ready once the stored history is loaded and the first poll of every node is in the
        // tsdb, so a first query never sees an empty database that is about to fill.
        let mut scraped = self.coordinator.scraped();
        let state = self.state.clone();
        tokio::spawn(async move {
            let _ = scraped.wait_for(|s| *s).await;
            state.set_ready(true);
            tracing::info!("ready");
        });
        let (stop_tx, stop) = watch::channel(false);
        // Remote write has its own stop, sent after the coordinator's last scrape is stored,
        // so that scrape goes out too.
        let (remote_write_stop, remote_write_rx) = watch::channel(false);
        let remote_write = tokio::spawn(self.remote_writer.run(remote_write_rx));
        let mut server_stop = stop.clone();
        let server = tokio::spawn(self.server.serve(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        let coordinator = tokio::spawn(self.coordinator.run(stop.clone()));
        let snapshots = tokio::spawn(snapshot_periodically(
            self.db.clone(),
            self.snapshot_interval,
            stop.clone(),
        ));
        // The head keeps in memory what the rules and the estimators read.
        let head_range = tokio::spawn(head_range::keep(
            self.db.clone(),
            self.rule_manager.clone(),
            self.estimators_ms,
            self.lookback_delta_ms,
            Duration::from_secs(60),
            stop.clone(),
        ));
        let trim = tokio::spawn(crate::memory::trim_periodically(
            crate::memory::TRIM_INTERVAL,
            stop.clone(),
        ));
        // The notifier stops after the rules, so the last round of alerts still goes out.
        let (notifier_stop, notifier_rx) = watch::channel(false);
        let notifier = tokio::spawn(self.notifier.clone().run(notifier_rx));
        let sender = self.notifier;
        let rules = tokio::spawn(
            self.rule_manager
                .clone()
                .run(stop.clone(), move |alerts| sender.send(alerts)),
        );
        let (controller, optimization_watch) = match self.controller {
            Some((c, r)) => (
                Some(tokio::spawn(c.run(stop.clone()))),
                // A change of the optimization rules file is picked up like a rule file's.
                Some(tokio::spawn(
                    r.watch(self.evaluation_interval, stop.clone()),
                )),
            ),
            None => (None, None),
        };
        let events = tokio::spawn(self.watcher.run(stop.clone()));
        let reload = tokio::spawn(reload_on_sighup(self.rules_api, stop));

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = coordinator.await;
        let _ = remote_write_stop.send(true);
        let _ = remote_write.await;
        let _ = snapshots.await;
        let _ = trim.await;
        let _ = head_range.await;
        let _ = reload.await;
        if let Some(t) = optimization_watch {
            let _ = t.await;
        }
        let _ = events.await;
        if let Some(t) = controller {
            let _ = t.await;
        }
        let _ = rules.await;
        let _ = notifier_stop.send(true);
        let _ = notifier.await;
        let _ = server.await;
        if let Err(e) = self.db.snapshot() {
            tracing::warn!(error = %e, "final snapshot failed; the write-ahead log still holds the data");
        }
    }
}

/// The storage, the metrics of the nodes, the coordinator and the query engine.
fn core(config: &Config, opts: &RunOptions) -> Result<Core, AppError> {
    let clock: SharedClock = Arc::new(WallClock);
    let db = Arc::new(
        Db::open(tsdb::Options {
            path: Some(opts.storage_path.clone()),
            retention_ms: opts.retention.as_millis() as i64,
            max_bytes: (opts.max_bytes > 0).then_some(opts.max_bytes),
            downsample_after_ms: opts.downsample_after.map(|d| d.as_millis() as i64),
            ..Default::default()
        })
        .context(format!(
            "opening the time series storage at {}",
            opts.storage_path.display()
        ))?,
    );
    let metrics = Arc::new(Metrics::for_config(config).context("registering metrics")?);
    let coordinator = Coordinator::new(config, metrics.clone(), db.clone(), clock.clone())
        .context("building the node adapters")?;
    // The earnings counters continue from their journal; a second instance is refused.
    coordinator
        .open_ledger(&opts.storage_path)
        .context("opening the earnings ledger")?;
    Ok(Core {
        clock,
        db,
        metrics,
        engine: Engine::new(opts.engine.clone()),
        coordinator,
    })
}

fn notifier(config: &Config, opts: &RunOptions, metrics: &Metrics) -> Result<Notifier, AppError> {
    Notifier::new(
        NotifierOptions {
            alertmanager_urls: opts.alertmanager_urls.clone(),
            external_labels: Labels::from_pairs(config.global.external_labels.clone()),
            queue_capacity: opts.notification_queue_capacity,
            timeout: opts.alertmanager_timeout,
            ca_file: opts.alertmanager_ca_file.clone(),
            ..Default::default()
        },
        metrics.registry(),
    )
    .context("--alertmanager.url")
}

/// The rule manager with the config's rule files and `--rules.file` loaded: rules that do not
/// load stop the start, as in Prometheus.
fn rule_manager(
    config: &Config,
    opts: &RunOptions,
    core: &Core,
) -> Result<Arc<RuleManager>, AppError> {
    let external_url = opts
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/", opts.listen));
    let manager = Arc::new(RuleManager::new(
        ManagerOptions {
            evaluation_interval: config.global.evaluation_interval,
            resend_delay: opts.resend_delay,
            outage_tolerance: opts.for_outage_tolerance,
            for_grace_period: opts.for_grace_period,
            registry: core.metrics.registry().clone(),
            ..Default::default()
        },
        core.db.clone(),
        core.engine.clone(),
        core.clock.clone(),
        Labels::from_pairs(config.global.external_labels.clone()),
        external_url,
    ));
    let mut files = config.rule_files.clone();
    files.extend(opts.rule_files.iter().cloned());
    // The manager logs each error with its file and line (as it does on a reload); the start
    // ends with a summary rather than the same lines a second time.
    if let Err(e) = manager.load(&files) {
        let n = e.to_string().lines().count();
        return Err(AppError::message(format!(
            "the rule files did not load ({n} error{}, logged above)",
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(manager)
}

/// Retention of the controller's own history (`--history.retention`), applied at start.
fn compact_history(opts: &RunOptions, now_ms: i64) {
    let retention_ms = opts.history_retention.as_millis() as i64;
    match reallocation::history::compact(&opts.storage_path, retention_ms, now_ms) {
        Ok(c) if c.dropped > 0 => tracing::info!(
            dropped = c.dropped,
            kept = c.kept,
            "reallocation history compacted"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "compacting the reallocation history failed; it is kept whole")
        }
    }
}

/// The controller over the coordinator's nodes, and the reloader of its rules file.
fn controller_parts(
    config: &Config,
    opts: &RunOptions,
    core: &Core,
    rules_path: &Path,
    rules: &OptimizationRules,
) -> Result<(Arc<Controller>, Arc<OptimizationReloader>), AppError> {
    let controller = controller::build_controller(controller::ControllerSetup {
        config,
        rules: rules.clone(),
        adapters: core.coordinator.adapters(),
        health: core.coordinator.health(),
        db: core.db.clone(),
        engine: core.engine.clone(),
        clock: core.clock.clone(),
        registry: core.metrics.registry().clone(),
        storage_path: Some(&opts.storage_path),
        dry_run: opts.dry_run,
        rollback_margin: reallocation::DEFAULT_ROLLBACK_MARGIN,
    })
    .context("starting the controller")?;
    let reloader = Arc::new(
        OptimizationReloader::new(
            rules_path.to_path_buf(),
            config.clone(),
            core.coordinator.adapters(),
            controller.clone(),
            core.clock.clone(),
            core.metrics.registry(),
        )
        .context("optimization rules reload metrics")?,
    );
    Ok((controller, reloader))
}

/// Every `every` (`--storage.snapshot-interval`, default 30 minutes), a snapshot of the time
/// series, so that a restart replays at most that much write-ahead log (the tsdb also
/// snapshots by itself when the log passes 256 MiB). A failure is counted and logged by the
/// tsdb (`depin_tsdb_snapshot_failures_total`); the next interval tries again.
async fn snapshot_periodically(db: Arc<Db>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.snapshot()).await {
            Ok(Ok(_)) => tracing::debug!("snapshot written"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "snapshot failed; the write-ahead log still holds the data")
            }
            Err(e) => tracing::warn!(error = %e, "snapshot task failed"),
        }
    }
}

/// SIGHUP re-reads what `POST /-/reload` does ([`RulesApi::reload_all`]): the rule files, as
/// Prometheus does, and the optimization rules; a failed reload keeps the old rules (logged;
/// `depin_rules_last_reload_successful` or `depin_optimization_rules_last_reload_successful`
/// goes to 0).
async fn reload_on_sighup(rules: Arc<RulesApi>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading rule files");
                let r = rules.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload_all()).await;
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
    }
}

//! The `depin-orcha` command line: parses flags, loads the config, and calls into the library.
//! Nothing here decides anything; `anyhow` is used only in this file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use depin_orcha::labels::Labels;
use depin_orcha::rules::notifier::{self, Notifier, NotifierOptions};
use depin_orcha::rules::{self, ManagerOptions, RuleManager};
use depin_orcha::{
    clock, config, coordinator, events, export, http, metrics, optimizer, promql, reallocation,
    report, tsdb,
};

/// The port we listen on by default: 9817, unused by the exporters in Prometheus' default port
/// allocation list that DePIN hosts run (Storj-Exporter takes 9651).
const DEFAULT_LISTEN: &str = "127.0.0.1:9817";

/// Where the optimization rules are looked for when no flag names them.
const DEFAULT_OPTIMIZATION_RULES: &str = "rules/optimization.yml";

/// The shipped rule files the demo loads when it runs from a checkout.
const DEMO_RULE_FILES: [&str; 2] = [
    "rules/prometheus/recording.yml",
    "rules/prometheus/alerts.yml",
];

#[derive(Parser)]
#[command(
    name = "depin-orcha",
    version,
    long_version = depin_orcha::build::LONG_VERSION,
    about = "Watches DePIN nodes, keeps their time series and serves them to Prometheus"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s flags, so that `depin-orcha` alone (or `cargo run --release`) starts the main job.
    #[command(flatten)]
    run: RunArgs,
}

// Parsed once at start: the size of `Run`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Poll the nodes, keep their history, serve /metrics and the query API (the default).
    Run(RunArgs),
    /// Validate files without running anything.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Run test scripts.
    #[command(subcommand)]
    Test(TestCommand),
    /// Work on the time series storage.
    #[command(subcommand)]
    Tsdb(TsdbCommand),
    /// Poll every node once and print the plan the controller would make, with its
    /// explanation and gate verdicts; never applies anything.
    Plan(PlanArgs),
    /// Earnings, uptime, alerts and reallocations over a period, against the period before.
    Report(ReportArgs),
    /// Write stored samples as CSV, JSON lines or OpenMetrics text.
    Export(ExportArgs),
    /// Run a scenario on a virtual clock (thirty simulated days in seconds) through the same
    /// polling, rules, optimizer, gates and reallocation as `run`, against the baselines.
    Simulate(SimulateArgs),
}

// ---- report and export (the reports branch) ----

#[derive(Args)]
struct ReportArgs {
    /// The period reported, ending now; compared with the period of the same length before it.
    #[arg(long = "since", default_value = "7d", value_parser = humantime::parse_duration)]
    since: Duration,
    #[arg(long = "output", value_enum, default_value_t = ReportOutput::Text)]
    output: ReportOutput,
    /// A running instance to ask (its query API and /api/v1/reallocations); else --storage.path.
    #[arg(long = "url")]
    url: Option<String>,
    /// The storage of a `run`, read from a private copy.
    #[arg(long = "storage.path", default_value = "./data")]
    storage_path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportOutput {
    Text,
    Json,
    Markdown,
}

#[derive(Args)]
struct ExportArgs {
    /// Series selector; repeatable.
    #[arg(long = "match", required = true)]
    matches: Vec<String>,
    /// Start: Unix seconds or RFC 3339. Default: the oldest sample.
    #[arg(long = "start")]
    start: Option<String>,
    /// End: Unix seconds or RFC 3339. Default: the newest sample.
    #[arg(long = "end")]
    end: Option<String>,
    #[arg(long = "format", value_enum, default_value_t = ExportFormat::Csv)]
    format: ExportFormat,
    /// A running instance to export from (GET /api/v1/export); else --storage.path.
    #[arg(long = "url")]
    url: Option<String>,
    #[arg(long = "storage.path", default_value = "./data")]
    storage_path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
    Openmetrics,
}

#[derive(Args)]
struct SimulateArgs {
    /// Scenario file (see scenarios/README.md).
    scenario: PathBuf,
    /// Simulated days (default: the scenario's `days`).
    #[arg(long = "days")]
    days: Option<f64>,
    /// Seed of the market's randomness (default: the scenario's `seed`).
    #[arg(long = "seed")]
    seed: Option<u64>,
    /// Poll interval (default: the scenario's `poll_interval`).
    #[arg(long = "poll-interval", value_parser = humantime::parse_duration)]
    poll_interval: Option<Duration>,
    #[arg(long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Draw allocation and earnings over time of the four strategies into this SVG file.
    #[arg(long = "plot")]
    plot: Option<PathBuf>,
    /// Optimization rules; default `rules/optimization.yml`.
    #[arg(long = "optimization.rules-file", default_value = DEFAULT_OPTIMIZATION_RULES)]
    optimization_rules_file: PathBuf,
    /// Recording/alerting rule files; default the shipped rules/prometheus/recording.yml, rules/prometheus/alerts.yml.
    #[arg(long = "rules.file")]
    rule_files: Vec<PathBuf>,
}

#[derive(Args)]
struct PlanArgs {
    /// Config file; without it, the embedded demo config.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Optimization rules; default `rules/optimization.yml`.
    #[arg(long = "optimization.rules-file", default_value = DEFAULT_OPTIMIZATION_RULES)]
    optimization_rules_file: PathBuf,
    /// The storage of a `run` (history of earnings, reallocations); read from a private copy,
    /// never written. Absent: only this one poll is known.
    #[arg(long = "storage.path", default_value = "./data")]
    storage_path: PathBuf,
    #[arg(long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate config files, as `promtool check config` does; exit 0 when all are valid.
    Config {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate rule files, as `promtool check rules` does; exit 0 when all are valid.
    Rules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run PromQL test scripts in Prometheus' promqltest format.
    Promql {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit tests in the `promtool test rules` format.
    Rules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Import OpenMetrics text (as `promtool tsdb create-blocks-from openmetrics` reads it)
    /// into --storage.path.
    Import {
        file: PathBuf,
        #[arg(long = "storage.path", default_value = "./data")]
        storage_path: PathBuf,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Config file; without it an embedded demo config with four simulated nodes runs.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Address for /metrics and the API. Loopback by default: the control API changes how
    /// the machine is shared.
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the write-ahead log and snapshots of the time series.
    #[arg(long = "storage.path", default_value = "./data")]
    storage_path: PathBuf,
    /// How long samples are kept.
    #[arg(long = "storage.retention.time", default_value = "15d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Most bytes of samples kept in memory; the oldest go first. 0: no cap.
    #[arg(long = "storage.max-bytes", default_value_t = 0)]
    max_bytes: u64,
    /// How often the time series are snapshotted; a restart replays at most this much
    /// write-ahead log. Also on shutdown, and when the log passes 256 MiB.
    #[arg(long = "storage.snapshot-interval", default_value = "30m", value_parser = positive_duration)]
    snapshot_interval: Duration,
    /// Longest time one query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = humantime::parse_duration)]
    query_timeout: Duration,
    /// Most samples one query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    query_max_samples: usize,
    /// How far back an instant selector looks for the latest sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = humantime::parse_duration)]
    lookback_delta: Duration,
    /// The URL under which depin-orcha is reached, for alert generator links. Default:
    /// `http://<listen address>/`.
    #[arg(long = "web.external-url")]
    external_url: Option<String>,
    /// Optimization rules (our own schema). Without the flag, `rules/optimization.yml` when it
    /// exists in the working directory; with neither, no controller runs.
    #[arg(long = "optimization.rules-file")]
    optimization_rules_file: Option<PathBuf>,
    /// Plan and log every interval, never apply.
    #[arg(long = "controller.dry-run")]
    controller_dry_run: bool,
    /// File holding the bearer token that state-changing endpoints require (the control API,
    /// `/-/reload`).
    #[arg(long = "web.auth-token-file")]
    auth_token_file: Option<PathBuf>,
    /// Rule file (Prometheus format; globs allowed); repeatable, added to the config's
    /// `rule_files`.
    #[arg(long = "rules.file")]
    rule_files: Vec<PathBuf>,
    /// Least time between two notifications of the same firing alert.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = humantime::parse_duration)]
    resend_delay: Duration,
    /// How long an outage may last for alert `for` state to be restored after a restart.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h", value_parser = humantime::parse_duration)]
    for_outage_tolerance: Duration,
    /// Least time between a restart and a restored alert firing.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m", value_parser = humantime::parse_duration)]
    for_grace_period: Duration,
    /// Alertmanager base URL to send alerts to (API v2); repeatable.
    #[arg(long = "alertmanager.url")]
    alertmanager_urls: Vec<String>,
    /// PEM certificates to trust, besides Mozilla's roots, for https Alertmanagers (a private
    /// CA or a self-signed Alertmanager).
    #[arg(long = "alertmanager.ca-file")]
    alertmanager_ca_file: Option<PathBuf>,
    /// Alerts held for Alertmanager at most; the oldest are dropped beyond.
    #[arg(long = "alertmanager.notification-queue-capacity", default_value_t = notifier::DEFAULT_QUEUE_CAPACITY)]
    notification_queue_capacity: usize,
    /// How long reallocation records are kept: older ones are compacted away at start.
    #[arg(long = "history.retention", default_value = "90d", value_parser = humantime::parse_duration)]
    history_retention: Duration,
    /// Timeout of one request to an Alertmanager.
    #[arg(long = "alertmanager.timeout", default_value = "10s", value_parser = humantime::parse_duration)]
    alertmanager_timeout: Duration,
    /// TLS and basic auth for the server: a web config file in the Prometheus exporter
    /// toolkit's format (tls_server_config, basic_auth_users, http_server_config.headers).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Most connections served at once; more wait to be accepted. 0: no limit.
    #[arg(long = "web.max-connections", default_value_t = http::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    #[command(flatten)]
    log: LogArgs,
    /// Path under which /metrics is served, as the Prometheus exporters have it.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = telemetry_path)]
    telemetry_path: String,
}

#[derive(Args, Clone)]
struct LogArgs {
    /// Only log messages of this level or more severe: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = depin_orcha::logging::parse_level)]
    level: tracing_subscriber::filter::LevelFilter,
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Check(CheckCommand::Config { files })) => check_config(&files),
        Some(Command::Check(CheckCommand::Rules { files })) => check_rules(&files),
        Some(Command::Test(TestCommand::Promql { files })) => test_promql(&files),
        Some(Command::Test(TestCommand::Rules { files })) => test_rules(&files),
        Some(Command::Plan(args)) => plan(args),
        Some(Command::Report(args)) => report_cmd(args),
        Some(Command::Export(args)) => export_cmd(args),
        Some(Command::Simulate(args)) => simulate(args),
        Some(Command::Tsdb(TsdbCommand::Import { file, storage_path })) => {
            tsdb_import(&file, &storage_path)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("depin-orcha: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(log: &LogArgs) -> Result<()> {
    use depin_orcha::logging::{Format, PrometheusStyle};
    use tracing_subscriber::prelude::*;
    let format = match log.format {
        LogFormat::Logfmt => Format::Logfmt,
        LogFormat::Json => Format::Json,
    };
    tracing_subscriber::registry()
        .with(log.level)
        .with(PrometheusStyle { format })
        .init();
    Ok(())
}

fn run(args: RunArgs) -> Result<ExitCode> {
    init_logging(&args.log)?;
    let config = match &args.config_file {
        Some(path) => match config::load_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => {
            tracing::info!(
                "no --config.file given: running the embedded demo config with simulated nodes"
            );
            let mut demo = config::demo();
            // From a checkout (`cargo run --release`), the demo also evaluates the shipped rules.
            for f in DEMO_RULE_FILES {
                if Path::new(f).exists() && args.rule_files.is_empty() {
                    tracing::info!(file = f, "demo: loading the shipped rule file");
                    demo.rule_files.push(PathBuf::from(f));
                }
            }
            demo
        }
    };
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config");
    }
    // Before the runtime starts its threads (see depin_orcha::memory for why).
    depin_orcha::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // PromQL evaluation recurses once per level of the expression (at most
        // promql::MAX_NESTING): 8 MiB leaves a wide margin over the 2 MiB default.
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // `serve` fails only while starting (a rule file, the address, the controller): a storage
    // directory this start created holds nothing yet, and is not left behind.
    let storage_path = args.storage_path.clone();
    let created_storage = !storage_path.exists();
    let served = runtime.block_on(serve(args, config));
    if served.is_err() && created_storage {
        let _ = std::fs::remove_dir_all(&storage_path);
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// What the process holds that grows with time, read when `/metrics` is gathered: the stored
/// history (bounded by retention and `--storage.max-bytes`) and the event ring (bounded by
/// count and bytes). A soak subtracts them from the resident memory to see what else grows.
fn register_size_gauges(
    registry: &prometheus::Registry,
    db: &Arc<tsdb::Db>,
    bus: &events::Bus,
) -> Result<(), metrics::MetricsError> {
    let db = db.clone();
    metrics::ReadAtScrape::new(
        &[
            ("depin_tsdb_head_series", "Series held by the time series storage."),
            ("depin_tsdb_samples", "Samples held in memory by the time series storage (sealed chunks and open heads)."),
            ("depin_tsdb_memory_bytes", "Bytes of samples, chunks and label index the time series storage holds in memory (what --storage.max-bytes limits)."),
            ("depin_tsdb_wal_storage_size_bytes", "Size of the time series storage's write-ahead log on disk (emptied by each snapshot)."),
            ("depin_tsdb_query_cache_bytes", "Bytes of decoded chunks kept for queries that read them again (bounded: 2 MiB of samples)."),
        ],
        move || {
            let st = db.stats();
            vec![
                st.series as f64,
                st.samples as f64,
                st.total_bytes as f64,
                st.wal_bytes as f64,
                db.query_cache_bytes() as f64,
            ]
        },
    )?
    .register(registry)?;
    let bus = bus.clone();
    metrics::ReadAtScrape::new(
        &[
            (
                "depin_events_buffered",
                "Events kept for Last-Event-ID resumption of /api/v1/events.",
            ),
            (
                "depin_events_buffered_bytes",
                "Bytes of the events kept for Last-Event-ID resumption of /api/v1/events.",
            ),
        ],
        move || vec![bus.len() as f64, bus.bytes() as f64],
    )?
    .register(registry)
}

async fn serve(args: RunArgs, config: config::Config) -> Result<()> {
    let clock: clock::SharedClock = Arc::new(clock::WallClock);
    let db = Arc::new(
        tsdb::Db::open(tsdb::Options {
            path: Some(args.storage_path.clone()),
            retention_ms: args.retention.as_millis() as i64,
            max_bytes: (args.max_bytes > 0).then_some(args.max_bytes),
        })
        .with_context(|| {
            format!(
                "opening the time series storage at {}",
                args.storage_path.display()
            )
        })?,
    );
    let metrics = Arc::new(metrics::Metrics::for_config(&config).context("registering metrics")?);
    let coordinator =
        coordinator::Coordinator::new(&config, metrics.clone(), db.clone(), clock.clone())
            .context("building the node adapters")?;
    // The earnings counters continue from their journal; a second instance is refused.
    coordinator
        .open_ledger(&args.storage_path)
        .context("opening the earnings ledger")?;
    let engine = promql::Engine::new(promql::EngineOptions {
        lookback_delta_ms: args.lookback_delta.as_millis() as i64,
        max_samples: args.query_max_samples,
        timeout: args.query_timeout,
    });
    let auth_token = match &args.auth_token_file {
        Some(p) => Some(http::control::load_token(p)?),
        None => None,
    };
    let external_url = args
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/", args.listen));
    let external_labels = Labels::from_pairs(config.global.external_labels.clone());
    let notifier = Notifier::new(
        NotifierOptions {
            alertmanager_urls: args.alertmanager_urls.clone(),
            external_labels: external_labels.clone(),
            queue_capacity: args.notification_queue_capacity,
            timeout: args.alertmanager_timeout,
            ca_file: args.alertmanager_ca_file.clone(),
            ..Default::default()
        },
        metrics.registry(),
    )
    .context("--alertmanager.url")?;
    let rule_manager = Arc::new(RuleManager::new(
        ManagerOptions {
            evaluation_interval: config.global.evaluation_interval,
            resend_delay: args.resend_delay,
            outage_tolerance: args.for_outage_tolerance,
            for_grace_period: args.for_grace_period,
            registry: metrics.registry().clone(),
            ..Default::default()
        },
        db.clone(),
        engine.clone(),
        clock.clone(),
        external_labels,
        external_url,
    ));
    let mut rule_files = config.rule_files.clone();
    rule_files.extend(args.rule_files.iter().cloned());
    if let Err(e) = rule_manager.load(&rule_files) {
        // As Prometheus: rules that do not load at start stop the start.
        anyhow::bail!("loading rule files:\n{e}");
    }

    let mut state = http::AppState::new(
        db.clone(),
        engine.clone(),
        metrics.registry().clone(),
        clock.clone(),
    );
    state.telemetry_path = args.telemetry_path.clone();
    // Retention of the controller's own history (the reports branch).
    match reallocation::history::compact(
        &args.storage_path,
        args.history_retention.as_millis() as i64,
        clock.now_ms(),
    ) {
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
    let controller = match optimization_rules(args.optimization_rules_file.as_deref())? {
        Some((rules_path, rules)) => {
            let controller = reallocation::build_controller(reallocation::ControllerSetup {
                config: &config,
                rules,
                adapters: coordinator.adapters(),
                health: coordinator.health(),
                db: db.clone(),
                engine: engine.clone(),
                clock: clock.clone(),
                registry: metrics.registry().clone(),
                storage_path: Some(&args.storage_path),
                dry_run: args.controller_dry_run,
                rollback_margin: reallocation::DEFAULT_ROLLBACK_MARGIN,
            })
            .context("starting the controller")?;
            state.extra_routes.push(Arc::new(http::control::ControlApi {
                controller: controller.clone(),
                token: auth_token.clone(),
            }));
            let reloader = Arc::new(
                reallocation::OptimizationReloader::new(
                    rules_path,
                    config.clone(),
                    coordinator.adapters(),
                    controller.clone(),
                    clock.clone(),
                    metrics.registry(),
                )
                .context("optimization rules reload metrics")?,
            );
            Some((controller, reloader))
        }
        None => None,
    };
    let optimization_reloader = controller.as_ref().map(|(_, r)| r.clone());
    let controller = controller.map(|(c, _)| c);
    // `/-/reload` re-reads the rule files and the optimization rules, as SIGHUP does.
    let mut rules_api =
        http::rules::RulesApi::new(rule_manager.clone()).with_reload_token(auth_token.clone());
    if let Some(r) = &optimization_reloader {
        let r = r.clone();
        rules_api = rules_api.with_also_reload(Arc::new(move || r.reload()));
    }
    let rules_api = Arc::new(rules_api);
    state.extra_routes.push(rules_api.clone());
    // ---- live events (the reports branch): a bus, its SSE route, export, and the watcher ----
    let bus = events::Bus::default();
    register_size_gauges(metrics.registry(), &db, &bus).context("registering size metrics")?;
    state
        .stream_routes
        .push(Arc::new(http::events::EventsApi::new(bus.clone())));
    state.stream_routes.push(Arc::new(http::export::ExportApi));
    let watcher = events::watch::Watcher::new(
        bus,
        events::watch::Sources {
            health: Some(coordinator.health()),
            rules: Some(rule_manager.clone()),
            history_file: Some(args.storage_path.join(reallocation::history::FILE_NAME)),
            clock: clock.clone(),
        },
        events::watch::WatchOptions::default(),
    );
    // ---- end of live events ----
    let state = Arc::new(state);
    let web_config = web_config(&args)?;
    let server = http::Server::bind(args.listen, state.clone())?
        .with_web_config(web_config)
        .with_max_connections(args.max_connections);
    tracing::info!(address = %server.local_addr(), "listening");
    // Ready once the stored history is loaded (above) and the first poll of every node is in
    // the tsdb, so a first query never sees an empty database that is about to fill.
    let mut scraped = coordinator.scraped();
    tokio::spawn(async move {
        let _ = scraped.wait_for(|s| *s).await;
        state.set_ready(true);
        tracing::info!("ready");
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // --- remote write (branch remotewrite): push every stored sample to config.remote_write ---
    let remote_writer = depin_orcha::remote_write::RemoteWriter::new(
        &config.remote_write,
        &Labels::from_pairs(config.global.external_labels.clone()),
        db.clone(),
        &args.storage_path,
        metrics.registry(),
    )
    .context("remote_write")?
    // Looking for new samples more often than they are scraped only costs reads.
    .with_read_interval(config.global.scrape_interval);
    // Its own stop signal, sent after the coordinator's last scrape is stored, so that goes out.
    let (remote_write_stop, remote_write_rx) = tokio::sync::watch::channel(false);
    let remote_write_task = tokio::spawn(remote_writer.run(remote_write_rx));
    // --- end remote write ---
    let mut server_stop = stop_rx.clone();
    let server_task = tokio::spawn(server.serve(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let coordinator_task = tokio::spawn(coordinator.run(stop_rx.clone()));
    let snapshot_task = tokio::spawn(snapshot_periodically(
        db.clone(),
        args.snapshot_interval,
        stop_rx.clone(),
    ));
    let trim_task = tokio::spawn(depin_orcha::memory::trim_periodically(
        depin_orcha::memory::TRIM_INTERVAL,
        stop_rx.clone(),
    ));
    // The notifier stops after the rules, so the last round of alerts still goes out.
    let (notifier_stop, notifier_rx) = tokio::sync::watch::channel(false);
    let notifier_task = tokio::spawn(notifier.clone().run(notifier_rx));
    let rules_task = tokio::spawn(
        rule_manager
            .clone()
            .run(stop_rx.clone(), move |alerts| notifier.send(alerts)),
    );
    let controller_task = controller.map(|c| tokio::spawn(c.run(stop_rx.clone())));
    let events_task = tokio::spawn(watcher.run(stop_rx.clone()));
    // A change of the optimization rules file is picked up like a change of a rule file.
    let optimization_watch_task = optimization_reloader
        .clone()
        .map(|r| tokio::spawn(r.watch(config.global.evaluation_interval, stop_rx.clone())));
    let reload_task = tokio::spawn(reload_on_sighup(rules_api, stop_rx));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = coordinator_task.await;
    let _ = remote_write_stop.send(true); // remote write: read the last scrape, flush, stop
    let _ = remote_write_task.await;
    let _ = snapshot_task.await;
    let _ = trim_task.await;
    let _ = reload_task.await;
    if let Some(t) = optimization_watch_task {
        let _ = t.await;
    }
    let _ = events_task.await;
    if let Some(t) = controller_task {
        let _ = t.await;
    }
    let _ = rules_task.await;
    let _ = notifier_stop.send(true);
    let _ = notifier_task.await;
    let _ = server_task.await;
    if let Err(e) = db.snapshot() {
        tracing::warn!(error = %e, "final snapshot failed; the write-ahead log still holds the data");
    }
    Ok(())
}

/// `--web.config.file`, read and checked before anything listens; and a warning when the
/// server is reachable from other hosts without TLS or basic auth.
fn web_config(args: &RunArgs) -> Result<Option<Arc<http::webconfig::WebConfig>>> {
    let web = match &args.web_config_file {
        Some(p) => {
            let w = http::webconfig::load_file(p).context("--web.config.file")?;
            tracing::info!(file = %p.display(), tls = w.has_tls(), basic_auth = w.has_basic_auth(), "web config loaded");
            Some(Arc::new(w))
        }
        None => None,
    };
    let (tls, auth) = web
        .as_ref()
        .map_or((false, false), |w| (w.has_tls(), w.has_basic_auth()));
    if !args.listen.ip().is_loopback() && (!tls || !auth) {
        tracing::warn!(
            address = %args.listen,
            tls,
            basic_auth = auth,
            "listening beyond loopback without TLS and basic auth: anyone who reaches this address reads the node data; set --web.config.file"
        );
    }
    Ok(web)
}

/// `--web.telemetry-path`: an absolute path that no other route owns.
fn telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s == "/" {
        return Err("must be a path starting with / (and not / itself, the landing page)".into());
    }
    if s.starts_with("/api/") || s.starts_with("/-/") || s == http::landing::RUNBOOKS_PATH {
        return Err(format!("{s} is a path of the API"));
    }
    Ok(s.to_string())
}

/// A duration flag that must be above zero (a zero interval would loop without pause).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Every `every` (`--storage.snapshot-interval`, default 30 minutes), a snapshot of the time
/// series, so that a restart replays at most that much write-ahead log (the tsdb also
/// snapshots by itself when the log passes 256 MiB). A failure is counted and logged by the
/// tsdb (`depin_tsdb_snapshot_failures_total`); the next interval tries again.
async fn snapshot_periodically(
    db: Arc<tsdb::Db>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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

/// SIGHUP re-reads what `POST /-/reload` does ([`http::rules::RulesApi::reload_all`]): the rule
/// files, as Prometheus does, and the optimization rules; a failed reload keeps the old rules
/// (logged; `depin_rules_last_reload_successful` or
/// `depin_optimization_rules_last_reload_successful` goes to 0).
async fn reload_on_sighup(
    rules: Arc<http::rules::RulesApi>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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

/// The optimization rules named by the flag (an error when they do not load), else the default
/// file when it exists, else none (no controller, said in the log).
fn optimization_rules(
    flag: Option<&Path>,
) -> Result<Option<(PathBuf, optimizer::OptimizationRules)>> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_OPTIMIZATION_RULES).exists() => {
            PathBuf::from(DEFAULT_OPTIMIZATION_RULES)
        }
        None => {
            tracing::info!(
                "no optimization rules (--optimization.rules-file): the controller is off"
            );
            return Ok(None);
        }
    };
    match optimizer::load_file(&path) {
        Ok(r) => {
            tracing::info!(file = %path.display(), "optimization rules loaded");
            Ok(Some((path, r)))
        }
        Err(e) => anyhow::bail!("loading optimization rules:\n{e}"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn check_config(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for f in files {
        // The rule files too, through the loader `run` uses: what passes here starts.
        match config::load_file(f) {
            Ok(c) => match rules::load_files(&c.rule_files) {
                Ok(groups) => println!(
                    "Checking {}\n  SUCCESS: {} nodes found, {} rule groups in rule_files",
                    f.display(),
                    c.nodes.len(),
                    groups.len()
                ),
                Err(e) => {
                    ok = false;
                    println!("Checking {}\n  FAILED:\n{e}", f.display());
                }
            },
            Err(e) => {
                ok = false;
                println!("Checking {}\n  FAILED:\n{e}", f.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prometheus rule files go through the rules loader; a file whose top level has no `groups`
/// but the optimization keys (`gates`, `protocols`, `nodes`) is checked as optimization rules.
fn check_rules(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    let mut prometheus_files = Vec::new();
    for f in files {
        if is_optimization_file(f) {
            match optimizer::load_file(f) {
                Ok(r) => println!(
                    "Checking {}\n  SUCCESS: optimization rules for {} protocols, {} nodes",
                    f.display(),
                    r.protocols.len(),
                    r.nodes.len()
                ),
                Err(e) => {
                    ok = false;
                    println!("Checking {}\n  FAILED:\n{e}", f.display());
                }
            }
        } else {
            prometheus_files.push(f.clone());
        }
    }
    if !prometheus_files.is_empty() {
        let (report, rules_ok) = rules::file::check_rules_report(&prometheus_files);
        print!("{report}");
        ok &= rules_ok;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn is_optimization_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| rules::file::is_optimization_rules(&t))
}

fn plan(args: PlanArgs) -> Result<ExitCode> {
    let config = match &args.config_file {
        Some(p) => match config::load_file(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => config::demo(),
    };
    let rules = optimizer::load_file(&args.optimization_rules_file)
        .map_err(|e| anyhow::anyhow!("loading optimization rules:\n{e}"))?;
    // A running `run` owns --storage.path: read a private copy, so nothing there changes.
    let copy = std::env::temp_dir().join(format!("depin-orcha-plan-{}", std::process::id()));
    let (db, history) = if args.storage_path.is_dir() {
        copy_dir(&args.storage_path, &copy)
            .with_context(|| format!("copying {}", args.storage_path.display()))?;
        let db = tsdb::Db::open(tsdb::Options {
            path: Some(copy.clone()),
            ..Default::default()
        })
        .with_context(|| format!("opening a copy of {}", args.storage_path.display()))?;
        (db, Some(copy.clone()))
    } else {
        (tsdb::Db::in_memory(), None)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(reallocation::plan_command(
        &config,
        rules,
        Arc::new(db),
        Arc::new(clock::WallClock),
        history.as_deref(),
    ));
    let _ = std::fs::remove_dir_all(&copy);
    let report = report.context("planning")?;
    match args.output {
        Output::Text => print!("{report}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn test_rules(files: &[PathBuf]) -> Result<ExitCode> {
    let report = rules::unittest::run_test_files(files);
    print!("{report}");
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn test_promql(files: &[PathBuf]) -> Result<ExitCode> {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for f in files {
        let report = promql::promqltest::run_file(f);
        println!("{report}");
        passed += report.passed;
        failed += report.failed;
        skipped += report.skipped;
    }
    if files.len() > 1 {
        println!("total: {passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn tsdb_import(file: &Path, storage_path: &Path) -> Result<ExitCode> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let db = tsdb::Db::open(tsdb::Options {
        path: Some(storage_path.to_path_buf()),
        ..Default::default()
    })
    .with_context(|| format!("opening {}", storage_path.display()))?;
    let stats = tsdb::import_openmetrics(reader, &db)
        .with_context(|| format!("importing {}", file.display()))?;
    println!(
        "imported {} samples of {} series from {} lines ({} duplicates skipped)",
        stats.samples, stats.series, stats.lines, stats.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

// ---- report and export (the reports branch) ----

/// Copies `--storage.path` aside (a running `run` owns it) and opens the copy; the guard
/// removes the copy.
struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_private_copy(storage: &Path, what: &str) -> Result<(tsdb::Db, PrivateCopy)> {
    anyhow::ensure!(
        storage.is_dir(),
        "--storage.path {} is not a directory",
        storage.display()
    );
    let copy = PrivateCopy(
        std::env::temp_dir().join(format!("depin-orcha-{what}-{}", std::process::id())),
    );
    copy_dir(storage, &copy.0).with_context(|| format!("copying {}", storage.display()))?;
    let db = tsdb::Db::open(tsdb::Options {
        path: Some(copy.0.clone()),
        retention_ms: i64::MAX / 4,
        max_bytes: None,
    })
    .with_context(|| format!("opening a copy of {}", storage.display()))?;
    Ok((db, copy))
}

fn report_cmd(args: ReportArgs) -> Result<ExitCode> {
    let period_ms = args.since.as_millis() as i64;
    anyhow::ensure!(period_ms >= 1000, "--since must be at least 1s");
    let now = clock::Clock::now_ms(&clock::WallClock);
    let built = match &args.url {
        Some(url) => report::build(&report::remote::RemoteSource::new(url), now, period_ms)?,
        None => {
            let (db, copy) = open_private_copy(&args.storage_path, "report")?;
            let history =
                reallocation::History::load(&copy.0).context("reading the reallocation history")?;
            let src = report::local::LocalSource {
                db: &db,
                engine: promql::Engine::default(),
                history: &history,
            };
            report::build(&src, now, period_ms)?
        }
    };
    match args.output {
        ReportOutput::Text => print!(
            "{}",
            report::render::render(&built, report::render::Style::Text)
        ),
        ReportOutput::Markdown => print!(
            "{}",
            report::render::render(&built, report::render::Style::Markdown)
        ),
        ReportOutput::Json => println!("{}", serde_json::to_string_pretty(&built)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(args: ExportArgs) -> Result<ExitCode> {
    let format = match args.format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
        ExportFormat::Openmetrics => export::Format::OpenMetrics,
    };
    let time = |flag: &str, v: &Option<String>, default: i64| -> Result<i64> {
        match v {
            None => Ok(default),
            Some(s) => {
                http::params::parse_time(s).map_err(|e| anyhow::anyhow!("--{flag} {s:?}: {e}"))
            }
        }
    };
    let start = time("start", &args.start, i64::MIN)?;
    let end = time("end", &args.end, i64::MAX)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    if let Some(url) = &args.url {
        return export_remote(url, &args, start, end, &mut out);
    }
    let sets = http::params::parse_match_sets(
        &args.matches.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .map_err(|e| anyhow::anyhow!("--match: {e}"))?;
    let (db, _copy) = open_private_copy(&args.storage_path, "export")?;
    let stats = match export::clamp_range(&db, start, end) {
        Some((a, b)) => export::write_export(&db, &sets, a, b, format, &mut out),
        None => export::write_export(&db, &[], 0, 0, format, &mut out),
    }
    .context("writing the export")?;
    eprintln!(
        "exported {} samples of {} series",
        stats.samples, stats.series
    );
    Ok(ExitCode::SUCCESS)
}

/// Streams `GET /api/v1/export` of a running instance to `out` as it arrives.
fn export_remote(
    url: &str,
    args: &ExportArgs,
    start: i64,
    end: i64,
    out: &mut dyn std::io::Write,
) -> Result<ExitCode> {
    use std::io::{BufRead, Read, Write};
    let base = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    let host = base.host_str().context("--url has no host")?.to_string();
    let port = base.port_or_known_default().unwrap_or(80);
    let mut q = form_urlencoded::Serializer::new(String::new());
    for m in &args.matches {
        q.append_pair("match[]", m);
    }
    if start != i64::MIN {
        q.append_pair("start", &export::fmt_seconds(start));
    }
    if end != i64::MAX {
        q.append_pair("end", &export::fmt_seconds(end));
    }
    q.append_pair(
        "format",
        match args.format {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Openmetrics => "openmetrics",
        },
    );
    let mut s = std::net::TcpStream::connect((host.as_str(), port))
        .with_context(|| format!("connecting to {url}"))?;
    write!(
        s,
        "GET {}api/v1/export?{} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n",
        if base.path().ends_with('/') {
            base.path().to_string()
        } else {
            format!("{}/", base.path())
        },
        q.finish()
    )?;
    let mut r = std::io::BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        let h = h.to_ascii_lowercase();
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    if status.split_whitespace().nth(1) != Some("200") {
        let mut body = String::new();
        let _ = r.read_to_string(&mut body);
        anyhow::bail!("{url}: {} {}", status.trim(), body.trim());
    }
    if !chunked {
        std::io::copy(&mut r, out)?;
    } else {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16)
                .with_context(|| format!("bad chunk size {size:?}"))?;
            if n == 0 {
                break;
            }
            std::io::copy(&mut (&mut r).take(n as u64), out)?;
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `depin-orcha simulate`: loads the scenario and the rules, runs `sim::driver`, prints the
/// report (and draws the plot).
fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    use depin_orcha::sim;
    use std::io::IsTerminal;
    let scenario = sim::scenario::load_file(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rules =
        optimizer::load_file(&args.optimization_rules_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rule_files = if args.rule_files.is_empty() {
        DEMO_RULE_FILES.iter().map(PathBuf::from).collect()
    } else {
        args.rule_files.clone()
    };
    let progress: Option<Arc<dyn Fn(f64) + Send + Sync>> = if std::io::stderr().is_terminal() {
        Some(Arc::new(sim::progress::bar()))
    } else {
        None
    };
    let report = sim::driver::simulate(
        &scenario,
        &sim::driver::Options {
            days: args.days,
            seed: args.seed,
            poll_interval: args.poll_interval,
            rules,
            rule_files,
            progress,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = &args.plot {
        sim::plot::draw(&report, &scenario, p)
            .with_context(|| format!("--plot {}", p.display()))?;
    }
    match args.output {
        Output::Text => print!("{}", report.render_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

//! `depin-orcha run` (and `depin-orcha` alone): the main job. Reads the flags and the config,
//! starts logging and the runtime, and serves the library's [`App`] until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use depin_orcha::app::{App, RunOptions};
use depin_orcha::promql::EngineOptions;
use depin_orcha::rules::notifier;
use depin_orcha::{config, http, optimizer, promql};

use super::{DEFAULT_OPTIMIZATION_RULES, DEMO_RULE_FILES};

/// The port we listen on by default: 9817, unused by the exporters in Prometheus' default port
/// allocation list that DePIN hosts run (Storj-Exporter takes 9651).
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9817";

#[derive(Args, Clone)]
pub(crate) struct RunArgs {
    /// Config file; without it an embedded demo config with four simulated nodes runs.
    #[arg(long = "config.file")]
    pub(crate) config_file: Option<PathBuf>,
    /// Address for /metrics and the API. Loopback by default: the control API changes how
    /// the machine is shared.
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Directory for the time series: block files, the write-ahead log and the head snapshot.
    #[arg(long = "storage.path", default_value = "./data")]
    pub(crate) storage_path: PathBuf,
    /// How long samples are kept.
    #[arg(long = "storage.retention.time", default_value = "15d", value_parser = humantime::parse_duration)]
    pub(crate) retention: Duration,
    /// Most bytes the stored samples may take (block files, WAL and memory); the oldest block
    /// files go first. 0: no cap.
    #[arg(long = "storage.max-bytes", default_value_t = 0)]
    pub(crate) max_bytes: u64,
    /// Downsample block files older than this to 5-minute windows (counters keep what
    /// rate/increase need, gauges become avg plus `:min_5m`/`:max_5m`/`:sum_5m`/`:count_5m`
    /// series). Off when not given.
    #[arg(long = "storage.downsample.after", value_parser = positive_duration)]
    pub(crate) downsample_after: Option<Duration>,
    /// How often the time series are snapshotted; a restart replays at most this much
    /// write-ahead log. Also on shutdown, and when the log passes 256 MiB.
    #[arg(long = "storage.snapshot-interval", default_value = "30m", value_parser = positive_duration)]
    pub(crate) snapshot_interval: Duration,
    /// Longest time one query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = humantime::parse_duration)]
    pub(crate) query_timeout: Duration,
    /// Most samples one query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub(crate) query_max_samples: usize,
    /// How far back an instant selector looks for the latest sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) lookback_delta: Duration,
    /// The URL under which depin-orcha is reached, for alert generator links. Default:
    /// `http://<listen address>/`.
    #[arg(long = "web.external-url")]
    pub(crate) external_url: Option<String>,
    /// Optimization rules (our own schema). Without the flag, `rules/optimization.yml` when it
    /// exists in the working directory; with neither, no controller runs.
    #[arg(long = "optimization.rules-file")]
    pub(crate) optimization_rules_file: Option<PathBuf>,
    /// Plan and log every interval, never apply.
    #[arg(long = "controller.dry-run")]
    pub(crate) controller_dry_run: bool,
    /// File holding the bearer token that state-changing endpoints require (the control API,
    /// `/-/reload`).
    #[arg(long = "web.auth-token-file")]
    pub(crate) auth_token_file: Option<PathBuf>,
    /// Rule file (Prometheus format; globs allowed); repeatable, added to the config's
    /// `rule_files`.
    #[arg(long = "rules.file")]
    pub(crate) rule_files: Vec<PathBuf>,
    /// Least time between two notifications of the same firing alert.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = humantime::parse_duration)]
    pub(crate) resend_delay: Duration,
    /// How long an outage may last for alert `for` state to be restored after a restart.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) for_outage_tolerance: Duration,
    /// Least time between a restart and a restored alert firing.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) for_grace_period: Duration,
    /// Alertmanager base URL to send alerts to (API v2); repeatable.
    #[arg(long = "alertmanager.url")]
    pub(crate) alertmanager_urls: Vec<String>,
    /// PEM certificates to trust, besides Mozilla's roots, for https Alertmanagers (a private
    /// CA or a self-signed Alertmanager).
    #[arg(long = "alertmanager.ca-file")]
    pub(crate) alertmanager_ca_file: Option<PathBuf>,
    /// Alerts held for Alertmanager at most; the oldest are dropped beyond.
    #[arg(long = "alertmanager.notification-queue-capacity", default_value_t = notifier::DEFAULT_QUEUE_CAPACITY)]
    pub(crate) notification_queue_capacity: usize,
    /// How long reallocation records are kept: older ones are compacted away at start.
    #[arg(long = "history.retention", default_value = "90d", value_parser = humantime::parse_duration)]
    pub(crate) history_retention: Duration,
    /// Timeout of one request to an Alertmanager.
    #[arg(long = "alertmanager.timeout", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) alertmanager_timeout: Duration,
    /// TLS and basic auth for the server: a web config file in the Prometheus exporter
    /// toolkit's format (tls_server_config, basic_auth_users, http_server_config.headers).
    #[arg(long = "web.config.file")]
    pub(crate) web_config_file: Option<PathBuf>,
    /// Most connections open at once. When all are taken, the one that has waited longest
    /// for a request makes room for a new client; 32 more serve /metrics and health checks
    /// only. 0: as many as the open files limit allows.
    #[arg(long = "web.max-connections", default_value_t = http::server::DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: usize,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Path under which /metrics is served, as the Prometheus exporters have it.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = telemetry_path)]
    pub(crate) telemetry_path: String,
    /// Memory all queries and API reads running at once may hold together (samples, label
    /// sets, compiled regular expressions, answers waiting to be sent); beyond, a request
    /// gets an error instead of the process more memory.
    #[arg(long = "query.max-memory", default_value = "256MiB", value_parser = promql::limits::parse_size)]
    pub(crate) query_max_memory: usize,
    /// Most event streams and exports open at once; beyond, 503.
    #[arg(long = "web.max-streams", default_value_t = http::DEFAULT_MAX_STREAMS)]
    pub(crate) max_streams: usize,
}

#[derive(Args, Clone)]
pub(crate) struct LogArgs {
    /// Only log messages of this level or more severe: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = depin_orcha::logging::parse_level)]
    pub(crate) level: tracing_subscriber::filter::LevelFilter,
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub(crate) format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Logfmt,
    Json,
}

pub(crate) fn init_logging(log: &LogArgs) -> Result<()> {
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

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
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

async fn serve(args: RunArgs, config: config::Config) -> Result<()> {
    let opts = options(&args)?;
    let app = App::build(&config, &opts)?;
    app.serve(shutdown_signal()).await;
    Ok(())
}

/// The flags as the library takes them, with the files they name read and checked.
fn options(args: &RunArgs) -> Result<RunOptions> {
    let auth_token = match &args.auth_token_file {
        Some(p) => Some(http::control::load_token(p)?),
        None => None,
    };
    Ok(RunOptions {
        listen: args.listen,
        storage_path: args.storage_path.clone(),
        retention: args.retention,
        max_bytes: args.max_bytes,
        downsample_after: args.downsample_after,
        snapshot_interval: args.snapshot_interval,
        engine: EngineOptions {
            lookback_delta_ms: args.lookback_delta.as_millis() as i64,
            max_samples: args.query_max_samples,
            timeout: args.query_timeout,
        },
        external_url: args.external_url.clone(),
        optimization_rules: optimization_rules(args.optimization_rules_file.as_deref())?,
        dry_run: args.controller_dry_run,
        auth_token,
        rule_files: args.rule_files.clone(),
        resend_delay: args.resend_delay,
        for_outage_tolerance: args.for_outage_tolerance,
        for_grace_period: args.for_grace_period,
        alertmanager_urls: args.alertmanager_urls.clone(),
        alertmanager_ca_file: args.alertmanager_ca_file.clone(),
        notification_queue_capacity: args.notification_queue_capacity,
        alertmanager_timeout: args.alertmanager_timeout,
        history_retention: args.history_retention,
        web_config: web_config(args)?,
        max_connections: args.max_connections,
        telemetry_path: args.telemetry_path.clone(),
        query_max_memory: args.query_max_memory,
        max_streams: args.max_streams,
    })
}

/// `--web.config.file`, read and checked before anything listens; and a warning when the
/// server is reachable from other hosts without TLS or basic auth.
pub(crate) fn web_config(args: &RunArgs) -> Result<Option<Arc<http::webconfig::WebConfig>>> {
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
pub(crate) fn telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s == "/" {
        return Err("must be a path starting with / (and not / itself, the landing page)".into());
    }
    if s.starts_with("/api/") || s.starts_with("/-/") || s == http::landing::RUNBOOKS_PATH {
        return Err(format!("{s} is a path of the API"));
    }
    Ok(s.to_string())
}

/// A duration flag that must be above zero (a zero interval would loop without pause).
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The optimization rules named by the flag (an error when they do not load), else the default
/// file when it exists, else none (no controller, said in the log).
pub(crate) fn optimization_rules(
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
pub(crate) async fn shutdown_signal() {
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

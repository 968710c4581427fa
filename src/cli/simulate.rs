//! `depin-orcha simulate`: a scenario on a virtual clock through the same polling, rules,
//! optimizer, gates and reallocation as `run`, against the baselines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use depin_orcha::{optimizer, sim};

use super::{Output, DEFAULT_OPTIMIZATION_RULES, DEMO_RULE_FILES};

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Scenario file (see scenarios/README.md); or `--random N`.
    #[arg(required_unless_present = "random")]
    pub(crate) scenario: Option<PathBuf>,
    /// Simulated days (default: the scenario's `days`).
    #[arg(long = "days")]
    pub(crate) days: Option<f64>,
    /// Seed of the market's randomness (default: the scenario's `seed`); with `--random`, the
    /// seed the markets are drawn from (default 1).
    #[arg(long = "seed")]
    pub(crate) seed: Option<u64>,
    /// Poll interval (default: the scenario's `poll_interval`).
    #[arg(long = "poll-interval", value_parser = humantime::parse_duration)]
    pub(crate) poll_interval: Option<Duration>,
    #[arg(long = "output", value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Draw allocation and earnings over time of the four strategies into this SVG file.
    #[arg(long = "plot", conflicts_with = "random")]
    pub(crate) plot: Option<PathBuf>,
    /// Optimization rules; default `rules/optimization.yml`.
    #[arg(long = "optimization.rules-file", default_value = DEFAULT_OPTIMIZATION_RULES)]
    pub(crate) optimization_rules_file: PathBuf,
    /// Recording/alerting rule files; default the shipped rules/prometheus/recording.yml, rules/prometheus/alerts.yml.
    #[arg(long = "rules.file")]
    pub(crate) rule_files: Vec<PathBuf>,
    /// Write the depin-orcha strategy's series into this storage directory, with the simulation
    /// moved to end now, for `run --storage.path DIR` to open and continue.
    #[arg(long = "storage.path")]
    pub(crate) storage_path: Option<PathBuf>,
    /// Draw this many markets from the documented ranges (scenarios/README.md) instead of
    /// running a scenario file; market k of a seed is the same whatever the count.
    #[arg(long = "random", conflicts_with_all = ["scenario", "storage_path"])]
    pub(crate) random: Option<u64>,
    /// With `--random`: markets run at once (each run uses two threads).
    #[arg(long = "jobs", default_value_t = 1, requires = "random")]
    pub(crate) jobs: usize,
    /// With `--random`: write each drawn market as a scenario file into this directory.
    #[arg(long = "save-scenarios", requires = "random")]
    pub(crate) save_scenarios: Option<PathBuf>,
    /// With `--random N`: run market K alone (1 ≤ K ≤ N), the same market it is in the batch.
    #[arg(long = "market", requires = "random")]
    pub(crate) market: Option<u64>,
}

/// `depin-orcha simulate`: loads the scenario and the rules, runs `sim::driver`, prints the
/// report (and draws the plot).
pub(crate) fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
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
    let options = sim::driver::Options {
        days: args.days,
        seed: args.seed,
        poll_interval: args.poll_interval,
        rules,
        rule_files,
        progress,
    };
    let Some(scenario) = &args.scenario else {
        return simulate_random(&args, options);
    };
    let (scenario, storage) = match &args.storage_path {
        None => (
            sim::scenario::load_file(scenario).map_err(|e| anyhow::anyhow!("{e}"))?,
            None,
        ),
        Some(dir) => {
            let now_ms = depin_orcha::clock::Clock::now_ms(&depin_orcha::clock::WallClock);
            let sc = sim::storage::ending_at(scenario, args.days, now_ms)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let db = sim::storage::open(dir, args.days.unwrap_or(sc.days))
                .with_context(|| format!("opening --storage.path {}", dir.display()))?;
            (sc, Some(db))
        }
    };
    // A scenario saved by `--random` names a second node of a protocol `storj-2`: it runs
    // with a copy of `storj`'s block, as it did in the batch.
    let mut options = options;
    let names: Vec<(String, depin_orcha::adapters::sim::market::Protocol)> = scenario
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.protocol))
        .collect();
    options.rules = sim::random::rules_for(&options.rules, &names);
    let report = sim::driver::simulate_into(&scenario, &options, storage.clone())?;
    if let (Some(db), Some(dir)) = (storage, &args.storage_path) {
        db.snapshot()
            .with_context(|| format!("writing {}", dir.display()))?;
        let g = db.gauges();
        eprintln!(
            "wrote {} series into {} ({} block files, {} bytes); open them with `depin-orcha run --storage.path {}`",
            g.series,
            dir.display(),
            g.blocks,
            g.block_bytes,
            dir.display()
        );
    }
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

/// `simulate --random N`: draws the markets, runs them one after another (`--jobs` at a time),
/// prints a line per market as it finishes and the distribution.
fn simulate_random(args: &SimulateArgs, mut options: sim::driver::Options) -> Result<ExitCode> {
    let count = args.random.unwrap_or(0);
    if let Some(k) = args.market.filter(|k| *k == 0 || *k > count) {
        anyhow::bail!("--market {k}: the markets of --random {count} are 1 to {count}");
    }
    options.progress = None;
    let text = matches!(args.output, Output::Text);
    if text {
        println!("{}", sim::batch::header());
    }
    let on_market: Box<dyn Fn(&sim::batch::MarketRun) + Send + Sync> = Box::new(move |m| {
        if text {
            println!("{}", sim::batch::line(m));
        } else {
            eprintln!("{}", sim::batch::line(m));
        }
    });
    let report = sim::batch::run(sim::batch::BatchOptions {
        count,
        only: args.market,
        seed: args.seed.unwrap_or(1),
        days: args.days.unwrap_or(30.0),
        jobs: args.jobs,
        base: options,
        on_market: Some(on_market),
    })?;
    if let Some(dir) = &args.save_scenarios {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--save-scenarios {}", dir.display()))?;
        for m in &report.markets {
            let path = dir.join(format!("{}.yml", m.report.scenario));
            std::fs::write(&path, &m.scenario)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    match args.output {
        Output::Text => print!("{}", report.render_summary()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

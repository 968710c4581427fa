//! `depin-orcha simulate`: a scenario on a virtual clock through the same polling, rules,
//! optimizer, gates and reallocation as `run`, against the baselines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use depin_orcha::optimizer;

use super::{Output, DEFAULT_OPTIMIZATION_RULES, DEMO_RULE_FILES};

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Scenario file (see scenarios/README.md).
    pub(crate) scenario: PathBuf,
    /// Simulated days (default: the scenario's `days`).
    #[arg(long = "days")]
    pub(crate) days: Option<f64>,
    /// Seed of the market's randomness (default: the scenario's `seed`).
    #[arg(long = "seed")]
    pub(crate) seed: Option<u64>,
    /// Poll interval (default: the scenario's `poll_interval`).
    #[arg(long = "poll-interval", value_parser = humantime::parse_duration)]
    pub(crate) poll_interval: Option<Duration>,
    #[arg(long = "output", value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Draw allocation and earnings over time of the four strategies into this SVG file.
    #[arg(long = "plot")]
    pub(crate) plot: Option<PathBuf>,
    /// Optimization rules; default `rules/optimization.yml`.
    #[arg(long = "optimization.rules-file", default_value = DEFAULT_OPTIMIZATION_RULES)]
    pub(crate) optimization_rules_file: PathBuf,
    /// Recording/alerting rule files; default the shipped rules/prometheus/recording.yml, rules/prometheus/alerts.yml.
    #[arg(long = "rules.file")]
    pub(crate) rule_files: Vec<PathBuf>,
}

/// `depin-orcha simulate`: loads the scenario and the rules, runs `sim::driver`, prints the
/// report (and draws the plot).
pub(crate) fn simulate(args: SimulateArgs) -> Result<ExitCode> {
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
    )?;
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

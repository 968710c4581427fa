//! The `depin-orcha` command line: parses the arguments and hands each subcommand to its file
//! under `cli/`. The library decides everything; `anyhow` is used only in the binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::export::ExportArgs;
use cli::plan::PlanArgs;
use cli::report::ReportArgs;
use cli::run::RunArgs;
use cli::simulate::SimulateArgs;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => cli::run::run(cli.run),
        Some(Command::Run(args)) => cli::run::run(args),
        Some(Command::Check(CheckCommand::Config { files })) => cli::check::check_config(&files),
        Some(Command::Check(CheckCommand::Rules { files })) => cli::check::check_rules(&files),
        Some(Command::Test(TestCommand::Promql { files })) => cli::test::test_promql(&files),
        Some(Command::Test(TestCommand::Rules { files })) => cli::test::test_rules(&files),
        Some(Command::Plan(args)) => cli::plan::plan(args),
        Some(Command::Report(args)) => cli::report::report_cmd(args),
        Some(Command::Export(args)) => cli::export::export_cmd(args),
        Some(Command::Simulate(args)) => cli::simulate::simulate(args),
        Some(Command::Tsdb(TsdbCommand::Import { file, storage_path })) => {
            cli::tsdb_import::tsdb_import(&file, &storage_path)
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

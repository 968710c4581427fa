//! `depin-orcha plan`: polls every node once and prints the plan the controller would make,
//! with its explanation and gate verdicts; applies nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use depin_orcha::{app, clock, config, optimizer, tsdb};

use super::{copy_dir, Output, DEFAULT_OPTIMIZATION_RULES};

#[derive(Args)]
pub(crate) struct PlanArgs {
    /// Config file; without it, the embedded demo config.
    #[arg(long = "config.file")]
    pub(crate) config_file: Option<PathBuf>,
    /// Optimization rules; default `rules/optimization.yml`.
    #[arg(long = "optimization.rules-file", default_value = DEFAULT_OPTIMIZATION_RULES)]
    pub(crate) optimization_rules_file: PathBuf,
    /// The storage of a `run` (history of earnings, reallocations); read from a private copy,
    /// never written. Absent: only this one poll is known.
    #[arg(long = "storage.path", default_value = "./data")]
    pub(crate) storage_path: PathBuf,
    #[arg(long = "output", value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

pub(crate) fn plan(args: PlanArgs) -> Result<ExitCode> {
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
    let report = runtime.block_on(app::controller::plan_command(
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

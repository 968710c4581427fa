//! `depin-orcha report`: earnings, uptime, alerts and reallocations over a period, against
//! the period before, from a running instance or a storage directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use depin_orcha::{clock, promql, reallocation, report};

use super::open_private_copy;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The period reported, ending now; compared with the period of the same length before it.
    #[arg(long = "since", default_value = "7d", value_parser = humantime::parse_duration)]
    pub(crate) since: Duration,
    #[arg(long = "output", value_enum, default_value_t = ReportOutput::Text)]
    pub(crate) output: ReportOutput,
    /// A running instance to ask (its query API and /api/v1/reallocations); else --storage.path.
    #[arg(long = "url")]
    pub(crate) url: Option<String>,
    /// The storage of a `run`, read from a private copy.
    #[arg(long = "storage.path", default_value = "./data")]
    pub(crate) storage_path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportOutput {
    Text,
    Json,
    Markdown,
}

pub(crate) fn report_cmd(args: ReportArgs) -> Result<ExitCode> {
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

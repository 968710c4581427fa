//! `depin-orcha export`: streams stored samples out as CSV, JSON lines or OpenMetrics text,
//! from a storage directory or a running instance.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use std::time::Duration;

use depin_orcha::net::http::{self as http_client, HttpRequest};
use depin_orcha::{export, http};

use super::open_private_copy;

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Series selector; repeatable.
    #[arg(long = "match", required = true)]
    pub(crate) matches: Vec<String>,
    /// Start: Unix seconds or RFC 3339. Default: the oldest sample.
    #[arg(long = "start")]
    pub(crate) start: Option<String>,
    /// End: Unix seconds or RFC 3339. Default: the newest sample.
    #[arg(long = "end")]
    pub(crate) end: Option<String>,
    #[arg(long = "format", value_enum, default_value_t = ExportFormat::Csv)]
    pub(crate) format: ExportFormat,
    /// A running instance to export from (GET /api/v1/export); else --storage.path.
    #[arg(long = "url")]
    pub(crate) url: Option<String>,
    #[arg(long = "storage.path", default_value = "./data")]
    pub(crate) storage_path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    Csv,
    Json,
    Openmetrics,
}

pub(crate) fn export_cmd(args: ExportArgs) -> Result<ExitCode> {
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
    if let Some(url) = &args.url {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
        return export_remote(url, &args, start, end, &mut out);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
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
pub(crate) fn export_remote(
    url: &str,
    args: &ExportArgs,
    start: i64,
    end: i64,
    out: &mut (dyn std::io::Write + Send),
) -> Result<ExitCode> {
    let mut target = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    if !target.path().ends_with('/') {
        let path = format!("{}/", target.path());
        target.set_path(&path);
    }
    let mut target = target.join("api/v1/export").context("--url")?;
    {
        let mut q = target.query_pairs_mut();
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
    }
    let mut req = HttpRequest::get(target);
    // An export streams as long as it has samples to send.
    req.timeout = Duration::from_secs(24 * 3600);
    http_client::blocking(http_client::download(&req, out)).with_context(|| url.to_string())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

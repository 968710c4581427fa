//! `depin-orcha tsdb import`: backfills OpenMetrics text into a storage directory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use depin_orcha::tsdb;

pub(crate) fn tsdb_import(file: &Path, storage_path: &Path) -> Result<ExitCode> {
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

// ---- report and export ----

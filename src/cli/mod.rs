//! The subcommands of the `depin-orcha` binary, one file each: their flags and how they call
//! into the library. What they share is here: the output switch, the shipped files a checkout
//! provides, and the private copy of a running instance's storage.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;

use depin_orcha::tsdb;

pub(crate) mod check;
pub(crate) mod export;
pub(crate) mod plan;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod simulate;
pub(crate) mod test;
pub(crate) mod tsdb_import;

/// Where the optimization rules are looked for when no flag names them.
pub(crate) const DEFAULT_OPTIMIZATION_RULES: &str = "rules/optimization.yml";

/// The shipped rule files the demo loads when it runs from a checkout.
pub(crate) const DEMO_RULE_FILES: [&str; 2] = [
    "rules/prometheus/recording.yml",
    "rules/prometheus/alerts.yml",
];

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Copies `--storage.path` aside (a running `run` owns it) and opens the copy; the guard
/// removes the copy.
pub(crate) struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn open_private_copy(storage: &Path, what: &str) -> Result<(tsdb::Db, PrivateCopy)> {
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

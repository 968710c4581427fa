//! The storage's failure counters: WAL writes and snapshots that did not complete, counted
//! where they happen and registered by the metrics layer above.

use std::sync::LazyLock;

use prometheus::IntCounter;

/// Failures of the time series storage's own files, counted where they happen (the tsdb's
/// `wal.rs` and `snapshot.rs`) and shown by every registry of node metrics.
///
/// Process-wide, as Prometheus' own `prometheus_tsdb_*` counters are: a process runs one
/// persistent database, and the tsdb's file modules have no handle on a registry (the counts
/// cannot wait for a caller: every appender — scrapes, rule results, imports — writes the WAL).
pub struct StorageFailures {
    /// `depin_tsdb_wal_write_failures_total`: WAL records that could not be written or fsynced.
    pub wal_write: IntCounter,
    /// `depin_tsdb_snapshot_failures_total`: snapshot attempts that did not complete.
    pub snapshot: IntCounter,
}

pub const WAL_WRITE_FAILURES: &str = "depin_tsdb_wal_write_failures_total";
pub const SNAPSHOT_FAILURES: &str = "depin_tsdb_snapshot_failures_total";

static STORAGE_FAILURES: LazyLock<StorageFailures> = LazyLock::new(|| {
    // The names and help texts are constants that are valid metric names, which is all
    // `IntCounter::new` checks; a failure here is a typo caught by the first test.
    let counter = |name: &str, help: &str| match IntCounter::new(name, help) {
        Ok(c) => c,
        Err(e) => panic!("metric {name}: {e}"),
    };
    StorageFailures {
        wal_write: counter(
            WAL_WRITE_FAILURES,
            "Write-ahead log records of the time series storage that could not be written or fsynced (full disk, read-only or failing storage). Their samples are kept in memory only until the next snapshot succeeds.",
        ),
        snapshot: counter(
            SNAPSHOT_FAILURES,
            "Snapshots of the time series storage that failed (the write-ahead log still holds the data and keeps growing).",
        ),
    }
});

/// The process' storage failure counters.
pub fn storage_failures() -> &'static StorageFailures {
    &STORAGE_FAILURES
}

//! `simulate --storage.path DIR`: the depin-orcha strategy's series (scrapes, recording rules,
//! alerts) written into a storage directory, so that `run --storage.path DIR` opens the
//! simulated history and goes on from it (a simulated month explored in Grafana, or days of
//! history made in minutes for a benchmark).
//!
//! `run` appends at wall-clock time and keeps each series in time order, so the simulation is
//! moved to end now: its scenario's `start` becomes now minus the simulated days. The series
//! carry the scenario's node names, as the demo config's do.

use std::path::Path;
use std::sync::Arc;

use super::scenario::{self, Scenario, ScenarioErrors};
use crate::schema::diag::{Diag, Diags};
use crate::tsdb::{self, Db};

/// Loads the scenario at `path` with its start moved so that `days` (default: the scenario's)
/// end at `now_ms`.
pub fn ending_at(path: &Path, days: Option<f64>, now_ms: i64) -> Result<Scenario, ScenarioErrors> {
    let first = scenario::load_file(path)?;
    let days = days.unwrap_or(first.days);
    let start_ms = now_ms - (days * 86_400_000.0) as i64;
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_millis(start_ms.max(0) as u64);
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diags(vec![Diag::file(
            &origin,
            format!("cannot read the scenario: {e}"),
        )])
    })?;
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| Diags(vec![Diag::file(&origin, e.to_string())]))?;
    if let serde_yaml::Value::Mapping(m) = &mut value {
        m.insert(
            "start".into(),
            humantime::format_rfc3339_seconds(start).to_string().into(),
        );
    }
    let moved = serde_yaml::to_string(&value)
        .map_err(|e| Diags(vec![Diag::file(&origin, e.to_string())]))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.clone());
    scenario::parse_str(&moved, &origin, &name)
}

/// Opens the storage directory the simulation writes: retention covers the simulated days,
/// and WAL records are not fsynced one by one (a simulation interrupted is simply run again);
/// block files and the final snapshot are.
pub fn open(dir: &Path, days: f64) -> Result<Arc<Db>, tsdb::Error> {
    Ok(Arc::new(Db::open(tsdb::Options {
        path: Some(dir.to_path_buf()),
        retention_ms: ((days + 1.0) * 86_400_000.0) as i64,
        sync_wal: false,
        ..tsdb::Options::default()
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_is_moved_to_end_at_the_given_time() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/steady.yml");
        let now = 1_800_000_000_000;
        let sc = ending_at(&path, Some(2.0), now).unwrap();
        assert_eq!(sc.start_ms, now - 2 * 86_400_000);
        let plain = scenario::load_file(&path).unwrap();
        assert_eq!(sc.nodes.len(), plain.nodes.len());
        assert_eq!(sc.days, plain.days, "days come from the flag, not the file");
    }
}

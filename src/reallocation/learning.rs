//! What the learner learned from, kept under `--storage.path` so that it survives a restart:
//! `learning.jsonl`, one line per node and hour (`optimizer::learn::Point` with the node's
//! name), in the line format of the reallocation history (`<crc32> <json>`, fsynced on each
//! append; a torn last line is cut, a damaged line is skipped and reported). Nothing derived
//! is stored: at start every learner is rebuilt by replaying its points, so a change of the
//! rules or of the grid needs no migration. Points older than the kept window are dropped at
//! open by writing the file anew and renaming it over the old one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::history::{crc_line, parse_crc_json};
use crate::optimizer::learn::Point;

/// The file name under `--storage.path`.
pub const FILE_NAME: &str = "learning.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum LearningStoreError {
    #[error("learning data {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("learning data {path}: cannot encode a point: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One line: a node's point.
#[derive(Serialize, Deserialize)]
struct Line {
    node: String,
    #[serde(flatten)]
    point: Point,
}

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// Each node's points, in the order written.
    pub points: BTreeMap<String, Vec<Point>>,
    /// Line numbers that were damaged (skipped).
    pub damaged_lines: Vec<usize>,
    /// Bytes of a torn last line (cut).
    pub torn_tail_bytes: Option<usize>,
    /// Points dropped as older than the window.
    pub expired: usize,
}

/// The open file, appended to.
pub struct LearningStore {
    path: PathBuf,
    file: File,
}

impl LearningStore {
    /// Opens (or creates) `dir/learning.jsonl`, reads every point, and keeps those from hour
    /// `keep_from_hour` on (the file is rewritten when anything was dropped, damaged or torn).
    pub fn open(
        dir: &Path,
        keep_from_hour: i64,
    ) -> Result<(LearningStore, Loaded), LearningStoreError> {
        let path = dir.join(FILE_NAME);
        let io = |source| LearningStoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut loaded = Loaded::default();
        let mut kept: Vec<String> = Vec::new();
        for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let Some(body) = line.strip_suffix(b"\n") else {
                loaded.torn_tail_bytes = Some(line.len());
                break;
            };
            if body.is_empty() {
                continue;
            }
            let Some(l) = parse_crc_json::<Line>(body) else {
                loaded.damaged_lines.push(i + 1);
                continue;
            };
            if l.point.hour < keep_from_hour {
                loaded.expired += 1;
                continue;
            }
            kept.push(String::from_utf8_lossy(body).into_owned());
            loaded.points.entry(l.node).or_default().push(l.point);
        }
        let rewrite = loaded.expired > 0
            || !loaded.damaged_lines.is_empty()
            || loaded.torn_tail_bytes.is_some();
        if rewrite {
            let tmp = dir.join(format!("{FILE_NAME}.tmp"));
            let mut f = File::create(&tmp).map_err(io)?;
            for line in &kept {
                f.write_all(line.as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
            }
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
        let created = !path.exists();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        if rewrite || created {
            // The new file's name must survive a crash too.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok((LearningStore { path, file }, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `node`'s point and fsyncs it: when this returns `Ok`, it survives a crash.
    pub fn append(&mut self, node: &str, point: &Point) -> Result<(), LearningStoreError> {
        let line = Line {
            node: node.to_string(),
            point: point.clone(),
        };
        let json = serde_json::to_string(&line).map_err(|source| LearningStoreError::Encode {
            path: self.path.clone(),
            source,
        })?;
        let io = |source| LearningStoreError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all(crc_line(&json).as_bytes())
            .map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::learn::{Exclusion, NodeLearner, Spec};
    use crate::resources::{Allocation, Resource, Resources};

    fn point(hour: i64, tokens: f64) -> Point {
        let usage_avg = Resources::<Option<f64>> {
            cpu_cores: Some(1.5),
            ..Default::default()
        };
        Point {
            hour,
            tokens,
            up: 1.0,
            allocation: Allocation {
                cpu_cores: 2.0 + (hour / 50) as f64,
                memory_bytes: 4e9,
                ..Default::default()
            },
            usage_avg,
            usage_max: usage_avg,
            excluded: (hour % 50 == 0).then_some(Exclusion::Settle),
        }
    }

    fn learner() -> NodeLearner {
        NodeLearner::new(Spec {
            groups: vec![vec![Resource::CpuCores, Resource::MemoryBytes]],
            upper: Allocation {
                cpu_cores: 8.0,
                memory_bytes: 16e9,
                ..Default::default()
            },
            guesses: BTreeMap::new(),
        })
    }

    #[test]
    fn what_was_learned_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut before = learner();
        {
            let (mut store, loaded) = LearningStore::open(dir.path(), 0).unwrap();
            assert_eq!(loaded, Loaded::default());
            for h in 0..200 {
                let p = point(
                    h,
                    1.0 + 0.3 * ((h % 24) as f64 / 24.0) + 0.1 * (h / 50) as f64,
                );
                store.append("golem", &p).unwrap();
                store.append("other", &point(h, 2.0)).unwrap();
                before.add(p);
            }
        }
        // Reopened (a restart): the same points, so the same learner.
        let (_, loaded) = LearningStore::open(dir.path(), 0).unwrap();
        assert_eq!(loaded.points["golem"].len(), 200);
        assert_eq!(loaded.points["other"].len(), 200);
        let mut after = learner();
        for p in loaded.points["golem"].iter().cloned() {
            after.add(p);
        }
        assert_eq!(after.observations(), before.observations());
        // JSON keeps a number to within an ulp or so, not always bit for bit.
        for (a, b) in after.posterior().iter().zip(before.posterior()) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-300), "{a} vs {b}");
        }
    }

    #[test]
    fn a_torn_tail_and_a_damaged_line_are_skipped_and_old_points_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = LearningStore::open(dir.path(), 0).unwrap();
            for h in 0..10 {
                store.append("storj", &point(h, 1.0)).unwrap();
            }
        }
        let path = dir.path().join(FILE_NAME);
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Damage line 3 (its checksum no longer matches) and tear a last line.
        let third = text.lines().nth(2).unwrap().to_string();
        text = text.replace(&third, &third.replace("\"tokens\":1.0", "\"tokens\":9.0"));
        text.push_str("0badc0de {\"node\":\"st");
        std::fs::write(&path, text).unwrap();
        let (mut store, loaded) = LearningStore::open(dir.path(), 4).unwrap();
        assert_eq!(loaded.damaged_lines, vec![3]);
        assert_eq!(loaded.torn_tail_bytes, Some(20));
        assert_eq!(loaded.expired, 3);
        let hours: Vec<i64> = loaded.points["storj"].iter().map(|p| p.hour).collect();
        assert_eq!(hours, (4..10).collect::<Vec<_>>());
        store.append("storj", &point(10, 1.0)).unwrap();
        drop(store);
        // The rewritten file holds the kept points and the new one, nothing else.
        let (_, loaded) = LearningStore::open(dir.path(), 0).unwrap();
        assert_eq!(loaded.points["storj"].len(), 7);
        assert!(loaded.damaged_lines.is_empty() && loaded.torn_tail_bytes.is_none());
    }
}

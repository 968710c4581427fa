//! The durable history of reallocations: `<storage.path>/reallocations.jsonl`, an append-only
//! log of JSON records, each line `<crc32 of the JSON, 8 hex digits> <JSON>\n`, fsynced after
//! every append. JSON lines rather than SQLite: the records are few (a handful an hour at
//! most), always read whole at start, and a line a person can `grep` is worth more here than
//! queries; the CRC catches a torn or damaged line, which SQLite would do with a dependency and
//! a file format nobody can read by eye.
//!
//! What it records: the intent (the steps, written before anything is touched), each step's
//! start and verified end, the outcome (`applied`, `rolled_back`, `rejected`,
//! `rollback_failed`), the realized gain measured after the hold period, and pause/resume. The
//! rate limit and the minimum hold are computed from it ([`History::reallocation_times_since`],
//! [`History::last_change`]), so a restart cannot bypass them; an intent without an outcome
//! ([`History::pending`]) is a crash in the middle, which `execute::recover` resolves at start.
//!
//! A torn last line (a crash while writing it) is ignored, reported in [`OpenReport`], and cut
//! off the file so the next record starts on a clean line. A damaged line elsewhere is skipped
//! and reported too: refusing to start would leave the operator without a controller over one
//! bad byte, while the records around it still hold.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gates::Gate;
use crate::resources::Allocation;

/// The file name under `--storage.path`.
pub const FILE_NAME: &str = "reallocations.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reallocation history {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reallocation history {path}: cannot encode a record: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One change of one node's allocation: from `from` to `to`. Undoing it puts `from` back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub node: String,
    pub from: Allocation,
    pub to: Allocation,
}

/// Who asked for a reallocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The controller loop, from the optimizer's plan.
    Controller,
    /// `POST /api/v1/reallocations` without a body: the current plan.
    ApiPlan,
    /// `POST /api/v1/reallocations` with allocations in the body.
    ApiManual,
    /// The automatic undo of a move that made things worse.
    RealizedRollback,
}

/// How a reallocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step applied and verified.
    Applied,
    /// A step failed; every applied step was undone and verified.
    RolledBack,
    /// Gates or pre-flight said no; nothing was touched.
    Rejected,
    /// A step failed and undoing failed too: the host is in a state nobody planned. The
    /// controller pauses itself; an operator has to look.
    RollbackFailed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::RolledBack,
        Outcome::Rejected,
        Outcome::RollbackFailed,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::RolledBack => "rolled_back",
            Outcome::Rejected => "rejected",
            Outcome::RollbackFailed => "rollback_failed",
        }
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// Written (and fsynced) before the first step is touched.
    Intent {
        id: u64,
        t_ms: i64,
        source: Source,
        steps: Vec<Step>,
        /// The plan's expected gain, USD/h (None for a manual allocation).
        expected_gain_usd_per_hour: Option<f64>,
        /// The plan's view of the earnings now, USD/h.
        current_usd_per_hour: Option<f64>,
        /// The hold period after which the realized gain is measured, ms.
        hold_ms: i64,
        /// One line for people.
        summary: String,
    },
    /// Step `index` is about to be applied.
    StepStarted { id: u64, index: usize, t_ms: i64 },
    /// Step `index` was applied and verified.
    StepDone { id: u64, index: usize, t_ms: i64 },
    /// How reallocation `id` ended.
    Outcome {
        id: u64,
        t_ms: i64,
        outcome: Outcome,
        reason: String,
        /// Undo failures, when the outcome is `rollback_failed`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        undo_errors: Vec<String>,
    },
    /// A plan (or request) that gates or pre-flight refused; nothing was touched.
    Rejected {
        id: u64,
        t_ms: i64,
        source: Source,
        steps: Vec<Step>,
        /// Every blocking gate's and pre-flight problem's reason, for people.
        reasons: Vec<String>,
        /// The gates that blocked it (none when only pre-flight did).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<Gate>,
        /// Whether pre-flight (capacity, bounds, reserves) refused it too.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        preflight: bool,
    },
    /// The realized gain of applied reallocation `id`, measured one hold period after it.
    Realized {
        id: u64,
        t_ms: i64,
        before_usd_per_hour: Option<f64>,
        after_usd_per_hour: Option<f64>,
        realized_gain_usd_per_hour: Option<f64>,
        expected_gain_usd_per_hour: Option<f64>,
        /// The id of the automatic rollback this measurement started, if any.
        rollback_id: Option<u64>,
        note: String,
    },
    /// The controller was paused or resumed (kept across restarts).
    Control {
        t_ms: i64,
        paused: bool,
        reason: String,
    },
}

impl Record {
    /// The reallocation id, for records that belong to one.
    pub fn id(&self) -> Option<u64> {
        match self {
            Record::Intent { id, .. }
            | Record::StepStarted { id, .. }
            | Record::StepDone { id, .. }
            | Record::Outcome { id, .. }
            | Record::Rejected { id, .. }
            | Record::Realized { id, .. } => Some(*id),
            Record::Control { .. } => None,
        }
    }
}

/// What opening the log found besides the records.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OpenReport {
    /// Records read.
    pub records: usize,
    /// A torn last line that was ignored and cut off, with its length in bytes.
    pub torn_tail_bytes: Option<usize>,
    /// Damaged lines elsewhere (1-based line numbers), skipped.
    pub damaged_lines: Vec<usize>,
}

/// An intent with no outcome: a crash in the middle of a reallocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub id: u64,
    pub t_ms: i64,
    pub source: Source,
    pub steps: Vec<Step>,
    /// Steps whose start was recorded.
    pub started: Vec<usize>,
    /// Steps recorded as applied and verified.
    pub done: Vec<usize>,
}

/// An applied reallocation whose realized gain is still to be measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmeasured {
    pub id: u64,
    pub applied_ms: i64,
    pub hold_ms: i64,
    pub expected_gain_usd_per_hour: Option<f64>,
    pub steps: Vec<Step>,
}

/// One reallocation as `GET /api/v1/reallocations` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub id: u64,
    pub started_ms: i64,
    pub source: Source,
    pub steps: Vec<Step>,
    pub summary: String,
    pub expected_gain_usd_per_hour: Option<f64>,
    /// None while it runs (or after a crash, until resolved).
    pub outcome: Option<Outcome>,
    pub reason: String,
    pub finished_ms: Option<i64>,
    pub steps_done: usize,
    pub undo_errors: Vec<String>,
    pub realized_gain_usd_per_hour: Option<f64>,
    pub realized_note: Option<String>,
    /// The gates that blocked a rejected one.
    pub blocked_by: Vec<Gate>,
    /// Whether pre-flight refused a rejected one.
    pub blocked_by_preflight: bool,
}

/// The log: every record in memory (they are few) and the open file to append to.
pub struct History {
    path: Option<PathBuf>,
    file: Option<File>,
    records: Vec<Record>,
    next_id: u64,
    report: OpenReport,
}

/// `<crc32 of json, 8 hex digits> <json>\n`: the line format of the durable logs here.
pub(super) fn crc_line(json: &str) -> String {
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

/// Parses one line (without its newline); None when damaged.
fn parse_line(line: &[u8]) -> Option<Record> {
    parse_crc_json(line)
}

/// Parses one `crc json` line of any record type (without its newline); None when damaged.
pub(super) fn parse_crc_json<T: serde::de::DeserializeOwned>(line: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(line).ok()?;
    let (crc, json) = text.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// Every good record of a log's bytes and what was wrong with the rest.
fn parse_all(bytes: &[u8]) -> (Vec<Record>, OpenReport) {
    let mut report = OpenReport::default();
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while pos < bytes.len() {
        line_no += 1;
        let Some(len) = bytes[pos..].iter().position(|&b| b == b'\n') else {
            // No newline: the write of the last record was cut.
            report.torn_tail_bytes = Some(bytes.len() - pos);
            break;
        };
        let line = &bytes[pos..pos + len];
        let next = pos + len + 1;
        match parse_line(line) {
            Some(r) => records.push(r),
            None if next >= bytes.len() => {
                report.torn_tail_bytes = Some(bytes.len() - pos);
                break;
            }
            None if line.is_empty() => {}
            None => report.damaged_lines.push(line_no),
        }
        pos = next;
    }
    report.records = records.len();
    (records, report)
}

impl History {
    /// A history that lives in memory only (tests, `plan`, dry runs without storage).
    pub fn in_memory() -> History {
        History {
            path: None,
            file: None,
            records: Vec::new(),
            next_id: 1,
            report: OpenReport::default(),
        }
    }

    /// Opens (or creates) `dir/reallocations.jsonl`, reads every record, cuts a torn tail.
    pub fn open(dir: &Path) -> Result<History, HistoryError> {
        let path = dir.join(FILE_NAME);
        let io = |source| HistoryError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        if created {
            // The new file's name must survive a crash too.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, report) = parse_all(&bytes);
        let good_end = bytes.len() - report.torn_tail_bytes.unwrap_or(0);
        if report.torn_tail_bytes.is_some() {
            file.set_len(good_end as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let next_id = records.iter().filter_map(Record::id).max().unwrap_or(0) + 1;
        Ok(History {
            path: Some(path),
            file: Some(file),
            records,
            next_id,
            report,
        })
    }

    /// Reads `dir/reallocations.jsonl` without opening it for writing (`depin-orcha plan` next
    /// to a running instance): appends stay in memory. A missing file is an empty history.
    pub fn load(dir: &Path) -> Result<History, HistoryError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(History::in_memory());
        }
        let bytes = std::fs::read(&path).map_err(|source| HistoryError::Io {
            path: path.clone(),
            source,
        })?;
        let (records, report) = parse_all(&bytes);
        let next_id = records.iter().filter_map(Record::id).max().unwrap_or(0) + 1;
        Ok(History {
            path: Some(path),
            file: None,
            records,
            next_id,
            report,
        })
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// A fresh reallocation id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Appends one record and fsyncs it before returning: when this returns `Ok`, the record
    /// survives a crash.
    pub fn append(&mut self, r: Record) -> Result<(), HistoryError> {
        if let Some(file) = self.file.as_mut() {
            let path = self.path.clone().unwrap_or_default();
            let json = serde_json::to_string(&r).map_err(|source| HistoryError::Encode {
                path: path.clone(),
                source,
            })?;
            let io = |source| HistoryError::Io {
                path: path.clone(),
                source,
            };
            file.write_all(crc_line(&json).as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        if let Some(id) = r.id() {
            self.next_id = self.next_id.max(id + 1);
        }
        self.records.push(r);
        Ok(())
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The latest intent that has no outcome.
    pub fn pending(&self) -> Option<Pending> {
        let mut open: BTreeMap<u64, Pending> = BTreeMap::new();
        for r in &self.records {
            match r {
                Record::Intent {
                    id,
                    t_ms,
                    source,
                    steps,
                    ..
                } => {
                    open.insert(
                        *id,
                        Pending {
                            id: *id,
                            t_ms: *t_ms,
                            source: *source,
                            steps: steps.clone(),
                            started: Vec::new(),
                            done: Vec::new(),
                        },
                    );
                }
                Record::StepStarted { id, index, .. } => {
                    if let Some(p) = open.get_mut(id) {
                        p.started.push(*index);
                    }
                }
                Record::StepDone { id, index, .. } => {
                    if let Some(p) = open.get_mut(id) {
                        p.done.push(*index);
                    }
                }
                Record::Outcome { id, .. } => {
                    open.remove(id);
                }
                _ => {}
            }
        }
        open.into_values().next_back()
    }

    fn intent(&self, want: u64) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| matches!(r, Record::Intent { id, .. } if *id == want))
    }

    /// When each reallocation that touched nodes (outcome applied, rolled back or rollback
    /// failed) with an outcome in `(since_ms, ∞)` ended, ms, oldest first: what the rate limits
    /// count and the 30-day budget replays. A rolled-back attempt counts, because it disturbed
    /// the nodes as much as a successful one.
    pub fn reallocation_times_since(&self, since_ms: i64) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Outcome { t_ms, outcome, .. }
                    if *t_ms > since_ms && *outcome != Outcome::Rejected =>
                {
                    Some(*t_ms)
                }
                _ => None,
            })
            .collect();
        times.sort_unstable();
        times
    }

    /// When each node's allocation last changed for good (an applied reallocation whose steps
    /// change it), ms. A rolled-back attempt put the old allocation back, so it starts no hold.
    pub fn last_change(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            if let Record::Outcome {
                id,
                t_ms,
                outcome: Outcome::Applied | Outcome::RollbackFailed,
                ..
            } = r
            {
                if let Some(Record::Intent { steps, .. }) = self.intent(*id) {
                    for s in steps.iter().filter(|s| s.from != s.to) {
                        out.insert(s.node.clone(), *t_ms);
                    }
                }
            }
        }
        out
    }

    /// Each node's allocation as the last applied reallocation that names it left it, with that
    /// reallocation's id. A rolled-back attempt put back what was there before, and a failed
    /// rollback left a state nobody recorded, so neither changes what this says.
    pub fn last_applied(&self) -> BTreeMap<String, (Allocation, u64)> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            if let Record::Outcome {
                id,
                outcome: Outcome::Applied,
                ..
            } = r
            {
                if let Some(Record::Intent { steps, .. }) = self.intent(*id) {
                    for s in steps {
                        out.insert(s.node.clone(), (s.to, *id));
                    }
                }
            }
        }
        out
    }

    /// Whether the controller was last paused (None: never paused or resumed).
    pub fn paused(&self) -> Option<bool> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Control { paused, .. } => Some(*paused),
            _ => None,
        })
    }

    /// Applied reallocations whose realized gain has not been measured yet.
    pub fn unmeasured(&self) -> Vec<Unmeasured> {
        let measured: Vec<u64> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Realized { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for r in &self.records {
            if let Record::Outcome {
                id,
                t_ms,
                outcome: Outcome::Applied,
                ..
            } = r
            {
                if measured.contains(id) {
                    continue;
                }
                if let Some(Record::Intent {
                    hold_ms,
                    expected_gain_usd_per_hour,
                    steps,
                    source,
                    ..
                }) = self.intent(*id)
                {
                    // An automatic rollback is not judged again: that could swing for ever.
                    if *source != Source::RealizedRollback {
                        out.push(Unmeasured {
                            id: *id,
                            applied_ms: *t_ms,
                            hold_ms: *hold_ms,
                            expected_gain_usd_per_hour: *expected_gain_usd_per_hour,
                            steps: steps.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every reallocation, newest first.
    pub fn summaries(&self) -> Vec<Summary> {
        let mut by_id: BTreeMap<u64, Summary> = BTreeMap::new();
        for r in &self.records {
            match r {
                Record::Intent {
                    id,
                    t_ms,
                    source,
                    steps,
                    expected_gain_usd_per_hour,
                    summary,
                    ..
                } => {
                    by_id.insert(
                        *id,
                        Summary {
                            id: *id,
                            started_ms: *t_ms,
                            source: *source,
                            steps: steps.clone(),
                            summary: summary.clone(),
                            expected_gain_usd_per_hour: *expected_gain_usd_per_hour,
                            outcome: None,
                            reason: String::new(),
                            finished_ms: None,
                            steps_done: 0,
                            undo_errors: Vec::new(),
                            realized_gain_usd_per_hour: None,
                            realized_note: None,
                            blocked_by: Vec::new(),
                            blocked_by_preflight: false,
                        },
                    );
                }
                Record::Rejected {
                    id,
                    t_ms,
                    source,
                    steps,
                    reasons,
                    gates,
                    preflight,
                } => {
                    by_id.insert(
                        *id,
                        Summary {
                            id: *id,
                            started_ms: *t_ms,
                            source: *source,
                            steps: steps.clone(),
                            summary: String::new(),
                            expected_gain_usd_per_hour: None,
                            outcome: Some(Outcome::Rejected),
                            reason: reasons.join("; "),
                            finished_ms: Some(*t_ms),
                            steps_done: 0,
                            undo_errors: Vec::new(),
                            realized_gain_usd_per_hour: None,
                            realized_note: None,
                            blocked_by: gates.clone(),
                            blocked_by_preflight: *preflight,
                        },
                    );
                }
                Record::StepDone { id, .. } => {
                    if let Some(s) = by_id.get_mut(id) {
                        s.steps_done += 1;
                    }
                }
                Record::Outcome {
                    id,
                    t_ms,
                    outcome,
                    reason,
                    undo_errors,
                } => {
                    if let Some(s) = by_id.get_mut(id) {
                        s.outcome = Some(*outcome);
                        s.reason = reason.clone();
                        s.finished_ms = Some(*t_ms);
                        s.undo_errors = undo_errors.clone();
                    }
                }
                Record::Realized {
                    id,
                    realized_gain_usd_per_hour,
                    note,
                    ..
                } => {
                    if let Some(s) = by_id.get_mut(id) {
                        s.realized_gain_usd_per_hour = *realized_gain_usd_per_hour;
                        s.realized_note = Some(note.clone());
                    }
                }
                _ => {}
            }
        }
        by_id.into_values().rev().collect()
    }
}

// ---- retention ----

/// What [`compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    pub kept: usize,
    pub dropped: usize,
}

impl Record {
    /// When the record was written.
    pub fn t_ms(&self) -> i64 {
        match self {
            Record::Intent { t_ms, .. }
            | Record::StepStarted { t_ms, .. }
            | Record::StepDone { t_ms, .. }
            | Record::Outcome { t_ms, .. }
            | Record::Rejected { t_ms, .. }
            | Record::Realized { t_ms, .. }
            | Record::Control { t_ms, .. } => *t_ms,
        }
    }
}

/// Drops from `dir/reallocations.jsonl` the reallocations whose newest record is older than
/// `retention_ms` before `now_ms`, and pause/resume records as old, keeping always: every
/// record of a reallocation without an outcome (a crash to resolve), the newest reallocation
/// (so ids never repeat) and the newest pause/resume (the controller's paused state). The file
/// is rewritten to a temporary file, fsynced and renamed over the old one, so a crash leaves
/// either the old or the new log. Call before [`History::open`]; a missing file is no error.
pub fn compact(dir: &Path, retention_ms: i64, now_ms: i64) -> Result<Compaction, HistoryError> {
    let path = dir.join(FILE_NAME);
    let io = |source| HistoryError::Io {
        path: path.clone(),
        source,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Compaction::default()),
        Err(e) => return Err(io(e)),
    };
    let (records, _) = parse_all(&bytes);
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut newest: BTreeMap<u64, i64> = BTreeMap::new();
    let mut finished: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    for r in &records {
        if let Some(id) = r.id() {
            let t = newest.entry(id).or_insert(i64::MIN);
            *t = (*t).max(r.t_ms());
            if matches!(r, Record::Outcome { .. } | Record::Rejected { .. }) {
                finished.insert(id);
            }
        }
    }
    let max_id = newest.keys().next_back().copied();
    let last_control = records
        .iter()
        .rposition(|r| matches!(r, Record::Control { .. }));
    let keep = |i: usize, r: &Record| match r.id() {
        Some(id) => {
            newest.get(&id).is_some_and(|t| *t >= cutoff)
                || !finished.contains(&id)
                || Some(id) == max_id
        }
        None => r.t_ms() >= cutoff || Some(i) == last_control,
    };
    let kept: Vec<&Record> = records
        .iter()
        .enumerate()
        .filter(|(i, r)| keep(*i, r))
        .map(|(_, r)| r)
        .collect();
    let dropped = records.len() - kept.len();
    if dropped == 0 {
        return Ok(Compaction {
            kept: kept.len(),
            dropped,
        });
    }
    let tmp = dir.join(format!("{FILE_NAME}.compact"));
    let mut text = String::new();
    for r in &kept {
        let json = serde_json::to_string(r).map_err(|source| HistoryError::Encode {
            path: path.clone(),
            source,
        })?;
        text.push_str(&crc_line(&json));
    }
    let tmp_io = |source| HistoryError::Io {
        path: tmp.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(tmp_io)?;
    f.write_all(text.as_bytes()).map_err(tmp_io)?;
    f.sync_all().map_err(tmp_io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Compaction {
        kept: kept.len(),
        dropped,
    })
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn old_finished_reallocations_go_and_what_still_matters_stays() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000i64;
        {
            let mut h = History::open(dir.path()).unwrap();
            let outcome = |id, t| Record::Outcome {
                id,
                t_ms: t,
                outcome: Outcome::Applied,
                reason: String::new(),
                undo_errors: vec![],
            };
            h.append(Record::Control {
                t_ms: 0,
                paused: true,
                reason: "old".into(),
            })
            .unwrap();
            h.append(Record::StepDone {
                id: 1,
                index: 0,
                t_ms: day,
            })
            .unwrap();
            h.append(outcome(1, day)).unwrap();
            // Never finished: a crash to resolve, kept whatever its age.
            h.append(Record::StepStarted {
                id: 2,
                index: 0,
                t_ms: 2 * day,
            })
            .unwrap();
            h.append(Record::StepDone {
                id: 3,
                index: 0,
                t_ms: 3 * day,
            })
            .unwrap();
            h.append(outcome(3, 3 * day)).unwrap();
            h.append(Record::StepDone {
                id: 4,
                index: 0,
                t_ms: 100 * day,
            })
            .unwrap();
            h.append(outcome(4, 100 * day)).unwrap();
        }
        let c = compact(dir.path(), 90 * day, 101 * day).unwrap();
        assert_eq!(
            c,
            Compaction {
                kept: 4,
                dropped: 4
            }
        );
        let h = History::open(dir.path()).unwrap();
        let ids: Vec<Option<u64>> = h.records().iter().map(Record::id).collect();
        assert_eq!(ids, vec![None, Some(2), Some(4), Some(4)]);
        assert_eq!(h.paused(), Some(true));
        // Nothing more to drop: the file is left alone.
        assert_eq!(compact(dir.path(), 90 * day, 101 * day).unwrap().dropped, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cpu: f64) -> Allocation {
        Allocation {
            cpu_cores: cpu,
            ..Default::default()
        }
    }

    fn intent(id: u64, t_ms: i64) -> Record {
        Record::Intent {
            id,
            t_ms,
            source: Source::Controller,
            steps: vec![
                Step {
                    node: "storj".into(),
                    from: alloc(4.0),
                    to: alloc(2.0),
                },
                Step {
                    node: "golem".into(),
                    from: alloc(2.0),
                    to: alloc(4.0),
                },
            ],
            expected_gain_usd_per_hour: Some(0.1),
            current_usd_per_hour: Some(1.0),
            hold_ms: 3_600_000,
            summary: "2 cores storj → golem".into(),
        }
    }

    fn outcome(id: u64, t_ms: i64, outcome: Outcome) -> Record {
        Record::Outcome {
            id,
            t_ms,
            outcome,
            reason: String::new(),
            undo_errors: Vec::new(),
        }
    }

    #[test]
    fn records_survive_reopening_and_feed_the_gates() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut h = History::open(dir.path()).unwrap();
            assert_eq!(h.next_id(), 1);
            h.append(intent(1, 1_000)).unwrap();
            h.append(outcome(1, 2_000, Outcome::Applied)).unwrap();
            h.append(intent(2, 5_000)).unwrap();
            h.append(outcome(2, 6_000, Outcome::RolledBack)).unwrap();
            h.append(Record::Control {
                t_ms: 7_000,
                paused: true,
                reason: "test".into(),
            })
            .unwrap();
        }
        let mut h = History::open(dir.path()).unwrap();
        assert_eq!(h.open_report().records, 5);
        assert_eq!(h.next_id(), 3);
        assert_eq!(h.reallocation_times_since(0).len(), 2);
        assert_eq!(h.reallocation_times_since(2_000).len(), 1);
        // The rolled-back attempt does not restart the hold.
        let last = h.last_change();
        assert_eq!(last.get("golem"), Some(&2_000));
        assert_eq!(last.get("storj"), Some(&2_000));
        // What the applied one left stands; the rolled-back one changed nothing.
        let applied = h.last_applied();
        assert_eq!(applied.get("golem"), Some(&(alloc(4.0), 1)));
        assert_eq!(applied.get("storj"), Some(&(alloc(2.0), 1)));
        assert_eq!(h.paused(), Some(true));
        assert!(h.pending().is_none());
        assert_eq!(h.unmeasured().len(), 1);
        let s = h.summaries();
        assert_eq!(s[0].id, 2);
        assert_eq!(s[0].outcome, Some(Outcome::RolledBack));
    }

    #[test]
    fn an_intent_without_outcome_is_pending() {
        let mut h = History::in_memory();
        h.append(intent(1, 1_000)).unwrap();
        h.append(Record::StepStarted {
            id: 1,
            index: 0,
            t_ms: 1_001,
        })
        .unwrap();
        h.append(Record::StepDone {
            id: 1,
            index: 0,
            t_ms: 1_002,
        })
        .unwrap();
        h.append(Record::StepStarted {
            id: 1,
            index: 1,
            t_ms: 1_003,
        })
        .unwrap();
        let p = h.pending().unwrap();
        assert_eq!(
            (p.id, p.started.clone(), p.done.clone()),
            (1, vec![0, 1], vec![0])
        );
        h.append(outcome(1, 2_000, Outcome::RolledBack)).unwrap();
        assert!(h.pending().is_none());
    }

    #[test]
    fn a_torn_tail_is_ignored_reported_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut h = History::open(dir.path()).unwrap();
            h.append(intent(1, 1_000)).unwrap();
            h.append(outcome(1, 2_000, Outcome::Applied)).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let full = std::fs::read(&path).unwrap();
        // A crash halfway through writing a third record.
        let mut torn = full.clone();
        let tail = b"0badc0de {\"type\":\"intent\",\"id\":3,";
        torn.extend_from_slice(tail);
        std::fs::write(&path, &torn).unwrap();
        {
            let mut h = History::open(dir.path()).unwrap();
            assert_eq!(h.open_report().torn_tail_bytes, Some(tail.len()));
            assert_eq!(h.records().len(), 2);
            h.append(outcome(9, 3_000, Outcome::Rejected)).unwrap();
        }
        // Reading without writing (the plan command) leaves a torn file as it is.
        std::fs::write(&path, &torn).unwrap();
        let mut ro = History::load(dir.path()).unwrap();
        assert_eq!(ro.records().len(), 2);
        ro.append(outcome(8, 3_000, Outcome::Rejected)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        {
            let mut h = History::open(dir.path()).unwrap();
            h.append(outcome(9, 3_000, Outcome::Rejected)).unwrap();
        }
        // The new record starts on a clean line and the file reads whole again.
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.open_report().torn_tail_bytes, None);
        assert_eq!(h.records().len(), 3);
        assert!(std::fs::read(&path).unwrap().starts_with(&full));
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut h = History::open(dir.path()).unwrap();
            h.append(intent(1, 1_000)).unwrap();
            h.append(outcome(1, 2_000, Outcome::Applied)).unwrap();
            h.append(intent(2, 3_000)).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        // Flip a digit inside the second line: its CRC no longer matches.
        let damaged = text.replacen("\"t_ms\":2000", "\"t_ms\":2001", 1);
        assert_ne!(damaged, text);
        std::fs::write(&path, damaged).unwrap();
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.open_report().damaged_lines, vec![2]);
        assert_eq!(h.records().len(), 2);
    }
}

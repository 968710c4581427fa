//! Where the events come from, observed from outside on a short tick so that no loop carries a
//! hook or ever waits for the bus: the coordinator's [`HealthBoard`] (poll results, summarised
//! to one `poll` event per node per [`WatchOptions::poll_every`]; `node_down`/`node_up` on
//! every change), the rule manager (alert state changes `pending`/`firing`/`resolved`; rule
//! reloads, good or failed) and the reallocation history file (plans, steps, outcomes, realized
//! gains, pause/resume: each record the controller appends, as it lands on disk).
//!
//! The rule groups are read with `try_lock`: a group being evaluated is looked at next tick
//! rather than waited for.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Bus;
use crate::clock::SharedClock;
use crate::coordinator::HealthBoard;
use crate::reallocation::history::Record;
use crate::rules::alerting::AlertState;
use crate::rules::RuleManager;

/// What the watcher looks at; any part may be absent.
pub struct Sources {
    pub health: Option<Arc<HealthBoard>>,
    pub rules: Option<Arc<RuleManager>>,
    /// `<storage.path>/reallocations.jsonl`.
    pub history_file: Option<PathBuf>,
    pub clock: SharedClock,
}

#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How often the sources are looked at.
    pub tick: Duration,
    /// At most one `poll` event per node this often (the latest state; `polls` says how many
    /// polls were seen since the last one).
    pub poll_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            tick: Duration::from_millis(250),
            poll_every: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct NodeSeen {
    up: Option<bool>,
    last_success_ms: Option<i64>,
    failures: u32,
    unreported_polls: u64,
    last_event_ms: Option<i64>,
}

/// The watcher's memory between ticks.
pub struct Watcher {
    bus: Bus,
    src: Sources,
    opts: WatchOptions,
    nodes: BTreeMap<String, NodeSeen>,
    /// (rule name, labels text) → state.
    alerts: HashMap<(String, String), (AlertState, serde_json::Value)>,
    groups: Option<Vec<usize>>,
    reload_error: Option<String>,
    history_offset: Option<u64>,
    partial: Vec<u8>,
}

impl Watcher {
    pub fn new(bus: Bus, src: Sources, opts: WatchOptions) -> Watcher {
        Watcher {
            bus,
            src,
            opts,
            nodes: BTreeMap::new(),
            alerts: HashMap::new(),
            groups: None,
            reload_error: None,
            history_offset: None,
            partial: Vec::new(),
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.opts.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.step(),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One look at every source.
    pub fn step(&mut self) {
        let now = self.src.clock.now_ms();
        self.health(now);
        self.rules(now);
        self.history(now);
    }

    fn health(&mut self, now: i64) {
        let Some(board) = &self.src.health else {
            return;
        };
        let poll_every = self.opts.poll_every.as_millis() as i64;
        for h in board.snapshot() {
            if !h.polled {
                continue;
            }
            let seen = self.nodes.entry(h.name.clone()).or_default();
            let error = h.last_error.as_ref().map(|e| e.message.clone());
            if seen.up != Some(h.up) {
                let kind = if h.up { "node_up" } else { "node_down" };
                self.bus.publish(
                    kind,
                    now,
                    json!({"node": h.name, "protocol": h.protocol, "error": error}),
                );
                seen.up = Some(h.up);
            }
            let polled = seen.last_success_ms != h.last_success_ms
                || seen.failures != h.consecutive_failures;
            if polled {
                seen.unreported_polls += 1;
                seen.last_success_ms = h.last_success_ms;
                seen.failures = h.consecutive_failures;
            }
            let due = seen.last_event_ms.is_none_or(|t| now - t >= poll_every);
            if seen.unreported_polls > 0 && due {
                self.bus.publish(
                    "poll",
                    now,
                    json!({
                        "node": h.name, "protocol": h.protocol, "up": h.up,
                        "last_success_ms": h.last_success_ms,
                        "consecutive_failures": h.consecutive_failures,
                        "error": error, "degraded": h.degraded,
                        "polls": seen.unreported_polls,
                    }),
                );
                seen.unreported_polls = 0;
                seen.last_event_ms = Some(now);
            }
        }
    }

    fn rules(&mut self, now: i64) {
        let Some(mgr) = &self.src.rules else { return };
        let groups = mgr.groups();
        let fingerprint: Vec<usize> = groups.iter().map(|g| Arc::as_ptr(g) as usize).collect();
        match &self.groups {
            Some(prev) if *prev != fingerprint => {
                self.bus.publish(
                    "rule_reload",
                    now,
                    json!({"success": true, "groups": groups.len()}),
                );
            }
            _ => {}
        }
        self.groups = Some(fingerprint);
        let err = mgr.last_reload_error();
        if err != self.reload_error {
            if let Some(e) = &err {
                self.bus
                    .publish("rule_reload", now, json!({"success": false, "error": e}));
            }
            self.reload_error = err;
        }
        let mut current: HashMap<(String, String), (AlertState, serde_json::Value)> =
            HashMap::new();
        let mut busy = false;
        for g in &groups {
            let Ok(g) = g.try_lock() else {
                busy = true;
                continue;
            };
            for rule in g.group.alerting_rules() {
                for a in rule.alerts() {
                    if a.state == AlertState::Inactive {
                        continue;
                    }
                    let labels: BTreeMap<&str, &str> = a
                        .labels
                        .iter()
                        .map(|l| (l.name.as_str(), l.value.as_str()))
                        .collect();
                    let info = json!({
                        "alertname": rule.name(), "labels": labels,
                        "value": if a.value.is_finite() { json!(a.value) } else { json!(a.value.to_string()) },
                        "active_at_ms": a.active_at,
                    });
                    current.insert(
                        (rule.name().to_string(), a.labels.to_string()),
                        (a.state, info),
                    );
                }
            }
        }
        if busy {
            // A group under evaluation: compare next tick, not against a partial picture.
            return;
        }
        for (k, (state, info)) in &current {
            if self.alerts.get(k).map(|(s, _)| *s) != Some(*state) {
                let mut d = info.clone();
                d["state"] = json!(state.as_str());
                self.bus.publish("alert", now, d);
            }
        }
        for (k, (_, info)) in &self.alerts {
            if !current.contains_key(k) {
                let mut d = info.clone();
                d["state"] = json!("resolved");
                self.bus.publish("alert", now, d);
            }
        }
        self.alerts = current;
    }

    fn history(&mut self, now: i64) {
        let Some(path) = &self.src.history_file else {
            return;
        };
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = match self.history_offset {
            // What was there at start is history, not news.
            None => {
                self.history_offset = Some(len);
                return;
            }
            Some(o) if o > len => {
                self.partial.clear();
                0
            }
            Some(o) => o,
        };
        if len == offset || f.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(len - offset).read_to_end(&mut buf).is_err() {
            return;
        }
        self.history_offset = Some(offset + buf.len() as u64);
        self.partial.extend_from_slice(&buf);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            if let Some(rec) = parse_history_line(&line[..line.len() - 1]) {
                let kind = match &rec {
                    Record::Intent { .. } => "plan",
                    Record::Rejected { .. } => "plan_rejected",
                    Record::StepStarted { .. } | Record::StepDone { .. } => "reallocation_step",
                    Record::Outcome { .. } => "reallocation_outcome",
                    Record::Realized { .. } => "reallocation_realized",
                    Record::Control { .. } => "controller",
                };
                if let Ok(v) = serde_json::to_value(&rec) {
                    self.bus.publish(kind, now, v);
                }
            }
        }
    }
}

/// One line of the history log (`<crc32 hex> <json>`); `None` when damaged.
fn parse_history_line(line: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(line).ok()?;
    let (crc, json) = text.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn history_records_appended_after_start_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reallocations.jsonl");
        let line = |r: &Record| {
            let j = serde_json::to_string(r).unwrap();
            format!("{:08x} {j}\n", crc32fast::hash(j.as_bytes()))
        };
        let old = Record::Control {
            t_ms: 1,
            paused: true,
            reason: "old".into(),
        };
        std::fs::write(&path, line(&old)).unwrap();
        let bus = Bus::new(100, 16);
        let clock: SharedClock = Arc::new(crate::clock::ManualClock::new(10));
        let mut w = Watcher::new(
            bus.clone(),
            Sources {
                health: None,
                rules: None,
                history_file: Some(path.clone()),
                clock,
            },
            WatchOptions::default(),
        );
        w.step();
        assert_eq!(
            bus.last_id(),
            0,
            "records from before the start are not news"
        );
        let rec = Record::StepDone {
            id: 4,
            index: 0,
            t_ms: 20,
        };
        let text = line(&rec);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // Half a line first, as a reader may see an append in progress.
        f.write_all(&text.as_bytes()[..10]).unwrap();
        w.step();
        assert_eq!(bus.last_id(), 0);
        f.write_all(&text.as_bytes()[10..]).unwrap();
        w.step();
        let s = bus.subscribe(Some(0));
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].kind, "reallocation_step");
        assert_eq!(s.backlog[0].data()["id"], 4);
    }
}

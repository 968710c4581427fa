//! Carrying out a reallocation: the steps in order (every release before any grant, so the
//! nodes never hold more than the host has), each applied and then verified by polling the
//! node; on any failure every step that was started is undone in reverse order and the undo
//! verified too. Each step's start and verified end go to the journal (the durable history)
//! before the engine moves on, so a crash leaves enough behind for [`recover`] to finish the
//! job: either the steps are verified complete, or the started ones are undone.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::history::{HistoryError, Outcome, Pending, Record, Step};
use crate::actuators::{Actuator, ActuatorError};
use crate::clock::Clock;
use crate::resources::{Allocation, Resource};

/// Attempts per undo before giving up on it (an undo is worth trying harder than an apply).
pub const UNDO_ATTEMPTS: u32 = 3;

/// The steps from `current` to `target`: first, for every node that gives something up, a step
/// to the smaller of both per resource (its releases); then, for every node that gets
/// something, a step to its target (its grants). A node that gives up memory and gets cores
/// has one step in each phase. Sorted by node name within a phase, so the order is stable.
pub fn steps_for(
    current: &BTreeMap<String, Allocation>,
    target: &BTreeMap<String, Allocation>,
) -> Vec<Step> {
    let mut releases = Vec::new();
    let mut grants = Vec::new();
    for (node, to) in target {
        let Some(from) = current.get(node) else {
            continue;
        };
        if from == to {
            continue;
        }
        let mid = from.map(|r, v| v.min(to.get(r)));
        if mid != *from {
            releases.push(Step {
                node: node.clone(),
                from: *from,
                to: mid,
            });
        }
        if mid != *to {
            grants.push(Step {
                node: node.clone(),
                from: mid,
                to: *to,
            });
        }
    }
    releases.extend(grants);
    releases
}

/// One line for people: `storj: cpu_cores 4 → 2; golem: cpu_cores 2 → 4`.
pub fn describe(steps: &[Step]) -> String {
    let mut parts = Vec::new();
    for s in steps {
        let changes: Vec<String> = Resource::ALL
            .into_iter()
            .filter(|r| s.from.get(*r) != s.to.get(*r))
            .map(|r| {
                format!(
                    "{} {} → {}",
                    r.key(),
                    crate::actuators::show(r, s.from.get(r)),
                    crate::actuators::show(r, s.to.get(r))
                )
            })
            .collect();
        parts.push(format!("{}: {}", s.node, changes.join(", ")));
    }
    parts.join("; ")
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecReport {
    pub outcome: Outcome,
    pub reason: String,
    pub undo_errors: Vec<String>,
    /// Steps applied and verified (before any rollback).
    pub steps_done: usize,
}

/// Writes one record durably; an error stops the execution (it would no longer be recoverable).
pub type Journal<'a> = dyn Fn(Record) -> Result<(), HistoryError> + Send + Sync + 'a;

fn actuator<'a>(
    actuators: &'a BTreeMap<String, Arc<dyn Actuator>>,
    node: &str,
) -> Result<&'a Arc<dyn Actuator>, ActuatorError> {
    actuators.get(node).ok_or_else(|| {
        ActuatorError::failed(node, "apply", "no actuator is configured for this node")
    })
}

async fn apply_and_verify(a: &dyn Actuator, s: &Step) -> Result<(), ActuatorError> {
    a.apply(&s.node, &s.to).await?;
    a.verify(&s.node, &s.to).await
}

/// Undoes `steps[i]` for each `i` in `indices` (in the order given), each verified; returns
/// the failures.
async fn undo_steps(
    steps: &[Step],
    indices: impl Iterator<Item = usize>,
    actuators: &BTreeMap<String, Arc<dyn Actuator>>,
) -> Vec<String> {
    let mut errors = Vec::new();
    for i in indices {
        let s = &steps[i];
        let a = match actuator(actuators, &s.node) {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("step {}: {e}", i + 1));
                continue;
            }
        };
        let mut last = None;
        for _ in 0..UNDO_ATTEMPTS {
            let r = async {
                a.undo(&s.node, &s.from).await?;
                a.verify(&s.node, &s.from).await
            }
            .await;
            match r {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            errors.push(format!("step {} ({}): {e}", i + 1, s.node));
        }
    }
    errors
}

/// Applies `steps` in order; on the first failure undoes every started step (the failed one
/// too: it may have half-applied) in reverse order.
pub async fn execute(
    id: u64,
    steps: &[Step],
    actuators: &BTreeMap<String, Arc<dyn Actuator>>,
    journal: &Journal<'_>,
    clock: &dyn Clock,
) -> ExecReport {
    let mut failure = None;
    let mut started = 0;
    let mut done = 0;
    for (index, s) in steps.iter().enumerate() {
        if let Err(e) = journal(Record::StepStarted {
            id,
            index,
            t_ms: clock.now_ms(),
        }) {
            failure = Some(format!(
                "step {} ({}): cannot record it, so not starting it: {e}",
                index + 1,
                s.node
            ));
            break;
        }
        started = index + 1;
        let r = match actuator(actuators, &s.node) {
            Ok(a) => apply_and_verify(a.as_ref(), s).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            failure = Some(format!("step {} of {}: {e}", index + 1, steps.len()));
            break;
        }
        if let Err(e) = journal(Record::StepDone {
            id,
            index,
            t_ms: clock.now_ms(),
        }) {
            failure = Some(format!(
                "step {} ({}): applied but cannot record it: {e}",
                index + 1,
                s.node
            ));
            break;
        }
        done = index + 1;
    }
    let Some(reason) = failure else {
        return ExecReport {
            outcome: Outcome::Applied,
            reason: format!("{} step(s) applied and verified", steps.len()),
            undo_errors: Vec::new(),
            steps_done: done,
        };
    };
    let undo_errors = undo_steps(steps, (0..started).rev(), actuators).await;
    finish_rollback(reason, undo_errors, done, started)
}

fn finish_rollback(
    reason: String,
    undo_errors: Vec<String>,
    done: usize,
    undone: usize,
) -> ExecReport {
    if undo_errors.is_empty() {
        ExecReport {
            outcome: Outcome::RolledBack,
            reason: format!("{reason}; {undone} step(s) undone and verified"),
            undo_errors,
            steps_done: done,
        }
    } else {
        ExecReport {
            outcome: Outcome::RollbackFailed,
            reason: format!("{reason}; undoing failed too"),
            undo_errors,
            steps_done: done,
        }
    }
}

/// Resolves an intent that a crash left without an outcome: when every step was started and
/// every node now reports its final target, the reallocation is complete (`applied`);
/// otherwise each started step is undone in reverse order (`rolled_back`). Never leaves it
/// half done (short of an undo that fails: `rollback_failed`).
pub async fn recover(
    pending: &Pending,
    actuators: &BTreeMap<String, Arc<dyn Actuator>>,
) -> ExecReport {
    let n = pending.steps.len();
    let mut started: Vec<usize> = pending
        .started
        .iter()
        .chain(&pending.done)
        .copied()
        .filter(|&i| i < n)
        .collect();
    started.sort_unstable();
    started.dedup();
    if started.is_empty() {
        return ExecReport {
            outcome: Outcome::RolledBack,
            reason:
                "found unfinished after a restart; no step had started, so nothing needed undoing"
                    .to_string(),
            undo_errors: Vec::new(),
            steps_done: 0,
        };
    }
    if started.len() == n {
        // The last target of each node is what a complete reallocation left.
        let mut finals: BTreeMap<&str, &Allocation> = BTreeMap::new();
        for s in &pending.steps {
            finals.insert(&s.node, &s.to);
        }
        let mut all = true;
        for (node, to) in &finals {
            let ok = match actuators.get(*node) {
                Some(a) => a.verify(node, to).await.is_ok(),
                None => false,
            };
            if !ok {
                all = false;
                break;
            }
        }
        if all {
            return ExecReport {
                outcome: Outcome::Applied,
                reason: "found unfinished after a restart; every node reports its target, so it is complete".into(),
                undo_errors: Vec::new(),
                steps_done: n,
            };
        }
    }
    let undo_errors = undo_steps(&pending.steps, started.iter().rev().copied(), actuators).await;
    finish_rollback(
        format!(
            "found unfinished after a restart with {} of {n} step(s) started",
            started.len()
        ),
        undo_errors,
        pending.done.len(),
        started.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(cpu: f64, mem: f64) -> Allocation {
        Allocation {
            cpu_cores: cpu,
            memory_bytes: mem,
            ..Default::default()
        }
    }

    #[test]
    fn releases_come_before_grants() {
        let current = [
            ("a".into(), a(4.0, 8.0)),
            ("b".into(), a(2.0, 2.0)),
            ("c".into(), a(1.0, 1.0)),
        ]
        .into();
        // a gives 2 cores and gets 2 memory, b gets 2 cores and gives 2 memory, c stays.
        let target = [
            ("a".into(), a(2.0, 10.0)),
            ("b".into(), a(4.0, 0.0)),
            ("c".into(), a(1.0, 1.0)),
        ]
        .into();
        let s = steps_for(&current, &target);
        let shown: Vec<(String, Allocation, Allocation)> =
            s.iter().map(|s| (s.node.clone(), s.from, s.to)).collect();
        assert_eq!(
            shown,
            [
                ("a".into(), a(4.0, 8.0), a(2.0, 8.0)),
                ("b".into(), a(2.0, 2.0), a(2.0, 0.0)),
                ("a".into(), a(2.0, 8.0), a(2.0, 10.0)),
                ("b".into(), a(2.0, 0.0), a(4.0, 0.0)),
            ]
        );
        // At no point do the nodes hold more than at the start or the end.
        let mut now: BTreeMap<String, Allocation> = current.clone();
        for st in &s {
            now.insert(st.node.clone(), st.to);
            let cpu: f64 = now.values().map(|v| v.cpu_cores).sum();
            let mem: f64 = now.values().map(|v| v.memory_bytes).sum();
            assert!(cpu <= 7.0 && mem <= 11.0, "{cpu} {mem}");
        }
        assert_eq!(describe(&s[..1]), "a: cpu_cores 4 → 2");
    }
}

//! The controller's pure decisions: which nodes must keep their allocation and why
//! ([`Frozen`]), what the gates and pre-flight say about a plan and what follows from it
//! ([`Decision`], [`judge`]), and the plan for allocations an operator gave
//! ([`manual_plan`]). Nothing here reads a node, writes the history or applies anything; the
//! texts people read are made only when a decision is shown (`Display`, and the JSON of
//! `/api/v1/plan`, which carries the same text).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::super::execute::{describe, steps_for};
use super::super::gates::{self, GateReport, Mode, Verdict};
use super::super::history::{Outcome, Source, Step};
use super::super::preflight::{self, NodeFacts, Preflight};
use super::{ControlledNode, ControllerError};
use crate::coordinator::NodeHealth;
use crate::optimizer::{Gates, Move, Plan};
use crate::resources::{Allocation, Resource, Resources};

/// Why a node must keep its allocation this round.
#[derive(Clone, Debug, PartialEq)]
pub enum Frozen {
    /// No actuator: the node is observed, never changed.
    NoActuator,
    /// It changed at `changed_ms`, less than `min_hold` ago.
    Held { changed_ms: i64, min_hold: Duration },
    /// Its last poll failed.
    Down,
    /// No successful poll within `polls` poll intervals.
    Stale { polls: u32 },
    /// The coordinator does not poll it, so nothing is known about it.
    NotPolled,
}

impl fmt::Display for Frozen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frozen::NoActuator => write!(f, "no actuator is configured"),
            Frozen::Held {
                changed_ms,
                min_hold,
            } => write!(
                f,
                "held until {} (changed at {}, min_hold {})",
                gates::fmt_time(changed_ms + min_hold.as_millis() as i64),
                gates::fmt_time(*changed_ms),
                humantime::format_duration(*min_hold)
            ),
            Frozen::Down => write!(f, "the node is down"),
            Frozen::Stale { polls } => write!(
                f,
                "its data is stale (no successful poll within {polls} poll intervals)"
            ),
            Frozen::NotPolled => write!(f, "the coordinator does not poll it"),
        }
    }
}

impl Serialize for Frozen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the controller did, or would do, with one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The plan changes nothing.
    NothingToDo,
    /// These gates blocked it.
    RejectedByGates(Vec<Verdict>),
    /// Pre-flight found these problems.
    RejectedByPreflight(Vec<String>),
    /// `--controller.dry-run`: these steps would be applied.
    DryRun(Vec<Step>),
    /// These steps are to be applied.
    Apply(Vec<Step>),
    /// `depin-orcha plan`: these steps would be applied; the command never applies.
    WouldApply(Vec<Step>),
    /// A reallocation ran and ended so.
    Carried { outcome: Outcome, reason: String },
    /// Another reallocation was running.
    Busy,
    /// The controller is paused; this is what it would have decided.
    Paused(Box<Decision>),
}

impl Decision {
    /// The decision on a plan with `steps` after the gates and pre-flight.
    pub fn of(steps: &[Step], gates: &GateReport, preflight: &Preflight, dry_run: bool) -> Self {
        if steps.is_empty() {
            Decision::NothingToDo
        } else if !gates.pass {
            Decision::RejectedByGates(gates.verdicts.iter().filter(|v| !v.pass).cloned().collect())
        } else if !preflight.pass {
            Decision::RejectedByPreflight(preflight.problems.clone())
        } else if dry_run {
            Decision::DryRun(steps.to_vec())
        } else {
            Decision::Apply(steps.to_vec())
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::NothingToDo => write!(f, "nothing to do"),
            Decision::RejectedByGates(vs) => {
                let reasons: Vec<String> = vs
                    .iter()
                    .map(|v| format!("{}: {}", v.gate.as_str(), v.reason))
                    .collect();
                write!(f, "rejected by the gates: {}", reasons.join("; "))
            }
            Decision::RejectedByPreflight(p) => {
                write!(f, "rejected by pre-flight: {}", p.join("; "))
            }
            Decision::DryRun(steps) => write!(f, "dry run: would apply {}", describe(steps)),
            Decision::Apply(steps) => write!(f, "apply {}", describe(steps)),
            Decision::WouldApply(steps) => write!(
                f,
                "would apply {} (the plan command never applies)",
                describe(steps)
            ),
            Decision::Carried { outcome, reason } => write!(f, "{}: {reason}", outcome.as_str()),
            Decision::Busy => write!(f, "skipped: a reallocation is in progress"),
            Decision::Paused(d) => write!(f, "paused: {d}"),
        }
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One plan with everything decided about it: what `GET /api/v1/plan` and `depin-orcha plan`
/// show.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub ts_ms: i64,
    pub source: Source,
    pub mode: Mode,
    pub plan: Plan,
    /// Nodes kept out of the plan, with the reason (held, down, stale, no actuator).
    pub frozen: BTreeMap<String, Frozen>,
    pub gates: GateReport,
    /// The pure part of pre-flight (actuators are asked only before executing).
    pub preflight: Preflight,
    /// The steps it would take, in order.
    pub steps: Vec<Step>,
    /// What the controller did or would do.
    pub decision: Decision,
}

/// What `depin-orcha plan` prints: the evaluation, as text or JSON.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub evaluation: Evaluation,
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.evaluation;
        write!(f, "{}", e.plan)?;
        if !e.frozen.is_empty() {
            writeln!(f, "Kept out of the plan:")?;
            for (n, why) in &e.frozen {
                writeln!(f, "  - {n}: {why}")?;
            }
        }
        writeln!(f, "Gates:")?;
        for v in &e.gates.verdicts {
            writeln!(
                f,
                "  [{}] {}: {}",
                if v.pass { "pass" } else { "BLOCK" },
                v.gate.as_str(),
                v.reason
            )?;
        }
        if e.preflight.pass {
            writeln!(f, "Pre-flight: pass")?;
        } else {
            writeln!(f, "Pre-flight:")?;
            for p in &e.preflight.problems {
                writeln!(f, "  [BLOCK] {p}")?;
            }
        }
        if !e.steps.is_empty() {
            writeln!(f, "Steps:")?;
            for (i, s) in e.steps.iter().enumerate() {
                writeln!(f, "  {}. {}", i + 1, describe(std::slice::from_ref(s)))?;
            }
        }
        writeln!(f, "Decision: {}", e.decision)
    }
}

/// Nodes that must keep their allocation at `now_ms`, with the reason: no actuator, changed
/// within `gates.min_hold` (from `last_change`), down, stale, or not polled.
pub fn frozen_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a ControlledNode>,
    gates: &Gates,
    last_change: &BTreeMap<String, i64>,
    health: &[NodeHealth],
    now_ms: i64,
) -> BTreeMap<String, Frozen> {
    let mut out = BTreeMap::new();
    let hold_ms = gates.min_hold.as_millis() as i64;
    for n in nodes {
        let name = &n.name;
        if n.actuator.is_none() {
            out.insert(name.clone(), Frozen::NoActuator);
            continue;
        }
        if let Some(&t) = last_change.get(name) {
            if now_ms < t + hold_ms {
                out.insert(
                    name.clone(),
                    Frozen::Held {
                        changed_ms: t,
                        min_hold: gates.min_hold,
                    },
                );
                continue;
            }
        }
        match health.iter().find(|h| &h.name == name) {
            Some(h) if !h.up => {
                out.insert(name.clone(), Frozen::Down);
            }
            Some(h) => {
                let max_age = n.poll_interval.as_millis() as i64 * preflight::STALE_POLLS as i64;
                if h.last_success_ms.is_none_or(|t| now_ms - t > max_age) {
                    out.insert(
                        name.clone(),
                        Frozen::Stale {
                            polls: preflight::STALE_POLLS,
                        },
                    );
                }
            }
            None => {
                out.insert(name.clone(), Frozen::NotPolled);
            }
        }
    }
    out
}

/// What the judgement of a plan needs besides the plan.
pub struct Judging<'a> {
    pub now_ms: i64,
    pub source: Source,
    pub gates: gates::Context<'a>,
    pub available: &'a Allocation,
    pub facts: &'a BTreeMap<String, NodeFacts>,
    pub health: &'a [NodeHealth],
    pub dry_run: bool,
}

/// The gates and the pure part of pre-flight on `plan`, the steps it takes and the decision.
pub fn judge(plan: Plan, frozen: BTreeMap<String, Frozen>, j: &Judging<'_>) -> Evaluation {
    let gates = gates::evaluate(&plan, &j.gates);
    let preflight = preflight::check_plan(
        j.now_ms,
        &plan.current,
        &plan.target,
        j.available,
        j.facts,
        j.health,
    );
    let steps = steps_for(&plan.current, &plan.target);
    let decision = Decision::of(&steps, &gates, &preflight, j.dry_run);
    Evaluation {
        ts_ms: j.now_ms,
        source: j.source,
        mode: j.gates.mode,
        plan,
        frozen,
        gates,
        preflight,
        steps,
        decision,
    }
}

/// A plan for allocations an operator gave, from the allocations in force: moves from the
/// differences (releases first), no expected gain. Unknown nodes and amounts that are not
/// finite and 0 or more are refused with the key that names them.
pub fn manual_plan(
    now_ms: i64,
    current: BTreeMap<String, Allocation>,
    wanted: &BTreeMap<String, Resources<Option<f64>>>,
    hold: Duration,
) -> Result<Plan, ControllerError> {
    for n in wanted.keys() {
        if !current.contains_key(n) {
            return Err(ControllerError::BadRequest(format!(
                "allocations.{n}: no such node; known nodes: {}",
                current.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut target = current.clone();
    let mut moves = Vec::new();
    for (n, w) in wanted {
        let Some(t) = target.get_mut(n) else { continue };
        for r in Resource::ALL {
            if let Some(v) = w.get(r) {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(ControllerError::BadRequest(format!(
                        "allocations.{n}.{}: must be a finite number of 0 or more, got {v}",
                        r.key()
                    )));
                }
                let from = t.get(r);
                if from != v {
                    moves.push(Move {
                        node: n.clone(),
                        resource: r,
                        from,
                        to: v,
                        expected_gain_usd_per_hour: 0.0,
                        confidence: 1.0,
                    });
                }
                t.set(r, v);
            }
        }
    }
    moves.sort_by_key(|m| !m.is_release());
    Ok(Plan {
        ts_ms: now_ms,
        current,
        target,
        moves,
        current_usd_per_hour: 0.0,
        target_usd_per_hour: 0.0,
        expected_gain_usd_per_hour: 0.0,
        improvement: 0.0,
        confidence: 1.0,
        switching_cost_usd: 0.0,
        hold_hours: hold.as_secs_f64() / 3600.0,
        roi: None,
        left_out: Vec::new(),
        explanation: vec!["an allocation given through the control API".into()],
    })
}

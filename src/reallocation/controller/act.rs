//! Carrying decisions out: the intent written before anything is touched, the steps through
//! the actuators with verification and full rollback, the outcome; resolving a reallocation a
//! crash interrupted; measuring the realized gain after the hold and undoing a move that made
//! things worse; and recording rejections (the same one from the loop only counted).

use std::collections::BTreeMap;

use super::super::execute::{self, describe, steps_for, ExecReport};
use super::super::gates::{self, Gate, Mode};
use super::super::history::{Outcome, Record, Source, Step};
use super::super::preflight;
use super::super::realized;
use super::decide::{Decision, Evaluation};
use super::{lock, Controller, ControllerError, Model};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::resources::Allocation;

impl Controller {
    pub(super) fn count(&self, outcome: Outcome) {
        self.metrics
            .reallocations
            .with_label_values(&[outcome.as_str()])
            .inc();
        if outcome != Outcome::Rejected {
            self.metrics
                .last_timestamp
                .set(self.clock.now_ms() as f64 / 1000.0);
        }
    }

    /// Records a rejection (the same one as last time from the loop is only counted).
    pub(super) fn reject(&self, id: Option<u64>, e: &Evaluation) -> Result<(), ControllerError> {
        self.count(Outcome::Rejected);
        let blocking: Vec<Gate> = e
            .gates
            .verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| v.gate)
            .collect();
        if e.source == Source::Controller {
            let key = (e.steps.clone(), blocking.clone());
            let mut last = lock(&self.last_rejection);
            if last.as_ref() == Some(&key) {
                return Ok(());
            }
            *last = Some(key);
        }
        let mut reasons = e.gates.blocking();
        reasons.extend(e.preflight.problems.iter().cloned());
        let mut h = lock(&self.history);
        let id = id.unwrap_or_else(|| h.next_id());
        h.append(Record::Rejected {
            id,
            t_ms: self.clock.now_ms(),
            source: e.source,
            steps: e.steps.clone(),
            reasons,
            gates: blocking,
            preflight: !e.preflight.pass,
        })?;
        Ok(())
    }

    /// Intent, steps, outcome: the whole durable life of one reallocation.
    async fn carry_out(
        &self,
        m: &Model,
        id: u64,
        source: Source,
        steps: &[Step],
        expected: Option<f64>,
        current_rate: Option<f64>,
    ) -> Result<ExecReport, ControllerError> {
        let summary = describe(steps);
        lock(&self.history).append(Record::Intent {
            id,
            t_ms: self.clock.now_ms(),
            source,
            steps: steps.to_vec(),
            expected_gain_usd_per_hour: expected,
            current_usd_per_hour: current_rate,
            hold_ms: m.rules.gates.min_hold.as_millis() as i64,
            summary: summary.clone(),
        })?;
        let journal = |r: Record| lock(&self.history).append(r);
        let report = execute::execute(id, steps, &m.actuators, &journal, self.clock.as_ref()).await;
        self.finish(id, &report)?;
        // What the nodes hold now, verified, for `GET /api/v1/allocations` until the next read.
        let mut known = lock(&self.last_known);
        match report.outcome {
            Outcome::Applied => {
                for s in steps {
                    known.insert(s.node.clone(), s.to);
                }
            }
            Outcome::RolledBack => {
                for s in steps.iter().rev() {
                    known.insert(s.node.clone(), s.from);
                }
            }
            _ => {}
        }
        drop(known);
        match report.outcome {
            Outcome::Applied => tracing::info!(id, steps = %summary, "reallocation applied"),
            Outcome::RolledBack => {
                tracing::warn!(id, reason = %report.reason, "reallocation rolled back")
            }
            _ => {}
        }
        Ok(report)
    }

    fn finish(&self, id: u64, report: &ExecReport) -> Result<(), ControllerError> {
        lock(&self.history).append(Record::Outcome {
            id,
            t_ms: self.clock.now_ms(),
            outcome: report.outcome,
            reason: report.reason.clone(),
            undo_errors: report.undo_errors.clone(),
        })?;
        self.count(report.outcome);
        if report.outcome == Outcome::RollbackFailed {
            tracing::error!(id, reason = %report.reason, errors = ?report.undo_errors, "a reallocation could not be undone; pausing the controller");
            self.pause(&format!(
                "reallocation {id} could not be undone: {}",
                report.undo_errors.join("; ")
            ))?;
        }
        Ok(())
    }

    /// Pre-flight with the actuators, then execution; a rejection is recorded.
    pub(super) async fn run_evaluation(
        &self,
        m: &Model,
        id: u64,
        mut e: Evaluation,
    ) -> Result<Evaluation, ControllerError> {
        if e.steps.is_empty() {
            return Ok(e);
        }
        if e.gates.pass && e.preflight.pass {
            let changed = preflight::changed_nodes(&e.plan.current, &e.plan.target);
            e.preflight = e
                .preflight
                .clone()
                .merge(preflight::check_actuators(&changed, &m.facts).await);
            if !e.preflight.pass {
                e.decision = Decision::RejectedByPreflight(e.preflight.problems.clone());
            }
        }
        if !(e.gates.pass && e.preflight.pass) {
            self.reject(Some(id), &e)?;
            return Ok(e);
        }
        let expected = (e.mode == Mode::Plan).then_some(e.plan.expected_gain_usd_per_hour);
        let rate = (e.mode == Mode::Plan).then_some(e.plan.current_usd_per_hour);
        let r = self
            .carry_out(m, id, e.source, &e.steps, expected, rate)
            .await?;
        e.decision = Decision::Carried {
            outcome: r.outcome,
            reason: r.reason,
        };
        Ok(e)
    }

    /// Resolves an intent a crash left without outcome (call once at start, before the loop).
    pub async fn recover(&self) -> Result<Option<ExecReport>, ControllerError> {
        let pending = lock(&self.history).pending();
        let Some(p) = pending else { return Ok(None) };
        let _guard = self.exec_lock.lock().await;
        tracing::warn!(
            id = p.id,
            "a reallocation was interrupted (crash or kill); resolving it"
        );
        let report = execute::recover(&p, &self.model().actuators).await;
        self.finish(p.id, &report)?;
        tracing::info!(id = p.id, outcome = report.outcome.as_str(), reason = %report.reason, "interrupted reallocation resolved");
        Ok(Some(report))
    }

    /// Measures the reallocations whose hold has ended; undoes one that made things worse
    /// (not in dry run). Returns how many were measured.
    pub async fn measure_realized(&self) -> Result<usize, ControllerError> {
        let model = self.model();
        let now = self.clock.now_ms();
        let due: Vec<_> = lock(&self.history)
            .unmeasured()
            .into_iter()
            .filter(|u| now >= u.applied_ms + u.hold_ms)
            .collect();
        for u in &due {
            let (id, steps) = (&u.id, &u.steps);
            let m = realized::measure(
                &self.engine,
                self.db.as_ref(),
                u.applied_ms,
                u.hold_ms,
                u.expected_gain_usd_per_hour,
                self.opts.rollback_margin,
            );
            if let Some(g) = m.realized_gain_usd_per_hour {
                self.metrics.realized_gain.set(g);
            }
            let mut note = m.note.clone();
            let mut rollback_id = None;
            if m.worse {
                if self.opts.dry_run {
                    note.push_str(" (dry run: not rolled back)");
                } else {
                    match self.rollback_realized(&model, *id, steps).await {
                        Ok((rid, what)) => {
                            rollback_id = rid;
                            note.push_str(&format!(" ({what})"));
                        }
                        Err(e) => note.push_str(&format!(" (rollback not possible: {e})")),
                    }
                }
            }
            tracing::info!(id, note = %note, "realized gain measured");
            lock(&self.history).append(Record::Realized {
                id: *id,
                t_ms: now,
                before_usd_per_hour: m.before_usd_per_hour,
                after_usd_per_hour: m.after_usd_per_hour,
                realized_gain_usd_per_hour: m.realized_gain_usd_per_hour,
                expected_gain_usd_per_hour: m.expected_gain_usd_per_hour,
                rollback_id,
                note,
            })?;
        }
        Ok(due.len())
    }

    /// Puts back the allocations from before reallocation `of`, if the nodes still hold what
    /// it gave them. Bypasses the gates (it is the safety net) but not pre-flight.
    async fn rollback_realized(
        &self,
        m: &Model,
        of: u64,
        steps: &[Step],
    ) -> Result<(Option<u64>, String), ControllerError> {
        let _guard = self.exec_lock.lock().await;
        let mut before: BTreeMap<String, Allocation> = BTreeMap::new();
        let mut after: BTreeMap<String, Allocation> = BTreeMap::new();
        for s in steps {
            before.entry(s.node.clone()).or_insert(s.from);
            after.insert(s.node.clone(), s.to);
        }
        let current: BTreeMap<String, Allocation> = self
            .read_current_in(m)
            .await
            .into_iter()
            .map(|c| (c.node, c.allocation))
            .collect();
        for (n, a) in &after {
            if current.get(n) != Some(a) {
                return Ok((
                    None,
                    format!("not rolled back: {n} no longer holds what reallocation {of} gave it"),
                ));
            }
        }
        // The rate limits hold for the safety net too: a rollback is a reallocation.
        let now = self.clock.now_ms();
        let month = lock(&self.history).reallocation_times_since(now - gates::BUDGET_WINDOW_MS);
        let g = &m.rules.gates;
        let limits = [
            gates::max_reallocations_per_hour(
                gates::reallocations_within(&month, now, HOUR_MS),
                g,
                Mode::Plan,
            ),
            gates::max_reallocations_per_day(
                gates::reallocations_within(&month, now, DAY_MS),
                g,
                Mode::Plan,
            ),
            gates::max_reallocations_per_30_days(&month, now, g, Mode::Plan),
        ];
        if let Some(v) = limits.iter().find(|v| !v.pass) {
            return Ok((
                None,
                format!("not rolled back: {}: {}", v.gate.as_str(), v.reason),
            ));
        }
        let mut target = current.clone();
        target.extend(before);
        let health = self.health.snapshot();
        let available = m.rules.available(&self.opts.host_capacity);
        let changed = preflight::changed_nodes(&current, &target);
        let pf = preflight::check_plan(
            self.clock.now_ms(),
            &current,
            &target,
            &available,
            &m.facts,
            &health,
        )
        .merge(preflight::check_actuators(&changed, &m.facts).await);
        let steps = steps_for(&current, &target);
        let id = lock(&self.history).next_id();
        if !pf.pass {
            lock(&self.history).append(Record::Rejected {
                id,
                t_ms: self.clock.now_ms(),
                source: Source::RealizedRollback,
                steps,
                reasons: pf.problems.clone(),
                gates: Vec::new(),
                preflight: true,
            })?;
            self.count(Outcome::Rejected);
            return Ok((Some(id), format!("rollback {id} rejected by pre-flight")));
        }
        let r = self
            .carry_out(m, id, Source::RealizedRollback, &steps, None, None)
            .await?;
        Ok((Some(id), format!("rollback {id}: {}", r.outcome.as_str())))
    }
}

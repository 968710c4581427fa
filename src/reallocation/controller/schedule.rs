//! When the controller decides: the loop (one round every `interval` of the rules in force,
//! the timer restarted when a reload changes it), one round ([`Controller::tick`]: measure,
//! read, plan, judge, carry out), a request from the control API, and [`plan_once`] for
//! `depin-orcha plan`. Reading the nodes and planning ([`Controller::evaluate`]) is here too:
//! it is what every one of them starts with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::super::gates::{self, Mode};
use super::super::history::Source;
use super::super::preflight;
use super::decide::{self, Decision, Evaluation, Frozen, Judging, PlanReport};
use super::planner::PlanInput;
use super::{lock, ApplyRequest, Controller, ControllerError, Model};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::optimizer::Plan;

impl Controller {
    /// The gates, pre-flight and decision on `plan` now, with what the history says.
    fn judge(
        &self,
        m: &Model,
        plan: Plan,
        source: Source,
        mode: Mode,
        frozen: BTreeMap<String, Frozen>,
    ) -> Evaluation {
        let now = self.clock.now_ms();
        let (last_change, month) = {
            let h = lock(&self.history);
            (
                h.last_change(),
                h.reallocation_times_since(now - gates::BUDGET_WINDOW_MS),
            )
        };
        let health = self.health.snapshot();
        let available = m.rules.available(&self.opts.host_capacity);
        decide::judge(
            plan,
            frozen,
            &Judging {
                now_ms: now,
                source,
                gates: gates::Context {
                    now_ms: now,
                    gates: &m.rules.gates,
                    capacity: &self.opts.host_capacity,
                    reallocations_last_hour: gates::reallocations_within(&month, now, HOUR_MS),
                    reallocations_last_day: gates::reallocations_within(&month, now, DAY_MS),
                    reallocation_times_last_30_days: &month,
                    last_change: &last_change,
                    mode,
                },
                available: &available,
                facts: &m.facts,
                health: &health,
                dry_run: self.opts.dry_run,
            },
        )
    }

    /// Reads the nodes, plans with the frozen nodes kept out, gates and pre-flights (the pure
    /// part). Changes nothing.
    pub async fn evaluate(&self, source: Source) -> Result<Evaluation, ControllerError> {
        self.evaluate_in(&self.model(), source).await
    }

    async fn evaluate_in(&self, m: &Model, source: Source) -> Result<Evaluation, ControllerError> {
        let current = self.read_current_in(m).await;
        let now = self.clock.now_ms();
        let health = self.health.snapshot();
        let last_change = lock(&self.history).last_change();
        let frozen = decide::frozen_nodes(m.nodes(), &m.rules.gates, &last_change, &health, now);
        let plan = self
            .planner
            .plan(&PlanInput {
                rules: &m.rules,
                db: &self.db,
                engine: &self.engine,
                now_ms: now,
                current: &current,
                host_capacity: &self.opts.host_capacity,
                frozen: &frozen,
            })
            .map_err(ControllerError::Plan)?;
        for (node, target) in &plan.target {
            let protocol = m.nodes.get(node).map(|n| n.protocol.as_str()).unwrap_or("");
            for (r, g) in &self.metrics.planned {
                g.with_label_values(&[node.as_str(), protocol])
                    .set(target.get(*r));
            }
        }
        let e = self.judge(m, plan, source, Mode::Plan, frozen);
        for v in &e.gates.verdicts {
            self.metrics
                .gate_verdict
                .with_label_values(&[v.gate.as_str()])
                .set(if v.pass { 1.0 } else { 0.0 });
        }
        Ok(e)
    }

    /// One round of the loop.
    pub async fn tick(&self) -> Result<Evaluation, ControllerError> {
        // Paused means no automatic change at all, rollbacks of worse moves included: their
        // measurement waits for the resume (it reads the windows around the change, so it
        // loses nothing by waiting).
        if !self.is_paused() {
            self.measure_realized().await?;
        }
        let m = self.model();
        let mut e = self.evaluate_in(&m, Source::Controller).await?;
        if self.is_paused() {
            e.decision = Decision::Paused(Box::new(e.decision));
        } else if e.steps.is_empty() || self.opts.dry_run {
            // Nothing to do, or the decision already says what a dry run would do.
        } else if !(e.gates.pass && e.preflight.pass) {
            self.reject(None, &e)?;
        } else {
            match self.exec_lock.clone().try_lock_owned() {
                Err(_) => e.decision = Decision::Busy,
                Ok(_guard) => {
                    let id = lock(&self.history).next_id();
                    e = self.run_evaluation(&m, id, e).await?;
                }
            }
        }
        tracing::info!(decision = %e.decision, "reallocation controller");
        *lock(&self.last) = Some(e.clone());
        Ok(e)
    }

    /// Starts a reallocation for an API request; returns its id at once (the work runs in a
    /// task; its outcome appears in the history under that id).
    pub fn request(self: &Arc<Self>, req: ApplyRequest) -> Result<u64, ControllerError> {
        if self.opts.dry_run {
            return Err(ControllerError::DryRun);
        }
        let guard = self
            .exec_lock
            .clone()
            .try_lock_owned()
            .map_err(|_| ControllerError::Busy)?;
        let id = lock(&self.history).next_id();
        let me = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = me.handle_request(id, req).await {
                tracing::error!(id, error = %e, "reallocation request failed");
            }
        });
        Ok(id)
    }

    /// The work of [`Controller::request`], awaited (tests and callers that want the result).
    pub async fn handle_request(
        &self,
        id: u64,
        req: ApplyRequest,
    ) -> Result<Evaluation, ControllerError> {
        let m = self.model();
        let e = match &req.allocations {
            None => {
                let mut e = self.evaluate_in(&m, Source::ApiPlan).await?;
                if req.force {
                    let last_change = lock(&self.history).last_change();
                    let ctx = gates::Context {
                        now_ms: e.ts_ms,
                        gates: &m.rules.gates,
                        capacity: &self.opts.host_capacity,
                        reallocations_last_hour: 0,
                        reallocations_last_day: 0,
                        reallocation_times_last_30_days: &[],
                        last_change: &last_change,
                        mode: Mode::Forced,
                    };
                    e.gates = gates::evaluate(&e.plan, &ctx);
                    e.mode = Mode::Forced;
                }
                e
            }
            Some(a) => {
                let current = self
                    .read_current_in(&m)
                    .await
                    .into_iter()
                    .map(|c| (c.node, c.allocation))
                    .collect();
                let plan =
                    decide::manual_plan(self.clock.now_ms(), current, a, m.rules.gates.min_hold)?;
                let mode = if req.force {
                    Mode::Forced
                } else {
                    Mode::Manual
                };
                self.judge(&m, plan, Source::ApiManual, mode, BTreeMap::new())
            }
        };
        let e = self.run_evaluation(&m, id, e).await?;
        *lock(&self.last) = Some(e.clone());
        Ok(e)
    }

    /// Resolves an interrupted reallocation, then runs [`Controller::tick`] every `interval`
    /// until `shutdown` turns true. The first round comes one interval in, when the tsdb has
    /// data for the estimators.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "resolving an interrupted reallocation failed");
        }
        let interval = |c: &Controller| c.model().rules.interval.max(Duration::from_millis(10));
        let timer = |every: Duration| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut every = interval(&self);
        let mut tick = timer(every);
        let mut reloaded = self.generation.subscribe();
        loop {
            let round = tokio::select! {
                _ = tick.tick() => true,
                // A reload: the round after it waits for the new interval.
                Ok(()) = reloaded.changed() => false,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if round {
                if let Err(e) = self.tick().await {
                    tracing::error!(error = %e, "reallocation controller round failed");
                }
            } else {
                // Another interval: the next round comes one new interval on (not at the end
                // of an old interval of, say, an hour).
                let now_every = interval(&self);
                if now_every != every {
                    every = now_every;
                    tick = timer(every);
                }
            }
        }
    }
}

/// `depin-orcha plan`: one evaluation with everything the controller would decide, never
/// applied. The caller polls the nodes once and writes the scrape into the tsdb first, so the
/// estimators have data.
pub async fn plan_once(controller: &Controller) -> Result<PlanReport, ControllerError> {
    let mut e = controller.evaluate(Source::Controller).await?;
    if !e.steps.is_empty() && e.gates.pass && e.preflight.pass {
        let changed = preflight::changed_nodes(&e.plan.current, &e.plan.target);
        e.preflight = e
            .preflight
            .clone()
            .merge(preflight::check_actuators(&changed, &controller.model().facts).await);
        e.decision = if e.preflight.pass {
            Decision::WouldApply(e.steps.clone())
        } else {
            Decision::RejectedByPreflight(e.preflight.problems.clone())
        };
    }
    Ok(PlanReport { evaluation: e })
}

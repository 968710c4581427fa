//! An alerting rule and its alerts (Prometheus' `rules/alerting.go`): the state machine
//! inactive → pending → firing (after `for`), `keep_firing_for`, resolved alerts kept for
//! 15 minutes, label and annotation templates, the `ALERTS` / `ALERTS_FOR_STATE` samples, the
//! resend logic of `sendAlerts` and the `for` state restore after a restart.
//!
//! Times are milliseconds since the epoch; `None` stands for Go's zero `time.Time`.

use std::collections::{BTreeMap, HashMap};

use super::group::{query_vector, EvalContext, RuleStatus};
use super::template::{AlertData, AlertTemplate, QueryFn, QuerySample};
use super::Alert;
use crate::labels::{Labels, Matcher, METRIC_NAME};
use crate::promql::{Engine, Expr, InstantSample, Value};
use crate::tsdb::{is_stale_nan, Queryable};

/// How long a resolved alert is kept (and re-sent to Alertmanager): Prometheus'
/// `resolvedRetention`.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

pub const ALERT_METRIC_NAME: &str = "ALERTS";
pub const ALERT_FOR_STATE_METRIC_NAME: &str = "ALERTS_FOR_STATE";
pub const ALERT_NAME_LABEL: &str = "alertname";
pub const ALERT_STATE_LABEL: &str = "alertstate";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One instance of an alerting rule (Prometheus' `rules.Alert`).
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveAlert {
    pub state: AlertState,
    pub labels: Labels,
    pub annotations: Labels,
    /// The value at the last evaluation of the expression.
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub keep_firing_since: Option<i64>,
}

impl ActiveAlert {
    /// Prometheus' `needsSending`.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        // Resolved since the last send: send again.
        if let Some(r) = self.resolved_at {
            if self.last_sent_at.is_none_or(|s| r > s) {
                return true;
            }
        }
        match self.last_sent_at {
            None => true,
            Some(s) => s + resend_delay_ms < ts,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AlertingRule {
    name: String,
    expr: Expr,
    expr_text: String,
    hold_ms: i64,
    keep_firing_for_ms: i64,
    /// Group and rule labels, unexpanded.
    labels: Labels,
    annotations: Labels,
    label_templates: Vec<(String, AlertTemplate)>,
    annotation_templates: Vec<(String, AlertTemplate)>,
    /// Alerts by their label set (sorted, so every iteration is deterministic).
    active: BTreeMap<Labels, ActiveAlert>,
    /// Whether the `for` state has been restored (or needs no restoring): until then no
    /// `ALERTS`/`ALERTS_FOR_STATE` samples are written, as in Prometheus.
    restored: bool,
    pub(crate) status: RuleStatus,
}

impl AlertingRule {
    pub fn new(
        name: String,
        expr: Expr,
        expr_text: String,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Self {
        let label_templates = labels
            .iter()
            .map(|(k, v)| (k.clone(), AlertTemplate::parse(&name, v)))
            .collect();
        let annotation_templates = annotations
            .iter()
            .map(|(k, v)| (k.clone(), AlertTemplate::parse(&name, v)))
            .collect();
        AlertingRule {
            expr,
            expr_text,
            hold_ms,
            keep_firing_for_ms,
            labels: Labels::from_pairs(labels),
            annotations: Labels::from_pairs(annotations),
            label_templates,
            annotation_templates,
            active: BTreeMap::new(),
            restored: true,
            status: RuleStatus::default(),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
    pub fn expr_text(&self) -> &str {
        &self.expr_text
    }
    /// `for`, in milliseconds.
    pub fn hold_ms(&self) -> i64 {
        self.hold_ms
    }
    pub fn keep_firing_for_ms(&self) -> i64 {
        self.keep_firing_for_ms
    }
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
    pub fn annotations(&self) -> &Labels {
        &self.annotations
    }
    pub fn status(&self) -> &RuleStatus {
        &self.status
    }
    pub fn restored(&self) -> bool {
        self.restored
    }
    pub fn set_restored(&mut self, restored: bool) {
        self.restored = restored;
    }

    /// Every alert instance, resolved ones included, sorted by labels.
    pub fn alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active.values()
    }

    /// Prometheus' `ActiveAlerts`: the alerts not resolved, sorted by labels.
    pub fn active_alerts(&self) -> Vec<&ActiveAlert> {
        self.active
            .values()
            .filter(|a| a.resolved_at.is_none())
            .collect()
    }

    /// The highest state of the rule's alerts; `None` before the first evaluation
    /// (Prometheus' `StateUnknown`).
    pub fn state(&self) -> Option<AlertState> {
        self.status.last_evaluation?;
        Some(
            self.active
                .values()
                .map(|a| a.state)
                .max()
                .unwrap_or(AlertState::Inactive),
        )
    }

    /// Evaluates at `ts` (the query runs at `ts - query_offset_ms`) and advances every alert's
    /// state; returns the `ALERTS` and `ALERTS_FOR_STATE` samples to write.
    pub fn eval(
        &mut self,
        ts: i64,
        query_offset_ms: i64,
        q: &dyn Queryable,
        engine: &Engine,
        ctx: &EvalContext,
        limit: usize,
    ) -> Result<Vec<InstantSample>, String> {
        let query_ts = ts - query_offset_ms;
        let res = query_vector(engine, q, &self.expr, query_ts)?;
        let fresh = self.fresh_alerts(res, ts, engine, q, ctx)?;
        let in_result: Vec<Labels> = fresh.keys().cloned().collect();
        for (h, a) in fresh {
            match self.active.get_mut(&h) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(h, a);
                }
            }
        }
        let (num_active_pending, vec) = self.advance(&in_result, ts, query_ts);
        if limit > 0 && num_active_pending > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {num_active_pending} alerts"
            ));
        }
        Ok(vec)
    }

    /// One pending alert per sample of the query result, with its labels and annotations
    /// expanded; two samples that give the same labels are an error.
    fn fresh_alerts(
        &self,
        res: Vec<InstantSample>,
        ts: i64,
        engine: &Engine,
        q: &dyn Queryable,
        ctx: &EvalContext,
    ) -> Result<BTreeMap<Labels, ActiveAlert>, String> {
        let qf = EngineQuery { engine, q, ts };
        let external_labels: BTreeMap<String, String> = ctx
            .external_labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();

        let mut fresh: BTreeMap<Labels, ActiveAlert> = BTreeMap::new();
        for smpl in res {
            let data = AlertData {
                labels: smpl
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                external_labels: external_labels.clone(),
                external_url: ctx.external_url.clone(),
                value: smpl.v,
            };
            let expand = |t: &AlertTemplate| {
                let e = t.expand(&data, ts, &qf);
                if let Some(err) = &e.error {
                    tracing::warn!(alert = %self.name, err = %err, "expanding alert template failed");
                }
                e.text
            };
            let mut b = smpl.labels.builder();
            b.del(METRIC_NAME);
            for (name, t) in &self.label_templates {
                b.set(name.clone(), expand(t));
            }
            b.set(ALERT_NAME_LABEL, self.name.clone());
            let lbs = b.build();
            let annotations = Labels::from_pairs(
                self.annotation_templates
                    .iter()
                    .map(|(name, t)| (name.clone(), expand(t))),
            );
            if fresh.contains_key(&lbs) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                lbs.clone(),
                ActiveAlert {
                    state: AlertState::Pending,
                    labels: lbs,
                    annotations,
                    value: smpl.v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: None,
                    keep_firing_since: None,
                },
            );
        }
        Ok(fresh)
    }

    /// Moves every active alert on at `ts`: those not `in_result` (sorted) resolve unless
    /// `keep_firing_for` holds them, pending ones fire after `for`. Returns how many are active
    /// or pending, and their `ALERTS`/`ALERTS_FOR_STATE` samples once restored.
    fn advance(
        &mut self,
        in_result: &[Labels],
        ts: i64,
        query_ts: i64,
    ) -> (usize, Vec<InstantSample>) {
        let mut num_active_pending = 0usize;
        let mut vec = Vec::new();
        let keys: Vec<Labels> = self.active.keys().cloned().collect();
        for fp in keys {
            let Some(a) = self.active.get_mut(&fp) else {
                continue;
            };
            if in_result.binary_search(&fp).is_err() {
                // No longer in the result: resolve, unless keep_firing_for holds it.
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    if ts - since < self.keep_firing_for_ms {
                        keep_firing = true;
                    }
                }
                // Pending alerts go at once; resolved ones stay for the retention period so
                // that their resolution keeps being sent.
                let remove = a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS);
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if remove {
                    self.active.remove(&fp);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            let Some(a) = self.active.get_mut(&fp) else {
                continue;
            };
            num_active_pending += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= self.hold_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            // A longer `for` after a reload sends a firing alert back to pending.
            if a.state == AlertState::Firing && ts - a.active_at < self.hold_ms {
                a.state = AlertState::Pending;
                a.fired_at = None;
                a.last_sent_at = None;
                a.keep_firing_since = None;
            }
            if self.restored {
                let a = a.clone();
                vec.push(self.sample(&a, query_ts));
                vec.push(self.for_state_sample(
                    Some(&a),
                    query_ts,
                    a.active_at.div_euclid(1000) as f64,
                ));
            }
        }
        (num_active_pending, vec)
    }

    /// The `ALERTS` sample of an alert.
    fn sample(&self, a: &ActiveAlert, t: i64) -> InstantSample {
        let mut b = self.labels.builder();
        for l in a.labels.iter() {
            b.set(l.name.clone(), l.value.clone());
        }
        b.set(METRIC_NAME, ALERT_METRIC_NAME);
        b.set(ALERT_NAME_LABEL, self.name.clone());
        b.set(ALERT_STATE_LABEL, a.state.as_str());
        InstantSample {
            labels: b.build(),
            t,
            v: 1.0,
        }
    }

    /// The `ALERTS_FOR_STATE` sample (value: `ActiveAt` in seconds).
    fn for_state_sample(&self, a: Option<&ActiveAlert>, t: i64, v: f64) -> InstantSample {
        let mut b = self.labels.builder();
        if let Some(a) = a {
            for l in a.labels.iter() {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        b.set(METRIC_NAME, ALERT_FOR_STATE_METRIC_NAME);
        b.set(ALERT_NAME_LABEL, self.name.clone());
        InstantSample {
            labels: b.build(),
            t,
            v,
        }
    }

    /// Prometheus' `sendAlerts`: the alerts due to be sent at `ts` (firing ones every
    /// `resend_delay`, resolved ones once more after resolving and then with the resend
    /// delay until they are dropped), stamping `LastSentAt` and `ValidUntil`.
    pub fn send_alerts(
        &mut self,
        ts: i64,
        resend_delay_ms: i64,
        interval_ms: i64,
        external_url: &str,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let generator_url = format!(
            "{external_url}{}",
            super::table_link_for_expression(&self.expr.to_string())
        );
        for a in self.active.values_mut() {
            if !a.needs_sending(ts, resend_delay_ms) {
                continue;
            }
            a.last_sent_at = Some(ts);
            // Allow for two evaluation or Alertmanager send failures.
            let delta = interval_ms.max(resend_delay_ms);
            a.valid_until = Some(ts + 4 * delta);
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: a.resolved_at.or(a.valid_until).unwrap_or(ts),
                generator_url: generator_url.clone(),
            });
        }
        out
    }

    /// Prometheus' `RestoreForState` for this rule: reads the last `ALERTS_FOR_STATE` sample
    /// of each current alert in `[ts - outage_tolerance, ts]` and moves `ActiveAt` back to it,
    /// pushed forward by the downtime and at least `grace_period` before firing.
    pub fn restore_for_state(
        &mut self,
        ts: i64,
        q: &dyn Queryable,
        outage_tolerance_ms: i64,
        grace_period_ms: i64,
    ) {
        let hold = self.hold_ms;
        if hold < grace_period_ms {
            // It would wait the grace period anyway: no restoring, it waits its `for`.
            self.restored = true;
            return;
        }
        let probe = self.for_state_sample(None, ts, 0.0);
        // Labels with templates are expanded per alert and would not match the stored series.
        let matchers: Vec<Matcher> = probe
            .labels
            .iter()
            .filter(|l| !l.value.contains("{{"))
            .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
            .collect();
        let series = q.select(&matchers, ts - outage_tolerance_ms, ts);
        let by_labels: HashMap<Labels, (i64, f64)> = series
            .into_iter()
            .filter_map(|s| {
                let last = s.samples.last()?;
                Some((s.labels.without_metric_name(), (last.t, last.v)))
            })
            .collect();
        if by_labels.is_empty() {
            self.restored = true;
            return;
        }
        for a in self.active.values_mut() {
            let Some(&(t, v)) = by_labels.get(&a.labels) else {
                continue;
            };
            if is_stale_nan(v) {
                // The alert was not active.
                continue;
            }
            // Prometheus works in whole seconds here.
            let down_at = t.div_euclid(1000) * 1000;
            let mut restored_active_at = (v as i64) * 1000;
            let time_spent_pending = down_at - restored_active_at;
            let remaining = hold - time_spent_pending;
            if remaining <= 0 {
                // It was firing when we went down; the next evaluation fires it again.
            } else if remaining < grace_period_ms {
                restored_active_at = ts + grace_period_ms - hold;
            } else {
                restored_active_at += ts - down_at;
            }
            a.active_at = restored_active_at;
            tracing::debug!(alert = %self.name, labels = %a.labels, active_at_ms = a.active_at, "'for' state restored");
        }
        self.restored = true;
    }

    /// Takes over the alerts of the same rule from before a reload (Prometheus' `CopyState`).
    pub(crate) fn copy_state_from(&mut self, old: &AlertingRule) {
        for (k, v) in &old.active {
            self.active.insert(k.clone(), v.clone());
        }
    }

    pub(crate) fn identity(&self) -> String {
        format!("{}{}", self.name, self.labels)
    }

    pub(crate) fn definition(&self) -> String {
        format!(
            "alert:{}\nexpr:{}\nfor:{}\nkeep_firing_for:{}\nlabels:{}\nannotations:{}",
            self.name,
            self.expr,
            self.hold_ms,
            self.keep_firing_for_ms,
            self.labels,
            self.annotations
        )
    }
}

/// The templates' `query` function: an instant query at the evaluation time.
pub struct EngineQuery<'a> {
    pub engine: &'a Engine,
    pub q: &'a dyn Queryable,
    pub ts: i64,
}

impl QueryFn for EngineQuery<'_> {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        let e = crate::promql::parse(expr).map_err(|e| e.to_string())?;
        let r = self
            .engine
            .instant_query(self.q, &e, self.ts)
            .map_err(|e| e.to_string())?;
        let to_map = |l: &Labels| {
            l.iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        match r.value {
            Value::Vector(v) => Ok(v
                .iter()
                .map(|s| QuerySample {
                    labels: to_map(&s.labels),
                    value: s.v,
                    timestamp_ms: s.t,
                })
                .collect()),
            Value::Scalar { t, v } => Ok(vec![QuerySample {
                labels: BTreeMap::new(),
                value: v,
                timestamp_ms: t,
            }]),
            _ => Err("rule result is not a vector or scalar".into()),
        }
    }
}

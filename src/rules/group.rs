//! A rule group and one evaluation of it (Prometheus' `rules/group.go`): rules run in order at
//! one timestamp, so a later rule sees what an earlier recording rule just wrote; outputs go
//! into the Db with staleness markers for series a rule produced last time but not now; the
//! alerts due are returned for the notifier. No clock, no scheduling: the manager decides
//! when, tests pass explicit timestamps.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::alerting::AlertingRule;
use super::recording::RecordingRule;
use super::Alert;
use crate::labels::Labels;
use crate::promql::{Engine, Expr, InstantSample, Value};
use crate::tsdb::{stale_nan, Db, Queryable};

/// What a group evaluation needs from outside the group.
#[derive(Clone, Debug)]
pub struct EvalContext {
    /// `global.external_labels`, for `$externalLabels` in templates.
    pub external_labels: Labels,
    /// `--web.external-url`, for `$externalURL` and generator URLs.
    pub external_url: String,
    /// `--rules.alert.resend-delay` (Prometheus' default 1m).
    pub resend_delay_ms: i64,
    /// The interval of groups without their own (`global.evaluation_interval`).
    pub default_interval_ms: i64,
    /// The query offset of groups without their own (Prometheus'
    /// `rule_query_offset`, default 0).
    pub default_query_offset_ms: i64,
}

impl Default for EvalContext {
    fn default() -> Self {
        EvalContext {
            external_labels: Labels::empty(),
            external_url: String::new(),
            resend_delay_ms: 60_000,
            default_interval_ms: 15_000,
            default_query_offset_ms: 0,
        }
    }
}

/// A rule's health after its last evaluation, as `/api/v1/rules` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleHealth {
    #[default]
    Unknown,
    Good,
    Bad,
}

impl RuleHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Good => "ok",
            RuleHealth::Bad => "err",
        }
    }
}

/// What the last evaluation of a rule left.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleStatus {
    pub health: RuleHealth,
    pub last_error: Option<String>,
    /// The evaluation timestamp (ms) of the last evaluation.
    pub last_evaluation: Option<i64>,
    /// Wall time the last evaluation took.
    pub evaluation_duration: Duration,
}

#[derive(Clone, Debug)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => r.name(),
            Rule::Alerting(r) => r.name(),
        }
    }
    pub fn labels(&self) -> &Labels {
        match self {
            Rule::Recording(r) => r.labels(),
            Rule::Alerting(r) => r.labels(),
        }
    }
    pub fn expr(&self) -> &Expr {
        match self {
            Rule::Recording(r) => r.expr(),
            Rule::Alerting(r) => r.expr(),
        }
    }
    pub fn status(&self) -> &RuleStatus {
        match self {
            Rule::Recording(r) => &r.status,
            Rule::Alerting(r) => &r.status,
        }
    }
    fn status_mut(&mut self) -> &mut RuleStatus {
        match self {
            Rule::Recording(r) => &mut r.status,
            Rule::Alerting(r) => &mut r.status,
        }
    }
    fn identity(&self) -> String {
        match self {
            Rule::Recording(r) => r.identity(),
            Rule::Alerting(r) => r.identity(),
        }
    }
    fn definition(&self) -> String {
        match self {
            Rule::Recording(r) => r.definition(),
            Rule::Alerting(r) => r.definition(),
        }
    }
}

/// A rule that failed in one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFailure {
    pub rule: String,
    pub error: String,
}

/// What one group evaluation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupEvalResult {
    /// Alerts to hand to the notifier now.
    pub alerts: Vec<Alert>,
    /// Samples the rules produced (Prometheus' `rule_group_last_evaluation_samples`).
    pub samples: usize,
    /// Rules evaluated.
    pub rules_evaluated: usize,
    pub failures: Vec<RuleFailure>,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
pub struct Group {
    name: String,
    file: String,
    interval_ms: Option<i64>,
    query_offset_ms: Option<i64>,
    limit: usize,
    labels: BTreeMap<String, String>,
    rules: Vec<Rule>,
    /// Per rule, the series it wrote in its last successful evaluation.
    series_in_previous_eval: Vec<HashSet<Labels>>,
    /// Series of rules gone in a reload, marked stale at the next evaluation.
    stale_series: Vec<Labels>,
    last_evaluation: Option<i64>,
    evaluation_time: Duration,
    /// Whether the manager still has to restore the `for` state (first load after start).
    pub(crate) should_restore: bool,
}

impl Group {
    pub fn new(
        name: String,
        file: String,
        interval_ms: Option<i64>,
        query_offset_ms: Option<i64>,
        limit: usize,
        labels: BTreeMap<String, String>,
        rules: Vec<Rule>,
    ) -> Group {
        let n = rules.len();
        Group {
            name,
            file,
            interval_ms,
            query_offset_ms,
            limit,
            labels,
            rules,
            series_in_previous_eval: vec![HashSet::new(); n],
            stale_series: Vec::new(),
            last_evaluation: None,
            evaluation_time: Duration::ZERO,
            should_restore: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The group's own `interval`, if it has one.
    pub fn interval_ms(&self) -> Option<i64> {
        self.interval_ms
    }
    /// The interval the group runs at under `ctx`.
    pub fn effective_interval_ms(&self, ctx: &EvalContext) -> i64 {
        self.interval_ms.unwrap_or(ctx.default_interval_ms)
    }
    pub fn query_offset_ms(&self) -> Option<i64> {
        self.query_offset_ms
    }
    pub fn limit(&self) -> usize {
        self.limit
    }
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    pub fn alerting_rules(&self) -> impl Iterator<Item = &AlertingRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }
    pub fn alerting_rules_mut(&mut self) -> impl Iterator<Item = &mut AlertingRule> {
        self.rules.iter_mut().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }
    /// Timestamp (ms) of the last evaluation.
    pub fn last_evaluation(&self) -> Option<i64> {
        self.last_evaluation
    }
    /// Wall time the last evaluation took.
    pub fn evaluation_time(&self) -> Duration {
        self.evaluation_time
    }
    /// `file;name`, Prometheus' `GroupKey` (the `rule_group` label of the metrics).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// Marks the alerting rules as waiting for [`Group::restore_for_state`]: they write no
    /// `ALERTS` samples until then (a group loaded at start, as Prometheus does).
    pub fn set_should_restore(&mut self) {
        self.should_restore = true;
        for a in self.alerting_rules_mut() {
            a.set_restored(false);
        }
    }

    /// Evaluates every rule at `ts_ms` in order. Recording outputs, `ALERTS` and
    /// `ALERTS_FOR_STATE` are appended to `db` at `ts_ms - query_offset`; a failing rule keeps
    /// its previous series (no staleness markers) and is reported in the result.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        db: &Db,
        engine: &Engine,
        ctx: &EvalContext,
    ) -> GroupEvalResult {
        let started = Instant::now();
        let offset = self.query_offset_ms.unwrap_or(ctx.default_query_offset_ms);
        let interval = self.effective_interval_ms(ctx);
        let mut out = GroupEvalResult::default();
        for i in 0..self.rules.len() {
            let rule_started = Instant::now();
            out.rules_evaluated += 1;
            let limit = self.limit;
            let result = match &mut self.rules[i] {
                Rule::Recording(r) => r.eval(ts_ms - offset, db, engine, limit),
                Rule::Alerting(a) => a.eval(ts_ms, offset, db, engine, ctx, limit),
            };
            let rule = &mut self.rules[i];
            let vector = match result {
                Ok(v) => {
                    let st = rule.status_mut();
                    st.health = super::RuleHealth::Good;
                    st.last_error = None;
                    v
                }
                Err(e) => {
                    tracing::warn!(group = %self.name, file = %self.file, rule = %rule.name(), err = %e, "evaluating rule failed");
                    let st = rule.status_mut();
                    st.health = super::RuleHealth::Bad;
                    st.last_error = Some(e.clone());
                    st.last_evaluation = Some(ts_ms);
                    st.evaluation_duration = rule_started.elapsed();
                    out.failures.push(RuleFailure {
                        rule: rule.name().to_string(),
                        error: e,
                    });
                    continue;
                }
            };
            out.samples += vector.len();
            if let Rule::Alerting(a) = rule {
                out.alerts.extend(a.send_alerts(
                    ts_ms,
                    ctx.resend_delay_ms,
                    interval,
                    &ctx.external_url,
                ));
            }
            let returned = append_vector(db, &vector, rule);
            // Series written last time and not now end here.
            let stale: Vec<(Labels, i64, f64)> = self.series_in_previous_eval[i]
                .iter()
                .filter(|l| !returned.contains(*l))
                .map(|l| (l.clone(), ts_ms - offset, stale_nan()))
                .collect();
            if !stale.is_empty() {
                // Out-of-order or duplicate markers are expected when another rule now writes
                // the series; other failures are logged.
                if let Err(e) = db.append_batch(&stale) {
                    tracing::warn!(group = %self.name, err = %e, "adding stale samples failed");
                }
            }
            self.series_in_previous_eval[i] = returned;
            let st = rule.status_mut();
            st.last_evaluation = Some(ts_ms);
            st.evaluation_duration = rule_started.elapsed();
        }
        self.cleanup_stale_series(ts_ms - offset, db);
        self.last_evaluation = Some(ts_ms);
        self.evaluation_time = started.elapsed();
        out.duration = self.evaluation_time;
        out
    }

    fn cleanup_stale_series(&mut self, t: i64, db: &Db) {
        if self.stale_series.is_empty() {
            return;
        }
        let batch: Vec<(Labels, i64, f64)> = self
            .stale_series
            .drain(..)
            .map(|l| (l, t, stale_nan()))
            .collect();
        if let Err(e) = db.append_batch(&batch) {
            tracing::warn!(group = %self.name, err = %e, "adding stale samples for the previous configuration failed");
        }
    }

    /// Every series this group's rules wrote in their last evaluation (what to mark stale when
    /// the group goes away).
    pub fn series_in_previous_eval(&self) -> Vec<Labels> {
        self.series_in_previous_eval
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Prometheus' `RestoreForState` at `ts_ms`.
    pub fn restore_for_state(
        &mut self,
        ts_ms: i64,
        q: &dyn Queryable,
        outage_tolerance_ms: i64,
        grace_period_ms: i64,
    ) {
        for a in self.alerting_rules_mut() {
            a.restore_for_state(ts_ms, q, outage_tolerance_ms, grace_period_ms);
        }
        self.should_restore = false;
    }

    /// Prometheus' `Equals`: same name, file, interval, limit, offset and rules.
    pub fn equals(&self, other: &Group) -> bool {
        self.name == other.name
            && self.file == other.file
            && self.interval_ms == other.interval_ms
            && self.limit == other.limit
            && self.query_offset_ms == other.query_offset_ms
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.definition() == b.definition())
    }

    /// Prometheus' `CopyState`: takes the alert state and the last written series of rules
    /// with the same name and labels from the group this one replaces; series of rules that
    /// are gone are marked stale at the next evaluation.
    pub fn copy_state(&mut self, from: &Group) {
        self.evaluation_time = from.evaluation_time;
        self.last_evaluation = from.last_evaluation;
        let mut by_identity: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (fi, r) in from.rules.iter().enumerate() {
            by_identity.entry(r.identity()).or_default().push(fi);
        }
        for i in 0..self.rules.len() {
            let id = self.rules[i].identity();
            let Some(list) = by_identity.get_mut(&id) else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let fi = list.remove(0);
            self.series_in_previous_eval[i] = from.series_in_previous_eval[fi].clone();
            if let (Rule::Alerting(new), Rule::Alerting(old)) =
                (&mut self.rules[i], &from.rules[fi])
            {
                new.copy_state_from(old);
            }
        }
        self.stale_series = from.stale_series.clone();
        for list in by_identity.values() {
            for &fi in list {
                self.stale_series
                    .extend(from.series_in_previous_eval[fi].iter().cloned());
            }
        }
    }
}

/// Appends a rule's output; returns the series that were written. A rejected sample makes the
/// rule unhealthy, as in Prometheus.
fn append_vector(db: &Db, vector: &[InstantSample], rule: &mut Rule) -> HashSet<Labels> {
    let batch: Vec<(Labels, i64, f64)> = vector
        .iter()
        .map(|s| (s.labels.clone(), s.t, s.v))
        .collect();
    let mut written: HashSet<Labels> = vector.iter().map(|s| s.labels.clone()).collect();
    match db.append_batch(&batch) {
        Ok(report) => {
            if let Some(first) = report.rejected.first() {
                let st = rule.status_mut();
                st.health = RuleHealth::Bad;
                st.last_error = Some(if first.out_of_order {
                    format!("out of order sample for {} at {}", first.labels, first.t)
                } else {
                    format!(
                        "duplicate sample for timestamp {} with a different value for {}",
                        first.t, first.labels
                    )
                });
                for r in &report.rejected {
                    written.remove(&r.labels);
                }
            }
        }
        Err(e) => {
            let st = rule.status_mut();
            st.health = RuleHealth::Bad;
            st.last_error = Some(e.to_string());
            written.clear();
        }
    }
    written
}

/// Runs an instant query for a rule: a vector, or a scalar as one sample without labels
/// (Prometheus' `EngineQueryFunc`).
pub(crate) fn query_vector(
    engine: &Engine,
    q: &dyn Queryable,
    expr: &Expr,
    ts: i64,
) -> Result<Vec<InstantSample>, String> {
    let r = engine
        .instant_query(q, expr, ts)
        .map_err(|e| e.to_string())?;
    match r.value {
        Value::Vector(v) => Ok(v),
        Value::Scalar { t, v } => Ok(vec![InstantSample {
            labels: Labels::empty(),
            t,
            v,
        }]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

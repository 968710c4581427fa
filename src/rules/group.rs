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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::engine::testutil::{add, instant};
    use crate::rules::alerting::AlertState;
    use crate::rules::parse_rule_file;
    use crate::tsdb::is_stale_nan;

    const MIN: i64 = 60_000;

    fn group(text: &str) -> Group {
        let mut g = parse_rule_file("t.yml", text).unwrap_or_else(|e| panic!("{e}"));
        g.remove(0)
    }

    fn ctx() -> EvalContext {
        EvalContext {
            external_labels: Labels::from_pairs([("site", "home")]),
            external_url: "http://orcha:9464".into(),
            resend_delay_ms: MIN,
            default_interval_ms: MIN,
            default_query_offset_ms: 0,
        }
    }

    fn alert(g: &Group) -> Option<ActiveAlertView> {
        let a = g.alerting_rules().next()?.alerts().next()?.clone();
        Some(ActiveAlertView {
            state: a.state,
            active_at: a.active_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
        })
    }

    #[derive(Debug, PartialEq)]
    struct ActiveAlertView {
        state: AlertState,
        active_at: i64,
        fired_at: Option<i64>,
        resolved_at: Option<i64>,
    }

    fn view(
        state: AlertState,
        active_at: i64,
        fired_at: Option<i64>,
        resolved_at: Option<i64>,
    ) -> Option<ActiveAlertView> {
        Some(ActiveAlertView {
            state,
            active_at,
            fired_at,
            resolved_at,
        })
    }

    /// x{job="a"} each minute from 0 to `until_min`: 5 while `high(minute)`, else 0.
    fn series(db: &Db, until_min: i64, high: impl Fn(i64) -> bool) {
        let pts: Vec<(i64, f64)> = (0..=until_min)
            .map(|m| (m * 60, if high(m) { 5.0 } else { 0.0 }))
            .collect();
        add(db, "x", &[("job", "a")], &pts);
    }

    const HIGH_FOR_2M: &str = r#"
groups:
  - name: g
    rules:
      - alert: High
        expr: x > 1
        for: 2m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.job }} at {{ $value }} on {{ $externalLabels.site }} see {{ $externalURL }}"
          count: '{{ with query "count(x)" }}{{ . | first | value }}{{ end }}'
          broken: "{{ .Nope.Deeper }}"
"#;

    #[test]
    fn pending_then_firing_after_for_then_resolved_and_kept_15m() {
        let db = Db::in_memory();
        series(&db, 40, |m| m < 4);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut g = group(HIGH_FOR_2M);

        let r = g.eval(0, &db, &engine, &ctx);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(alert(&g), view(AlertState::Pending, 0, None, None));
        assert!(r.alerts.is_empty(), "pending alerts are not sent");
        assert_eq!(
            instant(&db, "ALERTS", 0).unwrap(),
            vec![(
                r#"ALERTS{alertname="High", alertstate="pending", job="a", severity="page"}"#
                    .into(),
                1.0
            )]
        );
        assert_eq!(instant(&db, "ALERTS_FOR_STATE", 0).unwrap()[0].1, 0.0);

        g.eval(MIN, &db, &engine, &ctx);
        assert_eq!(alert(&g).unwrap().state, AlertState::Pending);
        let r = g.eval(2 * MIN, &db, &engine, &ctx);
        assert_eq!(alert(&g), view(AlertState::Firing, 0, Some(2 * MIN), None));
        assert_eq!(r.alerts.len(), 1);
        let sent = &r.alerts[0];
        assert_eq!(sent.starts_at, 2 * MIN);
        assert_eq!(
            sent.ends_at,
            2 * MIN + 4 * MIN,
            "ValidUntil = now + 4 × max(resend delay, interval)"
        );
        assert_eq!(
            sent.generator_url,
            "http://orcha:9464/graph?g0.expr=x+%3E+1&g0.tab=1"
        );
        assert_eq!(
            sent.labels.to_string(),
            r#"{alertname="High", job="a", severity="page"}"#
        );
        assert_eq!(
            sent.annotations.get("summary"),
            Some("a at 5 on home see http://orcha:9464")
        );
        assert_eq!(sent.annotations.get("count"), Some("1"));
        let broken = sent.annotations.get("broken").unwrap();
        assert!(
            broken.starts_with("<error expanding template: "),
            "{broken}"
        );
        // The pending series ended when the alert fired.
        assert_eq!(
            instant(&db, "ALERTS", 120).unwrap(),
            vec![(
                r#"ALERTS{alertname="High", alertstate="firing", job="a", severity="page"}"#.into(),
                1.0
            )]
        );

        // Resent only after the resend delay.
        assert!(g.eval(3 * MIN, &db, &engine, &ctx).alerts.is_empty());
        assert_eq!(g.eval(3 * MIN + 1, &db, &engine, &ctx).alerts.len(), 1);

        // x drops at minute 4: resolved, sent once with endsAt = ResolvedAt.
        let r = g.eval(4 * MIN, &db, &engine, &ctx);
        assert_eq!(
            alert(&g),
            view(AlertState::Inactive, 0, Some(2 * MIN), Some(4 * MIN))
        );
        assert_eq!(r.alerts.len(), 1);
        assert_eq!(r.alerts[0].ends_at, 4 * MIN);
        assert!(
            instant(&db, "ALERTS", 240).unwrap().is_empty(),
            "ALERTS is marked stale"
        );
        assert!(instant(&db, "ALERTS_FOR_STATE", 240).unwrap().is_empty());
        // Kept (and resent) for 15 minutes, then dropped.
        assert!(g.eval(19 * MIN, &db, &engine, &ctx).alerts.len() == 1);
        assert!(alert(&g).is_some());
        g.eval(19 * MIN + 1, &db, &engine, &ctx);
        assert!(alert(&g).is_none());
    }

    #[test]
    fn pending_alert_that_goes_away_is_dropped() {
        let db = Db::in_memory();
        series(&db, 10, |m| m < 1);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut g = group(HIGH_FOR_2M);
        g.eval(0, &db, &engine, &ctx);
        let r = g.eval(MIN, &db, &engine, &ctx);
        assert!(alert(&g).is_none());
        assert!(r.alerts.is_empty());
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let db = Db::in_memory();
        series(&db, 10, |m| m < 1);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut g =
            group("groups: [{name: g, rules: [{alert: High, expr: x > 1, keep_firing_for: 2m}]}]");
        g.eval(0, &db, &engine, &ctx);
        assert_eq!(alert(&g), view(AlertState::Firing, 0, Some(0), None));
        g.eval(MIN, &db, &engine, &ctx);
        let a = g
            .alerting_rules()
            .next()
            .unwrap()
            .alerts()
            .next()
            .unwrap()
            .clone();
        assert_eq!(
            (a.state, a.keep_firing_since),
            (AlertState::Firing, Some(MIN))
        );
        g.eval(2 * MIN, &db, &engine, &ctx);
        assert_eq!(alert(&g).unwrap().state, AlertState::Firing);
        g.eval(3 * MIN, &db, &engine, &ctx);
        assert_eq!(
            alert(&g),
            view(AlertState::Inactive, 0, Some(0), Some(3 * MIN))
        );
    }

    /// Runs HIGH_FOR_30M from minute 0 to `down_min` (ALERTS_FOR_STATE is written), then a
    /// fresh group "after a restart" from `up_min`: evaluates twice, restores, and returns the
    /// restored ActiveAt.
    fn restart(down_min: i64, up_min: i64) -> i64 {
        let text = "groups: [{name: g, rules: [{alert: High, expr: x > 1, for: 30m}]}]";
        let db = Db::in_memory();
        series(&db, 120, |_| true);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut before = group(text);
        for m in 0..=down_min {
            before.eval(m * MIN, &db, &engine, &ctx);
        }
        let mut after = group(text);
        after.set_should_restore();
        after.eval(up_min * MIN, &db, &engine, &ctx);
        after.eval((up_min + 1) * MIN, &db, &engine, &ctx);
        assert!(
            instant(&db, "ALERTS_FOR_STATE", (up_min + 1) * 60)
                .unwrap()
                .is_empty(),
            "nothing is written before the restore"
        );
        after.restore_for_state((up_min + 1) * MIN, &db, 60 * MIN, 10 * MIN);
        assert!(!after.should_restore);
        after.eval((up_min + 2) * MIN, &db, &engine, &ctx);
        assert_eq!(
            instant(&db, "ALERTS_FOR_STATE", (up_min + 2) * 60)
                .unwrap()
                .len(),
            1
        );
        alert(&after).unwrap().active_at
    }

    #[test]
    fn restore_moves_active_at_by_the_downtime() {
        // Pending 10m when it went down at 10m, back at 20m, restored at 21m: it still needs
        // 20m, counted from the restore.
        assert_eq!(restart(10, 20), 11 * MIN);
    }

    #[test]
    fn restore_keeps_the_grace_period() {
        // Pending 25m at 25m; 5m left is under the 10m grace: fires 10m after the restore.
        assert_eq!(restart(25, 30), 31 * MIN + 10 * MIN - 30 * MIN);
    }

    #[test]
    fn restore_of_an_alert_that_was_firing_keeps_its_active_at() {
        assert_eq!(restart(40, 45), 0);
    }

    #[test]
    fn restore_beyond_the_outage_tolerance_starts_over() {
        // Down at 10m, back at 80m: the last sample is older than 1h, so nothing is restored.
        assert_eq!(restart(10, 80), 80 * MIN);
    }

    #[test]
    fn recording_rules_chain_and_mark_vanished_series_stale() {
        let db = Db::in_memory();
        add(&db, "x", &[("job", "a")], &[(0, 5.0), (60, 5.0)]);
        add(&db, "x", &[("job", "b")], &[(0, 5.0), (60, 0.0)]);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut g = group(
            r#"
groups:
  - name: g
    labels: {src: rules}
    rules:
      - record: job:x:double
        expr: x * 2 > 1
      - record: job:x:plus
        expr: job:x:double + 1
        labels: {src: mine}
"#,
        );
        let r = g.eval(0, &db, &engine, &ctx);
        assert_eq!(r.samples, 4);
        assert_eq!(
            instant(&db, "job:x:plus", 0).unwrap(),
            vec![
                (r#"job:x:plus{job="a", src="mine"}"#.into(), 11.0),
                (r#"job:x:plus{job="b", src="mine"}"#.into(), 11.0)
            ],
            "the second rule saw the first one's output of the same evaluation"
        );
        g.eval(MIN, &db, &engine, &ctx);
        let s = db.select(
            &[
                Matcher::equal("__name__", "job:x:double"),
                Matcher::equal("job", "b"),
            ],
            0,
            MIN,
        );
        let last = s[0].samples.last().unwrap();
        assert_eq!(last.t, MIN);
        assert!(
            is_stale_nan(last.v),
            "job b no longer produced: stale marker"
        );
        assert_eq!(instant(&db, "job:x:double", 60).unwrap().len(), 1);
    }

    use crate::labels::Matcher;

    #[test]
    fn query_offset_limit_and_failures() {
        let db = Db::in_memory();
        add(&db, "x", &[("job", "a")], &[(0, 1.0), (60, 2.0)]);
        add(&db, "x", &[("job", "b")], &[(0, 1.0), (60, 2.0)]);
        let (engine, ctx) = (Engine::default(), ctx());
        let mut g = group("groups: [{name: g, query_offset: 1m, rules: [{record: y, expr: 'x'}]}]");
        g.eval(2 * MIN, &db, &engine, &ctx);
        let s = db.select(&[Matcher::equal("__name__", "y")], 0, 10 * MIN);
        assert_eq!(
            s[0].samples,
            vec![crate::tsdb::Sample { t: MIN, v: 2.0 }],
            "queried and written at ts - offset"
        );

        let mut g = group(
            "groups: [{name: g, limit: 1, rules: [{record: y, expr: 'x'}, {alert: A, expr: 'x'}]}]",
        );
        let r = g.eval(MIN, &db, &engine, &ctx);
        assert_eq!(
            r.failures,
            vec![
                RuleFailure {
                    rule: "y".into(),
                    error: "exceeded limit of 1 with 2 series".into()
                },
                RuleFailure {
                    rule: "A".into(),
                    error: "exceeded limit of 1 with 2 alerts".into()
                },
            ]
        );
        assert_eq!(g.rules()[0].status().health, RuleHealth::Bad);
        assert_eq!(g.alerting_rules().next().unwrap().alerts().count(), 0);

        let mut g = group("groups: [{name: g, rules: [{record: y, expr: '\"s\"'}, {record: z, expr: 'x * on() group_left x'}]}]");
        let r = g.eval(MIN, &db, &engine, &ctx);
        assert_eq!(r.failures[0].error, "rule result is not a vector or scalar");
        assert_eq!(r.failures.len(), 2);
    }
}

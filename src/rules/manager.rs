//! The rule manager (Prometheus' `rules/manager.go` and `Group.run`): holds the loaded groups,
//! evaluates each on its own interval at timestamps aligned as Prometheus aligns them, restores
//! the `for` state after a start, reloads the rule files atomically (a failed reload keeps
//! every old rule running), notices changed files by polling, and hands the alerts to send to
//! a callback (the notifier). Its metrics are Prometheus' `prometheus_rule_*` with our
//! `depin_` prefix.
//!
//! # What `main` calls
//!
//! ```ignore
//! let opts = ManagerOptions { evaluation_interval, resend_delay, outage_tolerance,
//!                             for_grace_period, registry: registry.clone(), ..Default::default() };
//! let manager = Arc::new(RuleManager::new(opts, db.clone(), engine.clone(), clock.clone(),
//!                                         external_labels, external_url));
//! manager.load(&rule_files)?;                 // at start: errors are fatal (exit 1), as Prometheus
//! state.extra_routes.push(Arc::new(RulesApi::new(manager.clone())));
//! tokio::spawn(manager.clone().run(shutdown_rx, move |alerts| notifier.send(alerts)));
//! // on SIGHUP:
//! let _ = manager.reload();                   // logs and sets the gauge itself
//! ```
//!
//! The default evaluation interval is 15s (`global.evaluation_interval`), not Prometheus' 1m:
//! our own series are polled every 5s, so 1m would make alerts a minute late for no reason.
//!
//! Group evaluation is aligned like Prometheus' `EvalTimestamp`: at `base + offset`, where the
//! offset is a hash of the group's file and name modulo the interval (our hash is FNV-1a, not
//! Prometheus' xxhash, so the offsets differ from a Prometheus loading the same files). The
//! first evaluation is at the first such slot after start; missed slots are skipped and
//! counted. Groups whose alerting rules must restore their `for` state do so after their
//! second evaluation, as Prometheus does.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;

use super::file::{expand_globs, load_files};
use super::group::{EvalContext, Group};
use super::{Alert, RuleErrors};
use crate::clock::SharedClock;
use crate::labels::Labels;
use crate::promql::Engine;
use crate::tsdb::{stale_nan, Db};

/// The manager's settings (CLI flags and config).
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// `global.evaluation_interval`: interval of groups without their own (default 15s).
    pub evaluation_interval: Duration,
    /// `--rules.alert.resend-delay` (default 1m).
    pub resend_delay: Duration,
    /// `--rules.alert.for-outage-tolerance` (default 1h): how far back `ALERTS_FOR_STATE` is
    /// read at start.
    pub outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period` (default 10m): least time between a restart and a
    /// restored alert firing.
    pub for_grace_period: Duration,
    /// Query offset of groups without their own (Prometheus' `rule_query_offset`, default 0).
    pub query_offset: Duration,
    /// How often the rule files are checked for changes (default 5s; zero turns it off).
    pub file_poll_interval: Duration,
    /// Where the `depin_rule*` metrics are registered.
    pub registry: prometheus::Registry,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            evaluation_interval: Duration::from_secs(15),
            resend_delay: Duration::from_secs(60),
            outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            query_offset: Duration::ZERO,
            file_poll_interval: Duration::from_secs(5),
            registry: prometheus::Registry::new(),
        }
    }
}

/// A group and when it runs next.
pub struct ScheduledGroup {
    pub group: Group,
    /// Timestamp (ms) of the next evaluation; `None` until first scheduled.
    next_eval: Option<i64>,
    evaluations: u64,
}

struct State {
    /// The rule file paths/patterns as given to the last successful [`RuleManager::load`].
    files: Vec<PathBuf>,
    /// Sorted by file, then name (the order of `/api/v1/rules`).
    groups: Vec<Arc<Mutex<ScheduledGroup>>>,
    /// Fingerprint of the files when they were last read, to notice changes.
    stamps: Vec<(PathBuf, Option<u64>)>,
    /// Set after the first successful load: later new groups do not restore `for` state.
    restored: bool,
    /// Series of removed groups and when to mark them stale (two of their intervals later,
    /// giving a renamed rule time to write them first, as Prometheus does).
    pending_stale: Vec<(i64, Vec<Labels>)>,
    last_reload_error: Option<String>,
}

struct RuleMetrics {
    evaluations: IntCounterVec,
    failures: IntCounterVec,
    last_duration: GaugeVec,
    rules: GaugeVec,
    interval: GaugeVec,
    last_eval_ts: GaugeVec,
    last_samples: GaugeVec,
    iterations: IntCounterVec,
    missed: IntCounterVec,
    eval_duration: Histogram,
    reload_ok: IntGauge,
    reload_ts: Gauge,
}

fn gauge_vec(reg: &prometheus::Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &["rule_group"])
        .expect("static metric definition is valid");
    // AlreadyReg only means another manager in this registry registered it first.
    let _ = reg.register(Box::new(g.clone()));
    g
}

fn counter_vec(reg: &prometheus::Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["rule_group"])
        .expect("static metric definition is valid");
    let _ = reg.register(Box::new(c.clone()));
    c
}

impl RuleMetrics {
    fn new(reg: &prometheus::Registry) -> RuleMetrics {
        let eval_duration = Histogram::with_opts(
            HistogramOpts::new(
                "depin_rule_evaluation_duration_seconds",
                "The duration for a rule to execute.",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0]),
        )
        .expect("static metric definition is valid");
        let _ = reg.register(Box::new(eval_duration.clone()));
        let reload_ok = IntGauge::new(
            "depin_rules_last_reload_successful",
            "Whether the last rule file reload attempt was successful.",
        )
        .expect("static metric definition is valid");
        let _ = reg.register(Box::new(reload_ok.clone()));
        let reload_ts = Gauge::new(
            "depin_rules_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful rule file reload.",
        )
        .expect("static metric definition is valid");
        let _ = reg.register(Box::new(reload_ts.clone()));
        RuleMetrics {
            evaluations: counter_vec(reg, "depin_rule_evaluations_total", "The total number of rule evaluations."),
            failures: counter_vec(reg, "depin_rule_evaluation_failures_total", "The total number of rule evaluation failures."),
            last_duration: gauge_vec(reg, "depin_rule_group_last_duration_seconds", "The duration of the last rule group evaluation."),
            rules: gauge_vec(reg, "depin_rule_group_rules", "The number of rules."),
            interval: gauge_vec(reg, "depin_rule_group_interval_seconds", "The interval of a rule group."),
            last_eval_ts: gauge_vec(
                reg,
                "depin_rule_group_last_evaluation_timestamp_seconds",
                "The timestamp of the last rule group evaluation in seconds.",
            ),
            last_samples: gauge_vec(
                reg,
                "depin_rule_group_last_evaluation_samples",
                "The number of samples returned during the last rule group evaluation.",
            ),
            iterations: counter_vec(
                reg,
                "depin_rule_group_iterations_total",
                "The total number of scheduled rule group evaluations, whether executed or missed.",
            ),
            missed: counter_vec(
                reg,
                "depin_rule_group_iterations_missed_total",
                "The total number of rule group evaluations missed due to slow rule group evaluation.",
            ),
            eval_duration,
            reload_ok,
            reload_ts,
        }
    }

    fn forget(&self, key: &str) {
        for v in [
            &self.last_duration,
            &self.rules,
            &self.interval,
            &self.last_eval_ts,
            &self.last_samples,
        ] {
            let _ = v.remove_label_values(&[key]);
        }
        for v in [
            &self.evaluations,
            &self.failures,
            &self.iterations,
            &self.missed,
        ] {
            let _ = v.remove_label_values(&[key]);
        }
    }
}

pub struct RuleManager {
    opts: ManagerOptions,
    db: Arc<Db>,
    engine: Engine,
    clock: SharedClock,
    ctx: EvalContext,
    state: Mutex<State>,
    metrics: RuleMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Prometheus' `EvalTimestamp`: the latest slot at or before `now` of a group whose slots are
/// `interval` apart and shifted by a hash of its identity.
pub fn eval_timestamp(file: &str, name: &str, interval_ms: i64, now_ms: i64) -> i64 {
    if interval_ms <= 0 {
        return now_ms;
    }
    // FNV-1a over the group's identity: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.bytes().chain([0xff]).chain(name.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let offset = (h % interval_ms as u64) as i64;
    let adj = now_ms - offset;
    adj - adj.rem_euclid(interval_ms) + offset
}

/// A fingerprint of a file's content and modification time; `None` when it cannot be read.
fn stamp(path: &PathBuf) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    meta.modified().ok().hash(&mut h);
    Some(h.finish())
}

fn stamps(files: &[PathBuf]) -> Vec<(PathBuf, Option<u64>)> {
    let mut ignored = Vec::new();
    expand_globs(files, &mut ignored)
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

impl RuleManager {
    pub fn new(
        opts: ManagerOptions,
        db: Arc<Db>,
        engine: Engine,
        clock: SharedClock,
        external_labels: Labels,
        external_url: String,
    ) -> RuleManager {
        let metrics = RuleMetrics::new(&opts.registry);
        let ctx = EvalContext {
            external_labels,
            external_url,
            resend_delay_ms: ms(opts.resend_delay),
            default_interval_ms: ms(opts.evaluation_interval).max(1),
            default_query_offset_ms: ms(opts.query_offset),
        };
        RuleManager {
            opts,
            db,
            engine,
            clock,
            ctx,
            state: Mutex::new(State {
                files: Vec::new(),
                groups: Vec::new(),
                stamps: Vec::new(),
                restored: false,
                pending_stale: Vec::new(),
                last_reload_error: None,
            }),
            metrics,
        }
    }

    pub fn eval_context(&self) -> &EvalContext {
        &self.ctx
    }

    /// Loads `paths` (files or glob patterns) and replaces the groups atomically. Groups that
    /// did not change keep running untouched; changed ones take over the alert state of the
    /// rules with the same name and labels; removed ones have their series marked stale. On
    /// error nothing changes, the error is logged with file and line, and
    /// `depin_rules_last_reload_successful` is set to 0.
    pub fn load(&self, paths: &[PathBuf]) -> Result<(), RuleErrors> {
        let now = self.clock.now_ms();
        // Fingerprints before reading: a change while we read shows at the next poll.
        let new_stamps = stamps(paths);
        let loaded = load_files(paths);
        let mut st = lock(&self.state);
        st.stamps = new_stamps;
        let new_groups = match loaded {
            Ok(g) => g,
            Err(e) => {
                // At start (or after files that held no rules) nothing keeps running: saying
                // so would send the operator looking for rules that are not there.
                let msg = if st.groups.is_empty() {
                    "loading rule files failed"
                } else {
                    "loading rule files failed, the previous rules keep running"
                };
                for line in e.to_string().lines() {
                    tracing::error!(error = %line, "{msg}");
                }
                self.metrics.reload_ok.set(0);
                st.last_reload_error = Some(e.to_string());
                return Err(e);
            }
        };
        let mut old: HashMap<String, Arc<Mutex<ScheduledGroup>>> = st
            .groups
            .drain(..)
            .map(|g| {
                let k = lock(&g).group.key();
                (k, g)
            })
            .collect();
        let restore = !st.restored;
        let mut groups = Vec::with_capacity(new_groups.len());
        for mut g in new_groups {
            let key = g.key();
            match old.remove(&key) {
                Some(prev) if lock(&prev).group.equals(&g) => groups.push(prev),
                Some(prev) => {
                    let p = lock(&prev);
                    g.copy_state(&p.group);
                    let same_interval = p.group.interval_ms() == g.interval_ms();
                    let next_eval = if same_interval { p.next_eval } else { None };
                    groups.push(Arc::new(Mutex::new(ScheduledGroup {
                        group: g,
                        next_eval,
                        evaluations: p.evaluations,
                    })));
                }
                None => {
                    if restore {
                        g.set_should_restore();
                    }
                    groups.push(Arc::new(Mutex::new(ScheduledGroup {
                        group: g,
                        next_eval: None,
                        evaluations: 0,
                    })));
                }
            }
        }
        for (key, prev) in old {
            let p = lock(&prev);
            let interval = p.group.effective_interval_ms(&self.ctx);
            st.pending_stale
                .push((now + 2 * interval, p.group.series_in_previous_eval()));
            self.metrics.forget(&key);
        }
        groups.sort_by_cached_key(|g| {
            let g = lock(g);
            (g.group.file().to_string(), g.group.name().to_string())
        });
        for g in &groups {
            let g = lock(g);
            let key = g.group.key();
            self.metrics
                .rules
                .with_label_values(&[&key])
                .set(g.group.rules().len() as f64);
            self.metrics
                .interval
                .with_label_values(&[&key])
                .set(g.group.effective_interval_ms(&self.ctx) as f64 / 1000.0);
        }
        st.groups = groups;
        st.files = paths.to_vec();
        st.restored = true;
        st.last_reload_error = None;
        self.metrics.reload_ok.set(1);
        self.metrics.reload_ts.set(now as f64 / 1000.0);
        tracing::info!(
            files = paths.len(),
            groups = st.groups.len(),
            "rule files loaded"
        );
        Ok(())
    }

    /// Re-reads the files of the last successful load (SIGHUP, `/-/reload`, a changed file).
    pub fn reload(&self) -> Result<(), RuleErrors> {
        let files = lock(&self.state).files.clone();
        self.load(&files)
    }

    /// The error of the last reload, if it failed.
    pub fn last_reload_error(&self) -> Option<String> {
        lock(&self.state).last_reload_error.clone()
    }

    /// The groups, sorted by file and name. Lock one at a time, briefly.
    pub fn groups(&self) -> Vec<Arc<Mutex<ScheduledGroup>>> {
        lock(&self.state).groups.clone()
    }

    /// Evaluates every group whose slot has come at `now_ms` (skipping missed slots), writes
    /// pending staleness markers of removed groups, and returns the alerts to send. The run
    /// loop calls it; a simulation can drive it directly with its virtual time.
    pub fn tick(&self, now_ms: i64) -> Vec<Alert> {
        let groups = self.groups();
        let mut alerts = Vec::new();
        for g in groups {
            let mut sg = lock(&g);
            let interval = sg.group.effective_interval_ms(&self.ctx).max(1);
            let key = sg.group.key();
            let next = match sg.next_eval {
                Some(n) => n,
                None => {
                    let first = eval_timestamp(sg.group.file(), sg.group.name(), interval, now_ms)
                        + interval;
                    sg.next_eval = Some(first);
                    first
                }
            };
            if now_ms < next {
                continue;
            }
            let missed = (now_ms - next) / interval;
            let ts = next + missed * interval;
            if missed > 0 {
                self.metrics
                    .missed
                    .with_label_values(&[&key])
                    .inc_by(missed as u64);
                self.metrics
                    .iterations
                    .with_label_values(&[&key])
                    .inc_by(missed as u64);
            }
            self.metrics.iterations.with_label_values(&[&key]).inc();
            let r = sg.group.eval(ts, &self.db, &self.engine, &self.ctx);
            sg.next_eval = Some(ts + interval);
            sg.evaluations += 1;
            self.metrics
                .evaluations
                .with_label_values(&[&key])
                .inc_by(r.rules_evaluated as u64);
            self.metrics
                .failures
                .with_label_values(&[&key])
                .inc_by(r.failures.len() as u64);
            self.metrics
                .last_duration
                .with_label_values(&[&key])
                .set(r.duration.as_secs_f64());
            self.metrics
                .last_eval_ts
                .with_label_values(&[&key])
                .set(ts as f64 / 1000.0);
            self.metrics
                .last_samples
                .with_label_values(&[&key])
                .set(r.samples as f64);
            self.metrics.eval_duration.observe(r.duration.as_secs_f64());
            // Prometheus restores after the second evaluation, when recording rules the
            // alerts depend on have written at least once.
            if sg.group.should_restore && sg.evaluations >= 2 {
                sg.group.restore_for_state(
                    now_ms,
                    self.db.as_ref(),
                    ms(self.opts.outage_tolerance),
                    ms(self.opts.for_grace_period),
                );
            }
            alerts.extend(r.alerts);
        }
        let due: Vec<Vec<Labels>> = {
            let mut st = lock(&self.state);
            let (due, keep): (Vec<_>, Vec<_>) = st
                .pending_stale
                .drain(..)
                .partition(|(at, _)| *at <= now_ms);
            st.pending_stale = keep;
            due.into_iter().map(|(_, s)| s).collect()
        };
        for series in due {
            let batch: Vec<(Labels, i64, f64)> = series
                .into_iter()
                .map(|l| (l, now_ms, stale_nan()))
                .collect();
            if let Err(e) = self.db.append_batch(&batch) {
                tracing::warn!(err = %e, "adding stale samples of removed rule groups failed");
            }
        }
        alerts
    }

    /// The earliest scheduled evaluation, if any group is scheduled.
    fn next_due(&self) -> Option<i64> {
        let groups = self.groups();
        let mut next: Option<i64> = None;
        for g in groups {
            let n = lock(&g).next_eval;
            next = match (next, n) {
                (None, x) | (x, None) => x,
                (Some(a), Some(b)) => Some(a.min(b)),
            };
        }
        let st = lock(&self.state);
        for (at, _) in &st.pending_stale {
            next = Some(next.map_or(*at, |n| n.min(*at)));
        }
        next
    }

    /// Whether a rule file changed (content, mtime, appeared or vanished) since it was read.
    pub fn files_changed(&self) -> bool {
        let (files, old) = {
            let st = lock(&self.state);
            (st.files.clone(), st.stamps.clone())
        };
        stamps(&files) != old
    }

    /// Evaluates the groups on schedule until `shutdown` turns true (or its sender is
    /// dropped), passing the alerts of each round to `notify`, and reloads when a rule file
    /// changes.
    pub async fn run<F>(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, notify: F)
    where
        F: Fn(Vec<Alert>) + Send + Sync + 'static,
    {
        let poll_ms = ms(self.opts.file_poll_interval);
        let mut next_poll = self.clock.now_ms() + poll_ms;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = self.clock.now_ms();
            let me = self.clone();
            // Evaluation is synchronous and may take a while: keep it off the async workers.
            let alerts = match tokio::task::spawn_blocking(move || me.tick(now)).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(err = %e, "rule evaluation panicked");
                    Vec::new()
                }
            };
            if !alerts.is_empty() {
                notify(alerts);
            }
            if poll_ms > 0 && now >= next_poll {
                next_poll = now + poll_ms;
                let me = self.clone();
                let changed = tokio::task::spawn_blocking(move || me.files_changed())
                    .await
                    .unwrap_or(false);
                if changed {
                    tracing::info!("rule files changed, reloading");
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload()).await;
                }
            }
            let now = self.clock.now_ms();
            let mut wait = self.next_due().map_or(1000, |n| n - now);
            if poll_ms > 0 {
                wait = wait.min(next_poll - now);
            }
            // At most 1s: the clock may be virtual or jump, and reloads add groups.
            let wait = wait.clamp(1, 1000) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                r = shutdown.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::promql::engine::testutil::add;
    use crate::rules::AlertState;

    const MIN: i64 = 60_000;

    const ALERT: &str = "groups:\n  - name: g\n    interval: 1m\n    rules:\n      - alert: High\n        expr: x > 1\n        for: 2m\n";

    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub clock: ManualClock,
        pub registry: prometheus::Registry,
        pub manager: Arc<RuleManager>,
        pub db: Arc<Db>,
    }

    pub(crate) fn fixture(text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), text).unwrap();
        let db = Arc::new(Db::in_memory());
        add(
            &db,
            "x",
            &[("job", "a")],
            &(0..=60).map(|m| (m * 60, 5.0)).collect::<Vec<_>>(),
        );
        let clock = ManualClock::new(0);
        let registry = prometheus::Registry::new();
        let opts = ManagerOptions {
            registry: registry.clone(),
            ..Default::default()
        };
        let manager = Arc::new(RuleManager::new(
            opts,
            db.clone(),
            Engine::default(),
            Arc::new(clock.clone()),
            Labels::empty(),
            "http://x".into(),
        ));
        manager.load(&[dir.path().join("*.yml")]).unwrap();
        Fixture {
            dir,
            clock,
            registry,
            manager,
            db,
        }
    }

    fn gauge(reg: &prometheus::Registry, name: &str) -> f64 {
        reg.gather()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.get_metric()[0].get_gauge().value())
            .unwrap_or(f64::NAN)
    }

    fn first_alert(m: &RuleManager) -> Option<crate::rules::ActiveAlert> {
        let g = m.groups();
        let g = lock(&g[0]);
        let a = g.group.alerting_rules().next()?.alerts().next().cloned();
        a
    }

    #[test]
    fn eval_timestamps_are_aligned_per_group() {
        let t = eval_timestamp("f", "g", MIN, 10 * MIN + 5);
        assert!(t <= 10 * MIN + 5 && t > 9 * MIN + 5);
        assert_eq!(
            eval_timestamp("f", "g", MIN, t + MIN),
            t + MIN,
            "stable slots"
        );
        assert_ne!(
            eval_timestamp("f", "g", MIN, 0).rem_euclid(MIN),
            eval_timestamp("f", "other", MIN, 0).rem_euclid(MIN),
            "groups are spread over the interval"
        );
    }

    #[test]
    fn groups_run_on_their_slots_and_restore_after_the_second() {
        let f = fixture(ALERT);
        let m = &f.manager;
        assert!(m.tick(0).is_empty());
        let first = lock(&m.groups()[0]).next_eval.unwrap();
        assert!(first > 0 && first <= MIN);
        assert!(first_alert(m).is_none(), "nothing before the first slot");
        m.tick(first);
        assert_eq!(first_alert(m).unwrap().active_at, first);
        assert!(
            lock(&m.groups()[0]).group.should_restore,
            "restore waits for the second evaluation"
        );
        // Three slots later, two of them missed: evaluated once, at the latest slot.
        m.tick(first + 3 * MIN + 7);
        let groups = m.groups();
        let g = lock(&groups[0]);
        assert_eq!(g.group.last_evaluation(), Some(first + 3 * MIN));
        assert!(!g.group.should_restore);
        drop(g);
        assert_eq!(first_alert(m).unwrap().state, AlertState::Firing);
        let missed = f
            .registry
            .gather()
            .iter()
            .find(|f| f.name() == "depin_rule_group_iterations_missed_total")
            .map(|f| f.get_metric()[0].get_counter().value());
        assert_eq!(missed, Some(2.0));
    }

    #[test]
    fn reload_keeps_alert_state_and_unchanged_groups() {
        let f = fixture(&format!(
            "{ALERT}  - name: other\n    rules: [{{record: r, expr: x}}]\n"
        ));
        let m = &f.manager;
        let first = {
            m.tick(0);
            lock(&m.groups()[0]).next_eval.unwrap()
        };
        for i in 0..4 {
            m.tick(first + i * MIN);
        }
        let before = first_alert(m).unwrap();
        assert_eq!(before.state, AlertState::Firing);
        let other = m.groups()[1].clone();
        // Change group g (a label on another rule), keep group "other" as it was.
        let text = format!(
            "{ALERT}      - record: y\n        expr: x\n  - name: other\n    rules: [{{record: r, expr: x}}]\n"
        );
        std::fs::write(f.dir.path().join("a.yml"), text).unwrap();
        assert!(m.files_changed());
        m.reload().unwrap();
        assert!(!m.files_changed());
        assert_eq!(lock(&m.groups()[0]).group.rules().len(), 2);
        assert_eq!(first_alert(m).unwrap(), before, "the alert carried over");
        assert!(
            Arc::ptr_eq(&m.groups()[1], &other),
            "an unchanged group keeps running as is"
        );
        m.tick(first + 4 * MIN);
        let a = first_alert(m).unwrap();
        assert_eq!(
            (a.state, a.active_at),
            (AlertState::Firing, before.active_at)
        );
    }

    #[test]
    fn failed_reload_keeps_the_old_rules_and_sets_the_gauge() {
        let f = fixture(ALERT);
        let m = &f.manager;
        assert_eq!(
            gauge(&f.registry, "depin_rules_last_reload_successful"),
            1.0
        );
        std::fs::write(
            f.dir.path().join("a.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: x >\n",
        )
        .unwrap();
        let e = m.reload().unwrap_err().to_string();
        let file = f.dir.path().join("a.yml").display().to_string();
        assert!(
            e.starts_with(&format!(
                "{file}:5:9: group \"g\", rule 1, \"High\": could not parse expression"
            )),
            "{e}"
        );
        assert_eq!(
            gauge(&f.registry, "depin_rules_last_reload_successful"),
            0.0
        );
        assert_eq!(m.last_reload_error().as_deref(), Some(e.as_str()));
        let g = m.groups();
        assert_eq!(g.len(), 1);
        assert_eq!(
            lock(&g[0]).group.rules()[0].name(),
            "High",
            "old rules still there"
        );
        std::fs::write(f.dir.path().join("a.yml"), ALERT).unwrap();
        f.clock.set(1_000_000);
        m.reload().unwrap();
        assert_eq!(
            gauge(&f.registry, "depin_rules_last_reload_successful"),
            1.0
        );
        assert_eq!(
            gauge(
                &f.registry,
                "depin_rules_last_reload_success_timestamp_seconds"
            ),
            1000.0
        );
    }

    #[test]
    fn removed_groups_have_their_series_marked_stale_two_intervals_later() {
        let f = fixture("groups: [{name: g, interval: 1m, rules: [{record: r, expr: x}]}]");
        let m = &f.manager;
        m.tick(0);
        let first = lock(&m.groups()[0]).next_eval.unwrap();
        m.tick(first);
        std::fs::write(f.dir.path().join("a.yml"), "groups: []\n").unwrap();
        f.clock.set(first + 1);
        m.reload().unwrap();
        assert!(m.groups().is_empty());
        m.tick(first + MIN);
        let sel = |t| {
            crate::tsdb::Queryable::select(
                f.db.as_ref(),
                &[crate::labels::Matcher::equal("__name__", "r")],
                0,
                t,
            )
        };
        assert!(!crate::tsdb::is_stale_nan(
            sel(first + 3 * MIN)[0].samples.last().unwrap().v
        ));
        m.tick(first + 1 + 2 * MIN);
        let last = *sel(first + 3 * MIN)[0].samples.last().unwrap();
        assert!(crate::tsdb::is_stale_nan(last.v));
        assert_eq!(last.t, first + 1 + 2 * MIN);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_evaluates_on_the_clock_and_notifies() {
        let f = fixture("groups: [{name: g, interval: 1m, rules: [{alert: High, expr: x > 1}]}]");
        let (tx, rx) = watch::channel(false);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let task = tokio::spawn(f.manager.clone().run(rx, move |a| lock(&sink).extend(a)));
        let mut waited = 0;
        while lock(&got).is_empty() && waited < 50 {
            // The loop sleeps at most 1s between looks at the clock.
            f.clock.advance(MIN);
            tokio::time::sleep(Duration::from_millis(200)).await;
            waited += 1;
        }
        let alerts = lock(&got).clone();
        assert!(!alerts.is_empty(), "the firing alert was sent");
        assert_eq!(alerts[0].labels.get("alertname"), Some("High"));
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn for_state_survives_a_restart_through_the_persisted_db() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "groups: [{name: g, interval: 1m, rules: [{alert: High, expr: x > 1, for: 30m}]}]\n",
        )
        .unwrap();
        let files = [dir.path().join("a.yml")];
        let open = || {
            Arc::new(
                Db::open(crate::tsdb::Options {
                    path: Some(dir.path().join("data")),
                    ..Default::default()
                })
                .unwrap(),
            )
        };
        let start = |db: Arc<Db>| {
            let m = RuleManager::new(
                ManagerOptions::default(),
                db,
                Engine::default(),
                Arc::new(ManualClock::new(0)),
                Labels::empty(),
                String::new(),
            );
            m.load(&files).unwrap();
            m
        };
        let db = open();
        add(
            &db,
            "x",
            &[("job", "a")],
            &(0..=120).map(|m| (m * 60, 5.0)).collect::<Vec<_>>(),
        );
        let m = start(db.clone());
        m.tick(0);
        let first = lock(&m.groups()[0]).next_eval.unwrap();
        // Running 15 minutes, then "killed".
        for i in 0..=15 {
            m.tick(first + i * MIN);
        }
        assert_eq!(first_alert(&m).unwrap().active_at, first);
        drop(m);
        drop(db);

        // Back 5 minutes later with the same files: the alert was pending 15m of its 30m.
        let m = start(open());
        let back = first + 20 * MIN;
        m.tick(back);
        let slot = lock(&m.groups()[0]).next_eval.unwrap();
        m.tick(slot);
        assert_eq!(
            first_alert(&m).unwrap().active_at,
            slot,
            "a fresh alert before the restore"
        );
        m.tick(slot + MIN);
        // Restored at slot + 1m: ActiveAt moved forward by the downtime (down at the last
        // ALERTS_FOR_STATE sample, first + 15m).
        let down_at = first + 15 * MIN;
        let want = (first.div_euclid(1000) * 1000) + (slot + MIN - down_at.div_euclid(1000) * 1000);
        assert_eq!(first_alert(&m).unwrap().active_at, want);
        assert_eq!(first_alert(&m).unwrap().state, AlertState::Pending);
    }
}

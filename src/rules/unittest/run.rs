//! One test group, as promtool's `testGroup.test`: load the input series as evaluation time
//! reaches them, evaluate the rule groups every `evaluation_interval`, compare the firing alerts
//! at each `alert_rule_test` time, then run the `promql_expr_test` queries.

use std::collections::{HashMap, HashSet};

use super::gotext::{
    alerts_string, go_duration, go_labels, go_quote, indent_lines, model_duration, samples_string,
};
use super::schema::{labels_pairs, LabelsAndAnnotations, PromqlTest, TestFile, TestGroup};
use crate::labels::Labels;
use crate::promql::promqltest::{parse_series, SeqValue};
use crate::promql::{Engine, EngineOptions, Value};
use crate::rules::group::{EvalContext, Group};
use crate::tsdb::Db;

/// One input sample: its time, series and value.
type InputSample = (i64, Labels, f64);

/// One test group: promtool's `testGroup.test`. Returns its errors.
pub(super) fn run_group(tg: &TestGroup, file: &TestFile, mut groups: Vec<Group>) -> Vec<String> {
    let test_name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    let samples = match input_samples(tg) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let db = unbounded_db();
    let engine = Engine::new(EngineOptions::default());
    let ctx = EvalContext {
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
        default_interval_ms: tg.interval_ms,
        ..EvalContext::default()
    };
    order_groups(&mut groups, file);
    let max_t = tg
        .alert_tests
        .iter()
        .map(|a| a.eval_time_ms)
        .chain(tg.promql_tests.iter().map(|p| p.eval_time_ms))
        .max()
        .unwrap_or(0);
    if let Err(e) = check_alertnames(tg) {
        return vec![e];
    }

    let mut errs: Vec<String> = Vec::new();
    let mut alert_times: Vec<i64> = tg.alert_tests.iter().map(|a| a.eval_time_ms).collect();
    alert_times.sort_unstable();
    alert_times.dedup();
    let mut curr = 0;
    let mut next_sample = 0;
    let interval = file.eval_interval_ms;
    let mut ts = 0i64;
    while ts <= max_t {
        next_sample = match load_until(&db, &samples, next_sample, ts) {
            Ok(n) => n,
            Err(e) => return vec![e],
        };
        let eval_errs = eval_groups(&mut groups, ts, &db, &engine, &ctx);
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        // Alert tests whose eval_time falls in [ts, ts + interval) compare with this evaluation.
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts + interval
        {
            errs.extend(check_alerts(tg, &groups, alert_times[curr], &test_name));
            curr += 1;
        }
        ts += interval;
    }

    // PromQL expression tests, after every evaluation.
    errs.extend(
        tg.promql_tests
            .iter()
            .filter_map(|case| check_promql(&engine, &db, case)),
    );
    errs
}

/// The input series, as one `load` command, in time order.
fn input_samples(tg: &TestGroup) -> Result<Vec<InputSample>, String> {
    let mut samples: Vec<InputSample> = Vec::new();
    for (series, values) in &tg.input_series {
        let (labels, vals) = parse_series(&format!("{series} {values}"))
            .map_err(|e| format!("load: series {series:?}: {e}"))?;
        for (k, v) in vals.iter().enumerate() {
            match v {
                SeqValue::Float(f) => samples.push((k as i64 * tg.interval_ms, labels.clone(), *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram => {
                    return Err(format!(
                        "load: series {series:?}: native histogram samples are not supported"
                    ))
                }
            }
        }
    }
    samples.sort_by_key(|s| s.0);
    Ok(samples)
}

/// An in-memory Db without retention: a test may span centuries (promtool's long-period test
/// goes to 2262).
fn unbounded_db() -> Db {
    Db::open(crate::tsdb::Options {
        path: None,
        retention_ms: i64::MAX,
        max_bytes: None,
        ..Default::default()
    })
    .unwrap_or_default()
}

/// Puts the groups in `group_eval_order` and marks their alerting rules restored, as promtool
/// does, so `ALERTS` is written from the start.
fn order_groups(groups: &mut [Group], file: &TestFile) {
    groups.sort_by_key(|g| file.group_order.get(g.name()).copied().unwrap_or(0));
    for g in groups.iter_mut() {
        for a in g.alerting_rules_mut() {
            a.set_restored(true);
        }
    }
}

/// Every `alert_rule_test` item must name its alert.
fn check_alertnames(tg: &TestGroup) -> Result<(), String> {
    match tg.alert_tests.iter().find(|a| a.alertname.is_empty()) {
        None => Ok(()),
        Some(a) => {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            Err(format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(a.eval_time_ms)
            ))
        }
    }
}

/// Appends the samples from `next` up to time `ts`; returns the index of the first one left.
fn load_until(db: &Db, samples: &[InputSample], next: usize, ts: i64) -> Result<usize, String> {
    let end = samples[next..]
        .iter()
        .position(|s| s.0 > ts)
        .map_or(samples.len(), |k| next + k);
    if end == next {
        return Ok(next);
    }
    let batch: Vec<(Labels, i64, f64)> = samples[next..end]
        .iter()
        .map(|(t, l, v)| (l.clone(), *t, *v))
        .collect();
    let r = db.append_batch(&batch).map_err(|e| format!("load: {e}"))?;
    if let Some(rej) = r.rejected.first() {
        return Err(format!(
            "load: {} sample for series {} at {}",
            if rej.out_of_order {
                "out-of-order"
            } else {
                "duplicate"
            },
            go_labels(&rej.labels),
            model_duration(rej.t)
        ));
    }
    Ok(end)
}

/// Evaluates every group at `ts`; returns the rule errors.
fn eval_groups(
    groups: &mut [Group],
    ts: i64,
    db: &Db,
    engine: &Engine,
    ctx: &EvalContext,
) -> Vec<String> {
    let mut eval_errs = Vec::new();
    for g in groups.iter_mut() {
        let r = g.eval(ts, db, engine, ctx);
        for fail in r.failures {
            eval_errs.push(format!(
                "    rule: {}, time: {}, err: {}",
                fail.rule,
                go_duration(ts),
                fail.error
            ));
        }
    }
    eval_errs
}

/// Compares the firing alerts with the `alert_rule_test` items at time `t`.
fn check_alerts(tg: &TestGroup, groups: &[Group], t: i64, test_name: &str) -> Vec<String> {
    let names: HashSet<&str> = tg
        .alert_tests
        .iter()
        .filter(|a| a.eval_time_ms == t)
        .map(|a| a.alertname.as_str())
        .collect();
    let mut got: HashMap<String, Vec<LabelsAndAnnotations>> = HashMap::new();
    for g in groups {
        for rule in g.alerting_rules() {
            if !names.contains(rule.name()) {
                continue;
            }
            let firing = rule
                .active_alerts()
                .into_iter()
                .filter(|a| a.state == crate::rules::AlertState::Firing)
                .map(|a| LabelsAndAnnotations {
                    labels: labels_pairs(&a.labels),
                    annotations: labels_pairs(&a.annotations),
                });
            got.entry(rule.name().to_string())
                .or_default()
                .extend(firing);
        }
    }
    let mut errs = Vec::new();
    for case in tg.alert_tests.iter().filter(|a| a.eval_time_ms == t) {
        let mut got_alerts = got.get(&case.alertname).cloned().unwrap_or_default();
        let mut exp_alerts = case.exp_alerts.clone();
        got_alerts.sort();
        exp_alerts.sort();
        if got_alerts != exp_alerts {
            errs.push(format!(
                "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                case.alertname,
                model_duration(case.eval_time_ms),
                indent_lines(&alerts_string(&exp_alerts), "            "),
                indent_lines(&alerts_string(&got_alerts), "            "),
            ));
        }
    }
    errs
}

/// Runs one `promql_expr_test` item; its failure, if any.
fn check_promql(engine: &Engine, db: &Db, case: &PromqlTest) -> Option<String> {
    let fail = |msg: String| {
        format!(
            "    expr: {}, time: {}, err: {msg}",
            go_quote(&case.expr),
            model_duration(case.eval_time_ms)
        )
    };
    let mut got = match query(engine, db, &case.expr, case.eval_time_ms) {
        Ok(v) => v,
        Err(e) => return Some(fail(e)),
    };
    let mut exp = Vec::new();
    for (l, v) in &case.exp_samples {
        // Go's parser.ParseMetric reads "" as the empty label set (a scalar's sample).
        if l.trim().is_empty() {
            exp.push((Labels::empty(), *v));
            continue;
        }
        match parse_series(l) {
            Ok((labels, vals)) if vals.is_empty() => exp.push((labels, *v)),
            Ok(_) => return Some(fail(format!("labels {}: unexpected values", go_quote(l)))),
            Err(e) => return Some(fail(format!("labels {}: {e}", go_quote(l)))),
        }
    }
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // Go's reflect.DeepEqual: floats by `==` (NaN never equal).
    let same =
        exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
    (!same).then(|| {
        format!(
            "    expr: {}, time: {},\n        exp: {}\n        got: {}",
            go_quote(&case.expr),
            model_duration(case.eval_time_ms),
            samples_string(&exp),
            samples_string(&got)
        )
    })
}

/// promtool's `query`: a vector, or a scalar as one sample without labels.
fn query(engine: &Engine, db: &Db, expr: &str, t: i64) -> Result<Vec<(Labels, f64)>, String> {
    let e = crate::promql::parse(expr).map_err(|e| e.to_string())?;
    let r = engine.instant_query(db, &e, t).map_err(|e| e.to_string())?;
    match r.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

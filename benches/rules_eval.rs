//! Rule evaluation time per cycle:
//! - the shipped `rules/prometheus/recording.yml` and `rules/prometheus/alerts.yml` over a day of demo-shaped series
//!   (4 nodes, 5 s apart);
//! - 1,000 alerting rules over 10,000 series (goal: well under the 5 s cycle on two cores).
//!
//! The baseline, measured in the same run, is the same expressions evaluated as bare instant
//! queries with the engine: the ratio is what the rule machinery (state, ALERTS series,
//! templates, staleness) adds.
//!
//! `cargo bench --bench rules_eval`.

use std::time::Instant;

use depin_orcha::labels::Labels;
use depin_orcha::promql::{self, Engine};
use depin_orcha::rules::{self, EvalContext};
use depin_orcha::tsdb::Db;

const T0: i64 = 1_700_000_000_000;

fn demo_db() -> (Db, i64) {
    let db = Db::in_memory();
    let nodes = [
        ("storj", "storj", "STORJ"),
        ("golem", "golem", "GLM"),
        ("streamr", "streamr", "DATA"),
        ("grass", "grass", "GRASS"),
    ];
    let steps = 24 * 720; // a day at 5 s
    let mut batch = Vec::new();
    for i in 0..steps {
        let t = T0 + i * 5_000;
        batch.clear();
        for (k, (node, protocol, token)) in nodes.iter().enumerate() {
            let l = |name: &str, extra: &[(&str, &str)]| {
                let mut p = vec![("__name__", name), ("node", node), ("protocol", protocol)];
                p.extend_from_slice(extra);
                Labels::from_pairs(p)
            };
            let earned = (i as f64) * 0.0001 * (k as f64 + 1.0);
            batch.push((l("depin_earnings_usd_total", &[]), t, earned));
            batch.push((
                l("depin_earnings_total", &[("token", token)]),
                t,
                earned * 3.0,
            ));
            batch.push((l("depin_adapter_up", &[]), t, 1.0));
            batch.push((l("depin_adapter_consecutive_failures", &[]), t, 0.0));
            for (r, alloc, usage) in [
                ("cpu_cores", 2.0, 1.3),
                ("memory_bytes", 4e9, 2.5e9),
                ("disk_bytes", 5e11, 3e11),
                ("bandwidth_bytes_per_second", 2e6, 1.1e6),
            ] {
                batch.push((l(&format!("depin_allocation_{r}"), &[]), t, alloc));
                batch.push((
                    l(&format!("depin_usage_{r}"), &[]),
                    t,
                    usage * (1.0 + 0.1 * ((i % 50) as f64 / 50.0)),
                ));
            }
            batch.push((
                l("depin_adapter_poll_errors_total", &[("reason", "timeout")]),
                t,
                0.0,
            ));
        }
        for r in [
            "cpu_cores",
            "memory_bytes",
            "disk_bytes",
            "bandwidth_bytes_per_second",
        ] {
            batch.push((
                Labels::from_pairs([("__name__", format!("depin_host_capacity_{r}"))]),
                t,
                1e12,
            ));
        }
        db.append_batch(&batch).expect("append");
    }
    (db, T0 + (steps - 1) * 5_000)
}

fn many_db(series: usize) -> (Db, i64) {
    let db = Db::in_memory();
    let steps = 120; // 10 minutes at 5 s
    let mut batch = Vec::with_capacity(series);
    for i in 0..steps {
        let t = T0 + i * 5_000;
        batch.clear();
        for s in 0..series {
            let l = Labels::from_pairs([
                ("__name__", "node_metric".to_string()),
                ("instance", format!("host{}", s / 100)),
                ("series", format!("{}", s % 100)),
            ]);
            batch.push((l, t, ((s * 7 + i as usize) % 100) as f64));
        }
        db.append_batch(&batch).expect("append");
    }
    (db, T0 + (steps - 1) * 5_000)
}

/// Evaluates every group `cycles` times at `ts`, `ts + 5 s`, …; returns the mean seconds per
/// cycle.
fn time_rules(groups: &mut [rules::Group], db: &Db, engine: &Engine, ts: i64, cycles: i64) -> f64 {
    let ctx = EvalContext::default();
    let t = Instant::now();
    for c in 0..cycles {
        for g in groups.iter_mut() {
            let _ = g.eval(ts + c * 5_000, db, engine, &ctx);
        }
    }
    t.elapsed().as_secs_f64() / cycles as f64
}

fn time_bare(exprs: &[promql::Expr], db: &Db, engine: &Engine, ts: i64, cycles: i64) -> f64 {
    let t = Instant::now();
    for c in 0..cycles {
        for e in exprs {
            let _ = engine.instant_query(db, e, ts + c * 5_000);
        }
    }
    t.elapsed().as_secs_f64() / cycles as f64
}

fn exprs_of(groups: &[rules::Group]) -> Vec<promql::Expr> {
    groups
        .iter()
        .flat_map(|g| g.rules().iter().map(|r| r.expr().clone()))
        .collect()
}

fn main() {
    let engine = Engine::default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));

    let (db, end) = demo_db();
    let files = [
        root.join("rules/prometheus/recording.yml"),
        root.join("rules/prometheus/alerts.yml"),
    ];
    let mut groups = rules::load_files(&files).expect("shipped rules load");
    let n_rules: usize = groups.iter().map(|g| g.rules().len()).sum();
    let exprs = exprs_of(&groups);
    let bare = time_bare(&exprs, &db, &engine, end, 5);
    let ours = time_rules(&mut groups, &db, &engine, end, 5);
    println!("shipped rules ({n_rules} rules) over a day of 4 demo nodes");
    println!(
        "  per cycle: {:.2} ms (bare instant queries: {:.2} ms, ratio {:.2})",
        ours * 1e3,
        bare * 1e3,
        ours / bare
    );

    let (db, end) = many_db(10_000);
    let mut text = String::from("groups:\n  - name: many\n    rules:\n");
    for i in 0..1_000 {
        // Each rule selects 100 series (one host); a tenth of them are above the threshold.
        text.push_str(&format!(
            "      - alert: A{i}\n        expr: node_metric{{instance=\"host{}\"}} > 89\n        for: 1m\n        labels: {{severity: warning}}\n        annotations: {{summary: 'value {{{{ $value }}}} on {{{{ $labels.instance }}}}'}}\n",
            i % 100
        ));
    }
    let mut groups = rules::parse_rule_file("many.yml", &text).expect("generated rules parse");
    let exprs = exprs_of(&groups);
    let bare = time_bare(&exprs, &db, &engine, end, 3);
    let ours = time_rules(&mut groups, &db, &engine, end, 3);
    println!("1,000 alerting rules over 10,000 series (each rule: 100 series, 10 firing)");
    println!("  per cycle: {:.0} ms (bare instant queries: {:.0} ms, ratio {:.2}); the cycle is 5 s: {:.1} % of it", ours * 1e3, bare * 1e3, ours / bare, ours / 5.0 * 100.0);
}

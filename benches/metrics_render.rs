//! Time to render `/metrics` with about 1,000 series, against a baseline measured in the same
//! run: writing the same lines with `write!` into a `String`, the least any renderer must do.
//!
//! `cargo bench --bench metrics_render`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use depin_orcha::adapters::decimal::Decimal;
use depin_orcha::adapters::reading::Reading;
use depin_orcha::earnings::{Earnings, Ledger};
use depin_orcha::metrics::Metrics;
use depin_orcha::resources::Resource;

fn main() {
    let m = Metrics::new(&[]).expect("metrics");
    let ledger = std::sync::Arc::new(Earnings::new(Ledger::in_memory(), &[]));
    Earnings::register(&ledger, m.registry()).expect("earnings collector");
    // 34 nodes × 29 series (8 allocation/usage gauges, up, earnings in token and USD, last
    // success, failures, a poll-duration histogram of 14 buckets + sum + count, poll errors)
    // plus the process' own ≈ 1,000 series.
    let none = BTreeMap::new();
    for i in 0..34 {
        let n = m.labels_for(&format!("node{i}"), "golem", &none);
        for r in Resource::ALL {
            m.set_allocation(&n, r, i as f64 * 1.5);
            m.set_usage(&n, r, Some(i as f64 * 0.7));
        }
        m.set_up(&n, true);
        ledger.add_node(n.values().to_vec());
        let glm = Decimal::from_f64(0.123 * i as f64, 9).expect("finite");
        let r = [Reading::counter("GLM", glm)];
        ledger
            .apply(n.node(), n.node(), 0, &r, &|_| Some(0.3))
            .expect("in memory");
        m.set_last_success(&n, 1.7e9 + i as f64);
        m.set_consecutive_failures(&n, 0);
        m.observe_poll_duration(&n, 0.001);
    }
    let text = m.render();
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();

    let iters = 2_000;
    let t = Instant::now();
    let mut total = 0;
    for _ in 0..iters {
        total += m.render().len();
    }
    let ours = t.elapsed().as_secs_f64() / iters as f64;

    let t = Instant::now();
    let mut base_total = 0;
    for _ in 0..iters {
        let mut s = String::with_capacity(text.len());
        for l in &lines {
            let (name, value) = l.rsplit_once(' ').unwrap_or((l, "0"));
            let v: f64 = value.parse().unwrap_or(0.0);
            let _ = writeln!(s, "{name} {v}");
        }
        base_total += s.len();
    }
    let base = t.elapsed().as_secs_f64() / iters as f64;
    assert!(total > 0 && base_total > 0);
    println!("/metrics render with {series} series");
    println!(
        "{:<40} {:>10.1} µs",
        "depin-orcha (gather + TextEncoder)",
        ours * 1e6
    );
    println!(
        "{:<40} {:>10.1} µs",
        "baseline: write! of the same lines",
        base * 1e6
    );
    println!("ratio: {:.2}", ours / base);
}

//! Two hosts, one Prometheus: two depin-orcha binaries, each with a node called `fine` that
//! earns and a node called `broken` that fails every poll, scraped by one real Prometheus
//! (Debian's 2.42) that evaluates the shipped recording rules and alerts. The hosts stay apart
//! in every aggregation (two series where the old `sum by (node, protocol)` made one), the
//! alerts carry `instance`, and the `:rate5m` recording rules hold USD per second (equal to
//! `rate()` at the same instant, not 3600 times it). Only the `for:` of the two alerts checked
//! is shortened, so the test takes seconds.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn query(prom: SocketAddr, expr: &str, time: Option<f64>) -> Vec<serde_json::Value> {
    let mut path = format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()
    );
    if let Some(t) = time {
        path.push_str(&format!("&time={t:.3}"));
    }
    match try_http(prom, "GET", &path, None) {
        Ok(r) if r.status == 200 => r.json()["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn instances(res: &[serde_json::Value]) -> BTreeSet<String> {
    res.iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(String::from))
        .collect()
}

#[test]
fn two_hosts_with_same_named_nodes_stay_apart_in_rules_and_alerts() {
    let Some(prom_bin) = common::prometheus_bin() else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root.join("rules/prometheus/alerts.yml")).unwrap();
    let mut alerts = shipped.clone();
    for (anchor, short) in [
        (
            "depin_adapter_up == 0\n        for: 5m",
            "depin_adapter_up == 0\n        for: 2s",
        ),
        (
            "          > 0.1\n        for: 10m",
            "          > 0.1\n        for: 2s",
        ),
    ] {
        assert!(
            alerts.contains(anchor),
            "alerts.yml changed: adapt this test ({anchor:?})"
        );
        alerts = alerts.replacen(anchor, short, 1);
    }
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("alerts.yml"), alerts).unwrap();
    std::fs::copy(
        root.join("rules/prometheus/recording.yml"),
        rules.join("recording.yml"),
    )
    .unwrap();

    let cfg = dir.path().join("orcha.yml");
    std::fs::write(
        &cfg,
        r#"
global: {poll_interval: 1s, poll_timeout: 1s, scrape_interval: 1s, evaluation_interval: 1s}
host:
  capacity: {cpu_cores: 4, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}
prices: {STORJ: 0.45, GLM: 0.3}
nodes:
  - {name: broken, kind: sim, sim: {protocol: golem, allocation: {cpu_cores: 1, memory_bytes: 1GiB}, fault: {mode: error}}}
  - {name: fine, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 100GB}, market: {rate_per_hour: 360, noise: 0}}}
"#,
    )
    .unwrap();
    let hosts: Vec<Orcha> = (0..2)
        .map(|i| {
            let storage = dir.path().join(format!("data{i}"));
            Orcha::start(&[
                "--config.file",
                cfg.to_str().unwrap(),
                "--storage.path",
                storage.to_str().unwrap(),
            ])
        })
        .collect();
    for h in &hosts {
        h.wait_ready();
    }
    let want: BTreeSet<String> = hosts.iter().map(|h| h.addr.to_string()).collect();

    let port = common::free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}/*.yml']\nscrape_configs:\n  - job_name: home\n    static_configs: [{{targets: ['{}', '{}']}}]\n",
            rules.display(),
            hosts[0].addr,
            hosts[1].addr
        ),
    )
    .unwrap();
    let _prom = common::KillOnDrop(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Per node: one series per host, for the node of the same name.
    let per_node = r#"node_protocol:depin_earnings_usd:rate5m{node="fine"}"#;
    wait_until(Duration::from_secs(60), "a per-node rate per host", || {
        instances(&query(prom, per_node, None)) == want
    });
    for expr in [
        r#"protocol:depin_earnings_usd:rate1h{protocol="storj"}"#,
        "instance:depin_earnings_usd:rate5m",
        r#"node_protocol:depin_utilization:ratio{node="fine",resource="disk_bytes"}"#,
        r#"instance:depin_allocation:ratio{resource="disk_bytes"}"#,
    ] {
        wait_until(Duration::from_secs(30), expr, || {
            let r = query(prom, expr, None);
            r.len() == 2 && instances(&r) == want
        });
    }

    // Per second: the recorded value is rate() of the same series at the same instant.
    for s in query(prom, per_node, None) {
        let t = s["value"][0].as_f64().unwrap();
        let recorded: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        let inst = s["metric"]["instance"].as_str().unwrap();
        let raw = query(
            prom,
            &format!(r#"rate(depin_earnings_usd_total{{node="fine",instance="{inst}"}}[5m])"#),
            Some(t),
        );
        let raw: f64 = raw[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(recorded > 0.0, "{inst} earns nothing: {s}");
        // A scrape that landed after the rule's evaluation (at its timestamp) moves rate() a
        // little; per hour would be 3600 times.
        let ratio = recorded / raw;
        assert!(
            (0.5..2.0).contains(&ratio),
            "{inst}: recorded {recorded}, rate() {raw} USD/s: ratio {ratio}"
        );
    }

    // The alerts carry instance: one DepinNodeDown and one DepinPollErrorsHigh per host.
    for name in ["DepinNodeDown", "DepinPollErrorsHigh"] {
        let expr = format!(r#"ALERTS{{alertname="{name}",alertstate="firing",node="broken"}}"#);
        wait_until(Duration::from_secs(60), &expr, || {
            instances(&query(prom, &expr, None)) == want
        });
    }
    drop(hosts);
}

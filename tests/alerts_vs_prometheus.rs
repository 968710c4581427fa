//! The shipped `rules/prometheus/alerts.yml` in a real Prometheus scraping the real depin-orcha binary,
//! and in depin-orcha itself: a simulated node that fails every poll fires `DepinNodeDown` in
//! both, with the same labels (Prometheus adds `job` and `instance` at scrape time) and the same
//! annotations. The shipped alert waits `for: 5m`; this test shortens that one value.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The firing `DepinNodeDown` alerts of an `/api/v1/alerts` answer, as (labels, annotations)
/// without the scrape's `job`/`instance`.
fn firing(body: &serde_json::Value) -> Vec<(serde_json::Value, serde_json::Value)> {
    body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "DepinNodeDown" && a["state"] == "firing")
        .map(|a| {
            let mut l = a["labels"].clone();
            if let Some(m) = l.as_object_mut() {
                m.remove("job");
                m.remove("instance");
            }
            (l, a["annotations"].clone())
        })
        .collect()
}

#[test]
fn prometheus_and_depin_orcha_fire_the_same_node_down_alert() {
    let Some(prom_bin) = common::prometheus_bin() else {
        return;
    };
    let dir = temp_dir("alerts-vs-prom");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("rules/prometheus/alerts.yml")).unwrap();
    let anchor = "depin_adapter_up == 0\n        for: 5m";
    assert!(
        shipped.contains(anchor),
        "DepinNodeDown no longer reads `depin_adapter_up == 0` / `for: 5m`: adapt this test"
    );
    let rules = dir.join("alerts.yml");
    std::fs::write(
        &rules,
        shipped.replacen(anchor, "depin_adapter_up == 0\n        for: 2s", 1),
    )
    .unwrap();
    let cfg = dir.join("orcha.yml");
    std::fs::write(
        &cfg,
        r#"
global: {poll_interval: 1s, poll_timeout: 1s, scrape_interval: 1s, evaluation_interval: 1s}
host:
  capacity: {cpu_cores: 4, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}
prices: {STORJ: 0.45, GLM: 0.3}
nodes:
  - {name: broken, kind: sim, sim: {protocol: golem, allocation: {cpu_cores: 1, memory_bytes: 1GiB}, fault: {mode: error}}}
  - {name: fine, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 100GB}}}
"#,
    )
    .unwrap();
    let orcha = Orcha::start(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--rules.file",
        rules.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    orcha.wait_ready();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: depin-orcha\n    static_configs: [{{targets: ['{}']}}]\n",
            rules.display(),
            orcha.addr
        ),
    )
    .unwrap();
    let _prom = common::KillOnDrop(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(45);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        ours = firing(&orcha.get("/api/v1/alerts").json());
        theirs = match try_http(prom_addr, "GET", "/api/v1/alerts", None) {
            Ok(r) if r.status == 200 => firing(&r.json()),
            _ => continue,
        };
        if !ours.is_empty() && !theirs.is_empty() {
            break;
        }
    }
    assert_eq!(
        ours.len(),
        1,
        "depin-orcha's firing DepinNodeDown alerts: {ours:?}"
    );
    assert_eq!(
        theirs.len(),
        1,
        "Prometheus' firing DepinNodeDown alerts: {theirs:?}"
    );
    assert_eq!(ours[0].0["node"], "broken");
    assert_eq!(
        ours, theirs,
        "the same alert, labels and annotations, in both"
    );
}

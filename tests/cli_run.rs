//! The runnable core through the real binary: the demo starts with no config, `/metrics` holds
//! the four simulated nodes and passes `promtool check metrics`, a hanging node does not slow
//! the others, a bad config stops the start with file and line, SIGTERM exits cleanly, and
//! history survives a `kill -9`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn demo_serves_four_nodes_and_promtool_accepts_metrics() {
    let dir = temp_dir("demo");
    let orcha = Orcha::start(&["--storage.path", dir.to_str().unwrap()]);
    orcha.wait_ready();
    let r = orcha.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    for node in ["storj", "golem", "streamr", "grass"] {
        let node_label = format!("node=\"{node}\"");
        assert_eq!(
            metric_value(&r.body, "depin_adapter_up", &[&node_label]),
            Some(1.0),
            "{node} up"
        );
        assert!(
            metric_value(&r.body, "depin_earnings_total", &[&node_label]).is_some(),
            "{node} earnings"
        );
    }
    for fam in [
        "depin_earnings_usd_total",
        "depin_token_price_usd",
        "depin_allocation_cpu_cores",
        "depin_usage_memory_bytes",
        "depin_host_capacity_disk_bytes",
        "depin_adapter_poll_duration_seconds_bucket",
        "depin_orcha_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metric_value(&r.body, fam, &[]).is_some(),
            "{fam} missing from /metrics"
        );
    }
    // What grows with time is on /metrics: the stored history and the event ring, nonzero
    // once the first scrapes are stored and the first poll events published.
    // (The event watcher publishes on its own tick, so the first events may come a moment
    // after the server is ready: read /metrics again until they are there.)
    for fam in [
        "depin_tsdb_head_series",
        "depin_tsdb_samples",
        "depin_tsdb_memory_bytes",
        "depin_events_buffered_bytes",
    ] {
        wait_until(Duration::from_secs(30), &format!("{fam} above 0"), || {
            metric_value(&orcha.get("/metrics").body, fam, &[]).is_some_and(|v| v > 0.0)
        });
    }
    for fam in [
        "depin_tsdb_wal_storage_size_bytes",
        "depin_tsdb_query_cache_bytes",
    ] {
        assert!(metric_value(&r.body, fam, &[]).is_some(), "{fam} missing");
    }
    // The stored history's size is a series like any other (the first scrape stored it
    // before anything was stored: 0; the next one, a scrape interval later, is larger).
    wait_until(
        Duration::from_secs(30),
        "a stored depin_tsdb_memory_bytes above 0",
        || {
            orcha
                .get("/api/v1/query?query=depin_tsdb_memory_bytes%20%3E%200")
                .body
                .contains("depin_tsdb_memory_bytes")
        },
    );
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics complained:\n{text}"
    );
}

/// One node hangs for ever; the other three keep polling every 5 s (the default interval).
#[test]
fn a_hanging_node_does_not_delay_the_others() {
    let dir = temp_dir("hang");
    let cfg = dir.join("hang.yml");
    std::fs::write(
        &cfg,
        r#"
host:
  capacity: {cpu_cores: 4, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}
prices: {STORJ: 0.45, GLM: 0.3}
nodes:
  - {name: stuck, kind: sim, sim: {protocol: golem, allocation: {cpu_cores: 1}, fault: {mode: hang}}}
  - {name: a, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 100GB}}}
  - {name: b, kind: sim, sim: {protocol: golem, allocation: {cpu_cores: 1, memory_bytes: 1GiB}}}
"#,
    )
    .unwrap();
    let orcha = Orcha::start(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(16_500));
    let elapsed = start.elapsed().as_secs_f64();
    let m = orcha.get("/metrics").body;
    for node in ["a", "b"] {
        let polls = metric_value(
            &m,
            "depin_adapter_poll_duration_seconds_count",
            &[&format!("node=\"{node}\"")],
        )
        .unwrap();
        // Polls at 0, 5, 10, 15 s: four in 16.5 s. A node delayed by the 4 s timeout of the
        // stuck one would manage three at most.
        let expected = (elapsed / 5.0).floor() + 1.0;
        assert!(
            polls >= expected,
            "node {node}: {polls} polls in {elapsed:.1} s, expected {expected}"
        );
        assert_eq!(
            metric_value(&m, "depin_adapter_up", &[&format!("node=\"{node}\"")]),
            Some(1.0)
        );
    }
    assert_eq!(
        metric_value(&m, "depin_adapter_up", &["node=\"stuck\""]),
        Some(0.0)
    );
    assert!(
        metric_value(
            &m,
            "depin_adapter_poll_errors_total",
            &["node=\"stuck\"", "reason=\"timeout\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn an_invalid_config_stops_the_start_with_file_line_and_key() {
    let dir = temp_dir("badcfg");
    let cfg = dir.join("bad.yml");
    std::fs::write(
        &cfg,
        "host:\n  capacity: {cpu_cores: -2, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}\nglobal:\n  poll_interval: soon\nnodes:\n  - {name: a, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 1GB}}}\n  - {name: a, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 1GB}}}\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "run",
            "--web.listen-address",
            "127.0.0.1:0",
            "--config.file",
            cfg.to_str().unwrap(),
        ])
        .args(["--storage.path", dir.join("data").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.yml:2:",
        "host.capacity.cpu_cores",
        "bad.yml:4:",
        "global.poll_interval",
        "bad.yml:7:",
        "duplicate node name",
    ] {
        assert!(
            err.contains(needle),
            "error output lacks {needle:?}:\n{err}"
        );
    }
    assert!(!err.contains("listening"), "it started serving:\n{err}");
    assert!(
        !dir.join("data").exists(),
        "storage was created for an invalid config"
    );

    let check = Command::new(bin())
        .args(["check", "config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!check.status.success());
    let ok = Command::new(bin())
        .args(["check", "config"])
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/config/valid/full.yml"),
        )
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn sigterm_exits_cleanly_and_history_survives_kill_9() {
    let dir = temp_dir("restart");
    let data = dir.join("data");
    let args = ["--storage.path", data.to_str().unwrap()];
    let orcha = Orcha::start(&args);
    orcha.wait_ready();
    std::thread::sleep(Duration::from_millis(10_500)); // the first scrape is 5 s after the start: two or three by now
    let q = "/api/v1/query?query=count_over_time(depin_adapter_up%7Bnode%3D%22golem%22%7D%5B1h%5D)";
    let before = orcha.get(q).json()["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(before >= 2.0, "only {before} samples after 10.5 s");
    orcha.kill9();

    let orcha = Orcha::start(&args);
    orcha.wait_ready();
    let after = orcha.get(q).json()["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(
        after >= before,
        "kill -9 lost history: {before} samples before, {after} after the restart"
    );
    let status = orcha.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

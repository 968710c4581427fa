//! Faults while the real binary runs: nodes that hang, refuse, fail or answer garbage, an
//! Alertmanager that refuses connections, and a storage path whose disk fills up. In every
//! case the loops keep running (the healthy node is still polled on its cadence, `/metrics`
//! and the query API still answer) and the fault shows as a metric and a log line.
//!
//! There is no price API to take down: prices are static in the config.
//!
//! The disk-full case mounts a 1 MiB tmpfs (root only; `chmod 0555` does not stop root). Where
//! `mount` is not allowed it says so and skips.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn polls(metrics: &str, node: &str) -> f64 {
    metric_value(
        metrics,
        "depin_adapter_poll_duration_seconds_count",
        &[&format!("node=\"{node}\"")],
    )
    .unwrap_or(0.0)
}

fn drain_log(orcha: &Orcha, into: &mut Vec<String>) {
    while let Ok(l) = orcha.log.try_recv() {
        into.push(l);
    }
}

#[test]
fn node_faults_and_a_refused_alertmanager_keep_the_loops_running() {
    let dir = temp_dir("faults");
    // A port nothing listens on: bind, read it, close.
    let am_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        [
            "global: {poll_interval: 1s, poll_timeout: 500ms}",
            "host:",
            "  capacity: {cpu_cores: 8, memory_bytes: 16GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}",
            "nodes:",
            "  - {name: good, kind: sim, sim: {protocol: golem, allocation: {cpu_cores: 2, memory_bytes: 4GiB, disk_bytes: 10GB}}}",
            "  - {name: hangs, kind: sim, sim: {protocol: grass, allocation: {bandwidth_bytes_per_second: 1MB}, fault: {mode: hang}}}",
            "  - {name: garbled, kind: sim, sim: {protocol: streamr, allocation: {bandwidth_bytes_per_second: 1MB}, fault: {mode: garbage}}}",
            "  - {name: refuses, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 100GB, bandwidth_bytes_per_second: 1MB}, fault: {mode: refused}}}",
            "  - {name: fails, kind: sim, sim: {protocol: storj, allocation: {disk_bytes: 100GB, bandwidth_bytes_per_second: 1MB}, fault: {mode: error}}}",
            "",
        ]
        .join("\n"),
    )
    .unwrap();
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, "groups:\n- name: faults\n  interval: 1s\n  rules:\n  - alert: NodeDown\n    expr: depin_adapter_up == 0\n").unwrap();
    let am = format!("http://127.0.0.1:{am_port}");
    let orcha = Orcha::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
        "--rules.file",
        rules.to_str().unwrap(),
        "--alertmanager.url",
        &am,
        "--alertmanager.timeout",
        "1s",
    ]);
    orcha.wait_ready();
    let first = orcha.get("/metrics").body;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let m = orcha.get("/metrics");
    assert_eq!(m.status, 200);
    let m = m.body;
    let elapsed = started.elapsed().as_secs_f64();
    // The healthy node keeps its 1 s cadence while the others fail (one poll may be in flight).
    let good = polls(&m, "good") - polls(&first, "good");
    assert!(
        good >= elapsed.floor() - 1.0,
        "good was polled {good} times in {elapsed:.1}s"
    );
    let up = |node: &str| metric_value(&m, "depin_adapter_up", &[&format!("node=\"{node}\"")]);
    assert_eq!(up("good"), Some(1.0), "{m}");
    for node in ["hangs", "garbled", "refuses", "fails"] {
        assert_eq!(up(node), Some(0.0), "{node} is not shown down");
    }
    let errors = |node: &str, reason: &str| {
        metric_value(
            &m,
            "depin_adapter_poll_errors_total",
            &[&format!("node=\"{node}\""), &format!("reason=\"{reason}\"")],
        )
        .unwrap_or(0.0)
    };
    assert!(
        errors("hangs", "timeout") >= 2.0,
        "hang not counted as timeout"
    );
    assert!(
        errors("garbled", "parse") >= 2.0,
        "garbage not counted as parse"
    );
    assert!(errors("refuses", "refused") >= 2.0, "refused not counted");
    // The alert fired, and the refused Alertmanager shows as errors.
    let am_errors = metric_value(&m, "depin_notifications_errors_total", &[]).unwrap_or(0.0);
    assert!(
        am_errors > 0.0,
        "no depin_notifications_errors_total for a refused Alertmanager:\n{}",
        m.lines()
            .filter(|l| l.contains("notif"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The query API still answers.
    let q = orcha.get("/api/v1/query?query=sum(depin_adapter_up)");
    assert_eq!(q.status, 200, "{}", q.body);
    let mut log = Vec::new();
    drain_log(&orcha, &mut log);
    for needle in ["hangs", "garbled", "refuses", &am_port.to_string()] {
        assert!(
            log.iter()
                .any(|l| l.contains(needle)
                    && (l.contains("level=warn") || l.contains("level=error"))),
            "no warning naming {needle} in the log:\n{}",
            log.join("\n")
        );
    }
    println!("faults: good polled {good} times in {elapsed:.1}s; Alertmanager errors {am_errors}");
}

/// Mounts a tmpfs of `size` at `at`; `false` (and a note) when this machine does not allow it.
fn mount_tmpfs(at: &Path, size: &str) -> bool {
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipping: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping: no mount command ({e})");
            false
        }
    }
}

struct Unmount<'a>(&'a Path);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .status();
    }
}

#[test]
fn a_full_disk_under_the_storage_path_keeps_polling_and_serving() {
    let dir = temp_dir("diskfull");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "2m") {
        return;
    }
    let _unmount = Unmount(&mnt);
    let orcha = Orcha::start(&["--storage.path", mnt.join("data").to_str().unwrap()]);
    orcha.wait_ready();
    // Fill the disk: write until ENOSPC.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let before = orcha.get("/metrics").body;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    let m = orcha.get("/metrics");
    assert_eq!(m.status, 200, "/metrics stopped answering on a full disk");
    let polled = polls(&m.body, "golem") - polls(&before, "golem");
    let expected = (started.elapsed().as_secs_f64() / 5.0).floor() - 1.0;
    assert!(
        polled >= expected,
        "golem polled {polled} times in 12 s with a full disk (5 s cadence)"
    );
    let q = orcha.get("/api/v1/query?query=count_over_time(depin_adapter_up%5B1m%5D)");
    assert_eq!(q.status, 200, "{}", q.body);
    let mut log = Vec::new();
    drain_log(&orcha, &mut log);
    let failures: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains("No space left") || l.contains("ENOSPC") || l.contains("os error 28")
        })
        .collect();
    assert!(
        !failures.is_empty(),
        "no log line says the disk is full:\n{}",
        log.join("\n")
    );
    // What a metric says about it, if the tsdb has one (reported when it has none).
    let wal_metric = m
        .body
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("wal") || l.contains("tsdb"))
                && (l.contains("fail") || l.contains("error"))
        })
        .map(String::from)
        .collect::<Vec<_>>();
    println!(
        "disk full: {polled} polls in 12 s; log: {}; metrics about it: {wal_metric:?}",
        failures[0]
    );
}

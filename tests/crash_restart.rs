//! Crash safety of the real binary: `kill -9` at random moments (between polls, during a rule
//! evaluation, in the middle of a reallocation whose `exec` actuator sleeps), restart on the same
//! `--storage.path`, and check what an operator would notice:
//!
//! - history: a series' sample count read over the API just before the kill is still there
//!   after the restart (at most the poll in flight is lost, and it was not counted);
//! - alerts: the pending alert's `activeAt` survives (`ALERTS_FOR_STATE` restored);
//! - reallocations: an intent killed in flight is resolved at start (`applied`, `rolled_back`
//!   or another outcome), never left without one.
//!
//! `CRASH_CYCLES` sets the number of kill/restart cycles (default 5; each takes 5–10 s, mostly waiting for the first scrape after a start).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

fn repo(rel: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

fn cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn query(addr: SocketAddr, q: &str) -> Vec<(serde_json::Value, f64)> {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = http(addr, "GET", &format!("/api/v1/query?query={enc}"), None);
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let j = r.json();
    j["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let v = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (s["metric"].clone(), v)
        })
        .collect()
}

fn post_json(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        raw.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default(),
    )
}

/// Samples reach the tsdb once per scrape interval (5 s) and the alert is evaluated every
/// second: wait until both show (the restored alert state is in place from the first
/// evaluation after start).
fn wait_for_data(orcha: &Orcha) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let n = query(orcha.addr, SAMPLES)
            .first()
            .map(|s| s.1)
            .unwrap_or(0.0);
        let a = query(orcha.addr, FOR_STATE)
            .first()
            .map(|s| s.1)
            .unwrap_or(f64::NAN);
        if n > 0.0 && a.is_finite() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no samples or no alert state 20 s after start");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every reallocation started before this process did must get an outcome from the recovery
/// at start; the undo runs the (one-second) actuator, so allow it some time.
fn wait_resolved(orcha: &Orcha, life_started: i64, cycle: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let h = orcha.get("/api/v1/reallocations").json();
        let open: Vec<serde_json::Value> = h["data"]["reallocations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r["outcome"].is_null() && r["started_ms"].as_i64().unwrap_or(0) < life_started
            })
            .collect();
        if open.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cycle {cycle}: 20 s after restart, reallocations from before the kill still have no outcome: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const SAMPLES: &str = r#"count_over_time(depin_adapter_up{node="golem"}[1h])"#;
const FOR_STATE: &str = r#"ALERTS_FOR_STATE{alertname="CrashTestPending"}"#;

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_state() {
    let dir = temp_dir("crash");
    let data = dir.join("data");
    let token = dir.join("token");
    std::fs::write(&token, "crash-token\n").unwrap();
    // An alert that is pending for the whole test, evaluated every second.
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: crash\n  interval: 1s\n  rules:\n  - alert: CrashTestPending\n    expr: depin_adapter_up >= 0\n    for: 1h\n",
    )
    .unwrap();
    // The shipped optimization rules, with golem's actuator a command that takes a second, so
    // a kill can land in the middle of a reallocation.
    let shipped = std::fs::read_to_string(repo("rules/optimization.yml")).unwrap();
    // The golem node's block is the first under `nodes:`; its first `actuator: sim` is golem's.
    let golem = shipped
        .find("\nnodes:\n  golem:\n")
        .expect("the shipped rules start `nodes:` with golem; update this test");
    let at = golem
        + shipped[golem..]
            .find("\n    actuator: sim\n")
            .expect("golem's actuator is sim in the shipped rules; update this test");
    let opt = dir.join("optimization.yml");
    std::fs::write(
        &opt,
        format!(
            "{}\n    actuator: {{kind: exec, command: [/bin/sleep, \"1\"]}}\n{}",
            &shipped[..at],
            &shipped[at + "\n    actuator: sim\n".len()..]
        ),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "--storage.path".into(),
        data.display().to_string(),
        "--rules.file".into(),
        rules.display().to_string(),
        "--optimization.rules-file".into(),
        opt.display().to_string(),
        "--web.auth-token-file".into(),
        token.display().to_string(),
        "--rules.alert.for-grace-period".into(),
        "0s".into(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash_restart: seed {seed} (CRASH_SEED to replay)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut before: Option<(f64, f64)> = None;
    let mut intents_killed = 0;
    let mut survived = 0;
    for cycle in 0..cycles() {
        let life_started = now_ms();
        let orcha = Orcha::start(&argv);
        orcha.wait_ready();
        wait_for_data(&orcha);
        if let Some((count, active_at)) = before {
            let after = query(orcha.addr, SAMPLES);
            let n = after.first().map(|s| s.1).unwrap_or(0.0);
            assert!(
                n >= count,
                "cycle {cycle}: {count} samples before the kill, {n} after the restart"
            );
            let st = query(orcha.addr, FOR_STATE);
            let restored = st.first().map(|s| s.1).unwrap_or(f64::NAN);
            assert_eq!(
                restored, active_at,
                "cycle {cycle}: the pending alert's activeAt was not restored"
            );
            wait_resolved(&orcha, life_started, cycle);
        }
        // Let it poll and evaluate a while, maybe start a reallocation, then kill at a random
        // moment: before, during or after the actuator's second.
        std::thread::sleep(Duration::from_millis(rng.random_range(200..2500)));
        if rng.random_bool(0.6) {
            let cores = rng.random_range(1..=4);
            let (status, body) = post_json(
                orcha.addr,
                "/api/v1/reallocations",
                "crash-token",
                &format!(r#"{{"allocations":{{"golem":{{"cpu_cores":{cores}}}}},"force":true}}"#),
            );
            assert!(
                status == 202 || status == 409,
                "POST /api/v1/reallocations: {status} {body}"
            );
            if status == 202 {
                intents_killed += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        }
        let count = query(orcha.addr, SAMPLES)
            .first()
            .map(|s| s.1)
            .unwrap_or(0.0);
        let active_at = query(orcha.addr, FOR_STATE)
            .first()
            .map(|s| s.1)
            .unwrap_or(f64::NAN);
        assert!(
            count > 0.0 && active_at.is_finite(),
            "cycle {cycle}: nothing to compare ({count}, {active_at})"
        );
        before = Some((count, active_at));
        orcha.kill9();
        survived += 1;
    }
    // A last start checks the last kill and that every intent has an outcome once it settles.
    let life_started = now_ms();
    let orcha = Orcha::start(&argv);
    orcha.wait_ready();
    wait_for_data(&orcha);
    wait_resolved(&orcha, life_started, cycles());
    let (count, _) = before.unwrap();
    let n = query(orcha.addr, SAMPLES)
        .first()
        .map(|s| s.1)
        .unwrap_or(0.0);
    assert!(
        n >= count,
        "final: {count} samples before the kill, {n} after"
    );
    let h = orcha.get("/api/v1/reallocations").json();
    let list = h["data"]["reallocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for r in &list {
        *outcomes
            .entry(r["outcome"].as_str().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    assert!(
        !outcomes.contains_key("none"),
        "intents left without an outcome: {outcomes:?}"
    );
    println!(
        "crash_restart: {survived} kill -9 cycles survived; {intents_killed} reallocations requested before a kill; outcomes {outcomes:?}; {n} samples of golem's depin_adapter_up kept"
    );
}

/// golem's entry in `GET /api/v1/allocations`.
fn golem_allocation(orcha: &Orcha) -> serde_json::Value {
    let r = orcha.get("/api/v1/allocations");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["data"]["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["node"] == "golem").cloned())
        .unwrap_or_else(|| panic!("no golem in {}", r.body))
}

/// After a restart nothing has been read from the nodes until the controller's first round
/// (an interval after start): the allocations shown are those the history's last applied
/// reallocation left, not the configured ones, and they say so.
#[test]
fn after_a_restart_the_allocations_are_the_last_applied_ones() {
    let dir = temp_dir("crash-applied");
    let data = dir.join("data");
    let token = dir.join("token");
    std::fs::write(&token, "applied-token\n").unwrap();
    let rules = repo("rules/optimization.yml");
    let argv = [
        "--storage.path",
        data.to_str().unwrap(),
        "--optimization.rules-file",
        rules.as_str(),
        "--web.auth-token-file",
        token.to_str().unwrap(),
    ];
    let orcha = Orcha::start(&argv);
    orcha.wait_ready();
    let before = golem_allocation(&orcha);
    assert_eq!(before["allocation_source"], "configured", "{before}");
    let configured = before["allocation"]["cpu_cores"].as_f64().unwrap();
    // Fewer cores always fit the host; one more when it has only one.
    let wanted = if configured >= 2.0 {
        configured - 1.0
    } else {
        configured + 1.0
    };
    let (status, body) = post_json(
        orcha.addr,
        "/api/v1/reallocations",
        "applied-token",
        &format!(r#"{{"allocations":{{"golem":{{"cpu_cores":{wanted}}}}},"force":true}}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["id"]
        .as_u64()
        .unwrap();
    wait_until(Duration::from_secs(20), "the reallocation applied", || {
        let h = orcha.get("/api/v1/reallocations").json();
        let r = h["data"]["reallocations"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["id"] == id).cloned())
            .unwrap_or_default();
        match r["outcome"].as_str() {
            None => false,
            Some("applied") => true,
            Some(other) => panic!("reallocation {id} ended {other}: {r}"),
        }
    });
    let live = golem_allocation(&orcha);
    assert_eq!(
        live["allocation"]["cpu_cores"].as_f64(),
        Some(wanted),
        "{live}"
    );
    // A crash and a clean stop alike: the history is all that is left.
    orcha.kill9();
    for (how, next_stop_is_clean) in [("kill -9", true), ("SIGTERM", false)] {
        let orcha = Orcha::start(&argv);
        orcha.wait_ready();
        let after = golem_allocation(&orcha);
        assert_eq!(
            after["allocation"]["cpu_cores"].as_f64(),
            Some(wanted),
            "after a restart ({how}) the allocation is not the applied one: {after}"
        );
        assert_eq!(after["allocation_source"], "history", "{after}");
        assert_eq!(after["allocation_reallocation_id"], id, "{after}");
        // The other resources are the ones the reallocation left too (it kept them).
        for r in ["memory_bytes", "disk_bytes", "bandwidth_bytes_per_second"] {
            assert_eq!(
                after["allocation"][r], live["allocation"][r],
                "{r}: {after}"
            );
        }
        if next_stop_is_clean {
            assert!(orcha.terminate().success());
        }
    }
}

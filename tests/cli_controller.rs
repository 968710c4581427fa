//! The controller through the real binary: `plan` prints a plan with gate verdicts and applies
//! nothing, `check rules` accepts the shipped optimization rules and names the line of a bad
//! one, and the control API refuses state changes without the bearer token.

mod common;

use std::process::Command;

use common::*;

fn repo(rel: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn plan_prints_moves_and_gate_verdicts_and_applies_nothing() {
    let dir = temp_dir("plan");
    let out = Command::new(bin())
        .args([
            "plan",
            "--output",
            "json",
            "--optimization.rules-file",
            &repo("rules/optimization.yml"),
        ])
        .args(["--storage.path", dir.join("none").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plan --output json is JSON");
    let e = &j["evaluation"];
    let gates: Vec<&str> = e["gates"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["gate"].as_str().unwrap())
        .collect();
    for g in [
        "min_improvement",
        "min_confidence",
        "max_reallocations_per_hour",
        "max_reallocations_per_day",
        "max_reallocations_per_30_days",
        "min_hold",
        "max_step",
    ] {
        assert!(gates.contains(&g), "gate {g} missing from {gates:?}");
    }
    // One poll gives no rate history: confidence is 0, so the gates must not let it through.
    let decision = e["decision"].as_str().expect("a decision in words");
    assert!(
        decision.starts_with("rejected") || decision == "nothing to do",
        "decision: {decision}"
    );
    assert_eq!(e["mode"], "plan");
    assert!(!dir.join("none").exists(), "plan created storage");

    let text = Command::new(bin())
        .args([
            "plan",
            "--optimization.rules-file",
            &repo("rules/optimization.yml"),
        ])
        .args(["--storage.path", dir.join("none").to_str().unwrap()])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("Gates:") && t.contains("min_confidence"), "{t}");
}

#[test]
fn check_rules_takes_optimization_rules_and_names_the_bad_line() {
    let ok = Command::new(bin())
        .args([
            "check",
            "rules",
            &repo("rules/optimization.yml"),
            &repo("rules/prometheus/alerts.yml"),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let dir = temp_dir("badopt");
    let bad = dir.join("opt.yml");
    let text = std::fs::read_to_string(repo("rules/optimization.yml")).unwrap();
    let broken = text.replacen("min_confidence:", "min_confidance:", 1);
    assert_ne!(
        text, broken,
        "the shipped file has no min_confidence key to break"
    );
    std::fs::write(&bad, broken).unwrap();
    let out = Command::new(bin())
        .args(["check", "rules"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("opt.yml:") && stdout.contains("min_confidance"),
        "{stdout}"
    );
}

#[test]
fn control_api_needs_the_bearer_token() {
    let dir = temp_dir("control");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let orcha = Orcha::start(&[
        "--storage.path",
        dir.join("data").to_str().unwrap(),
        "--optimization.rules-file",
        &repo("rules/optimization.yml"),
        "--web.auth-token-file",
        token_file.to_str().unwrap(),
    ]);
    orcha.wait_ready();
    let r = http(orcha.addr, "POST", "/api/v1/controller/pause", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(metric_value(&orcha.get("/metrics").body, "depin_controller_paused", &[]) == Some(0.0));

    let r = post_with_token(orcha.addr, "/api/v1/controller/pause", "wrong");
    assert_eq!(r.status, 401);
    let r = post_with_token(orcha.addr, "/api/v1/controller/pause", "s3cret");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        metric_value(&orcha.get("/metrics").body, "depin_controller_paused", &[]),
        Some(1.0)
    );
    let a = orcha.get("/api/v1/allocations");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("golem"), "{}", a.body);
}

fn post_with_token(addr: std::net::SocketAddr, path: &str, token: &str) -> Response {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Response {
        status,
        headers: vec![],
        body,
    }
}

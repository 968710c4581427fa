//! Reloading rule files on the real binary: SIGHUP picks up a new rule; a broken file keeps
//! every old rule running and sets `depin_rules_last_reload_successful 0`; fixing it and
//! `POST /-/reload` brings it back to 1. A broken file at start stops the start, and says where
//! once.

mod common;

use std::time::Duration;

use common::*;

const ONE: &str = "groups:\n  - name: g\n    rules:\n      - record: job:one:sum\n        expr: sum(depin_adapter_up)\n";
const TWO: &str = "groups:\n  - name: g\n    rules:\n      - record: job:one:sum\n        expr: sum(depin_adapter_up)\n      - record: job:two:sum\n        expr: count(depin_adapter_up)\n";
const BROKEN: &str = "groups:\n  - name: g\n    rules:\n      - record: job:one:sum\n        expr: sum(depin_adapter_up\n";

fn rule_names(o: &Orcha) -> Vec<String> {
    let j = o.get("/api/v1/rules").json();
    let mut v: Vec<String> = j["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn sighup_and_reload_endpoint_keep_old_rules_on_failure() {
    let dir = temp_dir("reload");
    let rules = dir.join("r.yml");
    std::fs::write(&rules, ONE).unwrap();
    let orcha = Orcha::start(&[
        "--rules.file",
        rules.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    orcha.wait_ready();
    assert_eq!(rule_names(&orcha), ["job:one:sum"]);

    std::fs::write(&rules, TWO).unwrap();
    unsafe { libc::kill(orcha.child.id() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(15), "the new rule after SIGHUP", || {
        rule_names(&orcha) == ["job:one:sum", "job:two:sum"]
    });

    std::fs::write(&rules, BROKEN).unwrap();
    unsafe { libc::kill(orcha.child.id() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(15), "the failed reload to show", || {
        metric_value(
            &orcha.get("/metrics").body,
            "depin_rules_last_reload_successful",
            &[],
        ) == Some(0.0)
    });
    assert_eq!(
        rule_names(&orcha),
        ["job:one:sum", "job:two:sum"],
        "a failed reload dropped rules"
    );

    std::fs::write(&rules, ONE).unwrap();
    let r = http(orcha.addr, "POST", "/-/reload", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        metric_value(
            &orcha.get("/metrics").body,
            "depin_rules_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(rule_names(&orcha), ["job:one:sum"]);
}

#[test]
fn a_broken_file_at_start_stops_it_and_says_where_once() {
    let dir = temp_dir("reload-start");
    let rules = dir.join("broken.yml");
    std::fs::write(&rules, BROKEN).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "run",
            "--rules.file",
            rules.to_str().unwrap(),
            "--storage.path",
            dir.join("data").to_str().unwrap(),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a broken rule file: {stderr}"
    );
    let at = format!("{}:5", rules.display());
    assert_eq!(
        stderr.matches(&at).count(),
        1,
        "the error's place should be said once:\n{stderr}"
    );
    assert!(stderr.contains("did not load (1 error"), "{stderr}");
}

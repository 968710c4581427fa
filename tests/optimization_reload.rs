//! Reloading the optimization rules on the real binary, the three ways the rule files reload:
//! a change of the file (a 1 h planning interval becomes 1 s, and rounds start at once), a
//! broken file through `POST /-/reload` (500 naming file, line and key; the old rules keep
//! planning; `depin_optimization_rules_last_reload_successful 0`), and SIGHUP after the fix
//! (the new gate threshold shows in the plan's verdicts).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn reload_ok(o: &Orcha) -> Option<f64> {
    metric_value(
        &o.get("/metrics").body,
        "depin_optimization_rules_last_reload_successful",
        &[],
    )
}

/// The controller's last plan: its time and its text, or None before the first round.
fn last_plan(o: &Orcha) -> Option<(i64, String)> {
    let j = o.get("/api/v1/plan").json();
    let e = &j["data"]["evaluation"];
    if e.is_null() {
        return None;
    }
    Some((
        e["ts_ms"].as_i64().expect("evaluation.ts_ms"),
        j["data"]["text"].as_str().unwrap_or_default().to_string(),
    ))
}

#[test]
fn optimization_rules_reload_on_change_reload_endpoint_and_sighup() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = temp_dir("optimization-reload");
    // The demo config, with rule files looked at every second.
    let demo = std::fs::read_to_string(root.join("src/config/demo.yml")).unwrap();
    assert!(
        demo.contains("global:\n"),
        "the demo config has a global block"
    );
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        demo.replacen("global:\n", "global:\n  evaluation_interval: 1s\n", 1),
    )
    .unwrap();
    let shipped = std::fs::read_to_string(root.join("rules/optimization.yml")).unwrap();
    assert!(
        shipped.contains("min_confidence: 0.7 "),
        "shipped min_confidence moved"
    );
    let hourly = with_planning_interval(&shipped, "1h");
    let every_second = with_planning_interval(&shipped, "1s");
    let broken = every_second.replacen("min_confidence: 0.7 ", "min_confidence: high ", 1);
    let fixed = every_second.replacen("min_confidence: 0.7 ", "min_confidence: 0.95 ", 1);
    let rules = dir.join("optimization.yml");
    std::fs::write(&rules, &hourly).unwrap();

    let orcha = Orcha::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--optimization.rules-file",
        rules.to_str().unwrap(),
        "--controller.dry-run",
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    orcha.wait_ready();
    assert_eq!(reload_ok(&orcha), Some(1.0));
    let j = orcha.get("/api/v1/plan").json();
    assert!(
        j["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("every 1h"),
        "{j}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(last_plan(&orcha).is_none(), "planned before its hour");

    // 1. The file changes: the new interval is in force without any signal.
    std::fs::write(&rules, &every_second).unwrap();
    wait_until(
        Duration::from_secs(20),
        "a round at the reloaded 1 s interval",
        || last_plan(&orcha).is_some(),
    );
    let (first, text) = last_plan(&orcha).unwrap();
    assert!(text.contains("the minimum 0.70"), "{text}");

    // 2. A broken file through /-/reload: 500 with the place of the error, old rules kept.
    std::fs::write(&rules, &broken).unwrap();
    let r = http(orcha.addr, "POST", "/-/reload", None);
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("optimization.yml:"), "{}", r.body);
    assert!(r.body.contains("min_confidence"), "{}", r.body);
    assert_eq!(reload_ok(&orcha), Some(0.0));
    wait_until(
        Duration::from_secs(20),
        "the old 1 s rules to keep planning",
        || last_plan(&orcha).is_some_and(|(t, _)| t > first + 1500),
    );
    let (_, text) = last_plan(&orcha).unwrap();
    assert!(
        text.contains("the minimum 0.70"),
        "old gates not kept: {text}"
    );

    // 3. Fixed, and SIGHUP: the new threshold is in the verdicts.
    std::fs::write(&rules, &fixed).unwrap();
    unsafe { libc::kill(orcha.child.id() as i32, libc::SIGHUP) };
    wait_until(
        Duration::from_secs(20),
        "the fixed rules after SIGHUP",
        || {
            reload_ok(&orcha) == Some(1.0)
                && last_plan(&orcha).is_some_and(|(_, t)| t.contains("the minimum 0.95"))
        },
    );
}

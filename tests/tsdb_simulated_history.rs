//! `depin-orcha simulate SCENARIO --storage.path DIR` writes a day of simulated history into DIR;
//! `depin-orcha run --storage.path DIR` opens it from block files and serves it, with its own
//! scrapes continuing the same series.

mod common;

use std::process::Command;

use common::*;

fn query(orcha: &Orcha, q: &str) -> serde_json::Value {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = orcha.get(&format!("/api/v1/query?query={enc}"));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    r.json()["data"]["result"].clone()
}

fn value(v: &serde_json::Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_simulated_day_is_served_by_run_and_continued() {
    let dir = temp_dir("simulated-history");
    let data = dir.join("data");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/steady.yml");
    let out = Command::new(bin())
        .arg("simulate")
        .arg(&scenario)
        .args(["--days", "1", "--poll-interval", "60s", "--storage.path"])
        .arg(&data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("block-")
        })
        .count();
    // 2 h blocks; those of a whole UTC day are merged into one.
    assert!(blocks >= 2, "{blocks} block files for a simulated day");

    let orcha = Orcha::start(&["--storage.path", data.to_str().unwrap()]);
    orcha.wait_ready();
    // The simulated day (a scrape a minute), read from the files and the head as one.
    let held = query(
        &orcha,
        r#"count_over_time(depin_adapter_up{node="golem"}[2d])"#,
    );
    let n = value(&held[0]);
    assert!(n >= 1430.0, "{n} samples of a simulated day");
    // The paid nodes earned all day (grass' points have no price): the oldest hours of the
    // window come from the files.
    let earned = query(
        &orcha,
        "sum by (node) (increase(depin_earnings_usd_total[1d] offset 2h))",
    );
    assert_eq!(earned.as_array().unwrap().len(), 4, "{earned}");
    let paid = earned
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| value(e) > 0.0)
        .count();
    assert_eq!(paid, 3, "{earned}");
    // run's own scrapes continue the simulated series.
    wait_until(
        std::time::Duration::from_secs(20),
        "a scrape of run after the simulated ones",
        || {
            let r = query(
                &orcha,
                r#"count_over_time(depin_adapter_up{node="golem"}[2d])"#,
            );
            value(&r[0]) > n
        },
    );
    let m = orcha.get("/metrics").body;
    assert!(metric_value(&m, "depin_tsdb_blocks_loaded", &[]).unwrap() >= 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

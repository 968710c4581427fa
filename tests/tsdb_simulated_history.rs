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
    // 2 h blocks; those of a UTC day before today are merged into one. Between 00:00 and
    // 02:00 UTC the simulated day is yesterday's merged block plus a head not yet cut, so
    // one file is all the clock guarantees.
    assert!(blocks >= 1, "{blocks} block files for a simulated day");

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

/// `run --storage.downsample.after` on a directory `simulate --storage.path` wrote: the old
/// days are rewritten at 5-minute windows, and aligned queries over them answer as before
/// (the counter's increase, the gauge's max, min and average through its aggregate series).
#[test]
fn run_downsamples_simulated_days_and_answers_as_before() {
    let dir = temp_dir("simulated-downsampled");
    let data = dir.join("data");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/steady.yml");
    let out = Command::new(bin())
        .arg("simulate")
        .arg(&scenario)
        .args(["--days", "4", "--poll-interval", "60s", "--storage.path"])
        .arg(&data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A time on a 5-minute boundary, 2.5 days back: inside a downsampled day.
    let at = (now - 60 * 3600) / 300 * 300;
    let queries = [
        (
            r#"increase(depin_earnings_usd_total{node="golem"}[1h])"#,
            r#"increase(depin_earnings_usd_total{node="golem"}[1h])"#,
        ),
        (
            r#"increase(depin_earnings_usd_total{node="golem"}[1d])"#,
            r#"increase(depin_earnings_usd_total{node="golem"}[1d])"#,
        ),
        (
            r#"sum(max_over_time(depin_usage_cpu_cores{node="golem"}[1h]))"#,
            r#"sum(max_over_time(depin_usage_cpu_cores:max_5m{node="golem"}[1h]))"#,
        ),
        (
            r#"sum(min_over_time(depin_usage_cpu_cores{node="golem"}[1h]))"#,
            r#"sum(min_over_time(depin_usage_cpu_cores:min_5m{node="golem"}[1h]))"#,
        ),
        (
            r#"sum(avg_over_time(depin_usage_cpu_cores{node="golem"}[1h]))"#,
            r#"sum(sum_over_time(depin_usage_cpu_cores:sum_5m{node="golem"}[1h]) / sum_over_time(depin_usage_cpu_cores:count_5m{node="golem"}[1h]))"#,
        ),
    ];
    let ask = |orcha: &Orcha, q: &str| {
        let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let r = orcha.get(&format!("/api/v1/query?query={enc}&time={at}"));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        let res = r.json()["data"]["result"].clone();
        assert_eq!(res.as_array().map(|a| a.len()), Some(1), "{q}: {res}");
        value(&res[0])
    };
    let common = [
        "--storage.path",
        data.to_str().unwrap(),
        "--storage.retention.time",
        "30d",
    ];
    let orcha = Orcha::start(&common);
    orcha.wait_ready();
    let raw: Vec<f64> = queries.iter().map(|(q, _)| ask(&orcha, q)).collect();
    let raw_count = ask(
        &orcha,
        r#"count_over_time(depin_adapter_up{node="golem"}[1h])"#,
    );
    assert!(raw_count >= 59.0, "{raw_count}");
    assert!(orcha.terminate().success());

    let mut args = common.to_vec();
    args.extend([
        "--storage.downsample.after",
        "1d",
        "--storage.snapshot-interval",
        "1s",
    ]);
    let orcha = Orcha::start(&args);
    orcha.wait_ready();
    wait_until(
        std::time::Duration::from_secs(60),
        "the old days downsampled",
        || {
            let q = r#"count_over_time(depin_adapter_up{node="golem"}[1h])"#;
            ask(&orcha, q) == 12.0
        },
    );
    for ((q_raw, q_ds), want) in queries.iter().zip(&raw) {
        let got = ask(&orcha, q_ds);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{q_raw} = {want} raw, {q_ds} = {got} downsampled"
        );
    }
    // Downsampled days survive a restart.
    assert!(orcha.terminate().success());
    let orcha = Orcha::start(&common);
    orcha.wait_ready();
    let (q_raw, q_ds) = queries[2];
    let got = ask(&orcha, q_ds);
    assert!(
        (got - raw[2]).abs() <= 1e-9 * raw[2].abs().max(1.0),
        "{q_raw}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

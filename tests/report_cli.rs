//! `depin-orcha report` through the real binary, over a storage directory and over a running
//! instance's API: a counter rising 1 USD/h for the last 14 days gives 168 USD this week and
//! 168 USD the week before, 1 USD/h, no trend, and full uptime, in all outputs.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

const MIN_MS: i64 = 60_000;

fn write_fixture(path: &std::path::Path) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let end = now / MIN_MS * MIN_MS;
    let start = end - 14 * 24 * 60 * MIN_MS;
    let mut usd = String::from("# TYPE depin_earnings_usd_total unknown\n");
    let mut up = String::from("# TYPE depin_adapter_up unknown\n");
    let mut t = start;
    while t <= end {
        let hours = (t - start) as f64 / 3_600_000.0;
        usd.push_str(&format!(
            "depin_earnings_usd_total{{node=\"n1\",protocol=\"golem\"}} {hours} {}\n",
            t / 1000
        ));
        up.push_str(&format!(
            "depin_adapter_up{{node=\"n1\",protocol=\"golem\"}} 1 {}\n",
            t / 1000
        ));
        t += MIN_MS;
    }
    std::fs::write(path, format!("{usd}{up}# EOF\n")).unwrap();
    end
}

fn report(args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check(json: &serde_json::Value) {
    let n = json["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "n1"))
        .unwrap_or_else(|| panic!("no node n1 in {json}"));
    let usd = n["usd"].as_f64().unwrap();
    // The data ends when the fixture was written; a report started a little later sees the
    // same samples (extrapolation adds at most the minute between samples).
    assert!((usd - 168.0).abs() < 1.0 / 60.0 + 1e-6, "usd {usd}");
    let prev = n["usd_previous"].as_f64().unwrap();
    assert!((prev - 168.0).abs() < 1e-6, "previous {prev}");
    assert!((n["uptime"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(n["trend_usd_per_hour_per_day"].as_f64().unwrap().abs() < 1e-3);
}

#[test]
fn report_over_storage_and_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fixture.om");
    write_fixture(&file);
    let data = dir.path().join("data");
    let out = Command::new(common::bin())
        .args([
            "tsdb",
            "import",
            file.to_str().unwrap(),
            "--storage.path",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = data.to_str().unwrap();
    let json: serde_json::Value = serde_json::from_str(&report(&[
        "--since",
        "7d",
        "--output",
        "json",
        "--storage.path",
        d,
    ]))
    .unwrap();
    check(&json);
    let text = report(&["--since", "7d", "--storage.path", d]);
    assert!(text.contains("Earnings per node"), "{text}");
    assert!(text.contains("No alert fired."), "{text}");
    let md = report(&["--since", "7d", "--output", "markdown", "--storage.path", d]);
    assert!(md.contains("| node | protocol | USD |"), "{md}");

    let empty = tempfile::tempdir().unwrap();
    let cfg = empty.path().join("c.yml");
    // One simulated node of its own, so n1's history stays as imported.
    std::fs::write(
        &cfg,
        "host:\n  capacity:\n    cpu_cores: 4\n    memory_bytes: 8GiB\n    disk_bytes: 1TB\n    bandwidth_bytes_per_second: 10MB\n\
         nodes:\n  - name: s1\n    kind: sim\n    sim:\n      protocol: storj\n      allocation:\n        cpu_cores: 1\n        memory_bytes: 1GiB\n        disk_bytes: 100GB\n        bandwidth_bytes_per_second: 1MB\n",
    )
    .unwrap();
    let o = common::Orcha::start(&["--storage.path", d, "--config.file", cfg.to_str().unwrap()]);
    o.wait_ready();
    let json: serde_json::Value = serde_json::from_str(&report(&[
        "--since",
        "7d",
        "--output",
        "json",
        "--url",
        &format!("http://{}", o.addr),
    ]))
    .unwrap();
    check(&json);
}

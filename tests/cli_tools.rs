//! The binary's tool subcommands and the query API with real clients: `test promql` over
//! Prometheus' own scripts (read from ../shared/promql-testdata, skipped when a clone has no
//! ../shared), `tsdb import` of OpenMetrics text, and `promtool query` against a running
//! depin-orcha that holds the imported data.

mod common;

use std::process::Command;

use common::*;

#[test]
fn test_promql_runs_prometheus_scripts_and_ends_with_the_counts_line() {
    let Some(dir) = shared("promql-testdata") else {
        return;
    };
    let out = Command::new(bin())
        .args(["test", "promql"])
        .arg(dir.join("literals.test"))
        .arg(dir.join("selectors.test"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let nums: Vec<u64> = last
        .trim_start_matches("total:")
        .split(',')
        .map(|part| {
            part.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX)
        })
        .collect();
    assert!(
        last.contains(" passed, ") && last.contains(" failed, ") && last.ends_with(" skipped"),
        "last line: {last:?}"
    );
    assert_eq!(nums.len(), 3);
    assert!(nums[0] >= 50, "only {} cases passed:\n{stdout}", nums[0]);
    assert_eq!(nums[1], 0, "failures:\n{stdout}");
    assert!(out.status.success());

    // A script with a wrong expectation fails, names the line and exits non-zero.
    let tmp = temp_dir("promqltest");
    let bad = tmp.join("bad.test");
    std::fs::write(
        &bad,
        "load 5m\n  m{a=\"1\"} 1 2 3\n\neval instant at 10m m\n  m{a=\"1\"} 4\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["test", "promql"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains(":4") || stdout.contains("line 4"),
        "failure does not name line 4:\n{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
}

#[test]
fn tsdb_import_then_promtool_queries_the_running_binary() {
    let dir = temp_dir("import");
    let om = dir.join("in.om");
    // Two series, 15 s apart, timestamps in seconds as promtool's OpenMetrics importer takes them.
    let mut text = String::from("# TYPE imported_total counter\n");
    for i in 0..40 {
        text.push_str(&format!(
            "imported_total{{job=\"x\",disk=\"a\"}} {} {}\n",
            i * 2,
            1_700_000_000 + i * 15
        ));
        text.push_str(&format!(
            "imported_total{{job=\"x\",disk=\"b\"}} {} {}\n",
            i * 3,
            1_700_000_000 + i * 15
        ));
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, text).unwrap();
    let data = dir.join("data");
    let out = Command::new(bin())
        .args(["tsdb", "import"])
        .arg(&om)
        .args(["--storage.path", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("80 samples"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The imported samples are from 2023: a retention long enough to keep them beside the
    // demo's own fresh samples (retention counts back from the newest sample).
    let orcha = Orcha::start(&[
        "--storage.path",
        data.to_str().unwrap(),
        "--storage.retention.time",
        "100000d",
    ]);
    orcha.wait_ready();
    let end = 1_700_000_000 + 39 * 15;
    let r = orcha.get(&format!(
        "/api/v1/query?query=sum%20by%20(disk)%20(rate(imported_total%5B5m%5D))&time={end}"
    ));
    let j = r.json();
    let result = j["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{}", r.body);
    let rate_of = |disk: &str| -> f64 {
        result.iter().find(|s| s["metric"]["disk"] == disk).unwrap()["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!((rate_of("a") - 2.0 / 15.0).abs() < 1e-9, "{}", r.body);
    assert!((rate_of("b") - 3.0 / 15.0).abs() < 1e-9, "{}", r.body);

    let Some(promtool) = promtool() else { return };
    let url = format!("http://{}", orcha.addr);
    let out = Command::new(&promtool)
        .args([
            "query",
            "instant",
            "--time",
            &end.to_string(),
            &url,
            "imported_total{disk=\"b\"}",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool query instant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported_total{disk=\"b\", job=\"x\"} => 117 @["),
        "{stdout}"
    );

    let out = Command::new(&promtool)
        .args([
            "query",
            "range",
            "--start",
            &(end - 60).to_string(),
            "--end",
            &end.to_string(),
            "--step",
            "30s",
            &url,
            "imported_total{disk=\"a\"}",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool query range: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("70 @[") && stdout.contains("74 @[") && stdout.contains("78 @["),
        "{stdout}"
    );

    let out = Command::new(&promtool)
        .args([
            "query",
            "labels",
            "--start",
            "1699999000",
            "--end",
            "1700001000",
            &url,
            "disk",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let out = Command::new(&promtool)
        .args([
            "query",
            "series",
            "--start",
            "1699999000",
            "--end",
            "1700001000",
            "--match",
            "imported_total",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

//! `depin-orcha export` through the real binary: the CSV header and rows match the series, and
//! the OpenMetrics output re-imports with identical samples into our own storage (`depin-orcha
//! tsdb import`) and into Prometheus' (`promtool tsdb create-blocks-from openmetrics`, read
//! back with `promtool tsdb dump`). Also `GET /api/v1/export` streamed from a running instance.
//! The promtool part needs /usr/bin/promtool (skipped with a note without it, unless CI=true).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const T0_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 10 * 60 * 1000 + 7; // 10 minutes and a few ms: fractions survive
const N: i64 = 3 * 24 * 6; // three days: many of the exporter's six-hour windows

/// The fixture's series: (labels as Prometheus prints them, OpenMetrics series text, value at i).
/// Labels as Prometheus prints them, the OpenMetrics series text, the value at step i.
type Case = (String, String, fn(i64) -> f64);

fn fixture() -> Vec<Case> {
    vec![
        (
            r#"{__name__="rt_earnings_usd_total", node="a", protocol="golem"}"#.into(),
            r#"rt_earnings_usd_total{node="a",protocol="golem"}"#.into(),
            |i| i as f64 / 6.0,
        ),
        (
            r#"{__name__="rt_gauge", note="say \"hi\" \\ bye"}"#.into(),
            r#"rt_gauge{note="say \"hi\" \\ bye"}"#.into(),
            |i| -0.1 * i as f64 + 1e-9,
        ),
        (r#"{__name__="rt_up"}"#.into(), "rt_up".into(), |i| {
            (i % 2) as f64
        }),
    ]
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Every fixture sample as (labels, ms, value bits), the shape both read-backs are put in.
fn expected() -> BTreeSet<(String, i64, u64)> {
    let mut out = BTreeSet::new();
    for (labels, _, f) in fixture() {
        for i in 0..N {
            out.insert((labels.clone(), T0_MS + i * STEP_MS, f(i).to_bits()));
        }
    }
    out
}

fn write_fixture(path: &Path) {
    let mut text = String::new();
    let mut last = String::new();
    for (_, series, f) in fixture() {
        let name = series.split('{').next().unwrap().to_string();
        if name != last {
            text.push_str(&format!("# TYPE {name} unknown\n"));
            last = name;
        }
        for i in 0..N {
            text.push_str(&format!(
                "{series} {} {}\n",
                f(i),
                secs(T0_MS + i * STEP_MS)
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

fn orcha(args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .args(args)
        .output()
        .expect("run depin-orcha");
    assert!(
        out.status.success(),
        "depin-orcha {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn import(file: &Path, dir: &Path) {
    orcha(&[
        "tsdb",
        "import",
        file.to_str().unwrap(),
        "--storage.path",
        dir.to_str().unwrap(),
    ]);
}

const SELECTOR: &str = r#"{__name__=~"rt_.+"}"#;

fn export(dir: &Path, format: &str) -> String {
    orcha(&[
        "export",
        "--match",
        SELECTOR,
        "--format",
        format,
        "--storage.path",
        dir.to_str().unwrap(),
    ])
}

/// Parses `promtool tsdb dump` lines: `{labels} value timestamp_ms`.
fn parse_dump(text: &str) -> BTreeSet<(String, i64, u64)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.rsplitn(3, ' ');
            let t: i64 = parts.next().unwrap().parse().unwrap();
            let v: f64 = parts.next().unwrap().parse().unwrap();
            (parts.next().unwrap().to_string(), t, v.to_bits())
        })
        .collect()
}

#[test]
fn openmetrics_export_round_trips_through_our_import_and_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let (src, ours) = (dir.path().join("src"), dir.path().join("ours"));
    let fixture_file = dir.path().join("fixture.om");
    write_fixture(&fixture_file);
    import(&fixture_file, &src);

    let om = export(&src, "openmetrics");
    assert!(om.ends_with("# EOF\n"), "no # EOF at the end");
    assert_eq!(om.matches("# TYPE ").count(), 3, "one TYPE line per metric");
    let om_file = dir.path().join("export.om");
    std::fs::write(&om_file, &om).unwrap();

    // Ours: import the export, export again; the same text means the same samples.
    import(&om_file, &ours);
    assert_eq!(export(&ours, "openmetrics"), om);

    // CSV rows are the fixture's samples, with the documented header.
    let csv = export(&src, "csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,value,__name__,node,note,protocol")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as i64, 3 * N);
    assert_eq!(rows[0], format!("{T0_MS},0,rt_earnings_usd_total,a,,golem"));
    assert_eq!(
        rows[N as usize + 1],
        format!(
            "{},{},rt_gauge,,\"say \"\"hi\"\" \\ bye\",",
            T0_MS + STEP_MS,
            -0.1 + 1e-9
        )
    );

    // Prometheus' own tools read the same samples.
    let Some(promtool) = common::promtool() else {
        return;
    };
    let blocks = dir.path().join("blocks");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_file)
        .arg(&blocks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `tsdb dump` opens the directory as a database, which wants a WAL directory.
    std::fs::create_dir_all(blocks.join("wal")).unwrap();
    let out = Command::new(&promtool)
        .args(["tsdb", "dump"])
        .arg(&blocks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = parse_dump(&String::from_utf8_lossy(&out.stdout));
    let want = expected();
    assert_eq!(dumped.len(), want.len());
    assert!(
        dumped == want,
        "first difference: {:?}",
        dumped.symmetric_difference(&want).next()
    );
}

#[test]
fn the_api_streams_the_export_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let fixture_file = dir.path().join("fixture.om");
    write_fixture(&fixture_file);
    import(&fixture_file, dir.path());
    let o = common::Orcha::start(&[
        "--storage.path",
        dir.path().to_str().unwrap(),
        "--storage.retention.time",
        "10000d",
    ]);
    o.wait_ready();
    let r = o.get("/api/v1/export?match[]=rt_up&format=json");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["metric"], serde_json::json!({"__name__": "rt_up"}));
    let ts: Vec<i64> = lines[0]["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(ts, (0..N).map(|i| T0_MS + i * STEP_MS).collect::<Vec<_>>());
    let vs: Vec<f64> = lines[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(vs, (0..N).map(|i| (i % 2) as f64).collect::<Vec<_>>());
    // The same through the command's --url client, as CSV.
    let csv = orcha(&[
        "export",
        "--url",
        &format!("http://{}", o.addr),
        "--match",
        "rt_up",
        "--format",
        "csv",
    ]);
    assert_eq!(csv.lines().count() as i64, N + 1);
    assert!(csv.starts_with("timestamp,value,__name__\n"));
    let bad = o.get("/api/v1/export?format=csv");
    assert_eq!(bad.status, 400);
}

/// An export whose series would hold more than `--query.max-memory` gets 422 saying so, from
/// the API and through `depin-orcha export --url`; a small one under the same budget streams.
#[test]
fn an_export_over_the_memory_budget_is_refused_with_422() {
    let dir = tempfile::tempdir().unwrap();
    let fixture_file = dir.path().join("fixture.om");
    write_fixture(&fixture_file);
    import(&fixture_file, dir.path());
    // 3,000 series of one sample each: about 330 KB of label sets as the exporter holds them.
    let mut wide = String::from("# TYPE rt_wide unknown\n");
    for i in 0..3_000 {
        wide.push_str(&format!(
            "rt_wide{{instance=\"host-{i:05}.example\",job=\"wide\"}} 1 {}\n",
            secs(T0_MS)
        ));
    }
    wide.push_str("# EOF\n");
    let wide_file = dir.path().join("wide.om");
    std::fs::write(&wide_file, wide).unwrap();
    import(&wide_file, dir.path());
    let o = common::Orcha::start(&[
        "--storage.path",
        dir.path().to_str().unwrap(),
        "--storage.retention.time",
        "10000d",
        "--query.max-memory",
        "64KiB",
    ]);
    o.wait_ready();
    let r = o.get("/api/v1/export?match[]=rt_wide&format=csv");
    assert_eq!(r.status, 422, "{}", r.body);
    let j = r.json();
    assert_eq!(j["errorType"], "execution", "{}", r.body);
    let msg = j["error"].as_str().unwrap();
    assert!(
        msg.starts_with("export: the 3000 series match[] selects: ")
            && msg.contains("--query.max-memory")
            && msg.contains("of the 64KiB that --query.max-memory allows"),
        "{msg}"
    );
    // Nothing is held once it is refused, and a small export under the same budget works.
    let ok = o.get("/api/v1/export?match[]=rt_up&format=csv");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body.lines().count() as i64, N + 1);
    // The stream gives its memory back when the server drops it, which can come a moment
    // after the client has read the last chunk: wait for that, briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let held = loop {
        let m = o.get("/metrics").body;
        let held = common::metric_value(&m, "depin_orcha_query_memory_bytes", &[]);
        if held == Some(0.0) || std::time::Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(held, Some(0.0));
    // The command line client names the refusal and fails.
    let out = Command::new(common::bin())
        .args(["export", "--url", &format!("http://{}", o.addr)])
        .args(["--match", "rt_wide", "--format", "csv"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("HTTP status 422") && err.contains("too much memory"),
        "{err}"
    );
}

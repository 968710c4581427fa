//! The shipped rule files (`rules/prometheus/*.yml`) and their unit tests (`rules/tests/*.yml`) against the
//! real Prometheus tools (Debian package `prometheus`, 2.42: `/usr/bin/promtool`,
//! `/usr/bin/prometheus`) and against depin-orcha's own runner and rules engine:
//!
//! - promtool accepts the rule files and passes the tests;
//! - `depin-orcha test rules` (the [`unittest`] runner) gives the same verdict for every test
//!   group, and the same failure text when a test is broken;
//! - a real Prometheus scraping a fixed `/metrics` fires the node-down alert, and our engine
//!   evaluating the same rule over the samples Prometheus scraped fires the same alert, with
//!   the same labels and annotations.
//!
//! Without promtool or prometheus the comparisons are skipped with a note (our own runner still
//! runs); with `CI=true` their absence fails.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use depin_orcha::labels::Labels;
use depin_orcha::promql::{Engine, EngineOptions};
use depin_orcha::rules::unittest::{self, FileReport};
use depin_orcha::rules::{load_files, AlertState, EvalContext};
use depin_orcha::tsdb::Db;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Prometheus rule files, `rules/prometheus/*.yml`, sorted. (`rules/optimization.yml`,
/// depin-orcha's own schema, lives outside that folder, so every glob over it works.)
fn rule_files() -> Vec<PathBuf> {
    yml_in(&root().join("rules/prometheus"))
}

/// `rules/tests/*.yml`, sorted.
fn test_files() -> Vec<PathBuf> {
    yml_in(&root().join("rules/tests"))
}

fn yml_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no .yml in {}", dir.display());
    v
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cmd: &Path, args: &[&str], dir: &Path) -> Run {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.display()));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Writes one file per test group of `test_file` into `dir` (rule files made absolute), so
/// promtool, which reports per file only, gives a verdict per test group. Returns the files in
/// the order of the groups.
fn split_groups(test_file: &Path, dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(test_file).expect("read test file");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("test file is YAML");
    let base = test_file.parent().expect("test file has a directory");
    let mut out = Vec::new();
    let tests = doc["tests"].as_sequence().cloned().unwrap_or_default();
    for (i, t) in tests.into_iter().enumerate() {
        let mut one = doc.clone();
        let files: Vec<serde_yaml::Value> = doc["rule_files"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let f = f.as_str().expect("rule file is a string");
                serde_yaml::Value::String(base.join(f).display().to_string())
            })
            .collect();
        one["rule_files"] = serde_yaml::Value::Sequence(files);
        one["tests"] = serde_yaml::Value::Sequence(vec![t]);
        let stem = test_file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("t");
        let p = dir.join(format!("{stem}_{i}.yml"));
        std::fs::write(&p, serde_yaml::to_string(&one).expect("serialize")).expect("write");
        out.push(p);
    }
    out
}

/// Our runner passes every shipped test group. Needs nothing installed.
#[test]
fn our_runner_passes_the_shipped_tests() {
    let files = test_files();
    let report = unittest::run_test_files(&files);
    let text = report.to_string();
    assert!(report.success(), "{text}");
    assert_eq!(report.failed(), 0, "{text}");
    // Every file has tests, and every shipped alert is tested both firing and not firing.
    assert!(report.files.iter().all(|f| !f.groups.is_empty()), "{text}");
    assert!(
        text.ends_with(&format!("{} passed, 0 failed\n", report.passed())),
        "{text}"
    );
    assert_every_alert_tested(&files);
}

/// Every alert in rules/prometheus/alerts.yml appears in some `alert_rule_test` with `exp_alerts` empty
/// (not firing) and in one with alerts (firing).
fn assert_every_alert_tested(test_files: &[PathBuf]) {
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("rules/prometheus/alerts.yml"))
            .expect("read alerts.yml"),
    )
    .expect("alerts.yml is YAML");
    let mut names = Vec::new();
    for g in alerts["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            if let Some(a) = r["alert"].as_str() {
                names.push(a.to_string());
            }
        }
    }
    let mut firing: BTreeMap<String, bool> = BTreeMap::new();
    let mut quiet: BTreeMap<String, bool> = BTreeMap::new();
    for f in test_files {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(f).expect("read")).expect("YAML");
        for t in doc["tests"].as_sequence().cloned().unwrap_or_default() {
            for a in t["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
            {
                let name = a["alertname"].as_str().unwrap_or("").to_string();
                let n = a["exp_alerts"].as_sequence().map_or(0, |s| s.len());
                if n > 0 {
                    firing.insert(name, true);
                } else {
                    quiet.insert(name, true);
                }
            }
        }
    }
    for n in &names {
        assert!(firing.contains_key(n), "alert {n} is never tested firing");
        assert!(
            quiet.contains_key(n),
            "alert {n} is never tested not firing"
        );
    }
    assert!(
        names.len() >= 15,
        "only {} alerts in alerts.yml",
        names.len()
    );
}

/// (a) promtool accepts the rule files and the example config and passes the tests; (b) our
/// runner gives the same verdict for every test group (each group run alone through promtool).
#[test]
fn promtool_and_ours_agree_on_the_shipped_files() {
    let Some(promtool) = common::promtool() else {
        return;
    };
    let mut args = vec!["check".to_string(), "rules".to_string()];
    args.extend(rule_files().iter().map(|p| rel(p)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(&promtool, &args, &root());
    assert!(r.ok, "promtool check rules:\n{}{}", r.stdout, r.stderr);

    // The example Prometheus config loads exactly these rule files.
    let r = run(
        &promtool,
        &["check", "config", "examples/prometheus.yml"],
        &root(),
    );
    assert!(r.ok, "promtool check config:\n{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("SUCCESS: {} rule files found", rule_files().len())),
        "{}",
        r.stdout
    );

    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(test_files().iter().map(|p| rel(p)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(&promtool, &args, &root());
    assert!(r.ok, "promtool test rules:\n{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.matches("  SUCCESS").count(),
        test_files().len(),
        "{}",
        r.stdout
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut compared = 0;
    for file in test_files() {
        let ours = unittest::run_test_file(&file);
        let singles = split_groups(&file, tmp.path());
        assert_eq!(ours.groups.len(), singles.len(), "{}", file.display());
        for (g, single) in ours.groups.iter().zip(&singles) {
            let theirs = run(
                &promtool,
                &["test", "rules", &single.display().to_string()],
                tmp.path(),
            );
            assert_eq!(
                g.passed(),
                theirs.ok,
                "{} group {:?}: ours {:?}, promtool:\n{}{}",
                file.display(),
                g.name,
                g.errors,
                theirs.stdout,
                theirs.stderr
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} test groups compared");
}

/// (c) A broken copy of a shipped test (one expected label wrong, one expected value wrong)
/// fails in promtool and in ours, in the same test groups and with the same failure text.
#[test]
fn a_broken_test_fails_in_both_with_the_same_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules_dir = root().join("rules");
    let broken = |name: &str, from: &str, to: &str| -> PathBuf {
        let text = std::fs::read_to_string(rules_dir.join("tests").join(name)).expect("read");
        assert!(text.contains(from), "{name} has no {from:?}");
        // Only the first occurrence: one test case broken, the others still pass.
        let text = text
            .replacen(from, to, 1)
            .replace("  - ../", &format!("  - {}/", rules_dir.display()));
        let p = tmp.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let nodes = broken(
        "nodes_test.yml",
        "exp_labels: {severity: critical, node: storj-a, protocol: storj}",
        "exp_labels: {severity: warning, node: storj-a, protocol: storj}",
    );
    let recording = broken("recording_test.yml", "value: 2\n", "value: 2.5\n");

    let ours: Vec<FileReport> = [&nodes, &recording]
        .iter()
        .map(|p| unittest::run_test_file(p))
        .collect();
    for r in &ours {
        assert!(!r.passed(), "the broken copy passed in ours:\n{r}");
        let failed: Vec<&str> = r
            .groups
            .iter()
            .filter(|g| !g.passed())
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "only the broken group fails: {failed:?}\n{r}"
        );
    }
    assert!(ours[0].to_string().contains(
        "got:[\n            0:\n              Labels:{alertname=\"DepinNodeDown\", node=\"storj-a\", protocol=\"storj\", severity=\"critical\"}"
    ), "{}", ours[0]);
    assert!(
        ours[1]
            .to_string()
            .contains("node=\"storj-a\", protocol=\"storj\"} 2.5E+00"),
        "{}",
        ours[1]
    );

    let Some(promtool) = common::promtool() else {
        return;
    };
    for (p, r) in [&nodes, &recording].iter().zip(&ours) {
        let theirs = run(
            &promtool,
            &["test", "rules", &p.display().to_string()],
            tmp.path(),
        );
        assert!(
            !theirs.ok,
            "promtool passed the broken copy:\n{}",
            theirs.stdout
        );
        // promtool writes `  FAILED:` and the errors to stderr, the blank lines to stdout.
        let mut expected = String::from("  FAILED:\n");
        for e in r.errors() {
            expected.push_str(e);
            expected.push('\n');
        }
        assert_eq!(theirs.stderr, expected, "failure text differs");
        assert!(theirs
            .stdout
            .starts_with(&format!("Unit Testing:  {}\n", p.display())));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) A real Prometheus and our engine, same rule, same samples.

/// The fixed exposition: storj-a is down, golem-1 up.
const METRICS: &str = "# HELP depin_adapter_up 1 if the last poll of the node succeeded, else 0.\n\
# TYPE depin_adapter_up gauge\n\
depin_adapter_up{node=\"golem-1\",protocol=\"golem\"} 1\n\
depin_adapter_up{node=\"storj-a\",protocol=\"storj\"} 0\n";

/// Serves `METRICS` at any path until the test process ends.
fn serve_metrics() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{METRICS}",
                METRICS.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    addr
}

/// The shipped `DepinNodeDown` rule alone, its `for` shortened to `hold` so the test takes
/// seconds; everything else (expression, labels, annotations) as shipped.
fn node_down_rule_file(dir: &Path, hold: &str) -> PathBuf {
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("rules/prometheus/alerts.yml"))
            .expect("read alerts.yml"),
    )
    .expect("YAML");
    let rule = shipped["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .find(|r| r["alert"].as_str() == Some("DepinNodeDown"))
        .expect("DepinNodeDown is shipped");
    let mut rule = rule.clone();
    assert!(rule["for"].as_str().is_some(), "DepinNodeDown has a for");
    rule["for"] = serde_yaml::Value::String(hold.into());
    let mut group = serde_yaml::Mapping::new();
    group.insert("name".into(), "depin_nodes".into());
    group.insert("rules".into(), serde_yaml::Value::Sequence(vec![rule]));
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        "groups".into(),
        serde_yaml::Value::Sequence(vec![serde_yaml::Value::Mapping(group)]),
    );
    let p = dir.join("node_down.yml");
    std::fs::write(&p, serde_yaml::to_string(&doc).expect("serialize")).expect("write");
    p
}

/// A firing alert as (labels, annotations), both sorted.
type AlertLA = (BTreeMap<String, String>, BTreeMap<String, String>);

fn json_map(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

#[test]
fn real_prometheus_and_ours_fire_the_same_node_down_alert() {
    let Some(prom) = common::prometheus_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = serve_metrics();
    let rule_file = node_down_rule_file(tmp.path(), "2s");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: depin-orcha\n    static_configs:\n      - targets: ['{target}']\n",
            rule_file.display()
        ),
    )
    .expect("write config");
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let _prom = common::KillOnDrop(
        Command::new(prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // Prometheus' firing alerts, once there are any.
    let deadline = Instant::now() + Duration::from_secs(90);
    let theirs: Vec<AlertLA> = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus never fired DepinNodeDown"
        );
        std::thread::sleep(Duration::from_millis(500));
        let Ok(r) = common::try_http(addr, "GET", "/api/v1/alerts", None) else {
            continue;
        };
        if r.status != 200 {
            continue;
        }
        let j = r.json();
        let firing: Vec<AlertLA> = j["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| (json_map(&a["labels"]), json_map(&a["annotations"])))
            .collect();
        if !firing.is_empty() {
            break firing;
        }
    };
    assert_eq!(theirs.len(), 1, "only storj-a is down: {theirs:?}");
    assert_eq!(theirs[0].0.get("node").map(String::as_str), Some("storj-a"));
    assert_eq!(
        theirs[0].0.get("severity").map(String::as_str),
        Some("critical")
    );

    // The samples Prometheus scraped (with job and instance), into our Db.
    let r = common::http(
        addr,
        "GET",
        "/api/v1/query?query=depin_adapter_up%5B5m%5D",
        None,
    );
    let j = r.json();
    let db = Db::in_memory();
    let mut times = Vec::new();
    for s in j["data"]["result"].as_array().expect("matrix") {
        let labels = Labels::from_pairs(json_map(&s["metric"]));
        for v in s["values"].as_array().expect("values") {
            let t = (v[0].as_f64().expect("time") * 1000.0).round() as i64;
            let x: f64 = v[1].as_str().expect("value").parse().expect("float");
            db.append(&labels, t, x).expect("append");
            times.push(t);
        }
    }
    times.sort_unstable();
    let (first, last) = (times[0], *times.last().expect("samples"));
    assert!(last - first >= 2000, "at least 2 s of samples");

    // The same rule file through our loader and engine, evaluated every second.
    let mut groups = load_files(&[rule_file]).expect("our loader reads the rule file");
    let engine = Engine::new(EngineOptions::default());
    let ctx = EvalContext::default();
    let mut t = first;
    while t <= last {
        for g in &mut groups {
            let r = g.eval(t, &db, &engine, &ctx);
            assert!(r.failures.is_empty(), "{:?}", r.failures);
        }
        t += 1000;
    }
    let ours: Vec<AlertLA> = groups
        .iter()
        .flat_map(|g| g.alerting_rules())
        .flat_map(|r| r.active_alerts())
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| (labels_map(&a.labels), labels_map(&a.annotations)))
        .collect();
    assert_eq!(ours, theirs, "our engine and Prometheus disagree");
}

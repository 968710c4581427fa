//! Side by side with a real Prometheus (the Debian package, 2.42): the same rule file, evaluated
//! by Prometheus and by our `RuleManager`, must give the same `/api/v1/rules` text and the
//! same `/api/v1/alerts` alerts, once times and durations (which differ between two runs) are
//! blanked. The rules need no data (`vector(...)`), so both sides see the same values.
//! Group `labels` are left out: Prometheus 2.42 does not know them (3.x does).
//! Skips (with a note) when `/usr/bin/prometheus` is absent, unless `CI=true`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use depin_orcha::clock::ManualClock;
use depin_orcha::http::rules as api;
use depin_orcha::labels::Labels;
use depin_orcha::promql::Engine;
use depin_orcha::rules::{ManagerOptions, RuleManager};
use depin_orcha::tsdb::Db;

const RULES: &str = r#"groups:
  - name: consts
    interval: 1s
    rules:
      - record: job:const:value
        expr: vector(2)
        labels: {src: rec}
      - alert: AlwaysHigh
        expr: vector(5) > 1
        for: 1h
        keep_firing_for: 30s
        labels: {severity: page, instance: '{{ $value }}'}
        annotations:
          summary: 'value {{ $value }} {{ $labels.severity }} <&>'
      - alert: FiresNow
        expr: label_replace(vector(3), "job", "a", "", "")
        labels: {severity: info}
      - alert: Never
        expr: vector(1) < 0
  - name: second
    limit: 5
    rules:
      - record: 'x:y'
        expr: 'sum(rate(nothing{a=~"b|c"}[5m])) by (a)'
"#;

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Blanks what differs between two runs: RFC 3339 times and evaluation durations.
fn normalize(s: &str) -> String {
    let times =
        regex::Regex::new(r#""\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)""#).unwrap();
    let durations = regex::Regex::new(r#""evaluationTime":[0-9.e+-]+"#).unwrap();
    let s = times.replace_all(s, r#""T""#);
    durations
        .replace_all(&s, r#""evaluationTime":0"#)
        .into_owned()
}

fn sorted_alerts(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut out: Vec<String> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| normalize(&a.to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn rules_and_alerts_json_match_prometheus() {
    let Some(prom) = common::prometheus_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n",
            rules.display()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let mut child = Command::new(prom)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(std::mem::replace(
        &mut child,
        Command::new("true").spawn().unwrap(),
    ));

    // Wait until Prometheus has evaluated both groups at least twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    let prom_rules = loop {
        if let Ok(r) = common::try_http(addr, "GET", "/api/v1/rules", None) {
            if r.status == 200 && !r.body.contains("0001-01-01T00:00:00Z") {
                std::thread::sleep(Duration::from_millis(2500));
                break common::http(addr, "GET", "/api/v1/rules", None).body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not evaluate the rules in 30s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let prom_alerts = common::http(addr, "GET", "/api/v1/alerts", None).body;

    // Ours, over an empty database, evaluated twice on the same slots.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(now);
    let opts = ManagerOptions {
        evaluation_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let db = Arc::new(Db::in_memory());
    let m = RuleManager::new(
        opts,
        db.clone(),
        Engine::default(),
        Arc::new(clock.clone()),
        Labels::empty(),
        String::new(),
    );
    m.load(std::slice::from_ref(&rules)).unwrap();
    for i in 0..4 {
        m.tick(now + i * 1000);
    }
    let ours_rules = depin_orcha::http::json::success(
        api::rules(&m, &depin_orcha::http::Params::default())
            .unwrap()
            .data
            .as_deref(),
        &[],
        &[],
    );
    let ours_alerts = depin_orcha::http::json::success(api::alerts(&m).data.as_deref(), &[], &[]);

    assert_eq!(normalize(&ours_rules), normalize(&prom_rules));
    assert_eq!(sorted_alerts(&ours_alerts), sorted_alerts(&prom_alerts));

    // The series the rules write: same label sets (values of ALERTS_FOR_STATE are times).
    for q in ["ALERTS", "ALERTS_FOR_STATE", "job:const:value", "x:y"] {
        let body = common::http(addr, "GET", &format!("/api/v1/query?query={q}"), None).body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut theirs: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"].to_string())
            .collect();
        theirs.sort();
        let expr = depin_orcha::promql::parse(q).unwrap();
        let r = Engine::default()
            .instant_query(db.as_ref(), &expr, now + 3000)
            .unwrap();
        let depin_orcha::promql::Value::Vector(vec) = r.value else {
            panic!("{q}: not a vector")
        };
        let mut ours: Vec<String> = vec
            .iter()
            .map(|s| {
                let mut o = String::new();
                depin_orcha::http::json::push_labels(&mut o, &s.labels);
                o
            })
            .collect();
        ours.sort();
        assert_eq!(ours, theirs, "{q}");
        if q.starts_with("ALERTS") {
            assert_eq!(
                ours.len(),
                2,
                "{q}: AlwaysHigh (pending) and FiresNow (firing)"
            );
        }
    }
}

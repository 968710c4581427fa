//! The shipped Alertmanager config (`examples/alertmanager.yml`) in a real Alertmanager (Debian
//! package `prometheus-alertmanager`): `amtool check-config` accepts it, and its inhibit rules
//! hold back exactly the alerts they are meant to: a Storj warning while the critical alert of
//! the same family, host, node and satellite fires; `DepinPollErrorsHigh` and
//! `DepinNodeFlapping` while `DepinNodeDown` of the same node fires; nothing of another host,
//! node or satellite, and no alert without a family.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/alertmanager.yml")
}

#[test]
fn amtool_accepts_the_shipped_config() {
    let Some(amtool) = common::system_bin("amtool", "prometheus-alertmanager") else {
        return;
    };
    let out = Command::new(amtool)
        .arg("check-config")
        .arg(config())
        .output()
        .expect("amtool");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 inhibit rules"), "{text}");
}

/// An alert as Prometheus posts it: labels, started a minute ago, no end.
fn alert(labels: &[(&str, &str)]) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({ "labels": labels, "annotations": {} })
}

#[test]
fn inhibit_rules_hold_back_what_they_should_and_nothing_else() {
    let Some(bin) = common::system_bin("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let _am = common::KillOnDrop(
        Command::new(bin)
            .arg(format!("--config.file={}", config().display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager"),
    );
    common::wait_until(Duration::from_secs(20), "Alertmanager ready", || {
        common::try_http(addr, "GET", "/-/ready", None).is_ok_and(|r| r.status == 200)
    });

    let home1 = [("job", "depin-orcha"), ("instance", "home-1:9817")];
    let home2 = [("job", "depin-orcha"), ("instance", "home-2:9817")];
    let with = |host: &[(&'static str, &'static str)], more: &[(&'static str, &'static str)]| {
        let mut v = host.to_vec();
        v.extend_from_slice(more);
        v
    };
    let audit = |sev: &'static str, name: &'static str, sat: &'static str| {
        [
            ("alertname", name),
            ("severity", sev),
            ("alert_family", "DepinStorjAuditScore"),
            ("node", "storj-a"),
            ("protocol", "storj"),
            ("satellite", sat),
        ]
    };
    let alerts = vec![
        // (name to report, labels, inhibited?)
        (
            "crit us1",
            with(
                &home1,
                &audit("critical", "DepinStorjAuditScoreCritical", "us1"),
            ),
            false,
        ),
        (
            "warn us1",
            with(&home1, &audit("warning", "DepinStorjAuditScoreLow", "us1")),
            true,
        ),
        (
            "warn eu1",
            with(&home1, &audit("warning", "DepinStorjAuditScoreLow", "eu1")),
            false,
        ),
        (
            "warn us1 home-2",
            with(&home2, &audit("warning", "DepinStorjAuditScoreLow", "us1")),
            false,
        ),
        (
            "down golem",
            with(
                &home1,
                &[
                    ("alertname", "DepinNodeDown"),
                    ("severity", "critical"),
                    ("node", "golem"),
                    ("protocol", "golem"),
                ],
            ),
            false,
        ),
        (
            "poll errors golem",
            with(
                &home1,
                &[
                    ("alertname", "DepinPollErrorsHigh"),
                    ("severity", "warning"),
                    ("node", "golem"),
                    ("protocol", "golem"),
                ],
            ),
            true,
        ),
        (
            "flapping golem",
            with(
                &home1,
                &[
                    ("alertname", "DepinNodeFlapping"),
                    ("severity", "warning"),
                    ("node", "golem"),
                    ("protocol", "golem"),
                ],
            ),
            true,
        ),
        (
            "poll errors golem home-2",
            with(
                &home2,
                &[
                    ("alertname", "DepinPollErrorsHigh"),
                    ("severity", "warning"),
                    ("node", "golem"),
                    ("protocol", "golem"),
                ],
            ),
            false,
        ),
        (
            "poll errors grass",
            with(
                &home1,
                &[
                    ("alertname", "DepinPollErrorsHigh"),
                    ("severity", "warning"),
                    ("node", "grass"),
                    ("protocol", "grass"),
                ],
            ),
            false,
        ),
        // A critical and a warning of the same host without a family: no inhibition.
        (
            "storage critical",
            with(
                &home1,
                &[
                    ("alertname", "DepinStorageWriteFailing"),
                    ("severity", "critical"),
                ],
            ),
            false,
        ),
        (
            "reload warning",
            with(
                &home1,
                &[
                    ("alertname", "DepinRulesReloadFailed"),
                    ("severity", "warning"),
                ],
            ),
            false,
        ),
    ];
    let body = serde_json::Value::Array(alerts.iter().map(|(_, l, _)| alert(l)).collect());
    let r = common::http(
        addr,
        "POST",
        "/api/v2/alerts",
        Some(("application/json", &body.to_string())),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Inhibition is decided when the alerts are listed; give Alertmanager a moment to ingest.
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let list = common::http(addr, "GET", "/api/v2/alerts", None).json();
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() == alerts.len() || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(got.len(), alerts.len(), "{got:?}");
    let mut wrong = Vec::new();
    for (what, labels, inhibited) in &alerts {
        let a = got
            .iter()
            .find(|a| {
                labels
                    .iter()
                    .all(|(k, v)| a["labels"][*k].as_str() == Some(*v))
                    && a["labels"].as_object().map(|o| o.len()) == Some(labels.len())
            })
            .unwrap_or_else(|| panic!("{what} not listed: {got:?}"));
        let by = a["status"]["inhibitedBy"].as_array().map_or(0, |v| v.len());
        if (by > 0) != *inhibited {
            wrong.push(format!(
                "{what}: inhibited {} (want {inhibited}); status {}",
                by > 0,
                a["status"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

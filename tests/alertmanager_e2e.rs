//! The notifier against a REAL Alertmanager (the Debian package `prometheus-alertmanager`,
//! binary `/usr/bin/prometheus-alertmanager`, or `$ALERTMANAGER_BIN`), started on free loopback
//! ports with clustering off, a temporary storage path and a config with a null receiver.
//! Without the binary the tests that need it print why and pass, unless CI=true, where they fail.
//!
//! - `firing_then_resolved_through_a_real_alertmanager`: the library's notifier sends a firing
//!   alert, Alertmanager's `GET /api/v2/alerts` lists it as active with the external labels;
//!   the same alert sent resolved disappears from that list.
//! - `an_unreachable_alertmanager_bounds_the_queue_and_counts_drops`: needs no Alertmanager.
//! - `the_binary_sends_a_node_down_alert_and_its_resolution`: the real `depin-orcha` binary
//!   with a sim node that fails for 20s and a node-down rule.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use depin_orcha::labels::Labels;
use depin_orcha::rules::notifier::{Alert, Notifier, NotifierOptions, RetryPolicy};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::Registry;
use tokio::sync::watch;

const DEFAULT_BIN: &str = "/usr/bin/prometheus-alertmanager";

fn alertmanager_bin() -> Option<PathBuf> {
    let path = std::env::var_os("ALERTMANAGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the Alertmanager binary {} is missing (install prometheus-alertmanager)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not found (install the Debian package prometheus-alertmanager or set \
         ALERTMANAGER_BIN)",
        path.display()
    );
    None
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A real Alertmanager process, killed on drop.
struct RealAlertmanager {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    /// The CA to trust when it serves https.
    ca: Option<PathBuf>,
}

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const AM_CONFIG: &str = r#"route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"#;

impl RealAlertmanager {
    /// Starts one and waits until `/-/ready` answers 200; None when the binary is absent.
    async fn start() -> Option<RealAlertmanager> {
        RealAlertmanager::start_with(false).await
    }

    /// `tls`: serve https (`--web.config.file` with a fresh self-signed certificate for
    /// 127.0.0.1, written as `ca.pem` into its directory).
    async fn start_with(tls: bool) -> Option<RealAlertmanager> {
        let bin = alertmanager_bin()?;
        // The port is free when picked, but another process may take it before Alertmanager
        // binds it: try a few ports.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("alertmanager.yml");
            std::fs::write(&config, AM_CONFIG).unwrap();
            let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
            let port = common::free_port();
            let mut cmd = Command::new(&bin);
            let ca = tls.then(|| {
                let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
                    .expect("certificate");
                let p = |n: &str| dir.path().join(n);
                std::fs::write(p("cert.pem"), ck.cert.pem()).unwrap();
                std::fs::write(p("key.pem"), ck.signing_key.serialize_pem()).unwrap();
                std::fs::write(p("ca.pem"), ck.cert.pem()).unwrap();
                std::fs::write(
                    p("web.yml"),
                    format!(
                        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                        p("cert.pem").display(),
                        p("key.pem").display()
                    ),
                )
                .unwrap();
                cmd.arg(format!("--web.config.file={}", p("web.yml").display()));
                p("ca.pem")
            });
            let child = cmd
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let scheme = if tls { "https" } else { "http" };
            let mut am = RealAlertmanager {
                child,
                url: format!("{scheme}://127.0.0.1:{port}"),
                dir,
                ca,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = am.child.try_wait() {
                    break; // exited: port taken or bad config; the log says which
                }
                if let Ok((200, _)) = get(&format!("{}/-/ready", am.url), am.ca.as_deref()).await {
                    return Some(am);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last_log = am.log();
        }
        panic!("Alertmanager did not become ready; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// The alerts `GET /api/v2/alerts` lists with this alertname (active and unprocessed;
    /// resolved ones are not listed).
    async fn alerts(&self, alertname: &str) -> Vec<serde_json::Value> {
        let filter: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", &format!("alertname=\"{alertname}\""))
            .finish();
        let url = format!("{}/api/v2/alerts?{filter}", self.url);
        let (status, body) = get(&url, self.ca.as_deref())
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(status, 200, "GET {url}: {body}");
        match serde_json::from_str(&body) {
            Ok(serde_json::Value::Array(a)) => a,
            other => panic!("GET {url}: not a JSON array: {other:?}"),
        }
    }

    /// Polls until `pred` holds for the listed alerts, or fails after `within`.
    async fn wait_alerts(
        &self,
        alertname: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.alerts(alertname).await;
            if pred(&got) {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "after {within:?}, Alertmanager does not show {what}; it lists {got:#?}\nits log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// GET over http or https (trusting `ca` besides Mozilla's roots).
async fn get(url: &str, ca: Option<&std::path::Path>) -> Result<(u16, String), String> {
    let connector = depin_orcha::net::http::pooled_connector(Duration::from_secs(5), ca)?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of family `name` in `registry`, summed over its label sets (one per
/// Alertmanager); None when the family is not there.
fn gathered(registry: &Registry, name: &str) -> Option<f64> {
    registry
        .gather()
        .into_iter()
        .find(|m| m.name() == name)
        .map(|m| {
            m.get_metric()
                .iter()
                .map(|m| {
                    if m.get_counter().has_value() {
                        m.get_counter().value()
                    } else {
                        m.get_gauge().value()
                    }
                })
                .sum()
        })
}

fn is_active(a: &serde_json::Value) -> bool {
    a["status"]["state"] == "active"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_then_resolved_through_a_real_alertmanager() {
    let Some(am) = RealAlertmanager::start().await else {
        return;
    };
    let registry = Registry::new();
    let notifier = Notifier::new(
        NotifierOptions {
            alertmanager_urls: vec![am.url.clone()],
            external_labels: Labels::from_pairs([("site", "e2e")]),
            ..Default::default()
        },
        &registry,
    )
    .unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(rx));

    let started = now_ms() - 60_000;
    let firing = Alert {
        labels: Labels::from_pairs([("alertname", "E2ENodeDown"), ("node", "storj-1")]),
        annotations: Labels::from_pairs([("summary", "storj-1 is down")]),
        starts_at: started,
        ends_at: now_ms() + 5 * 60_000,
        generator_url: "http://127.0.0.1:9817/graph?g0.expr=depin_adapter_up+%3D%3D+0&g0.tab=1"
            .into(),
    };
    notifier.send(vec![firing.clone()]);
    let got = am
        .wait_alerts(
            "E2ENodeDown",
            Duration::from_secs(15),
            "the firing alert",
            |a| a.len() == 1 && is_active(&a[0]),
        )
        .await;
    let a = &got[0];
    assert_eq!(a["labels"]["node"], "storj-1");
    assert_eq!(a["labels"]["site"], "e2e", "external label added: {a}");
    assert_eq!(a["annotations"]["summary"], "storj-1 is down");
    assert_eq!(a["generatorURL"], firing.generator_url.as_str());
    assert_eq!(
        a["receivers"][0]["name"], "null",
        "routed by Alertmanager: {a}"
    );

    // Resolved: the same labels with endsAt in the past.
    notifier.send(vec![Alert {
        ends_at: now_ms() - 1_000,
        ..firing
    }]);
    am.wait_alerts(
        "E2ENodeDown",
        Duration::from_secs(15),
        "the alert resolved",
        |a| a.is_empty(),
    )
    .await;

    let _ = stop.send(true);
    task.await.unwrap();
    let sent = gathered(&registry, "depin_notifications_sent_total");
    assert_eq!(sent, Some(2.0), "two alerts accepted");
}

/// An Alertmanager serving https with a self-signed certificate: the notifier that trusts it
/// through `ca_file` (`--alertmanager.ca-file`) delivers, one without it is refused by the
/// certificate check and counts errors, and a missing CA file is a clear error at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_over_https_need_the_alertmanagers_certificate() {
    let Some(am) = RealAlertmanager::start_with(true).await else {
        return;
    };
    assert!(am.url.starts_with("https://"), "{}", am.url);
    let ca = am.ca.clone().expect("a CA file");
    let counter = |registry: &Registry, name: &str| gathered(registry, name).unwrap_or(0.0);
    let notifier_with = |ca_file: Option<PathBuf>, registry: &Registry| {
        Notifier::new(
            NotifierOptions {
                alertmanager_urls: vec![am.url.clone()],
                timeout: Duration::from_secs(5),
                retry: RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                },
                ca_file,
                ..Default::default()
            },
            registry,
        )
        .unwrap()
    };
    let alert = |name: &str| Alert {
        labels: Labels::from_pairs([("alertname", name)]),
        annotations: Labels::empty(),
        starts_at: now_ms(),
        ends_at: now_ms() + 5 * 60_000,
        generator_url: String::new(),
    };

    let trusted_reg = Registry::new();
    let trusted = notifier_with(Some(ca.clone()), &trusted_reg);
    let untrusted_reg = Registry::new();
    let untrusted = notifier_with(None, &untrusted_reg);
    let (stop, rx) = watch::channel(false);
    let t1 = tokio::spawn(trusted.clone().run(rx.clone()));
    let t2 = tokio::spawn(untrusted.clone().run(rx));
    trusted.send(vec![alert("OverTls")]);
    untrusted.send(vec![alert("NotTrusted")]);
    am.wait_alerts(
        "OverTls",
        Duration::from_secs(15),
        "the alert sent over https",
        |a| a.len() == 1 && is_active(&a[0]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter(&untrusted_reg, "depin_notifications_errors_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the untrusted notifier never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        am.alerts("NotTrusted").await.is_empty(),
        "an alert arrived through an unverified certificate"
    );
    assert_eq!(
        counter(&untrusted_reg, "depin_notifications_sent_total"),
        0.0
    );
    assert_eq!(counter(&trusted_reg, "depin_notifications_sent_total"), 1.0);
    let _ = stop.send(true);
    t1.await.unwrap();
    t2.await.unwrap();

    // A CA file that is not there stops the start with the flag's name and the path.
    let e = match Notifier::new(
        NotifierOptions {
            alertmanager_urls: vec![am.url.clone()],
            ca_file: Some(ca.with_file_name("missing.pem")),
            ..Default::default()
        },
        &Registry::new(),
    ) {
        Ok(_) => panic!("a missing CA file is an error"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("--alertmanager.ca-file") && e.contains("missing.pem"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_alertmanager_bounds_the_queue_and_counts_drops() {
    // A socket that completes the TCP handshake (kernel backlog) but is never accepted: the
    // notifier's requests hang until their timeout, like an Alertmanager behind a dead proxy.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = blackhole.local_addr().unwrap();
    let registry = Registry::new();
    let notifier = Notifier::new(
        NotifierOptions {
            alertmanager_urls: vec![format!("http://{addr}")],
            queue_capacity: 100,
            // Longer than any send may take, so a send that waited on the network would show.
            timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(50),
                max_elapsed: Duration::from_secs(2),
            },
            drain_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        &registry,
    )
    .unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(rx));
    let value = |name: &str| -> f64 {
        gathered(&registry, name).unwrap_or_else(|| panic!("no metric {name}"))
    };

    let total = 1_000;
    let mut slowest = Duration::ZERO;
    for i in 0..total / 100 {
        let alerts = (0..100)
            .map(|j| Alert {
                labels: Labels::from_pairs([
                    ("alertname", "Unheard".to_string()),
                    ("i", (i * 100 + j).to_string()),
                ]),
                annotations: Labels::empty(),
                starts_at: now_ms(),
                ends_at: now_ms() + 60_000,
                generator_url: String::new(),
            })
            .collect();
        let t = Instant::now();
        notifier.send(alerts);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(slowest < Duration::from_secs(1), "a send took {slowest:?}");
    assert!(
        notifier.queue_len() <= 100,
        "queue bound: {}",
        notifier.queue_len()
    );
    assert_eq!(value("depin_notifications_queue_capacity"), 100.0);
    // At most one batch (64) is in flight; everything else beyond the bound was dropped.
    let dropped = value("depin_notifications_dropped_total");
    assert!(dropped >= (total - 100 - 64) as f64, "dropped {dropped}");

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown within the drain timeout")
        .unwrap();
    // Nothing was delivered, and every alert is accounted for.
    assert_eq!(value("depin_notifications_dropped_total"), total as f64);
    assert_eq!(value("depin_notifications_sent_total"), 0.0);
    drop(blackhole);
}

/// Starts the real binary; its stderr is read on a thread, which sends the listening address.
struct Orcha {
    child: Child,
}

impl Drop for Orcha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_sends_a_node_down_alert_and_its_resolution() {
    let Some(am) = RealAlertmanager::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, common::flaky_node_config(Some(("5s", "20s")))).unwrap();
    let rules = dir.path().join("rules.yml");
    // The group's own interval, so the test does not depend on a global evaluation interval.
    std::fs::write(
        &rules,
        r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: E2EBinaryNodeDown
        expr: depin_adapter_up == 0
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "node {{ $labels.node }} is down"
"#,
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .arg("run")
        .arg("--config.file")
        .arg(&config)
        .arg("--rules.file")
        .arg(&rules)
        .arg("--alertmanager.url")
        .arg(&am.url)
        .arg("--web.listen-address")
        .arg("127.0.0.1:0")
        .arg("--storage.path")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting depin-orcha");
    let stderr = child.stderr.take().unwrap();
    let orcha = Orcha { child };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log_w = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("address=").nth(1) {
                let addr: String = rest
                    .trim_start_matches('"')
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = addr_tx.send(addr);
            }
            log_w.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no address= line; stderr:\n{}", log.lock().unwrap()));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // The fault starts 5s after start; polling, evaluation and sending take a few seconds more.
    let got = am
        .wait_alerts(
            "E2EBinaryNodeDown",
            Duration::from_secs(30),
            "the node-down alert from depin-orcha",
            |a| a.len() == 1 && is_active(&a[0]),
        )
        .await;
    assert_eq!(got[0]["labels"]["node"], "flaky", "{}", got[0]);
    assert_eq!(got[0]["labels"]["severity"], "critical");
    assert_eq!(got[0]["annotations"]["summary"], "node flaky is down");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "fired before the fault began: {:?}",
        started.elapsed()
    );
    // The fault ends 25s after start; the resolved notification follows.
    am.wait_alerts(
        "E2EBinaryNodeDown",
        Duration::from_secs(45),
        "the node-down alert resolved",
        |a| a.is_empty(),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(24),
        "resolved before the fault ended: {:?}",
        started.elapsed()
    );
    drop(orcha);
}

//! The real node kinds against fake nodes: a small HTTP server on port 0 (and a unix socket
//! for the Docker Engine API) that answers with the payloads of tests/fixtures/nodes/ (built
//! from the field names in the nodes' source, see its README) and with faults: a hang, 500, a
//! refused connection, a truncated answer, wrong types, a 50 MB body, a counter that goes
//! backwards. Each fault ends with the node down with a reason or the value skipped; never a
//! panic, never a wrong number on /metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use depin_orcha::adapters::prices::PriceTable;
use depin_orcha::adapters::{Adapter, Health, Observation, PollError};
use depin_orcha::clock::{ManualClock, SharedClock};
use depin_orcha::config::{self, NodeConfig};
use depin_orcha::coordinator::{Coordinator, TokioClock};
use depin_orcha::metrics::Metrics;
use depin_orcha::tsdb::Db;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const T0: i64 = 1_767_225_600_000 + 10 * 86_400_000; // 2026-01-11T00:00:00Z

fn fixture(p: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nodes")
        .join(p);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_path(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nodes")
        .join(p)
        .display()
        .to_string()
}

/// What the fake answers on one path.
#[derive(Clone)]
enum Reply {
    Json(u16, String),
    Text(String),
    /// Accepts the request and never answers.
    Hang,
    /// Announces more bytes than it sends, then closes.
    CutShort(String),
    /// A chunked body of this many bytes, no Content-Length.
    Huge(usize),
}

#[derive(Clone, Default)]
struct Fake {
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// (path with query, Authorization header, body) of each request.
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Fake {
    fn set(&self, path: &str, r: Reply) {
        self.routes.lock().unwrap().insert(path.into(), r);
    }
    fn json(&self, path: &str, body: &str) {
        self.set(path, Reply::Json(200, body.into()));
    }
    fn hits(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0.starts_with(prefix))
            .count()
    }
    fn auth_of(&self, prefix: &str) -> Option<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.0.starts_with(prefix))
            .map(|s| s.1.clone())
    }

    /// Serves on 127.0.0.1:0; returns the base URL.
    async fn serve_tcp(&self) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(me.clone().handle(s));
            }
        });
        format!("http://{addr}")
    }

    async fn serve_unix(&self, path: &Path) {
        let l = tokio::net::UnixListener::bind(path).unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(me.clone().handle(s));
            }
        });
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(self, mut s: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let target = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let mut auth = String::new();
        let mut len = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    auth = v.trim().to_string();
                }
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        while buf.len() < head_end + len {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
        self.seen.lock().unwrap().push((target.clone(), auth, body));
        let path = target.split('?').next().unwrap_or("/").to_string();
        let reply = self.routes.lock().unwrap().get(&path).cloned();
        let reply = reply.unwrap_or(Reply::Json(404, r#"{"error":"not found"}"#.into()));
        let write = |status: u16, ctype: &str, body: &str| {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        match reply {
            Reply::Json(st, b) => {
                let _ = s
                    .write_all(write(st, "application/json", &b).as_bytes())
                    .await;
            }
            Reply::Text(b) => {
                let _ = s
                    .write_all(write(200, "text/plain; version=0.0.4", &b).as_bytes())
                    .await;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Reply::CutShort(b) => {
                let h = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len() + 100
                );
                let _ = s.write_all(h.as_bytes()).await;
            }
            Reply::Huge(n) => {
                let h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(h.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b' '; 65536];
                let mut sent = 0;
                while sent < n {
                    let c = format!("{:x}\r\n", piece.len());
                    if s.write_all(c.as_bytes()).await.is_err()
                        || s.write_all(&piece).await.is_err()
                        || s.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    sent += piece.len();
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        }
        let _ = s.shutdown().await;
    }
}

/// A port nothing listens on.
async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

const HOST: &str = "host: {capacity: {cpu_cores: 64, memory_bytes: 1TiB, disk_bytes: 100TB, bandwidth_bytes_per_second: 1GB}}\n";

fn load(text: &str) -> config::Config {
    let full = format!("{HOST}{text}");
    config::parse_str(&full, "t.yml").unwrap_or_else(|e| panic!("{e}\n---\n{full}"))
}

fn node(block: &str) -> NodeConfig {
    load(&format!("nodes:\n  - name: n\n{block}"))
        .nodes
        .remove(0)
}

fn clock() -> SharedClock {
    Arc::new(ManualClock::new(T0))
}

/// One poll, cut at 2 s as the coordinator would.
async fn poll(a: &dyn Adapter) -> Result<Observation, PollError> {
    tokio::time::timeout(Duration::from_secs(2), a.poll())
        .await
        .unwrap_or(Err(PollError::Timeout(Duration::from_secs(2))))
}

fn gauge(o: &Observation, name: &str, sat: Option<&str>) -> Option<f64> {
    o.gauges
        .iter()
        .find(|g| {
            g.name == name
                && sat.is_none_or(|s| g.labels.iter().any(|(k, v)| k == "satellite" && v == s))
        })
        .map(|g| g.value)
}

async fn storj_fake() -> (Fake, String) {
    let f = Fake::default();
    f.json("/api/sno/", &fixture("storj/sno.json"));
    f.json("/api/sno/satellites", &fixture("storj/satellites.json"));
    f.json(
        "/api/sno/estimated-payout",
        &fixture("storj/estimated-payout.json"),
    );
    let url = f.serve_tcp().await;
    (f, url)
}

fn storj_node(url: &str, clock: SharedClock) -> Arc<dyn Adapter> {
    let n = node(&format!("    kind: storj\n    storj: {{url: \"{url}\"}}\n"));
    n.build(clock)
}

#[tokio::test]
async fn storj_reads_dashboard_scores_and_payout() {
    let (f, url) = storj_fake().await;
    let a = storj_node(&url, clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings.get("USD"), Some(&1.6449));
    assert_eq!(o.allocation.disk_bytes, Some(3.5e12));
    assert_eq!(o.usage.disk_bytes, Some(3381577296000.0 + 117961155200.0));
    assert_eq!(
        gauge(&o, "storj_audit_score", Some("us1.storj.io")),
        Some(1.0)
    );
    assert_eq!(
        gauge(&o, "storj_suspension_score", Some("eu1.storj.io")),
        Some(0.55)
    );
    assert_eq!(
        gauge(&o, "storj_online_score", Some("eu1.storj.io")),
        Some(0.97)
    );
    assert_eq!(
        gauge(&o, "storj_suspended", Some("eu1.storj.io")),
        Some(1.0)
    );
    assert_eq!(
        gauge(&o, "storj_suspended", Some("us1.storj.io")),
        Some(0.0)
    );
    assert_eq!(
        gauge(&o, "storj_disqualified", Some("eu1.storj.io")),
        Some(0.0)
    );
    assert_eq!(
        gauge(&o, "storj_disk_trash_bytes", None),
        Some(117961155200.0)
    );
    assert!(matches!(&o.health, Health::Degraded(w) if w.contains("suspended on eu1.storj.io")));
    assert!(o.skipped.is_empty(), "{:?}", o.skipped);
    // The expensive satellites call is made once a minute, its scores repeated meanwhile.
    let o2 = poll(a.as_ref()).await.unwrap();
    assert_eq!(f.hits("/api/sno/satellites"), 1);
    assert_eq!(f.hits("/api/sno/estimated-payout"), 2);
    assert_eq!(
        gauge(&o2, "storj_suspension_score", Some("eu1.storj.io")),
        Some(0.55)
    );
}

#[tokio::test]
async fn storj_faults_end_down_with_a_reason() {
    let (f, url) = storj_fake().await;
    let a = storj_node(&url, clock());
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Json(500, r#"{"error":"internal"}"#.into()),
            "http_status",
        ),
        (Reply::Hang, "timeout"),
        (Reply::CutShort(r#"{"diskSpace":{"used":1"#.into()), "io"),
        (
            Reply::Json(200, r#"{"diskSpace":{"used":1"#.into()),
            "parse",
        ),
        (
            Reply::Json(200, "<html>502 Bad Gateway</html>".into()),
            "parse",
        ),
        (Reply::Huge(50 << 20), "too_large"),
        (Reply::Json(200, "[1,2]".into()), "parse"),
    ];
    for (reply, reason) in cases {
        f.set("/api/sno/", reply);
        let e = poll(a.as_ref()).await.unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
    }
    let dead = storj_node(&refused_url().await, clock());
    assert_eq!(poll(dead.as_ref()).await.unwrap_err().reason(), "refused");
}

#[tokio::test]
async fn storj_wrong_types_and_a_backwards_payout_are_skipped() {
    let (f, url) = storj_fake().await;
    let a = storj_node(&url, clock());
    assert_eq!(poll(a.as_ref()).await.unwrap().earnings["USD"], 1.6449);
    // The payout goes backwards within the month: skipped, not a reset.
    f.json(
        "/api/sno/estimated-payout",
        r#"{"currentMonth":{"payout":20.0},"currentMonthExpectations":541}"#,
    );
    let o = poll(a.as_ref()).await.unwrap();
    assert!(!o.earnings.contains_key("USD"));
    assert_eq!(o.skipped, ["/currentMonth/payout"]);
    // Wrong types: a string payout, a string disk size, a score out of range.
    f.json(
        "/api/sno/estimated-payout",
        r#"{"currentMonth":{"payout":"170.0"}}"#,
    );
    let mut sno: serde_json::Value = serde_json::from_str(&fixture("storj/sno.json")).unwrap();
    sno["diskSpace"]["available"] = serde_json::json!("3.5TB");
    f.json("/api/sno/", &sno.to_string());
    let o = poll(a.as_ref()).await.unwrap();
    assert!(o.earnings.is_empty());
    assert_eq!(o.allocation.disk_bytes, None);
    assert!(o.skipped.contains(&"/currentMonth/payout".to_string()));
    assert!(o.skipped.contains(&"/diskSpace/available".to_string()));
}

#[tokio::test]
async fn storj_through_the_coordinator_on_metrics() {
    let (f, url) = storj_fake().await;
    let dead = refused_url().await;
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\"}}\n  - name: dead\n    kind: storj\n    storj: {{url: \"{dead}\"}}\n"
    ));
    assert_eq!(cfg.prices.get("USD"), Some(&1.0), "USD is priced 1");
    let metrics = Arc::new(Metrics::for_config(&cfg).unwrap());
    let db = Arc::new(Db::in_memory());
    let clock: SharedClock = Arc::new(TokioClock::new(T0));
    let c = Coordinator::new(&cfg, metrics.clone(), db, clock).unwrap();
    let health = c.health();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(c.run(rx));
    health.wait_ready().await;
    // The second poll sees a payout that went backwards: skipped, the counter stays.
    f.json(
        "/api/sno/estimated-payout",
        r#"{"currentMonth":{"payout":1.0}}"#,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    for want in [
        "depin_earnings_total{node=\"storj\",protocol=\"storj\",token=\"USD\"} 1.6449",
        "depin_earnings_usd_total{node=\"storj\",protocol=\"storj\"} 1.6449",
        "depin_storj_suspension_score{node=\"storj\",protocol=\"storj\",satellite=\"eu1.storj.io\"} 0.55",
        "depin_storj_audit_score{node=\"storj\",protocol=\"storj\",satellite=\"us1.storj.io\"} 1",
        "depin_allocation_disk_bytes{node=\"storj\",protocol=\"storj\"} 3500000000000",
        "depin_adapter_values_skipped_total{field=\"/currentMonth/payout\",node=\"storj\",protocol=\"storj\"} 1",
        "depin_adapter_up{node=\"dead\",protocol=\"storj\"} 0",
        "depin_adapter_up{node=\"storj\",protocol=\"storj\"} 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    let refused =
        "depin_adapter_poll_errors_total{node=\"dead\",protocol=\"storj\",reason=\"refused\"} ";
    let count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(refused))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(count >= 1.0, "{text}");
}

fn key_file(dir: &Path, key: &str) -> PathBuf {
    let p = dir.join("appkey");
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p
}

#[tokio::test]
async fn golem_invoices_count_settled_once_with_the_app_key() {
    let f = Fake::default();
    f.json("/payment-api/v1/invoices", &fixture("golem/invoices.json"));
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k-123");
    let hw = fixture_path("golem/hardware.json");
    let n = node(&format!(
        "    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", hardware_file: \"{hw}\"}}\n",
        key.display()
    ));
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 0.012345);
    assert_eq!(f.auth_of("/payment-api").as_deref(), Some("Bearer k-123"));
    assert_eq!(o.allocation.cpu_cores, Some(7.0));
    assert_eq!(o.allocation.memory_bytes, Some(22.4 * 1073741824.0));
    // The first call reads 30 days back.
    let first = f.seen.lock().unwrap()[0].0.clone();
    assert!(
        first.contains("afterTimestamp=2025-12-12T00%3A00%3A00Z"),
        "{first}"
    );
    // Same invoices again: nothing counted twice; the accepted one settles.
    let mut inv: serde_json::Value = serde_json::from_str(&fixture("golem/invoices.json")).unwrap();
    inv[1]["status"] = "SETTLED".into();
    f.json("/payment-api/v1/invoices", &inv.to_string());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 0.112345);
    // That call started just before the pending invoice; the next one starts at the newest
    // invoice, as none is pending any more.
    let last = f.seen.lock().unwrap().last().unwrap().0.clone();
    assert!(
        last.contains("afterTimestamp=2026-01-01T10%3A59%3A59Z"),
        "{last}"
    );
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 0.112345);
    let last = f.seen.lock().unwrap().last().unwrap().0.clone();
    assert!(
        last.contains("afterTimestamp=2026-01-01T11%3A59%3A59Z"),
        "{last}"
    );

    // count_accepted counts ACCEPTED at once.
    let n = node(&format!(
        "    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", count_accepted: true}}\n",
        key.display()
    ));
    f.json("/payment-api/v1/invoices", &fixture("golem/invoices.json"));
    let o = poll(n.build(clock()).as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 0.112345);
}

#[tokio::test]
async fn golem_faults() {
    let f = Fake::default();
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k");
    let n = node(&format!(
        "    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", hardware_file: /nonexistent/hardware.json}}\n",
        key.display()
    ));
    let a = n.build(clock());
    for (reply, reason) in [
        (Reply::Json(401, "{}".into()), "http_status"),
        (Reply::Json(500, "{}".into()), "http_status"),
        (Reply::Hang, "timeout"),
        (Reply::Huge(50 << 20), "too_large"),
        (Reply::Json(200, r#"[{"invoiceId":"#.into()), "parse"),
        (Reply::Json(200, r#"{"not":"a list"}"#.into()), "parse"),
    ] {
        f.set("/payment-api/v1/invoices", reply);
        assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), reason);
    }
    // Wrong types: the bad invoice is skipped, the good one counts; the missing hardware file
    // is skipped too.
    f.json(
        "/payment-api/v1/invoices",
        r#"[{"invoiceId":"a","timestamp":"2026-01-01T10:00:00Z","amount":0.5,"status":"SETTLED"},
            {"invoiceId":"b","timestamp":"2026-01-01T10:00:00Z","amount":[1],"status":"SETTLED"},
            {"invoiceId":"c","timestamp":"2026-01-01T10:00:00Z","amount":"-3","status":"SETTLED"}]"#,
    );
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 0.5);
    assert_eq!(o.skipped, ["/1/amount", "/2/amount", "hardware.json"]);
    // An unreadable app key file: the node is down with reason io, named.
    std::fs::remove_file(&key).unwrap();
    let e = poll(a.as_ref()).await.unwrap_err();
    assert_eq!(e.reason(), "io");
    assert!(e.to_string().contains("appkey"), "{e}");
}

#[tokio::test]
async fn golem_payment_status_both_shapes() {
    for (file, accepted, want) in [
        ("golem/status_new.json", false, 1.2),
        ("golem/status_old.json", false, 1.2),
        ("golem/status_new.json", true, 1.4),
    ] {
        let n = node(&format!(
            "    kind: golem\n    golem: {{earnings: status, count_accepted: {accepted}, status_command: [cat, \"{}\"]}}\n",
            fixture_path(file)
        ));
        let o = poll(n.build(clock()).as_ref()).await.unwrap();
        assert_eq!(o.earnings["GLM"], want, "{file}");
        assert_eq!(gauge(&o, "golem_wallet_balance_glm", None), Some(12.3456));
    }
}

fn abi_earnings(earnings: &[u128]) -> String {
    let w = |x: u128| format!("{x:064x}");
    let mut s = String::from("0x");
    s += &w(96);
    s += &w(96 + 32 * (1 + earnings.len() as u128));
    s += &w(7);
    s += &w(earnings.len() as u128);
    for i in 0..earnings.len() {
        s += &w(0x1000 + i as u128);
    }
    s += &w(earnings.len() as u128);
    for e in earnings {
        s += &w(*e);
    }
    s
}

#[tokio::test]
async fn streamr_info_and_operator_earnings_in_exact_wei() {
    let f = Fake::default();
    f.json("/info", &fixture("streamr/info.json"));
    let result = abi_earnings(&[1_000_000_000_000_000_001, 2_250_000_000_000_000_000]);
    f.json(
        "/rpc",
        &format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{result}"}}"#),
    );
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "streamr-key");
    let n = node(&format!(
        "    kind: streamr\n    streamr:\n      url: \"{url}/info\"\n      api_key_file: \"{}\"\n      earnings: {{rpc_url: \"{url}/rpc\", operator_contract: \"0x00000000000000000000000000000000000000aB\"}}\n",
        key.display()
    ));
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(
        o.earnings["DATA"],
        "3.250000000000000001".parse::<f64>().unwrap()
    );
    assert_eq!(f.auth_of("/info").as_deref(), Some("Bearer streamr-key"));
    let call = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.0 == "/rpc")
        .unwrap()
        .2
        .clone();
    assert!(call.contains("\"data\":\"0x2ebd89d1\""), "{call}");
    assert!(
        call.contains("0x00000000000000000000000000000000000000ab"),
        "{call}"
    );

    // 401 from the node: down. A broken RPC answer: up, earnings skipped.
    f.set("/info", Reply::Json(401, "{}".into()));
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "http_status");
    let n = node(&format!(
        "    kind: streamr\n    streamr:\n      url: \"{url}/info\"\n      earnings: {{rpc_url: \"{url}/rpc\", operator_contract: \"0x00000000000000000000000000000000000000ab\"}}\n"
    ));
    f.json("/info", "{}");
    f.json("/rpc", r#"{"jsonrpc":"2.0","id":1,"result":"0x1234"}"#);
    let o = poll(n.build(clock()).as_ref()).await.unwrap();
    assert!(o.earnings.is_empty());
    assert_eq!(o.skipped, ["getSponsorshipsAndEarnings"]);
    f.set("/info", Reply::Huge(50 << 20));
    assert_eq!(
        poll(n.build(clock()).as_ref()).await.unwrap_err().reason(),
        "too_large"
    );
}

#[tokio::test]
async fn grass_health_from_a_fake_docker_socket_and_opt_in_points() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let docker = Fake::default();
    docker.json(
        "/containers/grass/json",
        &fixture("grass/container_running.json"),
    );
    docker.serve_unix(&sock).await;
    let api = Fake::default();
    api.json("/retrieveUser", &fixture("grass/retrieveUser.json"));
    let api_url = api.serve_tcp().await;
    let token = key_file(dir.path(), "tok-1");
    let n = node(&format!(
        "    kind: grass\n    grass:\n      docker_socket: \"{}\"\n      container: grass\n      points: {{url: \"{api_url}/retrieveUser\", token_file: \"{}\"}}\n",
        sock.display(),
        token.display()
    ));
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["GRASS"], 123456.5);
    assert_eq!(gauge(&o, "grass_container_restarts", None), Some(2.0));
    // The token goes as is (no Bearer), as the unofficial clients send it.
    assert_eq!(api.auth_of("/retrieveUser").as_deref(), Some("tok-1"));
    // Points are fetched at most every 15 minutes.
    poll(a.as_ref()).await.unwrap();
    assert_eq!(api.hits("/retrieveUser"), 1);

    docker.json(
        "/containers/grass/json",
        &fixture("grass/container_exited.json"),
    );
    let e = poll(a.as_ref()).await.unwrap_err();
    assert_eq!(e.reason(), "refused");
    assert!(e.to_string().contains("not running (status exited)"), "{e}");
    docker.set(
        "/containers/grass/json",
        Reply::Json(404, r#"{"message":"No such container: grass"}"#.into()),
    );
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "http_status");
    docker.json("/containers/grass/json", r#"{"State":{"Running":"yes"}}"#);
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "parse");
    docker.set("/containers/grass/json", Reply::Hang);
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "timeout");
    // No Docker at all.
    let n = node(&format!(
        "    kind: grass\n    grass: {{docker_socket: \"{}/none.sock\", container: grass}}\n",
        dir.path().display()
    ));
    assert_eq!(
        poll(n.build(clock()).as_ref()).await.unwrap_err().reason(),
        "refused"
    );
}

#[tokio::test]
async fn http_json_maps_pointers_with_scales_and_skips_wrong_types() {
    let f = Fake::default();
    f.json(
        "/status",
        r#"{"wallet":{"earned_cents":1234,"points":"17.5"},"res":{"cpu":1.5,"mem_mib":512,"disk":"x"},"cap":{"cpu":4}}"#,
    );
    let url = f.serve_tcp().await;
    let n = node(&format!(
        "    kind: http_json\n    http_json:\n      protocol: mynode\n      url: \"{url}/status\"\n      headers: {{X-Api-Key: abc}}\n      earnings:\n        USD: {{pointer: /wallet/earned_cents, scale: 0.01}}\n        PTS: /wallet/points\n        BAD: /wallet/missing\n      usage:\n        cpu_cores: /res/cpu\n        memory_bytes: {{pointer: /res/mem_mib, scale: 1048576}}\n        disk_bytes: /res/disk\n      allocation_fields: {{cpu_cores: /cap/cpu}}\n"
    ));
    assert_eq!(n.protocol(), "mynode");
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["USD"], 12.34);
    assert_eq!(o.earnings["PTS"], 17.5);
    assert_eq!(o.usage.cpu_cores, Some(1.5));
    assert_eq!(o.usage.memory_bytes, Some(512.0 * 1048576.0));
    assert_eq!(o.usage.disk_bytes, None);
    assert_eq!(o.allocation.cpu_cores, Some(4.0));
    assert_eq!(o.skipped, ["/wallet/missing", "/res/disk"]);
    f.set("/status", Reply::Json(503, "busy".into()));
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "http_status");
}

#[tokio::test]
async fn prometheus_kind_reads_a_storj_exporter() {
    let f = Fake::default();
    f.set(
        "/metrics",
        Reply::Text(fixture("storj_exporter/metrics.txt")),
    );
    let url = f.serve_tcp().await;
    let n = node(&format!(
        "    kind: prometheus\n    prometheus:\n      protocol: storj\n      url: \"{url}/metrics\"\n      earnings:\n        USD: {{metric: storj_payout_currentMonth, labels: {{type: payout}}, scale: 0.01}}\n      usage:\n        disk_bytes: {{metric: storj_total_diskspace, labels: {{type: used}}}}\n      allocation_fields:\n        disk_bytes: {{metric: storj_total_diskspace, labels: {{type: available}}}}\n        cpu_cores: {{metric: nonexistent}}\n"
    ));
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.earnings["USD"], 1.6449);
    assert_eq!(o.usage.disk_bytes, Some(3.381577296e12));
    assert_eq!(o.allocation.disk_bytes, Some(3.5e12));
    assert_eq!(o.skipped, ["nonexistent"]);
    f.set(
        "/metrics",
        Reply::Text("storj_total_diskspace{type=\"used\" 1\n".into()),
    );
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "parse");
    f.set("/metrics", Reply::Huge(50 << 20));
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "too_large");
}

#[tokio::test]
async fn exec_kind_runs_argv_without_a_shell() {
    let n = node(
        "    kind: exec\n    exec:\n      protocol: custom\n      command: [echo, '{\"earnings\":{\"GLM\":2.5},\"usage\":{\"cpu_cores\":\"x\"}}']\n",
    );
    let o = poll(n.build(clock()).as_ref()).await.unwrap();
    assert_eq!(o.earnings["GLM"], 2.5);
    assert_eq!(o.skipped, ["/usage/cpu_cores"]);
}

#[tokio::test]
async fn http_price_source_updates_prices_and_expires_them() {
    use depin_orcha::adapters::prices::HttpPriceSource;
    let f = Fake::default();
    f.json(
        "/prices",
        r#"{"storj":{"usd":0.45},"golem":{"usd":"0.3"},"data":{"usd":null}}"#,
    );
    let url = f.serve_tcp().await;
    let cfg = load(&format!(
        "prices:\n  static: {{GLM: 0.25}}\n  http:\n    url: \"{url}/prices\"\n    interval: 1m\n    max_age: 1h\n    tokens: {{STORJ: /storj/usd, GLM: /golem/usd, DATA: /data/usd}}\n"
    ));
    assert_eq!(cfg.prices.get("GLM"), Some(&0.25));
    let spec = cfg.price_source.clone().unwrap();
    let table = Arc::new(PriceTable::new(cfg.prices.clone()));
    let metrics = Arc::new(Metrics::for_config(&cfg).unwrap());
    let mc = ManualClock::new(T0);
    let src = HttpPriceSource {
        spec,
        static_prices: cfg.prices.clone(),
        table: table.clone(),
        gauges: metrics.clone(),
        clock: Arc::new(mc.clone()),
    };
    let mut last = Default::default();
    src.refresh(&mut last).await.unwrap();
    assert_eq!(table.get("STORJ"), Some(0.45));
    assert_eq!(table.get("GLM"), Some(0.3));
    assert_eq!(table.get("DATA"), None, "null is no price");
    let text = metrics.render();
    let t = T0 / 1000;
    for want in [
        format!("depin_token_price_last_update_timestamp_seconds{{token=\"STORJ\"}} {t}"),
        "depin_token_price_usd{token=\"STORJ\"} 0.45".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want} in\n{text}");
    }
    // The source fails; after max_age GLM falls back to its static price, STORJ to none.
    f.set("/prices", Reply::Json(500, "{}".into()));
    mc.advance(30 * 60_000);
    assert_eq!(
        src.refresh(&mut last).await.unwrap_err().reason(),
        "http_status"
    );
    assert_eq!(table.get("STORJ"), Some(0.45), "still fresh enough");
    mc.advance(31 * 60_000);
    assert!(src.refresh(&mut last).await.is_err());
    assert_eq!(table.get("STORJ"), None);
    assert_eq!(table.get("GLM"), Some(0.25));
    let text = metrics.render();
    assert!(
        !text.contains("depin_token_price_usd{token=\"STORJ\"}"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "depin_token_price_last_update_timestamp_seconds{{token=\"STORJ\"}} {t}"
        )),
        "the age keeps growing, so the stale alert fires"
    );
}

#[test]
fn plain_price_map_still_loads() {
    let c = load("prices: {STORJ: 0.45, GLM: 0.3}\n");
    assert_eq!(c.prices.len(), 2);
    assert!(c.price_source.is_none());
}

fn errors(text: &str) -> Vec<String> {
    match config::parse_str(&format!("{HOST}{text}"), "t.yml") {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(e) => e.lines(),
    }
}

#[test]
fn config_errors_name_the_node_and_key() {
    let e = errors("nodes:\n  - name: s\n    kind: storj\n    storj: {url: \"ftp://x:14002\", satellites_interval: 10s}\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains(
            "nodes[0].storj.url: \"ftp://x:14002\": expected an http:// or https:// URL with a host"
        ),
        "{e:?}"
    );
    assert!(
        e[1].contains("nodes[0].storj.satellites_interval: must be at least 60s"),
        "{e:?}"
    );
    let e = errors("nodes:\n  - name: st\n    kind: streamr\n    streamr: {api_key_env: DEPIN_TEST_SURELY_UNSET_VAR}\n");
    assert_eq!(
        e,
        ["t.yml:5:5: nodes[0].streamr: node \"st\" has no credential: give api_key_file or set the environment variable DEPIN_TEST_SURELY_UNSET_VAR"]
    );
    let e = errors("nodes:\n  - name: g\n    kind: grass\n    grass: {points: {url: \"http://x/\", token_env: DEPIN_TEST_SURELY_UNSET_VAR}}\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .any(|l| l.contains("missing required key \"container\"")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|l| l.contains("node \"g\" has no credential")),
        "{e:?}"
    );
}

#[test]
fn an_unreadable_key_file_is_a_warning_not_an_error() {
    let c = load(
        "nodes:\n  - name: golem\n    kind: golem\n    golem: {app_key_file: /nonexistent/key}\n",
    );
    assert_eq!(c.nodes.len(), 1);
    assert!(
        c.warnings.iter().any(|w| w
            .to_string()
            .contains("nodes[0].golem.app_key_file: node \"golem\": cannot read /nonexistent/key")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        // prometheus.yml and alertmanager.yml are Prometheus' and Alertmanager's configs.
        if !name.ends_with(".yml") || name == "prometheus.yml" || name == "alertmanager.yml" {
            continue;
        }
        let c = config::load_file(&p).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(!c.nodes.is_empty(), "{name}");
        n += 1;
    }
    assert!(
        n >= 3,
        "expected docker-host, systemd-host and storj-exporter examples"
    );
}

#[tokio::test]
async fn every_kind_through_the_coordinator_on_metrics() {
    let f = Fake::default();
    f.json("/payment-api/v1/invoices", &fixture("golem/invoices.json"));
    f.json("/info", &fixture("streamr/info.json"));
    f.json(
        "/rpc",
        &format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":"{}"}}"#,
            abi_earnings(&[2_500_000_000_000_000_000])
        ),
    );
    f.set(
        "/metrics",
        Reply::Text(fixture("storj_exporter/metrics.txt")),
    );
    f.json("/retrieveUser", &fixture("grass/retrieveUser.json"));
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let docker = Fake::default();
    docker.json(
        "/containers/grass/json",
        &fixture("grass/container_running.json"),
    );
    docker.serve_unix(&sock).await;
    let key = key_file(dir.path(), "k");
    let hw = fixture_path("golem/hardware.json");
    let cfg = load(&format!(
        r#"global: {{poll_interval: 1s, poll_timeout: 1s}}
prices: {{GLM: 0.5, DATA: 0.02, GRASS: 0}}
nodes:
  - name: golem
    kind: golem
    golem: {{url: "{url}", app_key_file: "{k}", hardware_file: "{hw}"}}
  - name: streamr
    kind: streamr
    streamr: {{url: "{url}/info", earnings: {{rpc_url: "{url}/rpc", operator_contract: "0x00000000000000000000000000000000000000ab"}}}}
  - name: grass
    kind: grass
    grass: {{docker_socket: "{s}", container: grass, points: {{url: "{url}/retrieveUser", token_file: "{k}"}}}}
  - name: exporter
    kind: prometheus
    prometheus:
      protocol: storj
      url: "{url}/metrics"
      earnings: {{USD: {{metric: storj_payout_currentMonth, labels: {{type: payout}}, scale: 0.01}}}}
"#,
        k = key.display(),
        s = sock.display()
    ));
    let metrics = Arc::new(Metrics::for_config(&cfg).unwrap());
    let clock: SharedClock = Arc::new(TokioClock::new(T0));
    let c = Coordinator::new(&cfg, metrics.clone(), Arc::new(Db::in_memory()), clock).unwrap();
    let health = c.health();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(c.run(rx));
    tokio::time::timeout(Duration::from_secs(5), health.wait_ready())
        .await
        .unwrap();
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    for want in [
        "depin_earnings_total{node=\"golem\",protocol=\"golem\",token=\"GLM\"} 0.012345",
        "depin_earnings_usd_total{node=\"golem\",protocol=\"golem\"} 0.0061725",
        "depin_allocation_cpu_cores{node=\"golem\",protocol=\"golem\"} 7",
        "depin_earnings_total{node=\"streamr\",protocol=\"streamr\",token=\"DATA\"} 2.5",
        "depin_earnings_usd_total{node=\"streamr\",protocol=\"streamr\"} 0.05",
        "depin_earnings_total{node=\"grass\",protocol=\"grass\",token=\"GRASS\"} 123456.5",
        "depin_grass_container_restarts{node=\"grass\",protocol=\"grass\"} 2",
        "depin_earnings_total{node=\"exporter\",protocol=\"storj\",token=\"USD\"} 1.6449",
        "depin_adapter_up{node=\"grass\",protocol=\"grass\"} 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

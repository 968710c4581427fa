//! The real node kinds against fake nodes: a small HTTP server on port 0 (and a unix socket
//! for the Docker Engine API) that answers with the payloads of tests/fixtures/nodes/ (built
//! from the field names in the nodes' source, see its README) and with faults: a hang, 500, a
//! refused connection, a truncated answer, wrong types, a 50 MB body, a counter that goes
//! backwards. Each fault ends with the node down with a reason or the value skipped; never a
//! panic, never a wrong number on /metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use depin_orcha::adapters::prices::PriceTable;
use depin_orcha::adapters::reading::Reading;
use depin_orcha::adapters::{Adapter, Health, Observation, PollError};
use depin_orcha::clock::{ManualClock, SharedClock};
use depin_orcha::config::{self, NodeConfig};
use depin_orcha::coordinator::{Coordinator, TokioClock};
use depin_orcha::metrics::Metrics;
use depin_orcha::tsdb::Db;

mod common;

use common::fake_node::{Fake, Reply};

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

/// One call of a node's secondary endpoint, cut at 2 s.
async fn fetch(a: &dyn Adapter, endpoint: &str) -> Result<Observation, PollError> {
    tokio::time::timeout(Duration::from_secs(2), a.fetch(endpoint))
        .await
        .unwrap_or(Err(PollError::Timeout(Duration::from_secs(2))))
}

/// The value of a cumulative reading of `stream` (in `period`, when given).
fn cumulative(o: &Observation, stream: &str, period: Option<&str>) -> Option<String> {
    o.readings.iter().find_map(|r| match r {
        Reading::Cumulative {
            stream: s,
            period: p,
            value,
            ..
        } if s.name == stream && period.is_none_or(|x| x == p) => Some(value.to_string()),
        _ => None,
    })
}

/// The credits of an observation per (token, network).
fn credits(o: &Observation) -> Vec<(String, String, String)> {
    o.readings
        .iter()
        .filter_map(|r| match r {
            Reading::Credit { stream, amount } => Some((
                stream.token.clone(),
                stream.network.clone(),
                amount.to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn storj_reads_dashboard_scores_and_payout() {
    let (f, url) = storj_fake().await;
    let a = storj_node(&url, clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(
        o.account.as_deref(),
        Some("1Xf5fBq3ziDgeXXnJr8i2Q9bsWhKrx1zPxPbmFD4eVvTBgWp5E")
    );
    assert!(o.readings.is_empty(), "the dashboard says nothing of money");
    assert_eq!(o.allocation.disk_bytes, Some(3.5e12));
    assert_eq!(o.usage.disk_bytes, Some(3381577296000.0 + 117961155200.0));
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
    // The scores are their own endpoint.
    let s = fetch(a.as_ref(), "satellites").await.unwrap();
    assert_eq!(
        gauge(&s, "storj_audit_score", Some("us1.storj.io")),
        Some(1.0)
    );
    assert_eq!(
        gauge(&s, "storj_suspension_score", Some("eu1.storj.io")),
        Some(0.55)
    );
    assert_eq!(
        gauge(&s, "storj_online_score", Some("eu1.storj.io")),
        Some(0.97)
    );
    assert_eq!(f.hits("/api/sno/satellites"), 1);
    // And the payout: the gross estimate of this month (T0 is in 2026-01) in exact USD.
    let p = fetch(a.as_ref(), "estimated_payout").await.unwrap();
    assert_eq!(p.account, o.account);
    assert_eq!(
        cumulative(&p, "gross", Some("2026-01")).as_deref(),
        Some("1.6449")
    );
    assert_eq!(
        cumulative(&p, "held", Some("2026-01")).as_deref(),
        Some("0.00")
    );
    assert_eq!(
        gauge(&p, "storj_payout_month_expected_usd", None),
        Some(5.41)
    );
    let e = a.endpoints();
    let names: Vec<&str> = e.iter().map(|e| e.name).collect();
    assert_eq!(names, ["estimated_payout", "satellites", "paystubs"]);
    assert_eq!(e[0].interval, None, "every poll");
    assert_eq!(e[1].interval, Some(Duration::from_secs(60)));
    assert_eq!(e[1].timeout, Duration::from_secs(120));
}

#[tokio::test]
async fn storj_gross_held_and_paid_from_recorded_answers() {
    let (f, url) = storj_fake().await;
    // storagenode v1.37.1, recorded: payout 877.2199999999999 + held 0.71 = 877.93 cents.
    f.json(
        "/api/sno/estimated-payout",
        &fixture("storj/estimated-payout_v1.37.1.json"),
    );
    f.json(
        "/api/heldamount/paystubs/2025-01/2026-01",
        &fixture("storj/paystubs_2020-03.constructed.json"),
    );
    let a = storj_node(&url, clock());
    let p = fetch(a.as_ref(), "estimated_payout").await.unwrap();
    assert_eq!(
        cumulative(&p, "gross", Some("2026-01")).as_deref(),
        Some("8.779300")
    );
    assert_eq!(
        cumulative(&p, "held", Some("2026-01")).as_deref(),
        Some("0.0071")
    );
    let p = fetch(a.as_ref(), "paystubs").await.unwrap();
    assert_eq!(
        cumulative(
            &p,
            "paid:12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
            Some("2020-03")
        )
        .as_deref(),
        Some("0.000017")
    );
}

#[tokio::test]
async fn storj_money_is_booked_to_the_node_id_read_with_it() {
    let (f, url) = storj_fake().await;
    f.json(
        "/api/heldamount/paystubs/2025-01/2026-01",
        &fixture("storj/paystubs_2020-03.constructed.json"),
    );
    let a = storj_node(&url, clock());
    poll(a.as_ref()).await.unwrap();
    let id = "1Xf5fBq3ziDgeXXnJr8i2Q9bsWhKrx1zPxPbmFD4eVvTBgWp5E";
    assert_eq!(
        fetch(a.as_ref(), "estimated_payout")
            .await
            .unwrap()
            .account
            .as_deref(),
        Some(id)
    );
    // Reinstalled between two dashboard polls: a new identity, its estimate back near 0. The
    // payout call must not book it to the old ID (a drop, a correction of money not lost).
    let mut sno: serde_json::Value = serde_json::from_str(&fixture("storj/sno.json")).unwrap();
    sno["nodeID"] = "12NewNodeAfterReinstallxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into();
    f.json("/api/sno/", &sno.to_string());
    for endpoint in ["estimated_payout", "paystubs"] {
        assert_eq!(
            fetch(a.as_ref(), endpoint)
                .await
                .unwrap()
                .account
                .as_deref(),
            Some("12NewNodeAfterReinstallxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            "{endpoint}"
        );
    }
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
async fn storj_wrong_types_are_skipped() {
    let (f, url) = storj_fake().await;
    let a = storj_node(&url, clock());
    // A string payout, a string disk size.
    f.json(
        "/api/sno/estimated-payout",
        r#"{"currentMonth":{"payout":"170.0x","held":0},"previousMonth":{"payout":1,"held":0}}"#,
    );
    let mut sno: serde_json::Value = serde_json::from_str(&fixture("storj/sno.json")).unwrap();
    sno["diskSpace"]["available"] = serde_json::json!("3.5TB");
    f.json("/api/sno/", &sno.to_string());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.allocation.disk_bytes, None);
    assert!(o.skipped.contains(&"/diskSpace/available".to_string()));
    let p = fetch(a.as_ref(), "estimated_payout").await.unwrap();
    assert_eq!(cumulative(&p, "gross", Some("2026-01")), None);
    assert_eq!(p.skipped, ["/currentMonth/payout"]);
    // The previous month still reads.
    assert_eq!(
        cumulative(&p, "gross", Some("2025-12")).as_deref(),
        Some("0.01")
    );
}

#[tokio::test]
async fn storj_through_the_coordinator_on_metrics() {
    let (f, url) = storj_fake().await;
    let dead = refused_url().await;
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\", payout_interval: 1s}}\n  - name: dead\n    kind: storj\n    storj: {{url: \"{dead}\"}}\n"
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The payout goes backwards within the month, no satellite disqualified the node: a
    // pending correction, not a reset; the counter stays.
    f.json(
        "/api/sno/estimated-payout",
        r#"{"currentMonth":{"payout":100.0,"held":0},"previousMonth":{"payout":0,"held":0}}"#,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    for want in [
        "depin_earnings_total{node=\"storj\",protocol=\"storj\",token=\"USD\"} 1.6449",
        "depin_earnings_pending_correction{node=\"storj\",protocol=\"storj\",token=\"USD\"} 0.6449",
        "depin_earnings_corrections_total{node=\"storj\",protocol=\"storj\",token=\"USD\"} 0",
        "depin_earnings_usd_total{node=\"storj\",protocol=\"storj\"} 1.6449",
        "depin_storj_held_usd_total{node=\"storj\",protocol=\"storj\"} 0",
        "depin_storj_suspension_score{node=\"storj\",protocol=\"storj\",satellite=\"eu1.storj.io\"} 0.55",
        "depin_storj_audit_score{node=\"storj\",protocol=\"storj\",satellite=\"us1.storj.io\"} 1",
        "depin_allocation_disk_bytes{node=\"storj\",protocol=\"storj\"} 3500000000000",
        "depin_adapter_endpoint_up{endpoint=\"estimated_payout\",node=\"storj\",protocol=\"storj\"} 1",
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

const GOLEM_ME: &str = "0x3e2d6a1f4c7b8e9d0a1b2c3d4e5f60718293a4b5";

async fn golem_fake() -> (Fake, String) {
    let f = Fake::default();
    f.json("/me", &fixture("golem/me.constructed.json"));
    f.json(
        "/payment-api/v1/invoices",
        &fixture("golem/invoices.constructed.json"),
    );
    f.json("/payment-api/v1/invoiceEvents", "[]");
    let url = f.serve_tcp().await;
    (f, url)
}

/// Hands the observation's journaled positions back, as the coordinator does.
fn commit(a: &dyn Adapter, o: &Observation) {
    for r in &o.readings {
        if let Reading::Cursor { name, value } = r {
            a.set_cursor(name, value);
        }
    }
}

#[tokio::test]
async fn golem_invoices_count_settled_once_with_the_app_key() {
    let (f, url) = golem_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k-123");
    let hw = fixture_path("golem/hardware.json");
    let n = node(&format!(
        "    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", hardware_file: \"{hw}\"}}\n",
        key.display()
    ));
    let a = n.build(clock());
    let o = poll(a.as_ref()).await.unwrap();
    assert_eq!(o.account.as_deref(), Some(GOLEM_ME));
    assert_eq!(f.auth_of("/me").as_deref(), Some("Bearer k-123"));
    assert_eq!(o.allocation.cpu_cores, Some(7.0));
    assert_eq!(o.allocation.memory_bytes, Some(22.4 * 1073741824.0));
    let o = fetch(a.as_ref(), "invoices").await.unwrap();
    // Issued and settled: GLM on polygon, tGLM on hoodi apart; the invoice received as a
    // requestor (2 GLM) and the rejected one are not earnings.
    assert_eq!(
        credits(&o),
        [
            (
                "GLM".into(),
                "polygon".into(),
                "0.112345000000000000".into()
            ),
            ("tGLM".into(), "hoodi".into(), "5.000000000000000001".into())
        ]
    );
    assert_eq!(f.auth_of("/payment-api").as_deref(), Some("Bearer k-123"));
    assert_eq!(gauge(&o, "golem_invoices_open", None), Some(1.0));
    // The first call reads 30 days back; events with every type asked for, without waiting.
    let seen = f.seen.lock().unwrap().clone();
    let first = seen
        .iter()
        .find(|s| s.0.starts_with("/payment-api/v1/invoices?"))
        .unwrap();
    assert!(
        first
            .0
            .contains("afterTimestamp=2025-12-12T00%3A00%3A00.000Z&maxItems=1000"),
        "{}",
        first.0
    );
    let ev = seen
        .iter()
        .find(|s| s.0.starts_with("/payment-api/v1/invoiceEvents?"))
        .unwrap();
    assert!(ev.0.contains("maxEvents=1000&timeout=0"), "{}", ev.0);
    commit(a.as_ref(), &o);
    // The same invoices again: nothing counted twice. Then the accepted one settles.
    let o = fetch(a.as_ref(), "invoices").await.unwrap();
    assert!(credits(&o).is_empty(), "{:?}", credits(&o));
    commit(a.as_ref(), &o);
    f.json(
        "/payment-api/v1/invoiceEvents",
        r#"[{"invoiceId":"0b7c6a1e-2d3f-4e5a-8b9c-0d1e2f3a4b02","eventDate":"2026-01-02T10:00:00.100Z","eventType":"InvoiceSettledEvent"}]"#,
    );
    let o = fetch(a.as_ref(), "invoices").await.unwrap();
    assert_eq!(
        credits(&o),
        [("GLM".into(), "polygon".into(), "0.3".into())]
    );
    assert_eq!(gauge(&o, "golem_invoices_open", None), None);
    // Resuming after the last invoice read: its millisecond again, its id skipped.
    let last = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s.0.starts_with("/payment-api/v1/invoices?"))
        .unwrap()
        .0
        .clone();
    assert!(
        last.contains("afterTimestamp=2026-01-01T13%3A00%3A00.000Z")
            || last.contains("afterTimestamp=2026-01-01T12%3A59%3A59.999Z"),
        "{last}"
    );

    // count_accepted counts ACCEPTED at once.
    let n = node(&format!(
        "    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", count_accepted: true, networks: [polygon]}}\n",
        key.display()
    ));
    f.json("/payment-api/v1/invoiceEvents", "[]");
    let o = fetch(n.build(clock()).as_ref(), "invoices").await.unwrap();
    assert_eq!(
        credits(&o),
        [(
            "GLM".into(),
            "polygon".into(),
            "0.412345000000000000".into()
        )]
    );
}

#[tokio::test]
async fn golem_faults() {
    let (f, url) = golem_fake().await;
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
        f.set("/payment-api/v1/invoices", reply.clone());
        assert_eq!(
            fetch(a.as_ref(), "invoices").await.unwrap_err().reason(),
            reason
        );
        f.set("/me", reply);
        assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), reason);
        f.json("/me", &fixture("golem/me.constructed.json"));
    }
    // Wrong types: the bad invoices are skipped, the good one counts; the missing hardware
    // file is skipped too.
    f.json(
        "/payment-api/v1/invoices",
        &format!(r#"[{{"invoiceId":"a","issuerId":"{GOLEM_ME}","paymentPlatform":"erc20-polygon-glm","timestamp":"2026-01-10T10:00:00Z","amount":0.5,"status":"SETTLED"}},
            {{"invoiceId":"b","issuerId":"{GOLEM_ME}","paymentPlatform":"erc20-polygon-glm","timestamp":"2026-01-10T10:00:00Z","amount":[1],"status":"SETTLED"}},
            {{"invoiceId":"c","issuerId":"{GOLEM_ME}","paymentPlatform":"erc20-polygon-glm","timestamp":"2026-01-10T10:00:00Z","amount":"-3","status":"SETTLED"}},
            {{"invoiceId":"d","issuerId":"{GOLEM_ME}","timestamp":"yesterday","amount":"1","status":"SETTLED"}}]"#),
    );
    let o = fetch(a.as_ref(), "invoices").await.unwrap();
    assert_eq!(
        credits(&o),
        [("GLM".into(), "polygon".into(), "0.5".into())]
    );
    assert_eq!(
        o.skipped,
        [
            "/invoices/1/amount",
            "/invoices/2/amount",
            "/invoices/3/timestamp"
        ]
    );
    assert_eq!(poll(a.as_ref()).await.unwrap().skipped, ["hardware.json"]);
    // An unreadable app key file: the node is down with reason io, named.
    std::fs::remove_file(&key).unwrap();
    let e = poll(a.as_ref()).await.unwrap_err();
    assert_eq!(e.reason(), "io");
    assert!(e.to_string().contains("appkey"), "{e}");
}

#[tokio::test]
async fn golem_payment_status_both_shapes() {
    for (file, accepted, want, token) in [
        (
            "golem/status_polygon.constructed.json",
            false,
            "0.112345000000000000",
            "GLM",
        ),
        (
            "golem/status_polygon.constructed.json",
            true,
            "0.412345000000000000",
            "GLM",
        ),
        ("golem/status_v0.4.0.constructed.json", false, "1.2", "GLM"),
    ] {
        let n = node(&format!(
            "    kind: golem\n    golem: {{earnings: status, count_accepted: {accepted}, status_command: [cat, \"{}\"]}}\n",
            fixture_path(file)
        ));
        let o = poll(n.build(clock()).as_ref()).await.unwrap();
        assert_eq!(
            cumulative(&o, "status", None).as_deref(),
            Some(want),
            "{file}"
        );
        let Reading::Cumulative { stream, .. } = &o.readings[0] else {
            panic!()
        };
        assert_eq!(
            (stream.token.as_str(), stream.network.as_str()),
            (token, "polygon")
        );
        assert_eq!(gauge(&o, "golem_wallet_balance_glm", None), Some(12.3456));
    }
    // An answer for yagna's default network (a testnet) when the config asks for polygon.
    let n = node(&format!(
        "    kind: golem\n    golem: {{earnings: status, status_command: [cat, \"{}\"]}}\n",
        fixture_path("golem/status_default-network.constructed.json")
    ));
    let e = poll(n.build(clock()).as_ref()).await.unwrap_err();
    assert_eq!(e.reason(), "parse");
    assert!(
        e.to_string()
            .contains("network hoodi, the config asks for polygon"),
        "{e}"
    );
    // Without status_command the command asks for the network configured.
    let n = node("    kind: golem\n    golem: {earnings: status, status_network: polygon}\n");
    let spec = n
        .kind
        .as_any()
        .downcast_ref::<depin_orcha::adapters::golem::GolemSpec>()
        .unwrap();
    let depin_orcha::adapters::golem::Earnings::Status { command, .. } = &spec.earnings else {
        panic!()
    };
    assert_eq!(
        command.join(" "),
        "yagna payment status --json --network polygon --driver erc20"
    );
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

/// A JSON-RPC fake of a chain at block `latest` whose operator pool holds `unwithdrawn` and
/// whose logs are `logs`.
fn chain(latest: u64, unwithdrawn: &[u128], logs: serde_json::Value) -> Reply {
    Reply::Rpc(HashMap::from([
        (
            "eth_blockNumber".to_string(),
            serde_json::json!(format!("{latest:#x}")),
        ),
        (
            "eth_call".to_string(),
            serde_json::json!(abi_earnings(unwithdrawn)),
        ),
        ("eth_getLogs".to_string(), logs),
    ]))
}

#[tokio::test]
async fn streamr_info_and_operator_earnings_in_exact_wei() {
    let f = Fake::default();
    f.json("/info", &fixture("streamr/info.json"));
    f.set(
        "/rpc",
        chain(
            5_000_064,
            &[1_000_000_000_000_000_001, 2_250_000_000_000_000_000],
            serde_json::json!([]),
        ),
    );
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "streamr-key");
    let n = node(&format!(
        "    kind: streamr\n    streamr:\n      url: \"{url}/info\"\n      api_key_file: \"{}\"\n      earnings: {{rpc_url: \"{url}/rpc\", operator_contract: \"0x00000000000000000000000000000000000000aB\"}}\n",
        key.display()
    ));
    let a = n.build(clock());
    poll(a.as_ref()).await.unwrap();
    assert_eq!(f.auth_of("/info").as_deref(), Some("Bearer streamr-key"));
    let o = fetch(a.as_ref(), "chain").await.unwrap();
    assert_eq!(
        cumulative(&o, "pool", None).as_deref(),
        Some("3.250000000000000001")
    );
    assert_eq!(
        cumulative(&o, "earnings", None).as_deref(),
        Some("3.250000000000000001")
    );
    let call = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.0 == "/rpc" && s.2.contains("eth_call"))
        .unwrap()
        .2
        .clone();
    assert!(call.contains("\"data\":\"0x2ebd89d1\""), "{call}");
    // Pinned 64 blocks below the head.
    assert!(call.contains("\"0x4c4b40\""), "{call}");
    assert!(
        call.contains("0x00000000000000000000000000000000000000ab"),
        "{call}"
    );

    // 401 from the node: down. A broken RPC answer: the chain endpoint fails, on its own.
    f.set("/info", Reply::Json(401, "{}".into()));
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "http_status");
    f.json("/rpc", r#"{"jsonrpc":"2.0","id":1,"result":"0x1234"}"#);
    assert_eq!(
        fetch(a.as_ref(), "chain").await.unwrap_err().reason(),
        "parse"
    );
    f.set("/info", Reply::Huge(50 << 20));
    assert_eq!(poll(a.as_ref()).await.unwrap_err().reason(), "too_large");
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
    assert_eq!(gauge(&o, "grass_container_restarts", None), Some(2.0));
    // Points: their own endpoint, every 15 minutes, token grass_points.
    assert_eq!(a.endpoints()[0].interval, Some(Duration::from_secs(900)));
    let p = fetch(a.as_ref(), "points").await.unwrap();
    assert_eq!(cumulative(&p, "points", None).as_deref(), Some("123456.5"));
    let Reading::Cumulative { stream, .. } = &p.readings[0] else {
        panic!()
    };
    assert_eq!(stream.token, "grass_points");
    // The token goes as is (no Bearer), as the unofficial clients send it.
    assert_eq!(api.auth_of("/retrieveUser").as_deref(), Some("tok-1"));

    for (file, want) in [
        ("grass/container_exited.json", "container grass is exited"),
        (
            "docker/inspect_paused.constructed.json",
            "container grass is paused",
        ),
        (
            "docker/inspect_restarting.constructed.json",
            "container grass is restarting",
        ),
    ] {
        docker.json("/containers/grass/json", &fixture(file));
        let e = poll(a.as_ref()).await.unwrap_err();
        assert_eq!(e.reason(), "refused");
        assert!(e.to_string().contains(want), "{file}: {e}");
    }
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
    let (f, url) = golem_fake().await;
    f.json("/info", &fixture("streamr/info.json"));
    f.set(
        "/rpc",
        chain(
            5_000_064,
            &[2_500_000_000_000_000_000],
            serde_json::json!([]),
        ),
    );
    f.set(
        "/metrics",
        Reply::Text(fixture("storj_exporter/metrics.txt")),
    );
    f.json("/retrieveUser", &fixture("grass/retrieveUser.json"));
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
prices: {{GLM: 0.5, DATA: 0.02}}
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
    // The secondary endpoints (invoices, chain, points) run at start too, each on its own
    // task: wait until the last of them (the golem and streamr earnings) is on /metrics, up
    // to 10 s, so a loaded machine does not fail the test; the lines are checked below. The
    // token label alone is not enough: the price gauges carry it from the start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut text = metrics.render();
    while !(text.contains("depin_earnings_total{node=\"golem\",protocol=\"golem\",token=\"GLM\"")
        && text
            .contains("depin_earnings_total{node=\"streamr\",protocol=\"streamr\",token=\"DATA\""))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics.render();
    }
    tx.send_replace(true);
    task.await.unwrap();
    for want in [
        "depin_earnings_total{node=\"golem\",protocol=\"golem\",token=\"GLM\",network=\"polygon\"} 0.112345",
        "depin_earnings_total{node=\"golem\",protocol=\"golem\",token=\"tGLM\",network=\"hoodi\"} 5",
        // tGLM has no price: only the GLM is in USD.
        "depin_earnings_usd_total{node=\"golem\",protocol=\"golem\"} 0.0561725",
        "depin_golem_invoices_open{network=\"polygon\",node=\"golem\",protocol=\"golem\"} 1",
        "depin_allocation_cpu_cores{node=\"golem\",protocol=\"golem\"} 7",
        "depin_earnings_total{node=\"streamr\",protocol=\"streamr\",token=\"DATA\"} 2.5",
        "depin_streamr_pool_earnings_data_total{node=\"streamr\",protocol=\"streamr\"} 2.5",
        "depin_earnings_usd_total{node=\"streamr\",protocol=\"streamr\"} 0.05",
        "depin_earnings_total{node=\"grass\",protocol=\"grass\",token=\"grass_points\"} 123456.5",
        "depin_earnings_usd_total{node=\"grass\",protocol=\"grass\"} 0",
        "depin_grass_container_restarts{node=\"grass\",protocol=\"grass\"} 2",
        "depin_earnings_total{node=\"exporter\",protocol=\"storj\",token=\"USD\"} 1.6449",
        "depin_adapter_up{node=\"grass\",protocol=\"grass\"} 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    if let Some(report) = promtool_check(&text) {
        assert!(report.is_empty(), "promtool check metrics:\n{report}");
    }
}

/// `promtool check metrics` findings, or None without promtool.
fn promtool_check(text: &str) -> Option<String> {
    use std::io::Write;
    let bin = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let mut child = std::process::Command::new(bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Families of the process collector and help texts are not ours to change here.
    Some(
        report
            .lines()
            .filter(|l| l.contains("depin_earnings") || l.contains("depin_adapter_endpoint"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[tokio::test]
async fn storj_a_slow_or_failing_secondary_endpoint_keeps_the_node_up() {
    let (f, url) = storj_fake().await;
    // The satellites call takes longer than its own timeout; the payout fails with a 500.
    f.set(
        "/api/sno/satellites",
        Reply::Slow(
            Duration::from_secs(3),
            Box::new(Reply::Json(200, fixture("storj/satellites.json"))),
        ),
    );
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\", payout_interval: 1s, timeouts: {{satellites: 1s}}}}\n"
    ));
    let metrics = Arc::new(Metrics::for_config(&cfg).unwrap());
    let clock: SharedClock = Arc::new(TokioClock::new(T0));
    let c = Coordinator::new(&cfg, metrics.clone(), Arc::new(Db::in_memory()), clock).unwrap();
    let health = c.health();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(c.run(rx));
    health.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = metrics.labels_for("storj", "storj", &Default::default());
    assert_eq!(metrics.earnings(&l, "USD"), 1.6449);
    f.set(
        "/api/sno/estimated-payout",
        Reply::Json(500, r#"{"error":"consoleapi: database is locked"}"#.into()),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    for want in [
        "depin_adapter_up{node=\"storj\",protocol=\"storj\"} 1",
        "depin_adapter_endpoint_up{endpoint=\"satellites\",node=\"storj\",protocol=\"storj\"} 0",
        "depin_adapter_endpoint_up{endpoint=\"estimated_payout\",node=\"storj\",protocol=\"storj\"} 0",
        // Earnings as they were; the dashboard's series still there.
        "depin_earnings_total{node=\"storj\",protocol=\"storj\",token=\"USD\"} 1.6449",
        "depin_storj_payout_month_expected_usd{node=\"storj\",protocol=\"storj\"} 5.41",
        "depin_allocation_disk_bytes{node=\"storj\",protocol=\"storj\"} 3500000000000",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(
        text.contains(
            "depin_adapter_endpoint_last_success_timestamp_seconds{endpoint=\"estimated_payout\""
        ),
        "{text}"
    );
    assert_eq!(metrics.poll_errors(&l, "http_status"), 0.0);
}

#[test]
fn earnings_config_errors_name_the_key() {
    // Points have no market price.
    let e = errors("prices: {grass_points: 1}\nnodes: []\n");
    assert_eq!(
        e,
        ["t.yml:2:10: prices.grass_points: grass_points are Grass points: points have no market price, so they can never be valued in USD"]
    );
    // Two nodes of one Streamr operator would count its pool twice.
    let two = |a: &str, b: &str| {
        format!("nodes:\n  - name: s1\n    kind: streamr\n    streamr: {{health: {{tcp: \"127.0.0.1:7170\"}}, earnings: {{rpc_url: \"http://x/\", operator_contract: \"0x00000000000000000000000000000000000000ab\"{a}}}}}\n  - name: s2\n    kind: streamr\n    streamr: {{health: {{tcp: \"127.0.0.1:7171\"}}, earnings: {{rpc_url: \"http://x/\", operator_contract: \"0x00000000000000000000000000000000000000AB\"{b}}}}}\n")
    };
    let e = errors(&two("", ""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("nodes[1]: nodes \"s1\" and \"s2\" all count the earnings of Streamr operator 0x00000000000000000000000000000000000000ab: each must state its share"),
        "{e:?}"
    );
    let e = errors(&two(", share: 0.6", ", share: 0.5"));
    assert!(e[0].contains("add up to more than 1"), "{e:?}");
    assert_eq!(load(&two(", share: 0.5", ", share: 0.5")).nodes.len(), 2);
    let e = errors(&two(", share: 2", ", share: 0.5"));
    assert!(
        e[0].contains("nodes[0].streamr.earnings.share: must be a fraction above 0 and at most 1"),
        "{e:?}"
    );
    let e = errors(
        "nodes:\n  - name: s\n    kind: streamr\n    streamr: {health: {tcp: \"localhost\"}}\n",
    );
    assert!(
        e[0].contains("nodes[0].streamr.health.tcp: \"localhost\" is not host:port"),
        "{e:?}"
    );
}

#[test]
fn streamr_without_a_share_warns_that_it_counts_the_pool() {
    let c = load("nodes:\n  - name: s\n    kind: streamr\n    streamr: {health: {tcp: \"127.0.0.1:7170\"}, earnings: {rpc_url: \"http://x/\", operator_contract: \"0x00000000000000000000000000000000000000ab\"}}\n");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.to_string().contains("nodes[0].streamr.earnings: no share: depin_earnings_total counts the whole operator pool")),
        "{:?}",
        c.warnings
    );
}

/// Starts a coordinator for `cfg` on `clock`; returns its metrics, its earnings ledger and
/// the means to stop it.
async fn run_coordinator(
    cfg: &config::Config,
    clock: SharedClock,
) -> (
    Arc<Metrics>,
    Arc<depin_orcha::earnings::Earnings>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let metrics = Arc::new(Metrics::for_config(cfg).unwrap());
    let c = Coordinator::new(cfg, metrics.clone(), Arc::new(Db::in_memory()), clock).unwrap();
    let earnings = c.earnings();
    let health = c.health();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(c.run(rx));
    tokio::time::timeout(Duration::from_secs(5), health.wait_ready())
        .await
        .unwrap();
    (metrics, earnings, tx, task)
}

#[tokio::test]
async fn golem_one_never_settled_invoice_does_not_stall_1500_settled_ones() {
    let f = Fake::default();
    f.json("/me", &fixture("golem/me.constructed.json"));
    let base: serde_json::Value =
        serde_json::from_str::<Vec<serde_json::Value>>(&fixture("golem/invoices.constructed.json"))
            .unwrap()
            .remove(0);
    let at = |i: i64| depin_orcha::compat::calendar::rfc3339_millis(T0 - 3_600_000 + i * 10);
    let mut list = Vec::new();
    let mut accepted = base.clone();
    accepted["invoiceId"] = "never-settled".into();
    accepted["timestamp"] = at(0).into();
    accepted["status"] = "ACCEPTED".into();
    list.push(accepted);
    for i in 1..=1500 {
        let mut s = base.clone();
        s["invoiceId"] = format!("settled-{i}").into();
        // Some share a millisecond across the page boundary.
        s["timestamp"] = at(i / 3 + 1).into();
        s["amount"] = "0.001".into();
        s["status"] = "SETTLED".into();
        list.push(s);
    }
    f.set(
        "/payment-api/v1/invoices",
        Reply::Paged(Arc::new(std::sync::Mutex::new(list)), "timestamp"),
    );
    f.set(
        "/payment-api/v1/invoiceEvents",
        Reply::Paged(Arc::new(std::sync::Mutex::new(Vec::new())), "eventDate"),
    );
    let url = f.serve_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k");
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nnodes:\n  - name: golem\n    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\"}}\n",
        key.display()
    ));
    let (metrics, earnings, tx, task) = run_coordinator(&cfg, Arc::new(TokioClock::new(T0))).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    assert_eq!(earnings.credited("golem", "GLM"), 1.5, "{text}");
    let l = metrics.labels_for("golem", "golem", &Default::default());
    assert_eq!(metrics.earnings(&l, "GLM"), 1.5);
    assert!(
        text.contains(
            "depin_golem_invoices_open{network=\"polygon\",node=\"golem\",protocol=\"golem\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("depin_golem_invoices_backlog{node=\"golem\",protocol=\"golem\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn storj_the_last_hours_of_a_month_count_after_midnight() {
    let (f, url) = storj_fake().await;
    // 2026-01-31T22:00Z: this month's estimate is 10 USD.
    let jan = 1_769_896_800_000;
    let clock = Arc::new(ManualClock::new(jan));
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("storj/estimated-payout_v1.55.1.json")).unwrap();
    let mut before = v.clone();
    before["currentMonth"] = v["previousMonth"].clone();
    before["currentMonth"]["payout"] = 1000.into();
    f.json("/api/sno/estimated-payout", &before.to_string());
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\"}}\n"
    ));
    let (metrics, earnings, tx, task) = run_coordinator(&cfg, clock.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(earnings.credited("storj", "USD"), 10.0);
    // 2026-02-01T02:00Z, storagenode v1.55.1 (recorded early in a month): January ended at
    // 1065.87 cents, February is at 55.32.
    clock.set(jan + 4 * 3_600_000);
    v["previousMonth"]["held"] = 0.into();
    f.json("/api/sno/estimated-payout", &v.to_string());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let l = metrics.labels_for("storj", "storj", &Default::default());
    let total = metrics.earnings(&l, "USD");
    tx.send_replace(true);
    task.await.unwrap();
    // 10 + the last 0.6587 of January + 0.5532 of February.
    assert!((total - 11.2119).abs() < 1e-9, "{total}");
}

#[tokio::test]
async fn streamr_a_withdrawal_is_not_a_reset_and_health_needs_no_info_plugin() {
    let f = Fake::default();
    let n1 = 5_000_000u64;
    f.set(
        "/rpc",
        chain(
            n1 + 64,
            &[1_500_000_000_000_000_001, 2_500_000_000_000_000_000],
            serde_json::json!([]),
        ),
    );
    let url = f.serve_tcp().await;
    // The node's websocket plugin port; no HTTP server, no info plugin.
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = ws.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = ws.accept().await {
            drop(s);
        }
    });
    let cfg = load(&format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s}}\nprices: {{DATA: 0.02}}\nnodes:\n  - name: streamr\n    kind: streamr\n    streamr: {{health: {{tcp: \"{ws_addr}\"}}, earnings: {{rpc_url: \"{url}/rpc\", operator_contract: \"0x1f2e3d4c5b6a79880716253443526170f8e9dacb\", interval: 1s, share: 0.3}}}}\n"
    ));
    let (metrics, earnings, tx, task) = run_coordinator(&cfg, Arc::new(TokioClock::new(T0))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = metrics.labels_for("streamr", "streamr", &Default::default());
    assert_eq!(metrics.node_gauge("depin_adapter_up", &l), Some(1.0));
    let exact = |series: &str| {
        let e = earnings.lock();
        e.rows("streamr")
            .into_iter()
            .find(|r| r.key.series == series)
            .map(|r| r.totals.credited.to_string())
    };
    assert_eq!(
        exact("streamr_pool_earnings_data").as_deref(),
        Some("4.000000000000000001")
    );
    // Earned 0.5 more, then withdrawn: a Profit of 4.5 (fee, cut and value increase; the
    // recorded log's shape), and nothing unwithdrawn any more.
    let mut log: serde_json::Value =
        serde_json::from_str(&fixture("streamr/eth_getLogs_profit.constructed.json")).unwrap();
    let mut log = log["response"]["result"][0].take();
    log["data"] = format!("0x{:064x}", 3_920_000_000_000_000_001u128).into();
    f.set("/rpc", chain(n1 + 100 + 64, &[], serde_json::json!([log])));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        exact("streamr_pool_earnings_data").as_deref(),
        Some("4.500000000000000001")
    );
    // This node's stated share of it.
    assert_eq!(exact("earnings").as_deref(), Some("1.350000000000000000"));
    let text = metrics.render();
    tx.send_replace(true);
    task.await.unwrap();
    assert!(
        text.contains("depin_streamr_pool_unwithdrawn_data{node=\"streamr\",operator=\"0x1f2e3d4c5b6a79880716253443526170f8e9dacb\",protocol=\"streamr\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("depin_earnings_pending_correction{node=\"streamr\",protocol=\"streamr\",token=\"DATA\"} 0"),
        "{text}"
    );
}

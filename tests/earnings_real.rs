//! Earnings through the real binary against fakes that serve the real answer shapes
//! (tests/fixtures/nodes/, sources in its README): what an operator sees on `/metrics` and in
//! the query API when a node takes money back, when depin-orcha is killed (`kill -9`) and
//! started again on the same `--storage.path`, and when one of a node's calls is slow or fails.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fake_node::{Fake, Reply};
use common::*;

fn fixture(p: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nodes")
        .join(p);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    depin_orcha::compat::calendar::rfc3339_millis(ms)
}

/// The first sample of `family` whose labels contain every needle, from `/metrics`.
fn metric(o: &Orcha, family: &str, needles: &[&str]) -> Option<f64> {
    metric_value(&o.get("/metrics").body, family, needles)
}

/// Waits until `family{needles}` equals `want` (to the micro-unit), or fails saying what it was.
fn wait_for(o: &Orcha, family: &str, needles: &[&str], want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = metric(o, family, needles);
        if last.is_some_and(|v| (v - want).abs() < 1e-9) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{family}{needles:?} is {last:?}, not {want}, after {within:?}:\n{}",
        o.get("/metrics").body
    );
}

/// One instant query; the values of its series.
fn query(o: &Orcha, q: &str) -> Vec<f64> {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = o.get(&format!("/api/v1/query?query={enc}"));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    r.json()["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
        .collect()
}

const HOST: &str = "host: {capacity: {cpu_cores: 8, memory_bytes: 16GiB, disk_bytes: 10TB, bandwidth_bytes_per_second: 100MB}}\n";

fn start(dir: &Path, config: &str) -> Orcha {
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, format!("{HOST}{config}")).unwrap();
    let o = Orcha::start(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    o.wait_ready();
    o
}

/// The payout answer of storagenode with `cents` this month (the recorded v1.71.2 shape).
fn payout(cents: f64) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("storj/estimated-payout_v1.71.2.json")).unwrap();
    v["currentMonth"]["payout"] = cents.into();
    v["currentMonth"]["held"] = 0.into();
    v.to_string()
}

/// Storj's month is the UTC month of the clock: within minutes of a boundary the readings
/// are held back, so these tests wait until they are clear of it.
fn clear_of_month_boundary() {
    use depin_orcha::compat::calendar::{month_start_ms, next_month_start_ms};
    let t = now_ms();
    let margin = 20 * 60_000;
    if t - month_start_ms(t) < margin || next_month_start_ms(t) - t < margin {
        eprintln!("within 20 minutes of a UTC month boundary: skipped");
        std::process::exit(0);
    }
}

#[test]
fn storj_a_disqualification_is_a_correction_also_across_kill_9() {
    clear_of_month_boundary();
    let rt = runtime();
    let dir = temp_dir("earnings-storj-dq");
    let f = Fake::default();
    // storagenode v1.37.1's dashboard (recorded): six satellites, none disqualified.
    let sno = fixture("storj/sno_v1.37.1.json");
    f.json("/api/sno/", &sno);
    f.json("/api/sno/satellites", &fixture("storj/satellites.json"));
    f.json("/api/sno/estimated-payout", &payout(164.0));
    let url = rt.block_on(f.serve_tcp());
    let config = format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s, scrape_interval: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\"}}\n"
    );
    let o = start(&dir, &config);
    let total = "depin_earnings_total";
    let node = ["node=\"storj\""];
    wait_for(&o, total, &node, 1.64, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    o.kill9();

    // While depin-orcha is down, us1 disqualifies the node: Storj drops that satellite's
    // whole month from the estimate at once.
    let mut dq: serde_json::Value = serde_json::from_str(&sno).unwrap();
    dq["satellites"][0]["disqualified"] = "2026-01-10T04:00:00Z".into();
    f.json("/api/sno/", &dq.to_string());
    f.json("/api/sno/estimated-payout", &payout(150.0));

    let o = start(&dir, &config);
    wait_for(
        &o,
        "depin_earnings_corrections_total",
        &node,
        0.14,
        Duration::from_secs(20),
    );
    // Earned 1.64, 0.14 taken back: never counted again, never a reset.
    assert_eq!(metric(&o, total, &node), Some(1.64));
    assert_eq!(
        metric(&o, "depin_earnings_pending_correction", &node),
        Some(0.0)
    );
    assert_eq!(metric(&o, "depin_earnings_usd_total", &node), Some(1.64));
    // What the node earns afterwards is new money.
    f.json("/api/sno/estimated-payout", &payout(160.0));
    wait_for(&o, total, &node, 1.74, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    // The stored history never saw the counter go back.
    let resets = query(&o, "resets(depin_earnings_total{node=\"storj\"}[1h])");
    assert_eq!(resets, [0.0]);
    let net = query(
        &o,
        "depin_earnings_total{node=\"storj\"} - depin_earnings_corrections_total{node=\"storj\"} - depin_earnings_pending_correction{node=\"storj\"}",
    );
    assert!((net[0] - 1.60).abs() < 1e-9, "{net:?}");
}

#[test]
fn storj_a_slow_satellites_call_and_a_failing_payout_leave_the_node_up() {
    let rt = runtime();
    let dir = temp_dir("earnings-storj-slow");
    let f = Fake::default();
    f.json("/api/sno/", &fixture("storj/sno.json"));
    // Real nodes can take tens of seconds on this call; here 6 s against a 5 s poll timeout.
    f.set(
        "/api/sno/satellites",
        Reply::Slow(
            Duration::from_secs(6),
            Box::new(Reply::Json(200, fixture("storj/satellites.json"))),
        ),
    );
    f.json(
        "/api/sno/estimated-payout",
        &fixture("storj/estimated-payout.json"),
    );
    let url = rt.block_on(f.serve_tcp());
    let o = start(
        &dir,
        &format!(
            "global: {{poll_interval: 5s, poll_timeout: 5s, scrape_interval: 1s}}\nnodes:\n  - name: storj\n    kind: storj\n    storj: {{url: \"{url}\"}}\n"
        ),
    );
    let node = ["node=\"storj\""];
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(metric(&o, "depin_adapter_up", &node), Some(1.0));
    assert_eq!(metric(&o, "depin_earnings_total", &node), Some(1.6449));
    assert_eq!(
        metric(&o, "depin_allocation_disk_bytes", &node),
        Some(3.5e12)
    );
    // The payout call alone fails (Storj answers 500 when one satellite's database read
    // fails): the node stays up, its earnings stay what they were.
    f.set(
        "/api/sno/estimated-payout",
        Reply::Json(
            500,
            r#"{"error":"estimatedpayouts: database is locked"}"#.into(),
        ),
    );
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(metric(&o, "depin_adapter_up", &node), Some(1.0));
    assert_eq!(metric(&o, "depin_earnings_total", &node), Some(1.6449));
    assert_eq!(
        metric(
            &o,
            "depin_adapter_endpoint_up",
            &["node=\"storj\"", "endpoint=\"estimated_payout\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &o,
            "depin_adapter_poll_errors_total",
            &["node=\"storj\"", "reason=\"timeout\""]
        ),
        Some(0.0)
    );
}

/// An invoice of the constructed yagna shape, issued by `me`.
fn invoice(id: &str, ts_ms: i64, amount: &str, status: &str) -> serde_json::Value {
    let mut v: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("golem/invoices.constructed.json")).unwrap();
    let mut i = v.remove(0);
    i["invoiceId"] = id.into();
    i["timestamp"] = rfc3339(ts_ms).into();
    i["amount"] = amount.into();
    i["status"] = status.into();
    i
}

#[test]
fn golem_a_restart_neither_re_adds_the_lookback_nor_resets() {
    let rt = runtime();
    let dir = temp_dir("earnings-golem-restart");
    let key = dir.join("appkey");
    std::fs::write(&key, "k").unwrap();
    let f = Fake::default();
    f.json("/me", &fixture("golem/me.constructed.json"));
    let t = now_ms();
    let invoices = Arc::new(Mutex::new(vec![
        invoice("a", t - 15_000, "0.52", "SETTLED"),
        invoice("b", t - 1_000, "1.5", "SETTLED"),
    ]));
    f.set(
        "/payment-api/v1/invoices",
        Reply::Paged(invoices.clone(), "timestamp"),
    );
    f.set(
        "/payment-api/v1/invoiceEvents",
        Reply::Paged(Arc::new(Mutex::new(Vec::new())), "eventDate"),
    );
    let url = rt.block_on(f.serve_tcp());
    let config = format!(
        "global: {{poll_interval: 1s, poll_timeout: 1s, scrape_interval: 1s}}\nprices: {{GLM: 0.25}}\nnodes:\n  - name: golem\n    kind: golem\n    golem: {{url: \"{url}\", app_key_file: \"{}\", lookback: 20s}}\n",
        key.display()
    );
    let o = start(&dir, &config);
    let node = ["node=\"golem\""];
    // The first sight takes the lookback whole.
    wait_for(
        &o,
        "depin_earnings_total",
        &node,
        2.02,
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    o.kill9();
    // Invoice a leaves the lookback window while depin-orcha is down.
    std::thread::sleep(Duration::from_millis((t + 8_000 - now_ms()).max(0) as u64));
    let o = start(&dir, &config);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(&o, "depin_earnings_total", &node), Some(2.02));
    invoices
        .lock()
        .unwrap()
        .push(invoice("c", now_ms(), "0.25", "SETTLED"));
    wait_for(
        &o,
        "depin_earnings_total",
        &node,
        2.27,
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        query(&o, "resets(depin_earnings_total{node=\"golem\"}[1h])"),
        [0.0]
    );
    // Earned while watched: 0.25 GLM since the restart, counted once.
    let max = query(
        &o,
        "max_over_time(depin_earnings_total{node=\"golem\"}[1h])",
    );
    assert_eq!(max, [2.27]);
    assert_eq!(metric(&o, "depin_earnings_usd_total", &node), Some(0.5675));
}

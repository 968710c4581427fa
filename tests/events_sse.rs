//! `GET /api/v1/events` from the real binary: an SSE client sees a simulated node go down, the
//! node-down alert fire, the node come back and the alert resolve, each with a monotonic `id`;
//! `Last-Event-ID` resumes; and clients that connect and never read do not slow the polling.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const RULES: &str = r#"groups:
  - name: sse
    interval: 1s
    rules:
      - alert: SseNodeDown
        expr: depin_adapter_up == 0
        for: 0s
"#;

/// Starts the binary with the flaky node, or (`healthy`) the same node without its fault.
fn start(dir: &std::path::Path, healthy: bool) -> common::Orcha {
    let config = dir.join("config.yml");
    let rules = dir.join("rules.yml");
    let text = common::flaky_node_config((!healthy).then_some(("3s", "10s")));
    std::fs::write(&config, text).unwrap();
    std::fs::write(&rules, RULES).unwrap();
    let o = common::Orcha::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--rules.file",
        rules.to_str().unwrap(),
        "--storage.path",
        dir.join("data").to_str().unwrap(),
    ]);
    o.wait_ready();
    o
}

/// Opens the event stream; `last_id` is sent as `Last-Event-ID`.
fn connect(o: &common::Orcha, last_id: Option<u64>) -> TcpStream {
    let mut s = TcpStream::connect(o.addr).unwrap();
    let mut req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
        o.addr
    );
    if let Some(id) = last_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s
}

#[derive(Debug, Clone)]
struct Ev {
    id: u64,
    kind: String,
    data: serde_json::Value,
}

/// Reads events until `done` says so or `timeout` passes; chunk-size lines are skipped.
fn read_events(s: TcpStream, timeout: Duration, done: impl Fn(&[Ev]) -> bool) -> Vec<Ev> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut r = BufReader::new(s);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let (mut id, mut kind) = (None, None);
    let mut line = String::new();
    while Instant::now() < deadline && !done(&out) {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = l.strip_prefix("event: ") {
            kind = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("data: ") {
            let data = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
            if let Some(k) = kind.take() {
                out.push(Ev {
                    id: id.take().unwrap_or(0),
                    kind: k,
                    data,
                });
            }
        }
    }
    out
}

fn alert_states(evs: &[Ev]) -> Vec<String> {
    evs.iter()
        .filter(|e| e.kind == "alert" && e.data["alertname"] == "SseNodeDown")
        .map(|e| e.data["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn an_sse_client_sees_a_node_down_alert_fire_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), false);
    // From the start of the ring, so nothing between start and connect is missed.
    let evs = read_events(connect(&o, Some(0)), Duration::from_secs(45), |evs| {
        alert_states(evs).contains(&"resolved".to_string())
    });
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        alert_states(&evs),
        vec!["firing", "resolved"],
        "events: {kinds:?}"
    );
    // The first look reports the node up; then it goes down and comes back.
    let down_at = kinds
        .iter()
        .position(|x| *x == "node_down")
        .unwrap_or_else(|| panic!("no node_down in {kinds:?}"));
    let up_at = kinds
        .iter()
        .rposition(|x| *x == "node_up")
        .unwrap_or_else(|| panic!("no node_up in {kinds:?}"));
    assert!(down_at < up_at, "{kinds:?}");
    assert!(kinds.contains(&"poll"));
    assert!(
        evs.windows(2).all(|w| w[0].id < w[1].id),
        "ids not increasing"
    );
    let down = evs.iter().find(|e| e.kind == "node_down").unwrap();
    assert_eq!(down.data["node"], "flaky");

    // Resuming after the node_down event replays from the ring, starting right after it.
    let resumed = read_events(connect(&o, Some(down.id)), Duration::from_secs(10), |e| {
        !e.is_empty()
    });
    assert_eq!(resumed.first().map(|e| e.id), Some(down.id + 1));
}

fn polls(o: &common::Orcha) -> f64 {
    let m = o.get("/metrics").body;
    common::metric_value(
        &m,
        "depin_adapter_poll_duration_seconds_count",
        &["node=\"flaky\""],
    )
    .expect("poll count on /metrics")
}

#[test]
fn clients_that_never_read_do_not_slow_the_polling() {
    let dir = tempfile::tempdir().unwrap();
    let o = start(dir.path(), true);
    // Twenty clients that connect, ask for everything, and never read a byte.
    let stalled: Vec<TcpStream> = (0..20).map(|_| connect(&o, Some(0))).collect();
    let before = polls(&o);
    let t = Instant::now();
    // A reading client still gets its live events meanwhile (a `poll` per node every 10 s).
    let evs = read_events(connect(&o, None), Duration::from_secs(12), |_| false);
    let after = polls(&o);
    let secs = t.elapsed().as_secs_f64();
    // One poll a second: at least all but two of the seconds show up.
    assert!(
        after - before >= secs.floor() - 2.0,
        "{} polls in {secs:.1}s",
        after - before
    );
    assert!(evs.iter().any(|e| e.kind == "poll"), "{evs:?}");
    // /metrics still answers quickly.
    let t = Instant::now();
    let _ = polls(&o);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(stalled);
}

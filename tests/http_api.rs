//! The HTTP server and the Prometheus-compatible read API over real sockets: exact JSON bodies
//! per endpoint, Prometheus' parameter errors, form POSTs, limits, readiness, graceful
//! shutdown, and the real clients: promtool (when installed) and the requests Grafana's
//! Prometheus data source sends on "Save & test" and for a time-series panel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use depin_orcha::clock::{Clock, ManualClock, SharedClock, WallClock};
use depin_orcha::http::{AppState, Server};
use depin_orcha::labels::Labels;
use depin_orcha::promql::Engine;
use depin_orcha::tsdb::Db;

/// 2023-11-14T22:13:20Z, the first sample of the fixture.
const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;

/// Ten minutes of samples every 15 s from `start`:
/// `depin_earnings_total{protocol,token}` (storj +0.5, golem +0.25 per step) and
/// `depin_adapter_up{protocol}` (storj 1, golem 0).
fn fixture_db(start: i64) -> Db {
    let db = Db::in_memory();
    let earn_storj = Labels::from_pairs([
        ("__name__", "depin_earnings_total"),
        ("protocol", "storj"),
        ("token", "STORJ"),
    ]);
    let earn_golem = Labels::from_pairs([
        ("__name__", "depin_earnings_total"),
        ("protocol", "golem"),
        ("token", "GLM"),
    ]);
    let up_storj = Labels::from_pairs([("__name__", "depin_adapter_up"), ("protocol", "storj")]);
    let up_golem = Labels::from_pairs([("__name__", "depin_adapter_up"), ("protocol", "golem")]);
    for i in 0..=40 {
        let t = start + i * STEP_MS;
        db.append(&earn_storj, t, i as f64 * 0.5).unwrap();
        db.append(&earn_golem, t, i as f64 * 0.25).unwrap();
        db.append(&up_storj, t, 1.0).unwrap();
        db.append(&up_golem, t, 0.0).unwrap();
    }
    db
}

fn registry() -> prometheus::Registry {
    let r = prometheus::Registry::new();
    let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new("depin_test_requests_total", "Requests seen by the test."),
        &["code"],
    )
    .unwrap();
    c.with_label_values(&["200"]).inc_by(3);
    r.register(Box::new(c)).unwrap();
    let g = prometheus::Gauge::new(
        "depin_test_temperature_celsius",
        "A gauge with <html> & \"quotes\".",
    )
    .unwrap();
    g.set(21.5);
    r.register(Box::new(g)).unwrap();
    r
}

fn state_at(db: Db, clock: SharedClock, ready: bool) -> AppState {
    let s = AppState::new(Arc::new(db), Engine::default(), registry(), clock);
    s.set_ready(ready);
    s
}

fn fixed_state() -> AppState {
    state_at(
        fixture_db(T0),
        Arc::new(ManualClock::new(T0 + 600_000)),
        true,
    )
}

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), depin_orcha::http::server::Error>>,
}

impl TestServer {
    async fn start(state: AppState) -> TestServer {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(state)).unwrap();
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.addr, Method::GET, path, &[], None).await
    }

    async fn post_form(&self, path: &str, body: &str) -> Reply {
        send(
            self.addr,
            Method::POST,
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        )
        .await
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    content_type: String,
    body: String,
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    Reply {
        status,
        headers,
        content_type,
        body,
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_json(r: &Reply, status: StatusCode, body: &str) {
    assert_eq!(
        (r.status, r.body.as_str()),
        (status, body),
        "full reply: {r:?}"
    );
    assert_eq!(r.content_type, "application/json");
}

fn bad_data(msg: &str) -> String {
    let mut s = String::from(r#"{"status":"error","errorType":"bad_data","error":"#);
    s.push_str(&serde_json::to_string(msg).unwrap());
    s.push('}');
    s
}

// ---------------------------------------------------------------------------------------------
// Health, readiness, /metrics, routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_readiness() {
    let state = state_at(fixture_db(T0), Arc::new(ManualClock::new(T0)), false);
    let ready = state.ready.clone();
    let srv = TestServer::start(state).await;
    let h = srv.get("/-/healthy").await;
    assert_eq!(
        (h.status, h.body.as_str()),
        (StatusCode::OK, "depin-orcha is Healthy.\n")
    );
    let r = srv.get("/-/ready").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    );
    // HEAD answers the status without a body (load balancer probes).
    let head = send(srv.addr, Method::HEAD, "/-/healthy", &[], None).await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    // The API waits for readiness too, as Prometheus' does while its tsdb loads.
    let q = srv.get("/api/v1/query?query=1").await;
    assert_eq!(q.status, StatusCode::SERVICE_UNAVAILABLE);
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = srv.get("/-/ready").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "depin-orcha is Ready.\n")
    );
    assert_eq!(
        srv.get("/api/v1/query?query=1").await.status,
        StatusCode::OK
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn metrics_are_the_registry_in_text_format() {
    let srv = TestServer::start(fixed_state()).await;
    let m = srv.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        m.body
            .contains("# HELP depin_test_requests_total Requests seen by the test.\n"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("# TYPE depin_test_requests_total counter\n"));
    assert!(m
        .body
        .contains("depin_test_requests_total{code=\"200\"} 3\n"));
    assert!(m.body.contains("depin_test_temperature_celsius 21.5\n"));
    // The server counts what it answered, by route pattern rather than raw path.
    srv.get("/-/healthy").await;
    srv.get("/api/v1/label/protocol/values").await;
    srv.get("/api/v1/label/token/values").await;
    let m = srv.get("/metrics").await;
    assert!(
        m.body
            .contains("depin_orcha_http_requests_total{code=\"200\",handler=\"/-/healthy\"} 1\n"),
        "{}",
        m.body
    );
    assert!(m.body.contains(
        "depin_orcha_http_requests_total{code=\"200\",handler=\"/api/v1/label/:name/values\"} 2\n"
    ));
    assert!(m
        .body
        .contains("depin_orcha_http_request_duration_seconds_count{handler=\"/-/healthy\"} 1\n"));
    srv.shutdown().await;
}

#[tokio::test]
async fn too_many_headers_are_refused_by_hyper() {
    let srv = TestServer::start(fixed_state()).await;
    let names: Vec<String> = (0..depin_orcha::http::server::MAX_HEADERS + 10)
        .map(|i| format!("x-h{i}"))
        .collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let r = send(srv.addr, Method::GET, "/-/healthy", &headers, None).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    srv.shutdown().await;
}

#[tokio::test]
async fn queries_wait_for_a_slot_within_their_timeout() {
    let mut state = fixed_state();
    // No slot at all: every query waits in the queue until its timeout.
    state.query_slots = Arc::new(tokio::sync::Semaphore::new(0));
    state.engine.opts.timeout = Duration::from_millis(300);
    let srv = TestServer::start(state).await;
    assert_json(
        &srv.get("/api/v1/query?query=1&timeout=50ms").await,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"status":"error","errorType":"timeout","error":"query timed out in query queue"}"#,
    );
    // Label and series reads take slots too (they parse selectors and read storage); /metrics
    // and health checks never wait for one.
    let r = srv.get("/api/v1/labels").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(srv.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(srv.get("/-/healthy").await.status, StatusCode::OK);
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let srv = TestServer::start(fixed_state()).await;
    // Prometheus answers unknown paths, API or not, with its router's plain-text 404.
    let r = srv.get("/api/v1/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    let r = srv.get("/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    // Label values are GET only: Grafana retries such a POST as GET on 405.
    let r = srv.post_form("/api/v1/label/protocol/values", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = send(srv.addr, Method::DELETE, "/api/v1/query?query=1", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = send(srv.addr, Method::OPTIONS, "/api/v1/query", &[], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let srv = TestServer::start(fixed_state()).await;
    let big = format!(
        "query={}",
        "1".repeat(depin_orcha::http::MAX_BODY_BYTES + 1)
    );
    let r = srv.post_form("/api/v1/query", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is read (and fails as a query, not as a body).
    let ok = format!(
        "query=1&pad={}",
        "x".repeat(depin_orcha::http::MAX_BODY_BYTES - 20)
    );
    assert_eq!(
        srv.post_form("/api/v1/query", &ok).await.status,
        StatusCode::OK
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = TestServer::start(fixed_state()).await;
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);
    for path in ["/-/healthy", "/api/v1/query?query=3&time=10", "/metrics"] {
        sender.ready().await.unwrap();
        let req = Request::get(path)
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.into_body().collect().await.unwrap();
    }
    drop(sender);
    conn_task.await.unwrap().unwrap();
    srv.shutdown().await;
}

/// A route that takes a while, to see shutdown wait for it. `started` turns true when a
/// request is inside it.
struct SlowRoute {
    started: Arc<std::sync::atomic::AtomicBool>,
}
impl depin_orcha::http::ExtraRoutes for SlowRoute {
    fn route(
        &self,
        _: &AppState,
        req: &depin_orcha::http::RouteRequest<'_>,
    ) -> Option<depin_orcha::http::HttpResponse> {
        (req.path == "/slow").then(|| {
            self.started
                .store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(500));
            hyper::Response::new(Full::new(Bytes::from_static(b"done")))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let mut state = fixed_state();
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    state.extra_routes.push(Arc::new(SlowRoute {
        started: started.clone(),
    }));
    let srv = TestServer::start(state).await;
    let addr = srv.addr;
    let inflight = tokio::spawn(async move { send(addr, Method::GET, "/slow", &[], None).await });
    while !started.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    srv.shutdown().await;
    let r = inflight.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "done"));
    // And nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// /api/v1/query and /api/v1/query_range
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn instant_query_of_a_literal() {
    let srv = TestServer::start(fixed_state()).await;
    assert_json(
        &srv.get("/api/v1/query?query=2&time=1700000000.5").await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"2"]}}"#,
    );
    // Without `time`, the query runs at the clock's now.
    assert_json(
        &srv.get("/api/v1/query?query=2").await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000600,"2"]}}"#,
    );
    // RFC 3339 time, form POST.
    assert_json(
        &srv.post_form("/api/v1/query", "query=-0.25&time=2023-11-14T22:13:20.125Z")
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.125,"-0.25"]}}"#,
    );
    // Body values win over the query string (Go's FormValue).
    assert_json(
        &srv.post_form("/api/v1/query?query=7&time=1", "query=8")
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"8"]}}"#,
    );
    srv.shutdown().await;
}

/// One executor thread for server and client: if evaluation ran on it, `/metrics` could not be
/// answered before the query ends.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_query_does_not_stall_metrics() {
    let state = fixed_state();
    let slots = state.query_slots.clone();
    let free = slots.available_permits();
    let srv = TestServer::start(state).await;
    let addr = srv.addr;
    // Nested subqueries: a fraction of a second of evaluation or more (the engine skips steps
    // without data, so how long varies), cut at 2 s; at 5 ms steps the innermost fits in the
    // default --query.max-memory (at 1 ms its 4.2 million steps per series would not).
    let q = enc("count_over_time(count_over_time(count_over_time(depin_adapter_up[10m:5ms])[1h:1s])[1h:1m])");
    let slow = tokio::spawn(async move {
        let path = format!("/api/v1/query?query={q}&time=1700000600&timeout=2s");
        let r = send(addr, Method::GET, &path, &[], None).await;
        (r, std::time::Instant::now())
    });
    // The query holds a slot while it evaluates: from then on, ask for /metrics.
    // (If evaluation blocked this thread, the query is over before the loop sees a slot taken.)
    while slots.available_permits() == free && !slow.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let m = srv.get("/metrics").await;
    let metrics_done = std::time::Instant::now();
    let (r, query_done) = slow.await.unwrap();
    assert_eq!(m.status, StatusCode::OK);
    assert!(metrics_done < query_done, "/metrics waited for the query");
    // Finished or cut at its timeout, the query itself was answered properly.
    let timed_out = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    assert!(
        r.status == StatusCode::OK
            || (r.status, r.body.as_str()) == (StatusCode::SERVICE_UNAVAILABLE, timed_out),
        "{r:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn query_parameter_errors_are_prometheus_errors() {
    let srv = TestServer::start(fixed_state()).await;
    let cases: Vec<(String, String)> = vec![
        (
            "/api/v1/query?query=1&time=abc".into(),
            r#"invalid parameter "time": invalid time value for 'time': cannot parse "abc" to a valid timestamp"#.into(),
        ),
        ("/api/v1/query?query=1&timeout=abc".into(), r#"invalid parameter "timeout": cannot parse "abc" to a valid duration"#.into()),
        ("/api/v1/query?query=1&limit=x".into(), r#"invalid parameter "limit": strconv.Atoi: parsing "x": invalid syntax"#.into()),
        ("/api/v1/query_range?query=1&end=10&step=1".into(), r#"invalid parameter "start": cannot parse "" to a valid timestamp"#.into()),
        ("/api/v1/query_range?query=1&start=10&end=zz&step=1".into(), r#"invalid parameter "end": cannot parse "zz" to a valid timestamp"#.into()),
        (
            "/api/v1/query_range?query=1&start=10&end=5&step=1".into(),
            r#"invalid parameter "end": end timestamp must not be before start time"#.into(),
        ),
        ("/api/v1/query_range?query=1&start=0&end=5&step=1x".into(), r#"invalid parameter "step": cannot parse "1x" to a valid duration"#.into()),
        (
            "/api/v1/query_range?query=1&start=0&end=5&step=0".into(),
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#.into(),
        ),
        (
            "/api/v1/query_range?query=1&start=0&end=11001&step=1".into(),
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ),
    ];
    for (path, msg) in cases {
        assert_json(
            &srv.get(&path).await,
            StatusCode::BAD_REQUEST,
            &bad_data(&msg),
        );
    }
    // 11,000 points exactly is allowed (it fails later, on the literal in a range query or not).
    let r = srv
        .get("/api/v1/query_range?query=1&start=0&end=11000&step=1")
        .await;
    assert_ne!(r.body, bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    // A parse error names the query parameter and keeps the parser's text (an unclosed `(`
    // is reported just past the end, as Prometheus reports it).
    let r = srv
        .get(&format!("/api/v1/query?query={}", enc("sum(up")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.starts_with(
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:7: parse error: unclosed left parenthesis"#
        ),
        "{}",
        r.body
    );
    // A syntax error says where and what, in Prometheus' words (`LINE:COL: parse error:
    // unexpected <token> [in <context>, expected <what>]`).
    for (q, want) in [
        (
            "rate(x[5m]) +",
            "1:14: parse error: unexpected end of input",
        ),
        ("foo bar", "1:5: parse error: unexpected identifier \\\"bar\\\""),
        (
            "sum(x)\n  by (a b)",
            "2:9: parse error: unexpected identifier \\\"b\\\" in grouping opts, expected \\\",\\\" or \\\")\\\"",
        ),
    ] {
        let r = srv.get(&format!("/api/v1/query?query={}", enc(q))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.body
                .contains(&format!("invalid parameter \\\"query\\\": {want}")),
            "{q}: {}",
            r.body
        );
    }
    // A type error says where too, in Prometheus' words (its `checkAST`): at the argument,
    // operand or call it blames.
    for (q, want) in [
        (
            "rate(x)",
            r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#,
        ),
        (
            "x[5m] + 1",
            "1:1: parse error: binary expression must contain only scalar and instant vector types",
        ),
        (
            "sum(x[5m]) by (a)",
            "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
        ),
        (
            r#"topk("3", x) by (a)"#,
            "1:6: parse error: expected type scalar in aggregation parameter, got string",
        ),
        (
            "clamp(x, 1)",
            r#"1:1: parse error: expected 3 argument(s) in call to "clamp", got 2"#,
        ),
    ] {
        let r = srv.get(&format!("/api/v1/query?query={}", enc(q))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            bad_data(&format!(r#"invalid parameter "query": {want}"#)),
            "{q}"
        );
    }
    // An expression nested deeper than the evaluator's stack allows is refused (not a crash
    // of the server), and one at the limit is evaluated, on a default 2 MiB test thread.
    for q in [
        format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000)),
        vec!["1"; 5_000].join("+"),
    ] {
        let r = srv
            .post_form("/api/v1/query", &format!("query={}", enc(&q)))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("too deeply nested"), "{}", r.body);
    }
    let at_limit = vec!["1"; depin_orcha::promql::MAX_NESTING + 1].join("+");
    let r = srv
        .post_form("/api/v1/query", &format!("query={}", enc(&at_limit)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("\"{}\"", depin_orcha::promql::MAX_NESTING + 1)),
        "{}",
        r.body
    );
    // A POST whose body is not a form is not read for parameters (as in Prometheus).
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/query",
        &[("content-type", "text/plain")],
        Some("query=1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    srv.shutdown().await;
}

#[tokio::test]
async fn evaluation_errors_are_422_execution() {
    let srv = TestServer::start(fixed_state()).await;
    // Both sides have two series with the same (empty) matching labels.
    let q = enc("depin_earnings_total + ignoring(protocol, token) depin_earnings_total");
    let r = srv
        .get(&format!("/api/v1/query?query={q}&time=1700000600"))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(
        r.body
            .starts_with(r#"{"status":"error","errorType":"execution","error":""#),
        "{}",
        r.body
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn instant_query_of_a_selector() {
    let srv = TestServer::start(fixed_state()).await;
    assert_json(
        &srv.get("/api/v1/query?query=depin_adapter_up&time=1700000600")
            .await,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":{"resultType":"vector","result":["#,
            r#"{"metric":{"__name__":"depin_adapter_up","protocol":"golem"},"value":[1700000600,"0"]},"#,
            r#"{"metric":{"__name__":"depin_adapter_up","protocol":"storj"},"value":[1700000600,"1"]}]}}"#
        ),
    );
    // `limit` truncates and says so.
    assert_json(
        &srv.get("/api/v1/query?query=depin_adapter_up&time=1700000600&limit=1")
            .await,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":{"resultType":"vector","result":["#,
            r#"{"metric":{"__name__":"depin_adapter_up","protocol":"golem"},"value":[1700000600,"0"]}]},"#,
            r#""warnings":["results truncated due to limit"]}"#
        ),
    );
    // A range selector at an instant is a matrix.
    let q = enc(r#"depin_earnings_total{protocol="storj"}[30s]"#);
    assert_json(
        &srv.get(&format!("/api/v1/query?query={q}&time=1700000030"))
            .await,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":{"resultType":"matrix","result":["#,
            r#"{"metric":{"__name__":"depin_earnings_total","protocol":"storj","token":"STORJ"},"values":[[1700000015,"0.5"],[1700000030,"1"]]}]}}"#
        ),
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn range_query_of_a_selector_and_an_expression() {
    let srv = TestServer::start(fixed_state()).await;
    let q = enc(r#"depin_earnings_total{protocol="storj"}"#);
    assert_json(
        &srv.get(&format!(
            "/api/v1/query_range?query={q}&start=1700000000&end=1700000060&step=30"
        ))
        .await,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":{"resultType":"matrix","result":["#,
            r#"{"metric":{"__name__":"depin_earnings_total","protocol":"storj","token":"STORJ"},"values":[[1700000000,"0"],[1700000030,"1"],[1700000060,"2"]]}]}}"#
        ),
    );
    let q = enc("sum(depin_adapter_up)");
    assert_json(
        &srv.post_form(
            "/api/v1/query_range",
            &format!("query={q}&start=1700000000&end=1700000030&step=15s"),
        )
        .await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"],[1700000015,"1"],[1700000030,"1"]]}]}}"#,
    );
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// /api/v1/series, /api/v1/labels, /api/v1/label/<name>/values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn series_by_match() {
    let srv = TestServer::start(fixed_state()).await;
    assert_json(
        &srv.get("/api/v1/series?match[]=depin_adapter_up").await,
        StatusCode::OK,
        r#"{"status":"success","data":[{"__name__":"depin_adapter_up","protocol":"golem"},{"__name__":"depin_adapter_up","protocol":"storj"}]}"#,
    );
    // Several match[] (form POST, as promtool and Grafana send them) are a union.
    let body = format!(
        "match%5B%5D={}&match%5B%5D={}",
        enc(r#"depin_adapter_up{protocol="storj"}"#),
        enc(r#"{__name__=~"depin_earn.*",token="GLM"}"#)
    );
    assert_json(
        &srv.post_form("/api/v1/series", &body).await,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":[{"__name__":"depin_adapter_up","protocol":"storj"},"#,
            r#"{"__name__":"depin_earnings_total","protocol":"golem","token":"GLM"}]}"#
        ),
    );
    assert_json(
        &srv.get("/api/v1/series?match[]=depin_adapter_up&limit=1")
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":[{"__name__":"depin_adapter_up","protocol":"golem"}],"warnings":["results truncated due to limit"]}"#,
    );
    // A time range after the last sample selects nothing.
    assert_json(
        &srv.get("/api/v1/series?match[]=depin_adapter_up&start=1700000601&end=1700000700")
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":[]}"#,
    );
    assert_json(
        &srv.get("/api/v1/series").await,
        StatusCode::BAD_REQUEST,
        &bad_data("no match[] parameter provided"),
    );
    let r = srv
        .get(&format!("/api/v1/series?match[]={}", enc("up{")))
        .await;
    assert!(
        r.body
            .contains(r#""error":"invalid parameter \"match[]\": "#),
        "{}",
        r.body
    );
    assert_json(
        &srv.get("/api/v1/series?match[]=up&start=x").await,
        StatusCode::BAD_REQUEST,
        &bad_data(
            r#"invalid parameter "start": invalid time value for 'start': cannot parse "x" to a valid timestamp"#,
        ),
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn label_names_and_values() {
    let srv = TestServer::start(fixed_state()).await;
    assert_json(
        &srv.get("/api/v1/labels").await,
        StatusCode::OK,
        r#"{"status":"success","data":["__name__","protocol","token"]}"#,
    );
    assert_json(
        &srv.post_form(
            "/api/v1/labels",
            "match%5B%5D=depin_adapter_up&start=1700000000&end=1700000600",
        )
        .await,
        StatusCode::OK,
        r#"{"status":"success","data":["__name__","protocol"]}"#,
    );
    assert_json(
        &srv.get("/api/v1/labels?limit=1").await,
        StatusCode::OK,
        r#"{"status":"success","data":["__name__"],"warnings":["results truncated due to limit"]}"#,
    );
    assert_json(
        &srv.get("/api/v1/label/__name__/values").await,
        StatusCode::OK,
        r#"{"status":"success","data":["depin_adapter_up","depin_earnings_total"]}"#,
    );
    let m = enc(r#"depin_earnings_total{token="GLM"}"#);
    assert_json(
        &srv.get(&format!("/api/v1/label/protocol/values?match[]={m}"))
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":["golem"]}"#,
    );
    assert_json(
        &srv.get("/api/v1/label/nothing/values").await,
        StatusCode::OK,
        r#"{"status":"success","data":[]}"#,
    );
    assert_json(
        &srv.get("/api/v1/labels?limit=-1").await,
        StatusCode::BAD_REQUEST,
        &bad_data(r#"invalid parameter "limit": limit must be non-negative"#),
    );
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// metadata, buildinfo, exemplars, format_query
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_from_the_registry() {
    let srv = TestServer::start(fixed_state()).await;
    // Besides the test's families, the registry holds the server's own (its limits).
    let all = srv.get("/api/v1/metadata").await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(
        all.body.ends_with(concat!(
            r#""depin_test_requests_total":[{"type":"counter","help":"Requests seen by the test.","unit":""}],"#,
            r#""depin_test_temperature_celsius":[{"type":"gauge","help":"A gauge with \u003chtml\u003e \u0026 \"quotes\".","unit":""}]}}"#
        )),
        "{}",
        all.body
    );
    let v: serde_json::Value = serde_json::from_str(&all.body).unwrap();
    let names: Vec<&String> = v["data"].as_object().unwrap().keys().collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("depin_test_") || n.starts_with("depin_orcha_")),
        "{names:?}"
    );
    assert_json(
        &srv.get("/api/v1/metadata?metric=depin_test_requests_total")
            .await,
        StatusCode::OK,
        r#"{"status":"success","data":{"depin_test_requests_total":[{"type":"counter","help":"Requests seen by the test.","unit":""}]}}"#,
    );
    assert_json(
        &srv.get("/api/v1/metadata?limit=0").await,
        StatusCode::OK,
        r#"{"status":"success","data":{}}"#,
    );
    assert_json(
        &srv.get("/api/v1/metadata?limit=x").await,
        StatusCode::BAD_REQUEST,
        &bad_data("limit must be a number"),
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn buildinfo_exemplars_and_format_query() {
    let srv = TestServer::start(fixed_state()).await;
    let expected = format!(
        r#"{{"status":"success","data":{{"version":"{}","revision":"{}","branch":"{}","buildUser":"{}","buildDate":"{}","goVersion":"{}"}}}}"#,
        depin_orcha::build::VERSION,
        depin_orcha::build::REVISION,
        depin_orcha::build::BRANCH,
        depin_orcha::build::BUILD_USER,
        depin_orcha::build::BUILD_DATE,
        depin_orcha::build::RUSTC_VERSION,
    );
    assert_json(
        &srv.get("/api/v1/status/buildinfo").await,
        StatusCode::OK,
        &expected,
    );
    let q = enc("rate(depin_earnings_total[5m])");
    assert_json(
        &srv.post_form(
            "/api/v1/query_exemplars",
            &format!("query={q}&start=1700000000&end=1700000600"),
        )
        .await,
        StatusCode::OK,
        r#"{"status":"success","data":[]}"#,
    );
    // No selector: 204 without a body, as Prometheus answers.
    let r = srv
        .get(&format!("/api/v1/query_exemplars?query={}", enc("1+1")))
        .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_json(
        &srv.get(&format!(
            "/api/v1/format_query?query={}",
            enc("sum(rate(foo[5m]))by(job)")
        ))
        .await,
        StatusCode::OK,
        r#"{"status":"success","data":"sum by (job) (rate(foo[5m]))"}"#,
    );
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Grafana's Prometheus data source (pkg/promlib): the requests it sends, reproduced.
// ---------------------------------------------------------------------------------------------

/// Headers Grafana's backend sends with a form POST (method POST is the data source default).
const GRAFANA_POST: [(&str, &str); 3] = [
    ("content-type", "application/x-www-form-urlencoded"),
    ("user-agent", "Grafana/11.3.0"),
    ("accept-encoding", "gzip"),
];

#[tokio::test]
async fn grafana_save_and_test_buildinfo() {
    // "Save & test" also reads buildinfo to tell Prometheus from Mimir: no `features` means
    // Prometheus.
    let srv = TestServer::start(fixed_state()).await;
    let r = send(
        srv.addr,
        Method::GET,
        "/api/v1/status/buildinfo",
        &[("user-agent", "Grafana/11.3.0")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].is_string() && v["data"].get("features").is_none());
    srv.shutdown().await;
}

#[tokio::test]
async fn grafana_save_and_test_query() {
    // healthcheck.go: an instant query `1+1` over the range 1s..4s, sent as
    // POST /api/v1/query with the url.Values-encoded (key-sorted) form `query=1%2B1&time=4`.
    let srv = TestServer::start(fixed_state()).await;
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/query",
        &GRAFANA_POST,
        Some("query=1%2B1&time=4"),
    )
    .await;
    assert_json(
        &r,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#,
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn grafana_query_editor_lookups() {
    // The query editor's language provider on opening a panel: metric names with the
    // dashboard range, metadata, and label names as a form POST (retried as GET on 400/405).
    let srv = TestServer::start(fixed_state()).await;
    let r = send(
        srv.addr,
        Method::GET,
        "/api/v1/label/__name__/values?start=1699999800&end=1700000640&limit=40000",
        &[
            ("user-agent", "Grafana/11.3.0"),
            ("x-grafana-cache", "private, max-age=60"),
        ],
        None,
    )
    .await;
    assert_json(
        &r,
        StatusCode::OK,
        r#"{"status":"success","data":["depin_adapter_up","depin_earnings_total"]}"#,
    );
    let r = send(
        srv.addr,
        Method::GET,
        "/api/v1/metadata",
        &[("user-agent", "Grafana/11.3.0")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/labels",
        &GRAFANA_POST,
        Some("end=1700000640&start=1699999800"),
    )
    .await;
    assert_json(
        &r,
        StatusCode::OK,
        r#"{"status":"success","data":["__name__","protocol","token"]}"#,
    );
    let body = format!(
        "end=1700000640&match%5B%5D={}&start=1699999800",
        enc("depin_earnings_total")
    );
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/series",
        &GRAFANA_POST,
        Some(&body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn grafana_time_series_panel() {
    // client.go QueryRange: POST /api/v1/query_range, form `end`, `query`, `start`, `step`
    // (sorted keys; times as float seconds, step as float seconds), plus the exemplar query.
    let srv = TestServer::start(fixed_state()).await;
    let q = enc(r#"sum by (protocol) (depin_earnings_total)"#);
    let body = format!("end=1700000060&query={q}&start=1700000000&step=30&timeout=30s");
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/query_range",
        &GRAFANA_POST,
        Some(&body),
    )
    .await;
    assert_json(
        &r,
        StatusCode::OK,
        concat!(
            r#"{"status":"success","data":{"resultType":"matrix","result":["#,
            r#"{"metric":{"protocol":"golem"},"values":[[1700000000,"0"],[1700000030,"0.5"],[1700000060,"1"]]},"#,
            r#"{"metric":{"protocol":"storj"},"values":[[1700000000,"0"],[1700000030,"1"],[1700000060,"2"]]}]}}"#
        ),
    );
    let body = format!("end=1700000060&query={q}&start=1700000000");
    let r = send(
        srv.addr,
        Method::POST,
        "/api/v1/query_exemplars",
        &GRAFANA_POST,
        Some(&body),
    )
    .await;
    assert_json(&r, StatusCode::OK, r#"{"status":"success","data":[]}"#);
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// promtool (Prometheus 2.42's client) against the server
// ---------------------------------------------------------------------------------------------

const PROMTOOL: &str = "/usr/bin/promtool";

/// `None` (and a message) when promtool is absent and CI is not set; absence fails under CI.
fn promtool() -> Option<&'static str> {
    if std::path::Path::new(PROMTOOL).exists() {
        return Some(PROMTOOL);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{PROMTOOL} is missing and CI=true");
    }
    eprintln!("skipping: {PROMTOOL} not installed");
    None
}

/// A server whose samples end now on the wall clock, since promtool queries at "now".
async fn live_server() -> (TestServer, i64) {
    let now = WallClock.now_ms();
    let start = now - 40 * STEP_MS;
    let srv = TestServer::start(state_at(fixture_db(start), Arc::new(WallClock), true)).await;
    (srv, start)
}

async fn run_promtool(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(PROMTOOL)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_series_and_label_values() {
    if promtool().is_none() {
        return;
    }
    let (srv, _) = live_server().await;
    let url = srv.url();
    let (ok, out, err) = run_promtool(&["query", "series", "--match=depin_adapter_up", &url]).await;
    assert!(ok, "promtool failed: {err}");
    assert_eq!(
        out,
        "{__name__=\"depin_adapter_up\", protocol=\"golem\"}\n{__name__=\"depin_adapter_up\", protocol=\"storj\"}\n"
    );
    let (ok, out, err) = run_promtool(&["query", "labels", &url, "protocol"]).await;
    assert!(ok, "promtool failed: {err}");
    assert_eq!(out, "golem\nstorj\n");
    let (ok, out, err) = run_promtool(&["query", "instant", &url, "42"]).await;
    assert!(ok, "promtool failed: {err}");
    assert!(out.starts_with("scalar: 42 @["), "{out}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_instant_and_range_queries() {
    if promtool().is_none() {
        return;
    }
    let (srv, start) = live_server().await;
    let url = srv.url();
    let (ok, out, err) = run_promtool(&[
        "query",
        "instant",
        &url,
        r#"depin_adapter_up{protocol="storj"}"#,
    ])
    .await;
    assert!(ok, "promtool failed: {err}");
    assert!(
        out.starts_with("depin_adapter_up{protocol=\"storj\"} => 1 @["),
        "{out}"
    );
    let (s, e) = (
        (start / 1000 + 1).to_string(),
        (start / 1000 + 61).to_string(),
    );
    let (ok, out, err) = run_promtool(&[
        "query",
        "range",
        &format!("--start={s}"),
        &format!("--end={e}"),
        "--step=30s",
        &url,
        r#"depin_adapter_up{protocol="golem"}"#,
    ])
    .await;
    assert!(ok, "promtool failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("depin_adapter_up{protocol=\"golem\"} =>"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1..].iter().all(|l| l.starts_with("0 @[")), "{out}");
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Side by side with a real Prometheus (2.42, /usr/bin/prometheus) over the same samples
// ---------------------------------------------------------------------------------------------

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Stops the Prometheus child process when the test ends, passing or not.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `None` (and a message) when Prometheus is absent and CI is not set; absence fails under CI.
fn prometheus() -> Option<&'static str> {
    if std::path::Path::new(PROMETHEUS).exists() {
        return Some(PROMETHEUS);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{PROMETHEUS} is missing and CI=true"
    );
    eprintln!("skipping: {PROMETHEUS} not installed");
    None
}

/// Starts Prometheus on a free loopback port with `config`, its tsdb in `dir/data`, and waits
/// until it is ready.
async fn start_prometheus(dir: &std::path::Path, config: &str) -> (Child, SocketAddr) {
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Child(
        std::process::Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            // The fixture's blocks are from 2023: keep them.
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && send(addr, Method::GET, "/-/ready", &[], None).await.status == StatusCode::OK
        {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "prometheus did not become ready:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_metrics_and_reports_the_same_metadata() {
    if prometheus().is_none() {
        return;
    }
    let ours = TestServer::start(fixed_state()).await;
    // A request first, so the server's own request metrics have a series to expose.
    assert_eq!(ours.get("/-/healthy").await.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: orcha\n    static_configs: [{{targets: ['{}']}}]\n",
        ours.addr
    );
    let (_prom, prom_addr) = start_prometheus(dir.path(), &config).await;
    // Wait for a scrape to land: the scraped value is queryable.
    let mut scraped = String::new();
    for _ in 0..100 {
        let r = send(
            prom_addr,
            Method::GET,
            "/api/v1/query?query=depin_test_temperature_celsius",
            &[],
            None,
        )
        .await;
        if r.body.contains(r#""21.5""#) {
            scraped = r.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!scraped.is_empty(), "prometheus never scraped /metrics");
    let up = send(prom_addr, Method::GET, "/api/v1/query?query=up", &[], None).await;
    assert!(up.body.contains(r#""1"]"#), "target not up: {}", up.body);
    for path in [
        "/api/v1/metadata?metric=depin_test_requests_total",
        "/api/v1/metadata?metric=depin_test_temperature_celsius",
        "/api/v1/metadata?metric=depin_orcha_http_request_duration_seconds",
        "/api/v1/metadata",
    ] {
        let theirs = send(prom_addr, Method::GET, path, &[], None).await;
        let mine = ours.get(path).await;
        assert_eq!(
            (mine.status, &mine.body),
            (theirs.status, &theirs.body),
            "{path}"
        );
    }
    ours.shutdown().await;
}

/// The fixture as OpenMetrics text, for `promtool tsdb create-blocks-from openmetrics`.
fn fixture_openmetrics(db: &Db) -> String {
    use depin_orcha::tsdb::Queryable;
    let mut out = String::new();
    let all =
        depin_orcha::labels::Matcher::new(depin_orcha::labels::MatchOp::Regex, "__name__", ".+")
            .unwrap();
    for s in db.select(&[all], i64::MIN, i64::MAX) {
        let name = s.labels.metric_name().unwrap().to_string();
        let rest: Vec<String> = s
            .labels
            .without_metric_name()
            .iter()
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        for p in &s.samples {
            out.push_str(&format!(
                "{name}{{{}}} {} {}\n",
                rest.join(","),
                p.v,
                p.t as f64 / 1000.0
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Canonical form of a body for comparison: bytes, except that instant vectors are sorted by
/// their labels first (Prometheus leaves the order of aggregation groups unspecified).
fn canonical(body: &str) -> String {
    let mut v: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.to_string(),
    };
    if v["data"]["resultType"] == "vector" {
        if let Some(arr) = v["data"]["result"].as_array_mut() {
            arr.sort_by_key(|s| s["metric"].to_string());
            return v.to_string();
        }
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_a_real_prometheus() {
    if promtool().is_none() || prometheus().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("fixture.om");
    std::fs::write(&om, fixture_openmetrics(&fixture_db(T0))).unwrap();
    let data = dir.path().join("data");
    let (ok, _, err) = run_promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        data.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "promtool create-blocks-from failed: {err}");
    let (_prom, prom_addr) = start_prometheus(dir.path(), "scrape_configs: []\n").await;

    let ours = TestServer::start(fixed_state()).await;
    let q = |s: &str| enc(s);
    let requests: Vec<String> = vec![
        format!(
            "/api/v1/query?query={}&time=1700000600",
            q("depin_adapter_up")
        ),
        format!(
            "/api/v1/query?query={}&time=1700000300.5",
            q("depin_earnings_total")
        ),
        format!(
            "/api/v1/query?query={}&time=1700001000",
            q("depin_adapter_up")
        ),
        format!(
            "/api/v1/query?query={}&time=1700000607.5",
            // Off the sample grid: Prometheus 2 includes a sample at the window's left edge,
            // Prometheus 3 (our engine) does not.
            q(r#"depin_earnings_total{protocol="storj"}[1m]"#)
        ),
        format!(
            "/api/v1/query?query={}&time=1700000600",
            q("sum by (protocol) (rate(depin_earnings_total[5m]))")
        ),
        format!("/api/v1/query?query={}&time=4", q("1+1")),
        format!("/api/v1/query?query={}&time=4", q(r#""text""#)),
        format!(
            "/api/v1/query?query={}&time=1700000600",
            q("depin_earnings_total / 3")
        ),
        format!(
            "/api/v1/query?query={}&time=1700000600",
            q("depin_earnings_total * 1e-9")
        ),
        format!(
            "/api/v1/query?query={}&time=1700000600",
            q("depin_earnings_total * 1e21")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000600&step=60",
            q("depin_earnings_total")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000600&step=30",
            q("increase(depin_earnings_total[2m])")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1699999900&end=1700001000&step=45",
            q("depin_adapter_up == 1")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000120&step=60",
            q("scalar(sum(depin_adapter_up))")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700000030&step=15",
            q("depin_adapter_up / 0")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000000.123&end=1700000100&step=33.3",
            q("depin_earnings_total")
        ),
        "/api/v1/query_range?query=1&start=0&end=11001&step=1".to_string(),
        "/api/v1/query_range?query=1&start=10&end=5&step=1".to_string(),
        "/api/v1/query_range?query=1&start=0&end=5&step=0".to_string(),
        "/api/v1/query?query=1&timeout=abc".to_string(),
        "/api/v1/query_range?query=1&start=x&end=1&step=1".to_string(),
        "/api/v1/query_range?query=1&start=0&end=1&step=1x".to_string(),
        // Evaluation times off the 15 s sample grid, where Prometheus 2's closed range windows
        // and Prometheus 3's left-open ones hold the same samples.
        format!("/api/v1/query?query={}&time=1700000607.5", q("topk(1, depin_earnings_total)")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("count_values(\"v\", depin_adapter_up)")),
        format!(
            "/api/v1/query?query={}&time=1700000607.5",
            q("label_replace(depin_adapter_up, \"x\", \"$1\", \"protocol\", \"(.*)\")")
        ),
        format!("/api/v1/query?query={}&time=1700000607.5", q("absent(nothing{job=\"a\"})")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("time()")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("depin_adapter_up offset 5m")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("deriv(depin_earnings_total[5m])")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("quantile_over_time(0.9, depin_earnings_total[5m])")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("max_over_time(rate(depin_earnings_total[1m])[5m:30s])")),
        format!("/api/v1/query?query={}&time=1700000607.5", q("depin_adapter_up[1m]")),
        format!(
            "/api/v1/query_range?query={}&start=1700000007.5&end=1700000607.5&step=60",
            q("predict_linear(depin_earnings_total[5m], 3600)")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1700000007.5&end=1700000607.5&step=60",
            q("avg_over_time(depin_earnings_total[3m]) - on(protocol) group_left sum by (protocol) (depin_adapter_up)")
        ),
        "/api/v1/series?match[]=depin_adapter_up".to_string(),
        format!(
            "/api/v1/series?match[]={}&match[]={}",
            q(r#"{protocol="golem"}"#),
            q("depin_adapter_up")
        ),
        "/api/v1/series".to_string(),
        "/api/v1/labels".to_string(),
        "/api/v1/labels?start=-292273086-05-16T16:47:06Z&end=292277025-08-18T07:12:54.999999999Z".to_string(),
        "/api/v1/series?match[]=depin_adapter_up&start=2023-11-14T23:23:20.5%2B01:00&end=1700000610".to_string(),
        "/api/v1/labels?match[]=depin_adapter_up".to_string(),
        "/api/v1/label/__name__/values".to_string(),
        format!(
            "/api/v1/label/protocol/values?match[]={}",
            q(r#"depin_earnings_total{token="GLM"}"#)
        ),
        "/api/v1/label/nothing/values".to_string(),
        "/api/v1/nope".to_string(),
        "/api/v1/rules".to_string(),
        "/api/v1/alerts".to_string(),
        format!("/api/v1/format_query?query={}", q("sum(rate(foo[5m]))by(job)")),
        format!("/api/v1/query_exemplars?query={}", q("1+1")),
        format!(
            "/api/v1/query_exemplars?query={}&start=1700000000&end=1700000600",
            q("depin_adapter_up")
        ),
    ];
    let mut mismatches = Vec::new();
    for path in &requests {
        // Each request as a GET and as a form POST (promtool's and Grafana's default; label
        // values take GET only, and both answer 405 alike).
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let form = [("content-type", "application/x-www-form-urlencoded")];
        for as_post in [false, true] {
            let (theirs, mine) = if as_post {
                (
                    send(prom_addr, Method::POST, route, &form, Some(query)).await,
                    send(ours.addr, Method::POST, route, &form, Some(query)).await,
                )
            } else {
                (
                    send(prom_addr, Method::GET, path, &[], None).await,
                    ours.get(path).await,
                )
            };
            if theirs.status != mine.status || canonical(&theirs.body) != canonical(&mine.body) {
                mismatches.push(format!(
                    "{} {path}\n  prometheus {}: {}\n  ours       {}: {}",
                    if as_post { "POST" } else { "GET" },
                    theirs.status,
                    theirs.body,
                    mine.status,
                    mine.body
                ));
            }
        }
    }
    // Form body and query string together: the body wins for single values, both count for
    // `match[]`.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (path, body) in [
        ("/api/v1/query?query=7&time=1", "query=8"),
        (
            "/api/v1/series?match[]=depin_adapter_up",
            "match%5B%5D=depin_earnings_total",
        ),
        (
            "/api/v1/labels?match[]=depin_adapter_up",
            "start=1700000000",
        ),
    ] {
        let theirs = send(prom_addr, Method::POST, path, &form, Some(body)).await;
        let mine = send(ours.addr, Method::POST, path, &form, Some(body)).await;
        if (theirs.status, &theirs.body) != (mine.status, &mine.body) {
            mismatches.push(format!(
                "POST {path} + body {body}\n  prometheus {}: {}\n  ours       {}: {}",
                theirs.status, theirs.body, mine.status, mine.body
            ));
        }
    }
    ours.shutdown().await;
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        requests.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn annotations_become_warnings_and_infos() {
    let srv = TestServer::start(fixed_state()).await;
    let r = srv
        .get(&format!(
            "/api/v1/query?query={}&time=1700000600",
            enc("rate(depin_adapter_up[5m])")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let infos = v["infos"]
        .as_array()
        .unwrap_or_else(|| panic!("no infos in {}", r.body));
    assert!(
        infos[0].as_str().unwrap().starts_with(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"depin_adapter_up\""
        ),
        "{}",
        r.body
    );
    assert!(v.get("warnings").is_none(), "{}", r.body);
    let r = srv
        .get(&format!(
            "/api/v1/query?query={}&time=1700000600",
            enc("histogram_quantile(0.9, depin_adapter_up)")
        ))
        .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("PromQL warning: bucket label \"le\" is missing"),
        "{}",
        r.body
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_read_api_allows_cross_origin_calls_like_prometheus() {
    let mut state = fixed_state();
    let srv = TestServer::start(state.clone()).await;
    let r = send(
        srv.addr,
        Method::GET,
        "/api/v1/labels",
        &[("origin", "http://dash.example")],
        None,
    )
    .await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers["access-control-allow-methods"],
        "GET, POST, OPTIONS"
    );
    assert_eq!(r.headers["vary"], "Origin");
    let pre = send(
        srv.addr,
        Method::OPTIONS,
        "/api/v1/query",
        &[("origin", "http://dash.example")],
        None,
    )
    .await;
    assert_eq!(
        (pre.status, &pre.headers["access-control-allow-origin"]),
        (StatusCode::NO_CONTENT, &"*".parse().unwrap())
    );
    // No Origin, no CORS headers; /metrics never has them.
    assert!(srv
        .get("/api/v1/labels")
        .await
        .headers
        .get("access-control-allow-origin")
        .is_none());
    let m = send(
        srv.addr,
        Method::GET,
        "/metrics",
        &[("origin", "http://dash.example")],
        None,
    )
    .await;
    assert!(m.headers.get("access-control-allow-origin").is_none());
    srv.shutdown().await;
    // A configured origin pattern echoes matching origins only.
    state.cors_origin = Some(regex::Regex::new("^(?:https://grafana\\.lan)$").unwrap());
    let srv = TestServer::start(state).await;
    let ok = send(
        srv.addr,
        Method::GET,
        "/api/v1/labels",
        &[("origin", "https://grafana.lan")],
        None,
    )
    .await;
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://grafana.lan"
    );
    let no = send(
        srv.addr,
        Method::GET,
        "/api/v1/labels",
        &[("origin", "https://evil.example")],
        None,
    )
    .await;
    assert!(no.headers.get("access-control-allow-origin").is_none());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_check_metrics() {
    if promtool().is_none() {
        return;
    }
    let srv = TestServer::start(fixed_state()).await;
    srv.get("/-/healthy").await; // so the server's own request metrics have series
    let text = srv.get("/metrics").await.body;
    let mut child = tokio::process::Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn lookback_delta_parameter() {
    let srv = TestServer::start(fixed_state()).await;
    // 200 s after the last sample: inside the default 5 m lookback, outside 1 m.
    let base = "/api/v1/query?query=depin_adapter_up%7Bprotocol%3D%22storj%22%7D&time=1700000800";
    assert_json(
        &srv.get(base).await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"depin_adapter_up","protocol":"storj"},"value":[1700000800,"1"]}]}}"#,
    );
    assert_json(
        &srv.get(&format!("{base}&lookback_delta=1m")).await,
        StatusCode::OK,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    );
    assert_json(
        &srv.get(&format!("{base}&lookback_delta=soon")).await,
        StatusCode::BAD_REQUEST,
        &bad_data(
            r#"error parsing lookback delta duration: cannot parse "soon" to a valid duration"#,
        ),
    );
    srv.shutdown().await;
}

//! The control API through the server's router and through a real socket: every POST needs the
//! bearer token (401 without it and nothing changes; 403 with a hint when no token file is
//! configured); GETs show allocations, the plan with its gate verdicts, and the history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use depin_orcha::actuators::{sim::SimActuator, Actuator, VerifySpec};
use depin_orcha::adapters::sim::market::{MarketParams, Protocol};
use depin_orcha::adapters::sim::{SimNode, SimSpec};
use depin_orcha::adapters::Allocatable;
use depin_orcha::clock::{Clock, ManualClock, SharedClock};
use depin_orcha::coordinator::NodeHealth;
use depin_orcha::http::control::ControlApi;
use depin_orcha::http::{self, AppState, Params, RouteRequest};
use depin_orcha::optimizer::{ConfidenceRule, Gates, OptimizationRules, Plan};
use depin_orcha::promql::Engine;
use depin_orcha::reallocation::controller::ControllerParts;
use depin_orcha::reallocation::{
    ControlledNode, Controller, ControllerOptions, HealthSource, History, PlanInput, Planner,
};
use depin_orcha::resources::Allocation;
use depin_orcha::tsdb::Db;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::{Method, StatusCode};

const T0: i64 = 1_767_225_600_000;
const TOKEN: &str = "0123456789abcdef";

struct Up(ManualClock);
impl HealthSource for Up {
    fn snapshot(&self) -> Vec<NodeHealth> {
        ["golem", "storj"]
            .iter()
            .map(|n| NodeHealth {
                name: n.to_string(),
                protocol: "sim".into(),
                up: true,
                polled: true,
                last_success_ms: Some(self.0.now_ms()),
                consecutive_failures: 0,
                last_error: None,
                degraded: None,
            })
            .collect()
    }
}

/// Plans no change.
struct Still;
impl Planner for Still {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        let (now_ms, current) = (i.now_ms, i.current);
        let cur: BTreeMap<String, Allocation> = current
            .iter()
            .map(|c| (c.node.clone(), c.allocation))
            .collect();
        Ok(Plan {
            ts_ms: now_ms,
            current: cur.clone(),
            target: cur,
            moves: Vec::new(),
            current_usd_per_hour: 1.0,
            target_usd_per_hour: 1.0,
            expected_gain_usd_per_hour: 0.0,
            improvement: 0.0,
            confidence: 1.0,
            switching_cost_usd: 0.0,
            hold_hours: 1.0,
            roi: None,
            left_out: Vec::new(),
            explanation: vec!["nothing better".into()],
        })
    }
}

struct Fixture {
    state: AppState,
    golem: Arc<SimNode>,
    controller: Arc<Controller>,
}

fn fixture(token: Option<&str>) -> Fixture {
    let clock = ManualClock::new(T0);
    let shared: SharedClock = Arc::new(clock.clone());
    let mut nodes = Vec::new();
    let mut golem = None;
    for (name, p) in [("golem", Protocol::Golem), ("storj", Protocol::Storj)] {
        let a = Allocation {
            cpu_cores: 2.0,
            memory_bytes: 4e9,
            disk_bytes: 1e11,
            bandwidth_bytes_per_second: 1e6,
        };
        let spec = SimSpec {
            protocol: p,
            allocation: a,
            seed: 1,
            market: MarketParams::defaults(p),
            fault: None,
        };
        let node = Arc::new(SimNode::new(name, &spec, shared.clone()));
        let act: Arc<dyn Actuator> =
            Arc::new(SimActuator::new(node.clone(), VerifySpec::default()).unwrap());
        if name == "golem" {
            golem = Some(node.clone());
        }
        nodes.push(ControlledNode {
            name: name.into(),
            protocol: p.name().into(),
            adapter: node,
            actuator: Some(act),
            poll_interval: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(4),
            configured: Some(a),
        });
    }
    let db = Arc::new(Db::in_memory());
    let registry = prometheus::Registry::new();
    let controller = Controller::new(ControllerParts {
        rules: OptimizationRules {
            origin: "test".into(),
            planner: Default::default(),
            exploration_budget: Default::default(),
            interval: Duration::from_secs(60),
            gates: Gates::default(),
            confidence: ConfidenceRule::default(),
            resources: BTreeMap::new(),
            protocols: BTreeMap::new(),
            nodes: BTreeMap::new(),
            warnings: Vec::new(),
        },
        options: ControllerOptions {
            dry_run: false,
            rollback_margin: 0.1,
            host_capacity: Allocation {
                cpu_cores: 8.0,
                memory_bytes: 16e9,
                disk_bytes: 1e12,
                bandwidth_bytes_per_second: 1e7,
            },
        },
        nodes,
        planner: Box::new(Still),
        health: Arc::new(Up(clock.clone())),
        db: db.clone(),
        engine: Engine::default(),
        clock: shared.clone(),
        history: History::in_memory(),
        registry: registry.clone(),
    })
    .unwrap();
    let mut state = AppState::new(db, Engine::default(), registry, shared);
    state.extra_routes.push(Arc::new(ControlApi {
        controller: controller.clone(),
        token: token.map(str::to_string),
    }));
    Fixture {
        state,
        golem: golem.unwrap(),
        controller,
    }
}

async fn call(
    state: &AppState,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut headers = HeaderMap::new();
    if let Some(t) = bearer {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    let params = Params::new(path.split_once('?').map(|(_, q)| q), None);
    let body = Bytes::from(body.to_string());
    let req = RouteRequest {
        method: &method,
        path: path.split('?').next().unwrap(),
        params: &params,
        headers: &headers,
        body: &body,
    };
    let r = http::route(state, &req).await;
    let status = r.status();
    let bytes = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v)
}

const MOVE: &str = r#"{"allocations":{"golem":{"cpu_cores":3}}}"#;

#[tokio::test(start_paused = true)]
async fn posts_without_the_token_change_nothing() {
    let f = fixture(Some(TOKEN));
    for (path, body) in [
        ("/api/v1/reallocations", MOVE),
        ("/api/v1/controller/pause", ""),
        ("/api/v1/controller/resume", ""),
    ] {
        for bearer in [None, Some("wrong-token-----")] {
            let (s, _) = call(&f.state, Method::POST, path, bearer, body).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} {bearer:?}");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(f.golem.allocation().cpu_cores, 2.0);
    assert!(!f.controller.is_paused());
    assert!(f.controller.history_summaries().is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_a_token_file_posts_are_forbidden_with_a_hint() {
    let f = fixture(None);
    let (s, v) = call(
        &f.state,
        Method::POST,
        "/api/v1/reallocations",
        Some(TOKEN),
        MOVE,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("--web.auth-token-file"),
        "{v}"
    );
    assert_eq!(f.golem.allocation().cpu_cores, 2.0);
    // Reading still works.
    let (s, _) = call(&f.state, Method::GET, "/api/v1/allocations", None, "").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn with_the_token_a_move_is_applied_and_shows_in_the_history() {
    let f = fixture(Some(TOKEN));
    let (s, v) = call(
        &f.state,
        Method::POST,
        "/api/v1/reallocations",
        Some(TOKEN),
        MOVE,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["data"]["id"].as_u64().unwrap();
    // The work runs in a task.
    for _ in 0..100 {
        if f.golem.allocation().cpu_cores == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.golem.allocation().cpu_cores, 3.0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, v) = call(
        &f.state,
        Method::GET,
        "/api/v1/reallocations?limit=5",
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = &v["data"]["reallocations"][0];
    assert_eq!(r["id"].as_u64(), Some(id));
    assert_eq!(r["outcome"], "applied", "{v}");
    assert_eq!(r["source"], "api_manual");
    let (_, v) = call(&f.state, Method::GET, "/api/v1/plan", None, "").await;
    let verdicts = v["data"]["evaluation"]["gates"]["verdicts"]
        .as_array()
        .unwrap();
    assert_eq!(verdicts.len(), 8);
    assert_eq!(verdicts[0]["gate"], "min_improvement");
    let (_, v) = call(&f.state, Method::GET, "/api/v1/allocations", None, "").await;
    assert_eq!(v["data"]["nodes"][0]["node"], "golem");
    assert_eq!(v["data"]["nodes"][0]["allocation"]["cpu_cores"], 3.0);
    // Pause and resume.
    let (s, _) = call(
        &f.state,
        Method::POST,
        "/api/v1/controller/pause",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(f.controller.is_paused());
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&f.state.registry.gather())
        .unwrap();
    assert!(text.contains("depin_controller_paused 1"), "{text}");
    assert!(
        text.contains("depin_reallocations_total{outcome=\"applied\"} 1"),
        "{text}"
    );
    let (s, _) = call(
        &f.state,
        Method::POST,
        "/api/v1/controller/resume",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!f.controller.is_paused());
    // A bad body is refused with the reason.
    let (s, v) = call(
        &f.state,
        Method::POST,
        "/api/v1/reallocations",
        Some(TOKEN),
        r#"{"allocations":{"golem":{"cpus":3}}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `cpus`"));
    let (s, _) = call(
        &f.state,
        Method::DELETE,
        "/api/v1/reallocations",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_real_socket_answers_401_without_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture(Some(TOKEN));
    let server =
        http::Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(f.state.clone())).unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = MOVE;
    let req = format!(
        "POST /api/v1/reallocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
    assert_eq!(f.golem.allocation().cpu_cores, 2.0);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

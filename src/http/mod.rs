//! The HTTP server: `/metrics`, `/-/healthy`, `/-/ready` and the Prometheus-compatible read API
//! (`/api/v1/query`, `query_range`, `series`, `labels`, `label/<name>/values`, `metadata`,
//! `status/buildinfo`, …) that lets promtool and Grafana treat depin-orcha as a Prometheus.
//!
//! - `server`: the hyper plumbing (bind, serve, graceful shutdown, TLS, basic auth).
//! - `conns`: the open connections, and who gets one when they run out.
//! - `work`: the low-priority threads, slots and memory budget the API's heavy work runs under.
//! - `api`: the query API endpoints, synchronous cores that tests call without sockets.
//! - `params`: request parameters (times, durations, limits, `match[]`) with Prometheus' errors.
//! - `json`: the exact JSON encoding of results and envelopes.
//! - `stream`: streamed bodies (events, export); `limit_metrics`: the limits on `/metrics`;
//!   `own_metrics`: the server's request counters and the bounded `handler` label.
//! - `conns`: fair connections (reserved share, header-read and idle cut-offs); `work`: the
//!   pool of lower-priority threads the API's CPU-heavy work runs on.
//! - `rules`: `/api/v1/rules`, `/api/v1/alerts` and `/-/reload` over a rule manager.
//! - `control`: the control API over the controller (allocations, plan, reallocations).
//! - `events`: the live event stream (`/api/v1/events`, server-sent events).
//! - `export`: streamed samples (`/api/v1/export`).
//!
//! This module owns routing and [`AppState`]. It reads storage only through
//! [`crate::tsdb::Queryable`], evaluates through [`crate::promql::Engine`] on the work pool
//! (at most [`DEFAULT_MAX_CONCURRENT_QUERIES`] at once, each within its timeout and all within
//! one memory budget). The routes that change state (rules reload, control API) plug in as
//! [`ExtraRoutes`] and check [`unauthorized`] for the control token. It sits at the top of the
//! library's layers: it imports the parts it serves, and none of them imports it.
//!
//! Behaviour follows Prometheus' `web/api/v1`: the API answers 503 until ready, CORS on the read
//! API, plain-text 404/405 from the router, at most 10 warnings and 10 infos per response.
//! The server counts its requests in `depin_orcha_http_requests_total{handler,code}` and
//! `depin_orcha_http_request_duration_seconds{handler}`.

pub mod api;
pub mod conns;
pub mod control;
pub mod events;
pub mod export;
pub mod json;
pub mod landing;
pub mod limit_metrics;
pub mod own_metrics;
pub mod params;
pub mod rules;
pub mod server;
pub mod stream;
pub mod webconfig;
pub mod work;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

pub use api::ApiSuccess;
pub use own_metrics::{handler_label, HttpMetrics};
pub use params::Params;
pub use server::Server;

/// The body type of every response.
pub type HttpResponse = Response<Full<Bytes>>;

/// Request bodies (form-encoded POSTs) larger than this get 413: a query or a `match[]` list is
/// never near it, and it bounds what one request can make the server hold.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// `/metrics` content type: the text exposition format 0.0.4, as Prometheus scrapes it.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share. Cheap to clone (every field is a handle), so a clone can move onto
/// a blocking thread for query evaluation.
#[derive(Clone)]
pub struct AppState {
    /// Read through the `Queryable` trait only.
    pub db: Arc<crate::tsdb::Db>,
    pub engine: crate::promql::Engine,
    /// Rendered at `/metrics` and the source of `/api/v1/metadata`.
    pub registry: prometheus::Registry,
    /// `/-/ready` and the whole `/api/v1` answer 503 until this is true (Prometheus gates its
    /// API the same way while the tsdb loads).
    pub ready: Arc<AtomicBool>,
    /// The default evaluation time of `/api/v1/query`.
    pub clock: crate::clock::SharedClock,
    pub build: BuildInfo,
    /// Routes other modules add (rules, alerts, control API), tried before the built-in ones
    /// and before the readiness gate (they decide for themselves).
    pub extra_routes: Vec<Arc<dyn ExtraRoutes>>,
    /// At most this many queries evaluate at once (`--query.max-concurrency`); the others wait
    /// for a slot within their timeout.
    pub query_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: HttpMetrics,
    /// Origins allowed to call the read API from a browser (`--web.cors.origin`, anchored by
    /// whoever builds it); `None` allows any, Prometheus' default `.*`.
    pub cors_origin: Option<regex::Regex>,
    /// Routes whose bodies stream (export, events); see [`stream`]. Tried before everything.
    pub stream_routes: stream::StreamRouteList,
    /// The memory all API work shares (`--query.max-memory`): queries, series, label names and
    /// values, export selectors, request bodies and the answers waiting to be sent.
    pub memory: crate::promql::MemoryBudget,
    /// Threads for the API's CPU-heavy work, at a lower priority (see [`work`]).
    pub pool: work::WorkPool,
    /// Queries evaluated on an async worker at once instead of a work thread: one (see
    /// [`work::try_inline`]).
    pub inline_slot: Arc<tokio::sync::Semaphore>,
    /// Streamed responses (events, export) open at once (`--web.max-streams`); beyond, 503.
    /// Separate from the query slots, so long-lived streams never hold up queries.
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// How many stream slots there are (`--web.max-streams`).
    pub stream_slots_max: usize,
    /// Where `/metrics` is served (`--web.telemetry-path`, as the Prometheus exporters have it).
    pub telemetry_path: String,
}

/// Prometheus' default `--query.max-concurrency`.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 20;
/// Default of `--query.max-memory`: enough for a dashboard's queries over weeks of a host's
/// history, small enough for a host with 1 GiB of memory.
pub const DEFAULT_QUERY_MAX_MEMORY: usize = 256 << 20;
/// Default of `--web.max-streams`.
pub const DEFAULT_MAX_STREAMS: usize = 64;

impl AppState {
    /// A state that is not ready yet, with the crate's build information and no extra routes.
    pub fn new(
        db: Arc<crate::tsdb::Db>,
        engine: crate::promql::Engine,
        registry: prometheus::Registry,
        clock: crate::clock::SharedClock,
    ) -> AppState {
        let metrics = HttpMetrics::new(&registry);
        AppState {
            db,
            engine,
            registry,
            ready: Arc::new(AtomicBool::new(false)),
            clock,
            build: BuildInfo::default(),
            extra_routes: Vec::new(),
            query_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENT_QUERIES)),
            metrics,
            cors_origin: None,
            stream_routes: Vec::new(),
            memory: crate::promql::MemoryBudget::new(DEFAULT_QUERY_MAX_MEMORY),
            pool: work::WorkPool::new(work::default_threads()),
            stream_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_STREAMS)),
            stream_slots_max: DEFAULT_MAX_STREAMS,
            inline_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            telemetry_path: "/metrics".into(),
        }
    }

    /// Sets `--query.max-memory`.
    pub fn with_query_max_memory(mut self, bytes: usize) -> AppState {
        self.memory = crate::promql::MemoryBudget::new(bytes);
        self
    }

    /// Sets `--web.max-streams`.
    pub fn with_max_streams(mut self, n: usize) -> AppState {
        self.stream_slots = Arc::new(tokio::sync::Semaphore::new(n));
        self.stream_slots_max = n;
        self
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What `/api/v1/status/buildinfo` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    pub build_user: String,
    pub build_date: String,
    /// Prometheus reports its Go version here (`goVersion`); we report `rustc --version`.
    pub go_version: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        BuildInfo {
            version: crate::build::VERSION.to_string(),
            revision: crate::build::REVISION.to_string(),
            branch: crate::build::BRANCH.to_string(),
            build_user: crate::build::BUILD_USER.to_string(),
            build_date: crate::build::BUILD_DATE.to_string(),
            go_version: crate::build::RUSTC_VERSION.to_string(),
        }
    }
}

/// A request as the routes see it: method, path, merged form parameters and headers (for a
/// bearer token). The body has already been read and, if form-encoded, merged into `params`.
pub struct RouteRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub params: &'a Params,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

/// Routes added by other modules. `route` returns `None` for paths it does not own.
/// It runs on the async executor: anything slow belongs on a blocking thread or a task.
pub trait ExtraRoutes: Send + Sync {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<HttpResponse>;
}

/// The `errorType` of an API error, with its HTTP status as Prometheus maps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    /// Prometheus' `getDefaultErrorCode`.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            // 499, nginx' "client closed request", as Prometheus answers a canceled query.
            ErrorType::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal | ErrorType::Unavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: rendered as `{"status":"error","errorType":…,"error":…}`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorType::BadData, message)
    }
    /// Prometheus' `invalidParamError`: `invalid parameter "<name>": <cause>`.
    pub fn invalid_param(name: &str, cause: impl fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter {name:?}: {cause}"))
    }

    pub fn into_response(self) -> HttpResponse {
        json_response(
            self.kind.status(),
            json::error(self.kind.as_str(), &self.message),
        )
    }
}

impl From<crate::promql::OverBudget> for ApiError {
    fn from(e: crate::promql::OverBudget) -> Self {
        ApiError::new(ErrorType::Execution, e.to_string())
    }
}

impl From<crate::promql::Error> for ApiError {
    fn from(e: crate::promql::Error) -> Self {
        let kind = match e.error_type() {
            "bad_data" => ErrorType::BadData,
            "timeout" => ErrorType::Timeout,
            "canceled" => ErrorType::Canceled,
            _ => ErrorType::Execution,
        };
        ApiError::new(kind, e.to_string())
    }
}

pub fn json_response(status: StatusCode, body: String) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The header that carries the control token beside basic auth, whose credentials take the
/// `Authorization` header: `X-Depin-Orcha-Token: <token>`.
pub const TOKEN_HEADER: &str = "x-depin-orcha-token";

/// For routes that change state: `None` when the request carries the configured token, as
/// `Authorization: Bearer <token>` (the scheme in any case, RFC 7235) or in
/// [`TOKEN_HEADER`] (needed when basic auth is configured: `Authorization` then holds the
/// user and password), else the 401 to answer. With no token configured, such routes stay
/// closed, so a missing setting never opens them.
pub fn unauthorized(headers: &HeaderMap, token: Option<&str>) -> Option<HttpResponse> {
    let bearer = headers
        .get_all(hyper::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
    let own = headers
        .get_all(TOKEN_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let matches = |t: &str| {
        bearer.chain(own).fold(false, |ok, g| {
            ok | constant_time_eq(t.as_bytes(), g.trim().as_bytes())
        })
    };
    match token {
        Some(t) if !t.is_empty() && matches(t) => None,
        _ => {
            let mut r = text_response(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            Some(r)
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The success or error of an API endpoint as an HTTP response: 200 with the envelope, 204 when
/// there is no data (as Prometheus answers `query_exemplars` without selectors).
pub fn api_response(result: Result<ApiSuccess, ApiError>) -> HttpResponse {
    match result {
        Ok(s) if s.data.is_none() && s.warnings.is_empty() && s.infos.is_empty() => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Ok(s) => {
            let warnings = cap_annotations(s.warnings, "warning");
            let infos = cap_annotations(s.infos, "info");
            json_response(
                StatusCode::OK,
                json::success(s.data.as_deref(), &warnings, &infos),
            )
        }
        Err(e) => e.into_response(),
    }
}

/// [`api_response`] for an answer made within the memory budget: the encoded answer is charged
/// to `memory` (what evaluation held is given back once the answer is encoded), and the charge
/// stays with the response's bytes until hyper has sent them and drops them.
pub fn api_response_charged(
    result: Result<ApiSuccess, ApiError>,
    mut memory: crate::promql::Reservation,
) -> HttpResponse {
    let s = match result {
        Ok(s) if s.data.is_some() => s,
        other => return api_response(other),
    };
    let size = s.data.as_ref().map_or(0, |d| d.len());
    // The envelope is a copy of the data: both exist until the data is dropped.
    if let Err(e) = memory.grow(size + 1024) {
        return ApiError::from(e).into_response();
    }
    let warnings = cap_annotations(s.warnings, "warning");
    let infos = cap_annotations(s.infos, "info");
    let body = json::success(s.data.as_deref(), &warnings, &infos);
    drop(s.data);
    // Shrinks (the estimate covered the envelope): what evaluation held is given back.
    let _ = memory.resize(body.len());
    let mut r = Response::new(Full::new(Bytes::from_owner(ChargedBody {
        body,
        _memory: memory,
    })));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A response body that keeps its charge against the memory budget while it lives.
struct ChargedBody {
    body: String,
    _memory: crate::promql::Reservation,
}

impl AsRef<[u8]> for ChargedBody {
    fn as_ref(&self) -> &[u8] {
        self.body.as_bytes()
    }
}

/// Most warnings (and, separately, infos) a response lists, as Prometheus' API.
pub const MAX_ANNOTATIONS: usize = 10;

/// Keeps the first [`MAX_ANNOTATIONS`] and says how many more there were, in Prometheus' words.
fn cap_annotations(mut list: Vec<String>, kind: &str) -> Vec<String> {
    if list.len() > MAX_ANNOTATIONS {
        let skipped = list.len() - MAX_ANNOTATIONS;
        list.truncate(MAX_ANNOTATIONS);
        list.push(format!("{skipped} more {kind} annotations omitted"));
    }
    list
}

/// Handles one request. Reads a form-encoded body (at most [`MAX_BODY_BYTES`]), routes, and
/// answers; never fails (errors become responses).
pub async fn handle<B>(state: &AppState, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = std::time::Instant::now();
    let handler = handler_label(req.uri().path());
    let resp = read_and_route(state, req).await;
    let m = &state.metrics;
    m.requests
        .with_label_values(&[handler, resp.status().as_str()])
        .inc();
    let took = started.elapsed();
    m.duration
        .with_label_values(&[handler])
        .observe(took.as_secs_f64());
    tracing::debug!(
        handler,
        status = resp.status().as_u16(),
        took_ms = took.as_millis() as u64,
        "http request"
    );
    resp
}

async fn read_and_route<B>(state: &AppState, req: Request<B>) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("error reading request body: {e}\n"),
            )
        }
    };
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // Go's ParseForm reads the body of POST, PUT and PATCH only.
    let reads_body = is_form && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let params = if reads_body && body.len() > LARGE_FORM_BYTES {
        // Decoding a large form takes a while: not on an async worker.
        let (query, form) = (parts.uri.query().map(str::to_string), body.clone());
        match state
            .pool
            .spawn(move || Params::new(query.as_deref(), Some(&form[..])))
            .await
        {
            Ok(Ok(p)) => p,
            _ => {
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    "reading the form failed\n",
                )
            }
        }
    } else {
        Params::new(parts.uri.query(), reads_body.then_some(&body[..]))
    };
    let rr = RouteRequest {
        method: &parts.method,
        path: parts.uri.path(),
        params: &params,
        headers: &parts.headers,
        body: &body,
    };
    route(state, &rr).await
}

/// Form bodies longer than this are decoded on the work pool.
const LARGE_FORM_BYTES: usize = 16 << 10;

fn too_large() -> HttpResponse {
    text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        TEXT,
        format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
    )
}

/// Routes a request whose body has been read.
pub async fn route(state: &AppState, req: &RouteRequest<'_>) -> HttpResponse {
    for extra in &state.extra_routes {
        if let Some(r) = extra.route(state, req) {
            return r;
        }
    }
    let (method, path) = (req.method, req.path);
    let get = method == Method::GET || method == Method::HEAD;
    if path == state.telemetry_path {
        return if get {
            metrics(state)
        } else {
            method_not_allowed("GET, HEAD")
        };
    }
    match path {
        "/" if get => landing::landing_page(state),
        landing::RUNBOOKS_PATH if get => landing::runbooks(),
        "/-/healthy" if get => text_response(StatusCode::OK, TEXT, "depin-orcha is Healthy.\n"),
        "/-/ready" if get => {
            if state.is_ready() {
                text_response(StatusCode::OK, TEXT, "depin-orcha is Ready.\n")
            } else {
                not_ready()
            }
        }
        "/" | landing::RUNBOOKS_PATH | "/-/healthy" | "/-/ready" => method_not_allowed("GET, HEAD"),
        p if p.starts_with("/api/v1/") => {
            if !state.is_ready() {
                return not_ready();
            }
            api_route(state, req).await
        }
        _ => not_found(),
    }
}

fn not_found() -> HttpResponse {
    text_response(StatusCode::NOT_FOUND, TEXT, "404 page not found\n")
}

fn not_ready() -> HttpResponse {
    text_response(StatusCode::SERVICE_UNAVAILABLE, TEXT, "Service Unavailable")
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Method Not Allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn metrics(state: &AppState) -> HttpResponse {
    let families = state.registry.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => text_response(StatusCode::OK, METRICS_CONTENT_TYPE, text),
        Err(e) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("error encoding metrics: {e}\n"),
        ),
    }
}

/// Which endpoints take POST as well as GET (Prometheus' router, `web/api/v1/api.go`).
fn allows(path: &str, method: &Method) -> Result<(), &'static str> {
    let get_post = matches!(
        path,
        "/api/v1/query"
            | "/api/v1/query_range"
            | "/api/v1/query_exemplars"
            | "/api/v1/format_query"
            | "/api/v1/labels"
            | "/api/v1/series"
    );
    let ok =
        *method == Method::GET || *method == Method::HEAD || (get_post && *method == Method::POST);
    match (ok, get_post) {
        (true, _) => Ok(()),
        (false, true) => Err("GET, HEAD, POST"),
        (false, false) => Err("GET, HEAD"),
    }
}

async fn api_route(state: &AppState, req: &RouteRequest<'_>) -> HttpResponse {
    let path = req.path;
    let known = matches!(
        path,
        "/api/v1/query"
            | "/api/v1/query_range"
            | "/api/v1/query_exemplars"
            | "/api/v1/format_query"
            | "/api/v1/labels"
            | "/api/v1/series"
            | "/api/v1/metadata"
            | "/api/v1/status/buildinfo"
            | "/api/v1/rules"
            | "/api/v1/alerts"
    ) || api::label_values_name(path).is_some();
    if !known {
        // Prometheus' router answers unknown API paths in plain text, not in the API's JSON.
        return not_found();
    }
    if let Err(allow) = allows(path, req.method) {
        if *req.method != Method::OPTIONS {
            return method_not_allowed(allow);
        }
    }
    let mut resp = api_call(state, req).await;
    set_cors(state, req.headers, &mut resp);
    resp
}

/// Prometheus' `SetCORS`: the read API may be called from scripts on other origins (a
/// dashboard in a browser); `Vary: Origin` keeps caches honest.
fn set_cors(state: &AppState, req_headers: &HeaderMap, resp: &mut HttpResponse) {
    let h = resp.headers_mut();
    h.append(hyper::header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = req_headers.get(hyper::header::ORIGIN) else {
        return;
    };
    h.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
    );
    h.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        hyper::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Date"),
    );
    match &state.cors_origin {
        None => {
            h.insert(
                hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Some(re) => {
            if origin.to_str().is_ok_and(|o| re.is_match(o)) {
                h.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
        }
    }
}

async fn api_call(state: &AppState, req: &RouteRequest<'_>) -> HttpResponse {
    if *req.method == Method::OPTIONS {
        // CORS preflight: Prometheus answers every API path with 204.
        return api_response(Ok(ApiSuccess::empty()));
    }
    // Everything else parses, reads storage or evaluates: on a work thread, under a query slot,
    // within the query timeout (a `timeout` parameter may shorten it for the query endpoints).
    let params = req.params.clone();
    let timeout = match req.path {
        "/api/v1/query" | "/api/v1/query_range" => match api::timeout_param(state, &params) {
            Ok(t) => t,
            Err(e) => return e.into_response(),
        },
        _ => state.engine.opts.timeout,
    };
    if let Some(answer) = work::try_inline(state, req.path, &params) {
        return answer;
    }
    let st = state.clone();
    let path = req.path.to_string();
    work::run_limited(state, timeout, move |limits| {
        api::respond(&st, &path, &params, limits)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AppState {
        let clock = Arc::new(crate::clock::ManualClock::new(4000));
        let s = AppState::new(
            Arc::new(crate::tsdb::Db::in_memory()),
            crate::promql::Engine::default(),
            prometheus::Registry::new(),
            clock,
        );
        s.set_ready(true);
        s
    }

    async fn call(st: &AppState, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let r = handle(st, req).await;
        let status = r.status();
        let body = r
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn handlers_run_without_sockets() {
        let st = state();
        let get = Request::get("/api/v1/query?query=1%2B1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(
            call(&st, get).await,
            (
                StatusCode::OK,
                r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#.into()
            )
        );
        let post = Request::post("/api/v1/query")
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(Full::new(Bytes::from_static(b"query=3&time=1")))
            .unwrap();
        assert_eq!(
            call(&st, post).await,
            (
                StatusCode::OK,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#.into()
            )
        );
        let big = Request::post("/api/v1/query")
            .header(CONTENT_LENGTH, (MAX_BODY_BYTES + 1).to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(call(&st, big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn repeated_quick_queries_are_answered_inline_and_slow_ones_go_back_to_the_pool() {
        let st = state();
        let inline = |outcome: &str| st.metrics.inline.with_label_values(&[outcome]).get();
        let get = |q: &str| {
            Request::get(format!("/api/v1/query?query={q}&time=1"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        // Texts no other test sends: the parse cache is the process'.
        let quick = "vector(17)%2B0";
        let first = call(&st, get(quick)).await;
        assert_eq!(first.0, StatusCode::OK);
        assert_eq!((inline("answered"), inline("over_budget")), (0, 0));
        // Parsed before: the second is answered on the async worker, with the same answer.
        assert_eq!(call(&st, get(quick)).await, first);
        assert_eq!(inline("answered"), 1);
        // 600,000 subquery steps take far longer than the budget: stopped there, answered
        // by a work thread, and not tried inline again.
        let slow = "sum(count_over_time(vector(17)[10m:1ms]))";
        let want = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"600000"]}]}}"#;
        for _ in 0..3 {
            assert_eq!(call(&st, get(slow)).await, (StatusCode::OK, want.into()));
        }
        assert_eq!((inline("answered"), inline("over_budget")), (1, 1));
        // A range query has classes of its own; a quick text is quick there too.
        let range = |q: &str, end: u32| {
            Request::get(format!(
                "/api/v1/query_range?query={q}&start=0&end={end}&step=60"
            ))
            .body(Full::new(Bytes::new()))
            .unwrap()
        };
        let r = call(&st, range(quick, 3600)).await;
        assert_eq!(r.0, StatusCode::OK);
        assert_eq!(call(&st, range(quick, 3600)).await, r);
        assert_eq!(inline("answered"), 3);
        // A text slow at one span is tried again at another, and marked there too.
        assert_eq!(call(&st, range(slow, 60)).await.0, StatusCode::OK);
        assert_eq!(call(&st, range(slow, 60)).await.0, StatusCode::OK);
        assert_eq!(inline("over_budget"), 2);
    }

    #[test]
    fn annotations_are_capped_like_prometheus() {
        let many: Vec<String> = (0..13).map(|i| format!("w{i}")).collect();
        let capped = cap_annotations(many, "warning");
        assert_eq!(capped.len(), 11);
        assert_eq!(capped[9], "w9");
        assert_eq!(capped[10], "3 more warning annotations omitted");
        assert_eq!(
            cap_annotations(vec!["i".into()], "info"),
            vec!["i".to_string()]
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        let denied = |h: &HeaderMap, t| unauthorized(h, t).map(|r| r.status());
        assert_eq!(denied(&h, Some("s3cret")), Some(StatusCode::UNAUTHORIZED));
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(denied(&h, Some("s3cret")), None);
        assert!(denied(&h, Some("s3cres")).is_some());
        assert!(denied(&h, Some("")).is_some());
        // No token configured: closed.
        assert!(denied(&h, None).is_some());
        // The scheme in any case (RFC 7235).
        for v in ["bearer s3cret", "BEARER s3cret"] {
            h.insert(hyper::header::AUTHORIZATION, HeaderValue::from_static(v));
            assert_eq!(denied(&h, Some("s3cret")), None, "{v}");
        }
        // Beside basic auth: Authorization holds the password, the token its own header.
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"),
        );
        assert!(denied(&h, Some("s3cret")).is_some());
        h.insert(TOKEN_HEADER, HeaderValue::from_static("s3cret"));
        assert_eq!(denied(&h, Some("s3cret")), None);
        h.insert(TOKEN_HEADER, HeaderValue::from_static("wrong"));
        assert!(denied(&h, Some("s3cret")).is_some());
    }

    #[test]
    fn handlers_are_bounded_route_patterns() {
        assert_eq!(
            handler_label("/api/v1/label/job/values"),
            "/api/v1/label/:name/values"
        );
        assert_eq!(handler_label("/api/v1/whatever"), "/api/other");
        assert_eq!(handler_label("/favicon.ico"), "other");
    }

    #[test]
    fn error_types_map_to_prometheus_status_codes() {
        assert_eq!(ErrorType::BadData.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ErrorType::Execution.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(ErrorType::Timeout.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ErrorType::Internal.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(ErrorType::Canceled.status().as_u16(), 499);
        let e: ApiError = crate::promql::Error::Timeout("expression evaluation").into();
        assert_eq!(
            e,
            ApiError::new(
                ErrorType::Timeout,
                "query timed out in expression evaluation"
            )
        );
        let e: ApiError = crate::promql::Error::Parse("1:1: x".into()).into();
        assert_eq!(e.kind, ErrorType::BadData);
    }
}

//! The Prometheus query API (`web/api/v1/api.go`): parameter checks in Prometheus' order and
//! wording, evaluation through the PromQL engine, and storage lookups through
//! [`Queryable`]. Every endpoint is a synchronous function of the state
//! and the parameters; `mod.rs` runs them on blocking threads and turns results into responses.

use std::time::Duration;

use prometheus::proto::MetricType;
use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};

use super::params::{self, Params, MAX_TIME_MS, MIN_TIME_MS};
use super::{json, ApiError, AppState, ErrorType, HttpResponse};
use crate::labels::Labels;
use crate::promql::limits::{labels_bytes, parse_cost};
use crate::promql::{Limits, Value};
use crate::tsdb::Queryable;

/// Prometheus' cap on the points of one series in a range query.
pub const MAX_POINTS_PER_SERIES: i128 = 11_000;

const TRUNCATED: &str = "results truncated due to limit";

/// A successful answer: encoded `data` (none for 204) and annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiSuccess {
    pub data: Option<String>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl ApiSuccess {
    pub fn data(d: String) -> Self {
        ApiSuccess {
            data: Some(d),
            ..Default::default()
        }
    }
    pub fn empty() -> Self {
        ApiSuccess::default()
    }
    fn warn_if(mut self, cond: bool, w: &str) -> Self {
        if cond {
            self.warnings.push(w.to_string());
        }
        self
    }
}

pub type ApiResult = Result<ApiSuccess, ApiError>;

/// An instant or range query whose parameters passed the checks.
#[derive(Clone, Debug)]
pub struct PreparedQuery {
    pub expr: Expr,
    pub range: QueryRange,
    /// 0: no limit on the number of series returned.
    pub limit: usize,
    /// The `timeout` parameter capped by the engine's own `--query.timeout`.
    pub timeout: Duration,
    /// The `lookback_delta` parameter, if given.
    pub lookback_delta_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QueryRange {
    Instant { time: i64 },
    Range { start: i64, end: i64, step: i64 },
}

/// Every API endpoint by path, without limits: for tests and tools that call the API's cores
/// directly. The server calls [`respond`] instead.
pub fn dispatch_sync(state: &AppState, path: &str, p: &Params) -> ApiResult {
    dispatch(state, path, p, &mut Limits::default())
}

/// Answers an API endpoint within `limits`. Blocking (it parses, reads storage and evaluates):
/// the server runs it on a work thread under a query slot. The answer's bytes stay charged to
/// the memory budget until the response has been sent.
pub fn respond(state: &AppState, path: &str, p: &Params, mut limits: Limits) -> HttpResponse {
    let result = dispatch(state, path, p, &mut limits);
    super::api_response_charged(result, limits.memory)
}

/// Every API endpoint by path, within `limits`: what parsing a query or selector may take is
/// charged before it is parsed, and what is read and evaluated while it is. `/api/v1/rules`
/// and `/api/v1/alerts` answer empty until the rules module registers its own routes (extra
/// routes are tried first), since Grafana asks for them.
pub fn dispatch(state: &AppState, path: &str, p: &Params, limits: &mut Limits) -> ApiResult {
    match path {
        "/api/v1/series" => series(state, p, limits),
        "/api/v1/labels" => labels(state, p, limits),
        "/api/v1/metadata" => metadata(state, p),
        "/api/v1/status/buildinfo" => Ok(buildinfo(state)),
        "/api/v1/query_exemplars" => {
            charge_parse(limits, &[p.get("query")])?;
            query_exemplars(p)
        }
        "/api/v1/format_query" => format_query(p, limits),
        "/api/v1/rules" => Ok(ApiSuccess::data("{\"groups\":[]}".into())),
        "/api/v1/alerts" => Ok(ApiSuccess::data("{\"alerts\":[]}".into())),
        "/api/v1/query" => {
            prepare_instant(state, p, limits).and_then(|q| run_query(state, &q, limits))
        }
        "/api/v1/query_range" => {
            prepare_range(state, p, limits).and_then(|q| run_query(state, &q, limits))
        }
        _ => match label_values_name(path) {
            Some(name) => label_values(state, &name, p, limits),
            None => Err(ApiError::new(
                ErrorType::NotFound,
                format!("unknown API endpoint {path:?}"),
            )),
        },
    }
}

/// Charges what parsing `texts` may take ([`parse_cost`]) before they are parsed.
fn charge_parse(limits: &mut Limits, texts: &[&str]) -> Result<(), ApiError> {
    let cost = texts
        .iter()
        .fold(0usize, |acc, t| acc.saturating_add(parse_cost(t)));
    limits.memory.grow(cost)?;
    Ok(())
}

fn canceled() -> ApiError {
    ApiError::new(ErrorType::Canceled, "request canceled by the client")
}

/// The `timeout` parameter, capped by `--query.timeout`.
pub fn timeout_param(state: &AppState, p: &Params) -> Result<Duration, ApiError> {
    let cap = state.engine.opts.timeout;
    let to = p.get("timeout");
    if to.is_empty() {
        return Ok(cap);
    }
    let ns = params::parse_duration(to).map_err(|e| ApiError::invalid_param("timeout", e))?;
    Ok(Duration::from_nanos(ns.max(0) as u64).min(cap))
}

fn lookback_param(p: &Params) -> Result<Option<i64>, ApiError> {
    let s = p.get("lookback_delta");
    if s.is_empty() {
        return Ok(None);
    }
    let ns = params::parse_duration(s)
        .map_err(|e| ApiError::bad_data(format!("error parsing lookback delta duration: {e}")))?;
    // 0 means "the engine's default", as in Prometheus.
    Ok((ns > 0).then_some(ns / 1_000_000))
}

/// Parses `query` after charging what parsing it may take.
fn parse_query(p: &Params, limits: &mut Limits) -> Result<Expr, ApiError> {
    charge_parse(limits, &[p.get("query")])?;
    crate::promql::parse_cached(p.get("query")).map_err(|e| ApiError::invalid_param("query", e))
}

/// `/api/v1/query`: checks `limit`, `time` (default: now on the clock), `timeout`, `query`.
pub fn prepare_instant(
    state: &AppState,
    p: &Params,
    limits: &mut Limits,
) -> Result<PreparedQuery, ApiError> {
    let limit =
        params::parse_limit(p.get("limit")).map_err(|e| ApiError::invalid_param("limit", e))?;
    let time = params::parse_time_param(p, "time", state.clock.now_ms())
        .map_err(|e| ApiError::invalid_param("time", e))?;
    let timeout = timeout_param(state, p)?;
    let lookback_delta_ms = lookback_param(p)?;
    let expr = parse_query(p, limits)?;
    Ok(PreparedQuery {
        expr,
        range: QueryRange::Instant { time },
        limit,
        timeout,
        lookback_delta_ms,
    })
}

/// `/api/v1/query_range`: checks `limit`, `start`, `end`, `step` (positive, at most 11,000
/// points per series), `timeout`, `query`.
pub fn prepare_range(
    state: &AppState,
    p: &Params,
    limits: &mut Limits,
) -> Result<PreparedQuery, ApiError> {
    let limit =
        params::parse_limit(p.get("limit")).map_err(|e| ApiError::invalid_param("limit", e))?;
    let start =
        params::parse_time(p.get("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = params::parse_time(p.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            params::ParamError::EndBeforeStart,
        ));
    }
    let step_ns =
        params::parse_duration(p.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step_ns <= 0 {
        return Err(ApiError::invalid_param("step", params::ParamError::Step));
    }
    if (end as i128 - start as i128) * 1_000_000 / step_ns as i128 > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = timeout_param(state, p)?;
    let lookback_delta_ms = lookback_param(p)?;
    let expr = parse_query(p, limits)?;
    // Timestamps are milliseconds: a sub-millisecond step evaluates every millisecond.
    let step = (step_ns / 1_000_000).max(1);
    Ok(PreparedQuery {
        expr,
        range: QueryRange::Range { start, end, step },
        limit,
        timeout,
        lookback_delta_ms,
    })
}

/// Evaluates a prepared query within `limits` and encodes its result. Blocking: call it off
/// the executor.
pub fn run_query(state: &AppState, q: &PreparedQuery, limits: &mut Limits) -> ApiResult {
    let mut engine = state.engine.clone();
    engine.opts.timeout = q.timeout;
    if let Some(lb) = q.lookback_delta_ms {
        engine.opts.lookback_delta_ms = lb;
    }
    let db: &dyn Queryable = &*state.db;
    let res = match q.range {
        QueryRange::Instant { time } => engine.instant_query_limited(db, &q.expr, time, limits),
        QueryRange::Range { start, end, step } => {
            engine.range_query_limited(db, &q.expr, start, end, step, limits)
        }
    }?;
    let mut value = res.value;
    let mut truncated = false;
    if q.limit > 0 {
        match &mut value {
            Value::Vector(v) if v.len() > q.limit => {
                v.truncate(q.limit);
                truncated = true;
            }
            Value::Matrix(m) if m.len() > q.limit => {
                m.truncate(q.limit);
                truncated = true;
            }
            _ => {}
        }
    }
    let mut out = ApiSuccess::data(json::query_data(&value));
    out.warnings = res.annotations.warnings;
    out.infos = res.annotations.infos;
    Ok(out.warn_if(truncated, TRUNCATED))
}

/// `start` and `end` of the metadata endpoints, both optional.
fn optional_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = params::parse_time_param(p, "start", MIN_TIME_MS)
        .map_err(|e| ApiError::invalid_param("start", e))?;
    let end = params::parse_time_param(p, "end", MAX_TIME_MS)
        .map_err(|e| ApiError::invalid_param("end", e))?;
    Ok((start, end))
}

/// `/api/v1/series`: the label sets of the series matching any `match[]` (required). Each
/// distinct label set is charged as it is found, so many selectors over the same series hold
/// each set once.
pub fn series(state: &AppState, p: &Params, limits: &mut Limits) -> ApiResult {
    let matches = p.all("match[]");
    if matches.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit =
        params::parse_limit(p.get("limit")).map_err(|e| ApiError::invalid_param("limit", e))?;
    let (start, end) = optional_range(p)?;
    charge_parse(limits, &matches)?;
    let sets =
        params::parse_match_sets(&matches).map_err(|e| ApiError::invalid_param("match[]", e))?;
    let mut found = std::collections::BTreeSet::new();
    for set in &sets {
        if limits.is_canceled() {
            return Err(canceled());
        }
        for l in state.db.series(set, start, end) {
            if !found.contains(&l) {
                limits.memory.grow(labels_bytes(&l))?;
                found.insert(l);
            }
        }
    }
    let mut all: Vec<Labels> = found.into_iter().collect();
    let truncated = limit > 0 && all.len() > limit;
    if truncated {
        all.truncate(limit);
    }
    Ok(ApiSuccess::data(json::labels_array(&all)).warn_if(truncated, TRUNCATED))
}

/// `/api/v1/labels`: sorted label names of the matching (or all) series.
pub fn labels(state: &AppState, p: &Params, limits: &mut Limits) -> ApiResult {
    let limit =
        params::parse_limit(p.get("limit")).map_err(|e| ApiError::invalid_param("limit", e))?;
    let (start, end) = optional_range(p)?;
    let matches = p.all("match[]");
    charge_parse(limits, &matches)?;
    let sets = params::parse_match_sets(&matches).map_err(|e| ApiError::bad_data(e.to_string()))?;
    if limits.is_canceled() {
        return Err(canceled());
    }
    let mut names = state.db.label_names(&sets, start, end);
    limits.memory.grow(strings_bytes(&names))?;
    let truncated = limit > 0 && names.len() > limit;
    if truncated {
        names.truncate(limit);
    }
    Ok(ApiSuccess::data(json::string_array(&names)).warn_if(truncated, TRUNCATED))
}

/// The label name of a `/api/v1/label/<name>/values` path, percent-decoded and with
/// Prometheus' `U__` escaping of UTF-8 names undone.
pub fn label_values_name(path: &str) -> Option<String> {
    let raw = path
        .strip_prefix("/api/v1/label/")?
        .strip_suffix("/values")?;
    if raw.contains('/') {
        return None;
    }
    let decoded: String = percent_decode(raw);
    Some(match decoded.strip_prefix("U__") {
        Some(rest) => unescape_u(rest).unwrap_or(decoded),
        None => decoded,
    })
}

fn percent_decode(s: &str) -> String {
    // form_urlencoded would also turn '+' into ' ', which a path does not mean.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `model.UnescapeName` for the value-encoding escaping: `__` is `_`, `_<hex>_` a code point.
fn unescape_u(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

/// `/api/v1/label/<name>/values`: sorted values of one label.
pub fn label_values(state: &AppState, name: &str, p: &Params, limits: &mut Limits) -> ApiResult {
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit =
        params::parse_limit(p.get("limit")).map_err(|e| ApiError::invalid_param("limit", e))?;
    let (start, end) = optional_range(p)?;
    let matches = p.all("match[]");
    charge_parse(limits, &matches)?;
    let sets = params::parse_match_sets(&matches).map_err(|e| ApiError::bad_data(e.to_string()))?;
    if limits.is_canceled() {
        return Err(canceled());
    }
    let mut values = state.db.label_values(name, &sets, start, end);
    limits.memory.grow(strings_bytes(&values))?;
    values.sort();
    let truncated = limit > 0 && values.len() > limit;
    if truncated {
        values.truncate(limit);
    }
    Ok(ApiSuccess::data(json::string_array(&values)).warn_if(truncated, TRUNCATED))
}

/// Bytes of a list of strings, for the budget.
fn strings_bytes(v: &[String]) -> usize {
    v.iter().map(|s| 24 + s.len()).sum()
}

/// `/api/v1/metadata`: type and help of the families in the registry, by metric name
/// (`metric` filters, `limit` caps the number of metrics). Unit is always "".
pub fn metadata(state: &AppState, p: &Params) -> ApiResult {
    let number = |name: &str, msg: &str| -> Result<i64, ApiError> {
        match p.get(name) {
            "" => Ok(-1),
            s => s.parse::<i64>().map_err(|_| ApiError::bad_data(msg)),
        }
    };
    let limit = number("limit", "limit must be a number")?;
    number("limit_per_metric", "limit_per_metric must be a number")?;
    let metric = p.get("metric");
    let mut families = state.registry.gather();
    families.sort_by(|a, b| a.name().cmp(b.name()));
    // Go's limit is an int where -1 means none; fold that into an optional count.
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = String::from("{");
    for (n, fam) in families
        .iter()
        .filter(|f| metric.is_empty() || f.name() == metric)
        .take(max)
        .enumerate()
    {
        if n > 0 {
            out.push(',');
        }
        let typ = match fam.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        json::push_str(&mut out, fam.name());
        out.push_str(":[");
        out.push_str(&json::string_object(&[
            ("type", typ),
            ("help", fam.help()),
            ("unit", ""),
        ]));
        out.push(']');
    }
    out.push('}');
    Ok(ApiSuccess::data(out))
}

/// `/api/v1/status/buildinfo`.
pub fn buildinfo(state: &AppState) -> ApiSuccess {
    let b = &state.build;
    ApiSuccess::data(json::string_object(&[
        ("version", &b.version),
        ("revision", &b.revision),
        ("branch", &b.branch),
        ("buildUser", &b.build_user),
        ("buildDate", &b.build_date),
        ("goVersion", &b.go_version),
    ]))
}

/// `/api/v1/query_exemplars`: depin-orcha stores no exemplars, so a valid query gets `[]`
/// (204 when it has no selector, as in Prometheus).
pub fn query_exemplars(p: &Params) -> ApiResult {
    let (start, end) = optional_range(p)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let expr =
        crate::promql::parse(p.get("query")).map_err(|e| ApiError::bad_data(e.to_string()))?;
    if !has_selector(&expr) {
        return Ok(ApiSuccess::empty());
    }
    Ok(ApiSuccess::data("[]".into()))
}

fn has_selector(e: &Expr) -> bool {
    struct Find(bool);
    impl ExprVisitor for Find {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            if matches!(e, Expr::VectorSelector(_) | Expr::MatrixSelector(_)) {
                self.0 = true;
            }
            Ok(!self.0)
        }
    }
    let mut f = Find(false);
    let _ = walk_expr(&mut f, e);
    f.0
}

/// `/api/v1/format_query`: the expression pretty-printed, as a JSON string.
pub fn format_query(p: &Params, limits: &mut Limits) -> ApiResult {
    let expr = parse_query(p, limits)?;
    let mut out = String::new();
    json::push_str(&mut out, &expr.prettify());
    Ok(ApiSuccess::data(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn state(engine_timeout: Duration) -> AppState {
        let engine = crate::promql::Engine::new(crate::promql::EngineOptions {
            timeout: engine_timeout,
            ..Default::default()
        });
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        AppState::new(
            Arc::new(crate::tsdb::Db::in_memory()),
            engine,
            prometheus::Registry::new(),
            clock,
        )
    }

    #[test]
    fn the_timeout_parameter_is_capped_by_the_engine() {
        let st = state(Duration::from_secs(10));
        let q = |pairs: &[(&str, &str)]| {
            prepare_instant(
                &st,
                &Params::from_pairs(pairs.iter().copied()),
                &mut Limits::default(),
            )
            .unwrap()
        };
        assert_eq!(q(&[("query", "1")]).timeout, Duration::from_secs(10));
        assert_eq!(
            q(&[("query", "1"), ("timeout", "2.5")]).timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            q(&[("query", "1"), ("timeout", "1m")]).timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            q(&[("query", "1")]).range,
            QueryRange::Instant { time: 1_000_000 }
        );
        assert_eq!(
            q(&[("query", "1"), ("lookback_delta", "1m")]).lookback_delta_ms,
            Some(60_000)
        );
    }

    #[test]
    fn range_steps_and_the_point_limit() {
        let st = state(Duration::from_secs(10));
        let q = |s: &str, e: &str, step: &str| {
            prepare_range(
                &st,
                &Params::from_pairs([("query", "1"), ("start", s), ("end", e), ("step", step)]),
                &mut Limits::default(),
            )
        };
        assert_eq!(
            q("0", "60", "15s").unwrap().range,
            QueryRange::Range {
                start: 0,
                end: 60_000,
                step: 15_000
            }
        );
        // 10,000 steps of 0.1 ms are within the limit; timestamps being milliseconds, they
        // evaluate every millisecond. 20,000 are not.
        assert_eq!(
            q("0", "1", "0.0001").unwrap().range,
            QueryRange::Range {
                start: 0,
                end: 1000,
                step: 1
            }
        );
        assert_eq!(q("0", "2", "0.0001").unwrap_err().kind, ErrorType::BadData);
        assert_eq!(
            q("0", "11000", "1").unwrap().range,
            QueryRange::Range {
                start: 0,
                end: 11_000_000,
                step: 1000
            }
        );
        assert_eq!(q("0", "11001", "1").unwrap_err().kind, ErrorType::BadData);
    }

    #[test]
    fn label_value_paths() {
        assert_eq!(
            label_values_name("/api/v1/label/__name__/values").as_deref(),
            Some("__name__")
        );
        assert_eq!(
            label_values_name("/api/v1/label/job%5Fx/values").as_deref(),
            Some("job_x")
        );
        assert_eq!(
            label_values_name("/api/v1/label/U__my_2e_label/values").as_deref(),
            Some("my.label")
        );
        assert_eq!(
            label_values_name("/api/v1/label/U__a__b/values").as_deref(),
            Some("a_b")
        );
        assert_eq!(
            label_values_name("/api/v1/label//values").as_deref(),
            Some("")
        );
        assert_eq!(label_values_name("/api/v1/label/a/b/values"), None);
        assert_eq!(label_values_name("/api/v1/labels"), None);
    }

    #[test]
    fn selectors_found_anywhere_in_the_expression() {
        let p = |s| crate::promql::parse(s).unwrap();
        assert!(!has_selector(&p("1+1")));
        assert!(has_selector(&p("sum(rate(up[5m]))")));
        assert!(has_selector(&p("1 + abs(up)")));
    }
}

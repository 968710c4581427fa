//! The HTTP server's own metrics: requests and their durations by handler, queries answered
//! inline, and the bounded `handler` label the paths map to.

use super::api;

/// The server's own metrics, registered in the state's registry.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `depin_orcha_http_requests_total{handler,code}`.
    pub requests: prometheus::IntCounterVec,
    /// `depin_orcha_http_request_duration_seconds{handler}`.
    pub duration: prometheus::HistogramVec,
    /// `depin_orcha_http_inline_queries_total{outcome}`: queries tried on the async worker
    /// ([`super::work::try_inline`]), `answered` there or `over_budget` (handed to a work thread).
    pub inline: prometheus::IntCounterVec,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`. Registering twice in the same
    /// registry (two states sharing one) keeps the first registration and counts nothing twice.
    pub fn new(registry: &prometheus::Registry) -> HttpMetrics {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "depin_orcha_http_requests_total",
                "HTTP requests answered, by handler and status code.",
            ),
            &["handler", "code"],
        )
        .expect("static metric definition is valid");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "depin_orcha_http_request_duration_seconds",
                "Time from reading a request to having its response, by handler.",
            )
            .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0]),
            &["handler"],
        )
        .expect("static metric definition is valid");
        let inline = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "depin_orcha_http_inline_queries_total",
                "Queries evaluated on the server's own threads instead of a query work thread, by outcome (answered, or over_budget and handed on).",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        // An AlreadyReg error only means another state registered them first.
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        let _ = registry.register(Box::new(inline.clone()));
        HttpMetrics {
            requests,
            duration,
            inline,
        }
    }
}

/// The route a path belongs to, as a bounded label value (label names in paths would make the
/// `handler` label unbounded).
pub fn handler_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/metrics" => "/metrics",
        "/-/healthy" => "/-/healthy",
        "/-/ready" => "/-/ready",
        "/api/v1/query" => "/api/v1/query",
        "/api/v1/query_range" => "/api/v1/query_range",
        "/api/v1/query_exemplars" => "/api/v1/query_exemplars",
        "/api/v1/format_query" => "/api/v1/format_query",
        "/api/v1/series" => "/api/v1/series",
        "/api/v1/labels" => "/api/v1/labels",
        "/api/v1/metadata" => "/api/v1/metadata",
        "/api/v1/status/buildinfo" => "/api/v1/status/buildinfo",
        "/api/v1/rules" => "/api/v1/rules",
        "/api/v1/alerts" => "/api/v1/alerts",
        "/api/v1/export" => "/api/v1/export",
        "/api/v1/events" => "/api/v1/events",
        p if api::label_values_name(p).is_some() => "/api/v1/label/:name/values",
        p if p.starts_with("/api/") => "/api/other",
        _ => "other",
    }
}

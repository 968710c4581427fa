//! The control API, plugged into the server as [`ExtraRoutes`]:
//!
//! - `GET /api/v1/allocations`: each node's allocation, its health, and whether it is frozen
//!   and why. `allocation_source` says where the allocation comes from: `polled` (last read
//!   from the node, or verified there by a reallocation), else `history` (what the history's
//!   last applied reallocation, `allocation_reallocation_id`, left: after a restart, until the
//!   node is read), else `configured`.
//! - `GET /api/v1/plan`: the last evaluation (the loop's or a request's): the plan with its
//!   explanation, every gate's verdict, pre-flight, the steps and the decision.
//! - `GET /api/v1/reallocations[?limit=N]`: the history, newest first.
//! - `POST /api/v1/reallocations`: carry out the current plan (empty body or `{}`), or the
//!   allocations in the body (`{"allocations": {"golem": {"cpu_cores": 4}}}`, base units,
//!   resources not given keep theirs). The optimizer's plan passes every gate; a manual
//!   allocation passes the safety gates (rate limit, hold, step), since it has no expected
//!   gain to judge; `"force": true` skips the gates for either. Pre-flight always runs. The
//!   answer is `202 Accepted` with the reallocation's id at once; its outcome appears in
//!   `GET /api/v1/reallocations`. `409` while another reallocation runs or in dry-run mode.
//! - `POST /api/v1/controller/pause`, `/resume`: stop or restart the loop (kept across
//!   restarts). Requests through the API still work while paused.
//!
//! Every POST needs `Authorization: Bearer <token>` with the token from
//! `--web.auth-token-file` (compared in constant time): without it, 401 and nothing changes;
//! with no token file configured, POSTs answer 403 with how to configure one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{json_response, unauthorized, AppState, ExtraRoutes, HttpResponse, RouteRequest};
use crate::reallocation::controller::{ApplyRequest, Controller, ControllerError};
use crate::resources::{Allocation, Resources};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--web.auth-token-file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--web.auth-token-file {path}: the file is empty; put a secret token in it")]
    Empty { path: String },
}

/// Reads the bearer token: the file's content without surrounding whitespace.
pub fn load_token(path: &Path) -> Result<String, TokenError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
        path: shown.clone(),
        source,
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(TokenError::Empty { path: shown });
    }
    Ok(t.to_string())
}

/// The control API's routes.
pub struct ControlApi {
    pub controller: Arc<Controller>,
    /// None: no `--web.auth-token-file`; every POST is refused with 403.
    pub token: Option<String>,
}

const HOW_TO_CONFIGURE: &str = "changing allocations through the API is disabled: start depin-orcha with --web.auth-token-file=FILE, where FILE holds a secret token, and send it as \"Authorization: Bearer <token>\"";

fn success(data: serde_json::Value) -> HttpResponse {
    json_response(
        StatusCode::OK,
        json!({"status": "success", "data": data}).to_string(),
    )
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> HttpResponse {
    json_response(
        status,
        json!({"status": "error", "errorType": kind, "error": message.into()}).to_string(),
    )
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_data",
        format!("method not allowed; allowed: {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// A resource amount per node in the request body, in base units.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyAllocation {
    #[serde(default)]
    cpu_cores: Option<f64>,
    #[serde(default)]
    memory_bytes: Option<f64>,
    #[serde(default)]
    disk_bytes: Option<f64>,
    #[serde(default)]
    bandwidth_bytes_per_second: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    #[serde(default)]
    allocations: Option<BTreeMap<String, BodyAllocation>>,
    #[serde(default)]
    force: bool,
}

/// Parses the body of `POST /api/v1/reallocations` (empty = the current plan).
pub fn parse_apply(body: &[u8]) -> Result<ApplyRequest, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(ApplyRequest::default());
    }
    let b: ApplyBody = serde_json::from_slice(body).map_err(|e| format!("request body: {e}"))?;
    Ok(ApplyRequest {
        allocations: b.allocations.map(|m| {
            m.into_iter()
                .map(|(n, a)| {
                    (
                        n,
                        Resources {
                            cpu_cores: a.cpu_cores,
                            memory_bytes: a.memory_bytes,
                            disk_bytes: a.disk_bytes,
                            bandwidth_bytes_per_second: a.bandwidth_bytes_per_second,
                        },
                    )
                })
                .collect()
        }),
        force: b.force,
    })
}

#[derive(Serialize)]
struct NodeView {
    node: String,
    protocol: String,
    allocation: Option<Allocation>,
    /// `polled` (last read from the node, or verified there by a reallocation), `history` (the
    /// last applied reallocation) or `configured`.
    allocation_source: &'static str,
    /// The applied reallocation the allocation comes from, when its source is `history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    allocation_reallocation_id: Option<u64>,
    up: bool,
    last_success_ms: Option<i64>,
    frozen: Option<String>,
}

impl ControlApi {
    fn authorize(&self, req: &RouteRequest<'_>) -> Option<HttpResponse> {
        match &self.token {
            None => Some(error(StatusCode::FORBIDDEN, "forbidden", HOW_TO_CONFIGURE)),
            Some(t) => unauthorized(req.headers, Some(t)),
        }
    }

    fn allocations(&self) -> HttpResponse {
        let c = &self.controller;
        let known = c.known_allocations();
        let applied = c.applied_allocations();
        let health = c.health();
        let frozen = c.last_evaluation().map(|e| e.frozen).unwrap_or_default();
        let model = c.model();
        let views: Vec<NodeView> = model
            .nodes()
            .map(|n| {
                let h = health.iter().find(|h| h.name == n.name);
                let (allocation, allocation_source, allocation_reallocation_id) =
                    match (known.get(&n.name), applied.get(&n.name)) {
                        (Some(a), _) => (Some(*a), "polled", None),
                        (None, Some((a, id))) => (Some(*a), "history", Some(*id)),
                        (None, None) => (n.configured, "configured", None),
                    };
                NodeView {
                    node: n.name.clone(),
                    protocol: n.protocol.clone(),
                    allocation,
                    allocation_source,
                    allocation_reallocation_id,
                    up: h.is_some_and(|h| h.up),
                    last_success_ms: h.and_then(|h| h.last_success_ms),
                    frozen: frozen.get(&n.name).map(ToString::to_string),
                }
            })
            .collect();
        success(json!({ "nodes": views }))
    }

    fn plan(&self) -> HttpResponse {
        match self.controller.last_evaluation() {
            Some(e) => success(json!({
                "evaluation": e,
                "text": crate::reallocation::controller::PlanReport { evaluation: e.clone() }.to_string(),
                "paused": self.controller.is_paused(),
                "dry_run": self.controller.is_dry_run(),
            })),
            None => success(json!({
                "evaluation": null,
                "message": format!(
                    "no plan yet: the controller plans every {} (the first one interval after start)",
                    humantime::format_duration(self.controller.model().rules.interval)
                ),
                "paused": self.controller.is_paused(),
                "dry_run": self.controller.is_dry_run(),
            })),
        }
    }

    fn reallocations(&self, req: &RouteRequest<'_>) -> HttpResponse {
        let limit = match req.params.get("limit") {
            "" => 100,
            v => match v.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_data",
                        format!("invalid parameter \"limit\": {v:?} is not a whole number"),
                    )
                }
            },
        };
        let all = self.controller.history_summaries();
        let total = all.len();
        let shown: Vec<_> = all.into_iter().take(limit).collect();
        success(json!({ "total": total, "reallocations": shown }))
    }

    fn apply(&self, req: &RouteRequest<'_>) -> HttpResponse {
        let parsed = match parse_apply(req.body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
        };
        match self.controller.request(parsed) {
            Ok(id) => json_response(
                StatusCode::ACCEPTED,
                json!({"status": "success", "data": {
                    "id": id,
                    "state": "accepted",
                    "see": format!("/api/v1/reallocations (id {id})"),
                }})
                .to_string(),
            ),
            Err(e @ (ControllerError::Busy | ControllerError::DryRun)) => {
                error(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }

    fn pause(&self, paused: bool) -> HttpResponse {
        let r = if paused {
            self.controller.pause("through the control API")
        } else {
            self.controller.resume("through the control API")
        };
        match r {
            Ok(()) => success(json!({ "paused": paused })),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl ExtraRoutes for ControlApi {
    fn route(&self, _state: &AppState, req: &RouteRequest<'_>) -> Option<HttpResponse> {
        let get = *req.method == Method::GET || *req.method == Method::HEAD;
        let post = *req.method == Method::POST;
        let r = match req.path {
            "/api/v1/allocations" if get => self.allocations(),
            "/api/v1/plan" if get => self.plan(),
            "/api/v1/reallocations" if get => self.reallocations(req),
            "/api/v1/reallocations" if post => {
                if let Some(denied) = self.authorize(req) {
                    return Some(denied);
                }
                self.apply(req)
            }
            "/api/v1/controller/pause" | "/api/v1/controller/resume" if post => {
                if let Some(denied) = self.authorize(req) {
                    return Some(denied);
                }
                self.pause(req.path.ends_with("/pause"))
            }
            "/api/v1/allocations" | "/api/v1/plan" => method_not_allowed("GET, HEAD"),
            "/api/v1/reallocations" => method_not_allowed("GET, HEAD, POST"),
            "/api/v1/controller/pause" | "/api/v1/controller/resume" => method_not_allowed("POST"),
            _ => return None,
        };
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_apply(b"").unwrap(), ApplyRequest::default());
        assert_eq!(parse_apply(b" {} ").unwrap(), ApplyRequest::default());
        let r = parse_apply(br#"{"allocations":{"golem":{"cpu_cores":4}},"force":true}"#).unwrap();
        assert!(r.force);
        assert_eq!(r.allocations.unwrap()["golem"].cpu_cores, Some(4.0));
        let e = parse_apply(br#"{"allocations":{"golem":{"cpu":4}}}"#).unwrap_err();
        assert!(e.contains("unknown field `cpu`"), "{e}");
    }

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  s3cret\n").unwrap();
        assert_eq!(load_token(&p).unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(load_token(&p).unwrap_err().to_string().contains("is empty"));
        assert!(load_token(&dir.path().join("none")).is_err());
    }
}

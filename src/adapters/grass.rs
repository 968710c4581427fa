//! Node kind `grass`: a Grass node in a Docker container. Grass has no local API: health is
//! the container's state from the Docker Engine API over its unix socket
//! (`GET /containers/{name}/json` → `State.Running`; not running → reason `refused`, no such
//! container → `http_status` 404).
//!
//! Points, only when the operator opts in with `points:`: the account API that third-party
//! scripts use (`GET https://api.grass.io/retrieveUser`, header `authorization: <token>`,
//! `result.data.totalPoints`). It is **unofficial and undocumented**: it may change, break, or
//! be against Grass' terms. `points.url` is usually `https://api.grass.io/retrieveUser` (or a
//! tool that mirrors the answer). Points are reported as token `GRASS`; they have no market price (give
//! `GRASS: 0` in prices). Polled at most once per `points.interval` (default 15m); a failed
//! call leaves the node up and skips the value (`field="/result/data/totalPoints"`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::fields::number_or_string;
use super::{Adapter, ExtraGauge, Observation, PollError, PollFuture};
use crate::net::http::{check_status, fetch_json, parse_json, send_unix, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
pub const TOKEN: &str = "GRASS";
pub const TOKEN_ENV: &str = "GRASS_TOKEN";

#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    pub url: url::Url,
    pub token: Credential,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GrassSpec {
    pub docker_socket: PathBuf,
    pub container: String,
    pub points: Option<Points>,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrass {
    #[serde(default)]
    docker_socket: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    points: Option<RawPoints>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoints {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    interval: Option<Value>,
}

fn valid_container(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<GrassSpec> {
    let Some(block) = block else {
        d.error(
            node_path,
            "missing required key \"grass\" (the settings of a node of kind grass)",
        );
        return None;
    };
    let raw: RawGrass = d.deserialize(path, block)?;
    let container = match raw.container {
        Some(c) if valid_container(&c) => Some(c),
        Some(c) => {
            d.error(
                &join_key(path, "container"),
                format!("invalid container name or id \"{c}\""),
            );
            None
        }
        None => {
            d.error(path, "missing required key \"container\"");
            None
        }
    };
    let points = match &raw.points {
        None => Some(None),
        Some(p) => {
            let pp = join_key(path, "points");
            let url = conf::http_url(p.url.as_deref(), None, &join_key(&pp, "url"), d);
            let token = Credential::validate(
                p.token_file.as_deref(),
                p.token_env.as_deref(),
                Some(TOKEN_ENV),
                &pp,
                "token_file",
                node_name,
                true,
                d,
            );
            let interval = conf::duration_or(
                p.interval.as_ref(),
                Duration::from_secs(900),
                &join_key(&pp, "interval"),
                d,
            );
            match (url, token, interval) {
                (Some(url), Some(Some(token)), Some(interval)) => Some(Some(Points {
                    url,
                    token,
                    interval,
                })),
                _ => None,
            }
        }
    };
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(GrassSpec {
        docker_socket: PathBuf::from(raw.docker_socket.as_deref().unwrap_or(DEFAULT_SOCKET)),
        container: container?,
        points: points?,
        allocation: allocation?,
    })
}

pub struct GrassNode {
    name: String,
    spec: GrassSpec,
    points: Mutex<(Option<tokio::time::Instant>, Option<f64>)>,
}

impl GrassNode {
    pub fn new(name: &str, spec: GrassSpec) -> GrassNode {
        GrassNode {
            name: name.to_string(),
            spec,
            points: Mutex::new((None, None)),
        }
    }

    async fn container_state(&self) -> Result<Json, PollError> {
        let url = url::Url::parse("http://localhost/")
            .and_then(|u| u.join(&format!("containers/{}/json", self.spec.container)))
            .map_err(|e| PollError::Other(e.to_string()))?;
        let shown = format!("docker container {}", self.spec.container);
        let (status, body) = send_unix(&self.spec.docker_socket, &HttpRequest::get(url)).await?;
        check_status(status, &body, &shown)?;
        Ok(parse_json(&body, &shown)?)
    }

    async fn call_points(&self, p: &Points) -> Result<f64, PollError> {
        let token = p.token.read()?;
        let v =
            fetch_json(&HttpRequest::get(p.url.clone()).header("authorization", &token)).await?;
        v.pointer("/result/data/totalPoints")
            .and_then(number_or_string)
            .filter(|x| *x >= 0.0)
            .ok_or_else(|| PollError::Parse("/result/data/totalPoints".into()))
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let state = self.container_state().await?;
        let running = state.pointer("/State/Running").and_then(Json::as_bool);
        match running {
            Some(true) => {}
            Some(false) => {
                let st = state
                    .pointer("/State/Status")
                    .and_then(Json::as_str)
                    .unwrap_or("unknown");
                return Err(PollError::Refused(format!(
                    "container {} is not running (status {st})",
                    self.spec.container
                )));
            }
            None => {
                return Err(PollError::Parse(format!(
                    "container {}: no boolean State.Running",
                    self.spec.container
                )))
            }
        }
        let mut obs = Observation::default();
        if let Some(n) = state.get("RestartCount").and_then(Json::as_f64) {
            obs.gauges.push(ExtraGauge {
                name: "grass_container_restarts".into(),
                help: "Times Docker restarted the Grass container (RestartCount).".into(),
                labels: vec![],
                value: n,
            });
        }
        if let Some(p) = &self.spec.points {
            let due = {
                let st = self.points.lock().unwrap_or_else(|e| e.into_inner());
                st.0.is_none_or(|t| t.elapsed() >= p.interval)
            };
            if due {
                let got = self.call_points(p).await;
                let mut st = self.points.lock().unwrap_or_else(|e| e.into_inner());
                st.0 = Some(tokio::time::Instant::now());
                match got {
                    Ok(v) => st.1 = Some(v),
                    Err(e) => {
                        tracing::debug!(node = %self.name, error = %e, "Grass points call failed");
                        st.1 = None;
                    }
                }
            }
            match self.points.lock().unwrap_or_else(|e| e.into_inner()).1 {
                Some(v) => {
                    obs.earnings.insert(TOKEN.into(), v);
                }
                None => obs.skipped.push("/result/data/totalPoints".into()),
            }
        }
        Ok(obs)
    }
}

impl Adapter for GrassNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        "grass"
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(self.poll_once())
    }
}

impl super::kind::NodeSpec for GrassSpec {
    fn kind(&self) -> &'static str {
        "grass"
    }

    fn protocol(&self) -> &str {
        "grass"
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        self.points.iter().map(|_| TOKEN.to_string()).collect()
    }

    fn build(
        &self,
        name: &str,
        _clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(GrassNode::new(name, self.clone()))
    }
}

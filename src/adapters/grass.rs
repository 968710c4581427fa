//! Node kind `grass`: a Grass node in a Docker container. Grass has no local API: health is
//! the container's state from the Docker Engine API over its unix socket ([`super::docker`]:
//! only `State.Status == "running"` is up; paused, restarting, exited, created or a crash loop
//! is reason `refused`, no such container `http_status` 404).
//!
//! Points, only when the operator opts in with `points:`: the account API that third-party
//! scripts use (`GET https://api.grass.io/retrieveUser`, header `authorization: <token>`,
//! `result.data.totalPoints`). It is **unofficial and undocumented**: it may change, break, or
//! be against Grass' terms. `points.url` is usually `https://api.grass.io/retrieveUser` (or a
//! tool that mirrors the answer). Points are counted as token `grass_points`, which can never
//! have a price (`GRASS` is a traded token, and points are not it): the config refuses one.
//! A secondary endpoint (`points`, every `points.interval`, default 15m): a failed call leaves
//! the node up and the counter as it was. A drop of the total is a correction.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::decimal::Decimal;
use super::docker::{Container, ContainerSpec, CrashLoop};
use super::fields::decimal;
use super::reading::{FirstSight, OnDrop, Reading, StreamId, ALL_TIME};
use super::{Adapter, Endpoint, ExtraGauge, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_SOCKET: &str = super::docker::DEFAULT_SOCKET;
/// The token of Grass points: never priced.
pub const TOKEN: &str = "grass_points";
/// The endpoint of the points call.
pub const POINTS: &str = "points";
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
    pub crash_loop: CrashLoop,
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
    crash_loop: Option<Value>,
    #[serde(default)]
    points: Option<RawPoints>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrashLoop {
    #[serde(default)]
    restarts: Option<u32>,
    #[serde(default)]
    window: Option<Value>,
}

/// The `crash_loop:` block of a container-run node (grass, streamr's `health.docker`).
pub(crate) fn validate_crash_loop(
    raw: Option<&Value>,
    path: &str,
    d: &mut Diagnostics,
) -> Option<CrashLoop> {
    let Some(v) = raw else {
        return Some(CrashLoop::default());
    };
    let r: RawCrashLoop = d.deserialize(path, v.clone())?;
    let window = conf::duration_or(
        r.window.as_ref(),
        CrashLoop::default().window,
        &join_key(path, "window"),
        d,
    )?;
    Some(CrashLoop {
        restarts: r.restarts.unwrap_or(CrashLoop::default().restarts),
        window,
    })
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

use super::docker::valid_container;

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
    let crash_loop = validate_crash_loop(raw.crash_loop.as_ref(), &join_key(path, "crash_loop"), d);
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(GrassSpec {
        docker_socket: PathBuf::from(raw.docker_socket.as_deref().unwrap_or(DEFAULT_SOCKET)),
        container: container?,
        crash_loop: crash_loop?,
        points: points?,
        allocation: allocation?,
    })
}

pub struct GrassNode {
    name: String,
    spec: GrassSpec,
    container: Container,
    clock: SharedClock,
}

impl GrassNode {
    pub fn new(name: &str, spec: GrassSpec, clock: SharedClock) -> GrassNode {
        GrassNode {
            name: name.to_string(),
            container: Container::new(ContainerSpec {
                socket: spec.docker_socket.clone(),
                container: spec.container.clone(),
                crash_loop: spec.crash_loop.clone(),
            }),
            spec,
            clock,
        }
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let running = self.container.check(self.clock.now_ms()).await?;
        let mut obs = Observation::default();
        if let Some(n) = running.restart_count {
            obs.gauges.push(ExtraGauge {
                name: "grass_container_restarts".into(),
                help: "Times Docker restarted the Grass container (RestartCount).".into(),
                labels: vec![],
                value: n,
            });
        }
        Ok(obs)
    }

    async fn points(&self) -> Result<Observation, PollError> {
        let Some(p) = &self.spec.points else {
            return Err(PollError::Other("no points: configured".into()));
        };
        let token = p.token.read()?;
        let v =
            fetch_json(&HttpRequest::get(p.url.clone()).header("authorization", &token)).await?;
        let total: Decimal = v
            .pointer("/result/data/totalPoints")
            .and_then(decimal)
            .filter(|x| !x.is_negative())
            .ok_or_else(|| PollError::Parse("/result/data/totalPoints".into()))?;
        Ok(Observation {
            readings: vec![Reading::Cumulative {
                stream: StreamId::earnings("points", TOKEN, ""),
                period: ALL_TIME.into(),
                value: total,
                cause: None,
                first_sight: FirstSight::Credit,
                on_drop: OnDrop::Correction,
                confirm: Duration::from_secs(6 * 3600),
            }],
            ..Default::default()
        })
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

    fn endpoints(&self) -> Vec<Endpoint> {
        self.spec
            .points
            .iter()
            .map(|p| Endpoint {
                name: POINTS,
                interval: Some(p.interval),
                timeout: Duration::from_secs(30),
            })
            .collect()
    }

    fn fetch(&self, endpoint: &str) -> PollFuture<'_> {
        match endpoint {
            POINTS => Box::pin(self.points()),
            other => {
                let e = PollError::Other(format!("no endpoint {other}"));
                Box::pin(std::future::ready(Err(e)))
            }
        }
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
        // Points can have no price, so none is missing.
        Vec::new()
    }

    fn build(
        &self,
        name: &str,
        clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(GrassNode::new(name, self.clone(), clock))
    }
}

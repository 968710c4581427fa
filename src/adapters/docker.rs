//! A container's health from the Docker Engine API (`GET /containers/{name}/json` over the
//! daemon's unix socket), for the kinds whose node runs in a container (`grass`, and `streamr`
//! with `health.docker`).
//!
//! Docker's `State.Running` is true for paused and restarting containers too (moby: Running,
//! Paused and Restarting are not exclusive), so health comes from `State.Status`; an engine
//! too old to send it (API < 1.21) gets it derived with moby's own precedence. Only `running`
//! is up. A container that Docker restarts over and over shows `running` between crashes, so
//! restarts are watched too: `RestartCount` growing (or `StartedAt` moving) `restarts` times
//! within `window` is a crash loop, down until the window holds fewer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value as Json;

use super::PollError;
use crate::net::http::{check_status, parse_json, send_unix, HttpRequest};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// When restarts make a crash loop.
#[derive(Clone, Debug, PartialEq)]
pub struct CrashLoop {
    pub restarts: u32,
    pub window: Duration,
}

impl Default for CrashLoop {
    fn default() -> CrashLoop {
        CrashLoop {
            restarts: 2,
            window: Duration::from_secs(600),
        }
    }
}

/// Which container, and the rule.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    pub socket: PathBuf,
    pub container: String,
    pub crash_loop: CrashLoop,
}

pub fn valid_container(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The status of a `State` object: `Status`, or derived from the flags as moby does.
pub fn status(state: &Json) -> Option<String> {
    if let Some(s) = state.get("Status").and_then(Json::as_str) {
        return Some(s.to_string());
    }
    let flag = |k: &str| state.get(k).and_then(Json::as_bool);
    let running = flag("Running")?;
    let started = state.get("StartedAt").and_then(Json::as_str).unwrap_or("");
    Some(
        if running && flag("Paused") == Some(true) {
            "paused"
        } else if running && flag("Restarting") == Some(true) {
            "restarting"
        } else if running {
            "running"
        } else if flag("Dead") == Some(true) {
            "dead"
        } else if started.is_empty() || started.starts_with("0001-01-01") {
            "created"
        } else {
            "exited"
        }
        .to_string(),
    )
}

/// Restarts seen, to tell a crash loop.
#[derive(Default)]
pub struct Watch {
    last: Option<(f64, String)>,
    /// Clock times (ms) of the restarts seen, one entry per restart.
    restarts: VecDeque<i64>,
}

/// One container as a node's health.
pub struct Container {
    pub spec: ContainerSpec,
    watch: Mutex<Watch>,
}

/// What an inspection of a running container tells.
pub struct Running {
    pub restart_count: Option<f64>,
}

impl Container {
    pub fn new(spec: ContainerSpec) -> Container {
        Container {
            spec,
            watch: Mutex::new(Watch::default()),
        }
    }

    /// `GET /containers/{name}/json`.
    pub async fn inspect(socket: &Path, container: &str) -> Result<Json, PollError> {
        let url = url::Url::parse("http://localhost/")
            .and_then(|u| u.join(&format!("containers/{container}/json")))
            .map_err(|e| PollError::Other(e.to_string()))?;
        let shown = format!("docker container {container}");
        let (status, body) = send_unix(socket, &HttpRequest::get(url)).await?;
        check_status(status, &body, &shown)?;
        Ok(parse_json(&body, &shown)?)
    }

    /// Up (`Ok`) only if the container runs and is not crash-looping.
    pub async fn check(&self, now_ms: i64) -> Result<Running, PollError> {
        let v = Container::inspect(&self.spec.socket, &self.spec.container).await?;
        self.judge(&v, now_ms)
    }

    /// The rules on one inspect answer.
    pub fn judge(&self, v: &Json, now_ms: i64) -> Result<Running, PollError> {
        let c = &self.spec.container;
        let state = v
            .get("State")
            .filter(|s| s.is_object())
            .ok_or_else(|| PollError::Parse(format!("container {c}: no State object")))?;
        let Some(st) = status(state) else {
            return Err(PollError::Parse(format!(
                "container {c}: no State.Status and no boolean State.Running"
            )));
        };
        let restart_count = v.get("RestartCount").and_then(Json::as_f64);
        let started = state
            .get("StartedAt")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((count, at)), Some(now_count)) = (&w.last, restart_count) {
            let grown = (now_count - count).max(0.0) as usize;
            let n = if grown == 0 && *at != started && !started.is_empty() {
                1
            } else {
                grown
            };
            for _ in 0..n.min(1000) {
                w.restarts.push_back(now_ms);
            }
        }
        if let Some(count) = restart_count {
            w.last = Some((count, started));
        }
        let window = self.spec.crash_loop.window.as_millis() as i64;
        while w.restarts.front().is_some_and(|t| now_ms - t >= window) {
            w.restarts.pop_front();
        }
        if st != "running" {
            let oom = state.get("OOMKilled").and_then(Json::as_bool) == Some(true);
            let why = if oom && st == "exited" {
                "exited, killed for lack of memory (OOMKilled)".to_string()
            } else {
                st
            };
            return Err(PollError::Refused(format!("container {c} is {why}")));
        }
        let limit = self.spec.crash_loop.restarts as usize;
        if limit > 0 && w.restarts.len() >= limit {
            return Err(PollError::Refused(format!(
                "container {c} is crash-looping: {} restarts within {}",
                w.restarts.len(),
                humantime::format_duration(self.spec.crash_loop.window)
            )));
        }
        Ok(Running { restart_count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Json {
        let p = format!(
            "{}/tests/fixtures/nodes/docker/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn container() -> Container {
        Container::new(ContainerSpec {
            socket: PathBuf::from("/nonexistent"),
            container: "grass".into(),
            crash_loop: CrashLoop::default(),
        })
    }

    #[test]
    fn paused_restarting_created_and_oom_are_down() {
        for (f, want) in [
            ("inspect_paused.constructed.json", "is paused"),
            ("inspect_restarting.constructed.json", "is restarting"),
            ("inspect_created.constructed.json", "is created"),
            ("inspect_oomkilled-exited.constructed.json", "OOMKilled"),
        ] {
            let e = container().judge(&fixture(f), 0).err().expect(f);
            assert!(e.to_string().contains(want), "{f}: {e}");
            assert_eq!(e.reason(), "refused");
        }
    }

    #[test]
    fn an_old_engine_without_status_is_derived() {
        // Docker 1.8.1, recorded: no Status; Running and not paused is running.
        let v = fixture("inspect_docker-1.8.1_state.recorded-excerpt.json");
        assert_eq!(status(&v["State"]).as_deref(), Some("running"));
        assert!(container().judge(&v, 0).is_ok());
        let paused = serde_json::json!({"Running": true, "Paused": true});
        assert_eq!(status(&paused).as_deref(), Some("paused"));
    }

    #[test]
    fn restarts_within_the_window_are_a_crash_loop() {
        let c = container();
        let one = fixture("inspect_crashloop_1.constructed.json");
        let two = fixture("inspect_crashloop_2.constructed.json");
        assert!(c.judge(&one, 0).is_ok());
        // RestartCount 8 → 9 and a new StartedAt: one restart, not yet a loop.
        assert!(c.judge(&two, 15_000).is_ok());
        let mut three = two.clone();
        three["RestartCount"] = 10.into();
        let e = c.judge(&three, 30_000).err().expect("a crash loop");
        assert!(e.to_string().contains("crash-looping"), "{e}");
        // Ten quiet minutes later it is up again.
        assert!(c.judge(&three, 30_000 + 600_000).is_ok());
    }
}

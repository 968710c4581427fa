//! Node kind `exec`: runs a program (argv, no shell) at each poll and reads one JSON object
//! from its standard output. The program is killed when it outlives `timeout` (or the poll
//! timeout). Exit status other than 0 → reason `io`, output that is not the schema → `parse`,
//! more than 4 MiB of output → `too_large`.
//!
//! Output schema (every key optional):
//!
//! ```json
//! {"earnings": {"GLM": 12.5},                 // cumulative, token units (number or decimal string)
//!  "usage": {"cpu_cores": 2, "memory_bytes": 1e9, "disk_bytes": 5e10, "bandwidth_bytes_per_second": 1e5},
//!  "allocation": {"cpu_cores": 4},            // same keys as usage
//!  "gauges": [{"name": "x_peers", "help": "Peers.", "labels": {"region": "eu"}, "value": 7}],
//!  "degraded": "why, when the node says something is wrong"}
//! ```
//!
//! A value of the wrong type is skipped (counted), the rest of the answer holds.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;
use tokio::io::AsyncReadExt;

use super::conf;
use super::fields::number_or_string;
use super::{Adapter, ExtraGauge, Health, Observation, PollError, PollFuture};
use crate::net::http::DEFAULT_BODY_LIMIT;
use crate::resources::{Allocation, Resource};
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

#[derive(Clone, Debug, PartialEq)]
pub struct ExecSpec {
    pub protocol: String,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    d: &mut Diagnostics,
) -> Option<ExecSpec> {
    let Some(block) = block else {
        d.error(
            node_path,
            "missing required key \"exec\" (the settings of a node of kind exec)",
        );
        return None;
    };
    let raw: RawExec = d.deserialize(path, block)?;
    let command = match raw.command {
        Some(c) if !c.is_empty() && !c[0].is_empty() => Some(c),
        Some(_) => {
            d.error(&join_key(path, "command"), "must name a program");
            None
        }
        None => {
            d.error(path, "missing required key \"command\"");
            None
        }
    };
    let protocol = protocol_word(raw.protocol, "exec", path, d);
    let timeout = conf::duration_or(
        raw.timeout.as_ref(),
        Duration::from_secs(10),
        &join_key(path, "timeout"),
        d,
    );
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(ExecSpec {
        protocol: protocol?,
        command: command?,
        timeout: timeout?,
        allocation: allocation?,
    })
}

/// The `protocol:` of a generic kind: a label value of letters, digits and `_` (default: the
/// kind's word).
pub fn protocol_word(
    v: Option<String>,
    default: &str,
    path: &str,
    d: &mut Diagnostics,
) -> Option<String> {
    let p = v.unwrap_or_else(|| default.to_string());
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        d.error(
            &join_key(path, "protocol"),
            format!("invalid protocol \"{p}\": use letters, digits and _"),
        );
        return None;
    }
    Some(p)
}

/// Runs `argv` (no shell), waits at most `timeout`, and parses its standard output as JSON.
pub async fn run_json(argv: &[String], timeout: Duration) -> Result<Json, PollError> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(PollError::Other("empty command".into()));
    };
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PollError::Io(format!("{prog}: cannot start: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| PollError::Io(format!("{prog}: no stdout")))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| PollError::Io(format!("{prog}: no stderr")))?;
    let work = async {
        let mut out = Vec::new();
        let limit = DEFAULT_BODY_LIMIT as u64;
        (&mut stdout)
            .take(limit + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| PollError::Io(format!("{prog}: reading its output: {e}")))?;
        if out.len() as u64 > limit {
            return Err(PollError::TooLarge {
                limit: DEFAULT_BODY_LIMIT,
                detail: format!("output of {prog}"),
            });
        }
        let mut err = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut err).await;
        let status = child
            .wait()
            .await
            .map_err(|e| PollError::Io(format!("{prog}: {e}")))?;
        if !status.success() {
            let tail = String::from_utf8_lossy(&err).trim().to_string();
            return Err(PollError::Io(format!(
                "{prog} exited with {status}: {tail}"
            )));
        }
        serde_json::from_slice::<Json>(&out)
            .map_err(|e| PollError::Parse(format!("output of {prog}: {e}")))
    };
    // Dropping `child` on timeout kills it (kill_on_drop).
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(PollError::Timeout(timeout)))
}

/// Reads the documented schema into an observation.
pub fn read_output(v: &Json) -> Result<Observation, PollError> {
    let Json::Object(top) = v else {
        return Err(PollError::Parse("expected a JSON object".into()));
    };
    let mut obs = Observation::default();
    if let Some(e) = top.get("earnings") {
        match e {
            Json::Object(m) => {
                for (token, x) in m {
                    match number_or_string(x) {
                        Some(x) if x >= 0.0 => {
                            obs.earnings.insert(token.clone(), x);
                        }
                        _ => obs.skipped.push(format!("/earnings/{token}")),
                    }
                }
            }
            _ => obs.skipped.push("/earnings".into()),
        }
    }
    for (key, target) in [
        ("usage", &mut obs.usage),
        ("allocation", &mut obs.allocation),
    ] {
        let Some(m) = top.get(key) else { continue };
        let Json::Object(m) = m else {
            obs.skipped.push(format!("/{key}"));
            continue;
        };
        for r in Resource::ALL {
            if let Some(x) = m.get(r.key()) {
                match number_or_string(x) {
                    Some(x) if x >= 0.0 => target.set(r, Some(x)),
                    _ => obs.skipped.push(format!("/{key}/{}", r.key())),
                }
            }
        }
    }
    if let Some(g) = top.get("gauges") {
        let list = g.as_array().cloned().unwrap_or_default();
        if !g.is_array() {
            obs.skipped.push("/gauges".into());
        }
        for (i, g) in list.iter().enumerate() {
            let name = g.get("name").and_then(Json::as_str);
            let value = g.get("value").and_then(number_or_string);
            let labels: Option<Vec<(String, String)>> = match g.get("labels") {
                None => Some(vec![]),
                Some(Json::Object(m)) => m
                    .iter()
                    .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect(),
                Some(_) => None,
            };
            match (name, value, labels) {
                (Some(n), Some(v), Some(labels)) => obs.gauges.push(ExtraGauge {
                    name: n.to_string(),
                    help: g
                        .get("help")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string(),
                    labels,
                    value: v,
                }),
                _ => obs.skipped.push(format!("/gauges/{i}")),
            }
        }
    }
    match top.get("degraded") {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) if s.is_empty() => {}
        Some(Json::String(s)) => obs.health = Health::Degraded(s.clone()),
        Some(_) => obs.skipped.push("/degraded".into()),
    }
    Ok(obs)
}

pub struct ExecNode {
    name: String,
    spec: ExecSpec,
}

impl ExecNode {
    pub fn new(name: &str, spec: ExecSpec) -> ExecNode {
        ExecNode {
            name: name.to_string(),
            spec,
        }
    }
}

impl Adapter for ExecNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        &self.spec.protocol
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(async move {
            let v = run_json(&self.spec.command, self.spec.timeout).await?;
            read_output(&v)
        })
    }
}

impl super::kind::NodeSpec for ExecSpec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn protocol(&self) -> &str {
        &self.protocol
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        // What a program prints is only known when it runs.
        Vec::new()
    }

    fn build(
        &self,
        name: &str,
        _clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(ExecNode::new(name, self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn reads_the_schema_and_skips_wrong_types() {
        let v = run_json(
            &sh(r#"echo '{"earnings":{"GLM":"1.5","X":"nope"},"usage":{"cpu_cores":2},"gauges":[{"name":"a_b","value":3,"labels":{"k":"v"}}],"degraded":"low disk"}'"#),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let o = read_output(&v).unwrap();
        assert_eq!(o.earnings.get("GLM"), Some(&1.5));
        assert!(!o.earnings.contains_key("X"));
        assert_eq!(o.skipped, ["/earnings/X"]);
        assert_eq!(o.usage.cpu_cores, Some(2.0));
        assert_eq!(o.gauges[0].labels, [("k".to_string(), "v".to_string())]);
        assert_eq!(o.health, Health::Degraded("low disk".into()));
    }

    #[tokio::test]
    async fn failures_have_reasons() {
        let t = Duration::from_secs(5);
        let r = |e: PollError| e.reason();
        assert_eq!(r(run_json(&sh("exit 3"), t).await.unwrap_err()), "io");
        assert_eq!(r(run_json(&sh("echo '{'"), t).await.unwrap_err()), "parse");
        assert_eq!(
            r(run_json(&["/nonexistent/prog".to_string()], t)
                .await
                .unwrap_err()),
            "io"
        );
        let slow = run_json(&sh("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(r(slow.unwrap_err()), "timeout");
        let big = run_json(&sh("head -c 5000000 /dev/zero"), t).await;
        assert_eq!(r(big.unwrap_err()), "too_large");
    }
}

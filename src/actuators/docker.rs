//! Actuator kind `docker`: sets a container's CPU and memory limits through the Docker Engine
//! API (`POST /containers/{id}/update`) over its unix socket, with the bollard client. The
//! running container takes the new limits at once; nothing restarts.
//!
//! - CPUs: `NanoCpus` (cores × 10⁹), as `docker update --cpus` does. A container started with
//!   `--cpu-quota`/`--cpu-period` instead gets `CpuQuota` = cores × its `CpuPeriod` (default
//!   100 ms), because the Engine refuses `NanoCpus` next to a quota ("Conflicting options").
//! - Memory: `Memory` and `MemorySwap` both set to the new limit: the Engine refuses a
//!   `Memory` above the container's current `MemorySwap`, and an allocation means the memory
//!   the node may use, not memory plus as much swap again.
//! - A resource whose new amount is 0 is left as it is (0 is "unlimited" to Docker, never what
//!   a plan means); disk and bandwidth are not Docker limits and are ignored here.
//!
//! The API version is agreed with the Engine at the first call (`GET /version`), so old and
//! new Engines both answer.
//!
//! `verify` inspects the container (`HostConfig.NanoCpus` or `CpuQuota/CpuPeriod`, `Memory`)
//! and then polls the node's adapter for whichever of CPU and memory it reports itself. `undo`
//! is `apply` with the previous allocation. `check` connects to the socket (a missing socket,
//! permission denied and a refused connection each get their own words), pings the Engine
//! and inspects the container.
//!
//! ```yaml
//! actuator: {kind: docker, container: golem, socket: /var/run/docker.sock, timeout: 10s}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerUpdateBody;
use bollard::Docker;

use super::{verify_reported, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::{Allocation, Resource};

/// Where the Docker Engine listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The default time one Engine call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The CFS period the Engine uses when a container sets none (100 ms, in µs).
const DEFAULT_CPU_PERIOD_US: i64 = 100_000;

/// The resources this actuator sets.
const RESOURCES: [Resource; 2] = [Resource::CpuCores, Resource::MemoryBytes];

/// The validated parameters of a docker actuator.
#[derive(Clone, Debug, PartialEq)]
pub struct DockerSpec {
    /// Container name or id.
    pub container: String,
    /// The Engine's unix socket.
    pub socket: PathBuf,
    /// The longest one Engine call may take.
    pub timeout: Duration,
}

pub struct DockerActuator {
    spec: DockerSpec,
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
    /// The client, once its API version is agreed with the Engine.
    client: tokio::sync::Mutex<Option<Docker>>,
}

/// The limits a container has now, as the Engine reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Limits {
    nano_cpus: i64,
    cpu_quota: i64,
    cpu_period: i64,
    memory: i64,
}

impl Limits {
    /// CPU cores the limits allow; None when unlimited.
    fn cores(&self) -> Option<f64> {
        if self.nano_cpus > 0 {
            Some(self.nano_cpus as f64 / 1e9)
        } else if self.cpu_quota > 0 {
            let period = if self.cpu_period > 0 {
                self.cpu_period
            } else {
                DEFAULT_CPU_PERIOD_US
            };
            Some(self.cpu_quota as f64 / period as f64)
        } else {
            None
        }
    }
}

impl DockerActuator {
    pub fn new(spec: DockerSpec, adapter: Arc<dyn Adapter>, verify: VerifySpec) -> DockerActuator {
        DockerActuator {
            spec,
            adapter,
            verify,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The client for the socket (bollard connects per request). Its API version is agreed
    /// with the Engine once (`GET /version`): an Engine refuses a client version newer than
    /// its own ("client version too new"), and a newer Engine no longer serves very old ones,
    /// so no fixed version suits every host. (bollard 0.21 happens to send unversioned paths,
    /// which every Engine serves at its own version; the agreement keeps that true if it
    /// starts sending its version.)
    async fn client(&self, node: &str, action: &'static str) -> Result<Docker, ActuatorError> {
        let mut held = self.client.lock().await;
        if let Some(d) = held.as_ref() {
            return Ok(d.clone());
        }
        let path = self.spec.socket.to_string_lossy();
        let d = Docker::connect_with_unix(
            &path,
            self.spec.timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| {
            ActuatorError::failed(
                node,
                action,
                describe(&self.spec.socket, &self.spec.container, e),
            )
        })?;
        let d = self.call(node, action, d.negotiate_version()).await?;
        *held = Some(d.clone());
        Ok(d)
    }

    /// Runs one Engine call under the timeout; errors are described for the operator.
    async fn call<T>(
        &self,
        node: &str,
        action: &'static str,
        f: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, ActuatorError> {
        match tokio::time::timeout(self.spec.timeout, f).await {
            Err(_) => Err(ActuatorError::Timeout {
                node: node.to_string(),
                action,
                timeout: self.spec.timeout,
            }),
            Ok(Err(e)) => Err(ActuatorError::failed(
                node,
                action,
                describe(&self.spec.socket, &self.spec.container, e),
            )),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn limits(&self, node: &str, action: &'static str) -> Result<Limits, ActuatorError> {
        let docker = self.client(node, action).await?;
        let info = self
            .call(
                node,
                action,
                docker.inspect_container(&self.spec.container, None),
            )
            .await?;
        let hc = info.host_config.unwrap_or_default();
        Ok(Limits {
            nano_cpus: hc.nano_cpus.unwrap_or(0),
            cpu_quota: hc.cpu_quota.unwrap_or(0),
            cpu_period: hc.cpu_period.unwrap_or(0),
            memory: hc.memory.unwrap_or(0),
        })
    }

    async fn set(
        &self,
        node: &str,
        action: &'static str,
        to: &Allocation,
    ) -> Result<(), ActuatorError> {
        let now = self.limits(node, action).await?;
        let body = update_body(&now, to).map_err(|e| ActuatorError::failed(node, action, e))?;
        let docker = self.client(node, action).await?;
        self.call(
            node,
            action,
            docker.update_container(&self.spec.container, body),
        )
        .await
    }
}

/// The update for `to`, given the container's current limits.
fn update_body(now: &Limits, to: &Allocation) -> Result<ContainerUpdateBody, String> {
    let mut body = ContainerUpdateBody::default();
    for r in RESOURCES {
        let v = to.get(r);
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{} must be a finite amount >= 0, got {v}", r.key()));
        }
    }
    if to.cpu_cores > 0.0 {
        if now.cpu_quota > 0 && now.nano_cpus == 0 {
            let period = if now.cpu_period > 0 {
                now.cpu_period
            } else {
                DEFAULT_CPU_PERIOD_US
            };
            body.cpu_period = Some(period);
            body.cpu_quota = Some((to.cpu_cores * period as f64).round() as i64);
        } else {
            body.nano_cpus = Some((to.cpu_cores * 1e9).round() as i64);
        }
    }
    if to.memory_bytes > 0.0 {
        let m = to.memory_bytes.round() as i64;
        body.memory = Some(m);
        body.memory_swap = Some(m);
    }
    Ok(body)
}

/// An Engine error in an operator's words, naming the socket and the container.
fn describe(socket: &Path, container: &str, e: bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    let s = socket.display();
    match e {
        E::SocketNotFoundError(_) => {
            format!(
                "Docker socket {s} does not exist (is the Engine running, is the socket mounted?)"
            )
        }
        E::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.starts_with("No such container") => {
            format!("no such container {container:?} on {s}: {message}")
        }
        E::DockerResponseServerError {
            status_code,
            message,
        } => format!("Docker Engine at {s} answered {status_code}: {message}"),
        E::RequestTimeoutError => format!("Docker Engine at {s} did not answer in time"),
        other => format!("Docker Engine at {s}: {}", error_chain(&other)),
    }
}

/// An error and its sources, so "connection refused" deep in hyper reaches the message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// Connects to the socket once to name the cause of a failure in plain words.
async fn probe_socket(socket: &Path) -> Result<(), String> {
    let s = socket.display();
    match tokio::net::UnixStream::connect(socket).await {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "Docker socket {s} does not exist (is the Engine running, is the socket mounted?)"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied on Docker socket {s} (run depin-orcha as a user in the socket's group, usually docker)"
            ),
            std::io::ErrorKind::ConnectionRefused => {
                format!("Docker socket {s} refused the connection (no Engine is listening)")
            }
            _ => format!("cannot connect to Docker socket {s}: {e}"),
        }),
    }
}

impl Actuator for DockerActuator {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        Box::pin(async move {
            let unreachable = |detail: String| ActuatorError::unreachable(node, "docker", detail);
            tokio::time::timeout(self.spec.timeout, probe_socket(&self.spec.socket))
                .await
                .map_err(|_| {
                    unreachable(format!(
                        "Docker socket {} did not accept a connection within {:?}",
                        self.spec.socket.display(),
                        self.spec.timeout
                    ))
                })?
                .map_err(unreachable)?;
            let strip = |e: ActuatorError| match e {
                ActuatorError::Failed { detail, .. } => unreachable(detail),
                other => unreachable(other.to_string()),
            };
            let docker = self.client(node, "check").await.map_err(strip)?;
            self.call(node, "check", docker.ping())
                .await
                .map_err(strip)?;
            self.limits(node, "check").await.map_err(strip)?;
            Ok(())
        })
    }

    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "apply", to))
    }

    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        Box::pin(async move {
            let now = self.limits(node, "verify").await?;
            let mut wrong = Vec::new();
            if expected.cpu_cores > 0.0 {
                match now.cores() {
                    Some(c) if super::matches(c, expected.cpu_cores, self.verify.tolerance) => {}
                    c => wrong.push(format!(
                        "container {} has {} CPUs (expected {})",
                        self.spec.container,
                        c.map(crate::schema::units::trim_float)
                            .unwrap_or_else(|| "unlimited".into()),
                        crate::schema::units::trim_float(expected.cpu_cores)
                    )),
                }
            }
            if expected.memory_bytes > 0.0
                && !super::matches(
                    now.memory as f64,
                    expected.memory_bytes,
                    self.verify.tolerance,
                )
            {
                wrong.push(format!(
                    "container {} has memory limit {} (expected {})",
                    self.spec.container,
                    if now.memory > 0 {
                        super::show(Resource::MemoryBytes, now.memory as f64)
                    } else {
                        "unlimited".into()
                    },
                    super::show(Resource::MemoryBytes, expected.memory_bytes)
                ));
            }
            if !wrong.is_empty() {
                return Err(ActuatorError::Verify {
                    node: node.to_string(),
                    attempts: 1,
                    detail: wrong.join(", "),
                });
            }
            let changed: Vec<Resource> = RESOURCES
                .into_iter()
                .filter(|r| expected.get(*r) > 0.0)
                .collect();
            verify_reported(
                self.adapter.as_ref(),
                node,
                expected,
                &self.verify,
                &changed,
            )
            .await
        })
    }

    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "undo", previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = 1073741824.0;

    fn alloc(cpu: f64, mem_gib: f64) -> Allocation {
        Allocation {
            cpu_cores: cpu,
            memory_bytes: mem_gib * GIB,
            ..Allocation::default()
        }
    }

    #[test]
    fn nano_cpus_unless_the_container_uses_a_quota() {
        let b = update_body(&Limits::default(), &alloc(2.5, 4.0)).unwrap();
        assert_eq!(b.nano_cpus, Some(2_500_000_000));
        assert_eq!(b.cpu_quota, None);
        assert_eq!(b.memory, Some(4 * 1073741824));
        // MemorySwap must be >= Memory or the Engine refuses the update.
        assert_eq!(b.memory_swap, b.memory);
        let quota = Limits {
            cpu_quota: 50_000,
            cpu_period: 50_000,
            ..Limits::default()
        };
        let b = update_body(&quota, &alloc(1.5, 0.0)).unwrap();
        assert_eq!(
            (b.nano_cpus, b.cpu_quota, b.cpu_period),
            (None, Some(75_000), Some(50_000))
        );
        // 0 is "unlimited" to Docker: a zero amount is never sent.
        assert_eq!((b.memory, b.memory_swap), (None, None));
        assert!(update_body(&Limits::default(), &alloc(f64::NAN, 1.0)).is_err());
    }

    #[test]
    fn cores_from_either_form() {
        assert_eq!(
            Limits {
                nano_cpus: 1_500_000_000,
                ..Default::default()
            }
            .cores(),
            Some(1.5)
        );
        assert_eq!(
            Limits {
                cpu_quota: 200_000,
                ..Default::default()
            }
            .cores(),
            Some(2.0)
        );
        assert_eq!(Limits::default().cores(), None);
    }
}

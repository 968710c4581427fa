//! Actuators: how one node's allocation is applied, verified and undone. An actuator is built
//! for one node (it holds that node's adapter to verify by polling) and is driven by the
//! reallocation engine, which owns the order of steps, the journal and the rollback; an
//! actuator never decides anything and never touches another node.
//!
//! Each kind is one file with its validated spec, its runtime struct and its tests: `sim`
//! (through the sim adapter's [`Allocatable`](crate::adapters::Allocatable)), `exec` (an argv
//! template, no shell), `docker` (the Docker Engine API over its unix socket: CPUs and memory
//! of a container), `golem_profile` (`ya-provider profile update`), `storj_config` (the
//! allocated disk space in config.yaml, then a restart: disruptive) and `systemd`
//! (`systemctl set-property`). Command-driven kinds share [`process`]'s runner. The
//! optimization rules' `actuator:` (parsed in `optimizer::rules`) becomes a kind here through
//! [`ActuatorKind::from_rule`], which fills in the defaults.
//!
//! Verification is shared: [`verify_by_polling`] polls the node's adapter until the allocation
//! it reports matches what was applied (within a relative tolerance, since nodes round: Golem
//! keeps GiB with one decimal), or gives up after a number of attempts; [`verify_reported`]
//! does the same for only the resources a kind changed, and passes when the node reports none
//! of them (the kind has then read its own setting back already).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::Adapter;

use crate::resources::{Allocation, Resource, Resources};
use crate::schema::units;

pub mod docker;
pub mod exec;
pub mod golem_profile;
pub mod process;
pub mod rule;
pub mod sim;
pub mod storj_config;
pub mod systemd;

/// Why an actuator could not do what it was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuatorError {
    /// `check()` found the actuator unusable (program missing, node not allocatable…).
    #[error("node {node}: actuator {kind} is not reachable: {detail}")]
    Unreachable {
        node: String,
        kind: &'static str,
        detail: String,
    },
    /// Applying (or undoing) failed; the detail carries the command's output where there is one.
    #[error("node {node}: {action} failed: {detail}")]
    Failed {
        node: String,
        action: &'static str,
        detail: String,
    },
    /// The command or call did not finish in time.
    #[error("node {node}: {action} did not finish within {timeout:?}")]
    Timeout {
        node: String,
        action: &'static str,
        timeout: Duration,
    },
    /// The node does not report the allocation that was applied.
    #[error("node {node}: verification failed after {attempts} polls: {detail}")]
    Verify {
        node: String,
        attempts: u32,
        detail: String,
    },
}

impl ActuatorError {
    /// [`ActuatorError::Failed`] for `node`'s `action`.
    pub fn failed(node: &str, action: &'static str, detail: impl Into<String>) -> ActuatorError {
        ActuatorError::Failed {
            node: node.to_string(),
            action,
            detail: detail.into(),
        }
    }

    /// [`ActuatorError::Unreachable`]: `node`'s actuator of `kind` cannot act now.
    pub fn unreachable(node: &str, kind: &'static str, detail: impl Into<String>) -> ActuatorError {
        ActuatorError::Unreachable {
            node: node.to_string(),
            kind,
            detail: detail.into(),
        }
    }
}

pub type ActFuture<'a, T = ()> =
    Pin<Box<dyn Future<Output = Result<T, ActuatorError>> + Send + 'a>>;

/// Applies, verifies and undoes one node's allocation. Object safe: the engine holds
/// `Arc<dyn Actuator>` per node.
pub trait Actuator: Send + Sync {
    /// The kind's word in the config (`sim`, `exec`).
    fn kind(&self) -> &'static str;
    /// Whether the actuator can act now (pre-flight): the program exists, the node is
    /// allocatable… Never changes anything.
    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a>;
    /// Puts `to` in force. On error the engine undoes this step too, so an actuator that
    /// may have half-applied need not clean up itself.
    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a>;
    /// Polls the node until it reports `expected`.
    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a>;
    /// Puts `previous` back in force (after a failed step, or a move that made things worse).
    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a>;
}

/// How verification polls: `attempts` polls `interval` apart, each cut at `poll_timeout`; a
/// reported value within `tolerance` (relative, at least an absolute 1e-6) of the applied one
/// matches.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifySpec {
    pub attempts: u32,
    pub interval: Duration,
    pub poll_timeout: Duration,
    pub tolerance: f64,
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec {
            attempts: 5,
            interval: Duration::from_secs(2),
            poll_timeout: Duration::from_secs(4),
            tolerance: 0.01,
        }
    }
}

/// The validated `actuator:` block of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct ActuatorSpec {
    pub kind: ActuatorKind,
    pub verify: VerifySpec,
}

/// The actuator kinds. A new kind: one file here, one arm in this enum, in
/// [`ActuatorKind::from_rule`] and in [`build`].
#[derive(Clone, Debug, PartialEq)]
pub enum ActuatorKind {
    Sim,
    Exec(exec::ExecSpec),
    Docker(docker::DockerSpec),
    GolemProfile(golem_profile::GolemProfileSpec),
    StorjConfig(storj_config::StorjConfigSpec),
    Systemd(systemd::SystemdSpec),
}

impl ActuatorKind {
    /// The kind of `node` from its optimization rule, with the defaults filled in. The error
    /// says what is missing or wrong (the parser has checked each key already); the caller
    /// names the rule's path and leaves the node unmoved, while the others run.
    pub fn from_rule(rule: &rule::ActuatorRule, node: &str) -> Result<ActuatorKind, String> {
        use rule::RuleKind as K;
        let p = &rule.params;
        let name = rule.kind.name();
        Ok(match rule.kind {
            K::Sim => ActuatorKind::Sim,
            K::Exec => {
                let c = rule.command.as_deref().ok_or("kind exec needs a command")?;
                let mut e = exec::ExecSpec::from_command(c)?;
                let template = |key: &str, v: &Option<Vec<String>>| {
                    v.as_deref()
                        .map(exec::ArgvTemplate::parse)
                        .transpose()
                        .map_err(|(i, e)| format!("actuator.{key}[{i}]: {e}"))
                };
                e.undo = template("undo", &p.undo)?;
                e.check = template("check", &p.check)?;
                if let Some(t) = p.timeout {
                    e.timeout = t;
                }
                ActuatorKind::Exec(e)
            }
            K::Docker => ActuatorKind::Docker(docker::DockerSpec {
                container: p.container.clone().unwrap_or_else(|| node.to_string()),
                socket: p
                    .socket
                    .as_deref()
                    .unwrap_or(docker::DEFAULT_SOCKET)
                    .trim_start_matches("unix://")
                    .into(),
                timeout: p.timeout.unwrap_or(docker::DEFAULT_TIMEOUT),
            }),
            K::GolemProfile => ActuatorKind::GolemProfile(golem_profile::GolemProfileSpec {
                program: p
                    .program
                    .clone()
                    .unwrap_or_else(|| vec![golem_profile::DEFAULT_PROGRAM.into()]),
                profile: p
                    .profile
                    .clone()
                    .unwrap_or_else(|| golem_profile::DEFAULT_PROFILE.into()),
                data_dir: p.data_dir.as_ref().map(Into::into),
                timeout: p.timeout.unwrap_or(golem_profile::DEFAULT_TIMEOUT),
            }),
            K::StorjConfig => {
                let missing = |key: &str, what: &str| {
                    format!("{name} needs {key} ({what}); there is no default")
                };
                ActuatorKind::StorjConfig(storj_config::StorjConfigSpec {
                    config_file: p
                        .config_file
                        .as_ref()
                        .ok_or_else(|| missing("config_file", "the node's config.yaml"))?
                        .into(),
                    restart: p.restart.clone().ok_or_else(|| {
                        missing(
                            "restart",
                            "the argv that restarts the node, e.g. [docker, restart, storagenode]",
                        )
                    })?,
                    timeout: p.timeout.unwrap_or(storj_config::DEFAULT_TIMEOUT),
                })
            }
            K::Systemd => ActuatorKind::Systemd(systemd::SystemdSpec {
                unit: p.unit.clone().unwrap_or_else(|| node.to_string()),
                program: p
                    .program
                    .clone()
                    .unwrap_or_else(|| vec![systemd::DEFAULT_PROGRAM.into()]),
                runtime: p.runtime.unwrap_or(false),
                timeout: p.timeout.unwrap_or(systemd::DEFAULT_TIMEOUT),
            }),
        })
    }

    /// Whether applying restarts the node (its switching cost must cover the downtime).
    pub fn disruptive(&self) -> bool {
        matches!(self, ActuatorKind::StorjConfig(_))
    }
}

/// Builds the runtime actuator of a node from its spec and its adapter. A kind that talks to
/// something outside (all but `sim`) is asked [`Actuator::check`] once in the background
/// when a tokio runtime is running: an unreachable Docker socket, a missing program or a
/// unit that is not loaded is logged at start, naming the node, without holding the start up
/// or keeping the other nodes from running. Pre-flight asks again before every move.
pub fn build(
    spec: &ActuatorSpec,
    adapter: Arc<dyn Adapter>,
) -> Result<Arc<dyn Actuator>, ActuatorError> {
    let node = adapter.name().to_string();
    let a = build_kind(spec, adapter)?;
    if !matches!(spec.kind, ActuatorKind::Sim) {
        check_at_start(a.clone(), node);
    }
    Ok(a)
}

/// Logs the outcome of `a.check()` for `node`, in a task of the current runtime (none: no
/// check, as in synchronous tools).
fn check_at_start(a: Arc<dyn Actuator>, node: String) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        match a.check(&node).await {
            Ok(()) => tracing::info!(node = %node, kind = a.kind(), "actuator is reachable"),
            Err(e) => tracing::warn!(
                node = %node,
                kind = a.kind(),
                error = %e,
                "actuator is not usable now; this node is not moved until pre-flight passes"
            ),
        }
    });
}

fn build_kind(
    spec: &ActuatorSpec,
    adapter: Arc<dyn Adapter>,
) -> Result<Arc<dyn Actuator>, ActuatorError> {
    Ok(match &spec.kind {
        ActuatorKind::Sim => Arc::new(sim::SimActuator::new(adapter, spec.verify.clone())?),
        ActuatorKind::Exec(e) => Arc::new(exec::ExecActuator::new(
            e.clone(),
            adapter,
            spec.verify.clone(),
        )),
        ActuatorKind::Docker(d) => Arc::new(docker::DockerActuator::new(
            d.clone(),
            adapter,
            spec.verify.clone(),
        )),
        ActuatorKind::GolemProfile(g) => Arc::new(golem_profile::GolemProfileActuator::new(
            g.clone(),
            adapter,
            spec.verify.clone(),
        )),
        ActuatorKind::StorjConfig(c) => {
            // The file must be there with its key now: a wrong path is a config error to
            // report at start, not at the first move hours later.
            storj_config::read_allocation(&c.config_file).map_err(|e| {
                ActuatorError::Unreachable {
                    node: adapter.name().to_string(),
                    kind: "storj_config",
                    detail: e.to_string(),
                }
            })?;
            Arc::new(storj_config::StorjConfigActuator::new(
                c.clone(),
                adapter,
                spec.verify.clone(),
            ))
        }
        ActuatorKind::Systemd(u) => Arc::new(systemd::SystemdActuator::new(
            u.clone(),
            adapter,
            spec.verify.clone(),
        )),
    })
}

/// Whether `reported` matches `expected` within the relative `tolerance`.
pub fn matches(reported: f64, expected: f64, tolerance: f64) -> bool {
    (reported - expected).abs() <= (tolerance * expected.abs()).max(1e-6)
}

/// The resources a node reports that differ from `expected`, as a message; `Ok` when every
/// reported resource matches. A node that reports none of them cannot be verified: an error,
/// because an unverifiable step is not a safe step.
pub fn compare(
    reported: &Resources<Option<f64>>,
    expected: &Allocation,
    tolerance: f64,
) -> Result<(), String> {
    let mut seen = 0;
    let mut wrong = Vec::new();
    for r in Resource::ALL {
        if let Some(v) = reported.get(r) {
            seen += 1;
            if !matches(v, expected.get(r), tolerance) {
                wrong.push(format!(
                    "{} is {} (expected {})",
                    r.key(),
                    show(r, v),
                    show(r, expected.get(r))
                ));
            }
        }
    }
    if seen == 0 {
        return Err("the node reports no allocation, so it cannot be verified".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    }
}

/// A resource value for messages: cores as a number, the rest in byte units.
pub fn show(r: Resource, v: f64) -> String {
    match r {
        Resource::CpuCores => units::trim_float(v),
        Resource::BandwidthBytesPerSecond => format!("{}/s", units::fmt_bytes(v)),
        _ => units::fmt_bytes(v),
    }
}

/// Polls `adapter` until the allocation it reports matches `expected` (see [`VerifySpec`]).
pub async fn verify_by_polling(
    adapter: &dyn Adapter,
    node: &str,
    expected: &Allocation,
    spec: &VerifySpec,
) -> Result<(), ActuatorError> {
    let attempts = spec.attempts.max(1);
    let mut last = String::new();
    for i in 0..attempts {
        if i > 0 {
            tokio::time::sleep(spec.interval).await;
        }
        match tokio::time::timeout(spec.poll_timeout, adapter.poll()).await {
            Err(_) => last = format!("poll timed out after {:?}", spec.poll_timeout),
            Ok(Err(e)) => last = format!("poll failed: {e}"),
            Ok(Ok(obs)) => match compare(&obs.allocation, expected, spec.tolerance) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
        }
    }
    Err(ActuatorError::Verify {
        node: node.to_string(),
        attempts,
        detail: last,
    })
}

/// Like [`verify_by_polling`], for only the resources in `changed`: passes at once when the
/// node reports none of them (the actuator has read its own setting back already), and
/// otherwise polls until those it reports match.
pub async fn verify_reported(
    adapter: &dyn Adapter,
    node: &str,
    expected: &Allocation,
    spec: &VerifySpec,
    changed: &[Resource],
) -> Result<(), ActuatorError> {
    let attempts = spec.attempts.max(1);
    let mut last = String::new();
    for i in 0..attempts {
        if i > 0 {
            tokio::time::sleep(spec.interval).await;
        }
        match tokio::time::timeout(spec.poll_timeout, adapter.poll()).await {
            Err(_) => last = format!("poll timed out after {:?}", spec.poll_timeout),
            Ok(Err(e)) => last = format!("poll failed: {e}"),
            Ok(Ok(obs)) => {
                let mut masked = Resources::<Option<f64>>::default();
                for r in changed {
                    masked.set(*r, obs.allocation.get(*r));
                }
                if Resource::ALL.iter().all(|r| masked.get(*r).is_none()) {
                    return Ok(());
                }
                match compare(&masked, expected, spec.tolerance) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
        }
    }
    Err(ActuatorError::Verify {
        node: node.to_string(),
        attempts,
        detail: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: rule::RuleKind, params: rule::ActuatorParams) -> rule::ActuatorRule {
        rule::ActuatorRule {
            kind,
            command: None,
            params,
        }
    }

    #[test]
    fn exec_rule_carries_undo_and_check_templates() {
        use rule::{ActuatorParams as P, RuleKind as K};
        let argv = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut r = rule(
            K::Exec,
            P {
                undo: argv(&["undo-it", "{node}"]),
                check: argv(&["can-i", "{node}"]),
                ..P::default()
            },
        );
        r.command = argv(&["do-it", "{node}", "{cpu_cores}"]);
        let ActuatorKind::Exec(e) = ActuatorKind::from_rule(&r, "golem").unwrap() else {
            panic!("not exec");
        };
        assert!(e.undo.is_some() && e.check.is_some());
        assert_eq!(e.timeout, exec::DEFAULT_TIMEOUT);
    }

    #[test]
    fn rules_become_kinds_with_defaults() {
        use rule::{ActuatorParams as P, RuleKind as K};
        let d = ActuatorKind::from_rule(&rule(K::Docker, P::default()), "grass").unwrap();
        assert_eq!(
            d,
            ActuatorKind::Docker(docker::DockerSpec {
                container: "grass".into(),
                socket: "/var/run/docker.sock".into(),
                timeout: docker::DEFAULT_TIMEOUT,
            })
        );
        // DOCKER_HOST style `unix://` paths are accepted.
        let d = ActuatorKind::from_rule(
            &rule(
                K::Docker,
                P {
                    socket: Some("unix:///run/user/1000/docker.sock".into()),
                    ..P::default()
                },
            ),
            "grass",
        )
        .unwrap();
        assert!(
            matches!(d, ActuatorKind::Docker(s) if s.socket == std::path::Path::new("/run/user/1000/docker.sock"))
        );
        let g = ActuatorKind::from_rule(&rule(K::GolemProfile, P::default()), "golem").unwrap();
        assert!(matches!(&g, ActuatorKind::GolemProfile(s)
            if s.program == ["ya-provider"] && s.profile == "default" && s.data_dir.is_none()));
        let u = ActuatorKind::from_rule(
            &rule(
                K::Systemd,
                P {
                    runtime: Some(true),
                    timeout: Some(Duration::from_secs(3)),
                    ..P::default()
                },
            ),
            "storagenode",
        )
        .unwrap();
        assert_eq!(
            u,
            ActuatorKind::Systemd(systemd::SystemdSpec {
                unit: "storagenode".into(),
                program: vec!["systemctl".into()],
                runtime: true,
                timeout: Duration::from_secs(3),
            })
        );
        assert!(!u.disruptive());
        // storj_config has no defaults for the file and the restart: the message says which.
        let e = ActuatorKind::from_rule(&rule(K::StorjConfig, P::default()), "storj").unwrap_err();
        assert!(e.starts_with("storj_config needs config_file"), "{e}");
        let e = ActuatorKind::from_rule(
            &rule(
                K::StorjConfig,
                P {
                    config_file: Some("/srv/storj/config.yaml".into()),
                    ..P::default()
                },
            ),
            "storj",
        )
        .unwrap_err();
        assert!(e.starts_with("storj_config needs restart"), "{e}");
        let s = ActuatorKind::from_rule(
            &rule(
                K::StorjConfig,
                P {
                    config_file: Some("/srv/storj/config.yaml".into()),
                    restart: Some(vec![
                        "docker".into(),
                        "restart".into(),
                        "storagenode".into(),
                    ]),
                    ..P::default()
                },
            ),
            "storj",
        )
        .unwrap();
        assert!(s.disruptive());
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Quiet;
    impl Adapter for Quiet {
        fn name(&self) -> &str {
            "grass"
        }
        fn protocol(&self) -> &str {
            "grass"
        }
        fn poll(&self) -> crate::adapters::PollFuture<'_> {
            Box::pin(std::future::ready(Ok(Default::default())))
        }
    }

    #[tokio::test]
    async fn an_unusable_actuator_is_logged_at_start_naming_the_node() {
        let log = Log::default();
        let sink = log.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        let spec = ActuatorSpec {
            kind: ActuatorKind::Docker(docker::DockerSpec {
                container: "grass".into(),
                socket: "/nonexistent/docker.sock".into(),
                timeout: Duration::from_secs(1),
            }),
            verify: VerifySpec::default(),
        };
        // Building succeeds (the Engine may come up later); the check runs in the background.
        let _a = build(&spec, Arc::new(Quiet)).unwrap();
        let mut text = String::new();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
            if !text.is_empty() {
                break;
            }
        }
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("node=grass"), "{text}");
        assert!(
            text.contains("Docker socket /nonexistent/docker.sock does not exist"),
            "{text}"
        );
    }

    #[test]
    fn compare_names_what_differs() {
        let exp = Allocation {
            cpu_cores: 4.0,
            memory_bytes: 8.0 * 1073741824.0,
            disk_bytes: 0.0,
            bandwidth_bytes_per_second: 0.0,
        };
        let mut rep = exp.map(|_, v| Some(v));
        assert_eq!(compare(&rep, &exp, 0.01), Ok(()));
        // Golem keeps one decimal of GiB: 8.04 GiB for 8 GiB is within 1%.
        rep.memory_bytes = Some(8.04 * 1073741824.0);
        assert_eq!(compare(&rep, &exp, 0.01), Ok(()));
        rep.cpu_cores = Some(3.0);
        assert_eq!(
            compare(&rep, &exp, 0.01),
            Err("cpu_cores is 3 (expected 4)".into())
        );
        assert!(compare(&Resources::default(), &exp, 0.01)
            .unwrap_err()
            .contains("cannot be verified"));
    }
}

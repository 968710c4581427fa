//! Actuator kind `golem_profile`: changes a Golem provider's hardware profile with
//! `ya-provider [--data-dir DIR] profile update --name PROFILE [--cpu-threads N] [--mem-gib G]
//! [--storage-gib S]` (no shell). The running provider watches `hardware.json` and re-publishes
//! its offers with the new resources, so nothing restarts (yagna agent/provider hardware.rs).
//!
//! - CPU: ya-provider takes whole threads; cores are rounded to the nearest thread, at least 1,
//!   and `verify` expects that rounded number. Memory and storage in GiB (2³⁰ bytes) with three
//!   decimals. A resource whose new amount is 0 is not sent (ya-provider's minimums are
//!   1 thread, 0.1 GiB); bandwidth has no knob.
//! - `verify` reads `ya-provider profile list --json` and compares the profile, then polls the
//!   node's adapter for whichever of these it reports (the golem adapter reads `hardware.json`
//!   when `hardware_file` is set). `undo` is the same update with the previous amounts.
//! - `check` runs `profile list --json` and requires the profile to be there.
//!
//! ```yaml
//! actuator: {kind: golem_profile, program: ya-provider, profile: default, data_dir: /srv/golem/ya-provider, timeout: 30s}
//! actuator: {kind: golem_profile, program: [docker, exec, golem, ya-provider]}   # in its container
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::process::{self, find_program};
use super::{verify_reported, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::{Allocation, Resource};
use crate::schema::units::trim_float;

/// The program run by default (found in `PATH`).
pub const DEFAULT_PROGRAM: &str = "ya-provider";
/// The profile ya-provider creates first.
pub const DEFAULT_PROFILE: &str = "default";
/// The default time one ya-provider call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const GIB: f64 = 1073741824.0;

/// The validated parameters of a golem_profile actuator.
#[derive(Clone, Debug, PartialEq)]
pub struct GolemProfileSpec {
    /// The program, or an argv prefix (`[docker, exec, golem, ya-provider]`).
    pub program: Vec<String>,
    pub profile: String,
    /// ya-provider's `--data-dir` (where `hardware.json` lives); None: ya-provider's default
    /// (or its `DATA_DIR` variable, which the child inherits).
    pub data_dir: Option<PathBuf>,
    pub timeout: Duration,
}

pub struct GolemProfileActuator {
    spec: GolemProfileSpec,
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
}

/// What ya-provider is given for `a`: threads, memory GiB and storage GiB, each None when not
/// changed.
fn amounts(a: &Allocation) -> (Option<u64>, Option<f64>, Option<f64>) {
    let threads = (a.cpu_cores > 0.0).then(|| a.cpu_cores.round().max(1.0) as u64);
    let gib = |b: f64| (b > 0.0).then(|| (b / GIB * 1000.0).round() / 1000.0);
    (threads, gib(a.memory_bytes), gib(a.disk_bytes))
}

/// `a` as ya-provider will hold it (whole threads, GiB to three decimals).
fn as_applied(a: &Allocation) -> Allocation {
    let (t, m, s) = amounts(a);
    Allocation {
        cpu_cores: t.map(|t| t as f64).unwrap_or(a.cpu_cores),
        memory_bytes: m.map(|g| g * GIB).unwrap_or(a.memory_bytes),
        disk_bytes: s.map(|g| g * GIB).unwrap_or(a.disk_bytes),
        bandwidth_bytes_per_second: a.bandwidth_bytes_per_second,
    }
}

impl GolemProfileActuator {
    pub fn new(
        spec: GolemProfileSpec,
        adapter: Arc<dyn Adapter>,
        verify: VerifySpec,
    ) -> GolemProfileActuator {
        GolemProfileActuator {
            spec,
            adapter,
            verify,
        }
    }

    /// `program [--data-dir DIR] profile <args>`.
    fn argv(&self, args: &[String]) -> Vec<String> {
        let mut v = self.spec.program.clone();
        if let Some(d) = &self.spec.data_dir {
            v.push("--data-dir".into());
            v.push(d.to_string_lossy().into_owned());
        }
        v.push("profile".into());
        v.extend(args.iter().cloned());
        v
    }

    /// The argv that puts `a` in force.
    pub fn update_argv(&self, a: &Allocation) -> Result<Vec<String>, String> {
        for r in [
            Resource::CpuCores,
            Resource::MemoryBytes,
            Resource::DiskBytes,
        ] {
            let v = a.get(r);
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{} must be a finite amount >= 0, got {v}", r.key()));
            }
        }
        let (t, m, s) = amounts(a);
        let mut args = vec![
            "update".to_string(),
            "--name".into(),
            self.spec.profile.clone(),
        ];
        if let Some(t) = t {
            args.extend(["--cpu-threads".into(), t.to_string()]);
        }
        if let Some(m) = m {
            args.extend(["--mem-gib".into(), trim_float(m)]);
        }
        if let Some(s) = s {
            args.extend(["--storage-gib".into(), trim_float(s)]);
        }
        if t.is_none() && m.is_none() && s.is_none() {
            return Err("the allocation sets no CPU, memory or storage: nothing to update".into());
        }
        Ok(self.argv(&args))
    }

    async fn set(
        &self,
        node: &str,
        action: &'static str,
        to: &Allocation,
    ) -> Result<(), ActuatorError> {
        let argv = self
            .update_argv(to)
            .map_err(|detail| ActuatorError::failed(node, action, detail))?;
        process::run_plain(node, action, &argv, self.spec.timeout)
            .await
            .map(|_| ())
    }

    /// The profile's `(cpu_threads, mem_gib, storage_gib)` from `profile list --json`.
    async fn read_profile(
        &self,
        node: &str,
        action: &'static str,
    ) -> Result<(f64, f64, f64), ActuatorError> {
        let argv = self.argv(&["list".into(), "--json".into()]);
        let out = process::run_plain(node, action, &argv, self.spec.timeout).await?;
        let fail = |detail: String| ActuatorError::failed(node, action, detail);
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| fail(format!("`profile list --json` did not print JSON: {e}")))?;
        let Some(p) = v.get(&self.spec.profile) else {
            let names: Vec<&str> = v
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(fail(format!(
                "profile {:?} does not exist (ya-provider has: {})",
                self.spec.profile,
                names.join(", ")
            )));
        };
        let num = |k: &str| {
            p.get(k).and_then(serde_json::Value::as_f64).ok_or_else(|| {
                fail(format!(
                    "profile {:?}: {k} is missing or not a number",
                    self.spec.profile
                ))
            })
        };
        Ok((num("cpu_threads")?, num("mem_gib")?, num("storage_gib")?))
    }
}

impl Actuator for GolemProfileActuator {
    fn kind(&self) -> &'static str {
        "golem_profile"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        Box::pin(async move {
            let unreachable =
                |detail: String| ActuatorError::unreachable(node, "golem_profile", detail);
            let program = self.spec.program.first().map(String::as_str).unwrap_or("");
            find_program(program).map_err(unreachable)?;
            self.read_profile(node, "check")
                .await
                .map_err(|e| match e {
                    ActuatorError::Failed { detail, .. } => unreachable(detail),
                    other => unreachable(other.to_string()),
                })?;
            Ok(())
        })
    }

    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "apply", to))
    }

    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        Box::pin(async move {
            let want = as_applied(expected);
            let (t, m, s) = amounts(expected);
            let (ht, hm, hs) = self.read_profile(node, "verify").await?;
            let tol = self.verify.tolerance;
            let mut wrong = Vec::new();
            let mut changed = Vec::new();
            if let Some(t) = t {
                changed.push(Resource::CpuCores);
                if ht != t as f64 {
                    wrong.push(format!("cpu_threads is {ht} (expected {t})"));
                }
            }
            if let Some(m) = m {
                changed.push(Resource::MemoryBytes);
                if !super::matches(hm, m, tol) {
                    wrong.push(format!("mem_gib is {hm} (expected {})", trim_float(m)));
                }
            }
            if let Some(s) = s {
                changed.push(Resource::DiskBytes);
                if !super::matches(hs, s, tol) {
                    wrong.push(format!("storage_gib is {hs} (expected {})", trim_float(s)));
                }
            }
            if !wrong.is_empty() {
                return Err(ActuatorError::Verify {
                    node: node.to_string(),
                    attempts: 1,
                    detail: format!("profile {:?}: {}", self.spec.profile, wrong.join(", ")),
                });
            }
            verify_reported(self.adapter.as_ref(), node, &want, &self.verify, &changed).await
        })
    }

    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "undo", previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Adapter for Nothing {
        fn name(&self) -> &str {
            "g"
        }
        fn protocol(&self) -> &str {
            "golem"
        }
        fn poll(&self) -> crate::adapters::PollFuture<'_> {
            Box::pin(std::future::ready(Ok(Default::default())))
        }
    }

    fn actuator(data_dir: Option<&str>) -> GolemProfileActuator {
        GolemProfileActuator::new(
            GolemProfileSpec {
                program: vec![DEFAULT_PROGRAM.into()],
                profile: "work".into(),
                data_dir: data_dir.map(PathBuf::from),
                timeout: DEFAULT_TIMEOUT,
            },
            Arc::new(Nothing),
            VerifySpec::default(),
        )
    }

    #[test]
    fn the_update_names_the_profile_and_only_what_changes() {
        let a = actuator(Some("/srv/golem"));
        let argv = a
            .update_argv(&Allocation {
                cpu_cores: 2.6,
                memory_bytes: 6.5 * GIB,
                ..Allocation::default()
            })
            .unwrap();
        assert_eq!(
            argv.join(" "),
            "ya-provider --data-dir /srv/golem profile update --name work --cpu-threads 3 --mem-gib 6.5"
        );
        let argv = actuator(None)
            .update_argv(&Allocation {
                cpu_cores: 0.2,
                disk_bytes: 100e9,
                ..Allocation::default()
            })
            .unwrap();
        // A fraction of a core is still one thread; 100 GB is 93.132 GiB.
        assert_eq!(
            argv.join(" "),
            "ya-provider profile update --name work --cpu-threads 1 --storage-gib 93.132"
        );
        assert!(actuator(None).update_argv(&Allocation::default()).is_err());
        // In its container: the argv prefix comes first.
        let mut a = actuator(None);
        a.spec.program = ["docker", "exec", "golem", "ya-provider"]
            .map(String::from)
            .to_vec();
        let argv = a
            .update_argv(&Allocation {
                cpu_cores: 2.0,
                ..Allocation::default()
            })
            .unwrap();
        assert_eq!(
            argv.join(" "),
            "docker exec golem ya-provider profile update --name work --cpu-threads 2"
        );
    }
}

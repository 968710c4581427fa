//! Actuator kind `systemd`: sets a service's CPU and memory limits with
//! `systemctl set-property [--runtime] UNIT CPUQuota=P% MemoryMax=BYTES` (no shell). systemd
//! writes the cgroup limits at once; the service keeps running. Without `runtime: true` the
//! change is persistent (a drop-in under /etc/systemd/system.control/), so it survives a
//! reboot as the plan's allocation should; `--runtime` keeps it until the next boot.
//!
//! - CPU: `CPUQuota` in whole percent of one core (2.5 cores = `250%`); memory: `MemoryMax` in
//!   bytes. A resource whose new amount is 0 is not sent (0 would starve the service); disk
//!   and bandwidth have no systemd property here.
//! - `verify` reads `systemctl show UNIT -p CPUQuotaPerSecUSec -p MemoryMax` (the quota as CPU
//!   time per second: `2.500000s` = 2.5 cores) and then polls the node's adapter for whichever
//!   of CPU and memory it reports. `undo` sets the previous amounts. `check` runs the same
//!   `show` and requires the unit to be loaded.
//!
//! ```yaml
//! actuator: {kind: systemd, unit: storagenode.service, runtime: false, program: systemctl, timeout: 30s}
//! ```

use std::sync::Arc;
use std::time::Duration;

use super::process::{self, find_program};
use super::{verify_reported, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::{Allocation, Resource};
use crate::schema::units::trim_float;

/// The program run by default (found in `PATH`).
pub const DEFAULT_PROGRAM: &str = "systemctl";
/// The default time one systemctl call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const RESOURCES: [Resource; 2] = [Resource::CpuCores, Resource::MemoryBytes];

/// The validated parameters of a systemd actuator.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemdSpec {
    pub unit: String,
    /// The program, or an argv prefix (`[sudo, -n, systemctl]`).
    pub program: Vec<String>,
    /// `--runtime`: the change is lost at reboot.
    pub runtime: bool,
    pub timeout: Duration,
}

pub struct SystemdActuator {
    spec: SystemdSpec,
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
}

/// The limits `systemctl show` reports; None = `infinity` (no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UnitLimits {
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
}

/// Parses `systemctl show -p CPUQuotaPerSecUSec -p MemoryMax` output (plus `LoadState` when
/// asked for).
pub fn parse_show(out: &str) -> Result<UnitLimits, String> {
    let mut limits = UnitLimits::default();
    let (mut cpu, mut mem) = (false, false);
    for line in out.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "CPUQuotaPerSecUSec" => {
                cpu = true;
                if v != "infinity" && !v.is_empty() {
                    limits.cpu_cores = Some(parse_timespan(v)?);
                }
            }
            "MemoryMax" => {
                mem = true;
                if v != "infinity" && !v.is_empty() {
                    limits.memory_bytes = Some(
                        v.parse::<f64>()
                            .map_err(|_| format!("MemoryMax={v} is not a number of bytes"))?,
                    );
                }
            }
            _ => {}
        }
    }
    if !(cpu && mem) {
        return Err(format!(
            "systemctl show printed no {} line: {:?}",
            if cpu {
                "MemoryMax"
            } else {
                "CPUQuotaPerSecUSec"
            },
            process::tail(out.as_bytes())
        ));
    }
    Ok(limits)
}

/// A systemd time span (`2s`, `1.500000s`, `500ms`, `1min 4s`) in seconds.
pub fn parse_timespan(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not a systemd time span");
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "" | "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" | "hr" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = rest[unit_end..].trim_start();
    }
    Ok(total)
}

impl SystemdActuator {
    pub fn new(
        spec: SystemdSpec,
        adapter: Arc<dyn Adapter>,
        verify: VerifySpec,
    ) -> SystemdActuator {
        SystemdActuator {
            spec,
            adapter,
            verify,
        }
    }

    /// The `set-property` argv for `a`.
    pub fn set_argv(&self, a: &Allocation) -> Result<Vec<String>, String> {
        for r in RESOURCES {
            let v = a.get(r);
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{} must be a finite amount >= 0, got {v}", r.key()));
            }
        }
        let mut v = self.spec.program.clone();
        v.push("set-property".into());
        if self.spec.runtime {
            v.push("--runtime".into());
        }
        v.push(self.spec.unit.clone());
        let before = v.len();
        if a.cpu_cores > 0.0 {
            v.push(format!(
                "CPUQuota={}%",
                (a.cpu_cores * 100.0).round().max(1.0)
            ));
        }
        if a.memory_bytes > 0.0 {
            v.push(format!("MemoryMax={:.0}", a.memory_bytes.round()));
        }
        if v.len() == before {
            return Err("the allocation sets no CPU or memory: nothing to set".into());
        }
        Ok(v)
    }

    async fn set(
        &self,
        node: &str,
        action: &'static str,
        to: &Allocation,
    ) -> Result<(), ActuatorError> {
        let argv = self
            .set_argv(to)
            .map_err(|detail| ActuatorError::failed(node, action, detail))?;
        process::run_plain(node, action, &argv, self.spec.timeout)
            .await
            .map(|_| ())
    }

    async fn show(&self, node: &str, action: &'static str) -> Result<UnitLimits, ActuatorError> {
        let mut argv = self.spec.program.clone();
        argv.extend(
            [
                "show",
                self.spec.unit.as_str(),
                "-p",
                "LoadState",
                "-p",
                "CPUQuotaPerSecUSec",
                "-p",
                "MemoryMax",
            ]
            .map(String::from),
        );
        let out = process::run_plain(node, action, &argv, self.spec.timeout).await?;
        let fail = |detail: String| ActuatorError::failed(node, action, detail);
        // systemctl show exits 0 for a unit that does not exist; LoadState says so.
        if let Some(state) = out
            .lines()
            .find_map(|l| l.strip_prefix("LoadState="))
            .filter(|s| *s != "loaded")
        {
            return Err(fail(format!(
                "unit {} is not loaded (LoadState={state})",
                self.spec.unit
            )));
        }
        parse_show(&out).map_err(|e| fail(format!("unit {}: {e}", self.spec.unit)))
    }
}

impl Actuator for SystemdActuator {
    fn kind(&self) -> &'static str {
        "systemd"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        Box::pin(async move {
            let unreachable = |detail: String| ActuatorError::unreachable(node, "systemd", detail);
            let program = self.spec.program.first().map(String::as_str).unwrap_or("");
            find_program(program).map_err(unreachable)?;
            self.show(node, "check").await.map_err(|e| match e {
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
            let now = self.show(node, "verify").await?;
            let tol = self.verify.tolerance;
            let mut wrong = Vec::new();
            let mut changed = Vec::new();
            let shown = |r: Resource, v: Option<f64>| {
                v.map(|v| super::show(r, v))
                    .unwrap_or_else(|| "unlimited".into())
            };
            if expected.cpu_cores > 0.0 {
                changed.push(Resource::CpuCores);
                // CPUQuota is set in whole percent.
                let want = (expected.cpu_cores * 100.0).round().max(1.0) / 100.0;
                if !now.cpu_cores.is_some_and(|c| super::matches(c, want, tol)) {
                    wrong.push(format!(
                        "CPU quota is {} cores (expected {})",
                        shown(Resource::CpuCores, now.cpu_cores),
                        trim_float(want)
                    ));
                }
            }
            if expected.memory_bytes > 0.0 {
                changed.push(Resource::MemoryBytes);
                if !now
                    .memory_bytes
                    .is_some_and(|m| super::matches(m, expected.memory_bytes, tol))
                {
                    wrong.push(format!(
                        "MemoryMax is {} (expected {})",
                        shown(Resource::MemoryBytes, now.memory_bytes),
                        super::show(Resource::MemoryBytes, expected.memory_bytes)
                    ));
                }
            }
            if !wrong.is_empty() {
                return Err(ActuatorError::Verify {
                    node: node.to_string(),
                    attempts: 1,
                    detail: format!("unit {}: {}", self.spec.unit, wrong.join(", ")),
                });
            }
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

    #[test]
    fn timespans_as_systemctl_prints_them() {
        for (s, want) in [
            ("2s", 2.0),
            ("1.500000s", 1.5),
            ("500ms", 0.5),
            ("1min 4s", 64.0),
            ("10ms", 0.01),
        ] {
            assert_eq!(parse_timespan(s), Ok(want), "{s}");
        }
        assert!(parse_timespan("two").is_err());
        assert!(parse_timespan("").is_err());
    }

    #[test]
    fn show_output_with_and_without_limits() {
        let l = parse_show("CPUQuotaPerSecUSec=2.500000s\nMemoryMax=4294967296\n").unwrap();
        assert_eq!(l.cpu_cores, Some(2.5));
        assert_eq!(l.memory_bytes, Some(4294967296.0));
        let l = parse_show("LoadState=loaded\nCPUQuotaPerSecUSec=infinity\nMemoryMax=infinity\n")
            .unwrap();
        assert_eq!(l, UnitLimits::default());
        assert!(parse_show("MemoryMax=1\n")
            .unwrap_err()
            .contains("CPUQuotaPerSecUSec"));
    }
}

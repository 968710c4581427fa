//! A node's share of the host as written in a file (`allocation:` blocks of the config,
//! scenarios and sim nodes): each resource optional, parsed with its unit.

use serde::Deserialize;
use serde_yaml::Value;

use super::diag::{join_key, Diagnostics};
use super::units;
use crate::resources::{Allocation, Resource, Resources};

/// A node's share of the resources as written (each key optional, default 0). Shared by the
/// node kinds that have an allocation.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAllocation {
    #[serde(default)]
    pub cpu_cores: Option<Value>,
    #[serde(default)]
    pub memory_bytes: Option<Value>,
    #[serde(default)]
    pub disk_bytes: Option<Value>,
    #[serde(default)]
    pub bandwidth_bytes_per_second: Option<Value>,
}

impl RawAllocation {
    /// Parses each resource (cores as a number, the rest as sizes); missing ones are `default`.
    /// Negative or non-finite values are errors.
    pub fn validate(
        &self,
        path: &str,
        default: Allocation,
        d: &mut Diagnostics,
    ) -> Option<Allocation> {
        let raw = Resources {
            cpu_cores: &self.cpu_cores,
            memory_bytes: &self.memory_bytes,
            disk_bytes: &self.disk_bytes,
            bandwidth_bytes_per_second: &self.bandwidth_bytes_per_second,
        };
        let mut ok = true;
        let out = raw.map(|r, v| {
            let p = join_key(path, r.key());
            let Some(v) = v else { return default.get(r) };
            let parsed = if r == Resource::CpuCores {
                units::cores(v)
            } else {
                units::size(v)
            };
            match parsed {
                Ok(x) if !x.is_finite() => {
                    d.error(&p, "must be a finite number");
                    ok = false;
                    0.0
                }
                Ok(x) if x < 0.0 => {
                    let shown = if r == Resource::CpuCores {
                        units::trim_float(x)
                    } else {
                        units::fmt_bytes(x)
                    };
                    d.error(&p, format!("must not be negative, got {shown}"));
                    ok = false;
                    0.0
                }
                Ok(x) => x,
                Err(e) => {
                    d.error(&p, e);
                    ok = false;
                    0.0
                }
            }
        });
        ok.then_some(out)
    }
}

//! The `host:` block (the capacity of each resource, `auto` detected for CPU and memory) and
//! the check that the nodes' allocations fit it.

use serde_yaml::Value;

use super::raw::{RawCapacity, RawHost};
use super::{Host, NodeConfig};
use crate::resources::{Resource, Resources};
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_host(raw: Value, d: &mut Diagnostics) -> Option<Host> {
    if raw.is_null() {
        d.error("host", "missing required key \"capacity\"");
        return None;
    }
    let host_has_capacity = raw.get("capacity").is_some();
    let raw: RawHost = d.deserialize("host", raw)?;
    let cap = match raw.capacity {
        None if !host_has_capacity => {
            d.error("host", "missing required key \"capacity\"");
            return None;
        }
        // `capacity:` with nothing under it: report the keys it needs.
        None | Some(Value::Null) => RawCapacity::default(),
        Some(v) => d.deserialize::<RawCapacity>("host.capacity", v)?,
    };
    let auto = Value::String("auto".into());
    let raw = Resources {
        cpu_cores: Some(cap.cpu_cores.as_ref().unwrap_or(&auto)),
        memory_bytes: Some(cap.memory_bytes.as_ref().unwrap_or(&auto)),
        disk_bytes: cap.disk_bytes.as_ref(),
        bandwidth_bytes_per_second: cap.bandwidth_bytes_per_second.as_ref(),
    };
    let mut ok = true;
    let capacity = raw.map(|r, v| {
        let path = join_key("host.capacity", r.key());
        let Some(v) = v else {
            d.error(
                "host.capacity",
                format!("missing required key \"{}\"", r.key()),
            );
            ok = false;
            return 0.0;
        };
        let parsed = match (r, units::is_auto(v)) {
            (Resource::CpuCores, true) => units::detect_cpu_cores(),
            (Resource::MemoryBytes, true) => units::detect_memory_bytes(),
            (_, true) => Err(format!(
                "{} cannot be auto: give a number or a size",
                r.key()
            )),
            (Resource::CpuCores, false) => units::cores(v),
            (_, false) => units::size(v),
        };
        match parsed {
            Ok(x) if x.is_finite() && x > 0.0 => x,
            Ok(x) => {
                let shown = if r == Resource::CpuCores {
                    units::trim_float(x)
                } else {
                    units::fmt_bytes(x)
                };
                d.error(&path, format!("must be greater than 0, got {shown}"));
                ok = false;
                0.0
            }
            Err(e) => {
                d.error(&path, e);
                ok = false;
                0.0
            }
        }
    });
    ok.then_some(Host { capacity })
}

pub(super) fn check_allocations(host: &Host, nodes: &[NodeConfig], d: &mut Diagnostics) {
    for r in Resource::ALL {
        let cap = host.capacity.get(r);
        let fmt = |v: f64| {
            if r == Resource::CpuCores {
                units::trim_float(v)
            } else {
                units::fmt_bytes(v)
            }
        };
        let mut sum = 0.0;
        let mut parts = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Some(a) = n.kind.allocation() else {
                continue;
            };
            let at = join_key(n.kind.kind(), "allocation");
            let v = a.get(r);
            if v > cap {
                let p = join_key(&join_key(&join_index("nodes", i), &at), r.key());
                d.error(
                    &p,
                    format!(
                        "allocation {} exceeds the host capacity {}",
                        fmt(v),
                        fmt(cap)
                    ),
                );
            }
            if v > 0.0 {
                sum += v;
                parts.push(format!("{} {}", n.name, fmt(v)));
            }
        }
        // A little slack for sizes that add up through floating point.
        if sum > cap * (1.0 + 1e-12) && parts.len() > 1 {
            d.error(
                &join_key("host.capacity", r.key()),
                format!(
                    "the nodes' allocations add up to {} ({}), more than the capacity {}",
                    fmt(sum),
                    parts.join(", "),
                    fmt(cap)
                ),
            );
        }
    }
}

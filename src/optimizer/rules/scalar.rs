//! Scalars of the rules file: durations, numbers, fractions, amounts in a resource's units,
//! resource keys, and the rendering of a value inside a message.

use std::time::Duration;

use serde_yaml::Value;

use crate::optimizer::resource_from_key;
use crate::resources::Resource;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::units;

pub(super) fn positive_duration(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Duration> {
    match units::duration(v) {
        Ok(x) if x.is_zero() => {
            d.error(path, "must be greater than 0");
            None
        }
        Ok(x) => Some(x),
        Err(e) => {
            d.error(path, e);
            None
        }
    }
}

pub(super) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A fraction written `5%` or as a number 0–1.
pub(super) fn fraction(v: &Value, path: &str, d: &mut Diagnostics) -> Option<f64> {
    let parsed = match v {
        Value::String(s) if s.trim().ends_with('%') => s
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .ok()
            .map(|p| p / 100.0),
        Value::Number(n) => n.as_f64().filter(|x| *x <= 1.0),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() && x >= 0.0 => Some(x),
        _ => {
            d.error(
                path,
                format!(
                    "invalid fraction {}: write a percent like 5% or a number from 0 to 1",
                    show(v)
                ),
            );
            None
        }
    }
}

/// A whole number, 0 or more, that fits a u32 (a count in the rules), or an error at `path`.
pub(super) fn count(v: &Value, path: &str, d: &mut Diagnostics) -> Option<u32> {
    let n = v.as_u64().and_then(|n| u32::try_from(n).ok());
    if n.is_none() {
        d.error(
            path,
            format!("must be a whole number, 0 or more, got {}", show(v)),
        );
    }
    n
}

pub(super) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// An amount of `r`: cores for CPU, a size for the others. Negative is an error.
pub(super) fn amount(r: Resource, v: &Value, path: &str, d: &mut Diagnostics) -> Option<f64> {
    let parsed = if r == Resource::CpuCores {
        units::cores(v)
    } else {
        units::size(v)
    };
    match parsed {
        Ok(x) if !x.is_finite() => {
            d.error(path, "must be a finite number");
            None
        }
        Ok(x) if x < 0.0 => {
            d.error(path, "must not be negative");
            None
        }
        Ok(x) => Some(x),
        Err(e) => {
            d.error(path, e);
            None
        }
    }
}

pub(super) fn unknown_resource(key: &str) -> String {
    format!(
        "unknown resource \"{key}\"; expected one of {}",
        Resource::ALL.map(|r| r.key()).join(", ")
    )
}

pub(super) fn per_resource<'a>(
    v: &'a Value,
    path: &str,
    d: &mut Diagnostics,
) -> Option<Vec<(Resource, String, &'a Value)>> {
    let Value::Mapping(m) = v else {
        d.error(path, "expected a mapping of resource names");
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?");
        let p = join_key(path, key);
        match resource_from_key(key) {
            Some(r) => out.push((r, p, v)),
            None => {
                d.error(&p, unknown_resource(key));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

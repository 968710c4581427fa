//! The `gates:` block: when reallocation may carry a plan out.

use serde_yaml::Value;

use super::raw::RawGates;
use super::scalar::{amount, count, fraction, number, show, unknown_resource};
use crate::optimizer::{resource_from_key, Gates, Step};
use crate::resources::{Resource, Resources};
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_gates(raw: Option<Value>, d: &mut Diagnostics) -> Option<Gates> {
    let raw: RawGates = match raw {
        None | Some(Value::Null) => RawGates::default(),
        Some(v) => d.deserialize("gates", v)?,
    };
    let mut g = Gates::default();
    let mut ok = true;
    if let Some(v) = &raw.min_improvement {
        match fraction(v, "gates.min_improvement", d) {
            Some(x) => g.min_improvement = x,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.min_confidence {
        match number(v) {
            Some(x) if (0.0..=1.0).contains(&x) => g.min_confidence = x,
            _ => {
                d.error(
                    "gates.min_confidence",
                    format!("must be a number from 0 to 1, got {}", show(v)),
                );
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.max_reallocations_per_hour {
        match count(v, "gates.max_reallocations_per_hour", d) {
            Some(n) => g.max_reallocations_per_hour = n,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.max_reallocations_per_day {
        match count(v, "gates.max_reallocations_per_day", d) {
            Some(n) => g.max_reallocations_per_day = Some(n),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.max_reallocations_per_30_days {
        match count(v, "gates.max_reallocations_per_30_days", d) {
            // The bucket holds the daily limit; a month smaller than one full bucket could
            // never refill it.
            Some(n) if g.max_reallocations_per_day.is_some_and(|day| n < day) => {
                d.error(
                    "gates.max_reallocations_per_30_days",
                    format!(
                        "must be at least max_reallocations_per_day ({}), got {n}",
                        g.max_reallocations_per_day.unwrap_or(0)
                    ),
                );
                ok = false;
            }
            Some(n) => g.max_reallocations_per_30_days = Some(n),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.min_hold {
        match units::duration(v) {
            Ok(x) => g.min_hold = x,
            Err(e) => {
                d.error("gates.min_hold", e);
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.max_step {
        match validate_max_step(v, d) {
            Some(s) => g.max_step = s,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.payback_within_hold {
        match v {
            Value::Bool(true) => g.payback_within_hold = Some(1.0),
            Value::Bool(false) => g.payback_within_hold = None,
            _ => match number(v) {
                Some(x) if x.is_finite() && x >= 0.0 => g.payback_within_hold = Some(x),
                _ => {
                    d.error(
                        "gates.payback_within_hold",
                        format!(
                            "must be true, false or a factor of 0 or more, got {}",
                            show(v)
                        ),
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(g)
}

pub(super) fn step(r: Resource, v: &Value, path: &str, d: &mut Diagnostics) -> Option<Step> {
    match v {
        Value::String(s) if s.trim().ends_with('%') => fraction(v, path, d).map(Step::Fraction),
        _ => amount(r, v, path, d).map(Step::Absolute),
    }
}

pub(super) fn validate_max_step(v: &Value, d: &mut Diagnostics) -> Option<Resources<Option<Step>>> {
    let path = "gates.max_step";
    match v {
        Value::Mapping(m) => {
            let mut out: Resources<Option<Step>> = Resources::default();
            let mut ok = true;
            for (k, v) in m {
                let key = k.as_str().unwrap_or("?");
                let p = join_key(path, key);
                match resource_from_key(key) {
                    Some(r) => match step(r, v, &p, d) {
                        Some(s) => out.set(r, Some(s)),
                        None => ok = false,
                    },
                    None => {
                        d.error(&p, unknown_resource(key));
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        Value::String(s) if s.trim().ends_with('%') => {
            let f = fraction(v, path, d)?;
            Some(Resources::default().map(|_, _: Option<Step>| Some(Step::Fraction(f))))
        }
        _ => {
            d.error(
                path,
                "one percent of capacity for every resource (25%), or per resource {cpu_cores: 2, memory_bytes: 4GiB}",
            );
            None
        }
    }
}

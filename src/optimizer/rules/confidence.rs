//! The `confidence:` block: how steady `value_per_hour` must have been.

use serde_yaml::Value;

use super::raw::RawConfidence;
use super::scalar::{number, positive_duration, show};
use crate::optimizer::ConfidenceRule;
use crate::schema::diag::Diagnostics;

pub(super) fn validate_confidence(
    raw: Option<Value>,
    d: &mut Diagnostics,
) -> Option<ConfidenceRule> {
    let raw: RawConfidence = match raw {
        None | Some(Value::Null) => RawConfidence::default(),
        Some(v) => d.deserialize("confidence", v)?,
    };
    let mut c = ConfidenceRule::default();
    let mut ok = true;
    if let Some(v) = &raw.window {
        match positive_duration(v, "confidence.window", d) {
            Some(x) => c.window = x,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.resolution {
        match positive_duration(v, "confidence.resolution", d) {
            Some(x) => c.resolution = x,
            None => ok = false,
        }
    }
    if c.resolution > c.window {
        d.error(
            "confidence.resolution",
            "must not be longer than confidence.window",
        );
        ok = false;
    }
    if let Some(v) = &raw.cv_half {
        match number(v) {
            Some(x) if x.is_finite() && x > 0.0 => c.cv_half = x,
            _ => {
                d.error(
                    "confidence.cv_half",
                    format!("must be a number greater than 0, got {}", show(v)),
                );
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.min_samples {
        match v.as_u64() {
            Some(n) => c.min_samples = n as usize,
            None => {
                d.error(
                    "confidence.min_samples",
                    format!("must be a whole number, 0 or more, got {}", show(v)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(c)
}

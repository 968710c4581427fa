//! Scalar functions (`time`, `pi`, `scalar`, `vector`, `max_of`, `min_of`) and the element-wise
//! float functions (`abs`, `exp`, trigonometry, `round`, `clamp*`, `timestamp`, …).

use super::{finish, scalar_arg, vector_arg, FnCall};
use crate::labels::Labels;
use crate::promql::numeric::{go_max, go_min};
use crate::promql::value::{InstantSample, Value};
use crate::promql::Error;

/// The value of a function of this family, or `None` when `c` names another.
pub(super) fn call(c: &FnCall<'_>) -> Result<Option<Value>, Error> {
    let scalar = |v: f64| Value::Scalar { t: c.ts, v };
    let v = match c.name {
        "time" => scalar(c.ts as f64 / 1000.0),
        "pi" => scalar(std::f64::consts::PI),
        "scalar" => {
            let v = vector_arg(c, 0)?;
            scalar(if v.len() == 1 { v[0].v } else { f64::NAN })
        }
        "max_of" => scalar(go_max(scalar_arg(c, 0)?, scalar_arg(c, 1)?)),
        "min_of" => scalar(go_min(scalar_arg(c, 0)?, scalar_arg(c, 1)?)),
        "vector" => Value::Vector(vec![InstantSample {
            labels: Labels::empty(),
            t: c.ts,
            v: scalar_arg(c, 0)?,
        }]),
        "abs" => simple(c, f64::abs)?,
        "ceil" => simple(c, f64::ceil)?,
        "floor" => simple(c, f64::floor)?,
        "exp" => simple(c, f64::exp)?,
        "sqrt" => simple(c, f64::sqrt)?,
        "ln" => simple(c, f64::ln)?,
        "log2" => simple(c, f64::log2)?,
        "log10" => simple(c, f64::log10)?,
        "sin" => simple(c, f64::sin)?,
        "cos" => simple(c, f64::cos)?,
        "tan" => simple(c, f64::tan)?,
        "asin" => simple(c, f64::asin)?,
        "acos" => simple(c, f64::acos)?,
        "atan" => simple(c, f64::atan)?,
        "sinh" => simple(c, f64::sinh)?,
        "cosh" => simple(c, f64::cosh)?,
        "tanh" => simple(c, f64::tanh)?,
        "asinh" => simple(c, f64::asinh)?,
        "acosh" => simple(c, f64::acosh)?,
        "atanh" => simple(c, f64::atanh)?,
        "rad" => simple(c, |v| v * std::f64::consts::PI / 180.0)?,
        "deg" => simple(c, |v| v * 180.0 / std::f64::consts::PI)?,
        "sgn" => simple(c, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        })?,
        "round" => {
            let to_nearest = if c.args.len() >= 2 {
                scalar_arg(c, 1)?
            } else {
                1.0
            };
            let inv = 1.0 / to_nearest;
            simple(c, |f| (f * inv + 0.5).floor() / inv)?
        }
        "clamp" => clamp(c, scalar_arg(c, 1)?, scalar_arg(c, 2)?)?,
        "clamp_max" => clamp(c, f64::NEG_INFINITY, scalar_arg(c, 1)?)?,
        "clamp_min" => clamp(c, scalar_arg(c, 1)?, f64::INFINITY)?,
        "timestamp" => {
            let out = vector_arg(c, 0)?
                .iter()
                .map(|s| InstantSample {
                    labels: s.labels.without_metric_name(),
                    t: c.ts,
                    v: s.t as f64 / 1000.0,
                })
                .collect();
            finish(out)?
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn simple(c: &FnCall<'_>, f: impl Fn(f64) -> f64) -> Result<Value, Error> {
    let out = vector_arg(c, 0)?
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: f(s.v),
        })
        .collect();
    finish(out)
}

fn clamp(c: &FnCall<'_>, min: f64, max: f64) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    if max < min {
        return Ok(Value::Vector(Vec::new()));
    }
    // Go's math.Max/math.Min: NaN wins.
    let out = v
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: go_max(min, go_min(max, s.v)),
        })
        .collect();
    finish(out)
}

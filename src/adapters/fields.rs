//! Reading numbers out of node answers. A value of the wrong type, missing or not finite is
//! an `Err` naming the field, which the adapter puts in [`super::Observation::skipped`]
//! instead of showing a wrong number.

use serde_json::Value;

use super::decimal::Decimal;

/// The number at JSON pointer `ptr`: a JSON number only (Storj's dashboard sends numbers).
pub fn number(root: &Value, ptr: &str) -> Result<f64, String> {
    match root.pointer(ptr) {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| ptr.to_string()),
        _ => Err(ptr.to_string()),
    }
}

/// A number or a string holding a decimal number (many APIs send amounts as strings).
pub fn number_or_string(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => Decimal::parse(s).ok().map(Decimal::to_f64),
        _ => None,
    }
}

/// A decimal amount: a string (BigDecimal) or a JSON number (read from its text).
pub fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::parse(s).ok(),
        Value::Number(n) => Decimal::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// Whether a JSON pointer is well formed (empty, or starting with `/`).
pub fn valid_pointer(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

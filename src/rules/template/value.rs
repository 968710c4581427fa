//! The dynamic values a template works on: a small model of the Go values Prometheus hands to
//! `text/template` (strings, ints, float64, maps, structs, query results, `*time.Time`, ...).
//!
//! Go's behaviour depends on static types that a dynamic value has lost (a missing key of a
//! `map[string]string` gives `""`, of a `map[string]any` gives "no value"; `eq 1 1.0` is an
//! error), so each variant stands for one Go type and [`Value::go_type`] names it the way Go's
//! error messages do.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A value inside a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value: Go's untyped nil / invalid `reflect.Value` (a missing key of a `map[string]any`,
    /// a field of nil data). Printed by an action as `<no value>`.
    Nil,
    Bool(bool),
    /// Go `int` (template integer constants, `len`) or `int64`.
    Int(i64),
    /// Go `uint64`.
    Uint(u64),
    /// Go `float64` (sample values, float constants).
    Float(f64),
    String(String),
    /// A Go slice (`[]interface {}`).
    List(Arc<Vec<Value>>),
    /// A Go map with string keys; ranges and prints in key order, as Go does.
    Map(Arc<MapValue>),
    /// A Go struct whose fields are reached with `.Name`.
    Struct(Arc<StructValue>),
    /// The result of Prometheus' `query` function (Go `template.queryResult`).
    Vector(Arc<Vec<Arc<SampleValue>>>),
    /// One element of a query result (Go `*template.sample`): `.Labels` and `.Value`.
    Sample(Arc<SampleValue>),
    /// Go `*time.Time`, as `toTime` returns it: nanoseconds since the Unix epoch, always UTC.
    Time(i64),
    /// Go `*time.Duration`, as `toDuration` returns it: nanoseconds.
    Duration(i64),
}

/// The element type of a map, which decides what a missing key yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `map[string]string` (label sets): a missing key is `""`.
    Strings,
    /// `map[string]interface {}` (`args`): a missing key is no value.
    Any,
}

/// A map from string keys to values, kept in key order.
#[derive(Clone, Debug, PartialEq)]
pub struct MapValue {
    pub kind: MapKind,
    pub entries: BTreeMap<String, Value>,
}

impl MapValue {
    /// What Go's `missingkey=zero` gives for an absent key: the zero value of the element type.
    pub fn zero(&self) -> Value {
        match self.kind {
            MapKind::Strings => Value::String(String::new()),
            MapKind::Any => Value::Nil,
        }
    }

    pub fn go_type(&self) -> &'static str {
        match self.kind {
            MapKind::Strings => "map[string]string",
            MapKind::Any => "map[string]interface {}",
        }
    }
}

/// A struct value: a Go type name (for error messages) and fields in declaration order.
#[derive(Clone, Debug, PartialEq)]
pub struct StructValue {
    pub type_name: String,
    pub fields: Vec<(String, Value)>,
}

impl StructValue {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// One sample of a query result, as Prometheus' template package exposes it.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleValue {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl SampleValue {
    pub fn labels_value(&self) -> Value {
        Value::string_map(self.labels.clone())
    }
}

impl Value {
    /// A `map[string]string` value, such as a label set.
    pub fn string_map(m: BTreeMap<String, String>) -> Value {
        Value::Map(Arc::new(MapValue {
            kind: MapKind::Strings,
            entries: m.into_iter().map(|(k, v)| (k, Value::String(v))).collect(),
        }))
    }

    /// A `map[string]interface {}` value.
    pub fn any_map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Arc::new(MapValue {
            kind: MapKind::Any,
            entries: m,
        }))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// The Go type as `%T` and Go's error messages spell it.
    pub fn go_type(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Uint(_) => "uint64".into(),
            Value::Float(_) => "float64".into(),
            Value::String(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::Map(m) => m.go_type().into(),
            Value::Struct(s) => s.type_name.clone(),
            Value::Vector(_) => "template.queryResult".into(),
            Value::Sample(_) => "*template.sample".into(),
            Value::Time(_) => "*time.Time".into(),
            Value::Duration(_) => "*time.Duration".into(),
        }
    }

    /// Go's truth for `if`, `with`, `and`, `or`, `not`: the value is not the zero of its type.
    /// Structs and pointers (samples, times) are always true.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Vector(v) => !v.is_empty(),
            Value::Struct(_) | Value::Sample(_) | Value::Time(_) | Value::Duration(_) => true,
        }
    }

    /// Go's `len`, where the value has one.
    pub fn go_len(&self) -> Option<usize> {
        match self {
            Value::String(s) => Some(s.len()),
            Value::List(l) => Some(l.len()),
            Value::Map(m) => Some(m.entries.len()),
            Value::Vector(v) => Some(v.len()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_follows_go_zero_values() {
        assert!(!Value::Nil.is_true());
        assert!(!Value::str("").is_true());
        assert!(Value::str("0").is_true());
        assert!(!Value::Float(0.0).is_true());
        assert!(Value::Float(f64::NAN).is_true());
        assert!(!Value::string_map(BTreeMap::new()).is_true());
        assert!(Value::Time(0).is_true());
    }

    #[test]
    fn missing_keys_depend_on_the_map_type() {
        let labels = MapValue {
            kind: MapKind::Strings,
            entries: BTreeMap::new(),
        };
        assert_eq!(labels.zero(), Value::str(""));
        let args = MapValue {
            kind: MapKind::Any,
            entries: BTreeMap::new(),
        };
        assert_eq!(args.zero(), Value::Nil);
    }
}

//! The functions a template can call: Go's builtins (`and or not len index slice print printf
//! println html js urlquery call eq ne lt le gt ge`, as `text/template/funcs.go` defines them)
//! and the methods of the Go values we model (`Time.Format`, `Duration.String`, ...), each with
//! the Go parameter types that decide how arguments are checked. Prometheus' own functions are
//! in [`super::prom`].

use std::cmp::Ordering;

use super::fmt::{sprint, sprintf, sprintln};
use super::prom;
use super::value::Value;
use super::Env;

/// A Go parameter type, as far as argument checking needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `interface {}` or `reflect.Value`: anything.
    Any,
    String,
    /// `template.queryResult`
    QueryResult,
    /// `*template.sample`
    Sample,
    /// `time.Duration`
    Duration,
    /// `time.Time`
    Time,
}

impl Ty {
    pub fn go_name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::String => "string",
            Ty::QueryResult => "template.queryResult",
            Ty::Sample => "*template.sample",
            Ty::Duration => "time.Duration",
            Ty::Time => "time.Time",
        }
    }

    /// Whether an untyped nil can stand for this type (Go's `canBeNil`).
    pub fn can_be_nil(self) -> bool {
        matches!(self, Ty::Any | Ty::QueryResult | Ty::Sample)
    }
}

/// A function's parameters: fixed ones, then optionally a variadic tail.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sig {
    pub params: &'static [Ty],
    pub variadic: Option<Ty>,
}

const fn sig(params: &'static [Ty]) -> Sig {
    Sig {
        params,
        variadic: None,
    }
}

const fn var(params: &'static [Ty], tail: Ty) -> Sig {
    Sig {
        params,
        variadic: Some(tail),
    }
}

/// Go's builtin functions.
fn builtin_sig(name: &str) -> Option<Sig> {
    use Ty::*;
    Some(match name {
        "and" | "or" => var(&[Any], Any),
        "not" | "len" => sig(&[Any]),
        "index" | "slice" | "call" | "eq" => var(&[Any], Any),
        "print" | "println" | "html" | "js" | "urlquery" => var(&[], Any),
        "printf" => var(&[String], Any),
        "ne" | "lt" | "le" | "gt" | "ge" => sig(&[Any, Any]),
        _ => return None,
    })
}

/// The signature of a function the template can call, builtins first shadowed by Prometheus'
/// functions of the same name (there are none today).
pub(crate) fn signature(name: &str) -> Option<Sig> {
    prom::signature(name).or_else(|| builtin_sig(name))
}

/// Whether `name` is a function known at parse time.
pub(crate) fn exists(name: &str) -> bool {
    signature(name).is_some()
}

/// Calls function `name` with arguments already checked against its signature. `and`, `or`
/// are evaluated lazily by the executor and never come here.
pub(crate) fn call(env: &Env<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    if prom::signature(name).is_some() {
        return prom::call(env, name, args);
    }
    match name {
        "not" => Ok(Value::Bool(!first(&args).is_true())),
        "len" => length(first(&args)).map(|n| Value::Int(n as i64)),
        "index" => index(&args),
        "slice" => slice(&args),
        "call" => match first(&args) {
            Value::Nil => Err("call of nil".into()),
            v => Err(format!("non-function of type {}", v.go_type())),
        },
        "print" => Ok(Value::String(sprint(&args))),
        "println" => Ok(Value::String(sprintln(&args))),
        "printf" => {
            let format = match first(&args) {
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            Ok(Value::String(sprintf(&format, &args[1..])))
        }
        "html" => Ok(Value::String(html_escape(&eval_args(&args)))),
        "js" => Ok(Value::String(js_escape(&eval_args(&args)))),
        "urlquery" => Ok(Value::String(query_escape(&eval_args(&args)))),
        "eq" => eq(&args).map(Value::Bool),
        "ne" => eq(&args).map(|b| Value::Bool(!b)),
        "lt" => lt(first(&args), second(&args)).map(Value::Bool),
        "le" => le(first(&args), second(&args)).map(Value::Bool),
        "gt" => le(first(&args), second(&args)).map(|b| Value::Bool(!b)),
        "ge" => lt(first(&args), second(&args)).map(|b| Value::Bool(!b)),
        _ => Err(format!(
            "{} is not a defined function",
            super::fmt::quote(name, false)
        )),
    }
}

fn first(args: &[Value]) -> &Value {
    args.first().unwrap_or(&Value::Nil)
}

fn second(args: &[Value]) -> &Value {
    args.get(1).unwrap_or(&Value::Nil)
}

/// Go's `evalArgs`: the arguments as one string, like `fmt.Sprint` but printing a missing value
/// as `<no value>` as an action would.
fn eval_args(args: &[Value]) -> String {
    if let [Value::String(s)] = args {
        return s.clone();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| match a {
            Value::Nil | Value::Sample(_) | Value::Time(_) | Value::Duration(_) => {
                Value::String(super::exec::print_action(a))
            }
            other => other.clone(),
        })
        .collect();
    sprint(&printable)
}

fn length(v: &Value) -> Result<usize, String> {
    match v {
        Value::Nil => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Sample(_) => Err("len of type template.sample".into()),
        Value::Time(_) => Err("len of type time.Time".into()),
        Value::Duration(_) => Err("len of type time.Duration".into()),
        v => v
            .go_len()
            .ok_or_else(|| format!("len of type {}", v.go_type())),
    }
}

fn index_arg(index: &Value, cap: usize) -> Result<usize, String> {
    let x: i128 = match index {
        Value::Int(i) => *i as i128,
        Value::Uint(u) => *u as i128,
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        v => {
            return Err(format!(
                "cannot index slice/array with type {}",
                v.go_type()
            ))
        }
    };
    if x < 0 || x > cap as i128 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index(args: &[Value]) -> Result<Value, String> {
    let mut item = first(args).clone();
    if let Value::Nil = item {
        return Err("index of untyped nil".into());
    }
    for idx in &args[1..] {
        item = match &item {
            Value::List(l) => {
                let x = index_arg(idx, l.len())?;
                l.get(x)
                    .cloned()
                    .ok_or("reflect: slice index out of range")?
            }
            Value::Vector(v) => {
                let x = index_arg(idx, v.len())?;
                v.get(x)
                    .cloned()
                    .map(Value::Sample)
                    .ok_or("reflect: slice index out of range")?
            }
            Value::String(s) => {
                let x = index_arg(idx, s.len())?;
                // Indexing a Go string yields a byte (uint8).
                s.as_bytes()
                    .get(x)
                    .map(|b| Value::Uint(*b as u64))
                    .ok_or("reflect: string index out of range")?
            }
            Value::Map(m) => match idx {
                Value::String(k) => m.entries.get(k).cloned().unwrap_or_else(|| m.zero()),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.go_type()
                    ))
                }
            },
            Value::Nil => return Err("index of nil pointer".into()),
            Value::Sample(_) => return Err("can't index item of type template.sample".into()),
            other => return Err(format!("can't index item of type {}", other.go_type())),
        };
    }
    Ok(item)
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let item = first(args);
    let indexes = &args[1..];
    if let Value::Nil = item {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::List(l) => l.len(),
        Value::Vector(v) => v.len(),
        other => return Err(format!("can't slice item of type {}", other.go_type())),
    };
    let mut idx = [0, len, len];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::String(s) => {
            Value::String(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::List(l) => Value::list(l[idx[0]..idx[1]].to_vec()),
        Value::Vector(v) => Value::Vector(std::sync::Arc::new(v[idx[0]..idx[1]].to_vec())),
        _ => Value::Nil,
    })
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    String,
    Uint,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Uint(_) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::String,
        _ => Kind::Invalid,
    }
}

fn incompatible(a: &Value, b: &Value) -> String {
    format!(
        "incompatible types for comparison: {} and {}",
        a.go_type(),
        b.go_type()
    )
}

/// Go's `eq`: true when the first argument equals any of the others. Basic kinds compare by
/// value (ints of either sign with each other); int and float64 do not compare.
fn eq(args: &[Value]) -> Result<bool, String> {
    let a = first(args);
    if args.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a);
    for b in &args[1..] {
        let k2 = basic_kind(b);
        let truth = if k1 != k2 {
            match (a, b) {
                (Value::Int(i), Value::Uint(u)) | (Value::Uint(u), Value::Int(i)) => {
                    *i >= 0 && *i as u64 == *u
                }
                (Value::Nil, _) | (_, Value::Nil) => false,
                _ => return Err(incompatible(a, b)),
            }
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x), Value::Int(y)) => x == y,
                (Value::Uint(x), Value::Uint(y)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::String(x), Value::String(y)) => x == y,
                (Value::Nil, Value::Nil) => true,
                (Value::Nil, _) | (_, Value::Nil) => false,
                (Value::Sample(x), Value::Sample(y)) => std::sync::Arc::ptr_eq(x, y),
                (Value::Time(x), Value::Time(y)) | (Value::Duration(x), Value::Duration(y)) => {
                    x == y
                }
                (Value::Map(_) | Value::List(_) | Value::Vector(_), _)
                    if std::mem::discriminant(a) == std::mem::discriminant(b) =>
                {
                    return Err(format!(
                        "non-comparable type {}: {}",
                        sprintf("%s", std::slice::from_ref(b)),
                        b.go_type()
                    ));
                }
                _ => {
                    return Err(format!(
                        "non-comparable types {}: {}, {}: {}",
                        sprintf("%s", std::slice::from_ref(a)),
                        a.go_type(),
                        b.go_type(),
                        sprintf("%v", std::slice::from_ref(b))
                    ))
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt`.
fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if k1 == Kind::Invalid || k2 == Kind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return match (a, b) {
            (Value::Int(i), Value::Uint(u)) => Ok(*i < 0 || (*i as u64) < *u),
            (Value::Uint(u), Value::Int(i)) => Ok(*i >= 0 && *u < *i as u64),
            _ => Err(incompatible(a, b)),
        };
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Uint(x), Value::Uint(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y) == Some(Ordering::Less),
        (Value::String(x), Value::String(y)) => x < y,
        _ => return Err("invalid type for comparison".into()),
    })
}

fn le(a: &Value, b: &Value) -> Result<bool, String> {
    if lt(a, b)? {
        return Ok(true);
    }
    eq(&[a.clone(), b.clone()])
}

/// Go's `template.HTMLEscapeString`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{fffd}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(crate) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u00{:02X}", c as u32)),
            c if c.is_ascii() || super::fmt::is_print(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out
}

/// Go's `url.QueryEscape`: everything but `A-Z a-z 0-9 - _ . ~` is %-escaped, space is `+`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A method of a modelled Go value: its signature, if the receiver has a method of that name.
pub(crate) fn method_sig(receiver: &Value, name: &str) -> Option<Sig> {
    use Ty::*;
    match receiver {
        Value::Time(_) => Some(match name {
            "Format" => sig(&[String]),
            "Add" | "Truncate" | "Round" => sig(&[Duration]),
            "Sub" => sig(&[Time]),
            "Before" | "After" | "Equal" => sig(&[Time]),
            "String" | "Unix" | "UnixMilli" | "UnixMicro" | "UnixNano" | "UTC" | "Local"
            | "Year" | "Day" | "Hour" | "Minute" | "Second" | "Nanosecond" | "YearDay"
            | "IsZero" => sig(&[]),
            _ => return None,
        }),
        Value::Duration(_) => Some(match name {
            "String" | "Seconds" | "Minutes" | "Hours" | "Milliseconds" | "Microseconds"
            | "Nanoseconds" | "Abs" => sig(&[]),
            "Round" | "Truncate" => sig(&[Duration]),
            _ => return None,
        }),
        _ => None,
    }
}

fn dur_arg(args: &[Value]) -> i64 {
    match first(args) {
        Value::Duration(d) => *d,
        _ => 0,
    }
}

/// Rounds `x` to a multiple of `m` (Go's `Duration.Round`: halfway away from zero).
fn round_to(x: i64, m: i64) -> i64 {
    if m <= 0 {
        return x;
    }
    let r = x.rem_euclid(m);
    let down = x - r;
    if r + r < m {
        down
    } else {
        down.saturating_add(m)
    }
}

/// Calls a method on a `Time` or `Duration` value.
pub(crate) fn call_method(receiver: &Value, name: &str, args: &[Value]) -> Result<Value, String> {
    const SEC: i64 = 1_000_000_000;
    match receiver {
        Value::Time(ns) => {
            let ns = *ns;
            Ok(match name {
                "Format" => Value::String(super::time::format(
                    ns,
                    if let Value::String(s) = first(args) {
                        s
                    } else {
                        ""
                    },
                )),
                "String" => Value::String(super::time::time_string(ns)),
                "Add" => Value::Time(ns.saturating_add(dur_arg(args))),
                "Truncate" => {
                    let d = dur_arg(args);
                    Value::Time(if d <= 0 { ns } else { ns - ns.rem_euclid(d) })
                }
                "Round" => Value::Time(round_to(ns, dur_arg(args))),
                "Sub" => match first(args) {
                    Value::Time(o) => Value::Duration(ns.saturating_sub(*o)),
                    _ => Value::Duration(0),
                },
                "Before" | "After" | "Equal" => {
                    let o = if let Value::Time(o) = first(args) {
                        *o
                    } else {
                        0
                    };
                    Value::Bool(match name {
                        "Before" => ns < o,
                        "After" => ns > o,
                        _ => ns == o,
                    })
                }
                "Unix" => Value::Int(ns.div_euclid(SEC)),
                "UnixMilli" => Value::Int(ns.div_euclid(1_000_000)),
                "UnixMicro" => Value::Int(ns.div_euclid(1_000)),
                "UnixNano" => Value::Int(ns),
                "UTC" | "Local" => Value::Time(ns),
                "IsZero" => Value::Bool(false),
                "Year" | "Day" | "Hour" | "Minute" | "Second" | "Nanosecond" | "YearDay" => {
                    let layout = match name {
                        "Year" => "2006",
                        "Day" => "2",
                        "Hour" => "15",
                        "Minute" => "4",
                        "Second" => "5",
                        "YearDay" => "__2",
                        _ => "",
                    };
                    if name == "Nanosecond" {
                        Value::Int(ns.rem_euclid(SEC))
                    } else {
                        let s = super::time::format(ns, layout);
                        Value::Int(s.trim().parse().unwrap_or(0))
                    }
                }
                _ => return Err(format!("can't evaluate field {name} in type *time.Time")),
            })
        }
        Value::Duration(d) => {
            let d = *d;
            Ok(match name {
                "String" => Value::String(crate::compat::duration::go_duration_string(d)),
                "Seconds" => Value::Float(d as f64 / 1e9),
                "Minutes" => Value::Float(d as f64 / 6e10),
                "Hours" => Value::Float(d as f64 / 3.6e12),
                "Milliseconds" => Value::Int(d / 1_000_000),
                "Microseconds" => Value::Int(d / 1_000),
                "Nanoseconds" => Value::Int(d),
                "Abs" => Value::Duration(d.saturating_abs()),
                "Round" => Value::Duration(if d < 0 {
                    -round_to(-d, dur_arg(args))
                } else {
                    round_to(d, dur_arg(args))
                }),
                "Truncate" => {
                    let m = dur_arg(args);
                    Value::Duration(if m <= 0 { d } else { d - d % m })
                }
                _ => {
                    return Err(format!(
                        "can't evaluate field {name} in type *time.Duration"
                    ))
                }
            })
        }
        _ => Err(format!(
            "can't evaluate field {name} in type {}",
            receiver.go_type()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_follow_go_kinds() {
        assert_eq!(eq(&[Value::Int(1), Value::Int(2), Value::Int(1)]), Ok(true));
        assert_eq!(eq(&[Value::str("a"), Value::str("b")]), Ok(false));
        assert_eq!(
            eq(&[Value::Float(1.0), Value::Int(1)]),
            Err("incompatible types for comparison: float64 and int".into())
        );
        assert_eq!(eq(&[Value::Int(1), Value::Uint(1)]), Ok(true));
        assert_eq!(eq(&[Value::Nil, Value::Nil]), Ok(true));
        assert_eq!(eq(&[Value::Nil, Value::str("")]), Ok(false));
        assert_eq!(
            eq(&[Value::Int(1)]),
            Err("missing argument for comparison".into())
        );
        assert_eq!(lt(&Value::Float(1.0), &Value::Float(2.0)), Ok(true));
        assert_eq!(lt(&Value::str("b"), &Value::str("a")), Ok(false));
        assert_eq!(
            lt(&Value::Bool(true), &Value::Bool(false)),
            Err("invalid type for comparison".into())
        );
        assert_eq!(lt(&Value::Int(-1), &Value::Uint(0)), Ok(true));
        assert_eq!(le(&Value::Int(2), &Value::Int(2)), Ok(true));
    }

    #[test]
    fn index_and_slice() {
        let l = Value::list(vec![Value::Int(10), Value::Int(20), Value::Int(30)]);
        assert_eq!(index(&[l.clone(), Value::Int(1)]), Ok(Value::Int(20)));
        assert_eq!(
            index(&[l.clone(), Value::Int(5)]),
            Err("index out of range: 5".into())
        );
        assert_eq!(
            index(&[Value::str("abc"), Value::Int(0)]),
            Ok(Value::Uint(97))
        );
        let m = Value::string_map([("a".to_string(), "x".to_string())].into());
        assert_eq!(index(&[m.clone(), Value::str("a")]), Ok(Value::str("x")));
        assert_eq!(index(&[m, Value::str("b")]), Ok(Value::str("")));
        assert_eq!(
            slice(&[Value::str("hello"), Value::Int(1), Value::Int(3)]),
            Ok(Value::str("el"))
        );
        assert_eq!(
            slice(&[l, Value::Int(2)]),
            Ok(Value::list(vec![Value::Int(30)]))
        );
        assert_eq!(
            slice(&[Value::str("ab"), Value::Int(2), Value::Int(1)]),
            Err("invalid slice index: 2 > 1".into())
        );
    }

    #[test]
    fn escapers() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            js_escape("a'b\"<=>\n"),
            "a\\'b\\\"\\u003C\\u003D\\u003E\\u000A"
        );
        assert_eq!(
            query_escape("up{job=\"a b\"}~*"),
            "up%7Bjob%3D%22a+b%22%7D~%2A"
        );
    }
}

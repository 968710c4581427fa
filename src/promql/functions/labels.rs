//! Sorting (`sort*`, `sort_by_label*`), label rewriting (`label_replace`, `label_join`) and
//! `absent`/`absent_over_time`, whose labels come from the selector.

use std::cmp::Ordering;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use super::{finish, matrix_arg, string_arg, vector_arg, FnCall};
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::value::{InstantSample, Value};
use crate::promql::Error;

/// The value of a function of this family, or `None` when `c` names another.
pub(super) fn call(c: &FnCall<'_>) -> Result<Option<Value>, Error> {
    let v = match c.name {
        "sort" => sort_by_value(c, false)?,
        "sort_desc" => sort_by_value(c, true)?,
        "sort_by_label" => sort_by_label(c, false)?,
        "sort_by_label_desc" => sort_by_label(c, true)?,
        "label_replace" => label_replace(c)?,
        "label_join" => label_join(c)?,
        "absent" => {
            if !vector_arg(c, 0)?.is_empty() {
                return Ok(Some(Value::Vector(Vec::new())));
            }
            absent(c)
        }
        "absent_over_time" => {
            if matrix_arg(c, 0)?.iter().any(|s| !s.samples.is_empty()) {
                return Ok(Some(Value::Vector(Vec::new())));
            }
            absent(c)
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// The one-element vector `absent*` returns when its argument has no samples.
fn absent(c: &FnCall<'_>) -> Value {
    Value::Vector(vec![InstantSample {
        labels: absent_labels(c.arg_exprs.first().map(|b| b.as_ref())),
        t: c.ts,
        v: 1.0,
    }])
}

fn sort_by_value(c: &FnCall<'_>, desc: bool) -> Result<Value, Error> {
    let mut v = vector_arg(c, 0)?.clone();
    // NaN sorts last in both directions, as Prometheus' heap orderings make it.
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
    });
    Ok(Value::Vector(v))
}

fn sort_by_label(c: &FnCall<'_>, desc: bool) -> Result<Value, Error> {
    let mut v = vector_arg(c, 0)?.clone();
    let names: Vec<&str> = (1..c.args.len())
        .map(|i| string_arg(c, i))
        .collect::<Result<_, _>>()?;
    v.sort_by(|a, b| {
        for n in &names {
            let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if x == y {
                continue;
            }
            let less = natsort_less(x, y);
            return match (less, desc) {
                (true, false) | (false, true) => Ordering::Less,
                _ => Ordering::Greater,
            };
        }
        let o = a.labels.cmp(&b.labels);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    Ok(Value::Vector(v))
}

/// `github.com/facette/natsort.Compare` (the version Prometheus pins): chunks of digits compare
/// as integers, other chunks as strings.
pub(super) fn natsort_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                if i > start {
                    out.push(&s[start..i]);
                }
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let last_a = i + 1 == ca.len();
        let last_b = i + 1 == cb.len();
        if let (Ok(xi), Ok(yi)) = (x.parse::<i64>(), y.parse::<i64>()) {
            if xi == yi {
                if last_a {
                    return true;
                } else if last_b {
                    return false;
                }
                continue;
            }
            return xi < yi;
        }
        if x == y {
            if last_a {
                return true;
            } else if last_b {
                return false;
            }
            continue;
        }
        return x < y;
    }
    false
}

/// Prometheus 3 accepts any non-empty UTF-8 label name.
fn valid_label_name(n: &str) -> bool {
    !n.is_empty()
}

fn label_replace(c: &FnCall<'_>) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    let dst = string_arg(c, 1)?;
    let repl = string_arg(c, 2)?;
    let src = string_arg(c, 3)?;
    let re_str = string_arg(c, 4)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        Error::Eval(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let src_val = s.labels.get(src).unwrap_or("");
        let labels = match re.captures(src_val) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                let mut b = s.labels.builder();
                b.set(dst, res);
                b.build()
            }
            None => s.labels.clone(),
        };
        out.push(InstantSample {
            labels,
            t: s.t,
            v: s.v,
        });
    }
    finish(out)
}

fn label_join(c: &FnCall<'_>) -> Result<Value, Error> {
    let v = vector_arg(c, 0)?;
    let dst = string_arg(c, 1)?;
    let sep = string_arg(c, 2)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.len() {
        let s = string_arg(c, i)?;
        if !valid_label_name(s) {
            return Err(Error::Eval(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .iter()
        .map(|s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            let mut b = s.labels.builder();
            b.set(dst, joined.join(sep));
            InstantSample {
                labels: b.build(),
                t: s.t,
                v: s.v,
            }
        })
        .collect();
    finish(out)
}

/// The labels `absent(sel)` reports: the selector's `name="value"` matchers (other than the
/// metric name); a label matched more than once, or not by equality, is left out.
fn absent_labels(e: Option<&Expr>) -> Labels {
    let vs = match e {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = Labels::empty().builder();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(&m.name.as_str()) {
            b.set(m.name.clone(), m.value.clone());
            has.push(&m.name);
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

//! The `protocols:` and `nodes:` blocks: one node rule each, from its estimators, responses,
//! groups, bounds, actuator and switching cost.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::actuator::validate_actuator;
use super::query::{query, with_history};
use super::raw::{RawNode, RawSwitching};
use super::response::validate_response;
use super::scalar::{amount, number, per_resource, show};
use super::together::validate_together;
use crate::optimizer::{fmt_amount, ConfidenceRule, NodeRule, SwitchingCost};
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_node_blocks(
    raw: Option<Value>,
    section: &str,
    conf: &ConfidenceRule,
    d: &mut Diagnostics,
) -> Option<BTreeMap<String, NodeRule>> {
    let m = match raw {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            let what = if section == "nodes" {
                "node names"
            } else {
                "protocol names"
            };
            d.error(section, format!("expected a mapping of {what}"));
            return None;
        }
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in m {
        let Some(name) = k.as_str().map(str::to_string) else {
            d.error(section, "every key must be a name");
            ok = false;
            continue;
        };
        let path = join_key(section, &name);
        match validate_node(v, &path, conf, d) {
            Some(rule) => {
                out.insert(name, rule);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn validate_node(
    v: Value,
    path: &str,
    conf: &ConfidenceRule,
    d: &mut Diagnostics,
) -> Option<NodeRule> {
    let raw: RawNode = match v {
        Value::Null => RawNode::default(),
        v => d.deserialize(path, v)?,
    };
    let mut rule = NodeRule {
        path: path.to_string(),
        ..NodeRule::default()
    };
    let mut ok = true;
    if let Some(v) = &raw.value_per_hour {
        match query(v, &join_key(path, "value_per_hour"), d).and_then(|q| with_history(q, conf, d))
        {
            Some(q) => rule.value_per_hour = Some(q),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.demand {
        match query(v, &join_key(path, "demand"), d) {
            Some(q) => rule.demand = Some(q),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.usage {
        ok &= usage(v, &join_key(path, "usage"), &mut rule, d);
    }
    if let Some(v) = &raw.response {
        ok &= responses(v, &join_key(path, "response"), &mut rule, d);
    }
    if let Some(v) = &raw.needs_together {
        match validate_together(v, &join_key(path, "needs_together"), d) {
            Some(t) => rule.needs_together = Some(t),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.bounds {
        ok &= bounds(v, &join_key(path, "bounds"), &mut rule, d);
    }
    if let Some(v) = raw.actuator {
        match validate_actuator(v, &join_key(path, "actuator"), d) {
            Some(a) => rule.actuator = Some(a),
            None => ok = false,
        }
    }
    if let Some(v) = raw.switching_cost {
        ok &= switching_cost(v, &join_key(path, "switching_cost"), &mut rule, d);
    }
    ok &= together_responses(&rule, path, d);
    ok.then_some(rule)
}

/// `usage:`: one estimator per resource. False when any finding was reported.
fn usage(v: &Value, path: &str, rule: &mut NodeRule, d: &mut Diagnostics) -> bool {
    let Some(list) = per_resource(v, path, d) else {
        return false;
    };
    let mut ok = true;
    for (r, p, v) in list {
        match query(v, &p, d) {
            Some(q) => {
                rule.usage.insert(r, q);
            }
            None => ok = false,
        }
    }
    ok
}

/// `response:`: one response per resource. False when any finding was reported.
fn responses(v: &Value, path: &str, rule: &mut NodeRule, d: &mut Diagnostics) -> bool {
    let Some(list) = per_resource(v, path, d) else {
        return false;
    };
    let mut ok = true;
    for (r, p, v) in list {
        match validate_response(r, v.clone(), &p, d) {
            Some(x) => {
                rule.response.insert(r, x);
            }
            None => ok = false,
        }
    }
    ok
}

/// `bounds:`: `[min, max]` per resource, min not above max. False when any finding was reported.
fn bounds(v: &Value, path: &str, rule: &mut NodeRule, d: &mut Diagnostics) -> bool {
    let Some(list) = per_resource(v, path, d) else {
        return false;
    };
    let mut ok = true;
    for (r, p, v) in list {
        let pair = match v {
            Value::Sequence(s) if s.len() == 2 => {
                let lo = amount(r, &s[0], &join_index(&p, 0), d);
                let hi = amount(r, &s[1], &join_index(&p, 1), d);
                lo.zip(hi)
            }
            _ => {
                d.error(&p, "expected [min, max]");
                None
            }
        };
        match pair {
            Some((lo, hi)) if lo <= hi => {
                rule.bounds.insert(r, (lo, hi));
            }
            Some((lo, hi)) => {
                d.error(
                    &p,
                    format!(
                        "min {} is more than max {}",
                        fmt_amount(r, lo),
                        fmt_amount(r, hi)
                    ),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok
}

/// `switching_cost:`: downtime and a fixed amount in USD. False when any finding was reported.
fn switching_cost(v: Value, p: &str, rule: &mut NodeRule, d: &mut Diagnostics) -> bool {
    let raw: Option<RawSwitching> = match v {
        Value::Null => Some(RawSwitching::default()),
        v => d.deserialize(p, v),
    };
    let Some(raw) = raw else {
        return false;
    };
    let mut ok = true;
    let mut c = SwitchingCost::default();
    if let Some(v) = &raw.downtime {
        match units::duration(v) {
            Ok(x) => c.downtime = x,
            Err(e) => {
                d.error(&join_key(p, "downtime"), e);
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.usd {
        match number(v) {
            Some(x) if x.is_finite() && x >= 0.0 => c.usd = x,
            _ => {
                d.error(
                    &join_key(p, "usd"),
                    format!("must be a number of 0 or more, got {}", show(v)),
                );
                ok = false;
            }
        }
    }
    rule.switching_cost = Some(c);
    ok
}

/// Every resource of a together group shares the first one's response: a response of its own
/// on a later member would silently not apply. False when such a response is found.
fn together_responses(rule: &NodeRule, path: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    let Some(groups) = &rule.needs_together else {
        return ok;
    };
    for (i, t) in groups.iter().enumerate() {
        for r in t.resources.iter().skip(1) {
            if rule.response.contains_key(r) {
                d.error(
                    &join_key(&join_key(path, "response"), r.key()),
                    format!(
                        "{} is in needs_together[{i}] after {}: the group uses the response of its first resource; move this one to {}",
                        r.key(),
                        t.resources[0].key(),
                        t.resources[0].key()
                    ),
                );
                ok = false;
            }
        }
    }
    ok
}

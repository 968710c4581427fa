//! The `nodes:` list: each node's common keys (name, kind, poll timing, labels), its kind's
//! block handed to that kind, and the checks across nodes (names, shared earning accounts).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;

use super::global::positive_duration;
use super::raw::{RawNodeCommon, NODE_COMMON_KEYS};
use super::{Global, NodeConfig};
use crate::adapters;
use crate::adapters::kind::{KindBlock, NodeSpec};
use crate::schema::diag::{join_index, join_key, Diagnostics};

pub(super) const RESERVED_LABELS: [&str; 7] = [
    "node", "protocol", "token", "reason", "field", "le", "quantile",
];

pub(super) fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(super) fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn validate_nodes(
    list: Vec<Value>,
    global: &Global,
    d: &mut Diagnostics,
) -> Option<Vec<NodeConfig>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in list.into_iter().enumerate() {
        let path = join_index("nodes", i);
        match validate_node(v, &path, global, d) {
            Some(n) => {
                if let Some(first) = seen.get(&n.name) {
                    d.error(
                        &join_key(&path, "name"),
                        format!(
                            "duplicate node name \"{}\" (also nodes[{first}].name)",
                            n.name
                        ),
                    );
                    ok = false;
                } else {
                    seen.insert(n.name.clone(), i);
                }
                out.push(n);
            }
            None => ok = false,
        }
    }
    ok &= check_earning_accounts(&out, d);
    ok.then_some(out)
}

/// Two nodes that claim one earning account (a Streamr operator) would count its earnings
/// twice, unless each states its share; the shares must not exceed the whole.
pub(super) fn check_earning_accounts(nodes: &[NodeConfig], d: &mut Diagnostics) -> bool {
    // Per account, the nodes claiming it: (index, node, stated share).
    type Claims<'a> = Vec<(usize, &'a NodeConfig, Option<f64>)>;
    let mut by_account: BTreeMap<String, Claims<'_>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some((account, share)) = n.kind.earning_account() {
            by_account.entry(account).or_default().push((i, n, share));
        }
    }
    let mut ok = true;
    for (account, claims) in by_account.iter().filter(|(_, c)| c.len() > 1) {
        let names: Vec<String> = claims
            .iter()
            .map(|(_, n, _)| format!("\"{}\"", n.name))
            .collect();
        let (i, _, _) = claims[claims.len() - 1];
        let path = join_index("nodes", i);
        if claims.iter().any(|(_, _, s)| s.is_none()) {
            d.error(
                &path,
                format!("nodes {} all count the earnings of {account}: each must state its share (earnings.share), or they are counted twice", names.join(" and ")),
            );
            ok = false;
        } else if claims.iter().filter_map(|(_, _, s)| *s).sum::<f64>() > 1.0 + 1e-9 {
            d.error(
                &path,
                format!(
                    "the shares of {account} stated by nodes {} add up to more than 1",
                    names.join(" and ")
                ),
            );
            ok = false;
        }
    }
    ok
}

pub(super) fn validate_node(
    v: Value,
    path: &str,
    global: &Global,
    d: &mut Diagnostics,
) -> Option<NodeConfig> {
    let Value::Mapping(map) = v else {
        d.error(path, "a node must be a mapping with at least name and kind");
        return None;
    };
    // Split the kind's block (the key named like the kind) from the common keys.
    let kind_word = map.get("kind").and_then(Value::as_str).map(str::to_string);
    let (common, block, mut ok) = split_kind_block(map, kind_word.as_deref(), path, d);
    let Some(raw) = d.deserialize::<RawNodeCommon>(path, Value::Mapping(common)) else {
        // Still check the kind's block, so its errors show in the same run.
        if let Some(k) = &kind_word {
            validate_kind(k, block, path, "", d);
        }
        return None;
    };

    let name = match raw.name {
        Some(n) if valid_node_name(&n) => Some(n),
        Some(n) => {
            d.error(
                &join_key(path, "name"),
                format!("invalid node name \"{n}\": use letters, digits, _, - and . only"),
            );
            None
        }
        None => {
            d.error(path, "missing required key \"name\"");
            None
        }
    };
    let times = poll_times(
        raw.poll_interval.as_ref(),
        raw.poll_timeout.as_ref(),
        path,
        global,
        d,
    );
    ok &= check_labels(&raw.labels, path, d);
    let kind = match raw.kind {
        None => {
            d.error(path, "missing required key \"kind\"");
            None
        }
        Some(k) => validate_kind(&k, block, path, name.as_deref().unwrap_or(""), d),
    };
    let (interval, timeout) = times?;
    ok.then_some(NodeConfig {
        name: name?,
        poll_interval: interval,
        poll_timeout: timeout,
        labels: raw.labels,
        kind: kind?,
    })
}

/// A node's mapping split into its common keys and its kind's block (the key named like the
/// kind); any other key is reported. The flag is false when something was.
fn split_kind_block(
    map: serde_yaml::Mapping,
    kind_word: Option<&str>,
    path: &str,
    d: &mut Diagnostics,
) -> (serde_yaml::Mapping, Option<Value>, bool) {
    let mut common = serde_yaml::Mapping::new();
    let mut block: Option<Value> = None;
    let mut ok = true;
    for (k, v) in map {
        let key = k.as_str().map(str::to_string);
        match key {
            Some(key) if NODE_COMMON_KEYS.contains(&key.as_str()) => {
                common.insert(k, v);
            }
            Some(key) if Some(key.as_str()) == kind_word => block = Some(v),
            // Without a kind the block cannot be checked; "missing kind" says enough.
            Some(key) if kind_word.is_none() && adapters::kind::find(&key).is_some() => {}
            Some(key) => {
                let expected = match kind_word {
                    Some(kw) if adapters::kind::find(kw).is_some() => {
                        format!("{}, {kw}", NODE_COMMON_KEYS.join(", "))
                    }
                    _ => NODE_COMMON_KEYS.join(", "),
                };
                let hint = if adapters::kind::find(&key).is_some() {
                    format!("; the block \"{key}\" only goes with kind: {key}")
                } else {
                    String::new()
                };
                d.error(
                    &join_key(path, &key),
                    format!("unknown key \"{key}\"; expected one of {expected}{hint}"),
                );
                ok = false;
            }
            None => {
                d.error(path, "node keys must be strings");
                ok = false;
            }
        }
    }
    (common, block, ok)
}

/// The node's poll interval and timeout, each defaulting to the global one; the timeout must
/// not be longer than the interval.
fn poll_times(
    poll_interval: Option<&Value>,
    poll_timeout: Option<&Value>,
    path: &str,
    global: &Global,
    d: &mut Diagnostics,
) -> Option<(Duration, Duration)> {
    let interval = positive_duration(poll_interval, &join_key(path, "poll_interval"), d);
    let timeout = positive_duration(poll_timeout, &join_key(path, "poll_timeout"), d);
    match (interval, timeout) {
        (Ok(i), Ok(t)) => {
            let interval = i.unwrap_or(global.poll_interval);
            let timeout = t.unwrap_or_else(|| global.poll_timeout.min(interval));
            if timeout > interval {
                let at = if t.is_some() {
                    "poll_timeout"
                } else {
                    "poll_interval"
                };
                d.error(
                    &join_key(path, at),
                    format!(
                        "poll_timeout {} is longer than poll_interval {}",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
                None
            } else {
                Some((interval, timeout))
            }
        }
        _ => None,
    }
}

/// The node's own labels: valid names, none that depin-orcha sets itself. False on a finding.
fn check_labels(labels: &BTreeMap<String, String>, path: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    for label in labels.keys() {
        let p = join_key(&join_key(path, "labels"), label);
        if !valid_label_name(label) || label.starts_with("__") {
            d.error(&p, format!("invalid label name \"{label}\": use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"));
            ok = false;
        } else if RESERVED_LABELS.contains(&label.as_str()) {
            d.error(
                &p,
                format!("label \"{label}\" is set by depin-orcha itself"),
            );
            ok = false;
        }
    }
    ok
}

/// Dispatches a node's settings block to its kind.
pub(super) fn validate_kind(
    kind: &str,
    block: Option<Value>,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<Arc<dyn NodeSpec>> {
    let path = join_key(node_path, kind);
    let Some(k) = adapters::kind::find(kind) else {
        d.error(
            &join_key(node_path, "kind"),
            format!(
                "unknown kind \"{kind}\"; expected one of {}",
                adapters::kind::names().join(", ")
            ),
        );
        return None;
    };
    let block = KindBlock {
        block,
        path: &path,
        node_path,
        node_name,
    };
    (k.validate)(block, d)
}

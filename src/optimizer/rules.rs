//! Loading `rules/optimization.yml` into [`OptimizationRules`]: raw serde structs (every key
//! optional at the serde level, unknown keys refused), then validation into typed values
//! (durations, fractions, amounts in each resource's units, parsed PromQL). Every error is
//! reported at once, one per line, as `FILE:LINE:COL: key.path: message`, through the config
//! module's diagnostics.
//!
//! # Reference
//!
//! ```yaml
//! interval: 60s                  # how often to plan (duration; default 60s)
//! planner: model                 # model (curves fitted from the estimators now) or learning
//!                                # (curves learned from each node's history; default model)
//! exploration_budget: 0.05       # USD per day the learning planner may put at risk on probes
//!                                # (default 0: no probes)
//! gates:                         # when reallocation may carry a plan out
//!   min_improvement: 5%          # expected gain over the current earnings rate (percent, or a
//!                                # fraction 0–1; default 5%)
//!   min_confidence: 0.7          # 0–1 (default 0.7)
//!   max_reallocations_per_hour: 4  # applied plans per rolling hour (default 4)
//!   max_reallocations_per_day: 2 # applied plans per rolling 24 hours (default: unchecked)
//!   min_hold: 1h                 # per node: an allocation stays at least this long; also the
//!                                # period a switching cost must pay back in (default 1h)
//!   max_step: 25%                # per move and resource: a percent of capacity or an amount;
//!                                # one value for all or per resource {cpu_cores: 2, memory_bytes: 4GiB}
//!                                # (default: no limit)
//!   payback_within_hold: true    # gain × min_hold ≥ factor × switching cost: true (= 1), false
//!                                # (not checked) or a factor like 2 (default true)
//! confidence:                    # how steady value_per_hour must have been (see the module doc)
//!   window: 1h                   # history looked at (duration; default 1h)
//!   resolution: 5m               # subquery step (duration; default 5m)
//!   cv_half: 0.25                # coefficient of variation that gives confidence 0.5 (default 0.25)
//!   min_samples: 3               # fewer points give confidence 0 (default 3)
//! resources:                     # per resource: cpu_cores, memory_bytes, disk_bytes,
//!   cpu_cores:                   # bandwidth_bytes_per_second (default: capacity auto, reserve 0)
//!     capacity: auto             # auto (the host's, from the config) or an amount
//!     reserve: 1                 # kept free for the host (cores; sizes for the others)
//! protocols:                     # defaults for every node of a protocol (same keys as nodes.*)
//!   golem: {...}
//! nodes:                         # per node name (one host may run two Storj nodes); each key
//!   golem:                       # given here overrides the protocol's (usage, response and
//!                                # bounds resource by resource)
//!     value_per_hour: 'PromQL'   # USD per hour earned now (required, here or in protocols)
//!     demand: 'PromQL'           # expected demand relative to now, 1 = as now (optional)
//!     usage:                     # what the node uses, per resource, resource units (optional)
//!       cpu_cores: 'PromQL'
//!     response:                  # per resource: how earnings follow it (resources not listed
//!       cpu_cores:               # are not moved for this node)
//!         model: marginal        # marginal (1 − exp(−x/knee)) | curve (default marginal)
//!         knee: auto             # marginal: auto (fitted from the saturation) or an amount
//!         points: [[0, 0], [2, 0.6], [4, 0.9]]  # curve: [amount, relative earnings], concave
//!         demand_cap: 'PromQL'   # allocation beyond which more earns nothing (resource units)
//!         weight: 1              # weight of this resource (or its together group), default 1
//!     needs_together:            # resources that only earn together; the first one's
//!       - resources: [cpu_cores, memory_bytes]  # response applies to the group
//!         ratio: [1, 2GiB]       # amounts per work unit (default: the current mix)
//!     bounds:                    # [min, max] per resource, resource units
//!       cpu_cores: [1, 6]
//!     actuator: sim              # sim | exec | docker | golem_profile | storj_config | systemd,
//!                                # or {kind: exec, command: [argv...], undo: [argv...],
//!                                # check: [argv...], timeout: 30s} (templates with {node},
//!                                # {cpu_cores}, …; undo defaults to command), or a mapping
//!                                # with the keys of docker, golem_profile, … (README)
//!     switching_cost:            # per change of this node
//!       downtime: 5m             # earnings lost while it restarts (duration; default 0s)
//!       usd: 0                   # a fixed cost, USD (default 0)
//! ```
//!
//! PromQL estimators are evaluated once per plan. A result with a `node` label is matched to
//! the node by it, so a protocol-wide expression like
//! `sum by (node) (rate(depin_earnings_usd_total{protocol="storj"}[1h])) * 3600` serves every
//! Storj node; a result of one series without `node` (or a scalar) serves a node-level rule.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use promql_parser::parser::value::ValueType;
use serde::Deserialize;
use serde_yaml::Value;

use super::{
    resource_from_key, Capacity, ConfidenceRule, Gates, NodeRule, OptimizationRules, Query,
    ResourceRule, Response, ResponseModel, Step, SwitchingCost, Together,
};
use crate::actuators::exec::ArgvTemplate;
use crate::actuators::rule::{ActuatorParams, ActuatorRule, RuleKind};
use crate::resources::{Resource, Resources};
use crate::schema::diag::{join_index, join_key, validate_document, Diag, Diagnostics, Diags};
use crate::schema::units;

/// Why the rules did not load: one positioned finding per line.
pub type Errors = Diags;

/// Reads and validates an optimization rules file; messages name the file as given.
pub fn load_file(path: &Path) -> Result<OptimizationRules, Errors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diags(vec![Diag::file(
            &origin,
            format!("cannot read the rules file: {e}"),
        )])
    })?;
    parse_str(&text, &origin)
}

/// Parses and validates rules text; `origin` names it in messages.
pub fn parse_str(text: &str, origin: &str) -> Result<OptimizationRules, Errors> {
    let (mut rules, warnings) =
        validate_document(text, origin, |value, d| validate(value, origin, d))?;
    rules.warnings = warnings;
    Ok(rules)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    gates: Option<Value>,
    #[serde(default)]
    confidence: Option<Value>,
    #[serde(default)]
    resources: Option<Value>,
    #[serde(default)]
    protocols: Option<Value>,
    #[serde(default)]
    nodes: Option<Value>,
    #[serde(default)]
    planner: Option<Value>,
    #[serde(default)]
    exploration_budget: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGates {
    #[serde(default)]
    min_improvement: Option<Value>,
    #[serde(default)]
    min_confidence: Option<Value>,
    #[serde(default)]
    max_reallocations_per_hour: Option<Value>,
    #[serde(default)]
    min_hold: Option<Value>,
    #[serde(default)]
    max_step: Option<Value>,
    #[serde(default)]
    payback_within_hold: Option<Value>,
    #[serde(default)]
    max_reallocations_per_day: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfidence {
    #[serde(default)]
    window: Option<Value>,
    #[serde(default)]
    resolution: Option<Value>,
    #[serde(default)]
    cv_half: Option<Value>,
    #[serde(default)]
    min_samples: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResource {
    #[serde(default)]
    capacity: Option<Value>,
    #[serde(default)]
    reserve: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    value_per_hour: Option<Value>,
    #[serde(default)]
    demand: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default)]
    needs_together: Option<Value>,
    #[serde(default)]
    bounds: Option<Value>,
    #[serde(default)]
    actuator: Option<Value>,
    #[serde(default)]
    switching_cost: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    knee: Option<Value>,
    #[serde(default)]
    points: Option<Value>,
    #[serde(default)]
    demand_cap: Option<Value>,
    #[serde(default)]
    weight: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTogether {
    #[serde(default)]
    resources: Option<Vec<String>>,
    #[serde(default)]
    ratio: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActuator {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    undo: Option<Vec<String>>,
    #[serde(default)]
    check: Option<Vec<String>>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    socket: Option<String>,
    #[serde(default)]
    program: Option<Value>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    config_file: Option<String>,
    #[serde(default)]
    restart: Option<Vec<String>>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    runtime: Option<bool>,
    #[serde(default)]
    timeout: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSwitching {
    #[serde(default)]
    downtime: Option<Value>,
    #[serde(default)]
    usd: Option<Value>,
}

fn validate(value: Value, origin: &str, d: &mut Diagnostics) -> Option<OptimizationRules> {
    if matches!(value, Value::Null) {
        d.error_at(
            Some((1, 1)),
            "the rules file is empty: expected a mapping with nodes or protocols",
        );
        return None;
    }
    let raw: RawRules = d.deserialize("", value)?;
    let interval = match raw.interval.as_ref() {
        None => Some(Duration::from_secs(60)),
        Some(v) => positive_duration(v, "interval", d),
    };
    let gates = validate_gates(raw.gates, d);
    let planner = validate_planner(raw.planner.as_ref(), d);
    let exploration = validate_exploration(raw.exploration_budget.as_ref(), d);
    let confidence = validate_confidence(raw.confidence, d);
    let resources = validate_resources(raw.resources, d);
    let history = confidence.clone().unwrap_or_default();
    let protocols = validate_node_blocks(raw.protocols, "protocols", &history, d);
    let nodes = validate_node_blocks(raw.nodes, "nodes", &history, d);
    if let (Some(p), Some(n)) = (&protocols, &nodes) {
        if p.is_empty() && n.is_empty() {
            d.error("", "no nodes and no protocols: nothing to optimize");
        }
        // A node block must end up with value_per_hour from itself or… it cannot know its
        // protocol here, so only a node block without any protocol block is checked.
        if p.is_empty() {
            for (name, rule) in n {
                if rule.value_per_hour.is_none() {
                    d.error(
                        &join_key("nodes", name),
                        "missing required key \"value_per_hour\" (no protocols block gives one)",
                    );
                }
            }
        }
        for (name, rule) in p {
            if rule.value_per_hour.is_none() {
                d.warn(
                    &join_key("protocols", name),
                    "no value_per_hour: each node of this protocol must give one",
                );
            }
        }
    }
    Some(OptimizationRules {
        origin: origin.to_string(),
        interval: interval?,
        gates: gates?,
        confidence: confidence?,
        resources: resources?,
        protocols: protocols?,
        nodes: nodes?,
        planner: planner?,
        exploration_budget_usd_per_day: exploration?,
        warnings: Vec::new(),
    })
}

/// `planner`: `model` (default) or `learning`.
fn validate_planner(v: Option<&Value>, d: &mut Diagnostics) -> Option<super::PlannerKind> {
    match v.map(|v| (v, v.as_str())) {
        None => Some(super::PlannerKind::Model),
        Some((_, Some("model"))) => Some(super::PlannerKind::Model),
        Some((_, Some("learning"))) => Some(super::PlannerKind::Learning),
        Some((v, _)) => {
            d.error(
                "planner",
                format!("must be model or learning, got {}", show(v)),
            );
            None
        }
    }
}

/// `exploration_budget`: USD per day a learning planner may put at risk on probes (default 0).
fn validate_exploration(v: Option<&Value>, d: &mut Diagnostics) -> Option<f64> {
    match v.map(|v| (v, number(v))) {
        None => Some(0.0),
        Some((_, Some(x))) if x.is_finite() && x >= 0.0 => Some(x),
        Some((v, _)) => {
            d.error(
                "exploration_budget",
                format!(
                    "must be a number of USD per day, 0 or more, got {}",
                    show(v)
                ),
            );
            None
        }
    }
}

fn positive_duration(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Duration> {
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

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A fraction written `5%` or as a number 0–1.
fn fraction(v: &Value, path: &str, d: &mut Diagnostics) -> Option<f64> {
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

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// An amount of `r`: cores for CPU, a size for the others. Negative is an error.
fn amount(r: Resource, v: &Value, path: &str, d: &mut Diagnostics) -> Option<f64> {
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

fn validate_gates(raw: Option<Value>, d: &mut Diagnostics) -> Option<Gates> {
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
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => g.max_reallocations_per_hour = n,
            None => {
                d.error(
                    "gates.max_reallocations_per_hour",
                    format!("must be a whole number, 0 or more, got {}", show(v)),
                );
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.max_reallocations_per_day {
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => g.max_reallocations_per_day = Some(n),
            None => {
                d.error(
                    "gates.max_reallocations_per_day",
                    format!("must be a whole number, 0 or more, got {}", show(v)),
                );
                ok = false;
            }
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

fn step(r: Resource, v: &Value, path: &str, d: &mut Diagnostics) -> Option<Step> {
    match v {
        Value::String(s) if s.trim().ends_with('%') => fraction(v, path, d).map(Step::Fraction),
        _ => amount(r, v, path, d).map(Step::Absolute),
    }
}

fn validate_max_step(v: &Value, d: &mut Diagnostics) -> Option<Resources<Option<Step>>> {
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

fn unknown_resource(key: &str) -> String {
    format!(
        "unknown resource \"{key}\"; expected one of {}",
        Resource::ALL.map(|r| r.key()).join(", ")
    )
}

fn validate_confidence(raw: Option<Value>, d: &mut Diagnostics) -> Option<ConfidenceRule> {
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

fn validate_resources(
    raw: Option<Value>,
    d: &mut Diagnostics,
) -> Option<BTreeMap<Resource, ResourceRule>> {
    let m = match raw {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            d.error("resources", "expected a mapping of resource names");
            return None;
        }
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?").to_string();
        let path = join_key("resources", &key);
        let Some(r) = resource_from_key(&key) else {
            d.error(&path, unknown_resource(&key));
            ok = false;
            continue;
        };
        let raw: RawResource = match v {
            Value::Null => RawResource::default(),
            v => match d.deserialize(&path, v) {
                Some(x) => x,
                None => {
                    ok = false;
                    continue;
                }
            },
        };
        let mut rule = ResourceRule::default();
        if let Some(v) = &raw.capacity {
            if units::is_auto(v) {
                rule.capacity = Capacity::Auto;
            } else {
                match amount(r, v, &join_key(&path, "capacity"), d) {
                    Some(x) => rule.capacity = Capacity::Value(x),
                    None => ok = false,
                }
            }
        }
        if let Some(v) = &raw.reserve {
            match amount(r, v, &join_key(&path, "reserve"), d) {
                Some(x) => rule.reserve = x,
                None => ok = false,
            }
        }
        if let Capacity::Value(c) = rule.capacity {
            if rule.reserve > c {
                d.error(
                    &join_key(&path, "reserve"),
                    format!(
                        "reserve {} is more than the capacity {}",
                        super::fmt_amount(r, rule.reserve),
                        super::fmt_amount(r, c)
                    ),
                );
                ok = false;
            }
        }
        out.insert(r, rule);
    }
    ok.then_some(out)
}

fn validate_node_blocks(
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

/// Parses a PromQL estimator at `path`. Range vectors and strings are refused: an estimator
/// gives one number per node.
fn query(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Query> {
    let Value::String(text) = v else {
        d.error(
            path,
            format!("expected a PromQL expression as a string, got {}", show(v)),
        );
        return None;
    };
    match crate::promql::parse(text) {
        Ok(expr) => match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => Some(Query {
                text: text.clone(),
                expr,
                path: path.to_string(),
                history: None,
            }),
            t => {
                d.error(
                    path,
                    format!(
                        "invalid PromQL: the expression gives a {t}, expected an instant vector or a scalar"
                    ),
                );
                None
            }
        },
        Err(e) => {
            d.error(path, format!("invalid PromQL: {e}"));
            None
        }
    }
}

/// `(text)[window:resolution]` for the confidence of `value_per_hour`.
fn with_history(mut q: Query, conf: &ConfidenceRule, d: &mut Diagnostics) -> Option<Query> {
    // A subquery takes a vector only: a scalar estimator is looked at through vector().
    let inner = if q.expr.value_type() == ValueType::Scalar {
        format!("vector({})", q.text)
    } else {
        format!("({})", q.text)
    };
    let text = format!(
        "{}[{}s:{}s]",
        inner,
        conf.window.as_secs().max(1),
        conf.resolution.as_secs().max(1)
    );
    match crate::promql::parse(&text) {
        Ok(e) => {
            q.history = Some(e);
            Some(q)
        }
        Err(e) => {
            d.error(
                &q.path,
                format!("cannot look at the history of this expression: {e}"),
            );
            None
        }
    }
}

fn per_resource<'a>(
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

fn validate_node(
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
        match per_resource(v, &join_key(path, "usage"), d) {
            Some(list) => {
                for (r, p, v) in list {
                    match query(v, &p, d) {
                        Some(q) => {
                            rule.usage.insert(r, q);
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(v) = &raw.response {
        match per_resource(v, &join_key(path, "response"), d) {
            Some(list) => {
                for (r, p, v) in list {
                    match validate_response(r, v.clone(), &p, d) {
                        Some(x) => {
                            rule.response.insert(r, x);
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(v) = &raw.needs_together {
        match validate_together(v, &join_key(path, "needs_together"), d) {
            Some(t) => rule.needs_together = Some(t),
            None => ok = false,
        }
    }
    if let Some(v) = &raw.bounds {
        match per_resource(v, &join_key(path, "bounds"), d) {
            Some(list) => {
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
                                    super::fmt_amount(r, lo),
                                    super::fmt_amount(r, hi)
                                ),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(v) = raw.actuator {
        match validate_actuator(v, &join_key(path, "actuator"), d) {
            Some(a) => rule.actuator = Some(a),
            None => ok = false,
        }
    }
    if let Some(v) = raw.switching_cost {
        let p = join_key(path, "switching_cost");
        let raw: Option<RawSwitching> = match v {
            Value::Null => Some(RawSwitching::default()),
            v => d.deserialize(&p, v),
        };
        match raw {
            Some(raw) => {
                let mut c = SwitchingCost::default();
                if let Some(v) = &raw.downtime {
                    match units::duration(v) {
                        Ok(x) => c.downtime = x,
                        Err(e) => {
                            d.error(&join_key(&p, "downtime"), e);
                            ok = false;
                        }
                    }
                }
                if let Some(v) = &raw.usd {
                    match number(v) {
                        Some(x) if x.is_finite() && x >= 0.0 => c.usd = x,
                        _ => {
                            d.error(
                                &join_key(&p, "usd"),
                                format!("must be a number of 0 or more, got {}", show(v)),
                            );
                            ok = false;
                        }
                    }
                }
                rule.switching_cost = Some(c);
            }
            None => ok = false,
        }
    }
    // Every resource of a together group shares the first one's response: a response of its
    // own on a later member would silently not apply.
    if let Some(groups) = &rule.needs_together {
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
    }
    ok.then_some(rule)
}

fn validate_response(r: Resource, v: Value, path: &str, d: &mut Diagnostics) -> Option<Response> {
    let raw: RawResponse = match v {
        Value::Null => RawResponse::default(),
        Value::String(s) => RawResponse {
            model: Some(s),
            ..RawResponse::default()
        },
        v => d.deserialize(path, v)?,
    };
    let mut ok = true;
    let model = match raw.model.as_deref().unwrap_or("marginal") {
        "marginal" => {
            if raw.points.is_some() {
                d.error(
                    &join_key(path, "points"),
                    "points belong to model: curve; marginal takes a knee",
                );
                ok = false;
            }
            let knee = match &raw.knee {
                None => None,
                Some(v) if units::is_auto(v) => None,
                Some(v) => match amount(r, v, &join_key(path, "knee"), d) {
                    Some(k) if k > 0.0 => Some(k),
                    Some(_) => {
                        d.error(&join_key(path, "knee"), "must be greater than 0");
                        ok = false;
                        None
                    }
                    None => {
                        ok = false;
                        None
                    }
                },
            };
            ResponseModel::Marginal { knee }
        }
        "curve" => {
            if raw.knee.is_some() {
                d.error(
                    &join_key(path, "knee"),
                    "a knee belongs to model: marginal; a curve is given by its points",
                );
                ok = false;
            }
            let pp = join_key(path, "points");
            match &raw.points {
                Some(Value::Sequence(list)) => {
                    let mut pts = Vec::new();
                    for (i, p) in list.iter().enumerate() {
                        let ip = join_index(&pp, i);
                        match p {
                            Value::Sequence(xy) if xy.len() == 2 => {
                                let x = amount(r, &xy[0], &join_index(&ip, 0), d);
                                let y = number(&xy[1]);
                                if y.is_none() {
                                    d.error(
                                        &join_index(&ip, 1),
                                        "expected a number (relative earnings)",
                                    );
                                }
                                match x.zip(y) {
                                    Some(xy) => pts.push(xy),
                                    None => ok = false,
                                }
                            }
                            _ => {
                                d.error(&ip, "expected [amount, relative earnings]");
                                ok = false;
                            }
                        }
                    }
                    if ok {
                        match super::Curve::new(pts.clone()) {
                            Ok(_) => {}
                            Err(e) => {
                                d.error(&pp, e);
                                ok = false;
                            }
                        }
                    }
                    ResponseModel::Curve { points: pts }
                }
                _ => {
                    d.error(
                        &pp,
                        "model: curve needs points: [[amount, relative earnings], ...] starting at [0, 0]",
                    );
                    ok = false;
                    ResponseModel::Curve { points: Vec::new() }
                }
            }
        }
        other => {
            d.error(
                &join_key(path, "model"),
                format!("unknown model \"{other}\"; expected marginal or curve"),
            );
            return None;
        }
    };
    let demand_cap = match &raw.demand_cap {
        None => None,
        Some(v) => {
            let q = query(v, &join_key(path, "demand_cap"), d);
            if q.is_none() {
                ok = false;
            }
            q
        }
    };
    let weight = match &raw.weight {
        None => 1.0,
        Some(v) => match number(v) {
            Some(w) if w.is_finite() && w >= 0.0 => w,
            _ => {
                d.error(
                    &join_key(path, "weight"),
                    format!("must be a number of 0 or more, got {}", show(v)),
                );
                ok = false;
                1.0
            }
        },
    };
    ok.then_some(Response {
        model,
        demand_cap,
        weight,
    })
}

fn validate_together(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Vec<Together>> {
    // One group may be written without the list around it.
    let items: Vec<Value> = match v {
        Value::Sequence(s) if s.iter().all(|x| x.is_string()) && !s.is_empty() => {
            // `needs_together: [cpu_cores, memory_bytes]`: one group, current mix.
            let mut m = serde_yaml::Mapping::new();
            m.insert("resources".into(), v.clone());
            return validate_together_items(vec![Value::Mapping(m)], path, d, true);
        }
        Value::Sequence(s) => s.clone(),
        Value::Mapping(_) => {
            return validate_together_items(vec![v.clone()], path, d, true);
        }
        _ => {
            d.error(
                path,
                "expected a list of {resources: [...], ratio: [...]} (or one such mapping)",
            );
            return None;
        }
    };
    validate_together_items(items, path, d, false)
}

fn validate_together_items(
    items: Vec<Value>,
    path: &str,
    d: &mut Diagnostics,
    single: bool,
) -> Option<Vec<Together>> {
    let mut out: Vec<Together> = Vec::new();
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        let p = if single {
            path.to_string()
        } else {
            join_index(path, i)
        };
        let Some(raw) = d.deserialize::<RawTogether>(&p, item) else {
            ok = false;
            continue;
        };
        let Some(names) = raw.resources else {
            d.error(&p, "missing required key \"resources\"");
            ok = false;
            continue;
        };
        let mut resources = Vec::new();
        for (j, n) in names.iter().enumerate() {
            match resource_from_key(n) {
                Some(r) if resources.contains(&r) => {
                    d.error(
                        &join_index(&join_key(&p, "resources"), j),
                        format!("{n} is listed twice"),
                    );
                    ok = false;
                }
                Some(r) => {
                    if out.iter().any(|t| t.resources.contains(&r)) {
                        d.error(
                            &join_index(&join_key(&p, "resources"), j),
                            format!("{n} is already in another needs_together group"),
                        );
                        ok = false;
                    }
                    resources.push(r)
                }
                None => {
                    d.error(
                        &join_index(&join_key(&p, "resources"), j),
                        unknown_resource(n),
                    );
                    ok = false;
                }
            }
        }
        if resources.len() < 2 && ok {
            d.error(
                &join_key(&p, "resources"),
                "needs at least two resources (one resource alone needs no group)",
            );
            ok = false;
        }
        let ratio = match raw.ratio {
            None => None,
            Some(list) if list.len() == resources.len() => {
                let mut vals = Vec::new();
                for (j, (v, r)) in list.iter().zip(&resources).enumerate() {
                    let rp = join_index(&join_key(&p, "ratio"), j);
                    match amount(*r, v, &rp, d) {
                        Some(x) if x > 0.0 => vals.push(x),
                        Some(_) => {
                            d.error(&rp, "must be greater than 0");
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                Some(vals)
            }
            Some(list) => {
                d.error(
                    &join_key(&p, "ratio"),
                    format!(
                        "has {} values for {} resources: one amount per resource, in the same order",
                        list.len(),
                        resources.len()
                    ),
                );
                ok = false;
                None
            }
        };
        out.push(Together { resources, ratio });
    }
    ok.then_some(out)
}

fn validate_actuator(v: Value, path: &str, d: &mut Diagnostics) -> Option<ActuatorRule> {
    let (kind, raw, kind_path) = match v {
        Value::String(s) => (Some(s), None, path.to_string()),
        Value::Mapping(_) => {
            let raw: RawActuator = d.deserialize(path, v)?;
            (raw.kind.clone(), Some(raw), join_key(path, "kind"))
        }
        other => {
            d.error(
                path,
                format!(
                    "expected an actuator name or {{kind: ..., <its keys>}}, got {}",
                    show(&other)
                ),
            );
            return None;
        }
    };
    let Some(kind) = kind else {
        d.error(path, "missing required key \"kind\"");
        return None;
    };
    let Some(k) = RuleKind::ALL.into_iter().find(|k| k.name() == kind) else {
        d.error(
            &kind_path,
            format!(
                "unknown actuator \"{kind}\"; expected one of {}",
                RuleKind::ALL.map(|k| k.name()).join(", ")
            ),
        );
        return None;
    };
    let Some(raw) = raw else {
        if k == RuleKind::Exec {
            d.error(path, "actuator exec needs command: [program, args...]");
            return None;
        }
        return Some(ActuatorRule {
            kind: k,
            command: None,
            params: ActuatorParams::default(),
        });
    };
    let mut ok = true;
    // Every key given must belong to the kind: a `container` under golem_profile is a typo or
    // a wrong kind, and silently ignoring it would act on the wrong thing.
    let given: [(&str, bool); 13] = [
        ("command", raw.command.is_some()),
        ("undo", raw.undo.is_some()),
        ("check", raw.check.is_some()),
        ("container", raw.container.is_some()),
        ("socket", raw.socket.is_some()),
        ("program", raw.program.is_some()),
        ("profile", raw.profile.is_some()),
        ("data_dir", raw.data_dir.is_some()),
        ("config_file", raw.config_file.is_some()),
        ("restart", raw.restart.is_some()),
        ("unit", raw.unit.is_some()),
        ("runtime", raw.runtime.is_some()),
        ("timeout", raw.timeout.is_some()),
    ];
    for (key, present) in given {
        if present && !k.keys().contains(&key) {
            let takes = if k.keys().is_empty() {
                "no other keys".to_string()
            } else {
                k.keys().join(", ")
            };
            d.error(
                &join_key(path, key),
                format!(
                    "actuator {} does not take \"{key}\" (it takes {takes})",
                    k.name()
                ),
            );
            ok = false;
        }
    }
    // `program`: one name or path, or an argv prefix (a tool run through `docker exec`).
    let program_list: Option<Vec<String>> = match &raw.program {
        None => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Sequence(items)) => {
            let list: Option<Vec<String>> =
                items.iter().map(|v| v.as_str().map(String::from)).collect();
            if list.is_none() {
                d.error(
                    &join_key(path, "program"),
                    "every element of the argv must be a string",
                );
                ok = false;
            }
            list
        }
        Some(other) => {
            d.error(
                &join_key(path, "program"),
                format!(
                    "expected a program name or an argv list like [docker, exec, golem, ya-provider], got {}",
                    show(other)
                ),
            );
            ok = false;
            None
        }
    };
    let mut text = |key: &str, v: &Option<String>| -> Option<String> {
        let s = v.as_ref()?;
        if s.trim().is_empty() {
            d.error(&join_key(path, key), "must not be empty");
            ok = false;
            return None;
        }
        Some(s.clone())
    };
    let container = text("container", &raw.container);
    let socket = text("socket", &raw.socket);
    let profile = text("profile", &raw.profile);
    let data_dir = text("data_dir", &raw.data_dir);
    let config_file = text("config_file", &raw.config_file);
    let unit = text("unit", &raw.unit);
    let mut argv = |key: &str, v: &Option<Vec<String>>| -> Option<Vec<String>> {
        let a = v.as_ref()?;
        if a.is_empty() {
            d.error(&join_key(path, key), "must name a program");
            ok = false;
            return None;
        }
        if a[0].trim().is_empty() {
            d.error(
                &join_index(&join_key(path, key), 0),
                "the program must not be empty",
            );
            ok = false;
            return None;
        }
        Some(a.clone())
    };
    let command = argv("command", &raw.command);
    let undo = argv("undo", &raw.undo);
    let check = argv("check", &raw.check);
    let program = argv("program", &program_list);
    let restart = argv("restart", &raw.restart);
    // exec's argv templates: an unknown `{placeholder}` is an error here, not at the first move.
    for (key, t) in [("command", &command), ("undo", &undo), ("check", &check)] {
        if let Some(t) = t {
            if let Err((i, e)) = ArgvTemplate::parse(t) {
                d.error(&join_index(&join_key(path, key), i), e);
                ok = false;
            }
        }
    }
    if k == RuleKind::Exec && raw.command.is_none() {
        d.error(path, "actuator exec needs command: [program, args...]");
        ok = false;
    }
    let timeout = match &raw.timeout {
        None => None,
        Some(v) => match units::duration(v) {
            Ok(t) if t > Duration::ZERO => Some(t),
            Ok(_) => {
                d.error(&join_key(path, "timeout"), "must be longer than 0s");
                ok = false;
                None
            }
            Err(e) => {
                d.error(&join_key(path, "timeout"), e);
                ok = false;
                None
            }
        },
    };
    ok.then_some(ActuatorRule {
        kind: k,
        command,
        params: ActuatorParams {
            undo,
            check,
            container,
            socket,
            program,
            profile,
            data_dir,
            config_file,
            restart,
            unit,
            runtime: raw.runtime,
            timeout,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
interval: 2m
gates:
  min_improvement: 10%
  min_confidence: 0.6
  max_reallocations_per_hour: 2
  min_hold: 30m
  max_step: {cpu_cores: 2, memory_bytes: 25%}
  payback_within_hold: 2
resources:
  cpu_cores: {capacity: auto, reserve: 1}
  memory_bytes: {capacity: 16GiB, reserve: 2GiB}
protocols:
  golem:
    value_per_hour: 'sum by (node) (rate(depin_earnings_usd_total{protocol="golem"}[1h])) * 3600'
    response:
      cpu_cores: {model: marginal, knee: auto}
    needs_together:
      - resources: [cpu_cores, memory_bytes]
        ratio: [1, 2GiB]
    actuator: sim
nodes:
  golem:
    bounds: {cpu_cores: [1, 6], memory_bytes: [1GiB, 12GiB]}
    switching_cost: {downtime: 1m}
  storj-a:
    value_per_hour: 'rate(depin_earnings_usd_total{node="storj-a"}[1h]) * 3600'
    response:
      disk_bytes: {model: curve, points: [[0, 0], [500GB, 0.7], [2TB, 1]]}
    actuator: {kind: exec, command: [/bin/true]}
"#;

    #[test]
    fn a_full_file_loads() {
        let r = parse_str(GOOD, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.interval, Duration::from_secs(120));
        assert_eq!(r.gates.min_improvement, 0.1);
        assert_eq!(r.gates.max_step.cpu_cores, Some(Step::Absolute(2.0)));
        assert_eq!(r.gates.max_step.memory_bytes, Some(Step::Fraction(0.25)));
        assert_eq!(r.gates.payback_within_hold, Some(2.0));
        assert_eq!(
            r.resources[&Resource::MemoryBytes].capacity,
            Capacity::Value(16.0 * 1073741824.0)
        );
        let g = r.for_node("golem", "golem").expect("golem has rules");
        assert!(g.value_per_hour.is_some(), "inherited from protocols.golem");
        assert_eq!(g.bounds[&Resource::CpuCores], (1.0, 6.0));
        assert_eq!(
            g.needs_together.as_ref().map(|t| t[0].ratio.clone()),
            Some(Some(vec![1.0, 2.0 * 1073741824.0]))
        );
        assert_eq!(g.switching_cost.map(|c| c.downtime.as_secs()), Some(60));
        let s = r.for_node("storj-a", "storj").expect("storj-a has rules");
        assert_eq!(s.actuator.map(|a| a.kind), Some(RuleKind::Exec));
        assert!(r.for_node("grass", "grass").is_none());
        assert!(crate::schema::files::is_optimization_rules(GOOD));
    }

    #[test]
    fn a_node_block_overrides_its_protocol_resource_by_resource() {
        let text = r#"
protocols:
  storj:
    value_per_hour: '1'
    usage: {disk_bytes: 'a', bandwidth_bytes_per_second: 'b'}
    response: {disk_bytes: marginal, bandwidth_bytes_per_second: marginal}
    bounds: {disk_bytes: [500GB, 1.8TB], bandwidth_bytes_per_second: [1MB, 8MB]}
nodes:
  s:
    usage: {bandwidth_bytes_per_second: 'c'}
    response:
      memory_bytes: {model: curve, points: [[0, 0], [1GiB, 1]], weight: 0}
    bounds: {memory_bytes: [0, 1GiB], bandwidth_bytes_per_second: [2MB, 4MB]}
"#;
        let r = parse_str(text, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        let n = r.for_node("s", "storj").expect("rules");
        // Kept from the protocol, added by the node, and the node's value where both set one.
        assert_eq!(n.bounds[&Resource::DiskBytes], (500e9, 1.8e12));
        assert_eq!(n.bounds[&Resource::MemoryBytes], (0.0, 1073741824.0));
        assert_eq!(n.bounds[&Resource::BandwidthBytesPerSecond], (2e6, 4e6));
        assert_eq!(
            n.response.keys().copied().collect::<Vec<_>>(),
            vec![
                Resource::MemoryBytes,
                Resource::DiskBytes,
                Resource::BandwidthBytesPerSecond
            ]
        );
        assert_eq!(n.usage[&Resource::DiskBytes].text, "a");
        assert_eq!(n.usage[&Resource::BandwidthBytesPerSecond].text, "c");
    }

    #[test]
    fn every_error_is_reported_with_its_line_and_key() {
        let text = r#"interval: 5
gates:
  min_improvement: 250
  min_confidence: 1.5
  colour: blue
resources:
  cpu_cores: {reserve: -1}
  gpus: {reserve: 1}
nodes:
  golem:
    value_per_hour: 'rate(depin_earnings_usd_total[1h] * 3600'
    response:
      cpu_cores: {model: curve, points: [[0, 0], [1, 0.2], [2, 0.9]]}
    bounds: {cpu_cores: [6, 1]}
    actuator: teleport
"#;
        let e = parse_str(text, "opt.yml").expect_err("invalid").lines();
        let want = [
            "opt.yml:1:1: interval: invalid duration 5",
            "opt.yml:3:3: gates.min_improvement: invalid fraction 250",
            "opt.yml:4:3: gates.min_confidence: must be a number from 0 to 1",
            "opt.yml:5:3: gates.colour: unknown key \"colour\"",
            "opt.yml:7:15: resources.cpu_cores.reserve: must not be negative",
            "opt.yml:8:3: resources.gpus: unknown resource \"gpus\"",
            "opt.yml:11:5: nodes.golem.value_per_hour: invalid PromQL",
            "opt.yml:13:33: nodes.golem.response.cpu_cores.points: the curve must be concave",
            "opt.yml:14:14: nodes.golem.bounds.cpu_cores: min 6 cores is more than max 1 cores",
            "opt.yml:15:5: nodes.golem.actuator: unknown actuator \"teleport\"",
        ];
        for w in want {
            assert!(
                e.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in\n{}",
                e.join("\n")
            );
        }
    }

    #[test]
    fn planner_budget_and_daily_limit_are_checked_with_line_and_key() {
        let node = "nodes:\n  n:\n    value_per_hour: 'vector(1)'\n";
        let ok = format!("planner: learning\nexploration_budget: 0.05\ngates:\n  max_reallocations_per_day: 2\n{node}");
        let r = parse_str(&ok, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.planner, super::super::PlannerKind::Learning);
        assert_eq!(r.exploration_budget_usd_per_day, 0.05);
        assert_eq!(r.gates.max_reallocations_per_day, Some(2));
        let d = parse_str(node, "opt.yml").unwrap();
        assert_eq!(d.planner, super::super::PlannerKind::Model);
        assert_eq!(d.gates.max_reallocations_per_day, None);
        let bad = format!("planner: oracle\nexploration_budget: -1\ngates:\n  max_reallocations_per_day: 1.5\n{node}");
        let e = parse_str(&bad, "opt.yml").expect_err("invalid").lines();
        for w in [
            "opt.yml:1:1: planner: must be model or learning, got oracle",
            "opt.yml:2:1: exploration_budget: must be a number of USD per day",
            "opt.yml:4:3: gates.max_reallocations_per_day: must be a whole number",
        ] {
            assert!(
                e.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in\n{}",
                e.join("\n")
            );
        }
    }

    /// Rules with one node whose actuator is `actuator` (YAML, indented for the node block).
    fn with_actuator(actuator: &str) -> String {
        format!(
            "nodes:\n  n:\n    value_per_hour: 'vector(1)'\n    response:\n      cpu_cores: {{model: marginal, knee: 1}}\n    actuator: {actuator}\n"
        )
    }

    #[test]
    fn actuator_mappings_carry_their_kinds_keys() {
        let r = parse_str(
            &with_actuator(
                "{kind: docker, container: golem, socket: /run/docker.sock, timeout: 5s}",
            ),
            "opt.yml",
        )
        .unwrap();
        let a = r.for_node("n", "x").and_then(|n| n.actuator).unwrap();
        assert_eq!(a.kind, RuleKind::Docker);
        assert_eq!(a.params.container.as_deref(), Some("golem"));
        assert_eq!(a.params.socket.as_deref(), Some("/run/docker.sock"));
        assert_eq!(a.params.timeout, Some(Duration::from_secs(5)));
        let r = parse_str(
            &with_actuator(
                "{kind: storj_config, config_file: /srv/storj/config.yaml, restart: [docker, restart, storagenode]}",
            ),
            "opt.yml",
        )
        .unwrap();
        let a = r.for_node("n", "x").and_then(|n| n.actuator).unwrap();
        assert_eq!(
            a.params.restart.map(|r| r.join(" ")).as_deref(),
            Some("docker restart storagenode")
        );
        // `program` is a name or an argv prefix.
        let r = parse_str(
            &with_actuator("{kind: golem_profile, program: [docker, exec, golem, ya-provider]}"),
            "opt.yml",
        )
        .unwrap();
        let a = r.for_node("n", "x").and_then(|n| n.actuator).unwrap();
        assert_eq!(
            a.params.program.map(|p| p.join(" ")).as_deref(),
            Some("docker exec golem ya-provider")
        );
        let e = parse_str(
            &with_actuator("{kind: systemd, program: {a: 1}}"),
            "opt.yml",
        )
        .expect_err("invalid")
        .lines();
        assert!(
            e.iter()
                .any(|l| l
                    .contains("nodes.n.actuator.program: expected a program name or an argv list")),
            "{e:?}"
        );
        // The string form keeps working, with every key left to the defaults.
        for kind in ["golem_profile", "systemd", "storj_config", "docker"] {
            let r = parse_str(&with_actuator(kind), "opt.yml").unwrap();
            let a = r.for_node("n", "x").and_then(|n| n.actuator).unwrap();
            assert_eq!(a.kind.name(), kind);
            assert!(a.params.is_empty());
        }
    }

    #[test]
    fn actuator_keys_of_another_kind_or_malformed_are_errors_with_line_and_key() {
        let text = with_actuator(
            "\n      kind: golem_profile\n      container: golem\n      profile: ''\n      timeout: 0s\n      colour: red",
        );
        let e = parse_str(&text, "opt.yml").expect_err("invalid").lines();
        let joined = e.join("\n");
        let w = "opt.yml:11:7: nodes.n.actuator.colour: unknown key \"colour\"";
        assert!(
            e.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in\n{joined}"
        );
        let text = with_actuator(
            "\n      kind: golem_profile\n      container: golem\n      profile: ''\n      timeout: 0s\n      restart: []",
        );
        let e = parse_str(&text, "opt.yml").expect_err("invalid").lines();
        let joined = e.join("\n");
        for w in [
            "opt.yml:8:7: nodes.n.actuator.container: actuator golem_profile does not take \"container\" (it takes program, profile, data_dir, timeout)",
            "opt.yml:9:7: nodes.n.actuator.profile: must not be empty",
            "opt.yml:10:7: nodes.n.actuator.timeout: must be longer than 0s",
            "opt.yml:11:7: nodes.n.actuator.restart: actuator golem_profile does not take \"restart\"",
        ] {
            assert!(e.iter().any(|l| l.starts_with(w)), "missing {w:?} in\n{joined}");
        }
    }

    #[test]
    fn exec_takes_undo_and_check_templates_checked_for_placeholders() {
        let r = parse_str(
            &with_actuator(
                "{kind: exec, command: [tc-set, '{node}', '{bandwidth_bytes_per_second}'], undo: [tc-set, '{node}', '{bandwidth_bytes_per_second}', --undo], check: [tc-check, '{node}']}",
            ),
            "opt.yml",
        )
        .unwrap();
        let a = r.for_node("n", "x").and_then(|n| n.actuator).unwrap();
        assert_eq!(a.params.undo.map(|u| u.len()), Some(4));
        assert_eq!(
            a.params.check.map(|c| c.join(" ")).as_deref(),
            Some("tc-check {node}")
        );
        let e = parse_str(
            &with_actuator(
                "{kind: exec, command: [tc-set, '{bw}'], undo: [tc-undo, '{node}', '{cpu}']}",
            ),
            "opt.yml",
        )
        .expect_err("invalid")
        .lines();
        for w in [
            "nodes.n.actuator.command[1]: unknown placeholder \"{bw}\"",
            "nodes.n.actuator.undo[2]: unknown placeholder \"{cpu}\"",
        ] {
            assert!(e.iter().any(|l| l.contains(w)), "missing {w:?} in {e:?}");
        }
        let e = parse_str(&with_actuator("{kind: docker, undo: [x]}"), "opt.yml")
            .expect_err("invalid")
            .lines();
        assert!(
            e.iter()
                .any(|l| l.contains("actuator docker does not take \"undo\"")),
            "{e:?}"
        );
    }

    #[test]
    fn range_vector_estimator_is_refused() {
        let text = "nodes:\n  a:\n    value_per_hour: 'depin_earnings_usd_total[1h]'\n";
        let e = parse_str(text, "o.yml")
            .expect_err("a range vector is no estimate")
            .lines();
        assert!(
            e[0].starts_with(
                "o.yml:3:5: nodes.a.value_per_hour: invalid PromQL: the expression gives a matrix"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn node_without_value_and_no_protocols_is_an_error() {
        let text = "nodes:\n  a:\n    response: {cpu_cores: marginal}\n";
        let e = parse_str(text, "o.yml")
            .expect_err("no value_per_hour")
            .lines();
        assert!(
            e[0].contains("nodes.a: missing required key \"value_per_hour\""),
            "{e:?}"
        );
    }

    #[test]
    fn together_member_with_own_response_is_an_error() {
        let text = "nodes:\n  a:\n    value_per_hour: '1'\n    response: {memory_bytes: marginal}\n    needs_together: [cpu_cores, memory_bytes]\n";
        let e = parse_str(text, "o.yml")
            .expect_err("memory's response would not apply")
            .lines();
        assert!(e[0].contains("nodes.a.response.memory_bytes"), "{e:?}");
    }
}

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
//! exploration_budget: 2%         # what the learning planner may put at risk per day on probes
//!                                # and ventures (moves whose gain is likely, not yet proven):
//!                                # USD (a number) or a percent of what the nodes earn per day
//!                                # (default 0: no probes, no ventures)
//! gates:                         # when reallocation may carry a plan out
//!   min_improvement: 5%          # expected gain over the current earnings rate (percent, or a
//!                                # fraction 0–1; default 5%)
//!   min_confidence: 0.7          # 0–1 (default 0.7)
//!   max_reallocations_per_hour: 4  # applied plans per rolling hour (default 4)
//!   max_reallocations_per_day: 2 # applied plans per rolling 24 hours (default: unchecked)
//!   max_reallocations_per_30_days: 60  # applied plans per rolling 30 days, paced: a bucket of
//!                                # max_reallocations_per_day (unset: a thirtieth of this) that
//!                                # refills evenly, so quiet days' allowance is kept for later
//!                                # (default: unchecked)
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

mod actuator;
mod capacity;
mod confidence;
mod gates;
mod node;
mod planner;
mod query;
mod raw;
mod response;
mod scalar;
mod together;

use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use self::capacity::validate_resources;
use self::confidence::validate_confidence;
use self::gates::validate_gates;
use self::node::validate_node_blocks;
use self::planner::{validate_exploration, validate_planner};
use self::raw::RawRules;
use self::scalar::positive_duration;
use super::OptimizationRules;
use crate::schema::diag::{join_key, validate_document, Diag, Diagnostics, Diags};

// The tests below name these through `use super::*`.
#[cfg(test)]
use {
    super::{Capacity, Step},
    crate::actuators::rule::RuleKind,
    crate::resources::Resource,
};

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
        exploration_budget: exploration?,
        warnings: Vec::new(),
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

    #[test]
    fn planner_budget_and_daily_limit_are_checked_with_line_and_key() {
        let node = "nodes:\n  n:\n    value_per_hour: 'vector(1)'\n";
        let ok = format!("planner: learning\nexploration_budget: 0.05\ngates:\n  max_reallocations_per_day: 2\n{node}");
        let r = parse_str(&ok, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.planner, super::super::PlannerKind::Learning);
        assert_eq!(
            r.exploration_budget,
            super::super::ExplorationBudget::Usd(0.05)
        );
        let share = ok.replace("exploration_budget: 0.05", "exploration_budget: 2%");
        let r = parse_str(&share, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.exploration_budget,
            super::super::ExplorationBudget::Share(0.02)
        );
        assert_eq!(r.gates.max_reallocations_per_day, Some(2));
        let d = parse_str(node, "opt.yml").unwrap();
        assert_eq!(d.planner, super::super::PlannerKind::Model);
        assert_eq!(d.gates.max_reallocations_per_day, None);
        let month = ok.replace(
            "per_day: 2\n",
            "per_day: 2\n  max_reallocations_per_30_days: 60\n",
        );
        let r = parse_str(&month, "opt.yml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.gates.max_reallocations_per_30_days, Some(60));
        let e = parse_str(&month.replace(": 60", ": 1"), "opt.yml")
            .expect_err("a month smaller than a day")
            .lines();
        assert!(
            e.iter().any(|l| l.starts_with("opt.yml:5:3: gates.max_reallocations_per_30_days: must be at least max_reallocations_per_day (2), got 1")),
            "{e:?}"
        );
        let bad = format!("planner: oracle\nexploration_budget: -1\ngates:\n  max_reallocations_per_day: 1.5\n{node}");
        let e = parse_str(&bad, "opt.yml").expect_err("invalid").lines();
        for w in [
            "opt.yml:1:1: planner: must be model or learning, got \"oracle\"",
            "opt.yml:2:1: exploration_budget: must be USD per day (a number, 0 or more) or a percent of the day's earnings",
            "opt.yml:4:3: gates.max_reallocations_per_day: must be a whole number",
        ] {
            assert!(
                e.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in\n{}",
                e.join("\n")
            );
        }
    }
}

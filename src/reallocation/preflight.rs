//! Pre-flight: the last checks before a plan that passed the gates is carried out. The target
//! fits the capacity (minus reserves) and every node's bounds; no node the plan changes is down
//! or has stale data (its last successful poll is older than [`STALE_POLLS`] poll intervals);
//! every such node has an actuator and the actuator answers `check()`. Pre-flight is never
//! skipped, not even with `force`: it guards the host, not the economics.
//!
//! [`check_plan`] is pure (the controller and `GET /api/v1/plan` call it); [`check_actuators`]
//! asks each actuator and is async.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::actuators::{show, Actuator};
use crate::coordinator::NodeHealth;
use crate::resources::{Allocation, Resource};

/// A node whose last successful poll is older than this many poll intervals has stale data.
pub const STALE_POLLS: u32 = 3;

/// Slack for float sums (a plan that fits exactly must not fail on rounding).
const EPS: f64 = 1e-9;

/// What pre-flight found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Preflight {
    pub pass: bool,
    /// One sentence per problem, naming the node and resource.
    pub problems: Vec<String>,
}

impl Preflight {
    fn from(problems: Vec<String>) -> Preflight {
        Preflight {
            pass: problems.is_empty(),
            problems,
        }
    }

    /// Both parts together.
    pub fn merge(mut self, other: Preflight) -> Preflight {
        self.problems.extend(other.problems);
        self.pass = self.problems.is_empty();
        self
    }
}

/// What pre-flight needs to know about one node.
#[derive(Clone)]
pub struct NodeFacts {
    pub poll_interval: Duration,
    /// `[min, max]` per resource, from the optimization rules.
    pub bounds: BTreeMap<Resource, (f64, f64)>,
    pub actuator: Option<Arc<dyn Actuator>>,
}

/// The nodes a change from `current` to `target` touches, sorted.
pub fn changed_nodes(
    current: &BTreeMap<String, Allocation>,
    target: &BTreeMap<String, Allocation>,
) -> Vec<String> {
    target
        .iter()
        .filter(|(n, t)| current.get(*n) != Some(*t))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The pure checks: capacity, bounds, health and freshness, an actuator per changed node.
/// `available` is capacity minus reserve per resource; `health` the coordinator's snapshot.
pub fn check_plan(
    now_ms: i64,
    current: &BTreeMap<String, Allocation>,
    target: &BTreeMap<String, Allocation>,
    available: &Allocation,
    nodes: &BTreeMap<String, NodeFacts>,
    health: &[NodeHealth],
) -> Preflight {
    let mut problems = Vec::new();
    let changed = changed_nodes(current, target);
    for r in Resource::ALL {
        // Nodes absent from the target keep what they hold.
        let mut total_now = 0.0;
        let mut total_then = 0.0;
        for (n, a) in current {
            total_now += a.get(r);
            total_then += target.get(n).unwrap_or(a).get(r);
        }
        for (n, a) in target {
            if !current.contains_key(n) {
                total_then += a.get(r);
            }
        }
        // A host already over capacity (a config changed under it) may still shrink.
        if total_then > available.get(r) * (1.0 + EPS) + EPS && total_then > total_now + EPS {
            problems.push(format!(
                "{}: the nodes would hold {} together, more than the {} available (capacity minus reserve)",
                r.key(),
                show(r, total_then),
                show(r, available.get(r))
            ));
        }
    }
    for n in &changed {
        let Some(t) = target.get(n) else { continue };
        for r in Resource::ALL {
            let v = t.get(r);
            if !(v.is_finite() && v >= 0.0) {
                problems.push(format!(
                    "{n}: {} = {v} is not a finite amount of 0 or more",
                    r.key()
                ));
            }
        }
        let Some(facts) = nodes.get(n) else {
            problems.push(format!("{n}: not a configured node"));
            continue;
        };
        let before = current.get(n);
        for (r, (lo, hi)) in &facts.bounds {
            let v = t.get(*r);
            // Only a resource the plan changes is held to the bounds: a node configured
            // outside them is not frozen for its other resources.
            if before.is_some_and(|b| b.get(*r) == v) {
                continue;
            }
            if v < lo * (1.0 - EPS) - EPS || v > hi * (1.0 + EPS) + EPS {
                problems.push(format!(
                    "{n}: {} = {} is outside the bounds [{}, {}]",
                    r.key(),
                    show(*r, v),
                    show(*r, *lo),
                    show(*r, *hi)
                ));
            }
        }
        if facts.actuator.is_none() {
            problems.push(format!(
                "{n}: no actuator is configured, so its allocation cannot be changed"
            ));
        }
        match health.iter().find(|h| &h.name == n) {
            None => problems.push(format!("{n}: the coordinator does not poll this node")),
            Some(h) if !h.up => {
                let why = h
                    .last_error
                    .as_ref()
                    .map(|e| format!(" ({}: {})", e.reason, e.message))
                    .unwrap_or_default();
                problems.push(format!(
                    "{n}: the node is down{why}; its allocation is frozen until it answers again"
                ));
            }
            Some(h) => {
                let max_age = facts.poll_interval.as_millis() as i64 * STALE_POLLS as i64;
                match h.last_success_ms {
                    None => problems.push(format!("{n}: the node has never answered a poll")),
                    Some(t) if now_ms - t > max_age => problems.push(format!(
                        "{n}: its data is stale: last successful poll {} s ago, more than {STALE_POLLS} poll intervals ({} s)",
                        (now_ms - t) / 1000,
                        max_age / 1000
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    Preflight::from(problems)
}

/// Asks the actuator of every changed node whether it can act now.
pub async fn check_actuators(changed: &[String], nodes: &BTreeMap<String, NodeFacts>) -> Preflight {
    let mut problems = Vec::new();
    for n in changed {
        if let Some(a) = nodes.get(n).and_then(|f| f.actuator.as_ref()) {
            if let Err(e) = a.check(n).await {
                problems.push(e.to_string());
            }
        }
    }
    Preflight::from(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::LastError;

    const T0: i64 = 1_767_225_600_000;

    fn a(cpu: f64, mem: f64) -> Allocation {
        Allocation {
            cpu_cores: cpu,
            memory_bytes: mem,
            ..Default::default()
        }
    }

    fn health(name: &str, up: bool, last: Option<i64>) -> NodeHealth {
        NodeHealth {
            name: name.into(),
            protocol: "test".into(),
            up,
            polled: true,
            last_success_ms: last,
            consecutive_failures: if up { 0 } else { 3 },
            last_error: (!up).then(|| LastError {
                reason: "refused".into(),
                message: "connection refused".into(),
            }),
            degraded: None,
        }
    }

    fn facts(bounds: &[(Resource, (f64, f64))]) -> NodeFacts {
        struct Nop;
        impl Actuator for Nop {
            fn kind(&self) -> &'static str {
                "nop"
            }
            fn check<'a>(&'a self, _: &'a str) -> crate::actuators::ActFuture<'a> {
                Box::pin(async { Ok(()) })
            }
            fn apply<'a>(
                &'a self,
                _: &'a str,
                _: &'a Allocation,
            ) -> crate::actuators::ActFuture<'a> {
                Box::pin(async { Ok(()) })
            }
            fn verify<'a>(
                &'a self,
                _: &'a str,
                _: &'a Allocation,
            ) -> crate::actuators::ActFuture<'a> {
                Box::pin(async { Ok(()) })
            }
            fn undo<'a>(
                &'a self,
                _: &'a str,
                _: &'a Allocation,
            ) -> crate::actuators::ActFuture<'a> {
                Box::pin(async { Ok(()) })
            }
        }
        NodeFacts {
            poll_interval: Duration::from_secs(5),
            bounds: bounds.iter().copied().collect(),
            actuator: Some(Arc::new(Nop)),
        }
    }

    fn setup() -> (
        BTreeMap<String, Allocation>,
        BTreeMap<String, NodeFacts>,
        Vec<NodeHealth>,
    ) {
        let current = [("a".into(), a(4.0, 8e9)), ("b".into(), a(2.0, 4e9))].into();
        let nodes = [
            ("a".to_string(), facts(&[(Resource::CpuCores, (1.0, 6.0))])),
            ("b".to_string(), facts(&[])),
        ]
        .into();
        let h = vec![
            health("a", true, Some(T0 - 5_000)),
            health("b", true, Some(T0)),
        ];
        (current, nodes, h)
    }

    const AVAIL: Allocation = Allocation {
        cpu_cores: 6.0,
        memory_bytes: 12e9,
        disk_bytes: 0.0,
        bandwidth_bytes_per_second: 0.0,
    };

    #[test]
    fn a_plan_that_fits_passes() {
        let (current, nodes, h) = setup();
        let target = [("a".into(), a(2.0, 8e9)), ("b".into(), a(4.0, 4e9))].into();
        let p = check_plan(T0, &current, &target, &AVAIL, &nodes, &h);
        assert!(p.pass, "{:?}", p.problems);
    }

    #[test]
    fn capacity_bounds_health_and_staleness() {
        let (current, nodes, mut h) = setup();
        // a gets 7 cores (over its bound of 6), b keeps 2: 9 > 6 available.
        let target = [("a".into(), a(7.0, 8e9)), ("b".into(), a(2.0, 2e9))].into();
        let p = check_plan(T0, &current, &target, &AVAIL, &nodes, &h);
        assert_eq!(
            p.problems,
            [
                "cpu_cores: the nodes would hold 9 together, more than the 6 available (capacity minus reserve)",
                "a: cpu_cores = 7 is outside the bounds [1, 6]",
            ]
        );
        h[1] = health("b", false, Some(T0 - 60_000));
        let p = check_plan(T0, &current, &target, &AVAIL, &nodes, &h);
        assert!(p.problems.contains(&"b: the node is down (refused: connection refused); its allocation is frozen until it answers again".to_string()), "{:?}", p.problems);
        h[1] = health("b", true, Some(T0 - 16_000));
        let p = check_plan(T0, &current, &target, &AVAIL, &nodes, &h);
        assert!(p.problems.iter().any(|m| m.starts_with("b: its data is stale: last successful poll 16 s ago, more than 3 poll intervals (15 s)")), "{:?}", p.problems);
    }

    #[test]
    fn an_unchanged_node_is_not_checked() {
        let (current, nodes, mut h) = setup();
        h[1] = health("b", false, None);
        let target = [("a".into(), a(3.0, 8e9)), ("b".into(), a(2.0, 4e9))].into();
        assert!(check_plan(T0, &current, &target, &AVAIL, &nodes, &h).pass);
    }
}

//! Actuator kind `sim`: changes a node's allocation through its adapter's
//! [`Allocatable`](crate::adapters::Allocatable) side (the sim node takes it at once) and
//! verifies by polling the adapter, as for a real node. Config: `actuator: {kind: sim}`.

use std::sync::Arc;

use super::{verify_by_polling, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::Allocation;

pub struct SimActuator {
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
}

impl SimActuator {
    /// Fails when the adapter has no allocatable side: a config that names this actuator for
    /// such a node is wrong, and saying so at start beats failing at the first move.
    pub fn new(adapter: Arc<dyn Adapter>, verify: VerifySpec) -> Result<Self, ActuatorError> {
        if adapter.allocatable().is_none() {
            return Err(ActuatorError::unreachable(
                adapter.name(),
                "sim",
                "the node's adapter cannot change its allocation",
            ));
        }
        Ok(SimActuator { adapter, verify })
    }

    fn set<'a>(&'a self, node: &'a str, action: &'static str, to: &'a Allocation) -> ActFuture<'a> {
        Box::pin(async move {
            let Some(a) = self.adapter.allocatable() else {
                return Err(ActuatorError::failed(
                    node,
                    action,
                    "the node's adapter cannot change its allocation",
                ));
            };
            a.set_allocation(*to)
                .await
                .map_err(|e| ActuatorError::failed(node, action, e.to_string()))
        })
    }
}

impl Actuator for SimActuator {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        let ok = self.adapter.allocatable().is_some();
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(ActuatorError::unreachable(
                    node,
                    "sim",
                    "the node's adapter cannot change its allocation",
                ))
            }
        })
    }

    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        self.set(node, "apply", to)
    }

    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        Box::pin(verify_by_polling(
            self.adapter.as_ref(),
            node,
            expected,
            &self.verify,
        ))
    }

    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        self.set(node, "undo", previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::sim::market::{MarketParams, Protocol};
    use crate::adapters::sim::{SimNode, SimSpec};
    use crate::adapters::Allocatable;
    use crate::clock::ManualClock;

    fn node() -> Arc<SimNode> {
        let spec = SimSpec {
            protocol: Protocol::Golem,
            allocation: Allocation {
                cpu_cores: 2.0,
                memory_bytes: 4e9,
                disk_bytes: 1e11,
                bandwidth_bytes_per_second: 1e6,
            },
            seed: 3,
            market: MarketParams::defaults(Protocol::Golem),
            fault: None,
        };
        Arc::new(SimNode::new(
            "golem",
            &spec,
            Arc::new(ManualClock::new(1_767_225_600_000)),
        ))
    }

    #[tokio::test]
    async fn apply_verify_undo_round_trip() {
        let n = node();
        let a = SimActuator::new(n.clone(), VerifySpec::default()).unwrap();
        a.check("golem").await.unwrap();
        let before = n.allocation();
        let to = Allocation {
            cpu_cores: 5.0,
            ..before
        };
        a.apply("golem", &to).await.unwrap();
        a.verify("golem", &to).await.unwrap();
        assert_eq!(n.allocation().cpu_cores, 5.0);
        a.undo("golem", &before).await.unwrap();
        a.verify("golem", &before).await.unwrap();
        assert_eq!(n.allocation(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn verify_fails_when_the_node_reports_something_else() {
        let n = node();
        let a = SimActuator::new(n.clone(), VerifySpec::default()).unwrap();
        let other = Allocation {
            cpu_cores: 7.0,
            ..n.allocation()
        };
        let e = a.verify("golem", &other).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "node golem: verification failed after 5 polls: cpu_cores is 2 (expected 7)"
        );
    }

    #[tokio::test]
    async fn a_refused_allocation_is_an_apply_error() {
        let n = node();
        let a = SimActuator::new(n.clone(), VerifySpec::default()).unwrap();
        let bad = Allocation {
            cpu_cores: f64::NAN,
            ..n.allocation()
        };
        let e = a.apply("golem", &bad).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("node golem: apply failed: cpu_cores"),
            "{e}"
        );
    }
}

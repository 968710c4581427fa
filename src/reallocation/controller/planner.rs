//! What a planner gets from the controller ([`PlanInput`]) and the [`Planner`] it plans
//! through; the optimizer ([`OptimizerPlanner`]) is the default one. Also where node health
//! comes from ([`HealthSource`]).

use std::collections::BTreeMap;

use super::decide::Frozen;
use crate::coordinator::{HealthBoard, NodeHealth};
use crate::optimizer::{self, CurrentNode, OptimizationRules, Plan};
use crate::promql::Engine;
use crate::resources::Allocation;
use crate::tsdb::Db;

/// Where node health comes from: the coordinator's [`HealthBoard`] (tests give their own).
pub trait HealthSource: Send + Sync {
    fn snapshot(&self) -> Vec<NodeHealth>;
}

impl HealthSource for HealthBoard {
    fn snapshot(&self) -> Vec<NodeHealth> {
        HealthBoard::snapshot(self)
    }
}

/// What a planner gets: the allocations in force and the nodes that must keep theirs.
pub struct PlanInput<'a> {
    pub rules: &'a OptimizationRules,
    pub db: &'a Db,
    pub engine: &'a Engine,
    pub now_ms: i64,
    pub current: &'a [CurrentNode],
    pub host_capacity: &'a Allocation,
    /// Nodes that must keep their allocation, with the reason; a planner must leave them as
    /// they are (and count what they hold).
    pub frozen: &'a BTreeMap<String, Frozen>,
}

impl PlanInput<'_> {
    /// The optimizer's inputs: every estimator evaluated now, and the frozen nodes (held, down,
    /// stale, without actuator) moved to `left_out` with their reason, so no planner moves them.
    pub fn gather(&self) -> Result<optimizer::Inputs, String> {
        let mut inputs = optimizer::gather_inputs(
            self.rules,
            self.db,
            self.engine,
            self.now_ms,
            self.current,
            self.host_capacity,
        )
        .map_err(|e| e.to_string())?;
        let (keep, out): (Vec<_>, Vec<_>) = inputs
            .nodes
            .into_iter()
            .partition(|n| !self.frozen.contains_key(&n.node));
        inputs.nodes = keep;
        for n in out {
            inputs.left_out.push(optimizer::LeftOut {
                reason: self
                    .frozen
                    .get(&n.node)
                    .map(Frozen::to_string)
                    .unwrap_or_default(),
                node: n.node,
                allocation: n.current,
            });
        }
        Ok(inputs)
    }
}

/// Plans from the allocations in force.
pub trait Planner: Send + Sync {
    fn plan(&self, input: &PlanInput<'_>) -> Result<Plan, String>;
}

/// The optimizer: [`optimizer::gather_inputs`], frozen nodes moved to `left_out`, then
/// [`optimizer::plan`]; each plan feeds the `depin_optimizer_*` metrics when they are
/// registered.
#[derive(Default)]
pub struct OptimizerPlanner {
    metrics: Option<optimizer::OptimizerMetrics>,
}

impl OptimizerPlanner {
    /// A planner whose plans show in `registry` (expected gain, confidence, plan duration).
    pub fn with_metrics(
        registry: &prometheus::Registry,
    ) -> Result<OptimizerPlanner, prometheus::Error> {
        Ok(OptimizerPlanner {
            metrics: Some(optimizer::OptimizerMetrics::register(registry)?),
        })
    }
}

impl Planner for OptimizerPlanner {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        // Wall time on purpose: the duration metric measures our own work, not market time.
        let started = std::time::Instant::now();
        let inputs = i.gather()?;
        let plan = optimizer::plan(i.rules, &inputs);
        if let Some(m) = &self.metrics {
            m.observe(&plan, started.elapsed().as_secs_f64());
        }
        Ok(plan)
    }
}

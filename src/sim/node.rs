//! The node a scenario runs: a simulated Storj, Golem, Streamr or Grass node that earns from
//! [`crate::adapters::sim::market`] on the simulation's clock, like the `sim` node kind of `run`
//! ([`crate::adapters::sim`]), plus what a scenario adds: outages (no answer, no earnings) and
//! the switching cost of a change of allocation (USD counted per change, and a downtime in
//! which the node earns nothing). It reports its lifetime earnings (a cumulative counter).

use std::sync::{Arc, Mutex};

use crate::adapters::{
    ActuateError, ActuateFuture, Adapter, Allocatable, ExtraGauge, Health, Observation, PollError,
    PollFuture,
};

use crate::adapters::sim::market::Market;
use crate::clock::SharedClock;
use crate::resources::{Allocation, Resource};
use crate::sim::scenario::NodeSpec;

pub struct ScenarioNode {
    name: String,
    protocol: &'static str,
    token: &'static str,
    clock: SharedClock,
    spec: NodeSpec,
    state: Mutex<State>,
}

struct State {
    market: Market,
    allocation: Allocation,
    accounted_ms: i64,
    lifetime: f64,
    /// Changes of allocation so far and the switching cost they added up to (USD).
    switches: u64,
    switch_cost_usd: f64,
}

impl ScenarioNode {
    pub fn new(spec: &NodeSpec, seed: u64, clock: SharedClock) -> Arc<ScenarioNode> {
        let now = clock.now_ms();
        // One market per node, keyed by (seed, node name): the same draws whatever the path.
        let node_seed = seed ^ crate::adapters::sim::market::seed_from_name(&spec.name);
        Arc::new(ScenarioNode {
            name: spec.name.clone(),
            protocol: spec.protocol.name(),
            token: spec.protocol.token(),
            clock,
            spec: spec.clone(),
            state: Mutex::new(State {
                market: Market::new(spec.protocol, spec.market.clone(), node_seed),
                allocation: spec.allocation,
                accounted_ms: now,
                lifetime: 0.0,
                switches: 0,
                switch_cost_usd: 0.0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn advance(st: &mut State, now: i64) {
        if now > st.accounted_ms {
            let a = st.allocation;
            st.lifetime += st.market.earned(st.accounted_ms, now, &a);
            st.accounted_ms = now;
        }
    }

    /// Whether the node is in one of the scenario's outages at `t_ms`.
    pub fn in_outage(&self, t_ms: i64) -> bool {
        self.spec
            .outages
            .iter()
            .any(|&(f, t)| f <= t_ms && t_ms < t)
    }

    /// (changes of allocation, their switching cost in USD).
    pub fn switches(&self) -> (u64, f64) {
        let st = self.lock();
        (st.switches, st.switch_cost_usd)
    }

    pub fn token(&self) -> &'static str {
        self.token
    }

    /// Token units earned so far (up to `now`).
    pub fn earned_tokens(&self) -> f64 {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        Self::advance(&mut st, now);
        st.lifetime
    }

    fn observe(&self, now: i64) -> Observation {
        let mut st = self.lock();
        Self::advance(&mut st, now);
        let alloc = st.allocation;
        let usage = st.market.usage(now, &alloc);
        let mut obs = Observation {
            usage,
            allocation: alloc.map(|_, v| Some(v)),
            health: Health::Healthy,
            ..Observation::default()
        };
        obs.earnings.insert(self.token.to_string(), st.lifetime);
        obs.gauges.push(ExtraGauge {
            name: "sim_demand_ratio".into(),
            help: "Demand in the simulated market relative to its average (1 = average).".into(),
            labels: Vec::new(),
            value: st.market.demand(now),
        });
        obs
    }
}

impl Adapter for ScenarioNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        self.protocol
    }

    fn poll(&self) -> PollFuture<'_> {
        let now = self.clock.now_ms();
        if self.in_outage(now) {
            return Box::pin(std::future::ready(Err(PollError::Refused(
                "simulated outage: nothing listens".into(),
            ))));
        }
        Box::pin(std::future::ready(Ok(self.observe(now))))
    }

    fn allocatable(&self) -> Option<&dyn Allocatable> {
        Some(self)
    }
}

impl Allocatable for ScenarioNode {
    fn allocation(&self) -> Allocation {
        self.lock().allocation
    }

    fn set_allocation(&self, to: Allocation) -> ActuateFuture<'_> {
        if let Some(r) = Resource::ALL
            .into_iter()
            .find(|&r| !(to.get(r).is_finite() && to.get(r) >= 0.0))
        {
            return Box::pin(std::future::ready(Err(ActuateError::OutOfBounds {
                resource: r.key(),
                value: to.get(r),
                detail: "must be a finite number, 0 or more".into(),
            })));
        }
        let now = self.clock.now_ms();
        let mut st = self.lock();
        Self::advance(&mut st, now);
        if st.allocation != to {
            st.allocation = to;
            st.switches += 1;
            st.switch_cost_usd += self.spec.switch_cost_usd;
            st.market.add_down(now, now + self.spec.switch_downtime_ms);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

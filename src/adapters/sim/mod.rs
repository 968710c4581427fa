//! Node kind `sim`: a simulated Storj, Golem, Streamr or Grass node that earns from the market
//! model in [`crate::adapters::sim::market`] on whatever clock it is given. Its config block, validation,
//! build and runtime live here. It behaves like the real nodes where the coordinator cares:
//! cumulative earnings (Storj's restart every UTC month, as its payout estimate does), usage
//! that follows allocation and demand, an allocation that can be changed at run time, and
//! faults on demand (hang, error, refused, garbage).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::{
    ActuateError, ActuateFuture, Adapter, Allocatable, Health, Observation, PollError, PollFuture,
};

use crate::clock::SharedClock;
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::units;
use crate::schema::RawAllocation;
pub mod market;

use market::{Market, MarketParams, Protocol};

/// The validated `sim:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSpec {
    pub protocol: Protocol,
    pub allocation: Allocation,
    pub seed: u64,
    pub market: MarketParams,
    pub fault: Option<Fault>,
}

/// A misbehaviour, active from `after` (since the node was built) for `duration` (or for ever).
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub mode: FaultMode,
    pub after: Duration,
    pub duration: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Never answers: only the coordinator's timeout ends the poll.
    Hang,
    /// Answers HTTP 500.
    Error,
    /// Refuses the connection.
    Refused,
    /// Answers something that is not JSON.
    Garbage,
}

const FAULT_MODES: &str = "hang, error, refused, garbage";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    market: Option<market::RawMarket>,
    #[serde(default)]
    fault: Option<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    after: Option<Value>,
    #[serde(default)]
    duration: Option<Value>,
}

/// Validates a `sim:` block at `path` (`nodes[i].sim`); `node_path` is the node's own path,
/// `node_name` its name (the default seed).
pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<SimSpec> {
    let Some(block) = block else {
        d.error(
            node_path,
            "missing required key \"sim\" (the settings of a node of kind sim)",
        );
        return None;
    };
    let raw: RawSim = d.deserialize(path, block)?;
    let mut ok = true;
    let protocol = match raw.protocol.as_deref() {
        None => {
            d.error(path, "missing required key \"protocol\"");
            None
        }
        Some(p) => {
            let parsed = Protocol::parse(p);
            if parsed.is_none() {
                let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
                d.error(
                    &join_key(path, "protocol"),
                    format!(
                        "unknown sim protocol \"{p}\"; expected one of {}",
                        known.join(", ")
                    ),
                );
            }
            parsed
        }
    };
    let allocation = match &raw.allocation {
        None => {
            d.error(path, "missing required key \"allocation\"");
            None
        }
        Some(a) => a.validate(&join_key(path, "allocation"), Allocation::default(), d),
    };
    let mut params = protocol.map(MarketParams::defaults);
    if let (Some(m), Some(params)) = (&raw.market, params.as_mut()) {
        // Shock times are offsets from when the node is built (see `SimNode::new`).
        let errors = d.errors.len();
        params.switching = market::validate_market(m, &join_key(path, "market"), 0, params, d);
        ok &= d.errors.len() == errors;
    }
    let fault = match &raw.fault {
        None => Some(None),
        Some(f) => validate_fault(f, &join_key(path, "fault"), d).map(Some),
    };
    // From the name, so a node keeps its market when the list is reordered.
    let seed = raw
        .seed
        .unwrap_or_else(|| market::seed_from_name(node_name));
    if !ok {
        return None;
    }
    Some(SimSpec {
        protocol: protocol?,
        allocation: allocation?,
        seed,
        market: params?,
        fault: fault?,
    })
}

fn validate_fault(f: &RawFault, path: &str, d: &mut Diagnostics) -> Option<Fault> {
    let mode = match f.mode.as_deref() {
        None => {
            d.error(path, "missing required key \"mode\"");
            None
        }
        Some("hang") => Some(FaultMode::Hang),
        Some("error") => Some(FaultMode::Error),
        Some("refused") => Some(FaultMode::Refused),
        Some("garbage") => Some(FaultMode::Garbage),
        Some(other) => {
            d.error(
                &join_key(path, "mode"),
                format!("unknown fault mode \"{other}\"; expected one of {FAULT_MODES}"),
            );
            None
        }
    };
    let mut dur = |key: &str, v: &Option<Value>| -> Result<Option<Duration>, ()> {
        match v {
            None => Ok(None),
            Some(v) => units::duration(v)
                .map(Some)
                .map_err(|e| d.error(&join_key(path, key), e)),
        }
    };
    let after = dur("after", &f.after);
    let duration = dur("duration", &f.duration);
    Some(Fault {
        mode: mode?,
        after: after.ok()?.unwrap_or(Duration::ZERO),
        duration: duration.ok()?,
    })
}

/// The runtime of a simulated node.
pub struct SimNode {
    name: String,
    protocol: Protocol,
    clock: SharedClock,
    /// When the node was built; faults count from here.
    start_ms: i64,
    fault: Option<Fault>,
    seed: u64,
    /// Time without earnings after a change of allocation (a restart), ms.
    switch_downtime_ms: i64,
    state: Mutex<State>,
}

struct State {
    market: Market,
    allocation: Allocation,
    /// Earnings are accounted up to here.
    accounted_ms: i64,
    /// Since the start of the current UTC month (what a Storj node reports).
    month_total: f64,
    /// Since the node was built.
    lifetime: f64,
}

impl State {
    /// Accounts the earnings up to `now`, restarting the monthly total at each month start.
    fn advance(&mut self, now: i64) {
        while self.accounted_ms < now {
            let boundary = crate::compat::calendar::next_month_start_ms(self.accounted_ms);
            let end = now.min(boundary);
            let e = self.market.earned(self.accounted_ms, end, &self.allocation);
            self.month_total += e;
            self.lifetime += e;
            self.accounted_ms = end;
            if end == boundary {
                self.month_total = 0.0;
            }
        }
    }
}

impl SimNode {
    pub fn new(name: &str, spec: &SimSpec, clock: SharedClock) -> SimNode {
        let now = clock.now_ms();
        SimNode {
            name: name.to_string(),
            protocol: spec.protocol,
            clock,
            start_ms: now,
            fault: spec.fault.clone(),
            seed: spec.seed,
            switch_downtime_ms: spec.market.switching.downtime_ms,
            state: Mutex::new(State {
                market: Market::new(spec.protocol, spec.market.shifted(now), spec.seed),
                allocation: spec.allocation,
                accounted_ms: now,
                month_total: 0.0,
                lifetime: 0.0,
            }),
        }
    }

    /// The fault active at `now`, if any.
    fn fault_at(&self, now: i64) -> Option<FaultMode> {
        let f = self.fault.as_ref()?;
        let from = self.start_ms + f.after.as_millis() as i64;
        let until = f.duration.map(|d| from + d.as_millis() as i64);
        (now >= from && until.is_none_or(|u| now < u)).then_some(f.mode)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent numbers behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(&self, now: i64) -> Observation {
        let mut st = self.lock();
        st.advance(now);
        let reported = if self.protocol.resets_monthly() {
            st.month_total
        } else {
            st.lifetime
        };
        let alloc = st.allocation;
        let usage = st.market.usage(now, &alloc);
        let mut obs = Observation {
            usage,
            allocation: alloc.map(|_, v| Some(v)),
            health: Health::Healthy,
            ..Observation::default()
        };
        obs.earnings
            .insert(self.protocol.token().to_string(), reported);
        obs.gauges.push(super::ExtraGauge {
            name: "sim_demand_ratio".into(),
            help: "Demand in the simulated market relative to its average (1 = average).".into(),
            labels: Vec::new(),
            value: st.market.demand(now),
        });
        // The protocol's own gauges, shaped like what the real nodes expose.
        match self.protocol {
            Protocol::Storj => {
                for (i, sat) in ["us1.storj.io", "eu1.storj.io", "ap1.storj.io"]
                    .into_iter()
                    .enumerate()
                {
                    let wobble =
                        market::normal(self.seed ^ i as u64, (now / 3_600_000) as u64).abs();
                    for (name, help, v) in [
                        (
                            "storj_audit_score",
                            "Audit score per satellite, 0 to 1 (1 = every audit passed).",
                            1.0,
                        ),
                        (
                            "storj_suspension_score",
                            "Suspension (unknown audit) score per satellite, 0 to 1 (suspension below 0.6).",
                            1.0,
                        ),
                        (
                            "storj_online_score",
                            "Online score per satellite, 0 to 1.",
                            (1.0 - 0.002 * wobble).clamp(0.0, 1.0),
                        ),
                    ] {
                        obs.gauges.push(super::ExtraGauge {
                            name: name.into(),
                            help: help.into(),
                            labels: vec![("satellite".into(), sat.into())],
                            value: v,
                        });
                    }
                }
            }
            Protocol::Golem => {
                // One activity per ~2 busy cores, as small VM tasks would be.
                let busy = usage.cpu_cores.unwrap_or(0.0);
                obs.gauges.push(super::ExtraGauge {
                    name: "golem_activities".into(),
                    help: "Activities (tasks) running on the provider now.".into(),
                    labels: Vec::new(),
                    value: (busy / 2.0).floor(),
                });
            }
            Protocol::Streamr | Protocol::Grass => {}
        }
        obs
    }
}

impl Adapter for SimNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        self.protocol.name()
    }

    fn poll(&self) -> PollFuture<'_> {
        let now = self.clock.now_ms();
        match self.fault_at(now) {
            Some(FaultMode::Hang) => Box::pin(std::future::pending()),
            Some(FaultMode::Error) => Box::pin(std::future::ready(Err(PollError::HttpStatus {
                status: 500,
                detail: "simulated internal server error".into(),
            }))),
            Some(FaultMode::Refused) => Box::pin(std::future::ready(Err(PollError::Refused(
                "simulated: nothing listens".into(),
            )))),
            Some(FaultMode::Garbage) => {
                // Parse a real garbled body, so the error is the one a broken node would cause.
                let body = "<html>502 Bad Gateway</html>";
                let err = match serde_json::from_str::<serde_json::Value>(body) {
                    Ok(_) => PollError::Parse("unexpected JSON".into()),
                    Err(e) => PollError::Parse(e.to_string()),
                };
                Box::pin(std::future::ready(Err(err)))
            }
            None => Box::pin(std::future::ready(Ok(self.observe(now)))),
        }
    }

    fn allocatable(&self) -> Option<&dyn Allocatable> {
        Some(self)
    }
}

impl Allocatable for SimNode {
    fn allocation(&self) -> Allocation {
        self.lock().allocation
    }

    fn set_allocation(&self, to: Allocation) -> ActuateFuture<'_> {
        let bad = crate::resources::Resource::ALL
            .into_iter()
            .find(|&r| !(to.get(r).is_finite() && to.get(r) >= 0.0));
        if let Some(r) = bad {
            return Box::pin(std::future::ready(Err(ActuateError::OutOfBounds {
                resource: r.key(),
                value: to.get(r),
                detail: "must be a finite number, 0 or more".into(),
            })));
        }
        let now = self.clock.now_ms();
        let mut st = self.lock();
        // Earnings up to now were made with the old allocation.
        st.advance(now);
        if st.allocation != to && self.switch_downtime_ms > 0 {
            st.market.add_down(now, now + self.switch_downtime_ms);
        }
        st.allocation = to;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Builds a sim node (used by [`super::build`]).
pub fn build(name: &str, spec: &SimSpec, clock: SharedClock) -> Arc<SimNode> {
    Arc::new(SimNode::new(name, spec, clock))
}

impl super::kind::NodeSpec for SimSpec {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn protocol(&self) -> &str {
        self.protocol.name()
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        Some(self.allocation)
    }

    fn tokens(&self) -> Vec<String> {
        vec![self.protocol.token().to_string()]
    }

    fn build(
        &self,
        name: &str,
        clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        build(name, self, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn spec(p: Protocol, fault: Option<Fault>) -> SimSpec {
        SimSpec {
            protocol: p,
            allocation: Allocation {
                cpu_cores: 4.0,
                memory_bytes: 8e9,
                disk_bytes: 2e12,
                bandwidth_bytes_per_second: 5e6,
            },
            seed: 1,
            market: MarketParams::defaults(p),
            fault,
        }
    }

    fn poll_now(n: &SimNode) -> Result<Observation, PollError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), n.poll()).await })
            .unwrap_or(Err(PollError::Timeout(Duration::from_millis(50))))
    }

    #[test]
    fn the_config_reaches_every_market_key_of_the_scenarios() {
        // One set of keys: weekly cycle, shocks and switching in `nodes[i].sim.market` of
        // `run` mean what they mean in a scenario; shock times count from the node's start.
        let text = r#"
protocol: streamr
allocation: {bandwidth_bytes_per_second: 3MB}
market:
  rate_per_hour: 10
  weekly_amplitude: 0.3
  peak_weekday: 5
  noise: 0
  drift: 0
  daily_amplitude: 0
  shocks: [{at: 2h, demand: 0.2}]
  switching: {downtime: 30m}
"#;
        let mut d = Diagnostics::new(crate::schema::diag::PosIndex::build(text));
        let v: Value = serde_yaml::from_str(text).unwrap();
        let spec = validate(Some(v), "nodes[0].sim", "nodes[0]", "s", &mut d).unwrap();
        assert!(d.errors.is_empty(), "{:?}", d.errors.len());
        assert_eq!(spec.market.weekly_amplitude, 0.3);
        assert_eq!(spec.market.peak_weekday, 5.0);
        assert_eq!(spec.market.switching.downtime_ms, 1_800_000);
        let clock = ManualClock::new(T0);
        let n = SimNode::new("s", &spec, Arc::new(clock.clone()));
        let earned = |n: &SimNode| poll_now(n).unwrap().earnings["DATA"];
        clock.advance(3_600_000);
        let first_hour = earned(&n);
        clock.advance(2 * 3_600_000);
        // Hour 2 earned as hour 1 (flat market); hour 3, after the shock at 2h, a fifth of it,
        // give or take the weekly cycle.
        let third_hour = earned(&n) - 2.0 * first_hour;
        assert!(
            (third_hour / first_hour - 0.2).abs() < 0.05,
            "{first_hour} then {third_hour}"
        );
        // A change of allocation costs 30 minutes without earnings.
        let before = earned(&n);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut to = spec.allocation;
        to.bandwidth_bytes_per_second = 4e6;
        rt.block_on(crate::adapters::Allocatable::set_allocation(&n, to))
            .unwrap();
        clock.advance(1_800_000);
        assert_eq!(earned(&n), before, "earned during the switching downtime");
        clock.advance(600_000);
        assert!(earned(&n) > before);
        // Errors name the key path.
        let bad: Value = serde_yaml::from_str(
            "protocol: golem\nallocation: {cpu_cores: 1}\nmarket: {peak_weekday: 9, shocks: [{at: soon, demand: 1}]}",
        )
        .unwrap();
        let mut d = Diagnostics::new(Default::default());
        assert!(validate(Some(bad), "nodes[0].sim", "nodes[0]", "g", &mut d).is_none());
        assert_eq!(d.errors.len(), 2);
    }

    #[test]
    fn earnings_accumulate_between_polls() {
        let clock = ManualClock::new(T0);
        let n = SimNode::new("g", &spec(Protocol::Golem, None), Arc::new(clock.clone()));
        clock.advance(3_600_000);
        let a = poll_now(&n).unwrap().earnings["GLM"];
        clock.advance(3_600_000);
        let b = poll_now(&n).unwrap().earnings["GLM"];
        assert!(a > 0.0 && b > a, "{a} {b}");
    }

    #[test]
    fn storj_estimate_restarts_each_month() {
        let clock = ManualClock::new(T0 + 30 * 86_400_000);
        let n = SimNode::new("s", &spec(Protocol::Storj, None), Arc::new(clock.clone()));
        clock.advance(20 * 3_600_000); // Jan 31, 20:00
        let before = poll_now(&n).unwrap().earnings["STORJ"];
        clock.advance(5 * 3_600_000); // Feb 1, 01:00
        let after = poll_now(&n).unwrap().earnings["STORJ"];
        assert!(
            after < before,
            "the February estimate starts again: {before} → {after}"
        );
        assert!(after > 0.0);
    }

    #[test]
    fn storj_reports_audit_suspension_and_online_scores_per_satellite() {
        let clock = ManualClock::new(T0);
        let n = SimNode::new("s", &spec(Protocol::Storj, None), Arc::new(clock));
        let o = poll_now(&n).unwrap();
        for name in [
            "storj_audit_score",
            "storj_suspension_score",
            "storj_online_score",
        ] {
            let sats: Vec<&str> = o
                .gauges
                .iter()
                .filter(|g| g.name == name)
                .map(|g| g.labels[0].1.as_str())
                .collect();
            assert_eq!(
                sats,
                ["us1.storj.io", "eu1.storj.io", "ap1.storj.io"],
                "{name}"
            );
        }
    }

    #[test]
    fn faults_start_after_and_end() {
        let clock = ManualClock::new(T0);
        let fault = Fault {
            mode: FaultMode::Garbage,
            after: Duration::from_secs(30),
            duration: Some(Duration::from_secs(60)),
        };
        let n = SimNode::new(
            "x",
            &spec(Protocol::Grass, Some(fault)),
            Arc::new(clock.clone()),
        );
        assert!(poll_now(&n).is_ok());
        clock.advance(30_000);
        assert_eq!(poll_now(&n).unwrap_err().reason(), "parse");
        clock.advance(60_000);
        assert!(poll_now(&n).is_ok());
    }

    #[test]
    fn hang_never_answers() {
        let clock = ManualClock::new(T0);
        let fault = Fault {
            mode: FaultMode::Hang,
            after: Duration::ZERO,
            duration: None,
        };
        let n = SimNode::new("x", &spec(Protocol::Streamr, Some(fault)), Arc::new(clock));
        assert_eq!(poll_now(&n).unwrap_err().reason(), "timeout");
    }

    #[test]
    fn more_bandwidth_earns_more_after_set_allocation() {
        let clock = ManualClock::new(T0);
        let n1 = SimNode::new("a", &spec(Protocol::Streamr, None), Arc::new(clock.clone()));
        let n2 = SimNode::new("b", &spec(Protocol::Streamr, None), Arc::new(clock.clone()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut more = n2.allocation();
        more.bandwidth_bytes_per_second *= 4.0;
        rt.block_on(n2.set_allocation(more)).unwrap();
        assert_eq!(n2.allocation().bandwidth_bytes_per_second, 20e6);
        clock.advance(24 * 3_600_000);
        let e1 = poll_now(&n1).unwrap().earnings["DATA"];
        let e2 = poll_now(&n2).unwrap().earnings["DATA"];
        assert!(e2 > e1, "{e1} {e2}");
        let bad = Allocation {
            cpu_cores: -1.0,
            ..more
        };
        assert!(rt.block_on(n2.set_allocation(bad)).is_err());
    }
}

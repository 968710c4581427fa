//! The optimizer's real plan through the reallocation engine: rules parsed from YAML, the LP's
//! plan gated, pre-flighted (bounds from the rules) and carried out on sim nodes through the
//! actuators the rules name; the nodes it changed are then held, so the next round keeps them
//! out of the plan. Estimates are given by hand (what `gather_inputs` would read from the
//! tsdb), so the test does not depend on PromQL history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use depin_orcha::adapters::sim::{SimNode, SimSpec};
use depin_orcha::adapters::{Adapter, Allocatable};
use depin_orcha::clock::{Clock, ManualClock, SharedClock};
use depin_orcha::config::Config;
use depin_orcha::coordinator::NodeHealth;
use depin_orcha::optimizer::{self, Inputs, LeftOut, NodeInputs, OptimizationRules, Plan};
use depin_orcha::promql::Engine;
use depin_orcha::reallocation::controller::ControllerParts;
use depin_orcha::reallocation::{
    controlled_nodes, Controller, ControllerOptions, HealthSource, History, PlanInput, Planner,
};
use depin_orcha::resources::Resources;
use depin_orcha::tsdb::Db;

const T0: i64 = 1_767_225_600_000;

const RULES: &str = r#"
interval: 60s
gates:
  min_improvement: 5%
  min_confidence: 0.7
  max_reallocations_per_hour: 4
  min_hold: 1h
nodes:
  golem:
    value_per_hour: 'vector(1)'
    response:
      cpu_cores: {model: curve, points: [[0, 0], [8, 1]]}
    bounds: {cpu_cores: [1, 6]}
    actuator: sim
  storj:
    value_per_hour: 'vector(1)'
    response:
      cpu_cores: {model: curve, points: [[0, 0], [1, 0.9], [8, 1]]}
    bounds: {cpu_cores: [1, 6]}
    actuator: sim
"#;

const CONFIG: &str = r#"
host:
  capacity: {cpu_cores: 6, memory_bytes: 16GiB, disk_bytes: 2TB, bandwidth_bytes_per_second: 100MB}
prices: {GLM: 0.3, STORJ: 0.4}
nodes:
  - name: golem
    kind: sim
    sim: {protocol: golem, allocation: {cpu_cores: 2, memory_bytes: 4GiB, disk_bytes: 100GB, bandwidth_bytes_per_second: 1MB}}
  - name: storj
    kind: sim
    sim: {protocol: storj, allocation: {cpu_cores: 4, memory_bytes: 4GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}
"#;

/// The estimates `gather_inputs` would find: each node earns 1 USD/h now, steadily.
struct HandEstimates;

impl Planner for HandEstimates {
    fn plan(&self, i: &PlanInput<'_>) -> Result<Plan, String> {
        let mut inputs = Inputs {
            ts_ms: i.now_ms,
            host_capacity: *i.host_capacity,
            nodes: Vec::new(),
            left_out: Vec::new(),
        };
        for c in i.current {
            if let Some(why) = i.frozen.get(&c.node) {
                inputs.left_out.push(LeftOut {
                    node: c.node.clone(),
                    allocation: c.allocation,
                    reason: why.to_string(),
                });
                continue;
            }
            inputs.nodes.push(NodeInputs {
                node: c.node.clone(),
                protocol: c.protocol.clone(),
                current: c.allocation,
                value_per_hour: 1.0,
                demand: 1.0,
                usage: Resources::default(),
                demand_cap: Resources::default(),
                cv: Some(0.0),
                history_samples: 12,
                confidence: 1.0,
            });
        }
        Ok(optimizer::plan(i.rules, &inputs))
    }
}

struct AllUp(ManualClock, Vec<String>);
impl HealthSource for AllUp {
    fn snapshot(&self) -> Vec<NodeHealth> {
        self.1
            .iter()
            .map(|n| NodeHealth {
                name: n.clone(),
                protocol: n.clone(),
                up: true,
                polled: true,
                last_success_ms: Some(self.0.now_ms()),
                consecutive_failures: 0,
                last_error: None,
                degraded: None,
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn the_lp_plan_is_gated_applied_and_then_held() {
    let rules: OptimizationRules =
        optimizer::parse_str(RULES, "test.yml").unwrap_or_else(|e| panic!("{e}"));
    let config: Config =
        depin_orcha::config::parse_str(CONFIG, "test.yml").unwrap_or_else(|e| panic!("{e}"));
    let clock = ManualClock::new(T0);
    let shared: SharedClock = Arc::new(clock.clone());
    let mut sims: BTreeMap<String, Arc<SimNode>> = BTreeMap::new();
    for n in &config.nodes {
        let Some(spec) = n.kind.as_any().downcast_ref::<SimSpec>() else {
            panic!("the test config has sim nodes only")
        };
        sims.insert(
            n.name.clone(),
            Arc::new(SimNode::new(&n.name, spec, shared.clone())),
        );
    }
    let adapters: Vec<Arc<dyn Adapter>> = sims
        .values()
        .map(|s| s.clone() as Arc<dyn Adapter>)
        .collect();
    let (nodes, warnings) = controlled_nodes(&config, &rules, &adapters);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(nodes.iter().all(|n| n.actuator.is_some()));
    let registry = prometheus::Registry::new();
    let controller = Controller::new(ControllerParts {
        rules,
        options: ControllerOptions {
            dry_run: false,
            rollback_margin: 0.1,
            host_capacity: config.host.capacity,
        },
        nodes,
        planner: Box::new(HandEstimates),
        health: Arc::new(AllUp(clock.clone(), sims.keys().cloned().collect())),
        db: Arc::new(Db::in_memory()),
        engine: Engine::default(),
        clock: shared,
        history: History::in_memory(),
        registry: registry.clone(),
    })
    .unwrap();

    let e = controller.tick().await.unwrap();
    assert!(e.gates.pass, "{:?}", e.gates.blocking());
    assert!(e.preflight.pass, "{:?}", e.preflight.problems);
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}\n{}",
        e.decision,
        e.plan
    );
    // Golem earns linearly with cores, storj is saturated above one core: cores go to golem,
    // storj keeps the minimum of its bounds.
    let golem = sims["golem"].allocation().cpu_cores;
    let storj = sims["storj"].allocation().cpu_cores;
    assert!(
        (golem - 5.0).abs() < 1e-6 && (storj - 1.0).abs() < 1e-6,
        "{golem} {storj}"
    );
    assert_eq!(
        e.steps[0].node, "storj",
        "the release comes first: {:?}",
        e.steps
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("depin_gate_verdict{gate=\"min_improvement\"} 1"),
        "{text}"
    );

    // Both nodes are held now: the next round plans without them and changes nothing.
    clock.advance(60_000);
    let e = controller.tick().await.unwrap();
    assert!(e.steps.is_empty(), "{}", e.decision);
    let frozen: BTreeSet<&str> = e.frozen.keys().map(String::as_str).collect();
    assert_eq!(frozen, BTreeSet::from(["golem", "storj"]));
    assert_eq!(sims["golem"].allocation().cpu_cores, golem);
    // The report a person reads names the verdicts and the hold.
    let report = depin_orcha::reallocation::PlanReport { evaluation: e }.to_string();
    assert!(
        report.contains("golem: held until 2026-01-01T01:00:00Z"),
        "{report}"
    );
}

//! The optimizer end to end on the shipped `rules/optimization.yml`: the demo's four nodes earn
//! from the simulator's market for three hours, their series go into a tsdb under the names the
//! coordinator writes, then the estimators are evaluated and a plan is made. The plan must be
//! one a person would accept: every node modelled, the unpriced Grass bandwidth given to nodes
//! that earn USD, no bound or capacity broken, and a gain that the market itself (not only the
//! model) confirms.

use std::path::Path;

use depin_orcha::adapters::sim::market::{Market, MarketParams, Protocol};
use depin_orcha::labels::Labels;
use depin_orcha::optimizer::{self, CurrentNode};
use depin_orcha::promql::Engine;
use depin_orcha::resources::{Allocation, Resource, Resources};
use depin_orcha::tsdb::Db;

const GIB: f64 = 1073741824.0;
const T0: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z: demand rising towards the peaks
const STEP_MS: i64 = 15_000;
const HOURS: i64 = 3;

fn alloc(cpu: f64, mem: f64, disk: f64, bw: f64) -> Allocation {
    Resources {
        cpu_cores: cpu,
        memory_bytes: mem,
        disk_bytes: disk,
        bandwidth_bytes_per_second: bw,
    }
}

/// The demo config's nodes (src/config/demo.yml), its prices and host.
fn demo_nodes() -> Vec<(Protocol, Allocation, f64)> {
    vec![
        (Protocol::Storj, alloc(1.0, GIB, 1.5e12, 5e6), 0.45),
        (Protocol::Golem, alloc(5.0, 10.0 * GIB, 100e9, 2e6), 0.30),
        (Protocol::Streamr, alloc(1.0, 2.0 * GIB, 10e9, 3e6), 0.03),
        (Protocol::Grass, alloc(0.5, GIB, 1e9, 2e6), 0.0),
    ]
}

fn host() -> Allocation {
    alloc(8.0, 16.0 * GIB, 2e12, 12.5e6)
}

fn labels(name: &str, node: &str, protocol: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("node", node), ("protocol", protocol)])
}

/// Three hours of the demo's series, as the coordinator would have written them.
fn simulated_db() -> Db {
    let db = Db::in_memory();
    for (i, (p, a, price)) in demo_nodes().into_iter().enumerate() {
        let mut m = Market::new(p, MarketParams::defaults(p), 1000 + i as u64);
        let name = p.name();
        let mut usd = 0.0;
        let mut t = T0 - HOURS * 3_600_000;
        while t <= T0 {
            usd += m.earned(t - STEP_MS, t, &a) * price;
            let put = |metric: &str, v: f64| {
                db.append(&labels(metric, name, name), t, v)
                    .expect("append in order");
            };
            put("depin_earnings_usd_total", usd);
            put("depin_sim_demand_ratio", m.demand(t));
            let u = m.usage(t, &a);
            for r in Resource::ALL {
                put(&format!("depin_allocation_{}", r.key()), a.get(r));
                if let Some(v) = u.get(r) {
                    put(&format!("depin_usage_{}", r.key()), v);
                }
            }
            t += STEP_MS;
        }
    }
    db
}

fn shipped_rules() -> optimizer::OptimizationRules {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/optimization.yml");
    optimizer::load_file(&path).unwrap_or_else(|e| panic!("shipped rules invalid:\n{e}"))
}

fn current() -> Vec<CurrentNode> {
    demo_nodes()
        .into_iter()
        .map(|(p, a, _)| CurrentNode {
            node: p.name().into(),
            protocol: p.name().into(),
            allocation: a,
        })
        .collect()
}

#[test]
fn shipped_rules_load_without_warnings() {
    let r = shipped_rules();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // The shipped file's choices (README, "The controller"), not the code's defaults.
    assert_eq!(r.interval.as_secs(), 300);
    assert_eq!(r.gates.min_improvement, 0.01);
    for n in ["storj", "golem", "streamr", "grass"] {
        let rule = r.for_node(n, n).unwrap_or_else(|| panic!("{n} has rules"));
        assert!(rule.value_per_hour.is_some(), "{n}");
        assert!(rule.actuator.is_some(), "{n}");
    }
}

#[test]
fn demo_plan_moves_unpriced_bandwidth_and_the_market_agrees() {
    let rules = shipped_rules();
    let db = simulated_db();
    let engine = Engine::default();
    let inputs = optimizer::gather_inputs(&rules, &db, &engine, T0, &current(), &host())
        .expect("valid capacity");
    assert!(
        inputs.left_out.is_empty(),
        "every demo node has data: {:?}",
        inputs.left_out
    );
    assert_eq!(inputs.nodes.len(), 4);
    for n in &inputs.nodes {
        assert!(
            n.history_samples >= 3,
            "{}: {} points",
            n.node,
            n.history_samples
        );
        assert!(n.confidence > 0.0 && n.confidence <= 1.0, "{}", n.node);
    }
    let plan = optimizer::plan(&rules, &inputs);
    let text = plan.to_string();
    // Shown with --nocapture: what an operator reads.
    println!("{text}");
    assert!(plan.left_out.is_empty(), "{text}");
    assert!(plan.expected_gain_usd_per_hour > 0.0, "{text}");
    // Grass earns no USD: it gives bandwidth away, down to its bound at most.
    let grass = plan.target["grass"].bandwidth_bytes_per_second;
    assert!(
        (0.5e6 - 1.0..2e6).contains(&grass),
        "grass keeps {grass}\n{text}"
    );
    // Releases come before grants.
    let first_grant = plan.moves.iter().position(|m| !m.is_release());
    let last_release = plan.moves.iter().rposition(|m| m.is_release());
    if let (Some(g), Some(r)) = (first_grant, last_release) {
        assert!(r < g, "{text}");
    }
    // Bounds, steps and capacity minus reserves hold.
    let avail = rules.available(&host());
    for r in Resource::ALL {
        let total: f64 = plan.target.values().map(|a| a.get(r)).sum();
        assert!(
            total <= avail.get(r) * (1.0 + 1e-9),
            "{} {total}\n{text}",
            r.key()
        );
    }
    assert!(plan.target["golem"].cpu_cores <= 7.0 + 1e-9);
    for m in &plan.moves {
        if m.resource == Resource::CpuCores {
            assert!((m.to - m.from).abs() <= 2.0 + 1e-9, "{text}");
        }
    }
    // The market, not the model, decides whether the move earned: over the next hour the target
    // split earns more USD than the current one.
    let mut now_usd = 0.0;
    let mut then_usd = 0.0;
    for (i, (p, a, price)) in demo_nodes().into_iter().enumerate() {
        let mut m = Market::new(p, MarketParams::defaults(p), 1000 + i as u64);
        now_usd += m.earned(T0, T0 + 3_600_000, &a) * price;
        let mut m = Market::new(p, MarketParams::defaults(p), 1000 + i as u64);
        then_usd += m.earned(T0, T0 + 3_600_000, &plan.target[p.name()]) * price;
    }
    assert!(
        then_usd > now_usd,
        "market: {now_usd} USD now vs {then_usd} USD with the plan\n{text}"
    );
    // The plan reads as words and serializes for the API.
    assert!(
        text.contains("grass bandwidth_bytes_per_second: release"),
        "{text}"
    );
    let json = serde_json::to_value(&plan).expect("plan serializes");
    assert!(json["moves"][0]["resource"].is_string(), "{json}");
    assert!(json["expected_gain_usd_per_hour"].as_f64().is_some());
}

#[test]
fn a_node_without_data_is_left_out_with_the_reason() {
    let rules = shipped_rules();
    let db = simulated_db();
    let mut cur = current();
    cur.push(CurrentNode {
        node: "storj-2".into(),
        protocol: "storj".into(),
        allocation: alloc(0.0, 0.0, 100e9, 0.0),
    });
    cur.push(CurrentNode {
        node: "mystery".into(),
        protocol: "mysterium".into(),
        allocation: alloc(0.0, 0.0, 0.0, 0.0),
    });
    let inputs = optimizer::gather_inputs(&rules, &db, &Engine::default(), T0, &cur, &host())
        .expect("valid capacity");
    let reason = |n: &str| {
        inputs
            .left_out
            .iter()
            .find(|l| l.node == n)
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| panic!("{n} should be left out: {:?}", inputs.left_out))
    };
    assert!(
        reason("storj-2").contains("protocols.storj.value_per_hour returned nothing"),
        "{}",
        reason("storj-2")
    );
    assert!(
        reason("mystery").contains("no rules"),
        "{}",
        reason("mystery")
    );
    let plan = optimizer::plan(&rules, &inputs);
    // Left-out nodes keep their allocation and are named in the explanation.
    assert_eq!(plan.target["storj-2"], plan.current["storj-2"]);
    assert!(plan.to_string().contains("not planned: storj-2"));
}

#[test]
fn lp_plan_is_at_least_as_good_as_greedy_on_the_demo() {
    let rules = shipped_rules();
    let db = simulated_db();
    let inputs = optimizer::gather_inputs(&rules, &db, &Engine::default(), T0, &current(), &host())
        .expect("valid capacity");
    let lp = optimizer::plan(&rules, &inputs);
    let greedy = optimizer::plan_greedy(&rules, &inputs);
    assert!(
        lp.target_usd_per_hour >= greedy.target_usd_per_hour - 1e-9,
        "LP {} < greedy {}",
        lp.target_usd_per_hour,
        greedy.target_usd_per_hour
    );
}

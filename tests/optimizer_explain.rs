//! The plan as a person reads it and as the API serves it, on a case computed by hand.
//!
//! Two nodes share 10 MB/s of upstream. Node a earns 0.8 of its ceiling with its first 4 MB/s
//! and 0.2 more over the next 6; node b earns 0.3 with 2 MB/s and 0.4 more over the next 8.
//! Both hold 5 MB/s, and their value_per_hour estimates equal the curves there (5/6 and 0.45
//! USD/h), so the fitted scale is 1 and the model is the curves themselves. The best split
//! (steepest slopes first): a 4 MB/s, b 6 MB/s, worth 1.3 USD/h against 1.28333 now.

use depin_orcha::optimizer::{self, Inputs, NodeInputs};
use depin_orcha::resources::{Allocation, Resources};

const RULES: &str = r#"
gates:
  min_hold: 2h
nodes:
  a:
    value_per_hour: '1'
    response:
      bandwidth_bytes_per_second: {model: curve, points: [[0, 0], [4MB, 0.8], [10MB, 1]]}
    switching_cost: {usd: 0.01}
  b:
    value_per_hour: '1'
    response:
      bandwidth_bytes_per_second: {model: curve, points: [[0, 0], [2MB, 0.3], [10MB, 0.7]]}
    switching_cost: {downtime: 30m}
"#;

fn bw(v: f64) -> Allocation {
    Resources {
        bandwidth_bytes_per_second: v,
        ..Resources::default()
    }
}

fn inputs(a_now: f64, b_now: f64) -> Inputs {
    let node = |name: &str, mb: f64, v: f64| NodeInputs {
        node: name.into(),
        protocol: "test".into(),
        current: bw(mb * 1e6),
        value_per_hour: v,
        demand: 1.0,
        usage: Resources::default(),
        demand_cap: Resources::default(),
        cv: Some(0.028),
        history_samples: 12,
        confidence: 0.9,
    };
    Inputs {
        ts_ms: 0,
        host_capacity: bw(10e6),
        nodes: vec![node("a", a_now, 5.0 / 6.0), node("b", b_now, 0.45)],
        left_out: Vec::new(),
    }
}

#[test]
fn the_plan_in_words() {
    let rules = optimizer::parse_str(RULES, "t.yml").unwrap_or_else(|e| panic!("{e}"));
    let plan = optimizer::plan(&rules, &inputs(5.0, 5.0));
    let text = plan.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "Plan: 2 move(s), expected gain +0.0167 USD/h (+1.3 % of 1.2833 USD/h now), confidence 0.90.",
            "  - a bandwidth_bytes_per_second: release 1MB/s (5MB/s → 4MB/s), expected -0.0333 USD/h, confidence 0.90",
            "  - b bandwidth_bytes_per_second: grant 1MB/s (5MB/s → 6MB/s), expected +0.0500 USD/h, confidence 0.90",
            // 0.01 USD for a, 30 minutes of b's 0.45 USD/h; 2 h × 0.01667 = 0.0333 back.
            "Switching costs 0.2350 USD; over the 2 h hold the gain returns 0.0333 USD (ROI -85.8 %).",
        ],
        "{text}"
    );
    assert!(
        !plan.pays_back(1.0),
        "a 0.235 USD switch does not pay back in 2 h"
    );
    assert!((plan.improvement - 0.016667 / 1.283333).abs() < 1e-4);
}

#[test]
fn the_plan_as_json() {
    let rules = optimizer::parse_str(RULES, "t.yml").unwrap_or_else(|e| panic!("{e}"));
    let plan = optimizer::plan(&rules, &inputs(5.0, 5.0));
    let json = serde_json::to_value(&plan).expect("serializes");
    assert_eq!(json["moves"][0]["node"], "a");
    assert_eq!(json["moves"][0]["resource"], "bandwidth_bytes_per_second");
    assert_eq!(json["moves"][0]["from"], 5e6);
    assert!((json["moves"][0]["to"].as_f64().unwrap_or(0.0) - 4e6).abs() < 1.0);
    assert!(
        (json["target"]["b"]["bandwidth_bytes_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            - 6e6)
            .abs()
            < 1.0
    );
    assert!((json["switching_cost_usd"].as_f64().unwrap_or(0.0) - 0.235).abs() < 1e-9);
    // And back: the history store can read what it wrote.
    let back: optimizer::Plan = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back.moves, plan.moves);
}

#[test]
fn at_the_optimum_there_is_nothing_to_do() {
    let rules = optimizer::parse_str(RULES, "t.yml").unwrap_or_else(|e| panic!("{e}"));
    // a at 4 MB/s earns 0.8, b at 6 MB/s earns 0.5: the fitted scales stay 1.
    let mut i = inputs(4.0, 6.0);
    i.nodes[0].value_per_hour = 0.8;
    i.nodes[1].value_per_hour = 0.5;
    let plan = optimizer::plan(&rules, &i);
    assert!(plan.moves.is_empty(), "{plan}");
    assert!(plan.expected_gain_usd_per_hour.abs() < 1e-9);
    assert!(
        plan.to_string()
            .starts_with("No change: the current split earns 1.3000 USD/h"),
        "{plan}"
    );
}

//! Scenario files: every shipped scenario loads; bad input gets a clear error with file, line,
//! column and key path (golden messages).

use std::path::Path;

use depin_orcha::sim::scenario::{load_file, parse_str};

const GOOD: &str = "\
days: 2
host:
  capacity: { cpu_cores: 8, memory_bytes: 16GiB, disk_bytes: 2TB, bandwidth_bytes_per_second: 12.5MB }
prices:
  GLM: 0.3
nodes:
  - name: golem
    protocol: golem
    allocation: { cpu_cores: 4, memory_bytes: 8GiB }
";

fn errors(text: &str) -> Vec<String> {
    match parse_str(text, "bad.yml", "bad") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.lines(),
    }
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for name in [
        "steady",
        "demand-shift",
        "noisy",
        "daily-cycle",
        "node-outage",
        "price-crash",
        "narrow-uplink",
        "demand-vanishes",
        "regime-flips",
        "starved-start",
    ] {
        let s =
            load_file(&dir.join(format!("{name}.yml"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.name, name);
        assert_eq!(s.days, 30.0);
        assert_eq!(s.poll_interval.as_secs(), 5);
        assert_eq!(s.nodes.len(), 4);
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn a_good_scenario_parses_with_defaults() {
    let s = parse_str(GOOD, "good.yml", "good").unwrap();
    assert_eq!(s.days, 2.0);
    assert_eq!(s.seed, 1);
    assert_eq!(s.nodes[0].allocation.cpu_cores, 4.0);
    assert_eq!(s.price("GLM", s.start_ms + 1), 0.3);
    assert_eq!(
        s.price("STORJ", s.start_ms),
        0.0,
        "a token without a price earns 0 USD"
    );
}

#[test]
fn price_path_is_piecewise() {
    let text = GOOD.replace(
        "  GLM: 0.3\n",
        "  GLM: [{at: 0s, usd: 0.3}, {at: 1d, usd: 0.1}]\n",
    );
    let s = parse_str(&text, "p.yml", "p").unwrap();
    assert_eq!(s.price("GLM", s.start_ms + 3_600_000), 0.3);
    assert_eq!(s.price("GLM", s.start_ms + 86_400_000), 0.1);
}

#[test]
fn outage_of_a_missing_node() {
    let text = format!("{GOOD}outages:\n  - {{ node: storj, from: 1d, to: 1d2h }}\n");
    assert_eq!(
        errors(&text),
        vec!["bad.yml:11:7: outages[0].node: no node named \"storj\"; the nodes are golem"]
    );
}

#[test]
fn allocations_over_capacity() {
    let text = GOOD.replace(
        "cpu_cores: 4, memory_bytes: 8GiB",
        "cpu_cores: 12, memory_bytes: 8GiB",
    );
    assert_eq!(
        errors(&text),
        vec!["bad.yml:3:15: host.capacity.cpu_cores: the starting allocations of the nodes need 12 CPU cores together, more than the host's capacity 8"]
    );
}

#[test]
fn negative_price() {
    let text = GOOD.replace(
        "  GLM: 0.3\n",
        "  GLM: [{at: 0s, usd: 0.3}, {at: 5d, usd: -0.1}]\n",
    );
    assert_eq!(
        errors(&text),
        vec!["bad.yml:5:38: prices.GLM[1].usd: must be a number, 0 or more; got -0.1"]
    );
    let text = GOOD.replace("  GLM: 0.3\n", "  GLM: -2\n");
    assert_eq!(
        errors(&text),
        vec!["bad.yml:5:3: prices.GLM: must be a price in USD, 0 or more; got -2"]
    );
}

#[test]
fn every_error_at_once() {
    let text = GOOD
        .replace(
            "protocol: golem",
            "protocol: golem\n    market: { noise: 2, shocks: [{at: 1x, demand: 1}] }",
        )
        .replace("days: 2", "days: 2\ncolour: blue");
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("bad.yml:2:1: colour: unknown key \"colour\""),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("bad.yml:10:15: nodes[0].market.noise: must be between 0 and 1, got 2"),
        "{e:#?}"
    );
    assert!(
        e[2].contains("nodes[0].market.shocks[0].at: invalid duration \"1x\""),
        "{e:#?}"
    );
}

//! Short simulations of every shipped scenario through the library (half a day, a poll a
//! minute, so the debug build stays quick): the gates are never exceeded, the oracle is the
//! ceiling, the static baseline never moves, the same seed gives the same report; and the
//! binary's `simulate --output json` has the documented shape.

use std::path::PathBuf;
use std::time::Duration;

use depin_orcha::sim::driver::{simulate, Options, Report};
use depin_orcha::sim::scenario::load_file;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options(days: f64, seed: Option<u64>) -> Options {
    let rules = depin_orcha::optimizer::load_file(&root().join("rules/optimization.yml"))
        .expect("shipped optimization rules load");
    Options {
        days: Some(days),
        seed,
        poll_interval: Some(Duration::from_secs(60)),
        rules,
        rule_files: vec![
            root().join("rules/prometheus/recording.yml"),
            root().join("rules/prometheus/alerts.yml"),
        ],
        progress: None,
    }
}

fn run(name: &str, days: f64, seed: Option<u64>) -> Report {
    let sc = load_file(&root().join(format!("scenarios/{name}.yml"))).expect("scenario loads");
    simulate(&sc, &options(days, seed)).expect("simulation runs")
}

fn check(name: &str) -> Report {
    check_days(name, 0.5)
}

/// [`check`] over `days`.
fn check_days(name: &str, days: f64) -> Report {
    let r = run(name, days, None);
    assert!(
        r.gates.ok,
        "{name}: gates exceeded: {:?}",
        r.gates.violations
    );
    assert!(r.gates.most_in_an_hour <= r.gates.max_reallocations_per_hour as usize);
    assert!(r.gates.most_in_an_hour <= r.gates.most_in_a_day);
    assert!(r.gates.most_in_a_day <= r.gates.most_in_30_days);
    assert!(r.gates.most_in_30_days <= r.reallocations as usize);
    if let Some(limit) = r.gates.max_reallocations_per_day {
        assert!(r.gates.most_in_a_day <= limit as usize);
    }
    assert!(
        r.gates_greedy.ok,
        "{name}: greedy exceeded the gates: {:?}",
        r.gates_greedy.violations
    );
    let e = &r.earned_usd;
    let oracle = e["oracle"];
    assert!(oracle > 0.0, "{name}: {e:?}");
    for k in ["depin_orcha", "greedy", "static", "daily_oracle"] {
        assert!(e[k] > 0.0, "{name}: {k} earned nothing: {e:?}");
        assert!(e[k] <= oracle * 1.001, "{name}: {k} beat the oracle: {e:?}");
    }
    assert_eq!(r.strategies["static"].reallocations, 0);
    // One allocation a day, set at midnight: no more changes than midnights in the run.
    assert!(r.strategies["daily_oracle"].reallocations <= days.floor() as u64);
    assert_eq!(r.reallocations, r.strategies["depin_orcha"].reallocations);
    // A poll a minute: 1,440 polls of each node a day.
    assert_eq!(r.polls, (1440.0 * days) as u64 * 4);
    r
}

#[test]
fn steady() {
    check("steady");
}
#[test]
fn demand_shift() {
    check("demand-shift");
}
#[test]
fn noisy() {
    check("noisy");
}
#[test]
fn daily_cycle() {
    check("daily-cycle");
}
#[test]
fn node_outage() {
    check("node-outage");
}
#[test]
fn price_crash() {
    // Two days: the learning planner moves a node's paid resources only after 12 hours
    // learned, 6 of them at the allocation in force.
    let r = check_days("price-crash", 2.0);
    // The cores Storj, Streamr and Grass are not paid for (a `weight: 0` response in the
    // shipped rules) reach Golem, up to its bound of 7, in max_step moves: the oracle's
    // allocation.
    let (_, last) = r.strategies["depin_orcha"].path.last().expect("a path");
    assert_eq!(last["golem"].cpu_cores, 7.0, "{last:?}");
    for n in ["storj", "streamr", "grass"] {
        assert!(last[n].cpu_cores <= 0.5 + 1e-9, "{n}: {last:?}");
    }
}

#[test]
fn narrow_uplink() {
    let r = check_days("narrow-uplink", 2.0);
    // Golem is not paid for bandwidth (a weight-0 response in the shipped rules): its
    // upstream goes to the nodes that are, and the contested uplink is used whole.
    let (_, last) = r.strategies["depin_orcha"].path.last().expect("a path");
    assert_eq!(last["golem"].bandwidth_bytes_per_second, 0.0, "{last:?}");
    let used: f64 = last.values().map(|a| a.bandwidth_bytes_per_second).sum();
    assert!(used > 5.4e6, "{used} B/s of 5.5 MB/s allocated: {last:?}");
}

#[test]
fn demand_vanishes() {
    check("demand-vanishes");
}
#[test]
fn regime_flips() {
    check("regime-flips");
}
#[test]
fn starved_start() {
    check("starved-start");
}

#[test]
fn same_seed_same_report() {
    let strip = |r: &Report| {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("wall_seconds");
        v
    };
    let a = run("noisy", 0.25, Some(7));
    let b = run("noisy", 0.25, Some(7));
    assert_eq!(strip(&a), strip(&b));
    let c = run("noisy", 0.25, Some(8));
    assert_ne!(
        a.earned_usd["static"], c.earned_usd["static"],
        "another seed, another market"
    );
}

#[test]
fn binary_prints_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root())
        .args([
            "simulate",
            "scenarios/steady.yml",
            "--days",
            "0.25",
            "--poll-interval",
            "60s",
            "--output",
            "json",
            "--plot",
            svg.to_str().unwrap(),
        ])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["scenario"], "steady");
    assert_eq!(v["days"], 0.25);
    for k in ["depin_orcha", "static", "greedy", "oracle", "daily_oracle"] {
        assert!(v["earned_usd"][k].is_f64(), "earned_usd.{k}: {v}");
    }
    assert!(v["fraction_of_daily_oracle"].is_f64());
    assert!(v["reallocations"].is_u64());
    assert!(v["gates"]["ok"].is_boolean());
    let drawn = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(
        drawn.starts_with("<svg") && drawn.contains("depin_orcha"),
        "an SVG with the legend"
    );
    // A bad scenario: exit 1 with file, line and key on stderr.
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "host:\n  capacity: { cpu_cores: 2 }\nnodes:\n  - { name: a, protocol: grass, allocation: { cpu_cores: 3 } }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root())
        .args(["simulate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml:2:15: host.capacity.cpu_cores: the starting allocations of the nodes need 3 CPU cores together"),
        "{err}"
    );
}

//! `simulate --random`: the market generator is deterministic for a seed, stays inside the
//! documented ranges (src/sim/random.rs, scenarios/README.md) and covers them; the binary runs
//! two short markets and prints the documented JSON.

use std::path::PathBuf;

use depin_orcha::adapters::sim::market::{MarketParams, Protocol};
use depin_orcha::resources::Resource;
use depin_orcha::sim::random::{draw, ranges as r};
use depin_orcha::sim::scenario::parse_str;

const DAY_MS: i64 = 86_400_000;
const GIB: f64 = 1073741824.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules() -> depin_orcha::optimizer::OptimizationRules {
    depin_orcha::optimizer::load_file(&root().join("rules/optimization.yml")).expect("rules load")
}

/// `x` inside `[lo, hi]`, allowing the four significant digits the files are written with.
fn within(x: f64, (lo, hi): (f64, f64), what: &str) {
    let tol = 1e-3;
    assert!(
        x >= lo * (1.0 - tol) - 1e-12 && x <= hi * (1.0 + tol) + 1e-12,
        "{what}: {x} outside [{lo}, {hi}]"
    );
}

#[test]
fn the_same_seed_draws_the_same_markets() {
    let rules = rules();
    let a = draw(1, 7, 30.0, &rules);
    let b = draw(1, 7, 30.0, &rules);
    assert_eq!(a.text, b.text);
    assert_ne!(a.text, draw(2, 7, 30.0, &rules).text, "another seed");
    assert_ne!(a.text, draw(1, 8, 30.0, &rules).text, "another market");
    // The text is the market: saved and loaded again, it gives the same scenario.
    let again = parse_str(&a.text, "again.yml", &a.scenario.name).unwrap();
    assert_eq!(
        format!("{:?}", again.nodes),
        format!("{:?}", a.scenario.nodes)
    );
    assert_eq!(again.prices, a.scenario.prices);
}

#[test]
fn drawn_markets_stay_inside_their_ranges_and_cover_them() {
    let rules = rules();
    let n = 200;
    let (mut starved, mut extra, mut no_grass, mut vanish, mut outages, mut price_steps) =
        (0, 0, 0, 0, 0, 0);
    for k in 1..=n {
        let m = draw(1, k, 30.0, &rules);
        let sc = &m.scenario;
        let what = |s: &str| format!("market {k}: {s}");
        starved += m.starved as usize;
        assert!((3..=6).contains(&sc.nodes.len()), "{}", what("nodes"));
        extra += (sc.nodes.len() > 4
            || (sc.nodes.len() == 4 && !sc.nodes.iter().any(|x| x.name == "grass")))
            as usize;
        no_grass += !sc.nodes.iter().any(|x| x.name == "grass") as usize;
        let c = sc.capacity;
        assert!(r::CPU_CORES.contains(&c.cpu_cores), "{}", what("cpu"));
        assert!(
            r::MEMORY_GIB.contains(&(c.memory_bytes / GIB)),
            "{}",
            what("memory")
        );
        assert!(
            [1e12, 2e12, 4e12].contains(&c.disk_bytes),
            "{}",
            what("disk")
        );
        within(c.bandwidth_bytes_per_second, r::UPLINK, &what("uplink"));
        for (token, base) in r::PRICES {
            let steps = &sc.prices[token];
            within(
                steps[0].1 / base,
                r::PRICE_START_FACTOR,
                &what("start price"),
            );
            for s in &steps[1..] {
                price_steps += 1;
                within(s.1 / steps[0].1, r::PRICE_STEP_FACTOR, &what("price step"));
                within(
                    s.0 as f64 / DAY_MS as f64,
                    r::EVENT_DAYS,
                    &what("price step day"),
                );
            }
        }
        let available = m.rules.available(&c);
        for res in Resource::ALL {
            let sum: f64 = sc.nodes.iter().map(|x| x.allocation.get(res)).sum();
            assert!(
                sum <= available.get(res) * (1.0 + 1e-9),
                "{}",
                what("start fits")
            );
        }
        for node in &sc.nodes {
            let d = MarketParams::defaults(node.protocol);
            let p = &node.market;
            let w = |s: &str| what(&format!("{} {s}", node.name));
            within(
                p.rate_per_hour / d.rate_per_hour,
                r::RATE_FACTOR,
                &w("rate"),
            );
            for res in Resource::ALL {
                within(
                    p.need.get(res) / d.need.get(res),
                    r::NEED_FACTOR,
                    &w("need"),
                );
                let (lo, hi) = m
                    .rules
                    .for_node(&node.name, node.protocol.name())
                    .and_then(|nr| nr.bounds.get(&res).copied())
                    .unwrap_or((0.0, f64::INFINITY));
                let a = node.allocation.get(res);
                assert!(
                    a >= lo - 1e-6 && a <= hi + 1e-6,
                    "{}: {a} not in [{lo}, {hi}]",
                    w(res.key())
                );
            }
            within(p.daily_amplitude, r::DAILY_AMPLITUDE, &w("daily amplitude"));
            within(p.peak_hour, r::PEAK_HOUR, &w("peak hour"));
            within(
                p.weekly_amplitude,
                r::WEEKLY_AMPLITUDE,
                &w("weekly amplitude"),
            );
            within(p.peak_weekday, r::PEAK_WEEKDAY, &w("peak weekday"));
            within(p.drift, r::DRIFT, &w("drift"));
            within(p.noise, r::NOISE, &w("noise"));
            for s in &p.shocks {
                let day = (s.at_ms - sc.start_ms) as f64 / DAY_MS as f64;
                within(
                    day,
                    (r::EVENT_DAYS.0, r::EVENT_DAYS.1 + r::VANISH_DAYS.1),
                    &w("shock day"),
                );
                let f = s.factor;
                let vanished = (r::VANISH_FACTOR.0..=r::VANISH_FACTOR.1 * 1.001).contains(&f);
                let returned =
                    (0.999 / r::VANISH_FACTOR.1..=1.001 / r::VANISH_FACTOR.0).contains(&f);
                let step = (r::STEP_FACTOR.0 * 0.999..=r::STEP_FACTOR.1 * 1.001).contains(&f);
                assert!(vanished || returned || step, "{}: factor {f}", w("shock"));
                vanish += vanished as usize;
            }
            if node.protocol == Protocol::Storj {
                let down = node.switch_downtime_ms as f64 / 60_000.0;
                assert!(
                    r::STORJ_DOWNTIME_MINUTES.contains(&down),
                    "{}",
                    w("downtime")
                );
                assert!(
                    r::STORJ_SWITCH_USD.contains(&node.switch_cost_usd),
                    "{}",
                    w("cost")
                );
            } else {
                assert_eq!((node.switch_downtime_ms, node.switch_cost_usd), (0, 0.0));
            }
            for (from, to) in &node.outages {
                outages += 1;
                within(
                    (from - sc.start_ms) as f64 / DAY_MS as f64,
                    r::OUTAGE_DAYS,
                    &w("outage day"),
                );
                within(
                    (to - from) as f64 / 3_600_000.0,
                    r::OUTAGE_HOURS,
                    &w("outage hours"),
                );
            }
        }
    }
    // The draws reach every kind of market the ranges describe.
    let share = |x: usize| x as f64 / n as f64;
    assert!(
        (0.2..0.4).contains(&share(starved)),
        "starved {starved} of {n}"
    );
    assert!(
        (0.1..0.3).contains(&share(no_grass)),
        "no grass {no_grass} of {n}"
    );
    assert!(extra > n as usize / 3, "extra nodes in {extra} of {n}");
    assert!(vanish > 10, "demand vanished {vanish} times");
    assert!(
        outages > 50 && price_steps > 50,
        "{outages} outages, {price_steps} price steps"
    );
}

#[test]
fn binary_runs_two_random_markets() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root())
        .args([
            "simulate",
            "--random",
            "2",
            "--seed",
            "3",
            "--days",
            "0.25",
            "--poll-interval",
            "60s",
            "--output",
            "json",
            "--save-scenarios",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["seed"], 3);
    assert_eq!(v["summary"]["markets"], 2);
    for k in ["worst", "p10", "median", "mean"] {
        assert!(v["summary"]["fraction_of_oracle"][k].is_f64(), "{k}: {v}");
        assert!(
            v["summary"]["fraction_of_daily_oracle"][k].is_f64(),
            "{k}: {v}"
        );
    }
    assert!(v["summary"]["reallocations_max"].is_u64());
    let markets = v["markets"].as_array().unwrap();
    assert_eq!(markets.len(), 2);
    for (i, m) in markets.iter().enumerate() {
        let name = format!("random-3-{}", i + 1);
        assert_eq!(m["report"]["scenario"], name.as_str());
        let f = m["report"]["fraction_of_oracle"].as_f64().unwrap();
        assert!(f > 0.0 && f <= 1.001, "{f}");
        assert!(m["report"]["gates"]["ok"].as_bool().unwrap(), "{m}");
        // The saved file is the market in the report.
        let saved = std::fs::read_to_string(dir.path().join(format!("{name}.yml"))).unwrap();
        assert_eq!(saved, m["scenario"].as_str().unwrap());
        parse_str(&saved, "saved.yml", &name).expect("a saved market loads");
    }
    // Market 2 alone, and its saved file run as a scenario (a second node of a protocol runs
    // with a copy of the first one's rule block, as in the batch), earn what it did there.
    let earned = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
            .current_dir(root())
            .args(["simulate", "--days", "0.25", "--poll-interval", "60s"])
            .args(["--output", "json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let report = if v["markets"].is_array() {
            assert_eq!(v["markets"].as_array().unwrap().len(), 1, "{v}");
            v["markets"][0]["report"].clone()
        } else {
            v
        };
        report["earned_usd"].clone()
    };
    let in_batch = &markets[1]["report"]["earned_usd"];
    assert_eq!(
        &earned(&["--random", "2", "--seed", "3", "--market", "2"]),
        in_batch
    );
    let saved = dir.path().join("random-3-2.yml");
    assert_eq!(&earned(&[saved.to_str().unwrap()]), in_batch);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root())
        .args(["simulate", "--random", "2", "--market", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--market 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A scenario and --random together are refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root())
        .args(["simulate", "scenarios/steady.yml", "--random", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

//! `depin-orcha simulate` speed: a shipped scenario for N simulated days (default 30, a 5 s
//! poll as the scenario has it) through the whole pipeline of `run` — polls, metrics, scrapes
//! into the tsdb, the shipped recording and alerting rules, the optimizer, gates and
//! reallocation — for depin-orcha and greedy (one thread each), plus the static and oracle
//! baselines.
//!
//! The baseline, measured in the same process: the same days through the metric path only
//! (polls, metrics, scrapes into the tsdb; no rules, no controller, the allocation never
//! changes). The ratio is what rules, optimizer and controller add to it. Two goals: the whole
//! simulation (four strategies) in under 30 s of wall time on two cores, and the depin-orcha
//! run alone (polls, scrapes, rules, controller with the learning planner) in under 60 CPU s.
//!
//! `cargo bench --bench simulate_30d`; `SIMULATE_DAYS=3` for a short run,
//! `SIMULATE_SCENARIO=scenarios/noisy.yml` for another scenario.

use std::path::PathBuf;
use std::time::Instant;

use depin_orcha::optimizer;
use depin_orcha::sim::{driver, scenario};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let days: f64 = std::env::var("SIMULATE_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(30.0);
    let scenario_path = std::env::var("SIMULATE_SCENARIO")
        .map(|p| root.join(p))
        .unwrap_or_else(|_| root.join("scenarios/steady.yml"));
    let sc = scenario::load_file(&scenario_path).expect("shipped scenario loads");
    let rules =
        optimizer::load_file(&root.join("rules/optimization.yml")).expect("shipped rules load");
    let opts = driver::Options {
        days: Some(days),
        seed: None,
        poll_interval: None,
        rules,
        rule_files: vec![
            root.join("rules/prometheus/recording.yml"),
            root.join("rules/prometheus/alerts.yml"),
        ],
        progress: None,
    };
    let simulated_s = days * 86_400.0;

    let baseline = driver::run_metrics_only(&sc, &opts).expect("metric path runs");
    let started = Instant::now();
    let report = driver::simulate(&sc, &opts).expect("simulation runs");
    let full = started.elapsed().as_secs_f64();

    println!(
        "{} for {days} simulated days, poll every {} s ({} polls per strategy)",
        scenario_path.display(),
        report.poll_interval_seconds,
        report.polls
    );
    println!(
        "  baseline (metric path only, one run): {baseline:.2} s wall, {:.0} simulated s per wall s",
        simulated_s / baseline
    );
    println!(
        "  simulate (depin-orcha + greedy pipelines, static, oracle): {full:.2} s wall, {:.0} simulated s per wall s; ratio to baseline {:.2}",
        simulated_s / full,
        full / baseline
    );
    let cpu: Vec<String> = report
        .cpu_seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect();
    println!("  depin-orcha run CPU seconds: {}", cpu.join(", "));
    // `scrape_gather` is part of `scrape`.
    let orcha_cpu: f64 = report
        .cpu_seconds
        .iter()
        .filter(|(k, _)| *k != "scrape_gather")
        .map(|(_, v)| v)
        .sum::<f64>()
        * 30.0
        / days;
    println!(
        "  goal: the depin-orcha run under 60 CPU s per 30 days: {orcha_cpu:.1} CPU s ({})",
        if orcha_cpu < 60.0 { "met" } else { "missed" }
    );
    println!(
        "  {:.1} % of oracle, {:+.1} % over static, {:+.1} % over greedy, {} reallocations, gates {}",
        100.0 * report.fraction_of_oracle,
        100.0 * report.gain_over_static,
        100.0 * report.gain_over_greedy,
        report.reallocations,
        if report.gates.ok { "kept" } else { "EXCEEDED" }
    );
    let per_30d = full * 30.0 / days;
    println!(
        "  goal: 30 days in under 30 s: {:.1} s per 30 days ({})",
        per_30d,
        if per_30d < 30.0 { "met" } else { "missed" }
    );
}

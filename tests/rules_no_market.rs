//! The shipped rules tell the controller nothing about the simulated market.
//!
//! `simulate` runs every node the optimization rules give an actuator through the `sim`
//! actuator, and a node without its own block takes its protocol's (the extra `storj-2` of
//! `simulate --random`), so every block of a shipped optimization rules file, under
//! `protocols:` and under `nodes:`, describes a simulated node. What a block may say is what an
//! operator of a real node knows: which resources pay (a `weight: 0` line says one does not),
//! bounds, the actuator, the switching cost, PromQL over the node's own series. What it may
//! not say is the market's answer:
//!
//! - no file under `rules/` mentions `depin_sim_` (the simulator's hidden state, e.g. its
//!   demand, which no real node exposes);
//! - a paid response (weight not 0) has no stated knee (only `knee: auto`) and no stated
//!   curve (`points`): the simulator's knees are exactly what the controller must find out;
//! - `needs_together` states no `ratio` (the simulated market's mix of cores to memory).

use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.yml`/`.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(Value::String(key.into()))
}

/// A weight of 0 says "this node is not paid for the resource": no market number.
fn is_unpaid(response: &Value) -> bool {
    get(response, "weight").and_then(Value::as_f64) == Some(0.0)
}

/// Every place in optimization rules `text` that states the market: `path: what`.
fn market_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if text.contains("depin_sim_") {
        out.push("reads or mentions depin_sim_ (the simulator's hidden state)".to_string());
    }
    let top: Value = serde_yaml::from_str(text).expect("the rules are YAML");
    for section in ["protocols", "nodes"] {
        let Some(blocks) = get(&top, section).and_then(Value::as_mapping) else {
            continue;
        };
        for (name, block) in blocks {
            let name = name.as_str().unwrap_or("?");
            let path = format!("{section}.{name}");
            if let Some(resp) = get(block, "response").and_then(Value::as_mapping) {
                for (r, response) in resp {
                    let r = r.as_str().unwrap_or("?");
                    if is_unpaid(response) {
                        continue;
                    }
                    match get(response, "knee") {
                        None => {}
                        Some(Value::String(s)) if s == "auto" => {}
                        Some(k) => out.push(format!(
                            "{path}.response.{r}.knee: states a knee ({}); write `knee: auto`",
                            serde_yaml::to_string(k).unwrap_or_default().trim()
                        )),
                    }
                    if get(response, "points").is_some() {
                        out.push(format!(
                            "{path}.response.{r}.points: states a curve of a paid resource"
                        ));
                    }
                }
            }
            let together = match get(block, "needs_together") {
                Some(Value::Sequence(groups)) => groups.clone(),
                Some(g @ Value::Mapping(_)) => vec![g.clone()],
                _ => Vec::new(),
            };
            for (i, g) in together.iter().enumerate() {
                if get(g, "ratio").is_some() {
                    out.push(format!(
                        "{path}.needs_together[{i}].ratio: states the market's mix of resources"
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn no_shipped_rule_file_reads_the_simulators_state() {
    let files = yaml_files(&root().join("rules"));
    assert!(files.len() >= 3, "rules/ holds the shipped rule files");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("depin_sim_"),
            "{} mentions depin_sim_: the simulator's hidden state is not something a rule may read",
            f.display()
        );
    }
}

#[test]
fn shipped_optimization_rules_state_no_market_parameter() {
    let files: Vec<PathBuf> = yaml_files(&root().join("rules"))
        .into_iter()
        .filter(|f| depin_orcha::schema::files::is_optimization_file(f))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("rules/optimization.yml")),
        "rules/optimization.yml is an optimization rules file: {files:?}"
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let found = market_statements(&text);
        assert!(
            found.is_empty(),
            "{} tells the controller the simulated market:\n  {}",
            f.display(),
            found.join("\n  ")
        );
        // And the file still loads, so the check above looked at real rules.
        depin_orcha::optimizer::load_file(f).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The check finds each kind of statement (so the test above cannot pass by looking at
/// nothing).
#[test]
fn the_check_finds_what_it_looks_for() {
    let text = r#"
protocols:
  golem:
    needs_together: [{resources: [cpu_cores, memory_bytes], ratio: [1, 2GiB]}]
    response:
      cpu_cores: {model: marginal, knee: auto}
nodes:
  golem:
    demand: 'depin_sim_demand_ratio{node="golem"}'
    response:
      cpu_cores: {model: marginal, knee: 4}
      bandwidth_bytes_per_second: {model: curve, points: [[0, 0], [0.25MB, 1]], weight: 0}
  grass:
    response:
      bandwidth_bytes_per_second: {model: curve, points: [[0, 0], [2MB, 1]]}
"#;
    let found = market_statements(text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].contains("depin_sim_"), "{found:#?}");
    assert!(
        found[1].starts_with("protocols.golem.needs_together[0].ratio"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("nodes.golem.response.cpu_cores.knee: states a knee (4)"),
        "{found:#?}"
    );
    assert!(
        found[3].starts_with("nodes.grass.response.bandwidth_bytes_per_second.points"),
        "{found:#?}"
    );
    assert!(
        market_statements("nodes:\n  a:\n    response:\n      cpu_cores: {knee: auto}\n")
            .is_empty()
    );
}

//! The shipped rules layout: `rules/prometheus/*.yml` holds the Prometheus rule files and
//! nothing else, so the one glob loads in promtool, in vmalert (Debian's victoria-metrics,
//! `vmalert -dryRun`) and in `depin-orcha run`; the optimization rules live outside it. A glob
//! that does match the optimization file (`rules/*.yml`) is refused the same way by `run` and
//! `check config`, naming the file and the flag it belongs to. Every alert's `runbook_url`
//! names a section of docs/runbooks.md.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const GLOB: &str = "rules/prometheus/*.yml";

fn globbed() -> Vec<String> {
    let mut v: Vec<String> = glob::glob(&root().join(GLOB).display().to_string())
        .expect("glob")
        .map(|p| p.expect("path").display().to_string())
        .collect();
    v.sort();
    v
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_folder_holds_exactly_the_prometheus_rule_files() {
    let names: Vec<String> = globbed()
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["alerts.yml", "recording.yml"]);
    assert!(root().join("rules/optimization.yml").exists());
}

#[test]
fn promtool_checks_and_tests_the_folder_by_glob() {
    let Some(promtool) = common::promtool() else {
        return;
    };
    let (ok, text) = output(
        Command::new(&promtool)
            .args(["check", "rules"])
            .args(globbed()),
    );
    assert!(ok, "{text}");
    assert_eq!(text.matches("SUCCESS").count(), 2, "{text}");
    // The unit tests, which load the folder's files by their new paths.
    let tests: Vec<String> = glob::glob(&root().join("rules/tests/*.yml").display().to_string())
        .unwrap()
        .map(|p| p.unwrap().display().to_string())
        .collect();
    let (ok, text) = output(Command::new(&promtool).args(["test", "rules"]).args(&tests));
    assert!(ok, "{text}");
    // A Prometheus config whose rule_files is the glob itself (Prometheus expands it).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("rule_files:\n  - {}\n", root().join(GLOB).display()),
    )
    .unwrap();
    let (ok, text) = output(Command::new(&promtool).arg("check").arg("config").arg(&cfg));
    assert!(ok, "{text}");
    assert!(text.contains("2 rule files found"), "{text}");
}

#[test]
fn vmalert_dry_run_loads_the_folder_by_glob_and_refuses_the_old_one() {
    let Some(vmalert) = common::system_bin("vmalert", "victoria-metrics") else {
        return;
    };
    let (ok, text) = output(
        Command::new(&vmalert)
            .arg("-dryRun")
            .arg(format!("-rule={}", root().join(GLOB).display())),
    );
    assert!(ok, "vmalert -dryRun -rule={GLOB}:\n{text}");
    // The check can fail: the glob over rules/ (the optimization file) is refused.
    let (ok, text) = output(
        Command::new(&vmalert)
            .arg("-dryRun")
            .arg(format!("-rule={}", root().join("rules/*.yml").display())),
    );
    assert!(!ok, "vmalert accepted the optimization file:\n{text}");
    assert!(text.contains("optimization.yml"), "{text}");
}

#[test]
fn run_loads_the_folder_by_glob() {
    let dir = tempfile::tempdir().unwrap();
    let glob = root().join(GLOB).display().to_string();
    let storage = dir.path().join("data").display().to_string();
    let orcha = common::Orcha::start(&["--rules.file", &glob, "--storage.path", &storage]);
    orcha.wait_ready();
    let rules = orcha.get("/api/v1/rules").json();
    let groups = rules["data"]["groups"].as_array().expect("groups").clone();
    let files: std::collections::BTreeSet<String> = groups
        .iter()
        .map(|g| {
            Path::new(g["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["alerts.yml", "recording.yml"]
    );
    let n: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, |r| r.len()))
        .sum();
    assert_eq!(n, 52, "21 alerts and 31 recording rules");
}

/// A config whose `rule_files` glob matches the optimization file: `check config` fails and
/// `run` refuses to start, both naming the file and `--optimization.rules-file`; the start-up
/// error does not claim that earlier rules keep running (none were loaded), and the failed
/// start leaves no storage directory behind.
#[test]
fn check_config_and_run_agree_on_a_glob_matching_the_optimization_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("depin-orcha.yml");
    std::fs::write(
        &cfg,
        format!(
            "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nrule_files:\n  - {}\n",
            root().join("rules/*.yml").display()
        ),
    )
    .unwrap();
    let opt = root().join("rules/optimization.yml").display().to_string();

    let (ok, check) = output(
        Command::new(common::bin())
            .args(["check", "config"])
            .arg(&cfg),
    );
    assert!(!ok, "check config passed:\n{check}");
    assert!(check.contains("FAILED"), "{check}");
    assert!(check.contains(&opt), "{check}");
    assert!(check.contains("--optimization.rules-file"), "{check}");

    let storage = dir.path().join("data");
    let mut run = Command::new(common::bin());
    run.current_dir(dir.path()).args([
        "run",
        "--web.listen-address=127.0.0.1:0",
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.path",
        storage.to_str().unwrap(),
    ]);
    let (ok, started) = output(&mut run);
    assert!(!ok, "run started:\n{started}");
    assert!(started.contains(&opt), "{started}");
    assert!(started.contains("--optimization.rules-file"), "{started}");
    assert!(!started.contains("keep running"), "{started}");
    assert!(
        !storage.exists(),
        "a failed start left {} behind",
        storage.display()
    );

    // The same config with the folder's glob passes both.
    std::fs::write(
        &cfg,
        format!(
            "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nrule_files:\n  - {}\n",
            root().join(GLOB).display()
        ),
    )
    .unwrap();
    let (ok, check) = output(
        Command::new(common::bin())
            .args(["check", "config"])
            .arg(&cfg),
    );
    assert!(ok, "{check}");
    assert!(
        check.contains("SUCCESS: 0 nodes found, 7 rule groups"),
        "{check}"
    );
}

/// Every alert has a `runbook_url` naming a section of docs/runbooks.md, and every section
/// there is an alert's.
#[test]
fn every_alert_has_a_runbook_section() {
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("rules/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let doc = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let sections: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let mut names = Vec::new();
    for g in alerts["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let Some(name) = r["alert"].as_str() else {
                continue;
            };
            names.push(name.to_lowercase());
            let url = r["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no runbook_url"));
            let anchor = url
                .strip_prefix("docs/runbooks.md#")
                .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not docs/runbooks.md#…"));
            assert!(
                sections.iter().any(|s| s == anchor),
                "{name}: no section for #{anchor} in docs/runbooks.md"
            );
        }
    }
    for s in &sections {
        assert!(
            names.contains(s),
            "docs/runbooks.md has a section {s} for no alert"
        );
    }
}

//! The README's shell examples, run as a reader would paste them: every fenced block marked
//! ```` ```sh readme-test ```` runs in bash (`-euo pipefail`) against the real binary started
//! on the embedded demo with the shipped rules, its address put in place of 127.0.0.1:9817.
//! A block passes when it exits 0 and no query answer in its output is an error or empty.

mod common;

use std::path::Path;
use std::process::Command;

/// The marked blocks of the README, in order.
fn blocks(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in readme.lines() {
        match &mut cur {
            None if line.trim() == "```sh readme-test" => cur = Some(String::new()),
            Some(b) if line.trim() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn the_readme_shell_examples_run_against_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = blocks(&readme);
    assert!(blocks.len() >= 2, "no marked blocks in README.md");
    if common::promtool().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let orcha = common::Orcha::start(&[
        "--storage.path",
        &storage,
        "--rules.file",
        "rules/prometheus/*.yml",
    ]);
    orcha.wait_ready();
    // rate() needs two scrapes (5 s apart in the demo): a reader starting the demo and then
    // pasting would have them.
    common::wait_until(std::time::Duration::from_secs(30), "two scrapes", || {
        orcha
            .get("/api/v1/query?query=rate(depin_earnings_usd_total%5B5m%5D)")
            .body
            .contains("\"node\"")
    });
    for (i, b) in blocks.iter().enumerate() {
        let script = b.replace("127.0.0.1:9817", &orcha.addr.to_string());
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(root)
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README block {i} failed:\n{script}\n--- stdout\n{stdout}--- stderr\n{stderr}"
        );
        assert!(
            !stdout.contains("\"status\":\"error\"") && !stdout.contains("\"result\":[]"),
            "README block {i} got an error or an empty answer:\n{script}\n{stdout}"
        );
        assert!(
            !stdout.trim().is_empty(),
            "README block {i} printed nothing:\n{script}"
        );
    }
    // The first block's query answers per node: the demo's four.
    let first = Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(blocks[0].replace("127.0.0.1:9817", &orcha.addr.to_string()))
        .current_dir(root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&first.stdout);
    assert_eq!(text.matches("\"node\":").count(), 4, "{text}");
}

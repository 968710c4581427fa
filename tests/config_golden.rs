//! Golden tests of the config loader: every file in tests/fixtures/config/valid/ must load, and
//! every file in tests/fixtures/config/invalid/ must fail with exactly the text of its sibling
//! `*.yml.err` file (what a user sees on stderr). `UPDATE_GOLDEN=1 cargo test --test
//! config_golden` rewrites the `.err` files from the current output; review the diff.

use std::path::{Path, PathBuf};

use depin_orcha::config;

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(sub)
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn valid_configs_load() {
    let files = yml_files(&fixtures("valid"));
    assert!(
        files.len() >= 3,
        "expected the valid fixtures, found {files:?}"
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(e) = config::parse_str(&text, &file_name(&f)) {
            panic!("{} should load but failed:\n{e}", f.display());
        }
        // load_file names the file by the path it was given.
        config::load_file(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn invalid_configs_fail_with_the_expected_text() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let files = yml_files(&fixtures("invalid"));
    assert!(
        files.len() >= 10,
        "expected the invalid fixtures, found {files:?}"
    );
    let mut mismatches = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let got = match config::parse_str(&text, &file_name(&f)) {
            Ok(_) => {
                mismatches.push(format!("{} loaded but should fail", f.display()));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        let golden = PathBuf::from(format!("{}.err", f.display()));
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(want) => {
                mismatches.push(format!("{}:\n--- want\n{want}--- got\n{got}", f.display()))
            }
            Err(e) => mismatches.push(format!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_error_is_reported_at_once() {
    // One file with errors in different sections: each gets its own line.
    let text = std::fs::read_to_string(fixtures("invalid").join("bad_duration.yml")).unwrap();
    let err = config::parse_str(&text, "bad_duration.yml").unwrap_err();
    let lines = err.lines();
    assert!(lines.len() >= 5, "{lines:?}");
    for l in &lines {
        assert!(l.starts_with("bad_duration.yml:"), "{l}");
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = config::load_file(Path::new("/nonexistent/depin.yml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/depin.yml: cannot read the config file"),
        "{err}"
    );
}

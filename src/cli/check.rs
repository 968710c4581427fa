//! `depin-orcha check config|rules`: validate files as `promtool check` does, without running
//! anything; what passes here is what `run` loads.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use depin_orcha::schema::files::is_optimization_file;
use depin_orcha::{config, optimizer, rules};

pub(crate) fn check_config(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for f in files {
        // The rule files too, through the loader `run` uses: what passes here starts.
        match config::load_file(f) {
            Ok(c) => match rules::load_files(&c.rule_files) {
                Ok(groups) => println!(
                    "Checking {}\n  SUCCESS: {} nodes found, {} rule groups in rule_files",
                    f.display(),
                    c.nodes.len(),
                    groups.len()
                ),
                Err(e) => {
                    ok = false;
                    println!("Checking {}\n  FAILED:\n{e}", f.display());
                }
            },
            Err(e) => {
                ok = false;
                println!("Checking {}\n  FAILED:\n{e}", f.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prometheus rule files go through the rules loader; a file whose top level has no `groups`
/// but the optimization keys (`gates`, `protocols`, `nodes`) is checked as optimization rules.
pub(crate) fn check_rules(files: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    let mut prometheus_files = Vec::new();
    for f in files {
        if is_optimization_file(f) {
            match optimizer::load_file(f) {
                Ok(r) => println!(
                    "Checking {}\n  SUCCESS: optimization rules for {} protocols, {} nodes",
                    f.display(),
                    r.protocols.len(),
                    r.nodes.len()
                ),
                Err(e) => {
                    ok = false;
                    println!("Checking {}\n  FAILED:\n{e}", f.display());
                }
            }
        } else {
            prometheus_files.push(f.clone());
        }
    }
    if !prometheus_files.is_empty() {
        let (report, rules_ok) = rules::file::check_rules_report(&prometheus_files);
        print!("{report}");
        ok &= rules_ok;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! `depin-orcha test rules|promql`: rule unit tests in `promtool test rules`' format, PromQL
//! test scripts in Prometheus' promqltest format.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use depin_orcha::{promql, rules};

pub(crate) fn test_rules(files: &[PathBuf]) -> Result<ExitCode> {
    let report = rules::unittest::run_test_files(files);
    print!("{report}");
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn test_promql(files: &[PathBuf]) -> Result<ExitCode> {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for f in files {
        let report = promql::promqltest::run_file(f);
        println!("{report}");
        passed += report.passed;
        failed += report.failed;
        skipped += report.skipped;
    }
    if files.len() > 1 {
        println!("total: {passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

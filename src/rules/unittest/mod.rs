//! `depin-orcha test rules FILE...`: unit tests of rule files in the format of `promtool test
//! rules` (Prometheus' `cmd/promtool/unittest.go`, 2.42), with the same verdicts and the same
//! failure text, so a test file written for Prometheus passes or fails here the same way.
//!
//! It owns the test-file schema and the test driver only: rule files are loaded and groups
//! evaluated through the rules engine ([`super::load_files`], `Group::eval`), queries go to the
//! PromQL engine, samples to an in-memory [`Db`](crate::tsdb::Db) without retention. Nothing
//! here schedules or touches the clock: evaluation timestamps are explicit, from 0 (the Unix
//! epoch) up to the largest `eval_time` of a test group, every `evaluation_interval`, as
//! promtool does.
//!
//! What promtool does and this does too:
//! - `rule_files` are relative to the test file and may be globs; a pattern matching nothing
//!   is a warning (`  WARNING: no file match pattern …`).
//! - Input series are loaded as a `load <interval>` command (`a+bxN`, `_`, `stale`), each
//!   sample only once the evaluation reaches its timestamp.
//! - Groups run in `group_eval_order` (groups not listed count as position 0).
//! - Every rule error stops the test group (`rule: …, time: …, err: …`).
//! - `alert_rule_test` compares the *firing* alerts of the rules with that name at the last
//!   evaluation at or before `eval_time`, labels (with `alertname`) and annotations, exactly.
//! - `promql_expr_test` runs an instant query at `eval_time` after all evaluations and compares
//!   the samples exactly (floats by `==`, as Go's `reflect.DeepEqual`).
//!
//! Where it differs from promtool 2.42, on purpose:
//! - A test group without `interval` loads its series every `evaluation_interval` (what
//!   promtool does since 2.49); 2.42 loads them all at time 0, which fails on the first
//!   repeated timestamp. Give `interval` explicitly to be portable.
//! - The final line `N passed, N failed` counts test groups (a file that cannot be read or
//!   parsed counts as one failed); promtool prints no summary.
//! - The PromQL engine follows Prometheus 3 (range selectors are left-open: `(t-r, t]`), so
//!   `rate()`/`increase()` over windows that start exactly on a sample may differ in the last
//!   bits from 2.42, which includes that sample.
//!
//! The test-file schema is in `schema`, one test group's run in `run`, and Go's text forms of
//! the failure messages in `gotext`.

mod gotext;
mod run;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use run::run_group;
use schema::parse_file;

#[cfg(test)]
use crate::labels::Labels;
#[cfg(test)]
use gotext::{go_duration, go_float_e, go_labels, go_quote, model_duration};
#[cfg(test)]
use schema::{RawExpAlert, RawSeries};

/// A test file that cannot be used at all (promtool reports these before any test runs).
#[derive(Debug, thiserror::Error)]
pub enum UnitTestError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("group name repeated in evaluation order: {0}")]
    RepeatedGroup(String),
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// The outcome of one test group (one item of `tests:`).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupReport {
    /// The group's `name`, or `#N` (1-based) when it has none.
    pub name: String,
    /// promtool's error texts; empty when the group passed.
    pub errors: Vec<String>,
}

impl GroupReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The outcome of one test file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileReport {
    pub path: String,
    /// `  WARNING: …` lines (rule file patterns that match nothing).
    pub warnings: Vec<String>,
    /// Why the file could not be used at all (then `groups` is empty).
    pub file_error: Option<String>,
    pub groups: Vec<GroupReport>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.file_error.is_none() && self.groups.iter().all(GroupReport::passed)
    }

    /// Every error of the file in promtool's order.
    pub fn errors(&self) -> Vec<&str> {
        self.file_error
            .iter()
            .map(String::as_str)
            .chain(
                self.groups
                    .iter()
                    .flat_map(|g| g.errors.iter().map(String::as_str)),
            )
            .collect()
    }
}

/// The outcome of `test rules` over several files. `Display` prints what promtool prints
/// (`Unit Testing:  FILE`, then `  SUCCESS` or `  FAILED:` and the errors), then
/// `N passed, N failed` over test groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestReport {
    pub files: Vec<FileReport>,
}

impl TestReport {
    /// Test groups that passed.
    pub fn passed(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.groups)
            .filter(|g| g.passed())
            .count()
    }

    /// Test groups that failed, plus one per file that could not be used.
    pub fn failed(&self) -> usize {
        self.files
            .iter()
            .map(|f| {
                f.groups.iter().filter(|g| !g.passed()).count()
                    + usize::from(f.file_error.is_some())
            })
            .sum()
    }

    /// Whether every file passed (the exit status: 0 if so, else 1).
    pub fn success(&self) -> bool {
        self.files.iter().all(FileReport::passed)
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // promtool: fmt.Println("Unit Testing: ", filename) prints two spaces.
        writeln!(f, "Unit Testing:  {}", self.path)?;
        for w in &self.warnings {
            writeln!(f, "{w}")?;
        }
        if self.passed() {
            writeln!(f, "  SUCCESS")?;
        } else {
            writeln!(f, "  FAILED:")?;
            for e in self.errors() {
                writeln!(f, "{e}")?;
                writeln!(f)?;
            }
        }
        writeln!(f)
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            write!(f, "{file}")?;
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

// ---------------------------------------------------------------------------------------------
// Running.

/// Runs every test file, in order.
pub fn run_test_files<P: AsRef<Path>>(paths: &[P]) -> TestReport {
    TestReport {
        files: paths.iter().map(|p| run_test_file(p.as_ref())).collect(),
    }
}

/// Runs one test file.
pub fn run_test_file(path: &Path) -> FileReport {
    let mut report = FileReport {
        path: path.display().to_string(),
        warnings: Vec::new(),
        file_error: None,
        groups: Vec::new(),
    };
    let file = match parse_file(path) {
        Ok(f) => f,
        Err(e) => {
            report.file_error = Some(e.to_string());
            return report;
        }
    };
    // Globs are expanded once per file, as promtool's resolveAndGlobFilepaths.
    let mut rule_files = Vec::new();
    let mut glob_errors = Vec::new();
    for rf in &file.rule_files {
        // Go's filepath.Glob: a literal path matches itself only if it exists.
        let found: Vec<PathBuf> = if is_glob(rf) {
            super::file::expand_globs(std::slice::from_ref(rf), &mut glob_errors)
        } else if rf.exists() {
            vec![rf.clone()]
        } else {
            Vec::new()
        };
        if found.is_empty() {
            report
                .warnings
                .push(format!("  WARNING: no file match pattern {}", rf.display()));
        }
        rule_files.extend(found);
    }
    if !glob_errors.is_empty() {
        report.file_error = Some(
            glob_errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        return report;
    }
    // Loaded once; every test group gets fresh copies (alert state starts empty).
    let loaded = if file.tests.is_empty() {
        Ok(Vec::new())
    } else {
        super::load_files(&rule_files)
    };
    for (i, tg) in file.tests.iter().enumerate() {
        let errors = match &loaded {
            Ok(groups) => run_group(tg, &file, groups.clone()),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        };
        report.groups.push(GroupReport {
            name: if tg.name.is_empty() {
                format!("#{}", i + 1)
            } else {
                tg.name.clone()
            },
            errors,
        });
    }
    report
}

fn is_glob(p: &Path) -> bool {
    p.display().to_string().contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `rules.yml` and `test.yml` into a temp dir and runs the test file.
    fn run(rules: &str, test: &str) -> FileReport {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let p = dir.path().join("test.yml");
        std::fs::write(&p, test).unwrap();
        run_test_file(&p)
    }

    const DOWN: &str = "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 2m\n        annotations:\n          summary: '{{ $labels.job }} down'\n";

    fn alert_test(eval_time: &str, exp: &str) -> String {
        format!(
            "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{{job=\"a\"}}'\n        values: '0x10'\n    alert_rule_test:\n      - eval_time: {eval_time}\n        alertname: Down\n        exp_alerts: {exp}\n"
        )
    }

    #[test]
    fn pending_alerts_are_not_reported_firing_ones_are() {
        // Pending at 0m and 1m, firing from 2m.
        assert!(run(DOWN, &alert_test("1m", "[]")).passed());
        let firing = "[{exp_labels: {job: a}, exp_annotations: {summary: a down}}]";
        let r = run(DOWN, &alert_test("2m", firing));
        assert!(r.passed(), "{r}");
        // Between evaluations the previous one counts: 2m59s compares with the 2m evaluation.
        assert!(run(DOWN, &alert_test("2m59s", firing)).passed());
        let r = run(DOWN, &alert_test("1m", firing));
        assert!(!r.passed());
        assert_eq!(
            r.errors(),
            vec![
                "    alertname: Down, time: 1m, \n        exp:[\n            0:\n              Labels:{alertname=\"Down\", job=\"a\"}\n              Annotations:{summary=\"a down\"}\n            ], \n        got:[]"
            ]
        );
    }

    #[test]
    fn wrong_samples_are_reported_like_promtool() {
        let test = "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{job=\"a\"}'\n        values: '0 1'\n    promql_expr_test:\n      - expr: up\n        eval_time: 1m\n        exp_samples:\n          - labels: 'up{job=\"a\"}'\n            value: 0\n";
        let r = run(DOWN, test);
        assert_eq!(
            r.errors(),
            vec![
                "    expr: \"up\", time: 1m,\n        exp: {__name__=\"up\", job=\"a\"} 0E+00\n        got: {__name__=\"up\", job=\"a\"} 1E+00"
            ]
        );
    }

    #[test]
    fn scalars_keep_their_text() {
        let t: RawSeries = serde_yaml::from_str("series: up\nvalues: 0x10\n").unwrap();
        assert_eq!(t.values.0, "0x10");
        let t: RawSeries = serde_yaml::from_str("series: up\nvalues: 1e3\n").unwrap();
        assert_eq!(t.values.0, "1e3");
        let e: RawExpAlert = serde_yaml::from_str("exp_labels: {code: 500}\n").unwrap();
        assert_eq!(e.exp_labels.unwrap()["code"].0, "500");
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let r = run(DOWN, "tests:\n  - interval: 1x\n");
        let e = r.file_error.unwrap_or_default();
        assert!(e.contains("test.yml: tests[0].interval:"), "{e}");
        let r = run(DOWN, "rule_files: [rules.yml]\nbogus: 1\n");
        assert!(r.file_error.unwrap_or_default().contains("bogus"));
    }

    #[test]
    fn go_text_forms() {
        assert_eq!(go_float_e(3600.0), "3.6E+03");
        assert_eq!(go_float_e(0.5), "5E-01");
        assert_eq!(go_float_e(1.0), "1E+00");
        assert_eq!(go_float_e(1e-300), "1E-300");
        assert_eq!(go_float_e(f64::INFINITY), "+Inf");
        assert_eq!(model_duration(0), "0s");
        assert_eq!(model_duration(86_400_000), "1d");
        assert_eq!(model_duration(90_000_000), "1d1h");
        assert_eq!(model_duration(14 * 86_400_000), "2w");
        assert_eq!(model_duration(90_000), "1m30s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(86_400_000), "24h0m0s");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(500), "500ms");
        assert_eq!(go_quote("a\"b\nc"), "\"a\\\"b\\nc\"");
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        assert_eq!(go_labels(&l), "{__name__=\"up\", job=\"x\"}");
    }
}

//! `depin-orcha test rules FILE...`: unit tests of rule files in the format of `promtool test
//! rules` (Prometheus' `cmd/promtool/unittest.go`, 2.42), with the same verdicts and the same
//! failure text, so a test file written for Prometheus passes or fails here the same way.
//!
//! It owns the test-file schema and the test driver only: rule files are loaded and groups
//! evaluated through the rules engine ([`super::load_files`], [`Group::eval`]), queries go to
//! the PromQL engine, samples to an in-memory [`Db`] without retention. Nothing here schedules or touches the
//! clock: evaluation timestamps are explicit, from 0 (the Unix epoch) up to the largest
//! `eval_time` of a test group, every `evaluation_interval`, as promtool does.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::group::{EvalContext, Group};
use crate::compat::duration::{go_duration_string, model_duration_string, parse_model_duration};
use crate::compat::strconv::format_float;
use crate::labels::Labels;
use crate::promql::promqltest::{parse_series, SeqValue};
use crate::promql::{Engine, EngineOptions, Value};
use crate::tsdb::Db;

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
// The file format (raw), as promtool's structs with `yaml.UnmarshalStrict`.

/// A YAML scalar read as its text, as yaml.v2 does for a Go `string`: `values: 0x10` stays
/// `0x10` (not the number 16), `exp_labels: {code: 500}` gives `"500"`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
                Ok(Text(String::new()))
            }
        }
        // serde_yaml hands a plain scalar's source text to `deserialize_str`.
        d.deserialize_str(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<Text>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<RawTestGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestGroup {
    #[serde(default)]
    interval: Option<Text>,
    #[serde(default)]
    input_series: Vec<RawSeries>,
    #[serde(default)]
    alert_rule_test: Vec<RawAlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<RawPromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, Text>,
    #[serde(default)]
    external_url: Option<Text>,
    #[serde(default)]
    name: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    #[serde(default)]
    series: Text,
    #[serde(default)]
    values: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    #[serde(default)]
    eval_time: Option<Text>,
    #[serde(default)]
    alertname: Text,
    #[serde(default)]
    exp_alerts: Vec<RawExpAlert>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpAlert {
    #[serde(default)]
    exp_labels: Option<BTreeMap<String, Text>>,
    #[serde(default)]
    exp_annotations: Option<BTreeMap<String, Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromqlTest {
    #[serde(default)]
    expr: Text,
    #[serde(default)]
    eval_time: Option<Text>,
    #[serde(default)]
    exp_samples: Vec<RawSample>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    #[serde(default)]
    labels: Text,
    #[serde(default)]
    value: f64,
}

// ---------------------------------------------------------------------------------------------
// Validated form.

struct TestFile {
    rule_files: Vec<PathBuf>,
    eval_interval_ms: i64,
    group_order: HashMap<String, usize>,
    tests: Vec<TestGroup>,
}

struct TestGroup {
    name: String,
    interval_ms: i64,
    input_series: Vec<(String, String)>,
    alert_tests: Vec<AlertTest>,
    promql_tests: Vec<PromqlTest>,
    external_labels: Labels,
    external_url: String,
}

struct AlertTest {
    eval_time_ms: i64,
    alertname: String,
    exp_alerts: Vec<LabelsAndAnnotations>,
}

struct PromqlTest {
    expr: String,
    eval_time_ms: i64,
    exp_samples: Vec<(String, f64)>,
}

/// Labels and annotations of one alert as sorted name/value pairs (empty values kept, as Go's
/// `labels.FromMap` keeps them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LabelsAndAnnotations {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

fn pairs(m: &BTreeMap<String, Text>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn labels_pairs(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn duration(path: &str, key: String, v: &Option<Text>) -> Result<i64, UnitTestError> {
    match v {
        None => Ok(0),
        Some(t) if t.0.is_empty() => Ok(0),
        Some(t) => parse_model_duration(&t.0).map_err(|message| UnitTestError::Invalid {
            path: path.into(),
            key,
            message,
        }),
    }
}

fn parse_file(path: &Path) -> Result<TestFile, UnitTestError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UnitTestError::Read {
        path: p.clone(),
        source,
    })?;
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| UnitTestError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let rule_files = raw
        .rule_files
        .iter()
        .map(|rf| {
            let rp = Path::new(rf);
            if rf.is_empty() || rp.is_absolute() {
                rp.to_path_buf()
            } else {
                base.join(rp)
            }
        })
        .collect();
    let mut eval_interval_ms =
        duration(&p, "evaluation_interval".into(), &raw.evaluation_interval)?;
    if eval_interval_ms <= 0 {
        eval_interval_ms = 60_000;
    }
    let mut group_order = HashMap::new();
    for (i, g) in raw.group_eval_order.iter().enumerate() {
        if group_order.insert(g.clone(), i).is_some() {
            return Err(UnitTestError::RepeatedGroup(g.clone()));
        }
    }
    let mut tests = Vec::new();
    for (ti, t) in raw.tests.iter().enumerate() {
        let key = |k: &str| format!("tests[{ti}].{k}");
        let mut interval_ms = duration(&p, key("interval"), &t.interval)?;
        if interval_ms <= 0 {
            interval_ms = eval_interval_ms;
        }
        let mut alert_tests = Vec::new();
        for (ai, a) in t.alert_rule_test.iter().enumerate() {
            alert_tests.push(AlertTest {
                eval_time_ms: duration(
                    &p,
                    key(&format!("alert_rule_test[{ai}].eval_time")),
                    &a.eval_time,
                )?,
                alertname: a.alertname.0.clone(),
                exp_alerts: a
                    .exp_alerts
                    .iter()
                    .map(|e| {
                        let mut labels: BTreeMap<String, String> = e
                            .exp_labels
                            .as_ref()
                            .map(|m| pairs(m).into_iter().collect())
                            .unwrap_or_default();
                        // The rules add `alertname`; the test gives only the rest.
                        labels.insert("alertname".into(), a.alertname.0.clone());
                        LabelsAndAnnotations {
                            labels: labels.into_iter().collect(),
                            annotations: e.exp_annotations.as_ref().map(pairs).unwrap_or_default(),
                        }
                    })
                    .collect(),
            });
        }
        let mut promql_tests = Vec::new();
        for (qi, q) in t.promql_expr_test.iter().enumerate() {
            promql_tests.push(PromqlTest {
                expr: q.expr.0.clone(),
                eval_time_ms: duration(
                    &p,
                    key(&format!("promql_expr_test[{qi}].eval_time")),
                    &q.eval_time,
                )?,
                exp_samples: q
                    .exp_samples
                    .iter()
                    .map(|s| (s.labels.0.clone(), s.value))
                    .collect(),
            });
        }
        tests.push(TestGroup {
            name: t.name.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
            interval_ms,
            input_series: t
                .input_series
                .iter()
                .map(|s| (s.series.0.clone(), s.values.0.clone()))
                .collect(),
            alert_tests,
            promql_tests,
            external_labels: Labels::from_pairs(pairs(&t.external_labels)),
            external_url: t
                .external_url
                .as_ref()
                .map(|u| u.0.clone())
                .unwrap_or_default(),
        });
    }
    Ok(TestFile {
        rule_files,
        eval_interval_ms,
        group_order,
        tests,
    })
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

/// One test group: promtool's `testGroup.test`. Returns its errors.
fn run_group(tg: &TestGroup, file: &TestFile, mut groups: Vec<Group>) -> Vec<String> {
    let test_name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    // The input series, as one `load` command; samples enter the Db as time reaches them.
    let mut samples: Vec<(i64, Labels, f64)> = Vec::new();
    for (series, values) in &tg.input_series {
        let (labels, vals) = match parse_series(&format!("{series} {values}")) {
            Ok(x) => x,
            Err(e) => return vec![format!("load: series {series:?}: {e}")],
        };
        for (k, v) in vals.iter().enumerate() {
            match v {
                SeqValue::Float(f) => samples.push((k as i64 * tg.interval_ms, labels.clone(), *f)),
                SeqValue::Omitted => {}
                SeqValue::Histogram => {
                    return vec![format!(
                        "load: series {series:?}: native histogram samples are not supported"
                    )]
                }
            }
        }
    }
    samples.sort_by_key(|s| s.0);
    // No retention: a test may span centuries (promtool's long-period test goes to 2262).
    let db = Db::open(crate::tsdb::Options {
        path: None,
        retention_ms: i64::MAX,
        max_bytes: None,
        ..Default::default()
    })
    .unwrap_or_default();
    let engine = Engine::new(EngineOptions::default());
    let ctx = EvalContext {
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
        default_interval_ms: tg.interval_ms,
        ..EvalContext::default()
    };

    groups.sort_by_key(|g| file.group_order.get(g.name()).copied().unwrap_or(0));
    for g in &mut groups {
        // As promtool: mark alerting rules restored so `ALERTS` is written from the start.
        for a in g.alerting_rules_mut() {
            a.set_restored(true);
        }
    }

    let max_t = tg
        .alert_tests
        .iter()
        .map(|a| a.eval_time_ms)
        .chain(tg.promql_tests.iter().map(|p| p.eval_time_ms))
        .max()
        .unwrap_or(0);

    let mut errs: Vec<String> = Vec::new();
    for a in &tg.alert_tests {
        if a.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(a.eval_time_ms)
            )];
        }
    }
    let mut alert_times: Vec<i64> = tg.alert_tests.iter().map(|a| a.eval_time_ms).collect();
    alert_times.sort_unstable();
    alert_times.dedup();
    let mut curr = 0;
    let mut next_sample = 0;
    let interval = file.eval_interval_ms;
    let mut ts = 0i64;
    while ts <= max_t {
        let end = samples[next_sample..]
            .iter()
            .position(|s| s.0 > ts)
            .map_or(samples.len(), |k| next_sample + k);
        if end > next_sample {
            let batch: Vec<(Labels, i64, f64)> = samples[next_sample..end]
                .iter()
                .map(|(t, l, v)| (l.clone(), *t, *v))
                .collect();
            next_sample = end;
            match db.append_batch(&batch) {
                Ok(r) => {
                    if let Some(rej) = r.rejected.first() {
                        return vec![format!(
                            "load: {} sample for series {} at {}",
                            if rej.out_of_order {
                                "out-of-order"
                            } else {
                                "duplicate"
                            },
                            go_labels(&rej.labels),
                            model_duration(rej.t)
                        )];
                    }
                }
                Err(e) => return vec![format!("load: {e}")],
            }
        }
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            let r = g.eval(ts, &db, &engine, &ctx);
            for fail in r.failures {
                eval_errs.push(format!(
                    "    rule: {}, time: {}, err: {}",
                    fail.rule,
                    go_duration(ts),
                    fail.error
                ));
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }

        // Alert tests whose eval_time falls in [ts, ts + interval) compare with this evaluation.
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts + interval
        {
            let t = alert_times[curr];
            let names: HashSet<&str> = tg
                .alert_tests
                .iter()
                .filter(|a| a.eval_time_ms == t)
                .map(|a| a.alertname.as_str())
                .collect();
            let mut got: HashMap<String, Vec<LabelsAndAnnotations>> = HashMap::new();
            for g in &groups {
                for rule in g.alerting_rules() {
                    if !names.contains(rule.name()) {
                        continue;
                    }
                    let firing = rule
                        .active_alerts()
                        .into_iter()
                        .filter(|a| a.state == super::AlertState::Firing)
                        .map(|a| LabelsAndAnnotations {
                            labels: labels_pairs(&a.labels),
                            annotations: labels_pairs(&a.annotations),
                        });
                    got.entry(rule.name().to_string())
                        .or_default()
                        .extend(firing);
                }
            }
            for case in tg.alert_tests.iter().filter(|a| a.eval_time_ms == t) {
                let mut got_alerts = got.get(&case.alertname).cloned().unwrap_or_default();
                let mut exp_alerts = case.exp_alerts.clone();
                got_alerts.sort();
                exp_alerts.sort();
                if got_alerts != exp_alerts {
                    errs.push(format!(
                        "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        model_duration(case.eval_time_ms),
                        indent_lines(&alerts_string(&exp_alerts), "            "),
                        indent_lines(&alerts_string(&got_alerts), "            "),
                    ));
                }
            }
            curr += 1;
        }
        ts += interval;
    }

    // PromQL expression tests, after every evaluation.
    'cases: for case in &tg.promql_tests {
        let fail = |msg: String| {
            format!(
                "    expr: {}, time: {}, err: {msg}",
                go_quote(&case.expr),
                model_duration(case.eval_time_ms)
            )
        };
        let got = match query(&engine, &db, &case.expr, case.eval_time_ms) {
            Ok(v) => v,
            Err(e) => {
                errs.push(fail(e));
                continue;
            }
        };
        let mut exp = Vec::new();
        for (l, v) in &case.exp_samples {
            // Go's parser.ParseMetric reads "" as the empty label set (a scalar's sample).
            if l.trim().is_empty() {
                exp.push((Labels::empty(), *v));
                continue;
            }
            match parse_series(l) {
                Ok((labels, vals)) if vals.is_empty() => exp.push((labels, *v)),
                Ok(_) => {
                    errs.push(fail(format!("labels {}: unexpected values", go_quote(l))));
                    continue 'cases;
                }
                Err(e) => {
                    errs.push(fail(format!("labels {}: {e}", go_quote(l))));
                    continue 'cases;
                }
            }
        }
        let mut got = got;
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // Go's reflect.DeepEqual: floats by `==` (NaN never equal).
        let same =
            exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
        if !same {
            errs.push(format!(
                "    expr: {}, time: {},\n        exp: {}\n        got: {}",
                go_quote(&case.expr),
                model_duration(case.eval_time_ms),
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    errs
}

/// promtool's `query`: a vector, or a scalar as one sample without labels.
fn query(engine: &Engine, db: &Db, expr: &str, t: i64) -> Result<Vec<(Labels, f64)>, String> {
    let e = crate::promql::parse(expr).map_err(|e| e.to_string())?;
    let r = engine.instant_query(db, &e, t).map_err(|e| e.to_string())?;
    match r.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Go's text forms, so failures read as promtool's.

/// `labels.Labels.String()`: `{__name__="x", a="b"}`.
fn go_pairs(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{n}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn go_labels(l: &Labels) -> String {
    go_pairs(&labels_pairs(l))
}

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strconv.FormatFloat(v, 'E', -1, 64)`: `3.6E+03`, as promtool prints expected and got values.
fn go_float_e(v: f64) -> String {
    format_float(v, 'E', -1)
}

/// `model.Duration.String()` of milliseconds: `1d1h`, `1m30s`.
fn model_duration(ms: i64) -> String {
    model_duration_string(ms)
}

/// Go's `time.Duration.String()` of milliseconds: `1m0s`, `24h0m0s`, `1.5s`, `500ms`.
fn go_duration(ms: i64) -> String {
    go_duration_string(ms.saturating_mul(1_000_000))
}

fn indent_lines(text: &str, indent: &str) -> String {
    text.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// promtool's `labelsAndAnnotations.String()`.
fn alerts_string(v: &[LabelsAndAnnotations]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let one = |la: &LabelsAndAnnotations| {
        format!(
            "Labels:{}\nAnnotations:{}",
            go_pairs(&la.labels),
            go_pairs(&la.annotations)
        )
    };
    let mut s = format!("[\n0:{}", indent_lines(&format!("\n{}", one(&v[0])), "  "));
    for (i, la) in v.iter().enumerate().skip(1) {
        s.push_str(&format!(
            ",\n{i}:{}",
            indent_lines(&format!("\n{}", one(la)), "  ")
        ));
    }
    s.push_str("\n]");
    s
}

/// promtool's `parsedSamplesString`.
fn samples_string(v: &[(Labels, f64)]) -> String {
    if v.is_empty() {
        return "nil".into();
    }
    v.iter()
        .map(|(l, x)| format!("{} {}", go_labels(l), go_float_e(*x)))
        .collect::<Vec<_>>()
        .join(", ")
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

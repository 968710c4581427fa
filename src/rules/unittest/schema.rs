//! The test-file schema: promtool's structs as read with `yaml.UnmarshalStrict`, and their
//! validated form (durations parsed, rule files resolved against the test file).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::UnitTestError;
use crate::compat::duration::parse_model_duration;
use crate::labels::Labels;

// ---------------------------------------------------------------------------------------------
// The file format (raw), as promtool's structs with `yaml.UnmarshalStrict`.

/// A YAML scalar read as its text, as yaml.v2 does for a Go `string`: `values: 0x10` stays
/// `0x10` (not the number 16), `exp_labels: {code: 500}` gives `"500"`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Text(pub(super) String);

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
pub(super) struct RawSeries {
    #[serde(default)]
    pub(super) series: Text,
    #[serde(default)]
    pub(super) values: Text,
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
pub(super) struct RawExpAlert {
    #[serde(default)]
    pub(super) exp_labels: Option<BTreeMap<String, Text>>,
    #[serde(default)]
    pub(super) exp_annotations: Option<BTreeMap<String, Text>>,
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

pub(super) struct TestFile {
    pub(super) rule_files: Vec<PathBuf>,
    pub(super) eval_interval_ms: i64,
    pub(super) group_order: HashMap<String, usize>,
    pub(super) tests: Vec<TestGroup>,
}

pub(super) struct TestGroup {
    pub(super) name: String,
    pub(super) interval_ms: i64,
    pub(super) input_series: Vec<(String, String)>,
    pub(super) alert_tests: Vec<AlertTest>,
    pub(super) promql_tests: Vec<PromqlTest>,
    pub(super) external_labels: Labels,
    pub(super) external_url: String,
}

pub(super) struct AlertTest {
    pub(super) eval_time_ms: i64,
    pub(super) alertname: String,
    pub(super) exp_alerts: Vec<LabelsAndAnnotations>,
}

pub(super) struct PromqlTest {
    pub(super) expr: String,
    pub(super) eval_time_ms: i64,
    pub(super) exp_samples: Vec<(String, f64)>,
}

/// Labels and annotations of one alert as sorted name/value pairs (empty values kept, as Go's
/// `labels.FromMap` keeps them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LabelsAndAnnotations {
    pub(super) labels: Vec<(String, String)>,
    pub(super) annotations: Vec<(String, String)>,
}

pub(super) fn pairs(m: &BTreeMap<String, Text>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

pub(super) fn labels_pairs(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

pub(super) fn duration(path: &str, key: String, v: &Option<Text>) -> Result<i64, UnitTestError> {
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

pub(super) fn parse_file(path: &Path) -> Result<TestFile, UnitTestError> {
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

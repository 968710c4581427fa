//! Rule files in the Prometheus format, validated as `model/rulefmt` does (and as `promtool
//! check rules` reports): unknown fields, empty or repeated group names, bad durations,
//! expressions that do not parse, `record` names that are not metric names, `alert` and
//! `record` both or neither, `for`/`keep_firing_for`/`annotations` on recording rules, invalid
//! label and annotation names, templates that do not parse. Every error is reported, each with
//! its file, line and column.
//!
//! Names are checked with Prometheus' legacy character set (`[a-zA-Z_:][a-zA-Z0-9_:]*` for
//! metric names, `[a-zA-Z_][a-zA-Z0-9_]*` for label names): the PromQL parser we use only
//! reads those, so a rule recording a UTF-8 name could not be queried back.
//!
//! Group `labels` are merged into each rule's labels here (the rule's own win), as
//! Prometheus' manager does when it builds the rules.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_yaml::Value;

use super::alerting::AlertingRule;
use super::group::{Group, Rule};
use super::recording::RecordingRule;
use super::template::check_alert;
use super::{RuleError, RuleErrors};
use crate::compat::duration::parse_model_duration;
use crate::schema::diag::PosIndex;
use crate::schema::files::is_optimization_rules;

/// Reads and parses rule files. Each path may be a glob pattern (`rules/*.yml`); a pattern
/// that matches nothing adds no file, as in Prometheus, but a plain path that does not exist
/// is an error. Every error of every file is returned.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Group>, RuleErrors> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for file in expand_globs(paths, &mut errors) {
        let name = file.display().to_string();
        match std::fs::read_to_string(&file) {
            // Said before parsing: the rule-file parser would only report the first
            // optimization key as an unknown field, which does not tell what to do.
            Ok(text) if is_optimization_rules(&text) => errors.push(RuleError {
                file: name,
                pos: None,
                message: NOT_A_RULE_FILE.into(),
            }),
            Ok(text) => match parse_rule_file(&name, &text) {
                Ok(g) => groups.extend(g),
                Err(e) => errors.extend(e.0),
            },
            Err(e) => errors.push(RuleError {
                file: name,
                pos: None,
                message: format!("cannot read the rule file: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleErrors(errors))
    }
}

/// The error for an optimization rules file given as a Prometheus rule file (`rule_files`,
/// `--rules.file`, a glob matching both kinds): `run` and `check config` say the same.
pub const NOT_A_RULE_FILE: &str = "this is an optimization rules file (depin-orcha's own schema), not a Prometheus rule file: pass it with --optimization.rules-file and keep it out of rule_files and --rules.file (the shipped layout keeps the Prometheus rule files in rules/prometheus/)";

/// What `promtool check rules` prints for `paths` (files or globs), and whether all passed:
/// `Checking FILE` then `  SUCCESS: N rules found` or `  FAILED:` and the errors, one
/// `FILE:LINE:COL: message` per line. For `depin-orcha check rules`.
pub fn check_rules_report(paths: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let mut glob_errors = Vec::new();
    let files = expand_globs(paths, &mut glob_errors);
    for e in glob_errors {
        out.push_str(&format!("{e}\n"));
        ok = false;
    }
    for f in files {
        out.push_str(&format!("Checking {}\n", f.display()));
        match load_files(std::slice::from_ref(&f)) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules().len()).sum();
                out.push_str(&format!("  SUCCESS: {n} rules found\n\n"));
            }
            Err(e) => {
                ok = false;
                out.push_str(&format!("  FAILED:\n{e}\n\n"));
            }
        }
    }
    (out, ok)
}

/// Expands glob patterns into files, keeping the order given and dropping repeats. A path
/// without glob characters is kept as is (so reading it reports a missing file).
pub fn expand_globs(paths: &[PathBuf], errors: &mut Vec<RuleError>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let s = p.display().to_string();
        if !s.contains(['*', '?', '[']) {
            if !out.contains(p) {
                out.push(p.clone());
            }
            continue;
        }
        match glob::glob(&s) {
            Ok(found) => {
                let mut files: Vec<PathBuf> = found.filter_map(Result::ok).collect();
                files.sort();
                for f in files {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
            }
            Err(e) => errors.push(RuleError {
                file: s,
                pos: None,
                message: format!("invalid glob pattern: {e}"),
            }),
        }
    }
    out
}

/// Parses one rule file's text; `name` is the file name used in errors and as the groups'
/// `file`.
pub fn parse_rule_file(name: &str, text: &str) -> Result<Vec<Group>, RuleErrors> {
    let mut p = FileParser {
        file: name,
        index: PosIndex::build(text),
        errors: Vec::new(),
    };
    let groups = p.parse(text);
    if p.errors.is_empty() {
        Ok(groups)
    } else {
        // Sorted by position, so the output reads top to bottom like the file.
        p.errors
            .sort_by_key(|e| e.pos.unwrap_or((usize::MAX, usize::MAX)));
        Err(RuleErrors(p.errors))
    }
}

/// Prometheus' legacy metric name check.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus' legacy label name check.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct FileParser<'a> {
    file: &'a str,
    index: PosIndex,
    errors: Vec<RuleError>,
}

const GROUP_KEYS: [&str; 6] = [
    "name",
    "interval",
    "query_offset",
    "limit",
    "labels",
    "rules",
];
const RULE_KEYS: [&str; 7] = [
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

impl FileParser<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_string(),
            pos: self.index.find(path),
            message: message.into(),
        });
    }

    fn parse(&mut self, text: &str) -> Vec<Group> {
        let mut value: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let pos = e.location().map(|l| (l.line(), l.column()));
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                self.errors.push(RuleError {
                    file: self.file.to_string(),
                    pos,
                    message: format!("invalid YAML: {msg}"),
                });
                return Vec::new();
            }
        };
        // YAML merge keys (`<<: *defaults`), which Prometheus' YAML library also applies.
        if let Err(e) = value.apply_merge() {
            self.err("", format!("invalid merge key (<<): {e}"));
            return Vec::new();
        }
        let top = match value {
            // An empty file has no groups (Prometheus accepts it).
            Value::Null => return Vec::new(),
            Value::Mapping(m) => m,
            _ => {
                self.err("", "expected a mapping with the key \"groups\"");
                return Vec::new();
            }
        };
        let mut groups_value = None;
        for (k, v) in top {
            match k.as_str() {
                Some("groups") => groups_value = Some(v),
                Some(other) => self.err(
                    other,
                    format!("field {other} not found in rule file (only \"groups\")"),
                ),
                None => self.err("", "keys must be strings"),
            }
        }
        let list = match groups_value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(s)) => s,
            Some(_) => {
                self.err("groups", "\"groups\" must be a list of groups");
                return Vec::new();
            }
        };
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, g) in list.into_iter().enumerate() {
            let path = format!("groups[{i}]");
            if let Some(g) = self.group(&path, g, &mut names) {
                out.push(g);
            }
        }
        out
    }

    /// Splits a mapping into known keys, reporting the unknown ones.
    fn fields(
        &mut self,
        path: &str,
        v: Value,
        known: &[&str],
        what: &str,
    ) -> Option<BTreeMap<String, Value>> {
        let m = match v {
            Value::Mapping(m) => m,
            Value::Null => serde_yaml::Mapping::new(),
            _ => {
                self.err(path, format!("{what} must be a mapping"));
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (k, v) in m {
            let Some(k) = k.as_str().map(str::to_string) else {
                self.err(path, format!("{what}: keys must be strings"));
                continue;
            };
            if known.contains(&k.as_str()) {
                out.insert(k, v);
            } else {
                self.err(
                    &format!("{path}.{k}"),
                    format!(
                        "field {k} not found in {what} (known fields: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        Some(out)
    }

    fn string(&mut self, path: &str, v: &Value, what: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => {
                self.err(path, format!("{what} must be a string"));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, v: &Value, what: &str) -> Option<i64> {
        let s = self.string(path, v, what)?;
        match parse_model_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(path, format!("{what}: {e}"));
                None
            }
        }
    }

    fn string_map(&mut self, path: &str, v: Value, what: &str) -> Option<BTreeMap<String, String>> {
        let m = match v {
            Value::Null => return Some(BTreeMap::new()),
            Value::Mapping(m) => m,
            _ => {
                self.err(
                    path,
                    format!("{what} must be a mapping of names to strings"),
                );
                return None;
            }
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in m {
            let Some(k) = k.as_str().map(str::to_string) else {
                self.err(path, format!("{what}: names must be strings"));
                ok = false;
                continue;
            };
            let p = format!("{path}.{k}");
            match self.string(&p, &v, &format!("{what} {k:?}")) {
                Some(s) => {
                    out.insert(k, s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn group(&mut self, path: &str, v: Value, names: &mut HashSet<String>) -> Option<Group> {
        let errors_before = self.errors.len();
        let mut f = self.fields(path, v, &GROUP_KEYS, "rule group")?;
        let name = match f.remove("name") {
            Some(v) => self
                .string(&format!("{path}.name"), &v, "name")
                .unwrap_or_default(),
            None => String::new(),
        };
        if name.is_empty() {
            self.err(path, "Groupname must not be empty");
        } else if !names.insert(name.clone()) {
            self.err(
                path,
                format!("groupname: {name:?} is repeated in the same file"),
            );
        }
        let interval = f
            .remove("interval")
            .and_then(|v| self.duration(&format!("{path}.interval"), &v, "interval"))
            .filter(|d| *d > 0);
        let query_offset = f
            .remove("query_offset")
            .and_then(|v| self.duration(&format!("{path}.query_offset"), &v, "query_offset"));
        let limit = match f.remove("limit") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                n.as_i64().unwrap_or(0).max(0) as usize
            }
            Some(_) => {
                self.err(&format!("{path}.limit"), "limit must be a whole number");
                0
            }
        };
        let labels = match f.remove("labels") {
            Some(v) => {
                let lp = format!("{path}.labels");
                let m = self.string_map(&lp, v, "label").unwrap_or_default();
                for k in m.keys() {
                    if !is_valid_label_name(k) || k == crate::labels::METRIC_NAME {
                        self.err(&format!("{lp}.{k}"), format!("invalid label name: {k}"));
                    }
                }
                m
            }
            None => BTreeMap::new(),
        };
        let rules_v = match f.remove("rules") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(s)) => s,
            Some(_) => {
                self.err(&format!("{path}.rules"), "rules must be a list");
                Vec::new()
            }
        };
        let mut rules = Vec::new();
        for (i, r) in rules_v.into_iter().enumerate() {
            if let Some(r) = self.rule(&format!("{path}.rules[{i}]"), &name, i + 1, r, &labels) {
                rules.push(r);
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Group::new(
            name,
            self.file.to_string(),
            interval,
            query_offset,
            limit,
            labels,
            rules,
        ))
    }

    fn rule(
        &mut self,
        path: &str,
        group: &str,
        number: usize,
        v: Value,
        group_labels: &BTreeMap<String, String>,
    ) -> Option<Rule> {
        let errors_before = self.errors.len();
        let f = self.rule_fields(path, group, number, v)?;
        match (&f.record, &f.alert) {
            (Some(_), Some(_)) => self.err(
                &format!("{path}.record"),
                format!("{}only one of 'record' and 'alert' must be set", f.prefix),
            ),
            (None, None) => self.err(
                path,
                format!("{}one of 'record' or 'alert' must be set", f.prefix),
            ),
            _ => {}
        }
        let expr = self.rule_expr(path, &f);
        if let Some(r) = &f.record {
            self.check_recording_rule(path, r, &f);
        }
        self.check_rule_label_names(path, &f);
        if let Some(a) = &f.alert {
            self.check_alert_templates(path, a, &f);
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let expr = expr?;
        let expr_text = f.expr_text.unwrap_or_default();
        // Group labels first, the rule's own win (Prometheus' `FromMaps(rg.Labels, r.Labels)`).
        let mut merged = group_labels.clone();
        merged.extend(f.labels);
        match (f.record, f.alert) {
            (Some(r), None) => Some(Rule::Recording(RecordingRule::new(
                r, expr, expr_text, merged,
            ))),
            (None, Some(a)) => Some(Rule::Alerting(AlertingRule::new(
                a,
                expr,
                expr_text,
                f.for_ms,
                f.keep_ms,
                merged,
                f.annotations,
            ))),
            _ => None,
        }
    }

    /// Reads a rule's fields; a field of the wrong type is an error and reads as absent.
    fn rule_fields(
        &mut self,
        path: &str,
        group: &str,
        number: usize,
        v: Value,
    ) -> Option<RuleFields> {
        let mut f = self.fields(path, v, &RULE_KEYS, "rule")?;
        let mut get_str = |p: &mut Self, k: &str| -> Option<String> {
            f.remove(k)
                .and_then(|v| p.string(&format!("{path}.{k}"), &v, k))
                .filter(|s| !s.is_empty())
        };
        let record = get_str(self, "record");
        let alert = get_str(self, "alert");
        let expr_text = get_str(self, "expr");
        let rule_name = alert.clone().or(record.clone()).unwrap_or_default();
        // Prometheus' prefix for rule errors: `group "g", rule 2, "name": `.
        let prefix = format!("group {group:?}, rule {number}, {rule_name:?}: ");
        let at = |k: &str| format!("{path}.{k}");
        let for_ms = match f.remove("for") {
            Some(v) => self
                .duration(&at("for"), &v, &format!("{prefix}for"))
                .unwrap_or(0),
            None => 0,
        };
        let keep_ms = match f.remove("keep_firing_for") {
            Some(v) => self
                .duration(
                    &at("keep_firing_for"),
                    &v,
                    &format!("{prefix}keep_firing_for"),
                )
                .unwrap_or(0),
            None => 0,
        };
        let labels = match f.remove("labels") {
            Some(v) => self
                .string_map(&at("labels"), v, &format!("{prefix}label"))
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let annotations_written = f.contains_key("annotations");
        let annotations = match f.remove("annotations") {
            Some(v) => self
                .string_map(&at("annotations"), v, &format!("{prefix}annotation"))
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Some(RuleFields {
            prefix,
            record,
            alert,
            expr_text,
            for_ms,
            keep_ms,
            labels,
            annotations,
            annotations_written,
        })
    }

    /// The rule's parsed `expr`; its absence or a parse failure is an error.
    fn rule_expr(&mut self, path: &str, f: &RuleFields) -> Option<crate::promql::Expr> {
        let prefix = &f.prefix;
        match &f.expr_text {
            None => {
                self.err(path, format!("{prefix}field 'expr' must be set in rule"));
                None
            }
            Some(t) => match crate::promql::parse(t) {
                Ok(e) => Some(e),
                Err(e) => {
                    self.err(
                        &format!("{path}.expr"),
                        format!("{prefix}could not parse expression: {e}"),
                    );
                    None
                }
            },
        }
    }

    /// What a recording rule (named `r`) may not have, and its name's syntax.
    fn check_recording_rule(&mut self, path: &str, r: &str, f: &RuleFields) {
        let prefix = &f.prefix;
        let at = |k: &str| format!("{path}.{k}");
        if f.annotations_written && !f.annotations.is_empty() {
            self.err(
                &at("annotations"),
                format!("{prefix}invalid field 'annotations' in recording rule"),
            );
        }
        if f.for_ms != 0 {
            self.err(
                &at("for"),
                format!("{prefix}invalid field 'for' in recording rule"),
            );
        }
        if f.keep_ms != 0 {
            self.err(
                &at("keep_firing_for"),
                format!("{prefix}invalid field 'keep_firing_for' in recording rule"),
            );
        }
        if !is_valid_metric_name(r) {
            self.err(
                &at("record"),
                format!("{prefix}invalid recording rule name: {r}"),
            );
        }
        if r.contains(['{', '}']) {
            self.err(
                &at("record"),
                format!(
                    "{prefix}braces present in the recording rule name; should it be in expr?: {r}"
                ),
            );
        }
    }

    /// The names of the rule's labels and annotations.
    fn check_rule_label_names(&mut self, path: &str, f: &RuleFields) {
        let prefix = &f.prefix;
        for k in f.labels.keys() {
            if !is_valid_label_name(k) || k == crate::labels::METRIC_NAME {
                self.err(
                    &format!("{path}.labels.{k}"),
                    format!("{prefix}invalid label name: {k}"),
                );
            }
        }
        for k in f.annotations.keys() {
            if !is_valid_label_name(k) {
                self.err(
                    &format!("{path}.annotations.{k}"),
                    format!("{prefix}invalid annotation name: {k}"),
                );
            }
        }
    }

    /// The templates in an alerting rule's (named `a`) labels and annotations.
    fn check_alert_templates(&mut self, path: &str, a: &str, f: &RuleFields) {
        let prefix = &f.prefix;
        for (kind, key, map) in [
            ("label", "labels", &f.labels),
            ("annotation", "annotations", &f.annotations),
        ] {
            for (k, text) in map {
                if let Err(e) = check_alert(a, text) {
                    self.err(
                        &format!("{path}.{key}.{k}"),
                        format!("{prefix}{kind} {k:?}: {e}"),
                    );
                }
            }
        }
    }
}

/// A rule's fields as read, before they are checked.
struct RuleFields {
    /// Prometheus' prefix for rule errors: `group "g", rule 2, "name": `.
    prefix: String,
    record: Option<String>,
    alert: Option<String>,
    expr_text: Option<String>,
    for_ms: i64,
    keep_ms: i64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `annotations:` was given, even if empty.
    annotations_written: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse_rule_file("r.yml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_file_loads_with_group_labels_merged() {
        let g = parse_rule_file(
            "r.yml",
            r#"
groups:
  - name: g1
    interval: 30s
    query_offset: 1m
    limit: 10
    labels: {team: a, sev: low}
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {sev: high}
        annotations: {summary: "{{ $labels.job }} is down"}
"#,
        )
        .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name(), "g1");
        assert_eq!(g[0].interval_ms(), Some(30_000));
        assert_eq!(g[0].query_offset_ms(), Some(60_000));
        assert_eq!(g[0].limit(), 10);
        let rules = g[0].rules();
        assert_eq!(rules.len(), 2);
        let Rule::Alerting(a) = &rules[1] else {
            panic!("second rule is an alert")
        };
        assert_eq!(a.hold_ms(), 300_000);
        assert_eq!(a.labels().get("sev"), Some("high"));
        assert_eq!(a.labels().get("team"), Some("a"));
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let e = errs(
            r#"groups:
  - name: g
    rules:
      - record: "bad name"
        expr: up
        for: 5m
      - alert: A
        record: b
        expr: up
      - expr: up
      - alert: B
        expr: sum(up
        labels: {"1x": y}
        annotations: {s: "{{ .Foo "}
        foo: bar
  - name: g
    interval: 5x
    rules: []
"#,
        );
        let joined = e.join("\n");
        assert!(joined.contains("r.yml:6:9: group \"g\", rule 1, \"bad name\": invalid field 'for' in recording rule"), "{joined}");
        assert!(joined.contains("r.yml:4:9: group \"g\", rule 1, \"bad name\": invalid recording rule name: bad name"), "{joined}");
        assert!(joined.contains("r.yml:8:9: group \"g\", rule 2, \"A\": only one of 'record' and 'alert' must be set"), "{joined}");
        assert!(
            joined.contains(
                "r.yml:10:9: group \"g\", rule 3, \"\": one of 'record' or 'alert' must be set"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("r.yml:12:9: group \"g\", rule 4, \"B\": could not parse expression"),
            "{joined}"
        );
        assert!(joined.contains("invalid label name: 1x"), "{joined}");
        assert!(joined.contains("r.yml:14:23: group \"g\", rule 4, \"B\": annotation \"s\": error parsing template __alert_B"), "{joined}");
        assert!(
            joined.contains("r.yml:15:9: field foo not found in rule"),
            "{joined}"
        );
        assert!(
            joined.contains("r.yml:16:5: groupname: \"g\" is repeated in the same file"),
            "{joined}"
        );
        assert!(
            joined.contains("r.yml:17:5: interval: not a valid duration string: \"5x\""),
            "{joined}"
        );
        // Sorted by line.
        let lines: Vec<usize> = e
            .iter()
            .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{joined}");
    }

    #[test]
    fn check_report_reads_like_promtool() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yml");
        let bad = dir.path().join("bad.yml");
        std::fs::write(
            &good,
            "groups: [{name: a, rules: [{record: x, expr: '1'}, {alert: A, expr: up == 0}]}]\n",
        )
        .unwrap();
        std::fs::write(
            &bad,
            "groups: [{name: a, rules: [{record: x, expr: 'sum('}]}]\n",
        )
        .unwrap();
        let (text, ok) = check_rules_report(std::slice::from_ref(&good));
        assert!(ok);
        assert_eq!(
            text,
            format!("Checking {}\n  SUCCESS: 2 rules found\n\n", good.display())
        );
        let (text, ok) = check_rules_report(&[good.clone(), bad.clone()]);
        assert!(!ok);
        assert!(text.contains(&format!("Checking {}\n  FAILED:\n{}:1:40: group \"a\", rule 1, \"x\": could not parse expression", bad.display(), bad.display())), "{text}");
    }

    #[test]
    fn anchors_and_merge_keys() {
        let g = parse_rule_file(
            "m.yml",
            "x-common: &c {for: 5m, labels: {team: ops}}\ngroups:\n  - name: g\n    rules:\n      - <<: *c\n        alert: A\n        expr: up == 0\n",
        );
        // `x-common` is not a rule file key: only `groups` is.
        assert!(g
            .unwrap_err()
            .to_string()
            .starts_with("m.yml:1:1: field x-common not found"));
        let g = parse_rule_file(
            "m.yml",
            "groups:\n  - name: g\n    rules:\n      - &a {alert: A, expr: up == 0, for: 5m, labels: {team: ops}}\n      - <<: *a\n        alert: B\n",
        )
        .unwrap();
        let Rule::Alerting(b) = &g[0].rules()[1] else {
            panic!("an alert")
        };
        assert_eq!(
            (b.name(), b.hold_ms(), b.labels().get("team")),
            ("B", 300_000, Some("ops"))
        );
    }

    #[test]
    fn empty_file_and_syntax_error() {
        assert!(parse_rule_file("e.yml", "").unwrap().is_empty());
        let e = errs("groups: [\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("r.yml:"), "{e:?}");
        assert!(e[0].contains("invalid YAML"), "{e:?}");
        assert_eq!(
            errs("grups: []\n"),
            vec!["r.yml:1:1: field grups not found in rule file (only \"groups\")"]
        );
    }

    #[test]
    fn load_files_expands_globs_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "groups: [{name: a, rules: [{record: x, expr: '1'}]}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yml"), "groups: [{name: b, rules: []}]\n").unwrap();
        let g = load_files(&[dir.path().join("*.yml")]).unwrap();
        assert_eq!(
            g.iter().map(|g| g.name()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let missing = dir.path().join("nope.yml");
        let e = load_files(std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read the rule file", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn an_optimization_file_among_rule_files_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("alerts.yml"),
            "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: vector(1)\n",
        )
        .unwrap();
        let opt = dir.path().join("optimization.yml");
        std::fs::write(&opt, "interval: 5m\ngates: {min_confidence: 0.7}\n").unwrap();
        let glob = dir.path().join("*.yml");
        let e = load_files(&[glob]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(
            e.to_string(),
            format!("{}: {NOT_A_RULE_FILE}", opt.display())
        );
    }

    #[test]
    fn the_shipped_rule_files_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/prometheus");
        for f in ["alerts.yml", "recording.yml"] {
            let p = root.join(f);
            if !p.exists() {
                eprintln!("skipping {}: not there", p.display());
                continue;
            }
            let g = load_files(std::slice::from_ref(&p)).unwrap_or_else(|e| panic!("{e}"));
            assert!(!g.is_empty(), "{} has groups", p.display());
        }
    }
}

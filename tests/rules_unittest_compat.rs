//! `depin-orcha test rules` against `promtool test rules` (Prometheus 2.42, `/usr/bin/promtool`)
//! on small test files that each exercise one part of promtool's unit-test semantics: `for`
//! and eval times between evaluations, groups in `group_eval_order`, several rules of one
//! name, `$externalLabels`/`$externalURL`, `_` and `stale` in input series, scalar and empty
//! results, and the file-level errors. For every case both tools must give the verdict written
//! in the table, and where the case says so, the very same failure text.
//!
//! Without promtool only our side runs (the verdicts in the table still hold); with `CI=true`
//! its absence fails.

mod common;

use std::path::Path;
use std::process::Command;

use depin_orcha::rules::unittest;

struct Case {
    name: &'static str,
    rules: &'static str,
    test: &'static str,
    passes: bool,
    /// Whether the failure text must be identical (not when it carries an engine's own error
    /// message or a YAML parser's).
    same_text: bool,
}

const RULES: &str = r#"
groups:
  - name: first
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
  - name: second
    rules:
      - alert: XHigh
        expr: job:x:sum > 10
        for: 2m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.job }} is at {{ $value }}"
          link: "{{ $externalURL }}/x?env={{ $externalLabels.env }}"
  - name: third
    rules:
      - alert: XHigh
        expr: x > 100
        labels:
          severity: critical
"#;

const CASES: &[Case] = &[
    Case {
        name: "for: pending at 3m, firing from 4m on; eval times between evaluations",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
evaluation_interval: 1m
group_eval_order: [first, second, third]
tests:
  - interval: 1m
    external_labels: {env: prod}
    external_url: http://prom.example
    input_series:
      - series: 'x{job="a",instance="1"}'
        values: '1 1 6 6 6 6 6'
      - series: 'x{job="a",instance="2"}'
        values: '1 1 6 6 6 6 6'
    alert_rule_test:
      - eval_time: 3m
        alertname: XHigh
        exp_alerts: []
      - eval_time: 4m30s
        alertname: XHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: a}
            exp_annotations:
              summary: "a is at 12"
              link: "http://prom.example/x?env=prod"
"#,
        passes: true,
        same_text: true,
    },
    Case {
        name: "two rules named XHigh in two groups both count",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
group_eval_order: [first, second, third]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="a"}'
        values: '200x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: XHigh
        exp_alerts:
          - exp_labels: {severity: critical, job: a}
          - exp_labels: {severity: warning, job: a}
            exp_annotations:
              summary: "a is at 200"
              link: "/x?env="
"#,
        passes: true,
        same_text: true,
    },
    Case {
        name: "the wrong severity fails with promtool's exp/got text",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
group_eval_order: [first, second, third]
tests:
  - name: wrong severity
    interval: 1m
    input_series:
      - series: 'x{job="a"}'
        values: '200x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: XHigh
        exp_alerts:
          - exp_labels: {severity: critical, job: a}
          - exp_labels: {severity: page, job: a}
            exp_annotations:
              summary: "a is at 200"
              link: "/x?env="
"#,
        passes: false,
        same_text: true,
    },
    Case {
        name: "recording output, scalar and empty results in promql_expr_test",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="a",instance="1"}'
        values: '1 2 3 _ 5 stale'
      - series: 'x{job="b",instance="1"}'
        values: '0.1+0.1x5'
    promql_expr_test:
      - expr: job:x:sum
        eval_time: 4m
        exp_samples:
          - labels: 'job:x:sum{job="a"}'
            value: 5
          - labels: 'job:x:sum{job="b"}'
            value: 0.5
      - expr: scalar(x{job="a"})
        eval_time: 2m
        exp_samples:
          - value: 3
      - expr: x{job="a"}
        eval_time: 5m
        exp_samples: []
      - expr: x{job="a"}
        eval_time: 3m
        exp_samples:
          - labels: 'x{job="a",instance="1"}'
            value: 3
"#,
        passes: true,
        same_text: true,
    },
    Case {
        name: "a wrong value and a wrong label set fail with promtool's text",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="b"}'
        values: '0.1+0.1x5'
    promql_expr_test:
      - expr: x * 3
        eval_time: 2m
        exp_samples:
          - labels: '{job="b"}'
            value: 0.9
      - expr: x
        eval_time: 2m
        exp_samples:
          - labels: 'x{job="c"}'
            value: 0.3
          - labels: 'y'
            value: 1e-7
"#,
        passes: false,
        same_text: true,
    },
    Case {
        name: "group_eval_order puts the alert before the recording rule: it sees the value a step late",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
group_eval_order: [second, first]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="a"}'
        values: '0 0 20x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: XHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: a}
            exp_annotations:
              summary: "a is at 20"
              link: "/x?env="
"#,
        passes: false,
        same_text: true,
    },
    Case {
        name: "a rule that fails to evaluate stops the test group",
        rules: r#"
groups:
  - name: g
    rules:
      - record: bad
        expr: x + on() x
"#,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{a="1"}'
        values: '1x3'
      - series: 'x{a="2"}'
        values: '1x3'
    promql_expr_test:
      - expr: x
        eval_time: 2m
        exp_samples: []
"#,
        passes: false,
        same_text: false,
    },
    Case {
        name: "an alert test without alertname",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - name: nameless
    interval: 1m
    input_series:
      - series: 'x'
        values: '1'
    alert_rule_test:
      - eval_time: 1m
        exp_alerts: []
"#,
        passes: false,
        same_text: true,
    },
    Case {
        name: "a group repeated in group_eval_order",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
group_eval_order: [first, second, first]
tests:
  - interval: 1m
    input_series: []
"#,
        passes: false,
        same_text: true,
    },
    Case {
        name: "an unknown key in the test file",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series: []
    alert_rule_tests: []
"#,
        passes: false,
        same_text: false,
    },
    Case {
        name: "a query that does not parse",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    promql_expr_test:
      - expr: sum(
        eval_time: 0m
        exp_samples: []
"#,
        passes: false,
        same_text: false,
    },
    Case {
        name: "unquoted values keep their text: 0x10 is ten zeros, not the number 16",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="a"}'
        values: 0x10
    promql_expr_test:
      - expr: count_over_time(x[30m])
        eval_time: 20m
        exp_samples:
          - labels: '{job="a"}'
            value: 11
"#,
        passes: true,
        same_text: true,
    },
    Case {
        name: "samples a year apart are all kept",
        rules: RULES,
        test: r#"
rule_files: [rules.yml]
evaluation_interval: 100d
tests:
  - interval: 100d
    input_series:
      - series: 'x{job="a"}'
        values: '0+1x10'
    promql_expr_test:
      - expr: x
        eval_time: 0m
        exp_samples:
          - labels: 'x{job="a"}'
            value: 0
      - expr: x
        eval_time: 1000d
        exp_samples:
          - labels: 'x{job="a"}'
            value: 10
"#,
        passes: true,
        same_text: true,
    },
    Case {
        name: "a rule file pattern that matches nothing only warns",
        rules: RULES,
        test: r#"
rule_files: [rules.yml, nothing/*.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job="a"}'
        values: '1'
    promql_expr_test:
      - expr: job:x:sum
        eval_time: 0m
        exp_samples:
          - labels: 'job:x:sum{job="a"}'
            value: 1
"#,
        passes: true,
        same_text: true,
    },
];

#[test]
fn promtool_and_ours_agree_case_by_case() {
    let promtool = common::promtool();
    let mut disagreements = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), case.rules).expect("write rules");
        let test = dir.path().join(format!("case{i}.yml"));
        std::fs::write(&test, case.test).expect("write test");

        let ours = unittest::run_test_file(&test);
        if ours.passed() != case.passes {
            disagreements.push(format!(
                "{}: ours {} (expected {})\n{ours}",
                case.name,
                verdict(ours.passed()),
                verdict(case.passes)
            ));
        }
        let Some(promtool) = &promtool else { continue };
        let out = Command::new(promtool)
            .args(["test", "rules", &test.display().to_string()])
            .current_dir(dir.path())
            .output()
            .expect("run promtool");
        let theirs_ok = out.status.success();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if theirs_ok != case.passes {
            disagreements.push(format!(
                "{}: promtool {} (expected {})\n{stderr}",
                case.name,
                verdict(theirs_ok),
                verdict(case.passes)
            ));
        }
        let ours_text = promtool_stderr(&ours);
        if case.same_text && stderr != ours_text {
            disagreements.push(format!(
                "{}: failure text differs\n--- promtool\n{stderr}\n--- ours\n{ours_text}",
                case.name
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "passes"
    } else {
        "fails"
    }
}

/// What promtool writes to stderr for one file: its warnings, then `  FAILED:` and each error
/// on its own lines (blank lines go to stdout).
fn promtool_stderr(r: &unittest::FileReport) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        s.push_str(w);
        s.push('\n');
    }
    if !r.passed() {
        s.push_str("  FAILED:\n");
        for e in r.errors() {
            s.push_str(e);
            s.push('\n');
        }
    }
    s
}

/// The test-group count in the summary line follows the groups, and a file that cannot be read
/// counts as one failure.
#[test]
fn summary_counts_test_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.yml"), RULES).expect("write rules");
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series: [{series: 'x{job=\"a\"}', values: '1'}]\n    promql_expr_test: [{expr: x, eval_time: 0m, exp_samples: [{labels: 'x{job=\"a\"}', value: 1}]}]\n  - interval: 1m\n    promql_expr_test: [{expr: x, eval_time: 0m, exp_samples: [{labels: 'x', value: 1}]}]\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.yml");
    let r = unittest::run_test_files(&[good.as_path(), Path::new(&missing)]);
    assert_eq!((r.passed(), r.failed()), (1, 2), "{r}");
    assert!(!r.success());
    let text = r.to_string();
    assert!(text.ends_with("1 passed, 2 failed\n"), "{text}");
    assert!(
        text.contains(&format!(
            "Unit Testing:  {}\n  FAILED:\n",
            missing.display()
        )),
        "{text}"
    );
}

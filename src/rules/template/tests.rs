//! End-to-end tests of template expansion: the scenarios of Prometheus'
//! `template/template_test.go` (prometheus/prometheus, Apache-2.0; cases copied with their
//! expected output, HTML-mode and native-histogram cases left out), Go `text/template`
//! semantics, and alert expansion as `rules/alerting.go` does it.

use std::collections::BTreeMap;

use super::*;

struct FixedQuery(Vec<QuerySample>);

impl QueryFn for FixedQuery {
    fn query(&self, _expr: &str) -> Result<Vec<QuerySample>, String> {
        Ok(self.0.clone())
    }
}

fn sample(pairs: &[(&str, &str)], v: f64) -> QuerySample {
    QuerySample {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: v,
        timestamp_ms: 0,
    }
}

/// Expands like Prometheus' test harness: name "test", time 1353755652000 ms, external URL
/// http://testhost:9090/path/prefix.
fn expand_with(text: &str, input: Value, q: Vec<QuerySample>) -> Result<String, String> {
    let q = FixedQuery(q);
    Expander::new("test", text, input)
        .timestamp_ms(1_353_755_652_000)
        .external_url("http://testhost:9090/path/prefix")
        .query(&q)
        .expand()
        .map_err(|e| e.to_string())
}

fn expand(text: &str) -> Result<String, String> {
    expand_with(text, Value::Nil, Vec::new())
}

fn floats(v: &[f64]) -> Value {
    Value::list(v.iter().map(|f| Value::Float(*f)).collect())
}

fn strings(v: &[&str]) -> Value {
    Value::list(v.iter().map(|s| Value::str(*s)).collect())
}

fn ints(v: &[i64]) -> Value {
    Value::list(v.iter().map(|i| Value::Int(*i)).collect())
}

fn uints(v: &[u64]) -> Value {
    Value::list(v.iter().map(|u| Value::Uint(*u)).collect())
}

#[track_caller]
fn ok(text: &str, input: Value, want: &str) {
    assert_eq!(
        expand_with(text, input, Vec::new()),
        Ok(want.to_string()),
        "template {text:?}"
    );
}

#[track_caller]
fn fails(text: &str, input: Value, want: &str) {
    assert_eq!(
        expand_with(text, input, Vec::new()),
        Err(want.to_string()),
        "template {text:?}"
    );
}

// ---- prometheus/prometheus template/template_test.go, TestTemplateExpansion ----

#[test]
fn prometheus_basics() {
    ok("plain text", Value::Nil, "plain text");
    ok("{{ 1 }}", Value::Nil, "1");
    fails(
        "{{ \u{a0}}}",
        Value::Nil,
        "error parsing template test: template: test:1: unrecognized character in action: U+00A0",
    );
    ok("{{ \"<b>\" }}", Value::Nil, "<b>");
    ok(
        "{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}",
        Value::Nil,
        "1 2",
    );
    ok("{{ .Foo }}", Value::Nil, "<no value>");
    fails(
        "{{",
        Value::Nil,
        "error parsing template test: template: test:1: unclosed action",
    );
    ok(
        "{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}",
        Value::Nil,
        "xa",
    );
}

#[test]
fn prometheus_query_functions() {
    let metric_a = || sample(&[("__name__", "metric"), ("instance", "a")], 11.0);
    assert_eq!(
        expand_with(
            "{{ query \"1.5\" | first | value }}",
            Value::Nil,
            vec![sample(&[], 1.5)]
        ),
        Ok("1.5".into())
    );
    assert_eq!(
        expand_with(
            "{{ query \"metric{instance='a'}\" | first | value }}",
            Value::Nil,
            vec![metric_a()]
        ),
        Ok("11".into())
    );
    assert_eq!(
        expand_with(
            "{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
            Value::Nil,
            vec![metric_a()]
        ),
        Ok("a".into())
    );
    assert_eq!(
        expand_with(
            "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
            Value::Nil,
            vec![sample(&[("__name__", "metric"), ("__value__", "a")], 11.0)]
        ),
        Ok("a".into())
    );
    assert_eq!(
        expand_with(
            "{{ query \"metric{instance='a'}\" | first | label \"foo\" }}",
            Value::Nil,
            vec![metric_a()]
        ),
        Ok("".into())
    );
    assert_eq!(
        expand_with(
            "{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}",
            Value::Nil,
            vec![metric_a()]
        ),
        Ok("".into())
    );
    assert_eq!(
        expand_with(
            "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
            Value::Nil,
            vec![sample(&[("__name__", "metric"), ("instance", "b")], 21.0), metric_a()]
        ),
        Ok("a:11: b:21: ".into())
    );
    assert_eq!(
        expand_with("{{ query \"missing\" | first }}", Value::Nil, vec![]),
        Err("error executing template test: template: test:1:21: executing \"test\" at <first>: error calling first: first() called on vector with no elements".into())
    );
    assert_eq!(
        expand_with("{{ (query \"missing\").banana }}", Value::Nil, vec![]),
        Err("error executing template test: template: test:1:10: executing \"test\" at <\"missing\">: can't evaluate field banana in type template.queryResult".into())
    );
}

#[test]
fn prometheus_strip_port_and_domain() {
    for (input, port, domain) in [
        ("foo.example.com", "foo.example.com", "foo"),
        ("foo.example.com:12345", "foo.example.com", "foo:12345"),
        ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:12345", "192.0.2.1", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1", "2001:0DB8::1"),
        (
            "[2001:0DB8::1]:12345",
            "2001:0DB8::1",
            "[2001:0DB8::1]:12345",
        ),
        (
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
        ),
    ] {
        ok(
            &format!("{{{{ \"{input}\" | stripPort }}}}"),
            Value::Nil,
            port,
        );
        ok(
            &format!("{{{{ \"{input}\" | stripDomain }}}}"),
            Value::Nil,
            domain,
        );
    }
}

#[test]
fn prometheus_humanize() {
    let t = "{{ range . }}{{ humanize . }}:{{ end }}";
    ok(t, floats(&[0.0, 1.0, 1234567.0, 0.12]), "0:1:1.235M:120m:");
    ok(
        t,
        strings(&["0.0", "1.0", "1234567.0", ".12"]),
        "0:1:1.235M:120m:",
    );
    ok(
        t,
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0:-1:1:1.235M:9.223E:",
    );
    ok(t, uints(&[0, 1, 1234567, u64::MAX]), "0:1:1.235M:18.45E:");
    fails(
        "{{ humanize \"one\" }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <humanize \"one\">: error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
}

#[test]
fn prometheus_humanize1024() {
    let t = "{{ range . }}{{ humanize1024 . }}:{{ end }}";
    ok(t, floats(&[0.0, 1.0, 1048576.0, 0.12]), "0:1:1Mi:0.12:");
    ok(
        t,
        strings(&["0.0", "1.0", "1048576.0", ".12"]),
        "0:1:1Mi:0.12:",
    );
    ok(
        t,
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0:-1:1:1.177Mi:8Ei:",
    );
    ok(t, uints(&[0, 1, 1234567, u64::MAX]), "0:1:1.177Mi:16Ei:");
    fails(
        "{{ humanize1024 \"one\" }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <humanize1024 \"one\">: error calling humanize1024: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
}

#[test]
fn prometheus_humanize_duration() {
    let t = "{{ range . }}{{ humanizeDuration . }}:{{ end }}";
    ok(
        t,
        floats(&[
            0.0,
            1.0,
            60.0,
            3600.0,
            86400.0,
            86400.0 + 3600.0,
            -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
            899.99,
        ]),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:",
    );
    ok(
        t,
        strings(&["0", "1", "60", "3600", "86400"]),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:",
    );
    ok(
        t,
        floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
    );
    ok(
        t,
        strings(&[".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"]),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
    );
    ok(t, ints(&[0, -1, 1, 1234567]), "0s:-1s:1s:14d 6h 56m 7s:");
    ok(t, uints(&[0, 1, 1234567]), "0s:1s:14d 6h 56m 7s:");
    fails(
        "{{ humanizeDuration \"one\" }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <humanizeDuration \"one\">: error calling humanizeDuration: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
}

#[test]
fn prometheus_humanize_inf_nan() {
    let t = "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}";
    let want = "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:";
    ok(
        t,
        floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        want,
    );
    ok(t, strings(&["+Inf", "-Inf", "NaN"]), want);
}

#[test]
fn prometheus_humanize_percentage() {
    ok(
        "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
        Value::Nil,
        "-22.22%:0%:12.35%:123.5%",
    );
    let t = "{{ range . }}{{ humanizePercentage . }}:{{ end }}";
    ok(
        t,
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0%:-100%:100%:1.235e+08%:9.223e+20%:",
    );
    ok(
        t,
        uints(&[0, 1, 1234567, u64::MAX]),
        "0%:100%:1.235e+08%:1.845e+21%:",
    );
    ok(
        "{{ \"-0.22222\" | humanizePercentage }}:{{ \"0.0\" | humanizePercentage }}:{{ \"0.1234567\" | humanizePercentage }}:{{ \"1.23456\" | humanizePercentage }}",
        Value::Nil,
        "-22.22%:0%:12.35%:123.5%",
    );
    fails(
        "{{ \"one\" | humanizePercentage }}",
        Value::Nil,
        "error executing template test: template: test:1:11: executing \"test\" at <humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
}

#[test]
fn prometheus_humanize_timestamp() {
    let t = "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}";
    ok(
        t,
        ints(&[0, -1, 1, 1234567, 9223372036]),
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
    );
    ok(
        t,
        uints(&[0, 1, 1234567, 9223372036]),
        "1970-01-01 00:00:00 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
    );
    fails(
        t,
        ints(&[i64::MIN, i64::MAX]),
        "error executing template test: template: test:1:16: executing \"test\" at <humanizeTimestamp .>: error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64",
    );
    fails(
        t,
        uints(&[u64::MAX]),
        "error executing template test: template: test:1:16: executing \"test\" at <humanizeTimestamp .>: error calling humanizeTimestamp: 1.8446744073709552e+19 cannot be represented as a nanoseconds timestamp since it overflows int64",
    );
    ok(
        "{{ 1435065584.128 | humanizeTimestamp }}",
        Value::Nil,
        "2015-06-23 13:19:44.128 +0000 UTC",
    );
    ok(
        "{{ \"1435065584.128\" | humanizeTimestamp }}",
        Value::Nil,
        "2015-06-23 13:19:44.128 +0000 UTC",
    );
}

#[test]
fn prometheus_time_functions() {
    ok(
        "{{ (1435065584.128 | toTime).Format \"2006\" }}",
        Value::Nil,
        "2015",
    );
    ok(
        "{{ (\"1435065584.128\" | toTime).Format \"2006\" }}",
        Value::Nil,
        "2015",
    );
    ok("{{ (1800 | toDuration).String }}", Value::Nil, "30m0s");
    ok("{{ (\"1800\" | toDuration).String }}", Value::Nil, "30m0s");
    ok("{{ now }}", Value::Nil, "1.353755652e+09");
    ok(
        "{{ (now | toTime).Format \"Mon Jan 2 15:04:05 2006\" }}",
        Value::Nil,
        "Sat Nov 24 11:14:12 2012",
    );
    ok(
        "{{ (\"-30m\" | parseDuration | toDuration | (now | toTime).Add).UnixMilli }}",
        Value::Nil,
        "1353753852000",
    );
    ok(
        "{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}",
        Value::Nil,
        "3720.01",
    );
    ok(
        "{{ printf \"%0.2f\" (parseDuration \"-1h2m10ms\") }}",
        Value::Nil,
        "-3720.01",
    );
}

#[test]
fn prometheus_string_functions() {
    ok("{{ \"aa bb CC\" | title }}", Value::Nil, "Aa Bb CC");
    ok("{{ \"aa bb CC\" | toUpper }}", Value::Nil, "AA BB CC");
    ok("{{ \"aA bB CC\" | toLower }}", Value::Nil, "aa bb cc");
    ok(
        "{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}",
        Value::Nil,
        "true false",
    );
    ok(
        "{{ graphLink \"up\" }}",
        Value::Nil,
        "/graph?g0.expr=up&g0.tab=0",
    );
    ok(
        "{{ tableLink \"up\" }}",
        Value::Nil,
        "/graph?g0.expr=up&g0.tab=1",
    );
    ok("{{ pathPrefix }}", Value::Nil, "/path/prefix");
    ok(
        "{{ externalURL }}",
        Value::Nil,
        "http://testhost:9090/path/prefix",
    );
}

// ---- Go text/template semantics ----

#[test]
fn trim_markers_and_comments() {
    ok("a  {{- 1 -}}  b", Value::Nil, "a1b");
    ok("a\n  {{- /* note */ -}}\n  b", Value::Nil, "ab");
    ok("{{- 3 }} {{-3}}", Value::Nil, "3 -3");
    ok("x {{/* c */}} y", Value::Nil, "x  y");
}

#[test]
fn if_else_if_with() {
    let t = "{{if eq . 1}}one{{else if eq . 2}}two{{else}}many{{end}}";
    ok(t, Value::Int(1), "one");
    ok(t, Value::Int(2), "two");
    ok(t, Value::Int(3), "many");
    ok(
        "{{with .}}[{{.}}]{{else}}empty{{end}}",
        Value::str("x"),
        "[x]",
    );
    ok(
        "{{with .}}[{{.}}]{{else}}empty{{end}}",
        Value::str(""),
        "empty",
    );
    ok("{{with $x := 5}}{{$x}}{{end}}", Value::Nil, "5");
    ok(
        "{{with .A}}a{{else with .B}}b={{.}}{{end}}",
        Value::string_map([("B".to_string(), "2".to_string())].into()),
        "b=2",
    );
}

#[test]
fn range_over_lists_maps_and_ints() {
    let m = Value::string_map(
        [("b", "2"), ("a", "1"), ("c", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    // Go ranges over maps in key order.
    ok(
        "{{range $k, $v := .}}{{$k}}={{$v}};{{end}}",
        m.clone(),
        "a=1;b=2;c=3;",
    );
    ok("{{range .}}{{.}}{{end}}", m, "123");
    ok(
        "{{range $i, $e := .}}{{$i}}:{{$e}} {{end}}",
        strings(&["x", "y"]),
        "0:x 1:y ",
    );
    ok(
        "{{range .}}x{{else}}none{{end}}",
        Value::list(vec![]),
        "none",
    );
    ok("{{range .}}x{{else}}none{{end}}", Value::Nil, "none");
    ok("{{range 3}}{{.}}{{end}}", Value::Nil, "012");
    ok(
        "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
        ints(&[1, 2, 3, 4, 5]),
        "13",
    );
    fails(
        "{{range .}}{{end}}",
        Value::Bool(true),
        "error executing template test: template: test:1:8: executing \"test\" at <.>: range can't iterate over true",
    );
}

#[test]
fn variables_scope_and_assignment() {
    ok(
        "{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}",
        Value::Nil,
        "2",
    );
    ok(
        "{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}",
        Value::Nil,
        "21",
    );
    ok(
        "{{$x := 0}}{{range .}}{{$x = .}}{{end}}{{$x}}",
        ints(&[1, 2, 3]),
        "3",
    );
    ok(
        "{{with $.A}}{{$.B}}{{end}}",
        Value::string_map(
            [("A", "a"), ("B", "b")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        "b",
    );
    fails(
        "{{if true}}{{$y := 1}}{{end}}{{$y}}",
        Value::Nil,
        "error parsing template test: template: test:1: undefined variable \"$y\"",
    );
}

#[test]
fn define_template_block() {
    ok(
        "{{define \"t\"}}<{{.}}>{{end}}{{template \"t\" \"x\"}}{{template \"t\"}}",
        Value::Nil,
        "<x><<no value>>",
    );
    ok(
        "{{block \"b\" .}}default {{.}}{{end}}",
        Value::Int(7),
        "default 7",
    );
    // Templates see only their own $.
    fails(
        "{{define \"t\"}}{{$x}}{{end}}{{$x := 1}}",
        Value::Nil,
        "error parsing template test: template: test:1: undefined variable \"$x\"",
    );
    fails("{{template \"nope\"}}", Value::Nil, "error executing template test: template: test:1:11: executing \"test\" at <{{template \"nope\"}}>: template \"nope\" not defined");
}

#[test]
fn literals_and_pipelines() {
    ok(
        "{{\"a\\tb\\u00e9\"}}|{{`raw\\n`}}|{{'a'}}|{{0x10}}|{{1e3}}|{{1.50}}|{{true}}|{{-2}}",
        Value::Nil,
        "a\tbé|raw\\n|97|16|1000|1.5|true|-2",
    );
    ok("{{ \"x\" | printf \"%s-%s\" \"y\" }}", Value::Nil, "y-x");
    ok("{{ (printf \"%d\" 3) | len }}", Value::Nil, "1");
    ok(
        "{{ 3 | printf \"%d\" | printf \"[%s]\" }}",
        Value::Nil,
        "[3]",
    );
}

#[test]
fn builtin_functions() {
    ok(
        "{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}} {{not 0}}",
        Value::Nil,
        "0 2 x  true",
    );
    // and/or stop at the first decisive argument: the failing call after it is never made.
    ok("{{or 1 (index . 5)}}", Value::list(vec![]), "1");
    ok(
        "{{len .}} {{index . 1}} {{slice . 1 2}}",
        strings(&["a", "b", "c"]),
        "3 b [b]",
    );
    ok(
        "{{print 1 2 \"a\" \"b\" 3}}|{{println 1 \"a\"}}|",
        Value::Nil,
        "1 2ab3|1 a\n|",
    );
    ok(
        "{{html \"<a href='x'>\"}} {{js \"it's\"}} {{urlquery \"a b&c\"}}",
        Value::Nil,
        "&lt;a href=&#39;x&#39;&gt; it\\'s a+b%26c",
    );
    ok(
        "{{eq 1 2 3 1}} {{ne \"a\" \"b\"}} {{lt 1.5 2.5}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1 2}}",
        Value::Nil,
        "true true true true true false",
    );
    fails(
        "{{ gt .Value 5 }}",
        AlertData { value: 7.0, ..Default::default() }.to_value(),
        "error executing template test: template: test:1:3: executing \"test\" at <gt .Value 5>: error calling gt: incompatible types for comparison: float64 and int",
    );
    ok(
        "{{ gt .Value 5.0 }}",
        AlertData {
            value: 7.0,
            ..Default::default()
        }
        .to_value(),
        "true",
    );
    fails(
        "{{len 3}}",
        Value::Nil,
        "error executing template test: template: test:1:2: executing \"test\" at <len 3>: error calling len: len of type int",
    );
}

#[test]
fn printf_in_templates() {
    let d = AlertData {
        value: 0.98765,
        ..Default::default()
    }
    .to_value();
    ok("{{ printf \"%.2f\" .Value }}", d.clone(), "0.99");
    ok("{{ .Value | printf \"%.1f%%\" }}", d.clone(), "1.0%");
    ok("{{ printf \"%5.1f|%-6s|%03d|%x|%q|%v|%g|%e\" 3.14159 \"ab\" 7 255 \"q\" .Value 1e-7 123456.0 }}", d, "  3.1|ab    |007|ff|\"q\"|0.98765|1e-07|1.234560e+05");
}

#[test]
fn field_access_errors_and_missing_keys() {
    let d = AlertData {
        labels: [("job".to_string(), "node".to_string())].into(),
        ..Default::default()
    }
    .to_value();
    ok(
        "{{ .Labels.job }}|{{ .Labels.missing }}|",
        d.clone(),
        "node||",
    );
    fails(
        "{{ .Nope }}",
        d.clone(),
        "error executing template test: template: test:1:3: executing \"test\" at <.Nope>: can't evaluate field Nope in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }",
    );
    fails(
        "{{ .Labels.job.x }}",
        d.clone(),
        "error executing template test: template: test:1:10: executing \"test\" at <.Labels.job.x>: can't evaluate field x in type string",
    );
    fails("{{ .Labels.job 1 }}", d, "error executing template test: template: test:1:10: executing \"test\" at <.Labels.job>: job is not a method but has arguments");
    ok("{{ (args 1).missing }}", Value::Nil, "<no value>");
    fails("{{ nil }}", Value::Nil, "error executing template test: template: test:1:3: executing \"test\" at <nil>: nil is not a command");
    fails(
        "{{ title 3 }}",
        Value::Nil,
        "error executing template test: template: test:1:9: executing \"test\" at <3>: expected string; found 3",
    );
    fails(
        "{{ 3 | title }}",
        Value::Nil,
        "error executing template test: template: test:1:7: executing \"test\" at <title>: wrong type for value; expected string; got int",
    );
    fails(
        "{{ title }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <title>: wrong number of args for title: want 1 got 0",
    );
}

#[test]
fn parse_errors() {
    for (text, want) in [
        (
            "{{ foo }}",
            "template: test:1: function \"foo\" not defined",
        ),
        ("{{ if }}", "template: test:1: missing value for if"),
        ("{{ end }}", "template: test:1: unexpected {{end}}"),
        ("{{ range . }}", "template: test:1: unexpected EOF"),
        (
            "a\nb\n{{ ( ) }}",
            "template: test:3: missing value for parenthesized pipeline",
        ),
        (
            "{{ \"unterminated }}",
            "template: test:1: unterminated quoted string",
        ),
        ("{{/* unclosed", "template: test:1: unclosed comment"),
        (
            "{{ 1 2 | 3 }}",
            "template: test:1: non executable command in pipeline stage 2",
        ),
        (
            "a {{ if\n  .x",
            "template: test:2: unclosed action started at test:1",
        ),
        (
            "{{ .x\n \"y }}",
            "template: test:2: unterminated quoted string in action started at test:1",
        ),
    ] {
        assert_eq!(
            expand(text),
            Err(format!("error parsing template test: {want}")),
            "template {text:?}"
        );
    }
}

#[test]
fn runaway_templates_fail_cleanly() {
    let r = expand("{{define \"r\"}}x{{template \"r\" .}}{{end}}{{template \"r\"}}");
    assert!(
        matches!(&r, Err(e) if e.ends_with("exceeded maximum template depth (256)")),
        "{r:?}"
    );
    let deep = format!("{{{{{}1{}}}}}", "(".repeat(500), ")".repeat(500));
    assert_eq!(
        expand(&deep),
        Err("error parsing template test: template: test:1: max expression depth exceeded".into())
    );
    let nested = "{{if true}}".repeat(500);
    assert!(matches!(expand(&nested), Err(e) if e.ends_with("max expression depth exceeded")));
}

#[test]
fn printf_argument_indexes_are_reported_not_supported() {
    ok("{{ printf \"%[1]d|\" 5 }}", Value::Nil, "%!(BADINDEX)|");
    ok("{{ printf \"%[\" 5 }}", Value::Nil, "%!(BADINDEX)");
}

// ---- alert expansion as rules/alerting.go does it ----

fn alert_data() -> AlertData {
    AlertData {
        labels: [
            ("instance", "node-1:9100"),
            ("job", "storj"),
            ("severity", "page"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        external_labels: [("cluster".to_string(), "home".to_string())].into(),
        external_url: "http://prom.example:9090".into(),
        value: 0.9312,
    }
}

#[test]
fn alert_variables_are_defined() {
    let q = NoQueries;
    let e = expand_alert(
        "StorjDown",
        "{{ $labels.instance | stripPort }} ({{ $labels.job }}) in {{ $externalLabels.cluster }}: {{ $value | humanizePercentage }} see {{ $externalURL }}{{ graphLink \"up\" }}",
        &alert_data(),
        0,
        &q,
    );
    assert_eq!(e.error, None);
    assert_eq!(
        e.text,
        "node-1 (storj) in home: 93.12% see http://prom.example:9090/graph?g0.expr=up&g0.tab=0"
    );
}

#[test]
fn alert_range_over_labels_is_sorted() {
    let e = expand_alert(
        "A",
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}",
        &alert_data(),
        0,
        &NoQueries,
    );
    assert_eq!(e.text, "instance=node-1:9100 job=storj severity=page ");
}

#[test]
fn alert_value_prints_like_go() {
    let mut d = alert_data();
    d.value = 1234567.0;
    assert_eq!(
        expand_alert("A", "{{ $value }} {{ .Value }}", &d, 0, &NoQueries).text,
        "1.234567e+06 1.234567e+06"
    );
}

#[test]
fn alert_query_uses_the_callback() {
    struct Q;
    impl QueryFn for Q {
        fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
            if expr == "depin_earnings_usd_total" {
                Ok(vec![
                    sample(&[("protocol", "golem")], 2.5),
                    sample(&[("protocol", "grass")], 1.25),
                ])
            } else {
                Err(format!("unknown metric in {expr}"))
            }
        }
    }
    let e = expand_alert(
        "A",
        "{{ range query \"depin_earnings_usd_total\" }}{{ .Labels.protocol }}={{ .Value }} {{ end }}",
        &alert_data(),
        0,
        &Q,
    );
    assert_eq!(e.text, "golem=2.5 grass=1.25 ");
    let e = expand_alert("A", "{{ query \"nope\" }}", &alert_data(), 0, &Q);
    assert_eq!(
        e.text,
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing \"__alert_A\" at <query \"nope\">: error calling query: unknown metric in nope>"
    );
    assert!(matches!(
        e.error,
        Some(TemplateError::Exec {
            line: Some(1),
            column: Some(4),
            ..
        })
    ));
}

#[test]
fn alert_errors_become_text_and_are_reported() {
    let e = expand_alert(
        "HighLoad",
        "{{ $labels.instance | nosuchfunc }}",
        &alert_data(),
        0,
        &NoQueries,
    );
    assert_eq!(
        e.text,
        "<error expanding template: error parsing template __alert_HighLoad: template: __alert_HighLoad:1: function \"nosuchfunc\" not defined>"
    );
    assert!(e.error.is_some());
}

#[test]
fn check_reports_position_in_the_users_text() {
    assert_eq!(
        check("{{ $labels.job }} is {{ $value | humanize }}"),
        Ok(())
    );
    let err = check("Instance {{ $labels.instance }}\n is {{ $value | humanise }}");
    match err {
        Err(TemplateError::Parse {
            ref message,
            line,
            column,
            ..
        }) => {
            assert_eq!(message, "function \"humanise\" not defined");
            assert_eq!((line, column), (2, 17));
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert_eq!(err.map_err(|e| e.position()), Err(Some((2, 17))));
    let err = check_alert("X", "{{ if $value }}unclosed");
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("error parsing template __alert_X: template: __alert_X:1: unexpected EOF".into())
    );
}

#[test]
fn parsed_alert_templates_can_be_reused() {
    let t = AlertTemplate::parse("A", "{{ $labels.job }}={{ $value }}");
    assert!(t.parse_error().is_none());
    let mut d = alert_data();
    assert_eq!(t.expand(&d, 0, &NoQueries).text, "storj=0.9312");
    d.labels.insert("job".into(), "golem".into());
    d.value = 3.0;
    assert_eq!(t.expand(&d, 0, &NoQueries).text, "golem=3");
}

#[test]
fn data_maps_built_from_btreemaps() {
    let mut m = BTreeMap::new();
    m.insert("z".to_string(), Value::Int(1));
    m.insert("a".to_string(), Value::list(vec![Value::Bool(true)]));
    ok("{{ . }}", Value::any_map(m), "map[a:[true] z:1]");
}

// ---- Go's text/template exec_test.go (golang/go, BSD-style licence), the cases that apply to
// the values a Prometheus template sees. `tVal` is rebuilt with our value model; maps of ints
// are maps of `interface {}` here, so a missing key prints `<no value>` instead of `0`. ----

fn t_val() -> Value {
    let int_map = |pairs: &[(&str, i64)]| {
        Value::any_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Int(*v)))
                .collect(),
        )
    };
    Value::Struct(std::sync::Arc::new(StructValue {
        type_name: "*template.T".into(),
        fields: vec![
            ("True".into(), Value::Bool(true)),
            ("I".into(), Value::Int(17)),
            ("X".into(), Value::str("x")),
            ("FloatZero".into(), Value::Float(0.0)),
            (
                "U".into(),
                Value::Struct(std::sync::Arc::new(StructValue {
                    type_name: "*template.U".into(),
                    fields: vec![("V".into(), Value::str("v"))],
                })),
            ),
            ("SI".into(), ints(&[3, 4, 5])),
            ("AI".into(), ints(&[3, 4, 5])),
            ("SIEmpty".into(), Value::list(vec![])),
            (
                "SB".into(),
                Value::list(vec![Value::Bool(true), Value::Bool(false)]),
            ),
            ("S".into(), Value::str("xyz")),
            (
                "MSI".into(),
                int_map(&[("one", 1), ("two", 2), ("three", 3)]),
            ),
            ("MSIone".into(), int_map(&[("one", 1)])),
            ("MSIEmpty".into(), int_map(&[])),
            ("MXI".into(), int_map(&[])),
            (
                "SMSI".into(),
                Value::list(vec![
                    int_map(&[("one", 1), ("two", 2)]),
                    int_map(&[("eleven", 11), ("twelve", 12)]),
                ]),
            ),
            ("Empty0".into(), Value::Nil),
            ("Empty3".into(), ints(&[7, 8])),
        ],
    }))
}

/// Name, template, expected output, data, whether it should succeed.
type GoCase = (
    &'static str,
    &'static str,
    &'static str,
    fn() -> Value,
    bool,
);

#[test]
fn go_exec_tests() {
    let t = t_val;
    let none = || Value::Nil;
    let cases: &[GoCase] = &[
        ("empty nil", "{{.Empty0}}", "<no value>", t, true),
        ("empty with slice", "{{.Empty3}}", "[7 8]", t, true),
        ("field on interface", "{{.foo}}", "<no value>", none, true),
        (
            "field on parenthesized interface",
            "{{(.).foo}}",
            "<no value>",
            none,
            true,
        ),
        ("unparenthesized non-function", "{{1 2}}", "", none, false),
        ("parenthesized non-function", "{{(1) 2}}", "", none, false),
        (
            "parenthesized non-function with no args",
            "{{(1)}}",
            "1",
            none,
            true,
        ),
        ("parens: $ in paren", "{{($).X}}", "x", t, true),
        ("if true", "{{if true}}TRUE{{end}}", "TRUE", t, true),
        (
            "if false",
            "{{if false}}TRUE{{else}}FALSE{{end}}",
            "FALSE",
            t,
            true,
        ),
        ("if nil", "{{if nil}}TRUE{{end}}", "", t, false),
        (
            "if 1",
            "{{if 1}}NON-ZERO{{else}}ZERO{{end}}",
            "NON-ZERO",
            t,
            true,
        ),
        (
            "if 0",
            "{{if 0}}NON-ZERO{{else}}ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "if 1.5",
            "{{if 1.5}}NON-ZERO{{else}}ZERO{{end}}",
            "NON-ZERO",
            t,
            true,
        ),
        (
            "if 0.0",
            "{{if .FloatZero}}NON-ZERO{{else}}ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "if emptystring",
            "{{if ``}}NON-EMPTY{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "if string",
            "{{if `notempty`}}NON-EMPTY{{else}}EMPTY{{end}}",
            "NON-EMPTY",
            t,
            true,
        ),
        (
            "if emptyslice",
            "{{if .SIEmpty}}NON-EMPTY{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "if slice",
            "{{if .SI}}NON-EMPTY{{else}}EMPTY{{end}}",
            "NON-EMPTY",
            t,
            true,
        ),
        (
            "if emptymap",
            "{{if .MSIEmpty}}NON-EMPTY{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "if map",
            "{{if .MSI}}NON-EMPTY{{else}}EMPTY{{end}}",
            "NON-EMPTY",
            t,
            true,
        ),
        (
            "if map unset",
            "{{if .MXI.none}}NON-ZERO{{else}}ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "if map not unset",
            "{{if not .MXI.none}}ZERO{{else}}NON-ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "if $x with $y int",
            "{{if $x := true}}{{with $y := .I}}{{$x}},{{$y}}{{end}}{{end}}",
            "true,17",
            t,
            true,
        ),
        (
            "if $x with $x int",
            "{{if $x := true}}{{with $x := .I}}{{$x}},{{end}}{{$x}}{{end}}",
            "17,true",
            t,
            true,
        ),
        (
            "if else if",
            "{{if false}}FALSE{{else if true}}TRUE{{end}}",
            "TRUE",
            t,
            true,
        ),
        (
            "if else chain",
            "{{if eq 1 3}}1{{else if eq 2 3}}2{{else if eq 3 3}}3{{end}}",
            "3",
            t,
            true,
        ),
        (
            "print",
            "{{print \"hello, print\"}}",
            "hello, print",
            t,
            true,
        ),
        ("print 123", "{{print 1 2 3}}", "1 2 3", t, true),
        ("print nil", "{{print nil}}", "<nil>", t, true),
        ("println", "{{println 1 2 3}}", "1 2 3\n", t, true),
        ("printf int", "{{printf \"%04x\" 127}}", "007f", t, true),
        ("printf float", "{{printf \"%g\" 3.5}}", "3.5", t, true),
        (
            "printf string",
            "{{printf \"%s\" \"hello\"}}",
            "hello",
            t,
            true,
        ),
        ("printf field", "{{printf \"%s\" .U.V}}", "v", t, true),
        (
            "printf dot",
            "{{with .I}}{{printf \"%d\" .}}{{end}}",
            "17",
            t,
            true,
        ),
        (
            "printf var",
            "{{with $x := .I}}{{printf \"%d\" $x}}{{end}}",
            "17",
            t,
            true,
        ),
        (
            "html",
            "{{html \"<script>alert(\\\"XSS\\\");</script>\"}}",
            "&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;",
            none,
            true,
        ),
        (
            "html pipeline",
            "{{printf \"<script>alert(\\\"XSS\\\");</script>\" | html}}",
            "&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;",
            none,
            true,
        ),
        (
            "html untyped nil",
            "{{html .Empty0}}",
            "&lt;no value&gt;",
            t,
            true,
        ),
        (
            "urlquery",
            "{{\"http://www.example.org/\"|urlquery}}",
            "http%3A%2F%2Fwww.example.org%2F",
            none,
            true,
        ),
        (
            "not",
            "{{not true}} {{not false}}",
            "false true",
            none,
            true,
        ),
        (
            "and",
            "{{and false 0}} {{and 1 0}} {{and 0 true}} {{and 1 1}}",
            "false 0 0 1",
            none,
            true,
        ),
        (
            "or",
            "{{or 0 0}} {{or 1 0}} {{or 0 true}} {{or 1 1}}",
            "0 1 true 1",
            none,
            true,
        ),
        ("or short-circuit", "{{or 0 1 (len 3)}}", "1", none, true),
        ("and short-circuit", "{{and 1 0 (len 3)}}", "0", none, true),
        ("or short-circuit2", "{{or 0 0 (len 3)}}", "", none, false),
        ("and short-circuit2", "{{and 1 1 (len 3)}}", "", none, false),
        ("and pipe-true", "{{1 | and 1}}", "1", none, true),
        ("and pipe-false", "{{0 | and 1}}", "0", none, true),
        ("or pipe-true", "{{1 | or 0}}", "1", none, true),
        ("or pipe-false", "{{0 | or 0}}", "0", none, true),
        ("and undef", "{{and 1 .Unknown}}", "<no value>", none, true),
        ("or undef", "{{or 0 .Unknown}}", "<no value>", none, true),
        (
            "boolean if",
            "{{if and true 1 `hi`}}TRUE{{else}}FALSE{{end}}",
            "TRUE",
            t,
            true,
        ),
        (
            "boolean if not",
            "{{if and true 1 `hi` | not}}TRUE{{else}}FALSE{{end}}",
            "FALSE",
            none,
            true,
        ),
        (
            "boolean if pipe",
            "{{if true | not | and 1}}TRUE{{else}}FALSE{{end}}",
            "FALSE",
            none,
            true,
        ),
        ("slice[0]", "{{index .SI 0}}", "3", t, true),
        ("slice[1]", "{{index .SI 1}}", "4", t, true),
        ("slice[HUGE]", "{{index .SI 10}}", "", t, false),
        ("slice[WRONG]", "{{index .SI `hello`}}", "", t, false),
        ("slice[nil]", "{{index .SI nil}}", "", t, false),
        ("map[one]", "{{index .MSI `one`}}", "1", t, true),
        ("map[two]", "{{index .MSI `two`}}", "2", t, true),
        ("map[nil]", "{{index .MSI nil}}", "", t, false),
        ("map[WRONG]", "{{index .MSI 10}}", "", t, false),
        ("double index", "{{index .SMSI 1 `eleven`}}", "11", t, true),
        ("nil[1]", "{{index nil 1}}", "", t, false),
        (
            "index of an interface field",
            "{{index .Empty3 0}}",
            "7",
            t,
            true,
        ),
        ("slice[:]", "{{slice .SI}}", "[3 4 5]", t, true),
        ("slice[1:]", "{{slice .SI 1}}", "[4 5]", t, true),
        ("slice[1:2]", "{{slice .SI 1 2}}", "[4]", t, true),
        ("slice[-1:]", "{{slice .SI -1}}", "", t, false),
        ("slice[1:-2]", "{{slice .SI 1 -2}}", "", t, false),
        ("slice[1:2:-1]", "{{slice .SI 1 2 -1}}", "", t, false),
        ("slice[2:1]", "{{slice .SI 2 1}}", "", t, false),
        ("slice[2:2:1]", "{{slice .SI 2 2 1}}", "", t, false),
        ("out of range", "{{slice .SI 4 5}}", "", t, false),
        ("out of range", "{{slice .SI 2 2 5}}", "", t, false),
        ("string[:]", "{{slice .S}}", "xyz", t, true),
        ("string[0:1]", "{{slice .S 0 1}}", "x", t, true),
        ("string[1:]", "{{slice .S 1}}", "yz", t, true),
        ("string[1:2]", "{{slice .S 1 2}}", "y", t, true),
        ("out of range", "{{slice .S 1 5}}", "", t, false),
        (
            "3-index slice of string",
            "{{slice .S 1 2 2}}",
            "",
            t,
            false,
        ),
        (
            "slice of an interface field",
            "{{slice .Empty3 0 1}}",
            "[7]",
            t,
            true,
        ),
        ("len slice", "{{len .SI}}", "3", t, true),
        ("len map", "{{len .MSI }}", "3", t, true),
        ("len of int", "{{len 3}}", "", t, false),
        ("len of nothing", "{{len .Empty0}}", "", t, false),
        ("len of an interface field", "{{len .Empty3}}", "2", t, true),
        ("with true", "{{with true}}{{.}}{{end}}", "true", t, true),
        (
            "with false",
            "{{with false}}{{.}}{{else}}FALSE{{end}}",
            "FALSE",
            t,
            true,
        ),
        ("with 1", "{{with 1}}{{.}}{{else}}ZERO{{end}}", "1", t, true),
        (
            "with 0",
            "{{with 0}}{{.}}{{else}}ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "with 1.5",
            "{{with 1.5}}{{.}}{{else}}ZERO{{end}}",
            "1.5",
            t,
            true,
        ),
        (
            "with 0.0",
            "{{with .FloatZero}}{{.}}{{else}}ZERO{{end}}",
            "ZERO",
            t,
            true,
        ),
        (
            "with emptystring",
            "{{with ``}}{{.}}{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "with string",
            "{{with `notempty`}}{{.}}{{else}}EMPTY{{end}}",
            "notempty",
            t,
            true,
        ),
        (
            "with emptyslice",
            "{{with .SIEmpty}}{{.}}{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "with slice",
            "{{with .SI}}{{.}}{{else}}EMPTY{{end}}",
            "[3 4 5]",
            t,
            true,
        ),
        (
            "with emptymap",
            "{{with .MSIEmpty}}{{.}}{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "with map",
            "{{with .MSIone}}{{.}}{{else}}EMPTY{{end}}",
            "map[one:1]",
            t,
            true,
        ),
        (
            "with $x int",
            "{{with $x := .I}}{{$x}}{{end}}",
            "17",
            t,
            true,
        ),
        (
            "with $x struct.U.V",
            "{{with $x := $}}{{$x.U.V}}{{end}}",
            "v",
            t,
            true,
        ),
        (
            "with variable and action",
            "{{with $x := $}}{{$y := $.U.V}}{{$y}}{{end}}",
            "v",
            t,
            true,
        ),
        (
            "with else with",
            "{{with 0}}{{.}}{{else with true}}{{.}}{{end}}",
            "true",
            t,
            true,
        ),
        (
            "with else with chain",
            "{{with 0}}{{.}}{{else with false}}{{.}}{{else with `notempty`}}{{.}}{{end}}",
            "notempty",
            t,
            true,
        ),
        (
            "range []int",
            "{{range .SI}}-{{.}}-{{end}}",
            "-3--4--5-",
            t,
            true,
        ),
        (
            "range empty no else",
            "{{range .SIEmpty}}-{{.}}-{{end}}",
            "",
            t,
            true,
        ),
        (
            "range []int else",
            "{{range .SI}}-{{.}}-{{else}}EMPTY{{end}}",
            "-3--4--5-",
            t,
            true,
        ),
        (
            "range empty else",
            "{{range .SIEmpty}}-{{.}}-{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "range []int break else",
            "{{range .SI}}-{{.}}-{{break}}NOTREACHED{{else}}EMPTY{{end}}",
            "-3-",
            t,
            true,
        ),
        (
            "range []int continue else",
            "{{range .SI}}-{{.}}-{{continue}}NOTREACHED{{else}}EMPTY{{end}}",
            "-3--4--5-",
            t,
            true,
        ),
        (
            "range []bool",
            "{{range .SB}}-{{.}}-{{end}}",
            "-true--false-",
            t,
            true,
        ),
        (
            "range map",
            "{{range .MSI}}-{{.}}-{{end}}",
            "-1--3--2-",
            t,
            true,
        ),
        (
            "range empty map no else",
            "{{range .MSIEmpty}}-{{.}}-{{end}}",
            "",
            t,
            true,
        ),
        (
            "range map else",
            "{{range .MSI}}-{{.}}-{{else}}EMPTY{{end}}",
            "-1--3--2-",
            t,
            true,
        ),
        (
            "range empty map else",
            "{{range .MSIEmpty}}-{{.}}-{{else}}EMPTY{{end}}",
            "EMPTY",
            t,
            true,
        ),
        (
            "range empty interface",
            "{{range .Empty3}}-{{.}}-{{else}}EMPTY{{end}}",
            "-7--8-",
            t,
            true,
        ),
        (
            "range empty nil",
            "{{range .Empty0}}-{{.}}-{{end}}",
            "",
            t,
            true,
        ),
        (
            "range $x SI",
            "{{range $x := .SI}}<{{$x}}>{{end}}",
            "<3><4><5>",
            t,
            true,
        ),
        (
            "range $x $y SI",
            "{{range $x, $y := .SI}}<{{$x}}={{$y}}>{{end}}",
            "<0=3><1=4><2=5>",
            t,
            true,
        ),
        (
            "range $x MSIone",
            "{{range $x := .MSIone}}<{{$x}}>{{end}}",
            "<1>",
            t,
            true,
        ),
        (
            "range $x $y MSIone",
            "{{range $x, $y := .MSIone}}<{{$x}}={{$y}}>{{end}}",
            "<one=1>",
            t,
            true,
        ),
        (
            "declare in range",
            "{{range $x := .SI}}<{{$foo:=$x}}{{$x}}>{{end}}",
            "<3><4><5>",
            t,
            true,
        ),
        (
            "range 5",
            "{{range $v := 5}}{{printf \"%T%d\" $v $v}}{{end}}",
            "int0int1int2int3int4",
            none,
            true,
        ),
        (
            "or as if true",
            "{{or .SI \"slice is empty\"}}",
            "[3 4 5]",
            t,
            true,
        ),
        (
            "or as if false",
            "{{or .SIEmpty \"slice is empty\"}}",
            "slice is empty",
            t,
            true,
        ),
        ("decimal", "{{print 1234}}", "1234", t, true),
        ("decimal _", "{{print 12_34}}", "1234", t, true),
        ("binary", "{{print 0b101}}", "5", t, true),
        ("binary _", "{{print 0b_1_0_1}}", "5", t, true),
        ("BINARY", "{{print 0B101}}", "5", t, true),
        ("octal0", "{{print 0377}}", "255", t, true),
        ("octal", "{{print 0o377}}", "255", t, true),
        ("octal _", "{{print 0o_3_7_7}}", "255", t, true),
        ("OCTAL", "{{print 0O377}}", "255", t, true),
        ("hex", "{{print 0x123}}", "291", t, true),
        ("hex _", "{{print 0x1_23}}", "291", t, true),
        ("HEX", "{{print 0X123ABC}}", "1194684", t, true),
        ("float", "{{print 123.4}}", "123.4", t, true),
        ("float _", "{{print 0_0_1_2_3.4}}", "123.4", t, true),
        ("hex float", "{{print +0x1.ep+2}}", "7.5", t, true),
        ("hex float _", "{{print +0x_1.e_0p+0_2}}", "7.5", t, true),
        ("HEX float", "{{print +0X1.EP+2}}", "7.5", t, true),
        (
            "print multi",
            "{{print 1_2_3_4 7.5_00_00_00}}",
            "1234 7.5",
            t,
            true,
        ),
        (
            "print multi2",
            "{{print 1234 0x0_1.e_0p+02}}",
            "1234 7.5",
            t,
            true,
        ),
        (
            "bug4",
            "{{if .Empty0}}non-nil{{else}}nil{{end}}",
            "nil",
            t,
            true,
        ),
        ("bug7a", "{{3 2}}", "", t, false),
        ("bug7b", "{{$x := 1}}{{$x 2}}", "", t, false),
        ("bug7c", "{{$x := 1}}{{3 | $x}}", "", t, false),
        (
            "bug9",
            "{{.cause}}",
            "neglect",
            || Value::string_map([("cause".to_string(), "neglect".to_string())].into()),
            true,
        ),
        ("bug12xe", "{{printf `%T` 0xef}}", "int", t, true),
        ("bug12XE", "{{printf `%T` 0XEE}}", "int", t, true),
        ("bug14a", "{{(nil).True}}", "", t, false),
        ("bug14b", "{{$x := nil}}{{$x.anything}}", "", t, false),
        (
            "bug14c",
            "{{$x := (1.0)}}{{$y := (\"hello\")}}{{$x.anything}}{{$y.true}}",
            "",
            t,
            false,
        ),
        ("bug16a", "{{true|printf}}", "", t, false),
        ("bug16b", "{{1|printf}}", "", t, false),
        ("bug16c", "{{1.1|printf}}", "", t, false),
        ("bug16d", "{{'x'|printf}}", "", t, false),
        ("bug16k", "{{\"aaa\"|printf }}", "aaa", t, true),
        (
            "bug18a",
            "{{eq . '.'}}",
            "true",
            || Value::Int('.' as i64),
            true,
        ),
        (
            "issue56490",
            "{{$i := 0}}{{$x := 0}}{{range $i = .AI}}{{end}}{{$i}}",
            "5",
            t,
            true,
        ),
        (
            "issue60801",
            "{{$k := 0}}{{$v := 0}}{{range $k, $v = .AI}}{{$k}}={{$v}} {{end}}",
            "0=3 1=4 2=5 ",
            t,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (name, input, output, data, good) in cases {
        let got = expand_with(input, data(), Vec::new());
        let pass = match (&got, good) {
            (Ok(out), true) => out == output,
            (Err(_), false) => true,
            _ => false,
        };
        if !pass {
            failures.push(format!(
                "{name}: {input:?} gave {got:?}, want {output:?} (ok={good})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Go's TestExecError: the position and template name of an error in a nested template.
#[test]
fn go_exec_error_in_nested_template() {
    let text = "line 1\nline 2\nline 3\n{{template \"one\" .}}\n{{define \"one\"}}{{template \"two\" .}}{{end}}\n{{define \"two\"}}{{template \"three\" .}}{{end}}\n{{define \"three\"}}{{index \"hi\" $}}{{end}}";
    let t = Template::parse("top", text).map_err(|e| e.to_string());
    let err = t.and_then(|t| {
        t.execute(&Value::Int(5), &Env::new(None, 0, ""))
            .map_err(|e| e.to_string())
    });
    assert_eq!(
        err,
        Err("error executing template top: template: top:7:20: executing \"three\" at <index \"hi\" $>: error calling index: index out of range: 5".into())
    );
}

/// Go's TestJSEscaping.
#[test]
fn go_js_escaping() {
    for (input, want) in [
        ("a", "a"),
        ("'foo", "\\'foo"),
        ("Go \"jump\" \\", "Go \\\"jump\\\" \\\\"),
        (
            "Yukihiro says \"今日は世界\"",
            "Yukihiro says \\\"今日は世界\\\"",
        ),
        ("unprintable \u{FFFE}", "unprintable \\uFFFE"),
        ("<html>", "\\u003Chtml\\u003E"),
        ("no = in attributes", "no \\u003D in attributes"),
        (
            "&#x27; does not become HTML entity",
            "\\u0026#x27; does not become HTML entity",
        ),
    ] {
        assert_eq!(funcs::js_escape(input), want);
    }
}

// ---- prometheus/prometheus rules/alerting_test.go and model/rulefmt/rulefmt_test.go ----

fn alert_with(value: f64, external: &[(&str, &str)], url: &str) -> AlertData {
    AlertData {
        labels: [("instance", "0"), ("job", "app-server")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        external_labels: external
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        external_url: url.into(),
        value,
    }
}

/// TestAlertingRuleLabelsUpdate: a label templated from `$value`.
#[test]
fn prometheus_label_from_value() {
    let t = AlertTemplate::parse(
        "HTTPRequestRateLow",
        "{{ if lt $value 80.0 }}critical{{ else }}warning{{ end }}",
    );
    let sev = |v| t.expand(&alert_with(v, &[], ""), 0, &NoQueries).text;
    assert_eq!(sev(75.0), "critical");
    assert_eq!(sev(85.0), "warning");
}

/// TestAlertingRuleExternalLabelsInTemplate and TestAlertingRuleExternalURLInTemplate.
#[test]
fn prometheus_external_labels_and_url() {
    let text = "There are {{ len $externalLabels }} external Labels, of which foo is {{ $externalLabels.foo }}.";
    let e = expand_alert("A", text, &alert_with(75.0, &[], ""), 0, &NoQueries);
    assert_eq!(e.text, "There are 0 external Labels, of which foo is .");
    let d = alert_with(75.0, &[("foo", "bar"), ("dings", "bums")], "");
    assert_eq!(
        expand_alert("A", text, &d, 0, &NoQueries).text,
        "There are 2 external Labels, of which foo is bar."
    );
    let text = "The external URL is {{ $externalURL }}.";
    assert_eq!(
        expand_alert("A", text, &alert_with(75.0, &[], ""), 0, &NoQueries).text,
        "The external URL is ."
    );
    let d = alert_with(75.0, &[], "http://localhost:1234");
    assert_eq!(
        expand_alert("A", text, &d, 0, &NoQueries).text,
        "The external URL is http://localhost:1234."
    );
}

/// TestAlertingRuleQueryInTemplate's template, with its query answered directly.
#[test]
fn prometheus_query_in_template() {
    let text = "{{- with \"sort(sum(http_requests) by (instance))\" | query -}}\n{{- range $i,$v := . -}}\ninstance: {{ $v.Labels.instance }}, value: {{ printf \"%.0f\" $v.Value }};\n{{- end -}}\n{{- end -}}\n";
    let q = FixedQuery(vec![
        sample(&[("instance", "0")], 70.0),
        sample(&[("instance", "1")], 85.4),
    ]);
    let e = expand_alert(
        "ruleWithQueryInTemplate",
        text,
        &alert_with(70.0, &[], ""),
        0,
        &q,
    );
    assert_eq!(e.error, None);
    assert_eq!(e.text, "instance: 0, value: 70;instance: 1, value: 85;");
}

/// TestTemplateParsing: what `promtool check rules` rejects.
#[test]
fn prometheus_template_parsing() {
    assert!(check_alert("InstanceDown", "Instance {{ $labels.instance }} down").is_ok());
    assert_eq!(
        check_alert("InstanceDown", "Instance {{ $label.instance }} down").map_err(|e| e.to_string()),
        Err("error parsing template __alert_InstanceDown: template: __alert_InstanceDown:1: undefined variable \"$label\"".into())
    );
    assert_eq!(
        check_alert("InstanceDown", "{{$this_is_wrong}}").map_err(|e| e.go_text()),
        Err("template: __alert_InstanceDown:1: undefined variable \"$this_is_wrong\"".into())
    );
    assert_eq!(
        check_alert("InstanceDown", "{{$labels.quantile * 100}}").map_err(|e| e.to_string()),
        Err("error parsing template __alert_InstanceDown: template: __alert_InstanceDown:1: unexpected \"*\" in operand".into())
    );
}

/// docs/configuration/template_examples.md.
#[test]
fn prometheus_doc_examples() {
    let q = FixedQuery(vec![
        sample(&[("instance", "a:9100")], 1.0),
        sample(&[("instance", "b:9100")], 0.0),
    ]);
    let d = alert_with(1.0, &[], "");
    let run = |text: &str| expand_alert("A", text, &d, 0, &q);
    assert_eq!(
        run("{{ range query \"up\" }}\n  {{ .Labels.instance }} {{ .Value }}\n{{ end }}").text,
        "\n  a:9100 1\n\n  b:9100 0\n"
    );
    let q2 = FixedQuery(vec![sample(&[], 1234567.0)]);
    assert_eq!(
        expand_alert(
            "A",
            "{{ with query \"some_metric{instance='someinstance'}\" }}\n  {{ . | first | value | humanize }}\n{{ end }}",
            &d,
            0,
            &q2
        )
        .text,
        "\n  1.235M\n"
    );
    assert_eq!(
        run("{{define \"myMultiArgTemplate\"}}\n  First argument: {{.arg0}}\n  Second argument: {{.arg1}}\n{{end}}\n{{template \"myMultiArgTemplate\" (args 1 2)}}").text,
        "\n\n  First argument: 1\n  Second argument: 2\n"
    );
    assert_eq!(
        run("{{/* Define the template */}}\n{{define \"myTemplate\"}}\n  do something\n{{end}}\n\n{{/* Use the template */}}\n{{template \"myTemplate\"}}").text,
        // The newlines around the comments and the definition stay in the output.
        "\n\n\n\n\n  do something\n"
    );
}

/// Annotation styles common in published alert rule collections.
#[test]
fn common_annotation_styles() {
    let q = FixedQuery(vec![sample(&[("instance", "node-1:9100")], 2.71649)]);
    let d = alert_data();
    let run = |text: &str| {
        let e = expand_alert("A", text, &d, 1_700_000_000_000, &q);
        assert_eq!(e.error, None, "{text}");
        e.text
    };
    assert_eq!(
        run("Host out of memory (instance {{ $labels.instance }})\n  VALUE = {{ $value }}\n  LABELS = {{ $labels }}"),
        "Host out of memory (instance node-1:9100)\n  VALUE = 0.9312\n  LABELS = map[instance:node-1:9100 job:storj severity:page]"
    );
    assert_eq!(run("{{ $value | printf \"%.2f\" }}%"), "0.93%");
    assert_eq!(run("{{ humanizeDuration 3725 }}"), "1h 2m 5s");
    assert_eq!(
        run("{{ with printf \"node_load1{instance='%s'}\" $labels.instance | query }}{{ . | first | value | printf \"%.2f\" }}{{ end }}"),
        "2.72"
    );
    assert_eq!(
        run("{{ $labels.job | title }} on {{ $labels.instance | stripPort }}"),
        "Storj on node-1"
    );
    assert_eq!(
        run("{{ $labels.instance | reReplaceAll \":[0-9]+$\" \"\" }}"),
        "node-1"
    );
    assert_eq!(
        run("{{ if eq $labels.severity \"page\" }}PAGE{{ else }}ticket{{ end }}"),
        "PAGE"
    );
    assert_eq!(
        run("since {{ now | humanizeTimestamp }}"),
        "since 2023-11-14 22:13:20 +0000 UTC"
    );
}

/// Random token soups must give an output or an error, never a panic: rule files come from
/// users, and a template must not take the rules engine down.
#[test]
fn random_templates_never_panic() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        " ",
        "\n",
        ".",
        ".Labels",
        ".x",
        "$",
        "$labels",
        "$x",
        ":=",
        "=",
        "|",
        "(",
        ")",
        "\"s\"",
        "`r`",
        "'c'",
        "1",
        "-2.5e3",
        "0x1p3",
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        "break",
        "continue",
        "nil",
        "true",
        "printf",
        "\"%d %s %v %.2f %\"",
        "len",
        "index",
        "slice",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "humanize",
        "query",
        "first",
        "value",
        "toTime",
        ".Format",
        "args",
        "/*",
        "*/",
        ",",
        "%",
        "é",
        "\u{a0}",
        "reReplaceAll",
        "\"(\"",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let q = FixedQuery(vec![sample(&[("a", "b")], 1.0)]);
    for _ in 0..3000 {
        let n = (next() % 24) as usize;
        let text: String = (0..n)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        let e = expand_alert("Fuzz", &text, &alert_data(), 0, &q);
        // Either the expansion worked or the text says why.
        assert!(
            e.error.is_none() || e.text.starts_with("<error expanding template: "),
            "{text:?}"
        );
    }
}

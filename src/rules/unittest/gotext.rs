//! Go's text forms (`%q`, `labels.String`, `%e`, durations, promtool's alert and sample lists),
//! so failures read as promtool's.

use super::schema::{labels_pairs, LabelsAndAnnotations};
use crate::compat::duration::{go_duration_string, model_duration_string};
use crate::compat::strconv::format_float;
use crate::labels::Labels;

/// `labels.Labels.String()`: `{__name__="x", a="b"}`.
pub(super) fn go_pairs(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{n}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

pub(super) fn go_labels(l: &Labels) -> String {
    go_pairs(&labels_pairs(l))
}

/// `strconv.Quote`.
pub(super) fn go_quote(s: &str) -> String {
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
pub(super) fn go_float_e(v: f64) -> String {
    format_float(v, 'E', -1)
}

/// `model.Duration.String()` of milliseconds: `1d1h`, `1m30s`.
pub(super) fn model_duration(ms: i64) -> String {
    model_duration_string(ms)
}

/// Go's `time.Duration.String()` of milliseconds: `1m0s`, `24h0m0s`, `1.5s`, `500ms`.
pub(super) fn go_duration(ms: i64) -> String {
    go_duration_string(ms.saturating_mul(1_000_000))
}

pub(super) fn indent_lines(text: &str, indent: &str) -> String {
    text.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// promtool's `labelsAndAnnotations.String()`.
pub(super) fn alerts_string(v: &[LabelsAndAnnotations]) -> String {
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
pub(super) fn samples_string(v: &[(Labels, f64)]) -> String {
    if v.is_empty() {
        return "nil".into();
    }
    v.iter()
        .map(|(l, x)| format!("{} {}", go_labels(l), go_float_e(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

//! The JSON encoding of the Prometheus HTTP API, byte for byte as Prometheus writes it:
//! the `{"status":…}` envelope, query results (`vector`, `matrix`, `scalar`, `string`), label
//! sets, timestamps as seconds with millisecond precision and sample values as strings.
//!
//! Hand-written rather than serde-derived because the exact text matters: Go escapes `<`, `>`
//! and `&` in strings, writes sample values with `strconv.FormatFloat` (`+Inf`, `1e-07`) and
//! omits empty `values`. Nothing here reads storage or evaluates queries.

use crate::labels::Labels;
use crate::promql::Value;
use crate::tsdb::Sample;

/// Appends `s` as a JSON string literal, escaped as Go's `encoding/json` (HTML-safe) does.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A millisecond timestamp as seconds: `1435781451.781`, `4`, `-0.5` (Prometheus'
/// `jsonutil.MarshalTimestamp`).
pub fn push_timestamp(out: &mut String, t: i64) {
    let (neg, abs) = (t < 0, t.unsigned_abs());
    if neg {
        out.push('-');
    }
    push_u64(out, abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

/// Decimal digits of `n` without going through `fmt` (the hot path of large matrices).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends a sample value as [`format_sample_value`] formats it, without allocating for the
/// common (finite, plain decimal) case.
pub fn push_sample_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    let abs = v.abs();
    // Whole numbers below 2^53 print as their integer digits in Go's 'f' format; integer
    // formatting is several times faster than float formatting. -0 keeps its sign below.
    if abs < 9_007_199_254_740_992.0 && v.fract() == 0.0 && !(v == 0.0 && v.is_sign_negative()) {
        if v < 0.0 {
            out.push('-');
        }
        push_u64(out, abs as u64);
    } else if v.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_sample_value(v));
    }
}

/// A sample value as Prometheus' `jsonutil.MarshalFloat` writes it (without the quotes):
/// shortest round-trip decimal, exponent form below 1e-6 and from 1e21 on.
pub fn format_sample_value(v: f64) -> String {
    let abs = v.abs();
    if v.is_finite() && abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent(v)
    } else {
        format_float(v)
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: what scalars and label values use.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display is the shortest representation that round-trips, never in
        // exponent form: the same digits as Go's 'f' with precision -1.
        format!("{v}")
    }
}

/// Go's `'e'` format with precision -1: `1e-07`, `1.5e+21` (sign and at least two digits).
fn go_exponent(v: f64) -> String {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mant}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// `{"__name__":"up","job":"x"}` in label order.
pub fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, label) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &label.name);
        out.push(':');
        push_str(out, &label.value);
    }
    out.push('}');
}

/// `[<t>,"<v>"]` of a vector sample or matrix point.
fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_timestamp(out, t);
    out.push_str(",\"");
    push_sample_value(out, v);
    out.push_str("\"]");
}

fn push_series(out: &mut String, labels: &Labels, samples: &[Sample]) {
    out.push_str("{\"metric\":");
    push_labels(out, labels);
    // Prometheus leaves `values` out for a series without float samples.
    if !samples.is_empty() {
        out.push_str(",\"values\":[");
        for (i, s) in samples.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_point(out, s.t, s.v);
        }
        out.push(']');
    }
    out.push('}');
}

/// The `result` of a query: an array for vectors and matrices, `[t,"v"]` for scalars and
/// strings.
pub fn push_result(out: &mut String, v: &Value) {
    match v {
        // Prometheus marshals scalars and strings with encoding/json as `float64(t)/1000`:
        // shortest form (`1700000607.5`), unlike the fixed three digits of vector samples.
        Value::Scalar { t, v } => {
            out.push('[');
            out.push_str(&format_float(*t as f64 / 1000.0));
            out.push(',');
            push_str(out, &format_float(*v));
            out.push(']');
        }
        Value::String { t, s } => {
            out.push('[');
            out.push_str(&format_float(*t as f64 / 1000.0));
            out.push(',');
            push_str(out, s);
            out.push(']');
        }
        Value::Vector(vec) => {
            out.push('[');
            for (i, s) in vec.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                out.push_str(",\"value\":");
                push_point(out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            out.push('[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_series(out, &s.labels, &s.samples);
            }
            out.push(']');
        }
    }
}

/// `{"resultType":"vector","result":[…]}`.
pub fn query_data(v: &Value) -> String {
    let mut out = String::from("{\"resultType\":\"");
    out.push_str(v.type_name());
    out.push_str("\",\"result\":");
    push_result(&mut out, v);
    out.push('}');
    out
}

/// `["a","b"]`.
pub fn string_array<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, s.as_ref());
    }
    out.push(']');
    out
}

/// `[{"__name__":"up",…},…]` for `/api/v1/series`.
pub fn labels_array(items: &[Labels]) -> String {
    let mut out = String::from("[");
    for (i, l) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_labels(&mut out, l);
    }
    out.push(']');
    out
}

/// An object of string fields in the given order, e.g. build information.
pub fn string_object(fields: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, k);
        out.push(':');
        push_str(&mut out, v);
    }
    out.push('}');
    out
}

/// The success envelope around already-encoded `data` (omitted when `None`, as Go omits a nil
/// `data`), with `warnings` and `infos` only when there are some.
pub fn success(data: Option<&str>, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::from("{\"status\":\"success\"");
    if let Some(d) = data {
        out.push_str(",\"data\":");
        out.push_str(d);
    }
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&string_array(warnings));
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        out.push_str(&string_array(infos));
    }
    out.push('}');
    out
}

/// `{"status":"error","errorType":"bad_data","error":"…"}`.
pub fn error(error_type: &str, message: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    push_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_str(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::InstantSample;
    use crate::tsdb::Series;

    #[test]
    fn timestamps_are_seconds_with_milliseconds() {
        let f = |t| {
            let mut s = String::new();
            push_timestamp(&mut s, t);
            s
        };
        assert_eq!(f(1_435_781_451_781), "1435781451.781");
        assert_eq!(f(4000), "4");
        assert_eq!(f(1_000_050), "1000.050");
        assert_eq!(f(-1500), "-1.500");
        assert_eq!(f(0), "0");
    }

    #[test]
    fn sample_values_as_go_formats_them() {
        assert_eq!(format_sample_value(2.0), "2");
        assert_eq!(format_sample_value(0.1), "0.1");
        assert_eq!(format_sample_value(-0.000001), "-0.000001");
        assert_eq!(format_sample_value(1e-7), "1e-07");
        assert_eq!(format_sample_value(1.5e21), "1.5e+21");
        assert_eq!(
            format_sample_value(123456789012345680000.0),
            "123456789012345680000"
        );
        assert_eq!(format_sample_value(f64::INFINITY), "+Inf");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(format_sample_value(1e300), "1e+300");
        let mut values = vec![
            0.0,
            -0.0,
            2.0,
            -7.0,
            0.1,
            1e-7,
            1e-6,
            1.5e21,
            1e21 - 1e5,
            9.007_199_254_740_992e15,
        ];
        values.extend([f64::NAN, f64::INFINITY, -3.25e-9, 1e15, 123456.0, -1e20]);
        // And many bit patterns, against the straightforward formatter.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push((x % 100_000) as f64 / [1.0, 10.0, 1000.0][(x % 3) as usize]);
        }
        for v in values {
            let mut s = String::new();
            push_sample_value(&mut s, v);
            assert_eq!(s, format_sample_value(v), "{v}");
        }
        // Scalars use 'f' throughout.
        assert_eq!(format_float(1e-7), "0.0000001");
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n<&>\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u003c\u0026\u003e\u0001é""#);
    }

    #[test]
    fn results_of_each_type() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let vec = Value::Vector(vec![InstantSample {
            labels: l.clone(),
            t: 1_000_500,
            v: 1.0,
        }]);
        assert_eq!(
            query_data(&vec),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1000.500,"1"]}]}"#
        );
        let m = Value::Matrix(vec![
            Series {
                labels: l,
                samples: vec![Sample { t: 0, v: 1.0 }, Sample { t: 15_000, v: 2.5 }],
            },
            Series {
                labels: Labels::empty(),
                samples: vec![],
            },
        ]);
        assert_eq!(
            query_data(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[0,"1"],[15,"2.5"]]},{"metric":{}}]}"#
        );
        assert_eq!(
            query_data(&Value::Scalar { t: 4000, v: 2.0 }),
            r#"{"resultType":"scalar","result":[4,"2"]}"#
        );
        assert_eq!(
            query_data(&Value::String {
                t: 4000,
                s: "hi".into()
            }),
            r#"{"resultType":"string","result":[4,"hi"]}"#
        );
        assert_eq!(
            query_data(&Value::Vector(vec![])),
            r#"{"resultType":"vector","result":[]}"#
        );
    }

    #[test]
    fn scalar_times_are_shortest_floats() {
        assert_eq!(
            query_data(&Value::Scalar {
                t: 1_700_000_607_500,
                v: 1.0
            }),
            r#"{"resultType":"scalar","result":[1700000607.5,"1"]}"#
        );
        assert_eq!(
            query_data(&Value::String {
                t: -1500,
                s: "x".into()
            }),
            r#"{"resultType":"string","result":[-1.5,"x"]}"#
        );
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            success(Some("[]"), &[], &[]),
            r#"{"status":"success","data":[]}"#
        );
        assert_eq!(
            success(Some("1"), &["w".into()], &["i".into()]),
            r#"{"status":"success","data":1,"warnings":["w"],"infos":["i"]}"#
        );
        assert_eq!(
            error("bad_data", "x \"y\""),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\""}"#
        );
    }
}

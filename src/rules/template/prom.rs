//! Prometheus' template functions (`template/template.go` of prometheus/prometheus and
//! `helpers/templates` of prometheus/common): `query`, `first`, `label`, `value`, `humanize*`,
//! `toTime`, `parseDuration`, `stripPort`, ... with their exact output formats and error texts.
//! Queries go through the [`super::QueryFn`] the caller supplies.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;

use super::fmt::{quote, sprintf};
use super::funcs::{query_escape, Sig, Ty};
use super::value::{SampleValue, Value};
use super::Env;
use crate::compat::strconv::format_float;

/// The signatures of Prometheus' text-mode functions. (`tmpl` exists only in Prometheus' HTML
/// mode, for consoles, so alert templates cannot call it.)
pub(crate) fn signature(name: &str) -> Option<Sig> {
    use Ty::*;
    const fn s(params: &'static [Ty]) -> Sig {
        Sig {
            params,
            variadic: None,
        }
    }
    Some(match name {
        "query" => s(&[String]),
        "first" => s(&[QueryResult]),
        "label" => s(&[String, Sample]),
        "value" | "strvalue" => s(&[Sample]),
        "args" => Sig {
            params: &[],
            variadic: Some(Any),
        },
        "reReplaceAll" => s(&[String, String, String]),
        "safeHtml" | "title" | "toUpper" | "toLower" | "graphLink" | "tableLink" | "stripPort"
        | "stripDomain" | "parseDuration" | "urlQueryEscape" => s(&[String]),
        "match" => s(&[String, String]),
        "sortByLabel" => s(&[String, QueryResult]),
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" | "toTime" | "toDuration" => s(&[Any]),
        "now" | "pathPrefix" | "externalURL" => s(&[]),
        _ => return None,
    })
}

fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Nil)
}

fn str_arg(args: &[Value], i: usize) -> &str {
    match arg(args, i) {
        Value::String(s) => s,
        _ => "",
    }
}

/// Go's `strconv.ParseFloat(s, 64)`, with its error texts.
pub(crate) fn parse_float(s: &str) -> Result<f64, String> {
    let syntax = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            quote(s, false)
        )
    };
    // Rust accepts a few spellings Go does not, and the other way round; keep to Go's grammar.
    if s.is_empty()
        || s.contains('_')
        || s.starts_with("0x")
        || s.starts_with("-0x")
        || s.starts_with("+0x")
    {
        return Err(syntax());
    }
    let v: f64 = s.parse().map_err(|_| syntax())?;
    let lower = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if v.is_infinite() && lower != "inf" && lower != "infinity" {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            quote(s, false)
        ));
    }
    Ok(v)
}

/// prometheus/common's `ConvertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::String(s) => parse_float(s),
        Value::Int(i) => Ok(*i as f64),
        Value::Uint(u) => Ok(*u as f64),
        Value::Duration(d) => Ok(*d as f64 / 1e9),
        other => Err(format!("can't convert {} to float", other.go_type())),
    }
}

fn g4(v: f64) -> String {
    sprintf("%.4g", &[Value::Float(v)])
}

/// `%v` of a float64, for error messages.
fn fv(v: f64) -> String {
    format_float(v, 'g', -1)
}

fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// `FloatToTime`: seconds to a time, truncated to milliseconds as Prometheus' `model.Time` is.
fn float_to_time(v: f64) -> Result<i64, String> {
    if v.is_nan() || v.is_infinite() {
        return Err("value is NaN or Inf".into());
    }
    let ts = v * 1e9;
    if ts > i64::MAX as f64 || ts < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            fv(v)
        ));
    }
    let ms = (ts as i64) / 1_000_000;
    Ok(ms * 1_000_000)
}

/// prometheus/common's `model.ParseDuration` (units y w d h m s ms, biggest first), allowing a
/// leading `-`; the result in nanoseconds.
pub(crate) fn parse_prom_duration(s: &str) -> Result<i64, String> {
    if let Some(rest) = s.strip_prefix('-') {
        return parse_prom_duration_pos(rest).map(|d| -d);
    }
    parse_prom_duration_pos(s)
}

fn parse_prom_duration_pos(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {}", quote(s, false));
    let b = s.as_bytes();
    let mut i = 0;
    let mut dur: u64 = 0;
    let mut last_pos = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            return Err(invalid());
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let v: u64 = s[start..i].parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ustart {
            return Err(invalid());
        }
        let unit = &s[ustart..i];
        let (pos, mult): (u32, u64) = match unit {
            "ms" => (7, 1_000_000),
            "s" => (6, 1_000_000_000),
            "m" => (5, 60_000_000_000),
            "h" => (4, 3_600_000_000_000),
            "d" => (3, 86_400_000_000_000),
            "w" => (2, 604_800_000_000_000),
            "y" => (1, 31_536_000_000_000_000),
            _ => {
                return Err(format!(
                    "unknown unit {} in duration {}",
                    quote(unit, false),
                    quote(s, false)
                ))
            }
        };
        if pos <= last_pos {
            return Err(invalid());
        }
        last_pos = pos;
        if v > (1u64 << 63) / mult {
            return Err("duration out of range".into());
        }
        dur += v * mult;
        if dur > i64::MAX as u64 {
            return Err("duration out of range".into());
        }
    }
    Ok(dur as i64)
}

/// Go's `net.SplitHostPort`, returning only whether it succeeded and the parts.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k);
    if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 == hp.len() || end + 1 != i {
            return None;
        }
        host = &hp[1..end];
        j = 1;
        k = end + 1;
    } else {
        host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        j = 0;
        k = 0;
    }
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn strip_port(hp: &str) -> String {
    match split_host_port(hp) {
        Some((host, _)) => host.to_string(),
        None => hp.to_string(),
    }
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `cases.Title(language.AmericanEnglish, cases.NoLower)`: the first letter of each word goes
/// to title case, the rest stays. Words are runs of letters, digits, `_` and apostrophes, with
/// `.`/`:` allowed between letters (close to Unicode word segmentation for label values).
fn title(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let mut in_word = false;
    for (i, &c) in chars.iter().enumerate() {
        let joins = matches!(c, '.' | ':')
            && in_word
            && i > 0
            && chars[i - 1].is_alphabetic()
            && chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
        if word_char(c) || joins {
            if !in_word {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// The path part of the external URL (Go's `url.URL.Path`).
fn url_path(u: &str) -> String {
    let after_scheme = match u.find("://") {
        Some(i) => &u[i + 3..],
        None => return u.split(['?', '#']).next().unwrap_or("").to_string(),
    };
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..]
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    }
}

fn sample_arg(args: &[Value], i: usize) -> Result<&Arc<SampleValue>, String> {
    match arg(args, i) {
        Value::Sample(s) => Ok(s),
        _ => Err("runtime error: invalid memory address or nil pointer dereference".into()),
    }
}

/// Go's `strings.ToUpper`: rune by rune with the simple case mapping (`ß` stays `ß`, where
/// Rust's full mapping would give `SS`).
fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower`, rune by rune (`İ` becomes `i`).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Rewrites Go (RE2) Perl classes into Rust's ASCII forms: in Go `\d`, `\w`, `\s` and `\b`
/// are ASCII-only, in Rust they are Unicode-aware by default.
fn go_regex_syntax(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push(c);
                    break;
                };
                match (in_class, n) {
                    (false, 'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B') => {
                        out.push_str("(?-u:\\");
                        out.push(n);
                        out.push(')');
                    }
                    (true, 'd') => out.push_str("0-9"),
                    (true, 'w') => out.push_str("0-9A-Za-z_"),
                    (true, 's') => out.push_str("\\t\\n\\x0C\\r "),
                    _ => {
                        out.push(c);
                        out.push(n);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // An ASCII class such as [:alpha:] inside a bracket expression.
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(&go_regex_syntax(pattern)).map_err(|e| {
        let msg = e.to_string();
        let last = msg
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .trim_start_matches("error: ");
        format!("error parsing regexp: {last}: `{pattern}`")
    })
}

pub(crate) fn call(env: &Env<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    Ok(match name {
        "query" => {
            let Some(q) = env.query else {
                return Err("queries are not available in this context".into());
            };
            let samples = q.query(str_arg(&args, 0))?;
            Value::Vector(Arc::new(
                samples
                    .into_iter()
                    .map(|s| {
                        Arc::new(SampleValue {
                            labels: s.labels,
                            value: s.value,
                        })
                    })
                    .collect(),
            ))
        }
        "first" => match arg(&args, 0) {
            Value::Vector(v) if !v.is_empty() => Value::Sample(v[0].clone()),
            _ => return Err("first() called on vector with no elements".into()),
        },
        "label" => {
            let s = sample_arg(&args, 1)?;
            Value::String(s.labels.get(str_arg(&args, 0)).cloned().unwrap_or_default())
        }
        "value" => Value::Float(sample_arg(&args, 0)?.value),
        "strvalue" => Value::String(
            sample_arg(&args, 0)?
                .labels
                .get("__value__")
                .cloned()
                .unwrap_or_default(),
        ),
        "args" => {
            let m: BTreeMap<String, Value> = args
                .into_iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a))
                .collect();
            Value::any_map(m)
        }
        "reReplaceAll" => {
            let re = compile(str_arg(&args, 0)).map_err(|e| {
                format!("regexp: Compile({}): {e}", quote(str_arg(&args, 0), false))
            })?;
            Value::String(
                re.replace_all(str_arg(&args, 2), str_arg(&args, 1))
                    .into_owned(),
            )
        }
        "match" => Value::Bool(compile(str_arg(&args, 0))?.is_match(str_arg(&args, 1))),
        "safeHtml" => Value::String(str_arg(&args, 0).to_string()),
        "title" => Value::String(title(str_arg(&args, 0))),
        "toUpper" => Value::String(go_to_upper(str_arg(&args, 0))),
        "toLower" => Value::String(go_to_lower(str_arg(&args, 0))),
        "graphLink" => Value::String(format!(
            "/graph?g0.expr={}&g0.tab=0",
            query_escape(str_arg(&args, 0))
        )),
        "tableLink" => Value::String(format!(
            "/graph?g0.expr={}&g0.tab=1",
            query_escape(str_arg(&args, 0))
        )),
        "urlQueryEscape" => Value::String(query_escape(str_arg(&args, 0))),
        "sortByLabel" => {
            let label = str_arg(&args, 0);
            let mut v: Vec<Arc<SampleValue>> = match arg(&args, 1) {
                Value::Vector(v) => v.as_ref().clone(),
                _ => Vec::new(),
            };
            let key = |s: &Arc<SampleValue>| s.labels.get(label).cloned().unwrap_or_default();
            v.sort_by_key(key);
            Value::Vector(Arc::new(v))
        }
        "stripPort" => Value::String(strip_port(str_arg(&args, 0))),
        "stripDomain" => Value::String(strip_domain(str_arg(&args, 0))),
        "humanize" => Value::String(humanize(to_float(arg(&args, 0))?)),
        "humanize1024" => Value::String(humanize1024(to_float(arg(&args, 0))?)),
        "humanizeDuration" => Value::String(humanize_duration(to_float(arg(&args, 0))?)),
        "humanizePercentage" => Value::String(format!("{}%", g4(to_float(arg(&args, 0))? * 100.0))),
        "humanizeTimestamp" => {
            let v = to_float(arg(&args, 0))?;
            if v.is_nan() || v.is_infinite() {
                Value::String(g4(v))
            } else {
                Value::String(super::time::time_string(float_to_time(v)?))
            }
        }
        "toTime" => Value::Time(float_to_time(to_float(arg(&args, 0))?)?),
        "toDuration" => {
            let v = to_float(arg(&args, 0))?;
            Value::Duration((v * 1e9) as i64)
        }
        "now" => Value::Float(env.timestamp_ms as f64 / 1000.0),
        "pathPrefix" => Value::String(url_path(env.external_url)),
        "externalURL" => Value::String(env.external_url.to_string()),
        "parseDuration" => Value::Float(parse_prom_duration(str_arg(&args, 0))? as f64 / 1e9),
        _ => return Err(format!("{} is not a defined function", quote(name, false))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_handling() {
        assert_eq!(strip_port("[2001:0DB8::1]:12345"), "2001:0DB8::1");
        assert_eq!(strip_port("[2001:0DB8::1]::12345"), "[2001:0DB8::1]::12345");
        assert_eq!(strip_domain("foo.example.com:12345"), "foo:12345");
        assert_eq!(strip_domain("2001:0DB8::1"), "2001:0DB8::1");
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_prom_duration("1h2m10ms"), Ok(3_720_010_000_000));
        assert_eq!(parse_prom_duration("-30m"), Ok(-1_800_000_000_000));
        assert_eq!(
            parse_prom_duration("1m1h"),
            Err("not a valid duration string: \"1m1h\"".into())
        );
        assert_eq!(
            parse_prom_duration("5x"),
            Err("unknown unit \"x\" in duration \"5x\"".into())
        );
        assert_eq!(parse_prom_duration(""), Err("empty duration string".into()));
    }

    #[test]
    fn title_keeps_the_rest_of_each_word() {
        assert_eq!(title("aa bb CC"), "Aa Bb CC");
        assert_eq!(
            title("disk-full on node_exporter"),
            "Disk-Full On Node_exporter"
        );
        assert_eq!(title("don't"), "Don't");
    }

    #[test]
    fn parse_float_errors_as_go() {
        assert_eq!(
            parse_float("one"),
            Err("strconv.ParseFloat: parsing \"one\": invalid syntax".into())
        );
        assert_eq!(
            parse_float("1e400"),
            Err("strconv.ParseFloat: parsing \"1e400\": value out of range".into())
        );
        assert_eq!(parse_float("+Inf"), Ok(f64::INFINITY));
    }

    #[test]
    fn regexes_use_go_ascii_classes() {
        let re = |p: &str| compile(p).map(|r| r.is_match("٣")).unwrap_or(true);
        // An Arabic-Indic digit is \d in Rust's Unicode mode, not in Go.
        assert!(!re(r"^\d$"));
        assert!(!re(r"^[\d]$"));
        assert!(re(r"^.$"));
        assert!(compile(r"^[]a]+$")
            .map(|r| r.is_match("a]a"))
            .unwrap_or(false));
        assert!(compile(r"^[[:alpha:]\s]+$")
            .map(|r| r.is_match("ab c"))
            .unwrap_or(false));
        assert!(compile("(").is_err());
    }

    #[test]
    fn case_mapping_is_rune_by_rune() {
        assert_eq!(go_to_upper("straße"), "STRAßE");
        assert_eq!(go_to_lower("İSTANBUL"), "istanbul");
    }

    #[test]
    fn external_url_path() {
        assert_eq!(url_path("http://testhost:9090/path/prefix"), "/path/prefix");
        assert_eq!(url_path("http://testhost:9090"), "");
    }
}

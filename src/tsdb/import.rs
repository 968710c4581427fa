//! Import of OpenMetrics / Prometheus text with timestamps, the input of `promtool tsdb
//! create-blocks-from openmetrics`: `# TYPE`, `# HELP`, `# UNIT` lines, samples
//! `name{label="value",...} value timestamp` with the timestamp in seconds (fractions allowed),
//! and an optional `# EOF` that ends the input.
//!
//! Samples are stored in batches (one WAL record each); samples of one series must ascend in
//! time, but series may come one after the other, as a file written series by series has them.
//! Errors name the line.

use std::io::BufRead;

use super::{Db, Error};
use crate::labels::{Labels, LabelsBuilder, METRIC_NAME};

/// Samples per committed batch.
const BATCH: usize = 20_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub lines: usize,
    pub samples: usize,
    /// Samples identical to the one before them in the same series (skipped).
    pub duplicates: usize,
    /// Series changes in the input, i.e. distinct series for a file written series by series.
    pub series: usize,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("line {line}: {source}")]
    Storage { line: usize, source: Error },
    #[error("reading line {line}: {source}")]
    Read { line: usize, source: std::io::Error },
}

/// Reads OpenMetrics text into `db`. When the database is persistent everything imported is
/// written to block files at the end ([`Db::flush`]), so it does not sit in the WAL or the
/// head snapshot.
pub fn import_openmetrics(mut reader: impl BufRead, db: &Db) -> Result<ImportStats, ImportError> {
    let mut stats = ImportStats::default();
    let mut batch: Vec<(Labels, i64, f64)> = Vec::with_capacity(BATCH);
    let mut batch_lines: Vec<usize> = Vec::with_capacity(BATCH);
    let mut prev_series_text = String::new();
    let mut prev_labels = Labels::empty();
    let mut buf = String::new();
    let mut lineno = 0usize;
    let mut eof_at: Option<usize> = None;
    loop {
        buf.clear();
        let n = reader
            .read_line(&mut buf)
            .map_err(|source| ImportError::Read {
                line: lineno + 1,
                source,
            })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let line = buf.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(at) = eof_at {
            return Err(perr(lineno, format!("content after `# EOF` (line {at})")));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("EOF") if comment.trim() == "EOF" => eof_at = Some(lineno),
                Some(kw @ ("TYPE" | "HELP" | "UNIT")) if words.next().is_none() => {
                    return Err(perr(lineno, format!("`# {kw}` without a metric name")));
                }
                // Any other comment is allowed by the Prometheus text format.
                _ => {}
            }
            continue;
        }
        let (series_text, rest) = split_series(line).map_err(|m| perr(lineno, m))?;
        if series_text != prev_series_text {
            prev_labels = parse_series(series_text).map_err(|m| perr(lineno, m))?;
            prev_series_text.clear();
            prev_series_text.push_str(series_text);
            stats.series += 1;
        }
        let (v, t) = parse_value_and_time(rest).map_err(|m| perr(lineno, m))?;
        stats.min_time = Some(stats.min_time.map_or(t, |m| m.min(t)));
        stats.max_time = Some(stats.max_time.map_or(t, |m| m.max(t)));
        batch.push((prev_labels.clone(), t, v));
        batch_lines.push(lineno);
        if batch.len() >= BATCH {
            flush(db, &mut batch, &mut batch_lines, &mut stats)?;
        }
    }
    stats.lines = lineno;
    flush(db, &mut batch, &mut batch_lines, &mut stats)?;
    db.flush().map_err(|source| ImportError::Storage {
        line: lineno,
        source,
    })?;
    Ok(stats)
}

fn perr(line: usize, msg: impl Into<String>) -> ImportError {
    ImportError::Parse {
        line,
        msg: msg.into(),
    }
}

fn flush(
    db: &Db,
    batch: &mut Vec<(Labels, i64, f64)>,
    lines: &mut Vec<usize>,
    stats: &mut ImportStats,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let last_line = lines.last().copied().unwrap_or(0);
    let r = db
        .append_batch(batch)
        .map_err(|source| ImportError::Storage {
            line: last_line,
            source,
        })?;
    if let Some(rej) = r.rejected.first() {
        let line = lines.get(rej.index).copied().unwrap_or(last_line);
        return Err(ImportError::Storage {
            line,
            source: rej.to_error(),
        });
    }
    stats.samples += r.appended;
    stats.duplicates += r.duplicates;
    batch.clear();
    lines.clear();
    Ok(())
}

/// Splits `name{labels} rest` into the series part and the rest.
fn split_series(line: &str) -> Result<(&str, &str), String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'{' {
        i += 1;
    }
    if i < b.len() && b[i] == b'{' {
        // Find the closing brace outside quoted values.
        let mut in_str = false;
        let mut esc = false;
        i += 1;
        loop {
            let Some(&c) = b.get(i) else {
                return Err("unterminated label set".into());
            };
            i += 1;
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, b'\\') => esc = true,
                (true, false, b'"') => in_str = false,
                (false, _, b'"') => in_str = true,
                (false, _, b'}') => break,
                _ => {}
            }
        }
    }
    Ok((&line[..i], &line[i..]))
}

fn valid_name(n: &str, metric: bool) -> bool {
    let mut cs = n.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
    cs.next().is_some_and(ok_first) && cs.all(ok_rest)
}

fn parse_series(s: &str) -> Result<Labels, String> {
    let (name, labels) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..s.len() - 1])),
        None => (s, None),
    };
    if !valid_name(name, true) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut b = LabelsBuilder::new(&Labels::empty());
    b.set(METRIC_NAME, name);
    let mut seen: Vec<String> = Vec::new();
    if let Some(mut rest) = labels {
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let eq = rest
                .find('=')
                .ok_or_else(|| format!("expected `=` in labels at {rest:?}"))?;
            let lname = rest[..eq].trim();
            if !valid_name(lname, false) {
                return Err(format!("invalid label name {lname:?}"));
            }
            if seen.iter().any(|n| n == lname) {
                return Err(format!("duplicate label name {lname:?}"));
            }
            seen.push(lname.to_string());
            rest = rest[eq + 1..].trim_start();
            let body = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("label {lname} value must be quoted"))?;
            let (value, used) = unquote(body)
                .ok_or_else(|| format!("label {lname}: unterminated or bad escape"))?;
            b.set(lname, value);
            rest = body[used..].trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => break,
                None => return Err(format!("expected `,` or `}}` after label {lname}")),
            }
        }
    }
    Ok(b.build())
}

/// Reads a quoted value up to its closing quote; returns the value and the bytes consumed
/// (closing quote included).
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

fn parse_value_and_time(rest: &str) -> Result<(f64, i64), String> {
    // An exemplar (` # {...} ...`) may follow the timestamp.
    let main = rest.split(" # ").next().unwrap_or(rest);
    let mut it = main.split_ascii_whitespace();
    let v = it.next().ok_or("missing value")?;
    let v = parse_float(v).ok_or_else(|| format!("invalid value {v:?}"))?;
    let ts = it
        .next()
        .ok_or("missing timestamp (import needs one on every sample)")?;
    let t = parse_seconds_to_ms(ts).ok_or_else(|| format!("invalid timestamp {ts:?}"))?;
    if let Some(extra) = it.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok((v, t))
}

/// Go's `ParseFloat` spellings: decimals, exponents, `NaN`, `+Inf`, `-Inf` (any case).
fn parse_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        l if l.contains("inf") || l.contains("nan") => None,
        _ => s.parse().ok(),
    }
}

/// Seconds (optionally fractional) to milliseconds, exactly for plain decimals so that
/// `1700000000.123` is 1700000000123 and not one off through binary rounding.
fn parse_seconds_to_ms(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    if !int.is_empty() && digits(int) && digits(frac) {
        let mut ms: i64 = int.parse::<i64>().ok()?.checked_mul(1000)?;
        let mut f = frac
            .bytes()
            .map(|c| (c - b'0') as i64)
            .chain(std::iter::repeat(0));
        let (a, b, c, d) = (f.next()?, f.next()?, f.next()?, f.next()?);
        ms = ms.checked_add(a * 100 + b * 10 + c + i64::from(d >= 5))?;
        return Some(if neg { -ms } else { ms });
    }
    let f: f64 = s.parse().ok()?;
    let ms = (f * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::super::Queryable;
    use super::*;
    use crate::labels::Matcher;

    #[test]
    fn imports_series_written_one_after_the_other() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1 1700000000\na_total{x=\"1\"} 2 1700000005.5\n\
                    b{y=\"q\\\"uote\",z=\"\"} 0.125 1699999990\nb{y=\"q\\\"uote\",z=\"\"} NaN 1699999995\n# EOF\n";
        let db = Db::in_memory();
        let st = import_openmetrics(text.as_bytes(), &db).unwrap();
        assert_eq!((st.samples, st.series, st.lines), (4, 2, 7));
        let a = db.select(&[Matcher::equal("__name__", "a_total")], 0, i64::MAX);
        assert_eq!(
            a[0].samples.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>(),
            vec![(1700000000000, 1.0), (1700000005500, 2.0)]
        );
        let b = db.select(&[Matcher::equal("y", "q\"uote")], 0, i64::MAX);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].labels.get("z"), None);
        assert!(b[0].samples[1].v.is_nan());
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("a 1 1\nb{x=\"1\" 2 3\n", 2, "unterminated"),
            ("a 1 1\na 2\n", 2, "missing timestamp"),
            ("a 1 1\na x 2\n", 2, "invalid value"),
            ("a 1 10\na 2 5\n", 2, "out of order"),
            ("# EOF\na 1 1\n", 2, "after `# EOF`"),
            ("a 1 1\n0a 1 2\n", 2, "invalid metric name"),
            ("a{x=\"1\",x=\"2\"} 1 1\n", 1, "duplicate label"),
        ];
        for (text, line, want) in cases {
            let err = import_openmetrics(text.as_bytes(), &Db::in_memory()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("line {line}:")) && msg.contains(want),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn timestamps_in_seconds_become_exact_milliseconds() {
        assert_eq!(
            parse_seconds_to_ms("1700000000.123"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_seconds_to_ms("1.0005"), Some(1001));
        assert_eq!(parse_seconds_to_ms("-1.5"), Some(-1500));
        assert_eq!(parse_seconds_to_ms("1e3"), Some(1_000_000));
        assert_eq!(parse_seconds_to_ms("x"), None);
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("1.5e-3"), Some(0.0015));
    }
}

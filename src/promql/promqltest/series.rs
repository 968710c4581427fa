//! Series notation: `metric{a="b"} 1 2+3x4 _ stale`, the labels and expanded values of a
//! `load` line or an expected result.

use crate::labels::{Labels, METRIC_NAME};
use crate::tsdb::stale_nan;

/// One position of a series description (`SequenceValue` in Prometheus).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this step.
    Omitted,
    Float(f64),
    /// A `{{…}}` native histogram sample (not loaded; see the skip rules).
    Histogram,
}

/// Parses a series description `metric{a="b"} 1 2+3x4 _ stale` into labels and values.
pub fn parse_series(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let mut chars = line.trim().chars().peekable();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name: String = std::iter::from_fn(|| {
        chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
    })
    .collect();
    if !name.is_empty() {
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("invalid metric name {name:?}"));
        }
        pairs.push((METRIC_NAME.to_string(), name));
    }
    let has_braces = chars.peek() == Some(&'{');
    if has_braces {
        chars.next();
        loop {
            skip_ws(&mut chars);
            match chars.peek() {
                Some('}') => {
                    chars.next();
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let lname = if matches!(chars.peek(), Some('"') | Some('\'') | Some('`')) {
                unquote(&mut chars)?
            } else {
                let n: String = std::iter::from_fn(|| {
                    chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                })
                .collect();
                if n.is_empty() {
                    return Err(format!(
                        "unexpected character in label set: {:?}",
                        chars.peek()
                    ));
                }
                n
            };
            skip_ws(&mut chars);
            if chars.peek() == Some(&'=') {
                chars.next();
                skip_ws(&mut chars);
                let v = unquote(&mut chars)?;
                pairs.push((lname, v));
            } else {
                // A lone quoted string is the metric name (UTF-8 syntax `{"my.metric"}`).
                pairs.push((METRIC_NAME.to_string(), lname));
            }
            skip_ws(&mut chars);
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("unexpected {other:?} in label set")),
            }
        }
    }
    if pairs.is_empty() && !has_braces {
        return Err("missing metric name or label set".into());
    }
    let rest: String = chars.collect();
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(format!("unexpected {rest:?} after the label set"));
    }
    let vals = parse_values(rest.trim())?;
    Ok((Labels::from_pairs(pairs), vals))
}

pub(super) fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// A Go/PromQL string literal (`"…"`, `'…'` or `` `…` ``) with its escapes.
pub(super) fn unquote(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, String> {
    let q = chars.next().ok_or("expected a quoted string")?;
    if !matches!(q, '"' | '\'' | '`') {
        return Err(format!("expected a quoted string, got {q:?}"));
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    loop {
        let c = chars.next().ok_or("unterminated quoted string")?;
        if c == q {
            break;
        }
        if c != '\\' || q == '`' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or("unterminated escape")?;
        let mut take_hex = |n: usize| -> Result<u32, String> {
            let s: String = (0..n).filter_map(|_| chars.next()).collect();
            u32::from_str_radix(&s, 16).map_err(|_| format!("bad escape \\{e}{s}"))
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '"' | '\'' => {
                flush(&mut bytes, &mut out);
                out.push(e)
            }
            'x' => {
                let v = take_hex(2)?;
                bytes.push(v as u8);
                continue;
            }
            'u' | 'U' => {
                let v = take_hex(if e == 'u' { 4 } else { 8 })?;
                flush(&mut bytes, &mut out);
                out.push(char::from_u32(v).ok_or("bad unicode escape")?);
            }
            '0'..='7' => {
                let s: String = std::iter::once(e)
                    .chain((0..2).filter_map(|_| chars.next()))
                    .collect();
                let v =
                    u32::from_str_radix(&s, 8).map_err(|_| format!("bad octal escape \\{s}"))?;
                bytes.push(v as u8);
                continue;
            }
            other => return Err(format!("unknown escape sequence \\{other}")),
        }
    }
    flush(&mut bytes, &mut out);
    Ok(out)
}

/// The value part of a series description: `_`, `_xN`, `v`, `vxN`, `v+dxN`, `v-dxN`, `stale`,
/// `{{…}}` (histogram, possibly with `xN`).
pub(super) fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_whitespace() {
            i += 1;
            continue;
        }
        if b[i] == '{' && b.get(i + 1) == Some(&'{') {
            // A histogram item extends to the next whitespace after its closing `}}`; `+{{…}}`
            // continuations are included.
            let mut depth = 0;
            let mut k = i;
            while k < b.len() {
                if b[k] == '{' {
                    depth += 1;
                } else if b[k] == '}' {
                    depth -= 1;
                } else if b[k].is_whitespace() && depth == 0 {
                    break;
                }
                k += 1;
            }
            let item: String = b[i..k].iter().collect();
            let n = item
                .rsplit_once("}}x")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map_or(1, |n| n + 1);
            out.extend(std::iter::repeat_n(SeqValue::Histogram, n));
            i = k;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_whitespace() {
            i += 1;
        }
        let item: String = b[start..i].iter().collect();
        parse_item(&item, &mut out).map_err(|e| format!("{e} in {item:?}"))?;
    }
    Ok(out)
}

pub(super) fn parse_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    if item == "_" {
        out.push(SeqValue::Omitted);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| "bad repetition count")?;
        out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
        return Ok(());
    }
    let b = item.as_bytes();
    let mut pos = 0;
    let base = lex_value(item, &mut pos)?;
    if pos == b.len() {
        out.push(SeqValue::Float(base));
        return Ok(());
    }
    let mut delta = 0.0;
    if b[pos] == b'+' || b[pos] == b'-' {
        let neg = b[pos] == b'-';
        pos += 1;
        let d = lex_number(item, &mut pos)?;
        delta = if neg { -d } else { d };
        if pos >= b.len() || b[pos] != b'x' {
            return Err("expected 'x<count>' after the increment".into());
        }
    }
    if b[pos] != b'x' {
        return Err(format!("unexpected {:?}", &item[pos..]));
    }
    let n: u64 = item[pos + 1..]
        .parse()
        .map_err(|_| "bad repetition count")?;
    // Repeated addition, as Prometheus' grammar does (`$1 += $2`), so rounding matches.
    let mut v = base;
    for _ in 0..=n {
        out.push(SeqValue::Float(v));
        v += delta;
    }
    Ok(())
}

/// A series value: `stale`, or a signed number.
pub(super) fn lex_value(s: &str, pos: &mut usize) -> Result<f64, String> {
    if s[*pos..].starts_with("stale") {
        *pos += 5;
        return Ok(stale_nan());
    }
    let b = s.as_bytes();
    let neg = match b.get(*pos) {
        Some(b'-') => {
            *pos += 1;
            true
        }
        Some(b'+') => {
            *pos += 1;
            false
        }
        _ => false,
    };
    let v = lex_number(s, pos)?;
    Ok(if neg { -v } else { v })
}

/// An unsigned number: decimal with optional fraction and exponent, `Inf` or `NaN`.
pub(super) fn lex_number(s: &str, pos: &mut usize) -> Result<f64, String> {
    let b = s.as_bytes();
    let start = *pos;
    if b.get(*pos).is_some_and(|c| c.is_ascii_alphabetic()) {
        while *pos < b.len() && b[*pos].is_ascii_alphabetic() && b[*pos] != b'x' {
            *pos += 1;
        }
        // `Inf`/`NaN` may be followed directly by `x3`; `inf` contains no `x` anyway.
        return match s[start..*pos].to_ascii_lowercase().as_str() {
            "inf" => Ok(f64::INFINITY),
            "nan" => Ok(f64::NAN),
            w => Err(format!("unexpected {w:?}, want a number or \"stale\"")),
        };
    }
    while *pos < b.len() && (b[*pos].is_ascii_digit() || b[*pos] == b'.' || b[*pos] == b'_') {
        *pos += 1;
    }
    if *pos < b.len() && (b[*pos] == b'e' || b[*pos] == b'E') {
        let save = *pos;
        *pos += 1;
        if *pos < b.len() && (b[*pos] == b'+' || b[*pos] == b'-') {
            *pos += 1;
        }
        let ds = *pos;
        while *pos < b.len() && b[*pos].is_ascii_digit() {
            *pos += 1;
        }
        if *pos == ds {
            *pos = save;
        }
    }
    let text = s[start..*pos].replace('_', "");
    if text.is_empty() {
        return Err("expected a number".into());
    }
    text.parse::<f64>()
        .map_err(|_| format!("bad number {text:?}"))
}

//! Go's literal syntax as templates use it: `strconv.Unquote` for quoted strings and the
//! number forms (`0x1F`, `1_000`, `0x1p-2`, `'a'`) with every Go type each fits.

use super::node::Number;
use super::ItemType;

/// Go's `strconv.Unquote` for the three literal forms the lexer produces.
pub(crate) fn unquote(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    if b.len() < 2 {
        return Err(());
    }
    let (q, last) = (b[0], b[b.len() - 1]);
    if q != last {
        return Err(());
    }
    let inner = &s[1..s.len() - 1];
    match q {
        b'`' => {
            if inner.contains('`') {
                return Err(());
            }
            Ok(inner.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == q as char || c == '\n' {
                    return Err(());
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = chars.next().ok_or(())?;
                match e {
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '\'' if q == b'\'' => out.push('\''),
                    '"' if q == b'"' => out.push('"'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next()).collect();
                        if hex.len() != n {
                            return Err(());
                        }
                        let v = u32::from_str_radix(&hex, 16).map_err(|_| ())?;
                        if e == 'x' {
                            // A byte; only valid UTF-8 results are representable here.
                            if v < 0x80 {
                                out.push(v as u8 as char);
                            } else {
                                return Err(());
                            }
                        } else {
                            out.push(char::from_u32(v).ok_or(())?);
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).ok_or(())?;
                        for _ in 0..2 {
                            let d = chars.next().and_then(|c| c.to_digit(8)).ok_or(())?;
                            v = v * 8 + d;
                        }
                        if v > 255 {
                            return Err(());
                        }
                        if v < 0x80 {
                            out.push(v as u8 as char);
                        } else {
                            return Err(());
                        }
                    }
                    _ => return Err(()),
                }
            }
            if q == b'\'' && out.chars().count() != 1 {
                return Err(());
            }
            Ok(out)
        }
        _ => Err(()),
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`/`ParseUint`: an optional sign, then a base prefix
/// (`0x`, `0o`, `0b`, or a leading `0` for octal) and digits with optional underscores.
fn parse_go_int(text: &str) -> Option<(bool, u64)> {
    let (neg, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if digits.contains('_') && !underscore_ok(text) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    u64::from_str_radix(&clean, radix).ok().map(|u| (neg, u))
}

/// Go's `parse.newNumber` minus complex numbers: which of int, uint, float the literal is.
pub(crate) fn parse_number(text: &str, typ: ItemType) -> Result<Number, String> {
    let mut n = Number {
        text: text.to_string(),
        int: None,
        uint: None,
        float: None,
    };
    if typ == ItemType::CharConstant {
        let s = unquote(text).map_err(|_| format!("malformed character constant: {text}"))?;
        let mut cs = s.chars();
        let (Some(c), None) = (cs.next(), cs.next()) else {
            return Err(format!("malformed character constant: {text}"));
        };
        n.int = Some(c as i64);
        n.uint = Some(c as u64);
        n.float = Some(c as u32 as f64);
        return Ok(n);
    }
    if text.ends_with('i') {
        return Err(format!("complex constants are not supported: {text}"));
    }
    if let Some((neg, u)) = parse_go_int(text) {
        if !neg {
            n.uint = Some(u);
            if u <= i64::MAX as u64 {
                n.int = Some(u as i64);
            }
        } else if u <= i64::MAX as u64 + 1 {
            n.int = Some((u as i128).wrapping_neg() as i64);
            if u == 0 {
                n.uint = Some(0);
            }
        }
    }
    if let Some(i) = n.int {
        n.float = Some(i as f64);
    } else if let Some(u) = n.uint {
        n.float = Some(u as f64);
    } else {
        let lower = text.to_ascii_lowercase();
        let f = if lower.starts_with("0x") || lower.starts_with("+0x") || lower.starts_with("-0x") {
            parse_hex_float(&lower)
        } else if text.contains('_') && !underscore_ok(text) {
            None
        } else {
            text.replace('_', "")
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
        };
        if let Some(f) = f {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!(
                    "integer overflow: {}",
                    super::super::fmt::quote(text, false)
                ));
            }
            n.float = Some(f);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                n.int = Some(f as i64);
            }
            if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 {
                n.uint = Some(f as u64);
            }
        }
    }
    if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
        return Err(format!(
            "illegal number syntax: {}",
            super::super::fmt::quote(text, false)
        ));
    }
    Ok(n)
}

/// Go's `strconv.underscoreOK`: underscores only between digits, or between a base prefix
/// and a digit.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let b = match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    };
    // '^' start, '0' digit or base prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// A hexadecimal float such as `0x1.8p3`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let s = s.strip_prefix("0x")?;
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.replace('_', "").parse().ok()?;
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let mut v = 0f64;
    for c in ip.chars().filter(|c| *c != '_') {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in fp.chars().filter(|c| *c != '_') {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

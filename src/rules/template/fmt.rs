//! Go's `fmt` and `strconv` formatting as templates reach them: `print`, `println`, `printf`
//! (verbs `%v %s %d %f %e %g %q %x %X %o %b %c %t %U %T %%`, flags `+ - # 0 space`, width and
//! precision, `*`), the `%!verb(type=value)` error forms, Go's float formatting (shortest `%g`
//! with an exponent from 1e+06 on, `%.4g`, `%e` with two exponent digits) and `strconv.Quote`.

use super::value::Value;
use crate::compat::strconv::format_float;

/// Go's `unicode.IsPrint`, closely enough for quoting: graphic characters and ASCII space.
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Private use and noncharacters are not printable in Go either.
    if (0xe000..=0xf8ff).contains(&u)
        || u >= 0xf0000
        || (0xfdd0..=0xfdef).contains(&u)
        || u & 0xfffe == 0xfffe
    {
        return false;
    }
    // Format characters (category Cf) are not printable in Go.
    !matches!(c, '\u{ad}' | '\u{600}'..='\u{605}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// Go's `%#U`: `U+0041 'A'`, or just `U+00A0` when the rune is not printable.
pub(crate) fn unicode_u_sharp(r: char) -> String {
    if is_print(r) {
        format!("U+{:04X} '{}'", r as u32, r)
    } else {
        format!("U+{:04X}", r as u32)
    }
}

/// Go's `strconv.Quote` (or `QuoteToASCII` when `ascii_only`).
pub(crate) fn quote(s: &str, ascii_only: bool) -> String {
    quote_with(s, '"', ascii_only)
}

fn quote_with(s: &str, q: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if ascii_only {
            if c.is_ascii() && is_print(c) {
                out.push(c);
                continue;
            }
        } else if is_print(c) {
            out.push(c);
            continue;
        }
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(q);
    out
}

/// Flags, width and precision of one verb.
#[derive(Default, Clone)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

impl Flags {
    fn pad(&self, s: &str) -> String {
        self.pad_with(s, self.zero)
    }

    fn pad_with(&self, s: &str, zero: bool) -> String {
        let Some(w) = self.wid else {
            return s.to_string();
        };
        let n = s.chars().count();
        if n >= w {
            return s.to_string();
        }
        let fill = if zero && !self.minus { "0" } else { " " }.repeat(w - n);
        if self.minus {
            format!("{s}{fill}")
        } else {
            format!("{fill}{s}")
        }
    }
}

/// How Go's fmt prints a value with `%v` (and, element by element, with other verbs).
fn print_value(out: &mut String, v: &Value, verb: char, f: &Flags, depth: usize) {
    match v {
        Value::Nil => {
            if depth == 0 && verb != 'v' {
                bad_verb(out, verb, v);
            } else {
                out.push_str(&f.pad("<nil>"));
            }
        }
        Value::Bool(b) => match verb {
            't' | 'v' => out.push_str(&f.pad(if *b { "true" } else { "false" })),
            _ => bad_verb(out, verb, v),
        },
        Value::Int(i) => fmt_integer(out, *i < 0, i.unsigned_abs(), verb, f, v),
        Value::Uint(u) => fmt_integer(out, false, *u, verb, f, v),
        Value::Float(x) => fmt_float_verb(out, *x, verb, f, v),
        Value::String(s) => fmt_string(out, s, verb, f, v),
        Value::Time(_) | Value::Duration(_) => {
            // Stringers: Go calls String() for the string verbs.
            let s = match v {
                Value::Time(ns) => super::time::time_string(*ns),
                Value::Duration(d) => crate::compat::duration::go_duration_string(*d),
                _ => String::new(),
            };
            match verb {
                'v' | 's' | 'x' | 'X' | 'q' => fmt_string(out, &s, verb, f, v),
                _ => bad_verb(out, verb, v),
            }
        }
        Value::List(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, it, verb, f, depth + 1);
            }
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, &Value::Sample(s.clone()), verb, f, depth + 1);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, val)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, &Value::String(k.clone()), verb, f, depth + 1);
                out.push(':');
                print_value(out, val, verb, f, depth + 1);
            }
            out.push(']');
        }
        Value::Struct(s) => {
            out.push('{');
            for (i, (_, val)) in s.fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(out, val, verb, f, depth + 1);
            }
            out.push('}');
        }
        Value::Sample(s) => {
            out.push_str("&{");
            print_value(out, &s.labels_value(), verb, f, depth + 1);
            out.push(' ');
            print_value(out, &Value::Float(s.value), verb, f, depth + 1);
            out.push('}');
        }
    }
}

/// `%!verb(type=value)`, Go's report of a verb that does not fit the operand.
fn bad_verb(out: &mut String, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if let Value::Nil = v {
        out.push_str("<nil>");
    } else {
        out.push_str(&v.go_type());
        out.push('=');
        print_value(out, v, 'v', &Flags::default(), 0);
    }
    out.push(')');
}

fn fmt_integer(out: &mut String, neg: bool, u: u64, verb: char, f: &Flags, v: &Value) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' => {
            let c = char::from_u32(u as u32)
                .filter(|_| !neg && u <= u32::MAX as u64)
                .unwrap_or('\u{fffd}');
            out.push_str(&f.pad_with(&c.to_string(), false));
            return;
        }
        'q' => {
            let c = char::from_u32(u as u32)
                .filter(|_| !neg && u <= u32::MAX as u64)
                .unwrap_or('\u{fffd}');
            let q = quote_with(&c.to_string(), '\'', f.plus);
            out.push_str(&f.pad_with(&q, false));
            return;
        }
        'U' => {
            let mut s = format!("U+{u:04X}");
            if f.sharp {
                if let Some(c) = char::from_u32(u as u32).filter(|c| is_print(*c)) {
                    s.push_str(&format!(" '{c}'"));
                }
            }
            out.push_str(&f.pad_with(&s, false));
            return;
        }
        _ => return bad_verb(out, verb, v),
    };
    let mut digits = match base {
        2 => format!("{u:b}"),
        8 => format!("{u:o}"),
        16 if upper => format!("{u:X}"),
        16 => format!("{u:x}"),
        _ => u.to_string(),
    };
    // Precision is a minimum number of digits; %.0d of 0 prints nothing.
    if let Some(p) = f.prec {
        if p == 0 && u == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let prefix = match (base, f.sharp || verb == 'O') {
        (2, true) => "0b",
        (8, true) if verb == 'O' => "0o",
        (8, true) if !digits.starts_with('0') => "0",
        (16, true) if upper => "0X",
        (16, true) => "0x",
        _ => "",
    };
    let sign = if neg {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    let body = format!("{prefix}{digits}");
    // Zero padding goes between the sign and the digits, and only without a precision.
    if f.zero && !f.minus && f.prec.is_none() {
        if let Some(w) = f.wid {
            let len = sign.len() + body.len();
            if len < w {
                out.push_str(sign);
                out.push_str(&"0".repeat(w - len));
                out.push_str(&body);
                return;
            }
        }
    }
    out.push_str(&f.pad_with(&format!("{sign}{body}"), false));
}

fn fmt_float_verb(out: &mut String, x: f64, verb: char, f: &Flags, v: &Value) {
    let (verb, default_prec) = match verb {
        'v' => ('g', -1),
        'g' | 'G' => (verb, -1),
        'e' | 'E' | 'f' | 'F' => (verb, 6),
        _ => return bad_verb(out, verb, v),
    };
    let prec = f.prec.map(|p| p as i32).unwrap_or(default_prec);
    let mut num = format_float(x, verb, prec);
    if !num.starts_with(['-', '+']) {
        num.insert(0, '+');
    }
    if f.space && num.starts_with('+') && !f.plus {
        num.replace_range(0..1, " ");
    }
    if num[1..].starts_with(['I', 'N']) {
        if num[1..].starts_with('N') && !f.space && !f.plus {
            num.remove(0);
        }
        out.push_str(&f.pad_with(&num, false));
        return;
    }
    if f.sharp && !num.contains(['.', 'e', 'E']) {
        // '#' forces a decimal point.
        num.push('.');
    }
    if f.plus || !num.starts_with('+') {
        if f.zero && !f.minus {
            if let Some(w) = f.wid {
                if w > num.len() {
                    out.push_str(&num[..1]);
                    out.push_str(&"0".repeat(w - num.len()));
                    out.push_str(&num[1..]);
                    return;
                }
            }
        }
        out.push_str(&f.pad(&num));
        return;
    }
    out.push_str(&f.pad(&num[1..]));
}

fn fmt_string(out: &mut String, s: &str, verb: char, f: &Flags, v: &Value) {
    let truncated: String = match f.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    match verb {
        'v' | 's' => out.push_str(&f.pad(&truncated)),
        'q' => {
            let q = if f.sharp
                && !truncated.contains('`')
                && truncated.chars().all(|c| c == '\t' || !c.is_control())
            {
                format!("`{truncated}`")
            } else {
                quote(&truncated, f.plus)
            };
            out.push_str(&f.pad(&q));
        }
        'x' | 'X' => {
            let bytes: Vec<u8> = match f.prec {
                Some(p) => s.bytes().take(p).collect(),
                None => s.bytes().collect(),
            };
            let mut h = String::new();
            for (i, b) in bytes.iter().enumerate() {
                if f.space && i > 0 {
                    h.push(' ');
                }
                if f.sharp && (f.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            out.push_str(&f.pad(&h));
        }
        _ => bad_verb(out, verb, v),
    }
}

/// Go's `fmt.Sprint`: operands printed with `%v`, a space between two operands when neither is
/// a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        print_value(&mut out, a, 'v', &Flags::default(), 0);
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln`: operands with `%v`, always separated by a space, and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        print_value(&mut out, a, 'v', &Flags::default(), 0);
    }
    out.push('\n');
    out
}

/// How an action prints its value (Go's `fmt.Fprint` of one operand).
pub(crate) fn print_action(v: &Value) -> String {
    sprint(std::slice::from_ref(v))
}

fn parse_num(b: &[u8], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut n: usize = 0;
    while *i < b.len() && b[*i].is_ascii_digit() {
        n = n.saturating_mul(10).saturating_add((b[*i] - b'0') as usize);
        *i += 1;
    }
    if *i > start {
        Some(n)
    } else {
        None
    }
}

fn int_from_arg(args: &[Value], arg_num: &mut usize) -> Option<i64> {
    let v = args.get(*arg_num)?;
    *arg_num += 1;
    match v {
        Value::Int(i) => Some(*i),
        Value::Uint(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// Go's `fmt.Sprintf`. Explicit argument indexes (`%[1]d`) are not supported and print as
/// `%!(BADINDEX)`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let b = format.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut arg_num = 0;
    let mut reordered = false;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[start..i]);
        if i >= b.len() {
            break;
        }
        i += 1;
        let mut f = Flags::default();
        while i < b.len() {
            match b[i] {
                b'#' => f.sharp = true,
                b'0' => f.zero = !f.minus,
                b'+' => f.plus = true,
                b'-' => {
                    f.minus = true;
                    f.zero = false;
                }
                b' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < b.len() && b[i] == b'[' {
            reordered = true;
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            // Skip the `]` and the verb after it.
            i = (i + 1).min(b.len());
            if let Some(c) = format[i..].chars().next() {
                i += c.len_utf8();
            }
            out.push_str("%!(BADINDEX)");
            continue;
        }
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match int_from_arg(args, &mut arg_num) {
                Some(w) => {
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.wid = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
        } else {
            f.wid = parse_num(b, &mut i);
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match int_from_arg(args, &mut arg_num) {
                    Some(p) if p >= 0 => f.prec = Some(p as usize),
                    Some(_) => f.prec = None,
                    None => out.push_str("%!(BADPREC)"),
                }
            } else {
                f.prec = Some(parse_num(b, &mut i).unwrap_or(0));
            }
        }
        if i >= b.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = format[i..].chars().next().unwrap_or('%');
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(arg_num) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        arg_num += 1;
        if verb == 'T' {
            out.push_str(&f.pad(&arg.go_type()));
            continue;
        }
        if verb == 'v' {
            // %#v and %+v are Go-syntax and field-name forms; print them as %v.
            f.sharp = false;
            f.plus = false;
        }
        print_value(&mut out, arg, verb, &f, 0);
    }
    if !reordered && arg_num < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[arg_num..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if let Value::Nil = a {
                out.push_str("<nil>");
            } else {
                out.push_str(&a.go_type());
                out.push('=');
                print_value(&mut out, a, 'v', &Flags::default(), 0);
            }
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(f: &str, args: &[Value]) -> String {
        sprintf(f, args)
    }

    #[test]
    fn floats_print_like_go_v() {
        let v = |x: f64| print_action(&Value::Float(x));
        assert_eq!(v(1.0), "1");
        assert_eq!(v(11.0), "11");
        assert_eq!(v(1.5), "1.5");
        assert_eq!(v(123456.0), "123456");
        assert_eq!(v(1234567.0), "1.234567e+06");
        assert_eq!(v(1353755652.0), "1.353755652e+09");
        assert_eq!(v(0.0001), "0.0001");
        assert_eq!(v(0.00001), "1e-05");
        assert_eq!(v(-0.0), "-0");
        assert_eq!(v(f64::INFINITY), "+Inf");
        assert_eq!(v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(v(f64::NAN), "NaN");
        assert_eq!(v(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn percent_4g_as_humanize_uses_it() {
        let g = |x: f64| pf("%.4g", &[Value::Float(x)]);
        assert_eq!(g(1.234567), "1.235");
        assert_eq!(g(120.00000000000001), "120");
        assert_eq!(g(1.0), "1");
        assert_eq!(g(0.0), "0");
        assert_eq!(g(123456700.0), "1.235e+08");
        assert_eq!(g(9.223372036854776e20), "9.223e+20");
        assert_eq!(g(-22.222), "-22.22");
        assert_eq!(g(1234.5), "1234");
        assert_eq!(g(12345.0), "1.234e+04");
    }

    #[test]
    fn printf_verbs() {
        let f = Value::Float(7.25159);
        assert_eq!(pf("%.2f", std::slice::from_ref(&f)), "7.25");
        assert_eq!(pf("%0.2f", &[Value::Float(3720.01)]), "3720.01");
        assert_eq!(pf("%f", std::slice::from_ref(&f)), "7.251590");
        assert_eq!(
            pf(
                "%8.3f|%-8.3f|%08.3f",
                &[f.clone(), f.clone(), Value::Float(-7.25159)]
            ),
            "   7.252|7.252   |-007.252"
        );
        assert_eq!(pf("%e", &[Value::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(pf("%g", &[Value::Float(1e21)]), "1e+21");
        assert_eq!(pf("%+.1f", &[Value::Float(2.0)]), "+2.0");
        assert_eq!(pf("%d items", &[Value::Int(3)]), "3 items");
        assert_eq!(
            pf(
                "%5d|%-5d|%05d",
                &[Value::Int(42), Value::Int(42), Value::Int(-42)]
            ),
            "   42|42   |-0042"
        );
        assert_eq!(
            pf(
                "%x %X %#x %o %b",
                &[
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                    Value::Int(5)
                ]
            ),
            "ff FF 0xff 10 101"
        );
        assert_eq!(
            pf("%s is %q", &[Value::str("job"), Value::str("a\"b\n")]),
            "job is \"a\\\"b\\n\""
        );
        assert_eq!(pf("%x", &[Value::str("hi")]), "6869");
        assert_eq!(
            pf(
                "%10s|%-10s|%.2s",
                &[Value::str("abc"), Value::str("abc"), Value::str("abc")]
            ),
            "       abc|abc       |ab"
        );
        assert_eq!(
            pf(
                "%v %v %t",
                &[Value::Bool(true), Value::Nil, Value::Bool(false)]
            ),
            "true <nil> false"
        );
        assert_eq!(pf("100%%", &[]), "100%");
        assert_eq!(pf("%c%c", &[Value::Int(72), Value::Int(105)]), "Hi");
        assert_eq!(pf("%*d", &[Value::Int(4), Value::Int(7)]), "   7");
        assert_eq!(
            pf("%T %T", &[Value::Float(1.0), Value::str("")]),
            "float64 string"
        );
    }

    #[test]
    fn printf_errors_like_go() {
        assert_eq!(pf("%d", &[Value::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(pf("%s", &[Value::Int(1)]), "%!s(int=1)");
        assert_eq!(pf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            pf("%d", &[Value::Int(1), Value::str("x")]),
            "1%!(EXTRA string=x)"
        );
        assert_eq!(pf("%", &[]), "%!(NOVERB)");
        assert_eq!(pf("%s", &[Value::Nil]), "%!s(<nil>)");
        assert_eq!(pf("%z", &[Value::Int(1)]), "%!z(int=1)");
    }

    #[test]
    fn containers_and_sprint() {
        let list = Value::list(vec![Value::Int(1), Value::str("a")]);
        assert_eq!(pf("%v", std::slice::from_ref(&list)), "[1 a]");
        let m = Value::string_map(
            [
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ]
            .into(),
        );
        assert_eq!(print_action(&m), "map[a:1 b:2]");
        assert_eq!(
            sprint(&[Value::Int(1), Value::Int(2), Value::str("x"), Value::Int(3)]),
            "1 2x3"
        );
        assert_eq!(sprintln(&[Value::Int(1), Value::str("x")]), "1 x\n");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("é\t\u{1}", false), "\"é\\t\\x01\"");
        assert_eq!(quote("é", true), "\"\\u00e9\"");
        assert_eq!(unicode_u_sharp('\u{a0}'), "U+00A0");
        assert_eq!(unicode_u_sharp('x'), "U+0078 'x'");
    }
}

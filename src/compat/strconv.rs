//! Go's `strconv.FormatFloat`, the float text of every Prometheus program: sample values and
//! scalars (`'f'` and `'e'`, shortest), label values such as `le` and `quantile` and the
//! numbers in annotations (`'g'`, shortest), `promtool`'s `'E'`, and the verbs of template
//! `printf` with a precision (`%.4g`, `%.2f`, `%e`).

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for `fmt` in `e E f F g G` (any other letter
/// is taken as `g`). `prec < 0` asks for the fewest digits that read back as `v`; otherwise
/// `prec` is the number of digits after the point (`e`, `f`) or of significant digits (`g`).
/// `NaN`, `+Inf` and `-Inf` as Go writes them, and `-0` keeps its sign.
pub fn format_float(v: f64, fmt: char, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if prec < 0 {
        shortest(v, fmt)
    } else {
        with_precision(v, fmt, prec)
    }
}

/// The shortest forms straight from Rust's formatting, which prints the same shortest
/// round-trip digits as Go: the hot path of every query answer and export.
fn shortest(v: f64, fmt: char) -> String {
    match fmt {
        // Display never uses an exponent: Go's 'f' with precision -1.
        'f' | 'F' => format!("{v}"),
        'e' | 'E' => go_exponent(&format!("{v:e}"), fmt),
        _ => {
            let e = format!("{v:e}");
            // Go decides with precision 6 in the shortest mode: an exponent below -4 or from
            // 6 on is written in 'e' form (1e+06, 1e-05), anything between as 'f' (123456).
            if (-4..6).contains(&exponent(&e)) {
                format!("{v}")
            } else {
                go_exponent(&e, if fmt == 'G' { 'E' } else { 'e' })
            }
        }
    }
}

/// The exponent of Rust's `{:e}` text (`1.5e-7` → -7).
fn exponent(rust_e: &str) -> i32 {
    rust_e
        .split_once('e')
        .and_then(|(_, x)| x.parse().ok())
        .unwrap_or(0)
}

/// Rust's `1.5e-7` as Go writes it: `1.5e-07` (the exponent signed, at least two digits).
fn go_exponent(rust_e: &str, e: char) -> String {
    let (mant, _) = rust_e.split_once('e').unwrap_or((rust_e, ""));
    let x = exponent(rust_e);
    let sign = if x < 0 { '-' } else { '+' };
    format!("{mant}{e}{sign}{:02}", x.unsigned_abs())
}

/// The decimal digits of |v| (no leading zeros, trailing zeros trimmed) and the position of the
/// decimal point, as Go's `strconv` keeps them: `v = 0.d1d2d3... × 10^dp`.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

/// Shortest digits that read back as `v` (`sig == None`), or `v` rounded to `sig`
/// significant digits (half to even on the exact value, as Go does).
fn digits(v: f64, sig: Option<usize>) -> Digits {
    let v = v.abs();
    if v == 0.0 {
        return Digits {
            d: Vec::new(),
            dp: 0,
        };
    }
    let s = match sig {
        None => format!("{v:e}"),
        Some(n) => format!("{:.*e}", n.max(1) - 1, v),
    };
    let (mant, _) = s.split_once('e').unwrap_or((&s, "0"));
    let mut d: Vec<u8> = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    while d.last() == Some(&0) {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits {
        d,
        dp: exponent(&s) + 1,
    }
}

/// Go's `%e`: one digit, `prec` more after the point, and a two-digit signed exponent.
fn fmt_e(neg: bool, digs: &Digits, prec: usize, e: char) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push(char::from(b'0' + digs.d.first().copied().unwrap_or(0)));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(char::from(b'0' + digs.d.get(i).copied().unwrap_or(0)));
        }
    }
    out.push(e);
    let exp = if digs.d.is_empty() { 0 } else { digs.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
    out
}

/// Go's `%f` with `prec` digits after the point.
fn fmt_f(neg: bool, digs: &Digits, prec: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if digs.dp > 0 {
        for i in 0..digs.dp as usize {
            out.push(char::from(b'0' + digs.d.get(i).copied().unwrap_or(0)));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i32 {
            let j = digs.dp + i - 1;
            let c = if j >= 0 {
                digs.d.get(j as usize).copied().unwrap_or(0)
            } else {
                0
            };
            out.push(char::from(b'0' + c));
        }
    }
    out
}

/// `FormatFloat` through Go's own steps (decimal digits, then the layout), for a finite `v`;
/// `prec < 0` is the shortest form, which [`shortest`] writes faster (the tests hold the two
/// equal).
fn with_precision(v: f64, fmt: char, prec: i32) -> String {
    let neg = v.is_sign_negative();
    let shortest = prec < 0;
    match fmt {
        'f' | 'F' => {
            if shortest {
                let digs = digits(v, None);
                let p = (digs.d.len() as i32 - digs.dp).max(0) as usize;
                fmt_f(neg, &digs, p)
            } else {
                // Rust's fixed formatting is exact with ties to even, like Go's.
                let s = format!("{:.*}", prec as usize, v.abs());
                if neg {
                    format!("-{s}")
                } else {
                    s
                }
            }
        }
        'e' | 'E' => {
            let digs = if shortest {
                digits(v, None)
            } else {
                digits(v, Some(prec as usize + 1))
            };
            let p = if shortest {
                digs.d.len().saturating_sub(1)
            } else {
                prec as usize
            };
            fmt_e(neg, &digs, p, fmt)
        }
        _ => {
            let e = if fmt == 'G' { 'E' } else { 'e' };
            let (digs, mut p) = if shortest {
                let d = digits(v, None);
                let n = d.d.len() as i32;
                (d, n)
            } else {
                let p = if prec == 0 { 1 } else { prec };
                (digits(v, Some(p as usize)), p)
            };
            let nd = digs.d.len() as i32;
            let mut eprec = p;
            if eprec > nd && nd >= digs.dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            if nd > 0 && (exp < -4 || exp >= eprec) {
                if p > nd {
                    p = nd;
                }
                return fmt_e(neg, &digs, (p - 1).max(0) as usize, e);
            }
            if p > digs.dp {
                p = nd;
            }
            fmt_f(neg, &digs, (p - digs.dp).max(0) as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BELOW_1E23: f64 = 99_999_999_999_999_974_834_176.0;
    const ABOVE_1E23: f64 = 100_000_000_000_000_008_388_608.0;

    /// Go's own expectations: the `ftoatests` table of golang/go `src/strconv/ftoa_test.go`
    /// (commit 165ceb09f95fdcf76ebf894908b9a170d7b7524b), without the `b` and `x` formats.
    #[test]
    // The literals are Go's, digit for digit (one spells a subnormal boundary beyond f64's digits).
    #[allow(clippy::excessive_precision)]
    fn formats_as_go_ftoa_tests() {
        let cases: &[(f64, char, i32, &str)] = &[
            (1.0, 'e', 5, "1.00000e+00"),
            (1.0, 'f', 5, "1.00000"),
            (1.0, 'g', 5, "1"),
            (1.0, 'g', -1, "1"),
            (20.0, 'g', -1, "20"),
            (1234567.8, 'g', -1, "1.2345678e+06"),
            (200000.0, 'g', -1, "200000"),
            (2000000.0, 'g', -1, "2e+06"),
            (400.0, 'g', 2, "4e+02"),
            (40.0, 'g', 2, "40"),
            (4.0, 'g', 2, "4"),
            (0.4, 'g', 2, "0.4"),
            (0.04, 'g', 2, "0.04"),
            (0.004, 'g', 2, "0.004"),
            (0.0004, 'g', 2, "0.0004"),
            (0.00004, 'g', 2, "4e-05"),
            (0.000004, 'g', 2, "4e-06"),
            (0.0, 'e', 5, "0.00000e+00"),
            (0.0, 'f', 5, "0.00000"),
            (0.0, 'g', 5, "0"),
            (0.0, 'g', -1, "0"),
            (-1.0, 'e', 5, "-1.00000e+00"),
            (-1.0, 'f', 5, "-1.00000"),
            (-1.0, 'g', 5, "-1"),
            (-1.0, 'g', -1, "-1"),
            (12.0, 'e', 5, "1.20000e+01"),
            (12.0, 'f', 5, "12.00000"),
            (12.0, 'g', 5, "12"),
            (12.0, 'g', -1, "12"),
            (123456700.0, 'e', 5, "1.23457e+08"),
            (123456700.0, 'f', 5, "123456700.00000"),
            (123456700.0, 'g', 5, "1.2346e+08"),
            (123456700.0, 'g', -1, "1.234567e+08"),
            (1.2345e6, 'e', 5, "1.23450e+06"),
            (1.2345e6, 'f', 5, "1234500.00000"),
            (1.2345e6, 'g', 5, "1.2345e+06"),
            (1e23, 'e', 17, "9.99999999999999916e+22"),
            (1e23, 'f', 17, "99999999999999991611392.00000000000000000"),
            (1e23, 'g', 17, "9.9999999999999992e+22"),
            (1e23, 'e', -1, "1e+23"),
            (1e23, 'f', -1, "100000000000000000000000"),
            (1e23, 'g', -1, "1e+23"),
            (BELOW_1E23, 'e', 17, "9.99999999999999748e+22"),
            (
                BELOW_1E23,
                'f',
                17,
                "99999999999999974834176.00000000000000000",
            ),
            (BELOW_1E23, 'g', 17, "9.9999999999999975e+22"),
            (BELOW_1E23, 'e', -1, "9.999999999999997e+22"),
            (BELOW_1E23, 'f', -1, "99999999999999970000000"),
            (BELOW_1E23, 'g', -1, "9.999999999999997e+22"),
            (ABOVE_1E23, 'e', 17, "1.00000000000000008e+23"),
            (
                ABOVE_1E23,
                'f',
                17,
                "100000000000000008388608.00000000000000000",
            ),
            (ABOVE_1E23, 'g', 17, "1.0000000000000001e+23"),
            (ABOVE_1E23, 'e', -1, "1.0000000000000001e+23"),
            (ABOVE_1E23, 'f', -1, "100000000000000010000000"),
            (ABOVE_1E23, 'g', -1, "1.0000000000000001e+23"),
            (5e-324, 'g', -1, "5e-324"),
            (-5e-324, 'g', -1, "-5e-324"),
            (32.0, 'g', -1, "32"),
            (32.0, 'g', 0, "3e+01"),
            (f64::NAN, 'g', -1, "NaN"),
            (-f64::NAN, 'g', -1, "NaN"),
            (f64::INFINITY, 'g', -1, "+Inf"),
            (f64::NEG_INFINITY, 'g', -1, "-Inf"),
            (0.9, 'f', 1, "0.9"),
            (0.09, 'f', 1, "0.1"),
            (0.0999, 'f', 1, "0.1"),
            (0.05, 'f', 1, "0.1"),
            (0.05, 'f', 0, "0"),
            (0.5, 'f', 1, "0.5"),
            (0.5, 'f', 0, "0"),
            (1.5, 'f', 0, "2"),
            (2.2250738585072012e-308, 'g', -1, "2.2250738585072014e-308"),
            (2.2250738585072011e-308, 'g', -1, "2.225073858507201e-308"),
            (383260575764816448.0, 'f', 0, "383260575764816448"),
            (383260575764816448.0, 'g', -1, "3.8326057576481645e+17"),
            (498484681984085570.0, 'f', -1, "498484681984085570"),
            (-5.8339553793802237e+23, 'g', -1, "-5.8339553793802237e+23"),
        ];
        for &(v, fmt, prec, want) in cases {
            assert_eq!(format_float(v, fmt, prec), want, "{v} {fmt} {prec}");
        }
    }

    /// The shapes Prometheus' programs write: the query API's values and `le`/`quantile`
    /// labels, annotations, Alertmanager's `value` field, `promtool`'s expected/got lines.
    #[test]
    fn the_shapes_prometheus_writes() {
        assert_eq!(format_float(1e-7, 'f', -1), "0.0000001");
        assert_eq!(format_float(-0.0, 'f', -1), "-0");
        assert_eq!(format_float(-0.0, 'g', -1), "-0");
        assert_eq!(format_float(1.1, 'g', -1), "1.1");
        assert_eq!(format_float(1e21, 'g', -1), "1e+21");
        assert_eq!(format_float(123456.0, 'g', -1), "123456");
        assert_eq!(format_float(0.00001, 'g', -1), "1e-05");
        assert_eq!(format_float(0.0001, 'g', -1), "0.0001");
        assert_eq!(format_float(1.0, 'e', -1), "1e+00");
        assert_eq!(format_float(123.456, 'e', -1), "1.23456e+02");
        assert_eq!(format_float(1.5e-7, 'e', -1), "1.5e-07");
        assert_eq!(format_float(1e300, 'e', -1), "1e+300");
        assert_eq!(format_float(f64::INFINITY, 'e', -1), "+Inf");
        assert_eq!(format_float(3600.0, 'E', -1), "3.6E+03");
        assert_eq!(format_float(1e-7, 'G', -1), "1E-07");
    }

    /// The fast shortest forms equal Go's steps on numbers of every magnitude and sign.
    #[test]
    fn shortest_forms_equal_the_general_steps() {
        // A fixed xorshift sequence of bit patterns: reproducible, covering the whole range.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut checked = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            for fmt in ['f', 'e', 'E', 'g', 'G'] {
                if fmt == 'f' && v.abs() > 1e60 {
                    continue; // hundreds of digits: the general steps are slow, not different
                }
                assert_eq!(shortest(v, fmt), with_precision(v, fmt, -1), "{v:e} {fmt}");
            }
            checked += 1;
        }
        for v in [0.0, -0.0, 1.0, 1e-5, 1e-4, 999999.0, 1e6, 0.1, 1.0 / 3.0] {
            for fmt in ['f', 'e', 'g'] {
                assert_eq!(shortest(v, fmt), with_precision(v, fmt, -1), "{v} {fmt}");
            }
        }
        assert!(checked > 19_000, "{checked}");
    }
}

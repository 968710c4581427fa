//! Prometheus' and Go's duration texts: `model.Duration` (`1h30m`, `5m`, `1d`: rule `for`,
//! `promtool` test files and their messages) and Go's `time.Duration.String()` (`1m0s`, `1.5s`,
//! templates' `.String`).

use std::time::Duration;

/// Prometheus' `model.ParseDuration`: `0`, or units y, w, d, h, m, s, ms, each at most once and
/// in that order (`1h30m`, `5m`, `500ms`). Returns milliseconds.
pub fn parse_model_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("not a valid duration string: {s:?}");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let Some(i) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(bad());
        };
        let (_, mult) = UNITS[next_unit + i];
        next_unit += i + 1;
        total = n
            .checked_mul(mult)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(total)
}

/// `model.Duration.String()` of whole milliseconds: `1d1h`, `90s` as `1m30s`, `2w`, `0s`; years
/// and weeks only when exact. Go prints nothing for a negative duration, and so does this.
pub fn model_duration_string(ms: i64) -> String {
    if ms < 0 {
        return String::new();
    }
    promql_parser::util::display_duration(&Duration::from_millis(ms as u64))
}

/// Go's `Duration.String()`: `72h3m0.5s`, `1.5s`, `100ms`, `1µs`, `0s`.
pub fn go_duration_string(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".into();
        }
        let (unit, scale) = if u < 1_000 {
            ("ns", 1u64)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        let mut s = frac_string(u, scale);
        s.push_str(unit);
        if neg {
            s.insert(0, '-');
        }
        return s;
    }
    let secs_part = frac_string(u % 60_000_000_000, 1_000_000_000);
    let total_min = u / 60_000_000_000;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if total_min > 0 {
        let h = total_min / 60;
        let m = total_min % 60;
        if h > 0 {
            s.push_str(&format!("{h}h"));
        }
        s.push_str(&format!("{m}m"));
    }
    s.push_str(&secs_part);
    s.push('s');
    s
}

/// `v / scale` with the fraction's trailing zeros dropped.
fn frac_string(v: u64, scale: u64) -> String {
    let int = v / scale;
    let frac = v % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.to_string().len() - 1;
    let mut f = format!("{frac:0width$}");
    while f.ends_with('0') {
        f.pop();
    }
    format!("{int}.{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_prometheus_reads_them() {
        assert_eq!(parse_model_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_model_duration("5m"), Ok(300_000));
        assert_eq!(parse_model_duration("0"), Ok(0));
        assert_eq!(parse_model_duration("1d2h"), Ok(93_600_000));
        assert!(parse_model_duration("30m1h").is_err());
        assert!(parse_model_duration("5").is_err());
        assert!(parse_model_duration("1.5h").is_err());
        assert!(parse_model_duration("5x").is_err());
    }

    #[test]
    fn model_durations_print_as_prometheus() {
        assert_eq!(model_duration_string(0), "0s");
        assert_eq!(model_duration_string(86_400_000), "1d");
        assert_eq!(model_duration_string(90_000_000), "1d1h");
        assert_eq!(model_duration_string(14 * 86_400_000), "2w");
        assert_eq!(model_duration_string(90_000), "1m30s");
        assert_eq!(model_duration_string(365 * 86_400_000 + 1), "365d1ms");
    }

    #[test]
    fn go_durations_print_as_go() {
        assert_eq!(go_duration_string(1800 * 1_000_000_000), "30m0s");
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(3_720_010_000_000), "1h2m0.01s");
        assert_eq!(go_duration_string(-1_500_000_000), "-1.5s");
        assert_eq!(go_duration_string(100_000_000), "100ms");
        assert_eq!(go_duration_string(1_000), "1µs");
        assert_eq!(go_duration_string(90 * 3600 * 1_000_000_000), "90h0m0s");
    }
}

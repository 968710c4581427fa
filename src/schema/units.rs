//! Parsing of the config's unit-bearing scalars: durations (`5s`, `1h30m`, via humantime),
//! sizes in bytes (`16GiB`, `500GB`, `12.5MB`, or a plain number of bytes) and CPU core counts.
//! Each parser returns the message that validation puts after the key path.

use std::time::Duration;

use serde_yaml::Value;

/// A duration like `5s` or `1h30m`. A bare number is refused: its unit would be a guess.
pub fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration \"{s}\": {e}; write e.g. 5s, 1m30s, 2h")),
        Value::Number(n) => Err(format!(
            "invalid duration {n}: a duration needs a unit (e.g. {n}s)"
        )),
        other => Err(format!(
            "invalid duration: expected a string like 5s, got {}",
            kind(other)
        )),
    }
}

/// A number of bytes: a plain number, or a number with a decimal (kB, MB, GB, TB, PB: powers
/// of 1000) or binary (KiB, MiB, GiB, TiB, PiB: powers of 1024) unit. Units are read without
/// regard to case, and the trailing `B` may be left out (`16G` = `16GB`). Bits are not accepted:
/// 100 Mbit/s is `12.5MB`.
pub fn size(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("invalid size {n}")),
        Value::String(s) => parse_size(s),
        other => Err(format!(
            "invalid size: expected a number of bytes or a string like 16GiB, got {}",
            kind(other)
        )),
    }
}

pub fn parse_size(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t.find(|c: char| {
        !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')
    });
    // An `e` may be an exponent or the start of a unit ("EB" is not supported, so treat a
    // letter `e` followed by a digit or sign as exponent only).
    let (num, unit) = match split {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    };
    let n: f64 = num.parse().map_err(|_| {
        format!(
            "invalid size \"{s}\": expected a number with an optional unit, e.g. 16GiB or 500GB"
        )
    })?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0_f64.powi(2),
        "gi" | "gib" => 1024.0_f64.powi(3),
        "ti" | "tib" => 1024.0_f64.powi(4),
        "pi" | "pib" => 1024.0_f64.powi(5),
        _ => {
            return Err(format!(
                "invalid size \"{s}\": unknown unit \"{unit}\" (use B, kB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)"
            ))
        }
    };
    Ok(n * mult)
}

/// A number of CPU cores (fractions allowed).
pub fn cores(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("invalid number of cores {n}")),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| {
            format!("invalid number of cores \"{s}\": expected a number like 4 or 0.5")
        }),
        other => Err(format!(
            "invalid number of cores: expected a number, got {}",
            kind(other)
        )),
    }
}

/// True when `v` is the string `auto`.
pub fn is_auto(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.trim() == "auto")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Formats a byte count for messages: `16GiB`, `2TB`, or plain bytes.
pub fn fmt_bytes(b: f64) -> String {
    if b < 0.0 {
        return format!("-{}", fmt_bytes(-b));
    }
    // Largest unit first, either system, so 2e12 prints as 2TB and not as 1953125000KiB.
    const UNITS: [(&str, f64); 8] = [
        ("TiB", 1099511627776.0),
        ("TB", 1e12),
        ("GiB", 1073741824.0),
        ("GB", 1e9),
        ("MiB", 1048576.0),
        ("MB", 1e6),
        ("KiB", 1024.0),
        ("kB", 1e3),
    ];
    for (u, m) in UNITS {
        let q = b / m;
        if q >= 1.0 && (q * 100.0).fract().abs() < 1e-9 {
            return format!("{}{u}", trim_float(q));
        }
    }
    format!("{}B", trim_float(b))
}

/// `2`, `0.5`, `12.25`: no trailing zeros.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Physical memory from /proc/meminfo (`MemTotal`, in kB there).
pub fn detect_memory_bytes() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
    parse_meminfo(&text).ok_or_else(|| "no MemTotal line in /proc/meminfo".to_string())
}

fn parse_meminfo(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line
        .trim_start_matches("MemTotal:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// CPU cores this process may use (cgroup and affinity limits included).
pub fn detect_cpu_cores() -> Result<f64, String> {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .map_err(|e| format!("cannot detect the number of CPU cores: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size("16GiB").unwrap(),
            16.0 * 1024.0 * 1024.0 * 1024.0
        );
        assert_eq!(parse_size("500GB").unwrap(), 500e9);
        assert_eq!(parse_size("12.5 MB").unwrap(), 12.5e6);
        assert_eq!(parse_size("2tb").unwrap(), 2e12);
        assert_eq!(parse_size("1024").unwrap(), 1024.0);
        assert!(parse_size("16 GXB")
            .unwrap_err()
            .contains("unknown unit \"GXB\""));
        assert!(parse_size("100Mbit").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&Value::String("1m30s".into())).unwrap(),
            Duration::from_secs(90)
        );
        assert!(duration(&Value::Number(5.into()))
            .unwrap_err()
            .contains("needs a unit"));
        assert!(duration(&Value::String("5 parsecs".into())).is_err());
    }

    #[test]
    fn meminfo() {
        assert_eq!(
            parse_meminfo("MemTotal:       16318464 kB\nMemFree: 1 kB\n"),
            Some(16318464.0 * 1024.0)
        );
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn bytes_for_messages() {
        assert_eq!(fmt_bytes(16.0 * 1073741824.0), "16GiB");
        assert_eq!(fmt_bytes(2e12), "2TB");
        assert_eq!(fmt_bytes(12.5e6), "12.5MB");
        assert_eq!(fmt_bytes(100.0), "100B");
    }
}

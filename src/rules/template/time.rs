//! The pieces of Go's `time` package templates reach through `toTime`, `toDuration` and
//! `humanizeTimestamp`: `Time.String`, `Time.Format` with Go reference layouts
//! ("2006-01-02 15:04:05") and `Duration.String`, on the civil calendar of
//! [`crate::compat::calendar`]. Every time is UTC, as Prometheus makes it.

use crate::compat::calendar::{civil_from_days, days_from_civil};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A broken-down UTC time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    /// 0 = Sunday.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

fn civil(ns: i64) -> Civil {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let nanos = ns.rem_euclid(NANOS_PER_SEC) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month: month as u32,
        day: day as u32,
        hour: (sod / 3600) as u32,
        min: (sod / 60 % 60) as u32,
        sec: (sod % 60) as u32,
        nanos,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
    }
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's `Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub(crate) fn time_string(ns: i64) -> String {
    format(ns, "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// The layout elements Go recognises (`time/format.go`'s `nextStdChunk`).
#[derive(Clone, Copy, PartialEq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// Numeric zone forms: ISO (`Z` for UTC) or not, and their text for UTC.
    Zone(bool, &'static str),
    /// `.000` / `,000` (fixed) or `.999` (trailing zeros dropped) with n digits.
    Frac(char, bool, usize),
}

/// Splits a layout at its first reference-time element (Go's `nextStdChunk`): the text before
/// it, the element, and the rest.
fn next_std_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let mut i = 0;
    while i < layout.len() {
        if let Some((std, n)) = std_at(layout, i) {
            return (&layout[..i], Some(std), &layout[i + n..]);
        }
        i += layout[i..].chars().next().map(char::len_utf8).unwrap_or(1);
    }
    (layout, None, "")
}

/// The reference-time element starting at byte `i` of the layout, and its length.
fn std_at(layout: &str, i: usize) -> Option<(Std, usize)> {
    let b = layout.as_bytes();
    let rest = &layout[i..];
    match b[i] {
        b'J' => {
            if rest.starts_with("January") {
                Some((Std::LongMonth, 7))
            } else if rest.starts_with("Jan") {
                Some((Std::Month, 3))
            } else {
                None
            }
        }
        b'M' => {
            if rest.starts_with("Monday") {
                Some((Std::LongWeekDay, 6))
            } else if rest.starts_with("Mon") {
                Some((Std::WeekDay, 3))
            } else if rest.starts_with("MST") {
                Some((Std::TZ, 3))
            } else {
                None
            }
        }
        b'0' => match b.get(i + 1) {
            Some(b'1') => Some((Std::ZeroMonth, 2)),
            Some(b'2') => Some((Std::ZeroDay, 2)),
            Some(b'3') => Some((Std::ZeroHour12, 2)),
            Some(b'4') => Some((Std::ZeroMinute, 2)),
            Some(b'5') => Some((Std::ZeroSecond, 2)),
            Some(b'6') => Some((Std::Year, 2)),
            Some(b'0') if b.get(i + 2) == Some(&b'2') => Some((Std::ZeroYearDay, 3)),
            _ => None,
        },
        b'1' => {
            if b.get(i + 1) == Some(&b'5') {
                Some((Std::Hour, 2))
            } else {
                Some((Std::NumMonth, 1))
            }
        }
        b'2' => {
            if rest.starts_with("2006") {
                Some((Std::LongYear, 4))
            } else {
                Some((Std::Day, 1))
            }
        }
        b'_' => {
            if b.get(i + 1) == Some(&b'2') {
                if rest.starts_with("_2006") {
                    // "_2006" is "_" followed by a year.
                    None
                } else {
                    Some((Std::UnderDay, 2))
                }
            } else if rest.starts_with("__2") {
                Some((Std::UnderYearDay, 3))
            } else {
                None
            }
        }
        b'3' => Some((Std::Hour12, 1)),
        b'4' => Some((Std::Minute, 1)),
        b'5' => Some((Std::Second, 1)),
        b'P' if b.get(i + 1) == Some(&b'M') => Some((Std::PM, 2)),
        b'p' if b.get(i + 1) == Some(&b'm') => Some((Std::Pm, 2)),
        b'-' => {
            if rest.starts_with("-07:00:00") {
                Some((Std::Zone(false, "+00:00:00"), 9))
            } else if rest.starts_with("-0700") {
                Some((Std::Zone(false, "+0000"), 5))
            } else if rest.starts_with("-07:00") {
                Some((Std::Zone(false, "+00:00"), 6))
            } else if rest.starts_with("-07") {
                Some((Std::Zone(false, "+00"), 3))
            } else {
                None
            }
        }
        b'Z' => {
            if rest.starts_with("Z07:00:00") {
                Some((Std::Zone(true, ""), 9))
            } else if rest.starts_with("Z0700") {
                Some((Std::Zone(true, ""), 5))
            } else if rest.starts_with("Z07:00") {
                Some((Std::Zone(true, ""), 6))
            } else if rest.starts_with("Z07") {
                Some((Std::Zone(true, ""), 3))
            } else {
                None
            }
        }
        b'.' | b',' => {
            // ".000" or ".999" right after a digit-free position, ending at a non-digit.
            match b.get(i + 1) {
                Some(&c @ (b'0' | b'9')) => {
                    let mut j = i + 1;
                    while j < b.len() && b[j] == c {
                        j += 1;
                    }
                    if j < b.len() && b[j].is_ascii_digit() {
                        None
                    } else {
                        Some((Std::Frac(b[i] as char, c == b'0', j - i - 1), j - i))
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Go's `Time.Format(layout)` for a UTC time.
pub(crate) fn format(ns: i64, layout: &str) -> String {
    let t = civil(ns);
    let mut out = String::new();
    let mut layout = layout;
    loop {
        let (prefix, std, suffix) = next_std_chunk(layout);
        out.push_str(prefix);
        let Some(std) = std else { break };
        layout = suffix;
        let hour12 = match t.hour % 12 {
            0 => 12,
            h => h,
        };
        match std {
            Std::LongMonth => out.push_str(LONG_MONTHS[(t.month - 1) as usize]),
            Std::Month => out.push_str(&LONG_MONTHS[(t.month - 1) as usize][..3]),
            Std::NumMonth => out.push_str(&t.month.to_string()),
            Std::ZeroMonth => out.push_str(&format!("{:02}", t.month)),
            Std::LongWeekDay => out.push_str(LONG_DAYS[t.weekday as usize]),
            Std::WeekDay => out.push_str(&LONG_DAYS[t.weekday as usize][..3]),
            Std::Day => out.push_str(&t.day.to_string()),
            Std::UnderDay => out.push_str(&format!("{:>2}", t.day)),
            Std::ZeroDay => out.push_str(&format!("{:02}", t.day)),
            Std::UnderYearDay => out.push_str(&format!("{:>3}", t.yday)),
            Std::ZeroYearDay => out.push_str(&format!("{:03}", t.yday)),
            Std::Hour => out.push_str(&format!("{:02}", t.hour)),
            Std::Hour12 => out.push_str(&hour12.to_string()),
            Std::ZeroHour12 => out.push_str(&format!("{hour12:02}")),
            Std::Minute => out.push_str(&t.min.to_string()),
            Std::ZeroMinute => out.push_str(&format!("{:02}", t.min)),
            Std::Second => out.push_str(&t.sec.to_string()),
            Std::ZeroSecond => out.push_str(&format!("{:02}", t.sec)),
            Std::LongYear => {
                if t.year < 0 {
                    out.push_str(&format!("-{:04}", -t.year));
                } else {
                    out.push_str(&format!("{:04}", t.year));
                }
            }
            Std::Year => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
            Std::PM => out.push_str(if t.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if t.hour >= 12 { "pm" } else { "am" }),
            Std::TZ => out.push_str("UTC"),
            Std::Zone(iso, text) => out.push_str(if iso { "Z" } else { text }),
            Std::Frac(sep, fixed, n) => {
                let digits = format!("{:09}", t.nanos);
                let n = n.min(9);
                let mut d = digits[..n].to_string();
                if !fixed {
                    while d.ends_with('0') {
                        d.pop();
                    }
                }
                if !d.is_empty() {
                    out.push(sep);
                    out.push_str(&d);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_435_065_584_128_000_000; // 2015-06-23 13:19:44.128 UTC, a Tuesday

    #[test]
    fn time_string_matches_go() {
        assert_eq!(time_string(T), "2015-06-23 13:19:44.128 +0000 UTC");
        assert_eq!(time_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(time_string(-NANOS_PER_SEC), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(
            time_string(9_223_372_036 * NANOS_PER_SEC),
            "2262-04-11 23:47:16 +0000 UTC"
        );
    }

    #[test]
    fn layouts() {
        assert_eq!(format(T, "2006"), "2015");
        assert_eq!(
            format(T, "Mon Jan 2 15:04:05 2006"),
            "Tue Jun 23 13:19:44 2015"
        );
        assert_eq!(
            format(T, "Monday, 02-Jan-06 3:04PM MST"),
            "Tuesday, 23-Jun-15 1:19PM UTC"
        );
        assert_eq!(
            format(T, "2006-01-02T15:04:05.000Z07:00"),
            "2015-06-23T13:19:44.128Z"
        );
        assert_eq!(
            format(T, "January _2 002 .999999 -07:00"),
            "June 23 174 .128 +00:00"
        );
    }
}

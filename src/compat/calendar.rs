//! The civil (proleptic Gregorian, UTC) calendar on millisecond timestamps: month boundaries
//! (Storj's payout month, the simulated market's) and the day arithmetic behind every RFC 3339
//! text the program reads or writes.

use crate::clock::DAY_MS;

/// Milliseconds at 00:00 UTC on the first day of the month that contains `t_ms`.
pub fn month_start_ms(t_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
    days_from_civil(y, m, 1) * DAY_MS
}

/// Milliseconds at the start of the month after the one that contains `t_ms`.
pub fn next_month_start_ms(t_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY_MS
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian, days since 1970-01-01).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2006-01-02T15:04:05.000Z` in UTC: the layout Alertmanager's client library
/// writes, and the time of depin-orcha's own log lines.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn month_boundaries() {
        assert_eq!(month_start_ms(T0 + 5 * DAY_MS), T0);
        assert_eq!(next_month_start_ms(T0), T0 + 31 * DAY_MS);
        assert_eq!(next_month_start_ms(T0 - 1), T0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1),
            29
        );
    }
}

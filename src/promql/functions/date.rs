//! The date functions (`year`, `month`, `day_of_week`, `hour`, …): calendar fields of a
//! timestamp in UTC, on the civil calendar of [`crate::compat::calendar`].

use super::{finish, vector_arg, FnCall};
use crate::compat::calendar::{civil_from_days, days_from_civil};
use crate::labels::Labels;
use crate::promql::value::{InstantSample, Value};
use crate::promql::Error;

/// The value of a function of this family, or `None` when `c` names another.
pub(super) fn call(c: &FnCall<'_>) -> Result<Option<Value>, Error> {
    let v = match c.name {
        "days_in_month" => date(c, |d| days_in_month(d.year, d.month) as f64)?,
        "day_of_month" => date(c, |d| d.day as f64)?,
        "day_of_week" => date(c, |d| d.weekday as f64)?,
        "day_of_year" => date(c, |d| d.yday as f64)?,
        "hour" => date(c, |d| d.hour as f64)?,
        "minute" => date(c, |d| d.minute as f64)?,
        "month" => date(c, |d| d.month as f64)?,
        "year" => date(c, |d| d.year as f64)?,
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// A civil date-time in UTC, from Unix seconds.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// 0 = Sunday, as Go's `time.Weekday`.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month: month as u32,
        day: day as u32,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
    }
}

/// The number of days in month `m` (1-12) of year `y`.
fn days_in_month(y: i64, m: u32) -> u32 {
    let m = i64::from(m);
    let (next_y, next_m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(next_y, next_m, 1) - days_from_civil(y, m, 1)) as u32
}

/// Go's `int64(f)` conversion on amd64: NaN and out-of-range values become `i64::MIN`.
fn go_int64(f: f64) -> i64 {
    // 2^63 is exactly representable; everything in [-2^63, 2^63) converts.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

fn date(c: &FnCall<'_>, f: impl Fn(&Civil) -> f64) -> Result<Value, Error> {
    if c.args.is_empty() {
        let v = f(&civil(c.ts.div_euclid(1000)));
        return Ok(Value::Vector(vec![InstantSample {
            labels: Labels::empty(),
            t: c.ts,
            v,
        }]));
    }
    let out = vector_arg(c, 0)?
        .iter()
        .map(|s| InstantSample {
            labels: s.labels.without_metric_name(),
            t: c.ts,
            v: f(&civil(go_int64(s.v))),
        })
        .collect();
    finish(out)
}

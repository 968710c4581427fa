//! The realized gain of an applied reallocation: the host's earnings rate over the hold period
//! after it against what the host would have earned without it, from the tsdb through PromQL
//! (`sum(rate(depin_earnings_usd_total[hold])) * 3600`, USD per hour), compared with the gain
//! the plan expected. A reallocation that made things worse, by more than the rollback margin
//! and more than the market moves by itself over one hold, is undone by the controller.
//!
//! The measure is the whole host's rate, not the changed nodes' alone: moving resources
//! changes what the others can do with the rest, and the plan's own expected gain is a
//! host-wide number too.
//!
//! Markets move by themselves within an hour: a node whose demand peaks in the morning earns
//! a fifth less every evening hour whatever its allocation. "After against before" alone reads
//! that as the move's loss and undoes good moves every day. So the rate before is carried
//! forward by how the host's rate moved over the same hold at the same hour on the previous
//! days ([`BASELINE_DAYS`]; with fewer than two of those, the holds just before the move):
//! the mean of those log ratios is the market's own move, their standard deviation how much
//! it varies. A loss counts as worse only beyond both the margin and [`Z`] standard
//! deviations: what the market's own movement does not explain.

use serde::Serialize;

use crate::clock::DAY_MS;
use crate::promql::{parse, Engine, Value};
use crate::tsdb::Queryable;

/// The expression, with `{window}` for the hold period.
pub const EARNINGS_RATE_QUERY: &str = "sum(rate(depin_earnings_usd_total[{window}])) * 3600";

/// The earnings rate of the host in USD per hour over `window_ms` before `ts_ms`; None when the
/// tsdb has too little data for a rate there.
pub fn earnings_rate(
    engine: &Engine,
    db: &dyn Queryable,
    ts_ms: i64,
    window_ms: i64,
) -> Result<Option<f64>, String> {
    let q = EARNINGS_RATE_QUERY.replace("{window}", &format!("{}s", (window_ms / 1000).max(1)));
    let expr = parse(&q).map_err(|e| format!("{q}: {e}"))?;
    let r = engine
        .instant_query(db, &expr, ts_ms)
        .map_err(|e| format!("{q}: {e}"))?;
    Ok(match r.value {
        Value::Vector(v) => v.first().map(|s| s.v).filter(|v| v.is_finite()),
        Value::Scalar { v, .. } if v.is_finite() => Some(v),
        _ => None,
    })
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measurement {
    pub before_usd_per_hour: Option<f64>,
    pub after_usd_per_hour: Option<f64>,
    /// after − what the host would have earned without the move (the rate before carried
    /// forward by the market's own movement, [`Baseline`]).
    pub realized_gain_usd_per_hour: Option<f64>,
    pub expected_gain_usd_per_hour: Option<f64>,
    /// Whether it made things worse by more than the margin and the market's own movement.
    pub worse: bool,
    pub note: String,
}

/// Earlier days whose same hours show how the market moves by itself over a hold.
pub const BASELINE_DAYS: i64 = 7;
/// Holds just before the move used instead when fewer than two earlier days have data.
pub const BASELINE_HOLDS: i64 = 6;
/// How many standard deviations of the market's own movement a loss must exceed.
pub const Z: f64 = 2.0;

/// How the host's earnings rate moved by itself over one hold: the mean and the standard
/// deviation of ln(after / before) over the comparison windows, and which windows they were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    pub mean_log: f64,
    pub sd_log: f64,
    pub windows: usize,
    pub days: bool,
}

impl Baseline {
    /// No earlier window to compare with: the rate before is taken as is.
    pub const NONE: Baseline = Baseline {
        mean_log: 0.0,
        sd_log: 0.0,
        windows: 0,
        days: false,
    };

    /// From the log ratios of the comparison windows (fewer than two: none).
    pub fn from_log_ratios(x: &[f64], days: bool) -> Baseline {
        if x.len() < 2 {
            return Baseline::NONE;
        }
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        Baseline {
            mean_log: mean,
            sd_log: var.sqrt(),
            windows: x.len(),
            days,
        }
    }

    fn describe(&self) -> String {
        match (self.windows, self.days) {
            (0, _) => "no earlier hold to compare with".to_string(),
            (n, true) => format!("the same hours on {n} earlier days"),
            (n, false) => format!("the {n} holds before it"),
        }
    }
}

/// The market's own movement over a hold starting at `applied_ms`: the same window on each of
/// the [`BASELINE_DAYS`] days before when at least two have data, else the [`BASELINE_HOLDS`]
/// holds just before it.
pub fn baseline(engine: &Engine, db: &dyn Queryable, applied_ms: i64, hold_ms: i64) -> Baseline {
    let ratio = |start: i64| -> Option<f64> {
        let b = earnings_rate(engine, db, start, hold_ms).ok()??;
        let a = earnings_rate(engine, db, start + hold_ms, hold_ms).ok()??;
        (b > 0.0 && a > 0.0).then(|| (a / b).ln())
    };
    let days: Vec<f64> = (1..=BASELINE_DAYS)
        .filter_map(|k| ratio(applied_ms - k * DAY_MS))
        .collect();
    if days.len() >= 2 {
        return Baseline::from_log_ratios(&days, true);
    }
    let holds: Vec<f64> = (1..=BASELINE_HOLDS)
        .filter_map(|j| ratio(applied_ms - (j + 1) * hold_ms))
        .collect();
    Baseline::from_log_ratios(&holds, false)
}

/// Measures reallocation applied at `applied_ms` over `hold_ms` on each side; `margin` is the
/// fraction of the rate the host would have earned without it that a loss must exceed to
/// count as worse (and [`Z`] standard deviations of the market's own movement).
pub fn measure(
    engine: &Engine,
    db: &dyn Queryable,
    applied_ms: i64,
    hold_ms: i64,
    expected: Option<f64>,
    margin: f64,
) -> Measurement {
    let before = earnings_rate(engine, db, applied_ms, hold_ms);
    let after = earnings_rate(engine, db, applied_ms + hold_ms, hold_ms);
    let (before, after) = match (before, after) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            return Measurement {
                before_usd_per_hour: None,
                after_usd_per_hour: None,
                realized_gain_usd_per_hour: None,
                expected_gain_usd_per_hour: expected,
                worse: false,
                note: format!("cannot measure: {e}"),
            }
        }
    };
    let base = baseline(engine, db, applied_ms, hold_ms);
    judge(before, after, &base, expected, margin)
}

/// The verdict from the rates before and after and the market's own movement.
pub fn judge(
    before: Option<f64>,
    after: Option<f64>,
    base: &Baseline,
    expected: Option<f64>,
    margin: f64,
) -> Measurement {
    let (Some(b), Some(a)) = (before, after) else {
        return Measurement {
            before_usd_per_hour: before,
            after_usd_per_hour: after,
            realized_gain_usd_per_hour: None,
            expected_gain_usd_per_hour: expected,
            worse: false,
            note: "too little data in the tsdb around the change to measure it".to_string(),
        };
    };
    // What the host would have earned over the hold without the move.
    let without = b * base.mean_log.exp();
    let gain = a - without;
    let limit = (margin * without.abs()).max(without.abs() * (1.0 - (-Z * base.sd_log).exp()));
    let worse = gain < -limit;
    let exp = expected
        .map(|e| format!(" against {e:+.4} expected"))
        .unwrap_or_default();
    let verdict = if worse {
        format!("worse by more than {limit:.4} USD/h (the {:.1} % margin, {Z} σ of the market's own movement): rolling back", margin * 100.0)
    } else {
        format!(
            "within {limit:.4} USD/h (the {:.1} % margin, {Z} σ of the market's own movement)",
            margin * 100.0
        )
    };
    Measurement {
        before_usd_per_hour: Some(b),
        after_usd_per_hour: Some(a),
        realized_gain_usd_per_hour: Some(gain),
        expected_gain_usd_per_hour: expected,
        worse,
        note: format!(
            "{b:.4} → {a:.4} USD/h, {without:.4} without the move by {}: {gain:+.4} USD/h{exp}; {verdict}",
            base.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::tsdb::Db;

    const T0: i64 = 1_767_225_600_000;

    /// A host's earnings counter every minute from `T0` for `minutes`, earning `usd_per_hour(i)`
    /// in minute `i`.
    fn host(minutes: i64, usd_per_hour: impl Fn(i64) -> f64) -> Db {
        let db = Db::in_memory();
        let l = Labels::from_pairs(vec![
            (
                "__name__".to_string(),
                "depin_earnings_usd_total".to_string(),
            ),
            ("node".to_string(), "a".to_string()),
        ]);
        let mut v = 0.0;
        for i in 0..=minutes {
            db.append(&l, T0 + i * 60_000, v).unwrap();
            v += usd_per_hour(i) / 60.0;
        }
        db
    }

    /// A host earning 1 USD/h for two hours, then 0.5 USD/h.
    fn db() -> Db {
        host(4 * 60, |i| if i < 120 { 1.0 } else { 0.5 })
    }

    #[test]
    fn a_worse_move_is_seen() {
        let db = db();
        let e = Engine::default();
        let r = earnings_rate(&e, &db, T0 + 7_200_000, 3_600_000)
            .unwrap()
            .unwrap();
        assert!((r - 1.0).abs() < 0.02, "{r}");
        let m = measure(&e, &db, T0 + 7_200_000, 3_600_000, Some(0.1), 0.1);
        let g = m.realized_gain_usd_per_hour.unwrap();
        assert!((g + 0.5).abs() < 0.02, "{g}");
        assert!(m.worse, "{m:?}");
        assert!(m.note.contains("rolling back"), "{}", m.note);
        // A 60 % margin tolerates the loss of half.
        assert!(!measure(&e, &db, T0 + 7_200_000, 3_600_000, None, 0.6).worse);
    }

    #[test]
    fn no_data_is_not_worse() {
        let m = measure(
            &Engine::default(),
            &Db::in_memory(),
            T0,
            3_600_000,
            None,
            0.1,
        );
        assert!(!m.worse);
        assert_eq!(m.realized_gain_usd_per_hour, None);
    }

    /// A host whose rate follows a daily cycle, ±60 % around 1 USD/h with its peak at 06:00,
    /// for three days from `T0` (a UTC midnight); from `move_at` on it earns `factor` times that.
    fn cycle_db(move_at: i64, factor: f64) -> Db {
        host(3 * 24 * 60, |i| {
            let hour = (i as f64 / 60.0) % 24.0;
            let rate = 1.0 + 0.6 * (2.0 * std::f64::consts::PI * (hour - 6.0) / 24.0).cos();
            rate * if T0 + i * 60_000 >= move_at {
                factor
            } else {
                1.0
            }
        })
    }

    #[test]
    fn the_daily_cycle_is_not_read_as_the_moves_loss() {
        let e = Engine::default();
        // Moved on day 3 at 13:00, when the rate falls by about a seventh an hour.
        let at = T0 + 2 * DAY_MS + 13 * 3_600_000;
        let db = cycle_db(at, 1.0);
        let b = earnings_rate(&e, &db, at, 3_600_000).unwrap().unwrap();
        let a = earnings_rate(&e, &db, at + 3_600_000, 3_600_000)
            .unwrap()
            .unwrap();
        assert!(
            a < 0.85 * b,
            "the cycle alone loses more than the margin: {b} → {a}"
        );
        let base = baseline(&e, &db, at, 3_600_000);
        assert!(base.days && base.windows == 2, "{base:?}");
        let m = measure(&e, &db, at, 3_600_000, None, 0.1);
        assert!(!m.worse, "{m:?}");
        assert!(m.realized_gain_usd_per_hour.unwrap().abs() < 0.01, "{m:?}");
        assert!(
            m.note.contains("the same hours on 2 earlier days"),
            "{}",
            m.note
        );
        // The same hour, a move that costs a quarter: worse.
        let db = cycle_db(at, 0.75);
        let m = measure(&e, &db, at, 3_600_000, None, 0.1);
        assert!(m.worse, "{m:?}");
        assert!(m.note.contains("rolling back"), "{}", m.note);
    }

    #[test]
    fn a_market_that_moves_a_lot_by_itself_needs_a_larger_loss() {
        // Hold-to-hold moves of ±30 % around none: 2 σ is about half the rate.
        let wild = Baseline::from_log_ratios(&[0.3, -0.3, 0.3, -0.3], false);
        assert!(!judge(Some(1.0), Some(0.7), &wild, None, 0.1).worse);
        assert!(judge(Some(1.0), Some(0.4), &wild, None, 0.1).worse);
        // A calm market: the margin decides.
        let calm = Baseline::from_log_ratios(&[0.01, -0.01, 0.0], false);
        assert!(judge(Some(1.0), Some(0.85), &calm, None, 0.1).worse);
        assert!(!judge(Some(1.0), Some(0.95), &calm, None, 0.1).worse);
        // One comparison window gives no spread: none is used.
        assert_eq!(Baseline::from_log_ratios(&[0.5], true), Baseline::NONE);
    }
}

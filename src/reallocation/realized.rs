//! The realized gain of an applied reallocation: the host's earnings rate over the hold period
//! after it against the same length of time before it, from the tsdb through PromQL
//! (`sum(rate(depin_earnings_usd_total[hold])) * 3600`, USD per hour), compared with the gain
//! the plan expected. A reallocation that made things worse by more than the rollback margin
//! (a fraction of the earnings rate before it) is undone by the controller.
//!
//! The measure is the whole host's rate, not the changed nodes' alone: moving resources
//! changes what the others can do with the rest, and the plan's own expected gain is a
//! host-wide number too. Markets move by themselves in an hour, so one measurement is noisy;
//! the margin is what keeps noise from causing a rollback.

use serde::Serialize;

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
    /// after − before.
    pub realized_gain_usd_per_hour: Option<f64>,
    pub expected_gain_usd_per_hour: Option<f64>,
    /// Whether it made things worse by more than the margin.
    pub worse: bool,
    pub note: String,
}

/// Measures reallocation applied at `applied_ms` over `hold_ms` on each side; `margin` is the
/// fraction of the earnings rate before it that a loss must exceed to count as worse.
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
    let gain = match (before, after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let (worse, note) = match (gain, before) {
        (Some(g), Some(b)) => {
            let limit = margin * b.abs();
            let worse = g < -limit;
            let exp = expected
                .map(|e| format!(" against {e:+.4} expected"))
                .unwrap_or_default();
            let verdict = if worse {
                format!(
                    "worse by more than the {:.1} % margin ({limit:.4} USD/h): rolling back",
                    margin * 100.0
                )
            } else {
                format!("within the {:.1} % margin", margin * 100.0)
            };
            (
                worse,
                format!("{b:.4} → {:.4} USD/h: {g:+.4} USD/h{exp}; {verdict}", b + g),
            )
        }
        _ => (
            false,
            "too little data in the tsdb around the change to measure it".to_string(),
        ),
    };
    Measurement {
        before_usd_per_hour: before,
        after_usd_per_hour: after,
        realized_gain_usd_per_hour: gain,
        expected_gain_usd_per_hour: expected,
        worse,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::tsdb::Db;

    const T0: i64 = 1_767_225_600_000;

    /// A host earning 1 USD/h for two hours, then 0.5 USD/h.
    fn db() -> Db {
        let db = Db::in_memory();
        let l = Labels::from_pairs(vec![
            (
                "__name__".to_string(),
                "depin_earnings_usd_total".to_string(),
            ),
            ("node".to_string(), "a".to_string()),
        ]);
        let mut v = 0.0;
        for i in 0..=(4 * 60) {
            let t = T0 + i * 60_000;
            db.append(&l, t, v).unwrap();
            v += if i < 120 { 1.0 / 60.0 } else { 0.5 / 60.0 };
        }
        db
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
}

//! What Storj's payout answers mean, as readings for the earnings ledger (pure functions of an
//! answer and the clock; the `storj` kind makes the calls).
//!
//! `GET /api/sno/estimated-payout` (US cents, JSON numbers with float noise): per month,
//! `payout` is the estimate *after* the held-back part (storagenode's `SetPayout`: payout =
//! components − held), so the gross estimate is `payout + held`, the sum of the components.
//! Each answer gives two months: `currentMonth` (the UTC month by depin-orcha's clock) and
//! `previousMonth`, which stays open while it is the previous one, so the last hours of a month
//! are counted after midnight. Readings within the boundary guard of 00:00 UTC on the 1st are
//! held back: the node takes the month from its own clock, which may differ.
//!
//! `GET /api/heldamount/paystubs/{from}/{to}`: one paystub per satellite and month, arriving
//! after the month ended and possibly updated later; `paid` is in micro-USD (the web UI divides
//! by 10^4 to get cents).

use std::time::Duration;

use serde_json::Value as Json;

use super::decimal::Decimal;
use super::fields::decimal;
use super::reading::{FirstSight, OnDrop, Reading, StreamId, EARNINGS};
use crate::compat::calendar::{civil_from_days, month_start_ms, next_month_start_ms};

/// The token of Storj's amounts.
pub const TOKEN: &str = "USD";
/// Digits of a USD amount kept from a cent value (1e-4 cent): removes the float noise.
pub const USD_DIGITS: u32 = 6;

/// The gross estimate.
pub const GROSS: &str = "gross";
/// The held-back part.
pub const HELD: &str = "held";
/// The series of the held-back part.
pub const HELD_SERIES: &str = "storj_held_usd";
/// The series of paid amounts.
pub const PAID_SERIES: &str = "storj_paid_usd";

/// `YYYY-MM` of the UTC month containing `t_ms`.
pub fn period_of(t_ms: i64) -> String {
    let (y, m, _) = civil_from_days(t_ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}")
}

/// The month before the one of `t_ms`.
pub fn previous_period(t_ms: i64) -> String {
    period_of(month_start_ms(t_ms) - 1)
}

/// `YYYY-MM` of the month `back` months before the one of `t_ms`.
pub fn months_back(t_ms: i64, back: u32) -> String {
    let mut t = month_start_ms(t_ms);
    for _ in 0..back {
        t = month_start_ms(t - 1);
    }
    period_of(t)
}

/// Whether `t_ms` is within `guard` of a month boundary.
pub fn near_boundary(t_ms: i64, guard: Duration) -> bool {
    let g = guard.as_millis() as i64;
    t_ms - month_start_ms(t_ms) < g || next_month_start_ms(t_ms) - t_ms < g
}

/// A cent amount at `ptr` as exact USD (rounded to [`USD_DIGITS`]).
fn usd_at(v: &Json, ptr: &str) -> Result<Decimal, String> {
    match v.pointer(ptr).and_then(decimal) {
        Some(c) if !c.is_negative() => Ok(c.round_to(USD_DIGITS - 2).div_pow10(2)),
        _ => Err(ptr.to_string()),
    }
}

/// What the ledger needs to know besides the answer.
pub struct PayoutContext<'a> {
    pub now_ms: i64,
    /// Why the estimate dropped, when the dashboard says (a satellite that disqualified the
    /// node or left its list since the last reading).
    pub cause: Option<String>,
    pub confirm: Duration,
    pub guard: Duration,
    pub skipped: &'a mut Vec<String>,
}

/// The readings of one estimated-payout answer: gross and held for the current and the
/// previous month, and the close of the months before. None within the boundary guard.
pub fn estimated_payout(v: &Json, cx: PayoutContext<'_>) -> Vec<Reading> {
    if near_boundary(cx.now_ms, cx.guard) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let months = [
        ("currentMonth", period_of(cx.now_ms), FirstSight::Credit),
        (
            "previousMonth",
            previous_period(cx.now_ms),
            FirstSight::Baseline,
        ),
    ];
    for (key, period, first_sight) in months {
        let payout = usd_at(v, &format!("/{key}/payout"));
        let held = usd_at(v, &format!("/{key}/held"));
        let (payout, held) = match (payout, held) {
            (Ok(p), Ok(h)) => (p, h),
            (p, h) => {
                cx.skipped.extend(p.err());
                cx.skipped.extend(h.err());
                continue;
            }
        };
        let Some(gross) = payout.checked_add(held) else {
            cx.skipped.push(format!("/{key}/payout"));
            continue;
        };
        let cumulative = |stream: StreamId, value: Decimal| Reading::Cumulative {
            stream,
            period: period.clone(),
            value,
            cause: cx.cause.clone(),
            first_sight,
            on_drop: OnDrop::Correction,
            confirm: cx.confirm,
        };
        out.push(cumulative(StreamId::earnings(GROSS, TOKEN, ""), gross));
        let held_id = StreamId {
            name: HELD.into(),
            series: HELD_SERIES.into(),
            token: TOKEN.into(),
            network: String::new(),
        };
        out.push(cumulative(held_id, held));
    }
    for stream in [GROSS, HELD] {
        out.push(Reading::Close {
            stream: stream.into(),
            before: previous_period(cx.now_ms),
        });
    }
    out
}

/// The readings of a paystubs answer: `paid` per satellite and month, cumulative (a paystub
/// may be updated; a lower value is a correction). Paystubs older than `from` are closed.
pub fn paystubs(
    v: &Json,
    from: &str,
    confirm: Duration,
    skipped: &mut Vec<String>,
) -> Vec<Reading> {
    let list: &[Json] = match v {
        Json::Array(a) => a,
        // No paystub yet: the node answers null.
        Json::Null => &[],
        _ => {
            skipped.push("/paystubs".into());
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut satellites = std::collections::BTreeSet::new();
    for (i, p) in list.iter().enumerate() {
        let sat = p.get("satelliteId").and_then(Json::as_str);
        let period = p.get("period").and_then(Json::as_str);
        let paid = p.get("paid").and_then(decimal).filter(|d| !d.is_negative());
        let (Some(sat), Some(period), Some(paid)) = (sat, period, paid) else {
            skipped.push(format!("/{i}/paid"));
            continue;
        };
        let stream = format!("paid:{sat}");
        satellites.insert(stream.clone());
        out.push(Reading::Cumulative {
            stream: StreamId {
                name: stream,
                series: PAID_SERIES.into(),
                token: TOKEN.into(),
                network: String::new(),
            },
            period: period.to_string(),
            // micro-USD
            value: paid.div_pow10(6),
            cause: None,
            first_sight: FirstSight::Credit,
            on_drop: OnDrop::Correction,
            confirm,
        });
    }
    for s in satellites {
        out.push(Reading::Close {
            stream: s,
            before: from.to_string(),
        });
    }
    out
}

/// The series a reading counts into, for tests and the README's reference.
pub fn series_of(r: &Reading) -> Option<&str> {
    match r {
        Reading::Cumulative { stream, .. } | Reading::Credit { stream, .. } => {
            Some(if stream.series == EARNINGS {
                "depin_earnings_total"
            } else {
                stream.series.as_str()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID_JAN: i64 = 1_767_225_600_000 + 10 * 86_400_000; // 2026-01-11

    fn recorded(name: &str) -> Json {
        let p = format!(
            "{}/tests/fixtures/nodes/storj/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn value(rs: &[Reading], stream: &str, period: &str) -> Option<String> {
        rs.iter().find_map(|r| match r {
            Reading::Cumulative {
                stream: s,
                period: p,
                value,
                ..
            } if s.name == stream && p == period => Some(value.to_string()),
            _ => None,
        })
    }

    #[test]
    fn gross_is_payout_plus_held_in_exact_usd() {
        // storagenode v1.37.1, recorded: components 877.93 = payout 877.2199999999999 + held 0.71.
        let v = recorded("estimated-payout_v1.37.1.json");
        let mut skipped = Vec::new();
        let rs = estimated_payout(
            &v,
            PayoutContext {
                now_ms: MID_JAN,
                cause: None,
                confirm: Duration::from_secs(3600),
                guard: Duration::from_secs(900),
                skipped: &mut skipped,
            },
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(value(&rs, GROSS, "2026-01").as_deref(), Some("8.779300"));
        assert_eq!(value(&rs, HELD, "2026-01").as_deref(), Some("0.0071"));
        // previousMonth: 1077.31 + 0.855 = 1078.165 cents.
        assert_eq!(value(&rs, GROSS, "2025-12").as_deref(), Some("10.78165"));
        assert_eq!(value(&rs, HELD, "2025-12").as_deref(), Some("0.00855"));
        assert_eq!(series_of(&rs[1]), Some(HELD_SERIES));
    }

    #[test]
    fn nothing_within_the_boundary_guard() {
        let v = recorded("estimated-payout_v1.37.1.json");
        let feb = 1_769_904_000_000; // 2026-02-01T00:00:00Z
        for t in [feb - 60_000, feb + 60_000] {
            let mut skipped = Vec::new();
            let cx = PayoutContext {
                now_ms: t,
                cause: None,
                confirm: Duration::ZERO,
                guard: Duration::from_secs(900),
                skipped: &mut skipped,
            };
            assert!(estimated_payout(&v, cx).is_empty());
        }
        assert_eq!(period_of(feb), "2026-02");
        assert_eq!(previous_period(feb), "2026-01");
        assert_eq!(months_back(feb, 13), "2025-01");
    }

    #[test]
    fn paystubs_paid_in_micro_usd() {
        let v = recorded("paystubs_2020-03.constructed.json");
        let mut skipped = Vec::new();
        let rs = paystubs(&v, "2019-04", Duration::ZERO, &mut skipped);
        let sat = "paid:12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S";
        assert_eq!(value(&rs, sat, "2020-03").as_deref(), Some("0.000017"));
        assert!(paystubs(&Json::Null, "2019-04", Duration::ZERO, &mut skipped).is_empty());
        assert!(skipped.is_empty());
    }
}

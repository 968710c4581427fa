//! The gates a plan must pass before anything is touched. Each gate is a pure function of the
//! plan, the `gates` section of the optimization rules and facts from the durable history, and
//! returns a [`Verdict`] whose reason a person can read. A plan passes only when every gate
//! passes.
//!
//! Moves that would break the minimum hold or the maximum step are never dropped or clipped
//! here: the controller keeps held nodes out of the optimizer's inputs (they join
//! `Inputs::left_out`, so the solver finds the best split among the others and the plan's gain
//! is the gain of what will really be done) and the optimizer bounds every move by `max_step`.
//! A plan that still breaks either one (a manual allocation, an optimizer bug) is blocked whole,
//! since an edited plan would carry a gain nobody computed.
//!
//! Manual allocations (`POST /api/v1/reallocations` with a body) have no expected gain, so the
//! economic gates (improvement, confidence, payback) do not apply to them and say so; the
//! safety gates (rate limit, hold, step) do, unless the request says `force`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::clock::DAY_MS;
use crate::optimizer::{fmt_amount, Gates, Plan};
use crate::resources::Allocation;

/// The gates, in the order they are evaluated and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    MinImprovement,
    MinConfidence,
    MaxReallocationsPerHour,
    MaxReallocationsPerDay,
    // snake_case would write `per30`.
    #[serde(rename = "max_reallocations_per_30_days")]
    MaxReallocationsPer30Days,
    MinHold,
    MaxStep,
    PaybackWithinHold,
}

impl Gate {
    pub const ALL: [Gate; 8] = [
        Gate::MinImprovement,
        Gate::MinConfidence,
        Gate::MaxReallocationsPerHour,
        Gate::MaxReallocationsPerDay,
        Gate::MaxReallocationsPer30Days,
        Gate::MinHold,
        Gate::MaxStep,
        Gate::PaybackWithinHold,
    ];

    /// The `gate` label value and the key in `gates:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::MinImprovement => "min_improvement",
            Gate::MinConfidence => "min_confidence",
            Gate::MaxReallocationsPerHour => "max_reallocations_per_hour",
            Gate::MaxReallocationsPerDay => "max_reallocations_per_day",
            Gate::MaxReallocationsPer30Days => "max_reallocations_per_30_days",
            Gate::MinHold => "min_hold",
            Gate::MaxStep => "max_step",
            Gate::PaybackWithinHold => "payback_within_hold",
        }
    }
}

/// One gate's decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub gate: Gate,
    pub pass: bool,
    pub reason: String,
}

impl Verdict {
    fn new(gate: Gate, pass: bool, reason: impl Into<String>) -> Verdict {
        Verdict {
            gate,
            pass,
            reason: reason.into(),
        }
    }
}

/// Every gate's verdict on one plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateReport {
    pub pass: bool,
    pub verdicts: Vec<Verdict>,
}

impl GateReport {
    /// `gate: reason` of each gate that blocked.
    pub fn blocking(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| format!("{}: {}", v.gate.as_str(), v.reason))
            .collect()
    }
}

/// Which gates apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The optimizer's plan: every gate.
    Plan,
    /// An allocation an operator asked for: the safety gates only.
    Manual,
    /// An operator's allocation with `force`: no gate (pre-flight still runs).
    Forced,
}

/// What the gates know besides the plan, from the history and the rules.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub now_ms: i64,
    pub gates: &'a Gates,
    /// Per resource: the capacity, for a `max_step` written as a fraction.
    pub capacity: &'a Allocation,
    /// Reallocations that touched nodes in the last hour ([`reallocations_within`]).
    pub reallocations_last_hour: usize,
    /// Reallocations that touched nodes in the last 24 hours.
    pub reallocations_last_day: usize,
    /// When each reallocation of the last 30 days ended, oldest first
    /// ([`super::History::reallocation_times_since`]).
    pub reallocation_times_last_30_days: &'a [i64],
    /// When each node's allocation last changed ([`super::History::last_change`]).
    pub last_change: &'a BTreeMap<String, i64>,
    pub mode: Mode,
}

/// A time for messages: `2026-01-01T10:00:00Z`.
pub fn fmt_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A duration for messages, in whole seconds rounded up.
pub fn fmt_duration(ms: i64) -> String {
    // Whole seconds: "59m 12s" reads better than milliseconds.
    humantime::format_duration(Duration::from_secs((ms.max(0) as u64).div_ceil(1000))).to_string()
}

fn not_applicable(gate: Gate, mode: Mode) -> Option<Verdict> {
    match mode {
        Mode::Plan => None,
        Mode::Manual => Some(Verdict::new(
            gate,
            true,
            "not applied to a manual allocation (it has no expected gain)",
        )),
        Mode::Forced => Some(Verdict::new(gate, true, "skipped: the request says force")),
    }
}

/// `min_improvement`: the expected gain, as a fraction of the current earnings rate.
pub fn min_improvement(plan: &Plan, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::MinImprovement;
    if let Some(v) = not_applicable(g, mode) {
        return v;
    }
    let want = gates.min_improvement * 100.0;
    if plan.moves.is_empty() {
        return Verdict::new(g, false, "the plan changes nothing");
    }
    if plan.current_usd_per_hour <= 0.0 {
        let pass = plan.expected_gain_usd_per_hour > 0.0;
        return Verdict::new(
            g,
            pass,
            format!(
                "nothing is earned now, so the gain is not a percentage; expected gain {:+.4} USD/h {}",
                plan.expected_gain_usd_per_hour,
                if pass { "is positive" } else { "is not positive" }
            ),
        );
    }
    let got = plan.expected_gain_usd_per_hour / plan.current_usd_per_hour * 100.0;
    let pass = got >= want;
    Verdict::new(
        g,
        pass,
        format!(
            "expected gain {:+.4} USD/h is {got:.1} % of the {:.4} USD/h earned now; the minimum is {want:.1} %",
            plan.expected_gain_usd_per_hour, plan.current_usd_per_hour
        ),
    )
}

/// `min_confidence`: the plan's confidence (its least sure node).
pub fn min_confidence(plan: &Plan, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::MinConfidence;
    if let Some(v) = not_applicable(g, mode) {
        return v;
    }
    let pass = plan.confidence >= gates.min_confidence;
    Verdict::new(
        g,
        pass,
        format!(
            "confidence {:.2} {} the minimum {:.2}",
            plan.confidence,
            if pass { "meets" } else { "is below" },
            gates.min_confidence
        ),
    )
}

/// `max_reallocations_per_hour`: reallocations that touched nodes in the last hour, from the
/// durable history (a restart does not reset it).
pub fn max_reallocations_per_hour(done_last_hour: usize, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::MaxReallocationsPerHour;
    if mode == Mode::Forced {
        return Verdict::new(g, true, "skipped: the request says force");
    }
    let max = gates.max_reallocations_per_hour as usize;
    let pass = done_last_hour < max;
    Verdict::new(
        g,
        pass,
        format!(
            "{done_last_hour} reallocation(s) in the last hour; at most {max} per hour{}",
            if pass { "" } else { ": wait" }
        ),
    )
}

/// `max_reallocations_per_day`: reallocations that touched nodes in the last 24 hours, from
/// the durable history; unset: unchecked.
pub fn max_reallocations_per_day(done_last_day: usize, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::MaxReallocationsPerDay;
    if mode == Mode::Forced {
        return Verdict::new(g, true, "skipped: the request says force");
    }
    let Some(max) = gates.max_reallocations_per_day else {
        return Verdict::new(
            g,
            true,
            format!("{done_last_day} reallocation(s) in the last 24 hours; no daily limit set"),
        );
    };
    let pass = done_last_day < max as usize;
    Verdict::new(
        g,
        pass,
        format!(
            "{done_last_day} reallocation(s) in the last 24 hours; at most {max} per day{}",
            if pass { "" } else { ": wait" }
        ),
    )
}

/// The window `max_reallocations_per_30_days` counts in.
pub const BUDGET_WINDOW_MS: i64 = 30 * DAY_MS;

/// How many of `times` (the history's reallocation times) fall in the last `window_ms` before
/// `now_ms`: what the hourly, daily and 30-day limits count.
pub fn reallocations_within(times: &[i64], now_ms: i64, window_ms: i64) -> usize {
    times.iter().filter(|&&t| t > now_ms - window_ms).count()
}

/// `max_reallocations_per_30_days` as a token bucket, replayed from the history: it holds at
/// most `max_reallocations_per_day` reallocations (unset: a thirtieth of the month, at least
/// one), starts full 30 days before `now_ms`, refills evenly so that a full bucket plus 30
/// days of refill is the month's number, and each reallocation in `times` (oldest first)
/// spends one. Returns (saved now, bucket size, refill per day); None when the month is
/// unchecked.
///
/// Why a bucket and not only a count: a rolling 30-day count lets a controller spend the month
/// in its first days and then stand still; a daily count alone wastes the days nothing moved.
/// The bucket lets the quiet days' allowance be spent later (the learning days after a start,
/// a market that turns) up to one day's limit, and never more than the month's number in any
/// 30 days: tokens at the window's start are at most the bucket, 30 days add the rest, and a
/// reallocation needs a whole token.
pub fn saved_reallocations(times: &[i64], now_ms: i64, gates: &Gates) -> Option<(f64, f64, f64)> {
    let month = f64::from(gates.max_reallocations_per_30_days?);
    let size = gates
        .max_reallocations_per_day
        .map_or((month / 30.0).ceil().max(1.0), f64::from)
        .min(month);
    let per_ms = (month - size) / BUDGET_WINDOW_MS as f64;
    let mut tokens = size;
    let start = now_ms - BUDGET_WINDOW_MS;
    let mut last = start;
    for &t in times.iter().filter(|&&t| t > start && t <= now_ms) {
        tokens = (tokens + per_ms * (t - last) as f64).min(size) - 1.0;
        last = t;
    }
    tokens = (tokens + per_ms * (now_ms - last) as f64).min(size);
    Some((tokens, size, per_ms * DAY_MS as f64))
}

/// `max_reallocations_per_30_days`: a whole reallocation saved in the bucket
/// ([`saved_reallocations`]); unset: unchecked.
pub fn max_reallocations_per_30_days(
    times: &[i64],
    now_ms: i64,
    gates: &Gates,
    mode: Mode,
) -> Verdict {
    let g = Gate::MaxReallocationsPer30Days;
    if mode == Mode::Forced {
        return Verdict::new(g, true, "skipped: the request says force");
    }
    let done = reallocations_within(times, now_ms, BUDGET_WINDOW_MS);
    let Some((saved, size, per_day)) = saved_reallocations(times, now_ms, gates) else {
        return Verdict::new(
            g,
            true,
            format!("{done} reallocation(s) in the last 30 days; no 30-day limit set"),
        );
    };
    // A hair under one still counts as one: the refill is a float sum.
    let pass = saved >= 1.0 - 1e-9;
    let month = gates.max_reallocations_per_30_days.unwrap_or(0);
    let wait = if pass {
        String::new()
    } else if per_day > 0.0 {
        format!(
            ": wait {}",
            fmt_duration(((1.0 - saved) / per_day * DAY_MS as f64).ceil() as i64)
        )
    } else {
        ": wait".to_string()
    };
    Verdict::new(
        g,
        pass,
        format!(
            "{done} reallocation(s) in the last 30 days, {saved:.2} of {size} saved (refills {per_day:.2} a day, at most {month} in 30 days){wait}"
        ),
    )
}

/// `min_hold`: no node the plan changes may have changed less than `min_hold` ago.
pub fn min_hold(
    plan: &Plan,
    last_change: &BTreeMap<String, i64>,
    now_ms: i64,
    gates: &Gates,
    mode: Mode,
) -> Verdict {
    let g = Gate::MinHold;
    if mode == Mode::Forced {
        return Verdict::new(g, true, "skipped: the request says force");
    }
    let hold_ms = gates.min_hold.as_millis() as i64;
    let mut held = Vec::new();
    let mut nodes: Vec<&str> = plan.moves.iter().map(|m| m.node.as_str()).collect();
    nodes.dedup();
    for n in nodes {
        if let Some(&t) = last_change.get(n) {
            if now_ms < t + hold_ms {
                held.push(format!(
                    "{n} changed at {} and is held until {} ({} left)",
                    fmt_time(t),
                    fmt_time(t + hold_ms),
                    fmt_duration(t + hold_ms - now_ms)
                ));
            }
        }
    }
    if held.is_empty() {
        Verdict::new(
            g,
            true,
            format!(
                "no node in the plan changed within the last {}",
                fmt_duration(hold_ms)
            ),
        )
    } else {
        Verdict::new(g, false, held.join("; "))
    }
}

/// `max_step`: no move changes one resource of one node by more than the limit.
pub fn max_step(plan: &Plan, capacity: &Allocation, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::MaxStep;
    if mode == Mode::Forced {
        return Verdict::new(g, true, "skipped: the request says force");
    }
    let mut over = Vec::new();
    let mut any_limit = false;
    for m in &plan.moves {
        let Some(step) = gates.max_step.get(m.resource) else {
            continue;
        };
        any_limit = true;
        let limit = step.limit(capacity.get(m.resource));
        let size = (m.to - m.from).abs();
        // A hair over from float rounding in the solver is not a violation.
        if size > limit * (1.0 + 1e-9) + 1e-9 {
            over.push(format!(
                "{} {} moves {} (limit {})",
                m.node,
                m.resource.key(),
                fmt_amount(m.resource, size),
                fmt_amount(m.resource, limit)
            ));
        }
    }
    if !over.is_empty() {
        Verdict::new(g, false, over.join("; "))
    } else if any_limit {
        Verdict::new(g, true, "every move is within its limit")
    } else {
        Verdict::new(g, true, "no max_step is set")
    }
}

/// `payback_within_hold`: the gain over the hold period pays the switching cost back.
pub fn payback_within_hold(plan: &Plan, gates: &Gates, mode: Mode) -> Verdict {
    let g = Gate::PaybackWithinHold;
    if let Some(v) = not_applicable(g, mode) {
        return v;
    }
    let Some(factor) = gates.payback_within_hold else {
        return Verdict::new(g, true, "not checked (payback_within_hold: false)");
    };
    let returned = plan.expected_gain_usd_per_hour * plan.hold_hours;
    let pass = plan.pays_back(factor);
    Verdict::new(
        g,
        pass,
        format!(
            "over the {:.2} h hold the gain returns {:.4} USD against {:.4} USD of switching cost × {factor}",
            plan.hold_hours, returned, plan.switching_cost_usd
        ),
    )
}

/// Every gate on `plan`.
pub fn evaluate(plan: &Plan, ctx: &Context<'_>) -> GateReport {
    let verdicts = vec![
        min_improvement(plan, ctx.gates, ctx.mode),
        min_confidence(plan, ctx.gates, ctx.mode),
        max_reallocations_per_hour(ctx.reallocations_last_hour, ctx.gates, ctx.mode),
        max_reallocations_per_day(ctx.reallocations_last_day, ctx.gates, ctx.mode),
        max_reallocations_per_30_days(
            ctx.reallocation_times_last_30_days,
            ctx.now_ms,
            ctx.gates,
            ctx.mode,
        ),
        min_hold(plan, ctx.last_change, ctx.now_ms, ctx.gates, ctx.mode),
        max_step(plan, ctx.capacity, ctx.gates, ctx.mode),
        payback_within_hold(plan, ctx.gates, ctx.mode),
    ];
    GateReport {
        pass: verdicts.iter().all(|v| v.pass),
        verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::HOUR_MS;
    use crate::optimizer::{Move, Step};
    use crate::resources::Resource;

    const T0: i64 = 1_767_225_600_000;

    fn plan(gain: f64, now: f64, confidence: f64) -> Plan {
        let a = |c: f64| Allocation {
            cpu_cores: c,
            ..Default::default()
        };
        Plan {
            ts_ms: T0,
            current: [("storj".into(), a(4.0)), ("golem".into(), a(2.0))].into(),
            target: [("storj".into(), a(2.0)), ("golem".into(), a(4.0))].into(),
            moves: vec![
                Move {
                    node: "storj".into(),
                    resource: Resource::CpuCores,
                    from: 4.0,
                    to: 2.0,
                    expected_gain_usd_per_hour: -0.01,
                    confidence,
                },
                Move {
                    node: "golem".into(),
                    resource: Resource::CpuCores,
                    from: 2.0,
                    to: 4.0,
                    expected_gain_usd_per_hour: gain + 0.01,
                    confidence,
                },
            ],
            current_usd_per_hour: now,
            target_usd_per_hour: now + gain,
            expected_gain_usd_per_hour: gain,
            improvement: if now > 0.0 { gain / now } else { 0.0 },
            confidence,
            switching_cost_usd: 0.05,
            hold_hours: 1.0,
            roi: Some((gain - 0.05) / 0.05),
            left_out: Vec::new(),
            explanation: Vec::new(),
        }
    }

    fn ctx<'a>(
        gates: &'a Gates,
        cap: &'a Allocation,
        last: &'a BTreeMap<String, i64>,
        n: usize,
    ) -> Context<'a> {
        Context {
            now_ms: T0,
            gates,
            capacity: cap,
            reallocations_last_hour: n,
            reallocations_last_day: n,
            reallocation_times_last_30_days: &[],
            last_change: last,
            mode: Mode::Plan,
        }
    }

    const CAP: Allocation = Allocation {
        cpu_cores: 8.0,
        memory_bytes: 16e9,
        disk_bytes: 4e12,
        bandwidth_bytes_per_second: 1e8,
    };

    #[test]
    fn the_daily_limit_counts_24_hours_and_is_off_when_unset() {
        let last = BTreeMap::new();
        let mut g = Gates::default();
        let c = Context {
            reallocations_last_hour: 0,
            reallocations_last_day: 2,
            ..ctx(&g, &CAP, &last, 0)
        };
        let v = evaluate(&plan(0.1, 1.0, 0.9), &c);
        assert!(v.pass, "unset: unchecked, {:?}", v.blocking());
        g.max_reallocations_per_day = Some(2);
        let c = Context {
            reallocations_last_hour: 0,
            reallocations_last_day: 2,
            ..ctx(&g, &CAP, &last, 0)
        };
        let v = evaluate(&plan(0.1, 1.0, 0.9), &c);
        assert_eq!(
            v.blocking(),
            ["max_reallocations_per_day: 2 reallocation(s) in the last 24 hours; at most 2 per day: wait"]
        );
        let c = Context {
            reallocations_last_day: 1,
            ..c
        };
        assert!(evaluate(&plan(0.1, 1.0, 0.9), &c).pass);
        let forced = Context {
            mode: Mode::Forced,
            reallocations_last_day: 9,
            ..c
        };
        assert!(max_reallocations_per_day(9, &g, forced.mode).pass);
    }

    #[test]
    fn the_30_day_budget_saves_quiet_days_up_to_the_daily_limit() {
        let mut g = Gates::default();
        let v = max_reallocations_per_30_days(&[T0 - 1000], T0, &g, Mode::Plan);
        assert!(v.pass);
        assert_eq!(
            v.reason,
            "1 reallocation(s) in the last 30 days; no 30-day limit set"
        );
        g.max_reallocations_per_day = Some(4);
        g.max_reallocations_per_30_days = Some(60);
        // Nothing done: the bucket is full, four may go at once.
        let (saved, size, per_day) = saved_reallocations(&[], T0, &g).unwrap();
        assert_eq!((saved, size), (4.0, 4.0));
        assert!((per_day - 56.0 / 30.0).abs() < 1e-12, "{per_day}");
        // Four in the last two hours: empty, and the next one waits for the refill
        // (1 / (56/30) day = 12 h 51 m 26 s, less the two hours since the first).
        let four: Vec<i64> = (0..4)
            .map(|i| T0 - 2 * HOUR_MS - i * 60_000)
            .rev()
            .collect();
        let v = max_reallocations_per_30_days(&four, T0, &g, Mode::Plan);
        assert!(!v.pass);
        assert!(
            v.reason
                .starts_with("4 reallocation(s) in the last 30 days, 0.16 of 4 saved (refills 1.87 a day, at most 60 in 30 days): wait 10h"),
            "{}",
            v.reason
        );
        assert!(max_reallocations_per_30_days(&four, T0 + 11 * HOUR_MS, &g, Mode::Plan).pass);
        assert!(max_reallocations_per_30_days(&four, T0, &g, Mode::Forced).pass);
        // Without a daily limit the bucket is a thirtieth of the month.
        g.max_reallocations_per_day = None;
        assert_eq!(saved_reallocations(&[], T0, &g).unwrap().1, 2.0);
    }

    /// A controller that takes every reallocation the budget allows, every 5 minutes for 90
    /// days: never more than the month's number in any 30 days, never more than the bucket
    /// in a burst, and close to the month's number in each 30 days (the pacing wastes little).
    #[test]
    fn the_30_day_budget_holds_in_every_window_for_a_greedy_spender() {
        let g = Gates {
            max_reallocations_per_day: Some(4),
            max_reallocations_per_30_days: Some(60),
            ..Gates::default()
        };
        let mut done: Vec<i64> = Vec::new();
        let mut t = T0;
        while t < T0 + 90 * DAY_MS {
            let from = done.partition_point(|&d| d <= t - BUDGET_WINDOW_MS);
            if max_reallocations_per_30_days(&done[from..], t, &g, Mode::Plan).pass {
                done.push(t);
            }
            t += 5 * 60_000;
        }
        for (i, &d) in done.iter().enumerate() {
            let in_month = done[i..]
                .iter()
                .take_while(|&&o| o < d + BUDGET_WINDOW_MS)
                .count();
            assert!(
                in_month <= 60,
                "{in_month} in the 30 days from {}",
                fmt_time(d)
            );
            let in_day = done[i..].iter().take_while(|&&o| o < d + DAY_MS).count();
            assert!(in_day <= 5, "{in_day} in the day from {}", fmt_time(d));
        }
        let first = done.iter().filter(|&&d| d < T0 + BUDGET_WINDOW_MS).count();
        assert!(first >= 58, "only {first} in the first 30 days");
        let m = 5 * 60_000;
        assert_eq!(done[..4], [T0, T0 + m, T0 + 2 * m, T0 + 3 * m]);
        assert!(done[4] > T0 + 12 * HOUR_MS, "{}", fmt_time(done[4]));
    }

    #[test]
    fn a_good_plan_passes_every_gate() {
        let g = Gates::default();
        let last = BTreeMap::new();
        let r = evaluate(&plan(0.1, 1.0, 0.9), &ctx(&g, &CAP, &last, 0));
        assert!(r.pass, "{:?}", r.blocking());
        assert_eq!(r.verdicts.len(), 8);
    }

    #[test]
    fn each_gate_blocks_on_its_own_and_says_why() {
        let g = Gates {
            max_step: crate::resources::Resources {
                cpu_cores: Some(Step::Fraction(0.125)),
                ..Default::default()
            },
            ..Gates::default()
        };
        let last: BTreeMap<String, i64> = [("golem".to_string(), T0 - 20 * 60_000)].into();
        // 4 % improvement, confidence 0.5, 4 done this hour, golem changed 20 min ago, a
        // 2-core move against a 1-core limit, and 0.04 USD back for 0.05 USD of cost.
        let r = evaluate(&plan(0.04, 1.0, 0.5), &ctx(&g, &CAP, &last, 4));
        assert!(!r.pass);
        let b = r.blocking();
        assert_eq!(b.len(), 6, "{b:#?}");
        assert_eq!(
            b[0],
            "min_improvement: expected gain +0.0400 USD/h is 4.0 % of the 1.0000 USD/h earned now; the minimum is 5.0 %"
        );
        assert_eq!(
            b[1],
            "min_confidence: confidence 0.50 is below the minimum 0.70"
        );
        assert_eq!(
            b[2],
            "max_reallocations_per_hour: 4 reallocation(s) in the last hour; at most 4 per hour: wait"
        );
        assert_eq!(
            b[3],
            "min_hold: golem changed at 2025-12-31T23:40:00Z and is held until 2026-01-01T00:40:00Z (40m left)"
        );
        assert_eq!(
            b[4],
            "max_step: storj cpu_cores moves 2 cores (limit 1 cores); golem cpu_cores moves 2 cores (limit 1 cores)"
        );
        assert!(b[5].starts_with("payback_within_hold: over the 1.00 h hold the gain returns 0.0400 USD against 0.0500 USD"));
    }

    #[test]
    fn the_hold_ends_exactly_after_min_hold() {
        let g = Gates::default();
        let p = plan(0.1, 1.0, 0.9);
        let last: BTreeMap<String, i64> = [("storj".to_string(), T0 - 3_600_000 + 1)].into();
        assert!(!min_hold(&p, &last, T0, &g, Mode::Plan).pass);
        let last: BTreeMap<String, i64> = [("storj".to_string(), T0 - 3_600_000)].into();
        assert!(min_hold(&p, &last, T0, &g, Mode::Plan).pass);
    }

    #[test]
    fn manual_and_forced_modes() {
        let g = Gates::default();
        let last: BTreeMap<String, i64> = [("golem".to_string(), T0 - 60_000)].into();
        let p = plan(0.0, 1.0, 0.0);
        let mut c = ctx(&g, &CAP, &last, 0);
        c.mode = Mode::Manual;
        let r = evaluate(&p, &c);
        // Only the hold blocks a manual allocation here.
        assert_eq!(r.blocking().len(), 1, "{:?}", r.blocking());
        assert!(r.blocking()[0].starts_with("min_hold: golem"));
        c.mode = Mode::Forced;
        assert!(evaluate(&p, &c).pass);
    }

    #[test]
    fn nothing_earned_now() {
        let g = Gates::default();
        assert!(min_improvement(&plan(0.1, 0.0, 1.0), &g, Mode::Plan).pass);
        assert!(!min_improvement(&plan(0.0, 0.0, 1.0), &g, Mode::Plan).pass);
        let mut empty = plan(0.0, 1.0, 1.0);
        empty.moves.clear();
        assert_eq!(
            min_improvement(&empty, &g, Mode::Plan).reason,
            "the plan changes nothing"
        );
    }
}

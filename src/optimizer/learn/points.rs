//! One node's hourly data points, built from its own series: the growth of its earnings
//! counter (in tokens), the share of the hour it was up, its usage, and the allocation in
//! force. An hour in which the allocation changed, or the `settle` hours after, is kept but
//! marked: restarts and counters that lag make it say nothing about either allocation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::HOUR_MS;
use crate::resources::{Allocation, Resource, Resources};

/// Why a point is not used to learn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// The allocation changed in the hour or less than `settle` before it.
    Settle,
    /// The node was up less than half of the hour.
    Down,
}

/// One node's hour `[hour, hour + 1)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Hours since the Unix epoch (UTC) of the hour's start.
    pub hour: i64,
    /// Tokens earned in the hour (the counter's increase; resets handled).
    pub tokens: f64,
    /// Share of the hour the node was up, 0–1.
    pub up: f64,
    /// The allocation in force at the hour's start.
    pub allocation: Allocation,
    /// Mean usage per resource over the hour, where reported.
    pub usage_avg: Resources<Option<f64>>,
    /// Peak usage per resource over the hour, where reported.
    pub usage_max: Resources<Option<f64>>,
    pub excluded: Option<Exclusion>,
}

/// The series one node's points are made from, timestamps in milliseconds, ascending.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The earnings counter of the node's token (tokens since some start).
    pub earnings: Vec<(i64, f64)>,
    /// `up` (1 up, 0 down) samples.
    pub up: Vec<(i64, f64)>,
    /// Usage samples per resource.
    pub usage: BTreeMap<Resource, Vec<(i64, f64)>>,
    /// The allocation from each time on: the first entry is the one in force before.
    pub allocations: Vec<(i64, Allocation)>,
}

/// The points of every full hour whose start is in `[from_hour, to_hour)`.
pub fn hourly(series: &Series, from_hour: i64, to_hour: i64, settle_hours: i64) -> Vec<Point> {
    let mut out = Vec::new();
    for hour in from_hour..to_hour {
        let (t0, t1) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
        let Some(tokens) = increase(&series.earnings, t0, t1) else {
            continue;
        };
        let ups: Vec<f64> = within(&series.up, t0, t1).map(|(_, v)| v).collect();
        let up = if ups.is_empty() {
            0.0
        } else {
            ups.iter().sum::<f64>() / ups.len() as f64
        };
        let allocation = in_force(&series.allocations, t0);
        let changed = series
            .allocations
            .iter()
            .skip(1)
            .any(|(t, _)| *t >= t0 - settle_hours * HOUR_MS && *t < t1);
        let mut usage_avg = Resources::<Option<f64>>::default();
        let mut usage_max = Resources::<Option<f64>>::default();
        for (r, samples) in &series.usage {
            let v: Vec<f64> = within(samples, t0, t1).map(|(_, v)| v).collect();
            if !v.is_empty() {
                usage_avg.set(*r, Some(v.iter().sum::<f64>() / v.len() as f64));
                usage_max.set(*r, Some(v.iter().copied().fold(f64::MIN, f64::max)));
            }
        }
        let excluded = if changed {
            Some(Exclusion::Settle)
        } else if up < 0.5 {
            Some(Exclusion::Down)
        } else {
            None
        };
        out.push(Point {
            hour,
            tokens,
            up,
            allocation,
            usage_avg,
            usage_max,
            excluded,
        });
    }
    out
}

/// Samples with `t0 < t ≤ t1`.
fn within(s: &[(i64, f64)], t0: i64, t1: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
    let start = s.partition_point(|(t, _)| *t <= t0);
    s[start..]
        .iter()
        .copied()
        .take_while(move |(t, _)| *t <= t1)
}

/// The counter's increase over `(t0, t1]` from the last sample at or before `t0`, a drop
/// counted as a reset (the new value is the increase since it). None without a sample at or
/// before `t0` or without one in the hour.
fn increase(s: &[(i64, f64)], t0: i64, t1: i64) -> Option<f64> {
    let start = s.partition_point(|(t, _)| *t <= t0);
    let mut prev = s.get(start.checked_sub(1)?)?.1;
    let mut total = 0.0;
    let mut any = false;
    for (_, v) in within(s, t0, t1) {
        total += if v >= prev { v - prev } else { v };
        prev = v;
        any = true;
    }
    any.then_some(total)
}

/// The allocation in force at `t`.
fn in_force(allocations: &[(i64, Allocation)], t: i64) -> Allocation {
    let i = allocations.partition_point(|(at, _)| *at <= t);
    allocations
        .get(i.saturating_sub(1))
        .map(|(_, a)| *a)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(c: f64) -> Allocation {
        Allocation {
            cpu_cores: c,
            ..Default::default()
        }
    }

    #[test]
    fn the_counter_growth_up_share_usage_and_settle_make_the_points() {
        let minute = 60_000;
        let mut s = Series::default();
        let mut v = 0.0;
        for m in 0..=4 * 60 {
            // 1 token per minute; the counter resets at minute 150.
            if m == 150 {
                v = 0.0;
            }
            v += 1.0;
            s.earnings.push((m * minute, v));
            // Down for the whole fourth hour.
            s.up.push((m * minute, if m > 180 { 0.0 } else { 1.0 }));
            s.usage
                .entry(Resource::CpuCores)
                .or_default()
                .push((m * minute, if m % 60 == 30 { 2.0 } else { 1.0 }));
        }
        s.allocations = vec![(0, cores(2.0)), (90 * minute, cores(3.0))];
        let p = hourly(&s, 0, 4, 1);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].tokens, 60.0);
        assert_eq!(p[0].excluded, None);
        assert_eq!(p[0].allocation, cores(2.0));
        assert_eq!(p[0].usage_max.cpu_cores, Some(2.0));
        assert!((p[0].usage_avg.cpu_cores.unwrap() - 61.0 / 60.0).abs() < 1e-9);
        // Changed at 1:30: hours 1 and 2 (settle 1 h) are marked; the reset costs nothing.
        assert_eq!(p[1].excluded, Some(Exclusion::Settle));
        assert_eq!(p[2].excluded, Some(Exclusion::Settle));
        assert_eq!(p[2].tokens, 60.0);
        assert_eq!(p[2].allocation, cores(3.0));
        assert_eq!(p[3].excluded, Some(Exclusion::Down));
        assert!(p[3].up < 0.5);
    }

    #[test]
    fn an_hour_without_a_baseline_is_no_point() {
        let s = Series {
            earnings: vec![(3_600_000 + 1, 1.0), (7_200_000, 2.0)],
            ..Default::default()
        };
        assert!(hourly(&s, 1, 2, 1).is_empty());
        assert_eq!(hourly(&s, 2, 3, 1).len(), 0);
    }
}

//! Demand from usage, censoring-aware. Usage pinned at the allocation says only that demand
//! was at least the allocation (a right-censored reading), never what it was: a node starved
//! of a resource uses all of it, and its usage is its allocation, not its demand. The demand
//! distribution is the Kaplan–Meier estimate over exact and censored readings; a cap is its
//! high quantile, and there is no cap while the censored readings leave the top unknown.
//!
//! Usage below the allocation is demand only if it does not follow the allocation: a node
//! that uses a steady share of whatever it is given (a process that sizes its buffers, its
//! worker pool or its cache to its limit) shows usage below the allocation at every level,
//! and a cap drawn from it would say "no more than now" wherever it stands. So a cap needs
//! unpinned readings at allocations at least [`SPREAD`] apart, and the elasticity of usage
//! to allocation between them (the slope of ln usage on ln allocation) below
//! [`MAX_ELASTICITY`]: demand-limited usage stays put when the allocation grows.

use super::points::Point;
use crate::resources::Resource;

/// Peak usage at or above this share of the allocation is pinned.
pub const PINNED: f64 = 0.95;
/// The cap is this quantile of the demand distribution.
const CAP_QUANTILE: f64 = 0.95;
/// The least ratio of the highest to the lowest allocation among unpinned readings for the
/// elasticity of usage to be told.
pub const SPREAD: f64 = 1.5;
/// Usage whose elasticity to the allocation is at least this follows the allocation: it says
/// nothing of demand.
pub const MAX_ELASTICITY: f64 = 0.5;

/// What the hours say about demand for `r`.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    /// Hours with a usage reading.
    pub hours: usize,
    /// Hours pinned at the allocation (demand ≥ allocation).
    pub pinned: usize,
    /// The elasticity of unpinned usage to the allocation (None: the readings do not span
    /// [`SPREAD`]).
    pub elasticity: Option<f64>,
    /// The demand the resource is worth up to (None: not known to stop anywhere).
    pub cap: Option<f64>,
}

/// The demand for `r` from `points` (usually the last 7 days).
pub fn demand(points: &[Point], r: Resource) -> Demand {
    // (value, exact): exact at the mean usage when not pinned, censored at the allocation;
    // beside it, the unpinned readings' (allocation, mean usage) for the elasticity.
    let mut obs: Vec<(f64, bool)> = Vec::new();
    let mut unpinned: Vec<(f64, f64)> = Vec::new();
    for p in points.iter().filter(|p| p.excluded.is_none()) {
        let (Some(avg), Some(max)) = (p.usage_avg.get(r), p.usage_max.get(r)) else {
            continue;
        };
        let a = p.allocation.get(r);
        if max >= PINNED * a {
            obs.push((a, false));
        } else {
            obs.push((avg, true));
            unpinned.push((a, avg));
        }
    }
    let hours = obs.len();
    let pinned = obs.iter().filter(|(_, exact)| !exact).count();
    let elasticity = elasticity(&unpinned);
    let demand_limited = elasticity.is_some_and(|e| e < MAX_ELASTICITY);
    Demand {
        hours,
        pinned,
        elasticity,
        cap: demand_limited
            .then(|| kaplan_meier_quantile(&mut obs, CAP_QUANTILE))
            .flatten(),
    }
}

/// The least-squares slope of ln(mean usage) on ln(allocation) over unpinned readings
/// `(allocation, mean usage)`, those above 0 only; None unless their allocations span
/// [`SPREAD`].
fn elasticity(unpinned: &[(f64, f64)]) -> Option<f64> {
    let xy: Vec<(f64, f64)> = unpinned
        .iter()
        .filter(|(a, u)| *a > 0.0 && *u > 0.0)
        .map(|(a, u)| (a.ln(), u.ln()))
        .collect();
    let lo = xy.iter().map(|v| v.0).fold(f64::INFINITY, f64::min);
    let hi = xy.iter().map(|v| v.0).fold(f64::NEG_INFINITY, f64::max);
    if xy.len() < 2 || hi - lo < SPREAD.ln() {
        return None;
    }
    let n = xy.len() as f64;
    let (mx, my) = (
        xy.iter().map(|v| v.0).sum::<f64>() / n,
        xy.iter().map(|v| v.1).sum::<f64>() / n,
    );
    let sxy: f64 = xy.iter().map(|v| (v.0 - mx) * (v.1 - my)).sum();
    let sxx: f64 = xy.iter().map(|v| (v.0 - mx).powi(2)).sum();
    Some(sxy / sxx)
}

/// The `q` quantile of the Kaplan–Meier estimate, None when the survival function is still
/// above `1 − q` at the largest exact reading (the censored ones leave the tail unknown).
fn kaplan_meier_quantile(obs: &mut [(f64, bool)], q: f64) -> Option<f64> {
    // Ties: exact readings before censored ones at the same value (the usual convention).
    obs.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut at_risk = obs.len() as f64;
    let mut survival = 1.0;
    for (v, exact) in obs.iter() {
        if *exact {
            survival *= 1.0 - 1.0 / at_risk;
            if survival <= 1.0 - q + 1e-12 {
                return Some(*v);
            }
        }
        at_risk -= 1.0;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Allocation, Resources};

    fn point(alloc: f64, avg: f64, max: f64) -> Point {
        let r = Resource::BandwidthBytesPerSecond;
        let mut allocation = Allocation::default();
        allocation.set(r, alloc);
        let mut usage_avg = Resources::<Option<f64>>::default();
        let mut usage_max = Resources::<Option<f64>>::default();
        usage_avg.set(r, Some(avg));
        usage_max.set(r, Some(max));
        Point {
            hour: 0,
            tokens: 1.0,
            up: 1.0,
            allocation,
            usage_avg,
            usage_max,
            excluded: None,
        }
    }

    #[test]
    fn a_starved_resource_has_no_cap() {
        // At 0 B/s, usage is 0 = allocation: every reading is pinned; demand is unknown.
        let points: Vec<Point> = (0..168).map(|_| point(0.0, 0.0, 0.0)).collect();
        let d = demand(&points, Resource::BandwidthBytesPerSecond);
        assert_eq!((d.hours, d.pinned, d.cap), (168, 168, None));
        // Pinned at 1 MB/s with a few exact readings below: still no cap, and never 1 MB/s.
        let mut points: Vec<Point> = (0..160).map(|_| point(1e6, 1e6, 1e6)).collect();
        points.extend((0..8).map(|i| point(1e6, 5e5 + i as f64, 8e5)));
        assert_eq!(demand(&points, Resource::BandwidthBytesPerSecond).cap, None);
    }

    #[test]
    fn demand_below_the_allocation_gives_a_cap_at_its_high_quantile() {
        // Demand 1..=100 kB/s, the allocation 1 MB/s and 2 MB/s in turn: nothing pinned, usage
        // does not follow the allocation; the 95 % quantile is 95 kB/s.
        let points: Vec<Point> = (1..=100)
            .map(|i| {
                let a = if i % 2 == 0 { 1e6 } else { 2e6 };
                point(a, i as f64 * 1e3, i as f64 * 1.1e3)
            })
            .collect();
        let d = demand(&points, Resource::BandwidthBytesPerSecond);
        assert_eq!(d.pinned, 0);
        assert!(d.elasticity.unwrap().abs() < 0.1, "{:?}", d.elasticity);
        assert_eq!(d.cap, Some(95e3));
        // The same demand, with the hours above 50 kB/s pinned at a 50 kB/s allocation (and the
        // others at 100 kB/s): the top is unknown, so there is no cap (a usage-based cap would
        // have said 50 kB/s).
        let points: Vec<Point> = (1..=100)
            .map(|i| {
                let d = i as f64 * 1e3;
                if d >= 50e3 {
                    point(50e3, 50e3, 50e3)
                } else {
                    point(if i % 2 == 0 { 50e3 } else { 100e3 }, d, d)
                }
            })
            .collect();
        assert_eq!(demand(&points, Resource::BandwidthBytesPerSecond).cap, None);
    }

    #[test]
    fn usage_that_follows_the_allocation_gives_no_cap() {
        // A node that uses 20-60 % of whatever it is given, at 1 and at 4 MB/s: usage is far
        // below the allocation at both, and says nothing about demand.
        let share = |i: usize| 0.2 + 0.4 * (i % 10) as f64 / 10.0;
        let points: Vec<Point> = (0..100)
            .map(|i| {
                let a = if i < 50 { 1e6 } else { 4e6 };
                point(a, share(i) * a, share(i) * a * 1.05)
            })
            .collect();
        let d = demand(&points, Resource::BandwidthBytesPerSecond);
        assert_eq!(d.pinned, 0);
        assert!(
            (d.elasticity.unwrap() - 1.0).abs() < 0.1,
            "{:?}",
            d.elasticity
        );
        assert_eq!(d.cap, None);
        // At one allocation alone the two cannot be told apart: no cap either.
        let d = demand(&points[..50], Resource::BandwidthBytesPerSecond);
        assert_eq!((d.elasticity, d.cap), (None, None));
    }
}

//! The market model behind simulated nodes: how much a protocol pays for a given allocation at
//! a given time. Demand follows the time of day (a sinusoid) and drifts (a mean-reverting random
//! walk per hour); more allocation earns more with diminishing returns
//! (`rate = price × demand × (1 − exp(−alloc / need))`); earnings carry per-minute noise.
//! Scenarios add a weekly cycle, demand shocks (lasting steps from a given time) and down
//! times (outages, restarts after a switch) in which the node earns nothing; all default to
//! off, so the `sim` nodes of `run` keep their config keys and behaviour.
//!
//! Everything is a pure function of the seed, the allocation and the timestamps it is given
//! (milliseconds from a [`crate::clock::Clock`]): the random numbers come from a hash of
//! (seed, hour) and (seed, minute), never from the order of calls, so the earnings between two
//! times do not depend on how often the node was polled in between.

use serde::Deserialize;
use serde_yaml::Value;

use crate::clock::{DAY_MS, HOUR_MS};
use crate::resources::{Allocation, Resource, Resources};
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;
use crate::schema::RawAllocation;

const MS_PER_MINUTE: i64 = 60_000;

/// The protocols the simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Storj,
    Golem,
    Streamr,
    Grass,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Storj,
        Protocol::Golem,
        Protocol::Streamr,
        Protocol::Grass,
    ];

    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The value of the `protocol` label.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Storj => "storj",
            Protocol::Golem => "golem",
            Protocol::Streamr => "streamr",
            Protocol::Grass => "grass",
        }
    }

    /// The token the protocol pays in (Grass pays points, which have no market price).
    pub fn token(self) -> &'static str {
        match self {
            Protocol::Storj => "STORJ",
            Protocol::Golem => "GLM",
            Protocol::Streamr => "DATA",
            Protocol::Grass => "GRASS",
        }
    }

    /// Whether the node reports "this month so far" (Storj's payout estimate) rather than a
    /// lifetime total.
    pub fn resets_monthly(self) -> bool {
        matches!(self, Protocol::Storj)
    }

    /// How the protocol turns resources into earnings: (share of the rate, the resources the
    /// share needs together, whether the share follows demand).
    fn components(self) -> &'static [(f64, &'static [Resource], bool)] {
        use Resource::*;
        match self {
            // Storj pays for data at rest (follows the disk, not the hour) and for egress.
            Protocol::Storj => &[
                (0.5, &[DiskBytes], false),
                (0.5, &[BandwidthBytesPerSecond], true),
            ],
            // Golem work needs CPU and memory together: the scarcer of the two limits it.
            Protocol::Golem => &[(1.0, &[CpuCores, MemoryBytes], true)],
            Protocol::Streamr => &[(1.0, &[BandwidthBytesPerSecond], true)],
            Protocol::Grass => &[(1.0, &[BandwidthBytesPerSecond], true)],
        }
    }

    /// The resources whose use the node reports.
    pub fn resources(self) -> Vec<Resource> {
        let mut out: Vec<Resource> = self
            .components()
            .iter()
            .flat_map(|c| c.1.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The knobs of one protocol's market. Defaults per protocol are in [`MarketParams::defaults`];
/// a sim node's `market:` block overrides them one by one.
#[derive(Clone, Debug, PartialEq)]
pub struct MarketParams {
    /// Token units per hour with ample resources and demand 1.
    pub rate_per_hour: f64,
    /// The allocation at which a resource gives 63 % (1 − 1/e) of its share of the rate.
    pub need: Allocation,
    /// Relative swing of demand over the day (0 = flat, 0.5 = ±50 %).
    pub daily_amplitude: f64,
    /// UTC hour (0–24) at which demand peaks.
    pub peak_hour: f64,
    /// Standard deviation of the hourly step of log-demand (the random walk).
    pub drift: f64,
    /// Relative standard deviation of the per-minute earnings noise.
    pub noise: f64,
    /// Relative swing of demand over the week (0 = flat); peaks on `peak_weekday`.
    pub weekly_amplitude: f64,
    /// Day of the week (0 = Monday … 6 = Sunday, fractions allowed) at which demand peaks.
    pub peak_weekday: f64,
    /// Demand steps: from `at_ms` on, demand is multiplied by `factor` (they compound).
    pub shocks: Vec<Shock>,
    /// Times `[from_ms, to_ms)` in which the node earns nothing (outages, restarts).
    pub down: Vec<(i64, i64)>,
    /// What a change of allocation costs. The downtime applies wherever the node runs;
    /// `cost_usd` is counted only by `simulate`'s ledger (in `run` a node's earnings counters
    /// never go down).
    pub switching: Switching,
}

/// A lasting change of demand from `at_ms` on (a protocol losing or winning customers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shock {
    pub at_ms: i64,
    pub factor: f64,
}

impl MarketParams {
    /// Plausible numbers for a home host (rates roughly what such nodes earned in 2024).
    pub fn defaults(p: Protocol) -> MarketParams {
        let mib = 1024.0 * 1024.0;
        let gib = 1024.0 * mib;
        let need = |cpu: f64, mem: f64, disk: f64, bw: f64| Resources {
            cpu_cores: cpu,
            memory_bytes: mem,
            disk_bytes: disk,
            bandwidth_bytes_per_second: bw,
        };
        let flat = MarketParams {
            rate_per_hour: 0.0,
            need: Resources::default(),
            daily_amplitude: 0.0,
            peak_hour: 0.0,
            drift: 0.0,
            noise: 0.0,
            weekly_amplitude: 0.0,
            peak_weekday: 0.0,
            shocks: Vec::new(),
            down: Vec::new(),
            switching: Switching::default(),
        };
        match p {
            // ~0.03 STORJ/h ≈ 10 USD/month at 0.45 USD: a well-filled multi-TB node.
            Protocol::Storj => MarketParams {
                rate_per_hour: 0.03,
                need: need(0.5, 512.0 * mib, 1e12, 2e6),
                daily_amplitude: 0.3,
                peak_hour: 20.0,
                drift: 0.03,
                noise: 0.2,
                ..flat
            },
            Protocol::Golem => MarketParams {
                rate_per_hour: 0.05,
                need: need(4.0, 8.0 * gib, 10.0 * gib, 1e6),
                daily_amplitude: 0.5,
                peak_hour: 15.0,
                drift: 0.08,
                noise: 0.4,
                ..flat
            },
            Protocol::Streamr => MarketParams {
                rate_per_hour: 0.6,
                need: need(1.0, gib, 1e9, 1e6),
                daily_amplitude: 0.2,
                peak_hour: 18.0,
                drift: 0.02,
                noise: 0.1,
                ..flat
            },
            Protocol::Grass => MarketParams {
                rate_per_hour: 40.0,
                need: need(0.5, 512.0 * mib, 1e9, 0.5e6),
                daily_amplitude: 0.4,
                peak_hour: 14.0,
                drift: 0.05,
                noise: 0.3,
                ..flat
            },
        }
    }
}

/// One protocol's market, seeded. Holds only the cache of the random walk.
#[derive(Clone, Debug)]
pub struct Market {
    pub protocol: Protocol,
    pub params: MarketParams,
    seed: u64,
    /// The random walk of log-demand at hour `walk_hour` (hours since the epoch).
    walk_hour: Option<i64>,
    walk: f64,
}

impl Market {
    pub fn new(protocol: Protocol, params: MarketParams, seed: u64) -> Market {
        Market {
            protocol,
            params,
            seed,
            walk_hour: None,
            walk: 0.0,
        }
    }

    /// Demand at `t_ms` (1 = average): the time-of-day swing times the drift.
    pub fn demand(&mut self, t_ms: i64) -> f64 {
        let hour_of_day = t_ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
        let phase = 2.0 * std::f64::consts::PI * (hour_of_day - self.params.peak_hour) / 24.0;
        let daily = (1.0 + self.params.daily_amplitude * phase.cos()).max(0.0);
        // 1970-01-01 was a Thursday (weekday 3 counting from Monday = 0).
        let weekday = (t_ms as f64 / DAY_MS as f64 + 3.0).rem_euclid(7.0);
        let wphase = 2.0 * std::f64::consts::PI * (weekday - self.params.peak_weekday) / 7.0;
        let weekly = (1.0 + self.params.weekly_amplitude * wphase.cos()).max(0.0);
        let shocks: f64 = self
            .params
            .shocks
            .iter()
            .filter(|s| s.at_ms <= t_ms)
            .map(|s| s.factor)
            .product();
        daily * weekly * shocks * self.walk_at(t_ms.div_euclid(HOUR_MS)).exp()
    }

    /// Whether the node earns nothing at `t_ms` (an outage or a restart).
    pub fn is_down(&self, t_ms: i64) -> bool {
        self.params
            .down
            .iter()
            .any(|&(from, to)| from <= t_ms && t_ms < to)
    }

    /// Marks `[from_ms, to_ms)` as down (a restart after a switch).
    pub fn add_down(&mut self, from_ms: i64, to_ms: i64) {
        if to_ms > from_ms {
            self.params.down.push((from_ms, to_ms));
        }
    }

    /// The multiplicative noise of the minute that contains `t_ms` (mean 1, never below 0).
    pub fn noise_at(&self, t_ms: i64) -> f64 {
        let minute = t_ms.div_euclid(MS_PER_MINUTE);
        (1.0 + self.params.noise * normal(self.seed ^ 0x4e4f_4953, minute as u64)).max(0.0)
    }

    /// The expected rate (token units per hour) of each earning component at `t_ms` with
    /// ample resources, and the resources each needs (for the hindsight oracle).
    pub fn component_rates(&mut self, t_ms: i64) -> Vec<(f64, &'static [Resource])> {
        let demand = self.demand(t_ms);
        self.protocol
            .components()
            .iter()
            .map(|(share, res, follows)| {
                let d = if *follows { demand } else { 1.0 };
                (self.params.rate_per_hour * share * d, *res)
            })
            .collect()
    }

    /// 0–1: how much of a component's rate `alloc` unlocks.
    pub fn saturation_of(&self, alloc: &Allocation, resources: &[Resource]) -> f64 {
        self.saturation(alloc, resources)
    }

    /// The mean-reverting random walk at hour `h`. It starts at 0 at the first hour asked for;
    /// later hours step forward from the cache (a clock that goes back restarts it).
    fn walk_at(&mut self, h: i64) -> f64 {
        match self.walk_hour {
            Some(wh) if wh <= h => {
                // A jump of months would step through every hour: cap the work, the walk has
                // forgotten its start after a few hundred steps anyway.
                let from = wh.max(h - 2000);
                if from > wh {
                    self.walk = 0.0;
                }
                for step in (from + 1)..=h {
                    self.walk = 0.98 * self.walk
                        + self.params.drift * normal(self.seed ^ 0x5741_4c4b, step as u64);
                }
            }
            _ => self.walk = 0.0,
        }
        self.walk_hour = Some(h);
        self.walk
    }

    /// 0–1 per component: how much of its share the allocation unlocks.
    fn saturation(&self, alloc: &Allocation, resources: &[Resource]) -> f64 {
        resources
            .iter()
            .map(|&r| {
                let need = self.params.need.get(r).max(f64::MIN_POSITIVE);
                1.0 - (-alloc.get(r).max(0.0) / need).exp()
            })
            .fold(1.0, f64::min)
    }

    /// The expected earning rate (token units per hour) at `t_ms`, without noise.
    pub fn rate_per_hour(&mut self, t_ms: i64, alloc: &Allocation) -> f64 {
        let demand = self.demand(t_ms);
        self.protocol
            .components()
            .iter()
            .map(|(share, res, follows_demand)| {
                let d = if *follows_demand { demand } else { 1.0 };
                self.params.rate_per_hour * share * d * self.saturation(alloc, res)
            })
            .sum()
    }

    /// Token units earned in `[from_ms, to_ms)` with `alloc`: the rate of each minute (at the
    /// minute's start, with that minute's noise) times the part of the minute inside the range.
    pub fn earned(&mut self, from_ms: i64, to_ms: i64, alloc: &Allocation) -> f64 {
        let mut total = 0.0;
        let mut t = from_ms;
        while t < to_ms {
            let minute = t.div_euclid(MS_PER_MINUTE);
            let end = ((minute + 1) * MS_PER_MINUTE).min(to_ms);
            if !self.is_down(t) {
                let noise = self.noise_at(t);
                let rate = self.rate_per_hour(minute * MS_PER_MINUTE, alloc);
                total += rate * noise * (end - t) as f64 / HOUR_MS as f64;
            }
            t = end;
        }
        total
    }

    /// What the node uses at `t_ms`: the allocated resources it earns with, used in proportion
    /// to demand (at least 15 %, at most all); disk fills more slowly than demand swings.
    pub fn usage(&mut self, t_ms: i64, alloc: &Allocation) -> Resources<Option<f64>> {
        let demand = self.demand(t_ms);
        let peak = 1.0 + self.params.daily_amplitude;
        let busy = (0.15 + 0.8 * demand / peak).clamp(0.0, 1.0);
        let minute = t_ms.div_euclid(MS_PER_MINUTE) as u64;
        let jitter = 1.0 + 0.05 * normal(self.seed ^ 0x5553_4147, minute);
        let used = self.protocol.resources();
        alloc.map(|r, a| {
            used.contains(&r).then(|| {
                let share = if r == Resource::DiskBytes {
                    0.5 + 0.3 * busy
                } else {
                    busy * jitter
                };
                a * share.clamp(0.0, 1.0)
            })
        })
    }
}

/// A standard normal number determined by (`seed`, `index`) alone.
pub fn normal(seed: u64, index: u64) -> f64 {
    let a = splitmix64(seed ^ splitmix64(index));
    let b = splitmix64(a);
    // Box–Muller on two uniforms in (0, 1].
    let u1 = ((a >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a), for default seeds from node names.
pub fn seed_from_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cpu: f64, mem: f64, disk: f64, bw: f64) -> Allocation {
        Resources {
            cpu_cores: cpu,
            memory_bytes: mem,
            disk_bytes: disk,
            bandwidth_bytes_per_second: bw,
        }
    }

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn more_allocation_earns_more_with_diminishing_returns() {
        let p = Protocol::Golem;
        let mut m = Market::new(p, MarketParams::defaults(p), 7);
        let gib = 1073741824.0;
        let r1 = m.rate_per_hour(T0, &alloc(1.0, 2.0 * gib, 0.0, 0.0));
        let r2 = m.rate_per_hour(T0, &alloc(2.0, 4.0 * gib, 0.0, 0.0));
        let r4 = m.rate_per_hour(T0, &alloc(4.0, 8.0 * gib, 0.0, 0.0));
        assert!(r1 < r2 && r2 < r4, "{r1} {r2} {r4}");
        // The next core earns less than the one before: per core, 1→2 beats 2→4.
        assert!(
            (r2 - r1) / 1.0 > (r4 - r2) / 2.0,
            "returns diminish: {r1} {r2} {r4}"
        );
        // Work needs memory too: CPU without memory earns nothing.
        assert_eq!(m.rate_per_hour(T0, &alloc(8.0, 0.0, 0.0, 0.0)), 0.0);
    }

    #[test]
    fn demand_follows_the_day() {
        let p = Protocol::Golem;
        let mut params = MarketParams::defaults(p);
        params.drift = 0.0;
        let mut m = Market::new(p, params, 1);
        let peak = m.demand(T0 + 15 * HOUR_MS);
        let trough = m.demand(T0 + 3 * HOUR_MS);
        assert!(
            (peak - 1.5).abs() < 1e-9 && (trough - 0.5).abs() < 1e-9,
            "{peak} {trough}"
        );
    }

    #[test]
    fn earnings_do_not_depend_on_how_often_one_asks() {
        let p = Protocol::Storj;
        let a = alloc(1.0, 1e9, 2e12, 12.5e6);
        let mut once = Market::new(p, MarketParams::defaults(p), 42);
        let whole = once.earned(T0, T0 + 6 * HOUR_MS, &a);
        let mut often = Market::new(p, MarketParams::defaults(p), 42);
        let mut sum = 0.0;
        let mut t = T0;
        while t < T0 + 6 * HOUR_MS {
            sum += often.earned(t, t + 5_000, &a);
            t += 5_000;
        }
        assert!(whole > 0.0);
        assert!((whole - sum).abs() < 1e-9 * whole, "{whole} vs {sum}");
        // Another seed gives other numbers.
        let mut other = Market::new(p, MarketParams::defaults(p), 43);
        assert_ne!(other.earned(T0, T0 + 6 * HOUR_MS, &a), whole);
    }

    #[test]
    fn usage_stays_within_allocation() {
        let p = Protocol::Golem;
        let mut m = Market::new(p, MarketParams::defaults(p), 3);
        let a = alloc(4.0, 8e9, 1e9, 1e6);
        for h in 0..48 {
            let u = m.usage(T0 + h * HOUR_MS, &a);
            let cpu = u.cpu_cores.unwrap_or(-1.0);
            assert!((0.0..=4.0).contains(&cpu), "{cpu}");
            assert_eq!(u.disk_bytes, None, "golem does not report disk");
        }
    }

    #[test]
    fn shocks_and_down_times() {
        let p = Protocol::Streamr;
        let mut params = MarketParams::defaults(p);
        params.drift = 0.0;
        params.shocks.push(Shock {
            at_ms: T0 + 10 * HOUR_MS,
            factor: 0.2,
        });
        params.down.push((T0 + 20 * HOUR_MS, T0 + 21 * HOUR_MS));
        let mut m = Market::new(p, params, 5);
        let before = m.demand(T0 + 9 * HOUR_MS);
        let after = m.demand(T0 + 9 * HOUR_MS + DAY_MS);
        assert!((after / before - 0.2).abs() < 1e-9, "{before} {after}");
        let a = alloc(1.0, 1e9, 1e9, 4e6);
        assert_eq!(m.earned(T0 + 20 * HOUR_MS, T0 + 21 * HOUR_MS, &a), 0.0);
        assert!(m.earned(T0 + 21 * HOUR_MS, T0 + 22 * HOUR_MS, &a) > 0.0);
    }

    #[test]
    fn normal_is_roughly_standard() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| normal(9, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}

/// The `market:` block of a simulated node: the same keys in a scenario's `nodes[i].market`
/// and in the config's `nodes[i].sim.market` of `run`, validated by [`validate_market`], so the
/// demo shows the behaviour a simulation measured. Every key is optional; the defaults are the
/// protocol's ([`MarketParams::defaults`]).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMarket {
    /// Token units per hour with ample resources and demand 1 (alternative to
    /// `price_per_unit` × `work_per_hour`).
    #[serde(default)]
    rate_per_hour: Option<f64>,
    #[serde(default)]
    price_per_unit: Option<f64>,
    #[serde(default)]
    work_per_hour: Option<f64>,
    #[serde(default)]
    need: Option<RawAllocation>,
    #[serde(default)]
    daily_amplitude: Option<f64>,
    #[serde(default)]
    peak_hour: Option<f64>,
    #[serde(default)]
    weekly_amplitude: Option<f64>,
    #[serde(default)]
    peak_weekday: Option<f64>,
    #[serde(default)]
    drift: Option<f64>,
    #[serde(default)]
    noise: Option<f64>,
    #[serde(default)]
    shocks: Vec<RawShock>,
    #[serde(default)]
    switching: Option<RawSwitching>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShock {
    at: Value,
    demand: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitching {
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(default)]
    downtime: Option<Value>,
}

/// What one change of allocation costs a simulated node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Switching {
    /// USD lost per change.
    pub cost_usd: f64,
    /// Time without earnings after a change (a restart), in milliseconds.
    pub downtime_ms: i64,
}

/// Sets `field` to `v` when given and within `[lo, hi]` (`hi = f64::MAX`: no upper bound);
/// otherwise reports the error at `path`. Shared with the scenario file's own keys.
pub(crate) fn in_range(
    v: Option<f64>,
    lo: f64,
    hi: f64,
    path: &str,
    field: &mut f64,
    d: &mut Diagnostics,
) {
    if let Some(v) = v {
        if v.is_finite() && (lo..=hi).contains(&v) {
            *field = v;
        } else if hi == f64::MAX {
            d.error(path, format!("must be a number, {lo} or more; got {v}"));
        } else {
            d.error(path, format!("must be between {lo} and {hi}, got {v}"));
        }
    }
}

/// Applies a `market:` block at `path` to `params` (the protocol's defaults). Shock times are
/// offsets (durations) added to `start_ms`: the scenario's start, or 0 in the config, where
/// [`MarketParams::shifted`] moves them to when the node is built. Reports every error to `d`.
pub fn validate_market(
    m: &RawMarket,
    path: &str,
    start_ms: i64,
    params: &mut MarketParams,
    d: &mut Diagnostics,
) -> Switching {
    let k = |key: &str| join_key(path, key);
    match (m.rate_per_hour, m.price_per_unit.or(m.work_per_hour)) {
        (Some(_), Some(_)) => d.error(
            &k("rate_per_hour"),
            "set either rate_per_hour or price_per_unit/work_per_hour, not both",
        ),
        (Some(_), None) => in_range(
            m.rate_per_hour,
            0.0,
            f64::MAX,
            &k("rate_per_hour"),
            &mut params.rate_per_hour,
            d,
        ),
        (None, _) => {
            let mut price = params.rate_per_hour;
            in_range(
                m.price_per_unit,
                0.0,
                f64::MAX,
                &k("price_per_unit"),
                &mut price,
                d,
            );
            let mut work = 1.0;
            in_range(
                m.work_per_hour,
                0.0,
                f64::MAX,
                &k("work_per_hour"),
                &mut work,
                d,
            );
            params.rate_per_hour = price * work;
        }
    }
    in_range(
        m.daily_amplitude,
        0.0,
        1.0,
        &k("daily_amplitude"),
        &mut params.daily_amplitude,
        d,
    );
    in_range(
        m.peak_hour,
        0.0,
        24.0,
        &k("peak_hour"),
        &mut params.peak_hour,
        d,
    );
    in_range(
        m.weekly_amplitude,
        0.0,
        1.0,
        &k("weekly_amplitude"),
        &mut params.weekly_amplitude,
        d,
    );
    in_range(
        m.peak_weekday,
        0.0,
        7.0,
        &k("peak_weekday"),
        &mut params.peak_weekday,
        d,
    );
    in_range(m.drift, 0.0, 1.0, &k("drift"), &mut params.drift, d);
    in_range(m.noise, 0.0, 1.0, &k("noise"), &mut params.noise, d);
    if let Some(need) = &m.need {
        if let Some(x) = need.validate(&k("need"), params.need, d) {
            params.need = x;
        }
    }
    for (j, s) in m.shocks.iter().enumerate() {
        let sp = join_index(&k("shocks"), j);
        let at = units::duration(&s.at).map_err(|e| d.error(&join_key(&sp, "at"), e));
        let mut f = 1.0;
        in_range(
            Some(s.demand),
            0.0,
            f64::MAX,
            &join_key(&sp, "demand"),
            &mut f,
            d,
        );
        if let Ok(at) = at {
            params.shocks.push(Shock {
                at_ms: start_ms + at.as_millis() as i64,
                factor: f,
            });
        }
    }
    let mut sw = Switching::default();
    if let Some(raw) = &m.switching {
        let sp = k("switching");
        in_range(
            raw.cost_usd,
            0.0,
            f64::MAX,
            &join_key(&sp, "cost_usd"),
            &mut sw.cost_usd,
            d,
        );
        if let Some(v) = &raw.downtime {
            match units::duration(v) {
                Ok(x) => sw.downtime_ms = x.as_millis() as i64,
                Err(e) => d.error(&join_key(&sp, "downtime"), e),
            }
        }
    }
    sw
}

impl MarketParams {
    /// The same market with shock and down times moved by `by_ms` (config offsets → the time
    /// the node was built).
    pub fn shifted(&self, by_ms: i64) -> MarketParams {
        let mut m = self.clone();
        for s in &mut m.shocks {
            s.at_ms += by_ms;
        }
        for d in &mut m.down {
            d.0 += by_ms;
            d.1 += by_ms;
        }
        m
    }
}

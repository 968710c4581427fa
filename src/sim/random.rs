//! Markets nobody wrote down: `simulate --random N --seed S` draws N scenarios from the ranges
//! below. Market *k* of seed *S* depends on (S, k) alone, so market 17 of seed 1 is the same
//! whatever N is; it is drawn as scenario-file text and loaded through
//! [`crate::sim::scenario::parse_str`], so every drawn market is a valid scenario file that
//! can be saved and run again as one.
//!
//! The ranges (all draws independent unless said; `U` uniform, `logU` log-uniform; times are
//! given for a 30-day run and scale with `--days`):
//!
//! | what | range |
//! |---|---|
//! | nodes | golem, storj, streamr, grass, plus 0–2 extra nodes of golem, storj or streamr (each of two draws: one of golem, storj, streamr, none, none), named `storj-2`, …; grass left out with probability 0.2 (3–6 nodes) |
//! | host | cpu ∈ {4, 8, 16} cores, memory ∈ {8, 16, 32} GiB, disk ∈ {1, 2, 4} TB (raised to 2 TB for one Storj node, 4 TB for more, when their lower bounds and the reserve would not fit with 30 % room), uplink logU(3, 25) MB/s |
//! | rate | the protocol's default `rate_per_hour` × logU(¼, 4) |
//! | knees (`need`) | the protocol's default × logU(⅛, 8), each resource on its own |
//! | daily cycle | amplitude U(0, 0.95), peak hour U(0, 24) |
//! | weekly cycle | amplitude U(0, 0.5), peak weekday U(0, 7) |
//! | drift | U(0, 0.15) (hourly step of log-demand) |
//! | noise | U(0.05, 0.9) (per minute) |
//! | shocks | Poisson(0.8) per node at U(1 d, 29 d); with probability 0.3 demand vanishes (× logU(0.01, 0.1)) and returns (× the inverse) U(1, 5) days later, else a lasting step × logU(0.2, 5) |
//! | prices | STORJ 0.45, GLM 0.30, DATA 0.03 USD × logU(½, 2) to start; Poisson(0.7) steps at U(1 d, 29 d) to the start × logU(0.2, 3); GRASS has no price |
//! | outages | Poisson(0.4) per node at U(0, 29 d), lasting logU(1 h, 3 d) |
//! | switching | Storj: downtime one of {0, 5m, 30m}, cost one of {0, 0, 0.005} USD; the others free |
//! | start | per resource, every node at its lower bound (the rules' bounds) plus a share of what the rules leave (capacity − reserve − the lower bounds): a flat Dirichlet share × U(½, 1), capped at the upper bound; with probability 0.3 *starved*: each Storj node's egress 0 B/s (probability 0.7), Golem at its lower bounds, Streamr at its lower bound (probability 0.5) |
//!
//! A host with two nodes of one protocol has a rule block for each: the second (`storj-2`)
//! takes the first one's block of the rules ([`rules_for`]), as an operator would write it.

use std::fmt::Write;

use crate::adapters::sim::market::{MarketParams, Protocol};
use crate::optimizer::OptimizationRules;
use crate::resources::{Allocation, Resource};
use crate::sim::scenario::{parse_str, Scenario};

const GB: f64 = 1e9;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: f64 = 86_400_000.0;

/// The ranges of the table above, as numbers (the generator and its tests read them here).
pub mod ranges {
    /// Probability that the host runs no Grass node.
    pub const NO_GRASS: f64 = 0.2;
    /// The protocols of the two draws for extra nodes (None: no extra node).
    pub const EXTRA: [Option<&str>; 5] =
        [Some("golem"), Some("storj"), Some("streamr"), None, None];
    pub const CPU_CORES: [f64; 3] = [4.0, 8.0, 16.0];
    /// GiB.
    pub const MEMORY_GIB: [f64; 3] = [8.0, 16.0, 32.0];
    /// TB.
    pub const DISK_TB: [f64; 3] = [1.0, 2.0, 4.0];
    /// Bytes per second, log-uniform.
    pub const UPLINK: (f64, f64) = (3e6, 25e6);
    /// × the protocol's default rate, log-uniform.
    pub const RATE_FACTOR: (f64, f64) = (0.25, 4.0);
    /// × the protocol's default knee, log-uniform, per resource.
    pub const NEED_FACTOR: (f64, f64) = (0.125, 8.0);
    pub const DAILY_AMPLITUDE: (f64, f64) = (0.0, 0.95);
    pub const PEAK_HOUR: (f64, f64) = (0.0, 24.0);
    pub const WEEKLY_AMPLITUDE: (f64, f64) = (0.0, 0.5);
    pub const PEAK_WEEKDAY: (f64, f64) = (0.0, 7.0);
    pub const DRIFT: (f64, f64) = (0.0, 0.15);
    pub const NOISE: (f64, f64) = (0.05, 0.9);
    /// Mean number of shocks per node (Poisson).
    pub const SHOCKS_MEAN: f64 = 0.8;
    /// When shocks and price steps happen, in days of a 30-day run.
    pub const EVENT_DAYS: (f64, f64) = (1.0, 29.0);
    /// Probability that a shock is demand vanishing (and returning) rather than a step.
    pub const VANISH: f64 = 0.3;
    /// Demand factor while it has vanished, log-uniform.
    pub const VANISH_FACTOR: (f64, f64) = (0.01, 0.1);
    /// Days until vanished demand returns (for a 30-day run).
    pub const VANISH_DAYS: (f64, f64) = (1.0, 5.0);
    /// A lasting step of demand, log-uniform.
    pub const STEP_FACTOR: (f64, f64) = (0.2, 5.0);
    /// Starting prices, USD per token.
    pub const PRICES: [(&str, f64); 3] = [("STORJ", 0.45), ("GLM", 0.30), ("DATA", 0.03)];
    /// × the default starting price, log-uniform.
    pub const PRICE_START_FACTOR: (f64, f64) = (0.5, 2.0);
    /// Mean number of price steps per token (Poisson).
    pub const PRICE_STEPS_MEAN: f64 = 0.7;
    /// A step's price × the starting price, log-uniform.
    pub const PRICE_STEP_FACTOR: (f64, f64) = (0.2, 3.0);
    /// Mean number of outages per node (Poisson).
    pub const OUTAGES_MEAN: f64 = 0.4;
    /// When an outage starts, in days of a 30-day run.
    pub const OUTAGE_DAYS: (f64, f64) = (0.0, 29.0);
    /// How long an outage lasts, hours, log-uniform (for a 30-day run).
    pub const OUTAGE_HOURS: (f64, f64) = (1.0, 72.0);
    /// Storj's restart after a change, minutes.
    pub const STORJ_DOWNTIME_MINUTES: [f64; 3] = [0.0, 5.0, 30.0];
    /// Storj's cost of a change, USD.
    pub const STORJ_SWITCH_USD: [f64; 3] = [0.0, 0.0, 0.005];
    /// Probability that the start is starved.
    pub const STARVED: f64 = 0.3;
    /// In a starved start: probability that a Storj node's egress is 0 B/s.
    pub const STARVED_STORJ: f64 = 0.7;
    /// In a starved start: probability that Streamr is at its lower bound.
    pub const STARVED_STREAMR: f64 = 0.5;
    /// A node's share of what is left above the lower bounds is scaled by U(this, 1).
    pub const SHARE_SCALE: f64 = 0.5;
}

/// A small, fixed random generator (splitmix64): the draws of a seed never change with the
/// version of a crate.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, market: u64) -> Draws {
        Draws(splitmix64(seed ^ splitmix64(market ^ 0x5241_4e44)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi], to four significant digits.
    fn uniform(&mut self, (lo, hi): (f64, f64)) -> f64 {
        round4(lo + (hi - lo) * self.unit()).clamp(lo, hi)
    }

    /// Log-uniform in [lo, hi], to four significant digits.
    fn log_uniform(&mut self, (lo, hi): (f64, f64)) -> f64 {
        round4((lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()).clamp(lo, hi)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[(self.next() % of.len() as u64) as usize]
    }

    /// Poisson with mean `mean` (Knuth's product of uniforms; the means here are below 1).
    fn poisson(&mut self, mean: f64) -> usize {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, self.unit());
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }

    /// A flat Dirichlet draw of `n` shares (normalised exponentials).
    fn shares(&mut self, n: usize) -> Vec<f64> {
        let e: Vec<f64> = (0..n).map(|_| -(1.0 - self.unit()).ln()).collect();
        let sum: f64 = e.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        e.iter().map(|x| x / sum).collect()
    }
}

/// `x` to four significant digits, so a drawn scenario file reads well (the rounded number
/// is the market: the file is what runs).
fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let d = 4 - x.abs().log10().ceil() as i32;
    if d >= 0 {
        let m = 10f64.powi(d);
        (x * m).round() / m
    } else {
        let m = 10f64.powi(-d);
        (x / m).round() * m
    }
}

/// A time offset of `ms`, to the minute, as a duration a scenario file takes (`3d 4h 5m`).
fn offset(ms: f64) -> String {
    let minutes = (ms / 60_000.0).round().max(0.0) as u64;
    if minutes == 0 {
        return "0s".to_string();
    }
    humantime::format_duration(std::time::Duration::from_secs(60 * minutes)).to_string()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One drawn market: the scenario, its text (a scenario file) and whether it starts starved.
#[derive(Clone, Debug)]
pub struct RandomMarket {
    /// 1-based: market `k` of the seed.
    pub index: u64,
    pub scenario: Scenario,
    /// The scenario file that gives this market (`simulate FILE` runs it again).
    pub text: String,
    pub starved: bool,
    /// The rules it runs with: the given rules, with a block for each extra node.
    pub rules: OptimizationRules,
}

/// The rules for a host with `nodes` (name, protocol): `rules` with, for every node without a
/// block of its own whose name is `<other>-<n>`, a copy of `<other>`'s block (a host with two
/// Storj nodes has a block for each, written alike).
pub fn rules_for(rules: &OptimizationRules, nodes: &[(String, Protocol)]) -> OptimizationRules {
    let mut out = rules.clone();
    for (name, _) in nodes {
        if out.nodes.contains_key(name) {
            continue;
        }
        let Some((base, _)) = name.rsplit_once('-') else {
            continue;
        };
        if let Some(block) = rules.nodes.get(base) {
            let mut copy = block.clone();
            copy.path = format!("nodes.{name}");
            out.nodes.insert(name.clone(), copy);
        }
    }
    out
}

struct DrawnNode {
    name: String,
    protocol: Protocol,
    market: String,
    allocation: Allocation,
}

/// Draws market `index` (1-based) of `seed` for a run of `days`, with the rules it will run
/// under (their bounds and reserves shape the starting allocation).
pub fn draw(seed: u64, index: u64, days: f64, rules: &OptimizationRules) -> RandomMarket {
    use ranges as r;
    let mut g = Draws::new(seed, index);
    let scale = days / 30.0;
    let mut capacity = Allocation {
        cpu_cores: g.pick(&r::CPU_CORES),
        memory_bytes: g.pick(&r::MEMORY_GIB) * GIB,
        disk_bytes: g.pick(&r::DISK_TB) * 1000.0 * GB,
        bandwidth_bytes_per_second: g.log_uniform(r::UPLINK),
    };

    let mut protocols = vec![
        Protocol::Golem,
        Protocol::Storj,
        Protocol::Streamr,
        Protocol::Grass,
    ];
    for _ in 0..2 {
        if let Some(p) = g.pick(&r::EXTRA).and_then(Protocol::parse) {
            protocols.push(p);
        }
    }
    if g.chance(r::NO_GRASS) {
        protocols.retain(|p| *p != Protocol::Grass);
    }
    let storj = protocols.iter().filter(|p| **p == Protocol::Storj).count() as f64;
    let storj_low = rules
        .for_node("storj", "storj")
        .and_then(|n| n.bounds.get(&Resource::DiskBytes).map(|b| b.0))
        .unwrap_or(0.0);
    let reserve = capacity.disk_bytes - rules.available(&capacity).disk_bytes;
    if capacity.disk_bytes < 1.3 * (storj * storj_low + reserve) {
        capacity.disk_bytes = if storj <= 1.0 {
            2000.0 * GB
        } else {
            4000.0 * GB
        };
    }

    let mut prices = String::new();
    for (token, base) in r::PRICES {
        let start = round4(base * g.log_uniform(r::PRICE_START_FACTOR));
        let mut steps = vec![(0.0, start)];
        for _ in 0..g.poisson(r::PRICE_STEPS_MEAN) {
            let at = g.uniform(r::EVENT_DAYS) * scale * MS_PER_DAY;
            steps.push((at, round4(start * g.log_uniform(r::PRICE_STEP_FACTOR))));
        }
        steps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let list: Vec<String> = steps
            .iter()
            .map(|(at, usd)| format!("{{at: {}, usd: {}}}", offset(*at), round4(*usd)))
            .collect();
        let _ = writeln!(prices, "  {token}: [{}]", list.join(", "));
    }

    let starved = g.chance(r::STARVED);
    let mut nodes: Vec<DrawnNode> = Vec::new();
    let mut outages = String::new();
    for p in protocols {
        let k = nodes.iter().filter(|n| n.protocol == p).count() + 1;
        let name = if k == 1 {
            p.name().to_string()
        } else {
            format!("{}-{k}", p.name())
        };
        let market = draw_market(&mut g, p, scale, days);
        for _ in 0..g.poisson(r::OUTAGES_MEAN) {
            let from = g.uniform(r::OUTAGE_DAYS) * scale * MS_PER_DAY;
            let to = from + g.log_uniform(r::OUTAGE_HOURS) * scale * MS_PER_HOUR;
            let (from, to) = (offset(from), offset(to.max(from + 60_000.0)));
            let _ = writeln!(outages, "  - {{node: {name}, from: {from}, to: {to}}}");
        }
        nodes.push(DrawnNode {
            name,
            protocol: p,
            market,
            allocation: Allocation::default(),
        });
    }
    let names: Vec<(String, Protocol)> =
        nodes.iter().map(|n| (n.name.clone(), n.protocol)).collect();
    let rules = rules_for(rules, &names);
    start_allocation(&mut g, &mut nodes, &rules, &capacity, starved);

    let market_seed = g.next() % 1_000_000;
    let text = scenario_text(
        seed,
        index,
        days,
        market_seed,
        &capacity,
        &prices,
        &nodes,
        &outages,
    );
    let name = format!("random-{seed}-{index}");
    let scenario = parse_str(&text, &format!("{name}.yml"), &name)
        .unwrap_or_else(|e| panic!("a drawn market is not a valid scenario:\n{e}\n{text}"));
    RandomMarket {
        index,
        scenario,
        text,
        starved,
        rules,
    }
}

/// One node's `market:` block.
fn draw_market(g: &mut Draws, p: Protocol, scale: f64, days: f64) -> String {
    use ranges as r;
    let d = MarketParams::defaults(p);
    let rate = round4(d.rate_per_hour * g.log_uniform(r::RATE_FACTOR));
    let need: Vec<String> = Resource::ALL
        .iter()
        .map(|&res| {
            format!(
                "{}: {}",
                res.key(),
                round4(d.need.get(res) * g.log_uniform(r::NEED_FACTOR))
            )
        })
        .collect();
    let mut m = format!(
        "{{rate_per_hour: {rate}, need: {{{}}}, daily_amplitude: {}, peak_hour: {}, weekly_amplitude: {}, peak_weekday: {}, drift: {}, noise: {}",
        need.join(", "),
        g.uniform(r::DAILY_AMPLITUDE),
        g.uniform(r::PEAK_HOUR),
        g.uniform(r::WEEKLY_AMPLITUDE),
        g.uniform(r::PEAK_WEEKDAY),
        g.uniform(r::DRIFT),
        g.uniform(r::NOISE),
    );
    let mut shocks = Vec::new();
    for _ in 0..g.poisson(r::SHOCKS_MEAN) {
        let at = g.uniform(r::EVENT_DAYS) * scale * MS_PER_DAY;
        if g.chance(r::VANISH) {
            let f = g.log_uniform(r::VANISH_FACTOR);
            let back = at + g.uniform(r::VANISH_DAYS) * scale * MS_PER_DAY;
            shocks.push((at, f));
            if back < days * MS_PER_DAY {
                shocks.push((back, 1.0 / f));
            }
        } else {
            shocks.push((at, g.log_uniform(r::STEP_FACTOR)));
        }
    }
    if !shocks.is_empty() {
        shocks.sort_by(|a, b| a.0.total_cmp(&b.0));
        let list: Vec<String> = shocks
            .iter()
            .map(|(at, f)| format!("{{at: {}, demand: {}}}", offset(*at), round4(*f)))
            .collect();
        let _ = write!(m, ", shocks: [{}]", list.join(", "));
    }
    if p == Protocol::Storj {
        let down = g.pick(&r::STORJ_DOWNTIME_MINUTES);
        let usd = g.pick(&r::STORJ_SWITCH_USD);
        let _ = write!(m, ", switching: {{downtime: {down}m, cost_usd: {usd}}}");
    }
    m.push('}');
    m
}

/// Every node at its lower bound plus a share of what is left, some starved.
fn start_allocation(
    g: &mut Draws,
    nodes: &mut [DrawnNode],
    rules: &OptimizationRules,
    capacity: &Allocation,
    starved: bool,
) {
    use ranges as r;
    let available = rules.available(capacity);
    let bounds = |n: &DrawnNode, res: Resource| -> (f64, f64) {
        let (lo, hi) = rules
            .for_node(&n.name, n.protocol.name())
            .and_then(|nr| nr.bounds.get(&res).copied())
            .unwrap_or((0.0, f64::INFINITY));
        (lo, hi.min(capacity.get(res)))
    };
    for res in Resource::ALL {
        let lows: Vec<f64> = nodes.iter().map(|n| bounds(n, res).0).collect();
        let spare = (available.get(res) - lows.iter().sum::<f64>()).max(0.0);
        let shares = g.shares(nodes.len());
        for (i, n) in nodes.iter_mut().enumerate() {
            let (lo, hi) = bounds(n, res);
            let scale = g.uniform((r::SHARE_SCALE, 1.0));
            n.allocation
                .set(res, hi.min(lo + spare * shares[i] * scale));
        }
    }
    if !starved {
        return;
    }
    for n in nodes.iter_mut() {
        let mut a = n.allocation;
        match n.protocol {
            Protocol::Storj if g.chance(r::STARVED_STORJ) => {
                a.bandwidth_bytes_per_second = 0.0;
            }
            Protocol::Golem => {
                a.cpu_cores = bounds(n, Resource::CpuCores).0;
                a.memory_bytes = bounds(n, Resource::MemoryBytes).0;
            }
            Protocol::Streamr if g.chance(r::STARVED_STREAMR) => {
                a.bandwidth_bytes_per_second = bounds(n, Resource::BandwidthBytesPerSecond).0;
            }
            _ => {}
        }
        n.allocation = a;
    }
}

#[allow(clippy::too_many_arguments)]
fn scenario_text(
    seed: u64,
    index: u64,
    days: f64,
    market_seed: u64,
    capacity: &Allocation,
    prices: &str,
    nodes: &[DrawnNode],
    outages: &str,
) -> String {
    let alloc = |a: &Allocation| -> String {
        let parts: Vec<String> = Resource::ALL
            .iter()
            .map(|&r| format!("{}: {}", r.key(), a.get(r)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    };
    let mut s = format!(
        "# Market {index} of `depin-orcha simulate --random N --seed {seed}` (src/sim/random.rs).\n\
         days: {days}\nseed: {market_seed}\npoll_interval: 5s\nscrape_interval: 60s\n\
         evaluation_interval: 5m\nhost:\n  capacity: {}\nprices:\n{prices}nodes:\n",
        alloc(capacity)
    );
    for n in nodes {
        let _ = writeln!(
            s,
            "  - name: {}\n    protocol: {}\n    allocation: {}\n    market: {}",
            n.name,
            n.protocol.name(),
            alloc(&n.allocation),
            n.market
        );
    }
    if !outages.is_empty() {
        let _ = write!(s, "outages:\n{outages}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_and_shares_have_their_means() {
        let mut g = Draws::new(1, 1);
        let n = 20_000;
        let mean = (0..n).map(|_| g.poisson(0.8)).sum::<usize>() as f64 / n as f64;
        assert!((mean - 0.8).abs() < 0.03, "{mean}");
        let s = g.shares(4);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{s:?}");
        assert!(s.iter().all(|x| *x >= 0.0));
        let u: Vec<f64> = (0..n).map(|_| g.log_uniform((0.25, 4.0))).collect();
        assert!(u.iter().all(|x| (0.25..=4.0).contains(x)));
        let below_one = u.iter().filter(|x| **x < 1.0).count() as f64 / n as f64;
        assert!((below_one - 0.5).abs() < 0.02, "log-uniform: {below_one}");
    }
}

//! Scenario files for `depin-orcha simulate`: the host, its simulated nodes with their markets,
//! token price paths, outages and the starting allocation. Validated like the config (every
//! error at once, each as `FILE:LINE:COL: key.path: message`, through
//! [`crate::schema::diag`]). Times inside a scenario are offsets from its `start`.
//!
//! ```yaml
//! start: 2026-01-05T00:00:00Z   # RFC 3339, UTC; default 2026-01-05T00:00:00Z (a Monday)
//! days: 30                      # simulated days (number; `--days` overrides); default 30
//! seed: 1                       # market randomness (whole number; `--seed` overrides); default 1
//! poll_interval: 5s             # how often each node is polled (duration); default 5s
//! scrape_interval: 15s          # how often the metrics are written to the tsdb; default 15s
//! evaluation_interval: 1m       # recording/alerting rules' interval (duration); default 1m
//! host:
//!   capacity:                   # what the host has: cores, bytes, bytes, bytes per second
//!     { cpu_cores: 8, memory_bytes: 16GiB, disk_bytes: 2TB, bandwidth_bytes_per_second: 12.5MB }
//! prices:                       # USD per token unit: a number, or a piecewise-constant path
//!   STORJ: 0.45                 # of {at: offset (duration), usd: USD per unit (0 or more)}
//!   GLM: [{at: 0s, usd: 0.30}, {at: 15d, usd: 0.12}]
//! nodes:
//!   - name: golem               # the node's name (its `node` label; the rules use it)
//!     protocol: golem           # storj, golem, streamr or grass
//!     allocation: {cpu_cores: 4, memory_bytes: 8GiB}   # the starting allocation (units as above)
//!     market:                   # every key optional; defaults per protocol (sim::market)
//!       price_per_unit: 0.05    # tokens per unit of work (or rate_per_hour: tokens per hour)
//!       work_per_hour: 1        # units of work per hour at demand 1 with ample resources
//!       need: {cpu_cores: 4, memory_bytes: 8GiB}   # resources at which a unit of work runs at
//!                               # 63 % (1 − 1/e) of its rate: diminishing returns above
//!       daily_amplitude: 0.5    # demand swing over the day (0–1, 0.5 = ±50 %)
//!       peak_hour: 15           # UTC hour of the daily peak (0–24)
//!       weekly_amplitude: 0.1   # demand swing over the week (0–1)
//!       peak_weekday: 2         # 0 = Monday … 6 = Sunday
//!       drift: 0.08             # hourly step of the log-demand random walk (0–1)
//!       noise: 0.4              # relative per-minute earnings noise (0–1)
//!       shocks: [{at: 10d, demand: 0.3}]   # from offset `at`, demand × `demand` (compounding)
//!       switching: {cost_usd: 0.02, downtime: 5m}  # per change of allocation: USD lost and
//!                               # time without earnings (a restart)
//! outages:                      # the node is down (no answer, no earnings) in [from, to)
//!   - {node: golem, from: 3d, to: 3d12h}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::adapters::sim::market::{in_range, validate_market, MarketParams, Protocol, RawMarket};
use crate::resources::{Allocation, Resource};
use crate::schema::diag::{join_index, join_key, validate_document, Diag, Diagnostics, Diags};
use crate::schema::units;
use crate::schema::RawAllocation;

/// 2026-01-05T00:00:00Z, a Monday.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// Why a scenario did not load: one positioned finding per line.
pub type ScenarioErrors = Diags;

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file stem (`steady` for `scenarios/steady.yml`).
    pub name: String,
    pub start_ms: i64,
    pub days: f64,
    pub seed: u64,
    pub poll_interval: Duration,
    pub scrape_interval: Duration,
    pub evaluation_interval: Duration,
    pub capacity: Allocation,
    /// Token → (offset ms, USD) steps, sorted by offset.
    pub prices: BTreeMap<String, Vec<(i64, f64)>>,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub protocol: Protocol,
    pub allocation: Allocation,
    /// Shocks and outages already in absolute milliseconds.
    pub market: MarketParams,
    pub switch_cost_usd: f64,
    pub switch_downtime_ms: i64,
    /// Outages, absolute `[from_ms, to_ms)`.
    pub outages: Vec<(i64, i64)>,
}

impl Scenario {
    /// USD per unit of `token` at `t_ms` (0 for a token without a price).
    pub fn price(&self, token: &str, t_ms: i64) -> f64 {
        let off = t_ms - self.start_ms;
        self.prices
            .get(token)
            .and_then(|steps| steps.iter().rev().find(|(at, _)| *at <= off))
            .map(|s| s.1)
            .unwrap_or(0.0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    days: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    poll_interval: Option<Value>,
    #[serde(default)]
    scrape_interval: Option<Value>,
    #[serde(default)]
    evaluation_interval: Option<Value>,
    host: RawHost,
    #[serde(default)]
    prices: BTreeMap<String, Value>,
    nodes: Vec<Value>,
    #[serde(default)]
    outages: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    capacity: RawAllocation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    protocol: String,
    allocation: RawAllocation,
    #[serde(default)]
    market: Option<RawMarket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceStep {
    at: Value,
    usd: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutage {
    node: String,
    from: Value,
    to: Value,
}

/// Reads and validates a scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, ScenarioErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diags(vec![Diag::file(
            &origin,
            format!("cannot read the scenario: {e}"),
        )])
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.clone());
    parse_str(&text, &origin, &name)
}

/// Validates scenario text; `origin` names it in messages.
pub fn parse_str(text: &str, origin: &str, name: &str) -> Result<Scenario, ScenarioErrors> {
    validate_document(text, origin, |value, d| validate(value, name, d)).map(|(s, _)| s)
}

fn dur(v: &Value, path: &str, d: &mut Diagnostics) -> Option<Duration> {
    units::duration(v).map_err(|e| d.error(path, e)).ok()
}

fn validate(value: Value, name: &str, d: &mut Diagnostics) -> Option<Scenario> {
    let raw: Raw = d.deserialize("", value)?;
    let start_ms = match &raw.start {
        None => DEFAULT_START_MS,
        Some(s) => match humantime::parse_rfc3339_weak(s) {
            Ok(t) => t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            Err(e) => {
                d.error(
                    "start",
                    format!("invalid time \"{s}\": {e}; write e.g. 2026-01-05T00:00:00Z"),
                );
                DEFAULT_START_MS
            }
        },
    };
    let mut days = 30.0;
    in_range(raw.days, 0.0, 3650.0, "days", &mut days, d);
    let mut interval = |v: &Option<Value>, key: &str, def: u64| -> Duration {
        match v {
            None => Duration::from_secs(def),
            Some(v) => match dur(v, key, d) {
                Some(x) if x.as_millis() >= 1000 => x,
                Some(_) => {
                    d.error(key, "must be at least 1s");
                    Duration::from_secs(def)
                }
                None => Duration::from_secs(def),
            },
        }
    };
    let poll_interval = interval(&raw.poll_interval, "poll_interval", 5);
    let scrape_interval = interval(&raw.scrape_interval, "scrape_interval", 15);
    let evaluation_interval = interval(&raw.evaluation_interval, "evaluation_interval", 60);
    let capacity = raw
        .host
        .capacity
        .validate("host.capacity", Allocation::default(), d);

    let prices = validate_prices(raw.prices, d);

    let mut nodes = validate_nodes(raw.nodes, start_ms, d);
    if nodes.is_empty() && !d.has_errors() {
        d.error("nodes", "a scenario needs at least one node");
    }

    apply_outages(raw.outages, start_ms, &mut nodes, d);

    // The starting allocation must fit on the host.
    if let Some(cap) = &capacity {
        check_fit(cap, &nodes, d);
    }
    if d.has_errors() {
        return None;
    }
    Some(Scenario {
        name: name.to_string(),
        start_ms,
        days,
        seed: raw.seed.unwrap_or(1),
        poll_interval,
        scrape_interval,
        evaluation_interval,
        capacity: capacity?,
        prices,
        nodes,
    })
}

/// `prices:` per token: one price in USD, or steps `{at, usd}` in time order.
fn validate_prices(
    raw: BTreeMap<String, Value>,
    d: &mut Diagnostics,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut prices = BTreeMap::new();
    for (token, v) in raw {
        let path = join_key("prices", &token);
        let steps = match v {
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let p = join_index(&path, i);
                    let Some(step) = d.deserialize::<RawPriceStep>(&p, item) else {
                        continue;
                    };
                    let at = dur(&step.at, &join_key(&p, "at"), d);
                    let mut usd = -1.0;
                    in_range(
                        Some(step.usd),
                        0.0,
                        f64::MAX,
                        &join_key(&p, "usd"),
                        &mut usd,
                        d,
                    );
                    if let Some(at) = at {
                        out.push((at.as_millis() as i64, usd));
                    }
                }
                out.sort_by_key(|s| s.0);
                out
            }
            other => match other.as_f64() {
                Some(usd) if usd.is_finite() && usd >= 0.0 => vec![(0, usd)],
                Some(usd) => {
                    d.error(
                        &path,
                        format!("must be a price in USD, 0 or more; got {usd}"),
                    );
                    Vec::new()
                }
                None => {
                    d.error(&path, "expected a number (USD) or a list of {at, usd}");
                    Vec::new()
                }
            },
        };
        prices.insert(token, steps);
    }
    prices
}

/// `nodes:`: each node's protocol, starting allocation and market.
fn validate_nodes(raw: Vec<Value>, start_ms: i64, d: &mut Diagnostics) -> Vec<NodeSpec> {
    let mut nodes: Vec<NodeSpec> = Vec::new();
    for (i, v) in raw.into_iter().enumerate() {
        let path = join_index("nodes", i);
        let Some(n) = d.deserialize::<RawNode>(&path, v) else {
            continue;
        };
        if nodes.iter().any(|o| o.name == n.name) {
            d.error(
                &join_key(&path, "name"),
                format!("duplicate node name \"{}\"", n.name),
            );
        }
        let Some(protocol) = Protocol::parse(&n.protocol) else {
            let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
            d.error(
                &join_key(&path, "protocol"),
                format!(
                    "unknown protocol \"{}\"; expected one of {}",
                    n.protocol,
                    known.join(", ")
                ),
            );
            continue;
        };
        let allocation =
            n.allocation
                .validate(&join_key(&path, "allocation"), Allocation::default(), d);
        let mut market = MarketParams::defaults(protocol);
        let mut switch_cost_usd = 0.0;
        let mut switch_downtime_ms = 0;
        if let Some(m) = &n.market {
            let sw = validate_market(m, &join_key(&path, "market"), start_ms, &mut market, d);
            switch_cost_usd = sw.cost_usd;
            switch_downtime_ms = sw.downtime_ms;
        }
        nodes.push(NodeSpec {
            name: n.name,
            protocol,
            allocation: allocation.unwrap_or_default(),
            market,
            switch_cost_usd,
            switch_downtime_ms,
            outages: Vec::new(),
        });
    }
    nodes
}

/// `outages:`: spans in which a node is down, added to the node they name.
fn apply_outages(raw: Vec<Value>, start_ms: i64, nodes: &mut [NodeSpec], d: &mut Diagnostics) {
    for (i, v) in raw.into_iter().enumerate() {
        let path = join_index("outages", i);
        let Some(o) = d.deserialize::<RawOutage>(&path, v) else {
            continue;
        };
        let from = dur(&o.from, &join_key(&path, "from"), d);
        let to = dur(&o.to, &join_key(&path, "to"), d);
        let known: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let Some(node) = nodes.iter_mut().find(|n| n.name == o.node) else {
            d.error(
                &join_key(&path, "node"),
                format!(
                    "no node named \"{}\"; the nodes are {}",
                    o.node,
                    known.join(", ")
                ),
            );
            continue;
        };
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                d.error(&join_key(&path, "to"), "must be after from");
                continue;
            }
            let span = (
                start_ms + f.as_millis() as i64,
                start_ms + t.as_millis() as i64,
            );
            node.outages.push(span);
            node.market.down.push(span);
        }
    }
}

/// The starting allocations must fit on the host.
fn check_fit(cap: &Allocation, nodes: &[NodeSpec], d: &mut Diagnostics) {
    for r in Resource::ALL {
        let used: f64 = nodes.iter().map(|n| n.allocation.get(r)).sum();
        if used > cap.get(r) * (1.0 + 1e-9) {
            d.error(
                &join_key("host.capacity", r.key()),
                format!(
                    "the starting allocations of the nodes need {} {} together, more than the host's capacity {}",
                    units::trim_float(used),
                    r.unit(),
                    units::trim_float(cap.get(r))
                ),
            );
        }
    }
}

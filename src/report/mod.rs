//! `depin-orcha report`: what the nodes earned over a period and the one before it, per node,
//! with USD/h per unit of each resource, the trend, uptime, alerts fired, every reallocation
//! with its expected and realized gain, and the gain attributable to the controller.
//!
//! The numbers come from PromQL and the reallocation history through a [`Source`]: a local one
//! over a (private copy of a) storage directory ([`local::LocalSource`]) or a running instance
//! over its query API, `/api/v1/reallocations` ([`remote::RemoteSource`]). Building the report
//! ([`build`]) is pure given the source; rendering is in [`render`]. It never changes anything.
//!
//! Earnings are the corrected history: what was credited in the period minus what the nodes
//! took back (`depin_earnings_corrections_usd_total`), each the exact difference of the
//! counter's values at the period's ends ([`earned`]; the ledger's counters never reset, so
//! no extrapolation as `increase()` does is needed), with the corrections and their causes
//! from the earnings ledger when the storage is local.

pub mod local;
pub mod remote;
pub mod render;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("query {query:?}: {message}")]
    Query { query: String, message: String },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("reallocation history: {0}")]
    History(String),
}

/// A drop of what a node reported that became final, or came back (from the earnings ledger).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Correction {
    pub t_ms: i64,
    pub node: String,
    pub stream: String,
    pub period: String,
    pub token: String,
    pub amount: f64,
    /// Why, when the node said (a satellite that disqualified it).
    pub cause: Option<String>,
    /// The node took the drop back before it became final: nothing was lost.
    pub reversed: bool,
}

/// One series of an instant result: its labels and value.
pub type Row = (BTreeMap<String, String>, f64);
/// One series of raw samples: labels and `(t ms, value)`; a NaN value ends a run.
pub type RawSeries = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// One reallocation as the report needs it (the fields of `GET /api/v1/reallocations`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reallocation {
    pub id: u64,
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub expected_gain_usd_per_hour: Option<f64>,
    #[serde(default)]
    pub realized_gain_usd_per_hour: Option<f64>,
    /// Nodes the reallocation changed.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Hours the allocation was held within the period (until the next applied reallocation
    /// of one of its nodes, or the end of the period).
    #[serde(default)]
    pub held_hours: f64,
    /// realized gain × hours held, USD.
    #[serde(default)]
    pub attributed_usd: Option<f64>,
}

/// Where the numbers come from.
pub trait Source {
    /// An instant query at `t_ms`; a vector result as rows (a scalar as one row without labels).
    fn instant(&self, query: &str, t_ms: i64) -> Result<Vec<Row>, ReportError>;
    /// Raw samples of `selector` in `(t_ms - range_ms, t_ms]`, with staleness markers as NaN.
    fn raw(&self, selector: &str, t_ms: i64, range_ms: i64) -> Result<Vec<RawSeries>, ReportError>;
    /// Every reallocation in the history, any order.
    fn reallocations(&self) -> Result<Vec<Reallocation>, ReportError>;
    /// The corrections the earnings ledger recorded, any order (none when it cannot be read,
    /// as over the query API).
    fn corrections(&self) -> Result<Vec<Correction>, ReportError> {
        Ok(Vec::new())
    }
}

/// A resource, its metric suffix, the unit a person prices it in and that unit's size.
pub const RESOURCES: [(&str, &str, f64); 4] = [
    ("cpu_cores", "core", 1.0),
    ("memory_bytes", "GiB", 1024.0 * 1024.0 * 1024.0),
    ("disk_bytes", "TB", 1e12),
    ("bandwidth_bytes_per_second", "MB/s", 1e6),
];

/// One node's numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub protocol: String,
    /// Net: credited minus corrected in the period.
    pub usd: f64,
    /// What the ledger credited in the period, USD.
    pub credited_usd: f64,
    /// What the nodes took back in the period (final corrections), USD.
    pub corrections_usd: f64,
    /// Drops that may still come back, at the end of the period, by token.
    pub pending: BTreeMap<String, f64>,
    pub usd_previous: Option<f64>,
    /// (usd - previous) / previous, when there is a previous period with earnings.
    pub change_ratio: Option<f64>,
    pub usd_per_hour: f64,
    /// Slope of the hourly earnings rate over the period, USD/h per day (linear regression).
    pub trend_usd_per_hour_per_day: Option<f64>,
    /// Token earnings in the period, by token.
    pub tokens: BTreeMap<String, f64>,
    pub tokens_previous: BTreeMap<String, f64>,
    /// USD/h per unit of each resource allocated (average allocation over the period).
    pub usd_per_hour_per_unit: BTreeMap<String, f64>,
    /// Share of the period the node answered its polls (0..1).
    pub uptime: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub start_ms: i64,
    pub end_ms: i64,
    pub period_hours: f64,
    pub nodes: Vec<NodeReport>,
    pub total_usd: f64,
    pub total_usd_previous: Option<f64>,
    /// Firing episodes per alert name in the period.
    pub alerts_fired: BTreeMap<String, usize>,
    pub reallocations: Vec<Reallocation>,
    /// Sum of realized gain × time held over the reallocations of the period, USD.
    pub controller_gain_usd: f64,
    /// Corrections and reversals of the period, oldest first.
    pub corrections: Vec<Correction>,
}

/// PromQL for the exact growth of counter `m` over the `p` ending `back` before the query
/// time (`back` empty: now; `back_p` is `back` + `p`): its value then minus its value at the
/// period's start, or its first value in the period when it started within it.
pub fn earned(m: &str, p: &str, back: Option<(&str, &str)>) -> String {
    match back {
        None => format!("{m} - ({m} offset {p} or min_over_time({m}[{p}]))"),
        Some((b, bp)) => {
            format!("({m} offset {b}) - ({m} offset {bp} or min_over_time({m}[{p}] offset {b}))")
        }
    }
}

fn dur(ms: i64) -> String {
    format!("{}s", (ms / 1000).max(1))
}

fn node_key(l: &BTreeMap<String, String>) -> (String, String) {
    (
        l.get("node").cloned().unwrap_or_default(),
        l.get("protocol").cloned().unwrap_or_default(),
    )
}

/// Counts firing episodes: a run of samples ends at a NaN (staleness marker) or at a gap longer
/// than three times the series' usual interval (a remote source does not return markers).
pub fn count_episodes(samples: &[(i64, f64)]) -> usize {
    let live: Vec<i64> = samples
        .iter()
        .filter(|s| !s.1.is_nan())
        .map(|s| s.0)
        .collect();
    let mut gaps: Vec<i64> = live.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(i64::MAX / 4);
    let mut episodes = 0;
    let mut prev: Option<i64> = None;
    let mut in_run = false;
    for &(t, v) in samples {
        if v.is_nan() {
            in_run = false;
            continue;
        }
        let continues = in_run && prev.is_some_and(|p| t - p <= usual.saturating_mul(3));
        if !continues {
            episodes += 1;
        }
        in_run = true;
        prev = Some(t);
    }
    episodes
}

type Nodes = BTreeMap<(String, String), NodeReport>;

/// The node of `k`, added when new.
fn node_entry<'a>(nodes: &'a mut Nodes, k: &(String, String)) -> &'a mut NodeReport {
    nodes.entry(k.clone()).or_insert_with(|| NodeReport {
        node: k.0.clone(),
        protocol: k.1.clone(),
        ..Default::default()
    })
}

/// Net USD (credits minus corrections), tokens and pending drops per node, for the period and
/// the one before.
fn earnings_by_node(
    src: &dyn Source,
    end_ms: i64,
    period_ms: i64,
    nodes: &mut Nodes,
) -> Result<(), ReportError> {
    let p = dur(period_ms);
    let hours = period_ms as f64 / 3_600_000.0;
    let by = "sum by (node, protocol)";
    let p2 = dur(2 * period_ms);
    let before = Some((p.as_str(), p2.as_str()));
    for (back, prev) in [(None, false), (before, true)] {
        let credited = earned("depin_earnings_usd_total", &p, back);
        let corrected = earned("depin_earnings_corrections_usd_total", &p, back);
        let mut corr: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (l, v) in src.instant(&format!("{by} ({corrected})"), end_ms)? {
            corr.insert(node_key(&l), v);
        }
        for (l, v) in src.instant(&format!("{by} ({credited})"), end_ms)? {
            let k = node_key(&l);
            let c = corr.get(&k).copied().unwrap_or(0.0);
            let n = node_entry(nodes, &k);
            if prev {
                n.usd_previous = Some(v - c);
            } else {
                n.usd = v - c;
                n.credited_usd = v;
                n.corrections_usd = c;
                n.usd_per_hour = n.usd / hours;
            }
        }
        let q = format!(
            "sum by (node, protocol, token) ({})",
            earned("depin_earnings_total", &p, back)
        );
        for (l, v) in src.instant(&q, end_ms)? {
            let token = l.get("token").cloned().unwrap_or_default();
            let n = node_entry(nodes, &node_key(&l));
            if prev {
                n.tokens_previous.insert(token, v);
            } else {
                n.tokens.insert(token, v);
            }
        }
    }
    let pending = "sum by (node, protocol, token) (depin_earnings_pending_correction) > 0";
    for (l, v) in src.instant(pending, end_ms)? {
        if let Some(n) = nodes.get_mut(&node_key(&l)) {
            n.pending
                .insert(l.get("token").cloned().unwrap_or_default(), v);
        }
    }
    Ok(())
}

/// Builds the report for `(end_ms - period_ms, end_ms]`.
pub fn build(src: &dyn Source, end_ms: i64, period_ms: i64) -> Result<Report, ReportError> {
    let p = dur(period_ms);
    let hours = period_ms as f64 / 3_600_000.0;
    let mut nodes = Nodes::new();
    let by = "sum by (node, protocol)";
    earnings_by_node(src, end_ms, period_ms, &mut nodes)?;
    for (res, unit, size) in RESOURCES {
        let q = format!("{by} (avg_over_time(depin_allocation_{res}[{p}]))");
        for (l, v) in src.instant(&q, end_ms)? {
            if let Some(n) = nodes.get_mut(&node_key(&l)) {
                if v > 0.0 {
                    n.usd_per_hour_per_unit
                        .insert(unit.to_string(), n.usd_per_hour / (v / size));
                }
            }
        }
    }
    // The hourly rate, sampled hourly over the period; its regression slope is the trend.
    let trend = format!("deriv(({by} (rate(depin_earnings_usd_total[1h])))[{p}:1h]) * 86400");
    for (l, v) in src.instant(&trend, end_ms).unwrap_or_default() {
        if let Some(n) = nodes.get_mut(&node_key(&l)) {
            n.trend_usd_per_hour_per_day = v.is_finite().then_some(v);
        }
    }
    for (l, v) in src.instant(
        &format!("avg by (node, protocol) (avg_over_time(depin_adapter_up[{p}]))"),
        end_ms,
    )? {
        node_entry(&mut nodes, &node_key(&l)).uptime = Some(v);
    }
    for n in nodes.values_mut() {
        n.change_ratio = n
            .usd_previous
            .filter(|p| *p > 0.0)
            .map(|prev| (n.usd - prev) / prev);
    }
    let mut alerts_fired = BTreeMap::new();
    for (l, samples) in src.raw("ALERTS{alertstate=\"firing\"}", end_ms, period_ms)? {
        let name = l.get("alertname").cloned().unwrap_or_default();
        *alerts_fired.entry(name).or_insert(0) += count_episodes(&samples);
    }
    let start_ms = end_ms - period_ms;
    let reallocations = attribute(src.reallocations()?, start_ms, end_ms);
    let controller_gain_usd = reallocations.iter().filter_map(|r| r.attributed_usd).sum();
    let mut corrections: Vec<Correction> = src
        .corrections()?
        .into_iter()
        .filter(|c| c.t_ms > start_ms && c.t_ms <= end_ms)
        .collect();
    corrections.sort_by_key(|c| c.t_ms);
    let nodes: Vec<NodeReport> = nodes.into_values().collect();
    let total_usd = nodes.iter().map(|n| n.usd).sum();
    let prevs: Vec<f64> = nodes.iter().filter_map(|n| n.usd_previous).collect();
    Ok(Report {
        start_ms,
        end_ms,
        period_hours: hours,
        total_usd,
        total_usd_previous: (!prevs.is_empty()).then(|| prevs.iter().sum()),
        nodes,
        alerts_fired,
        reallocations,
        controller_gain_usd,
        corrections,
    })
}

/// The reallocations of the period, oldest first, with the time each applied allocation was
/// held within the period and its realized gain over that time.
pub fn attribute(mut all: Vec<Reallocation>, start_ms: i64, end_ms: i64) -> Vec<Reallocation> {
    all.sort_by_key(|r| (r.started_ms, r.id));
    let applied: Vec<(i64, Vec<String>)> = all
        .iter()
        .filter(|r| r.outcome.as_deref() == Some("applied"))
        .map(|r| (r.finished_ms.unwrap_or(r.started_ms), r.nodes.clone()))
        .collect();
    let mut out = Vec::new();
    for mut r in all {
        let from = r.finished_ms.unwrap_or(r.started_ms);
        if r.outcome.as_deref() == Some("applied") && from <= end_ms {
            // Held until another applied reallocation touches one of its nodes.
            let until = applied
                .iter()
                .filter(|(t, nodes)| *t > from && nodes.iter().any(|n| r.nodes.contains(n)))
                .map(|(t, _)| *t)
                .min()
                .unwrap_or(end_ms)
                .min(end_ms);
            let held_ms = (until - from.max(start_ms)).max(0);
            r.held_hours = held_ms as f64 / 3_600_000.0;
            r.attributed_usd = r.realized_gain_usd_per_hour.map(|g| g * r.held_hours);
        }
        let in_period = r.started_ms > start_ms && r.started_ms <= end_ms;
        if in_period || r.held_hours > 0.0 {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests;

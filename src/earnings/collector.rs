//! The ledger as the node pipelines share it ([`Earnings`]) and as `/metrics` shows it: a
//! Prometheus collector that renders the ledger's exact totals at each gather, so no second
//! copy of a counter exists that could drift from what was journaled.
//!
//! Families (the node's labels, then the config's extra labels):
//! - `depin_earnings_total{token,network}`: credits, in token units;
//! - `depin_earnings_corrections_total{token,network}`: drops the node made final;
//! - `depin_earnings_pending_correction{token,network}`: drops that may still come back;
//! - `depin_earnings_usd_total`, `depin_earnings_corrections_usd_total`: the same in USD, each
//!   amount at its token's price when it was credited (finalized);
//! - `depin_<series>_total`: a stream counted on its own (`depin_storj_held_usd_total`);
//! - `depin_earnings_journal_damaged_lines`: journal lines skipped at start.
//!
//! `network` is left out where it is empty (kinds without networks), as Prometheus reads an
//! empty label.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use super::{Change, Ledger, LedgerError};
use crate::adapters::decimal::Decimal;
use crate::adapters::reading::{Reading, EARNINGS};

/// The ledger shared by every node pipeline, and its collector.
pub struct Earnings {
    ledger: Mutex<Ledger>,
    /// `node`, `protocol`, then the config's extra label names.
    label_names: Vec<String>,
    /// Per node, the values of `label_names`.
    nodes: Mutex<BTreeMap<String, Vec<String>>>,
    descs: Vec<Desc>,
}

const FAMILIES: [(&str, &str); 6] = [
    (
        "depin_earnings_total",
        "What the node earned, in units of the token: the ledger's credits (the first report of a node is taken whole; a drop is a correction, never a reset). Net earnings: this minus depin_earnings_corrections_total minus depin_earnings_pending_correction.",
    ),
    (
        "depin_earnings_corrections_total",
        "Drops of what the node reports that became final (a disqualification, a re-normalized estimate), in units of the token: credited once, never again.",
    ),
    (
        "depin_earnings_pending_correction",
        "Drops of what the node reports that may still come back, in units of the token.",
    ),
    (
        "depin_earnings_usd_total",
        "What the node earned, in USD: each credited amount times its token's price when it was credited (tokens without a price add nothing).",
    ),
    (
        "depin_earnings_corrections_usd_total",
        "Corrections in USD, each at its token's price when it became final.",
    ),
    (
        "depin_earnings_journal_damaged_lines",
        "Lines of the earnings journal skipped at start because they were damaged (logged with their line number).",
    ),
];

fn help_of(series: &str) -> String {
    match series {
        "storj_held_usd" => "The held-back part of Storj's gross estimate (what the satellites keep until the node's ninth month or graceful exit), in USD.".into(),
        "storj_paid_usd" => "What the satellites paid out, from the node's paystubs, in USD.".into(),
        other => format!("The node's {other} stream, counted like depin_earnings_total."),
    }
}

impl Earnings {
    /// `extra_label_names`: the config's per-node label names, in the order of the node's
    /// label values.
    pub fn new(ledger: Ledger, extra_label_names: &[String]) -> Earnings {
        let mut label_names = vec!["node".to_string(), "protocol".to_string()];
        label_names.extend(extra_label_names.iter().cloned());
        let descs = FAMILIES
            .iter()
            .filter_map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    Vec::new(),
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Earnings {
            ledger: Mutex::new(ledger),
            label_names,
            nodes: Mutex::new(BTreeMap::new()),
            descs,
        }
    }

    /// Registers the collector of `this` in `registry`.
    pub fn register(
        this: &Arc<Earnings>,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(Shared(this.clone())))
    }

    /// Tells the collector a node's label values (`node`, `protocol`, extra labels).
    pub fn add_node(&self, values: Vec<String>) {
        if let Some(node) = values.first() {
            self.nodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(node.clone(), values);
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Ledger::apply`] under the lock.
    pub fn apply(
        &self,
        node: &str,
        account: &str,
        now_ms: i64,
        readings: &[Reading],
        price: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Change, LedgerError> {
        self.lock().apply(node, account, now_ms, readings, price)
    }

    /// `depin_earnings_total` of a node and token, summed over networks (0 when unseen).
    pub fn credited(&self, node: &str, token: &str) -> f64 {
        self.sum(node, |r| {
            (r.key.series == EARNINGS && r.key.token == token).then_some(r.totals.credited)
        })
    }

    /// `depin_earnings_usd_total` of a node.
    pub fn credited_usd(&self, node: &str) -> f64 {
        self.sum(node, |r| {
            (r.key.series == EARNINGS).then_some(r.totals.credited_usd)
        })
    }

    fn sum(&self, node: &str, f: impl Fn(&super::Row) -> Option<Decimal>) -> f64 {
        let l = self.lock();
        l.rows(node)
            .iter()
            .filter_map(f)
            .fold(Decimal::ZERO, |a, x| a.checked_add(x).unwrap_or(a))
            .to_f64()
    }

    fn families(&self) -> Vec<MetricFamily> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ledger = self.lock();
        let mut fams: BTreeMap<String, MetricFamily> = BTreeMap::new();
        let mut push = |name: &str, help: &str, ty: MetricType, labels: Vec<LabelPair>, v: f64| {
            let f = fams.entry(name.to_string()).or_insert_with(|| {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(ty);
                f
            });
            let mut m = proto::Metric::from_label(labels);
            match ty {
                MetricType::COUNTER => {
                    let mut c = proto::Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                }
                _ => {
                    let mut g = proto::Gauge::default();
                    g.set_value(v);
                    m.set_gauge(g);
                }
            }
            f.mut_metric().push(m);
        };
        for (node, values) in &nodes {
            let rows = ledger.rows(node);
            if rows.is_empty() {
                continue;
            }
            let pairs = |inserted: &[(&str, &str)]| -> Vec<LabelPair> {
                let mut out = Vec::new();
                let mut add = |k: &str, v: &str| {
                    let mut p = LabelPair::default();
                    p.set_name(k.to_string());
                    p.set_value(v.to_string());
                    out.push(p);
                };
                for (k, v) in self.label_names.iter().zip(values).take(2) {
                    add(k, v);
                }
                for (k, v) in inserted {
                    if !v.is_empty() {
                        add(k, v);
                    }
                }
                for (k, v) in self.label_names.iter().zip(values).skip(2) {
                    add(k, v);
                }
                out
            };
            let (mut usd, mut corrected_usd) = (Decimal::ZERO, Decimal::ZERO);
            for r in &rows {
                let k = &r.key;
                if k.series == EARNINGS {
                    let l = || pairs(&[("token", &k.token), ("network", &k.network)]);
                    let t = &r.totals;
                    let [(total, th), (corr, ch), (pend, ph), ..] = FAMILIES;
                    push(total, th, MetricType::COUNTER, l(), t.credited.to_f64());
                    push(corr, ch, MetricType::COUNTER, l(), t.corrected.to_f64());
                    push(pend, ph, MetricType::GAUGE, l(), r.pending.to_f64());
                    usd = usd.checked_add(t.credited_usd).unwrap_or(usd);
                    corrected_usd = corrected_usd
                        .checked_add(t.corrected_usd)
                        .unwrap_or(corrected_usd);
                } else {
                    let name = format!("depin_{}_total", k.series);
                    let l = pairs(&[("network", &k.network)]);
                    push(
                        &name,
                        &help_of(&k.series),
                        MetricType::COUNTER,
                        l,
                        r.totals.credited.to_f64(),
                    );
                }
            }
            let l = pairs(&[]);
            push(
                FAMILIES[3].0,
                FAMILIES[3].1,
                MetricType::COUNTER,
                l.clone(),
                usd.to_f64(),
            );
            push(
                FAMILIES[4].0,
                FAMILIES[4].1,
                MetricType::COUNTER,
                l,
                corrected_usd.to_f64(),
            );
        }
        let damaged = ledger.open_report().damaged_lines.len() as f64;
        push(
            FAMILIES[5].0,
            FAMILIES[5].1,
            MetricType::GAUGE,
            Vec::new(),
            damaged,
        );
        fams.into_values().collect()
    }
}

struct Shared(Arc<Earnings>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.families()
    }
}

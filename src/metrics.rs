//! The metric families of `/metrics`: one `prometheus::Registry` holding the families of the
//! README's metrics reference, with help texts that give the unit. The coordinator
//! writes them; the HTTP server renders them ([`Metrics::render`]); the tsdb ingests
//! [`Metrics::gather`]. Nothing here polls or schedules.
//!
//! Labels: every per-node family has `node` (the node's config name) besides
//! `protocol`. A host often runs two nodes of one protocol (one Storj node per disk is the
//! norm), and with `protocol` alone their series would collide; `sum by (protocol)` still
//! gives the per-protocol view. The config's per-node `labels` follow, in sorted order: every
//! family carries the union of all nodes' label names, and a node without one leaves it empty,
//! which Prometheus reads as absent.

mod families;
pub mod storage;

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, HistogramVec, Opts, Registry, TextEncoder};

use self::families::{
    Registrar, ADAPTER_UP, BUILD_INFO, CONSECUTIVE_FAILURES, ENDPOINT_LAST_SUCCESS, ENDPOINT_UP,
    LAST_SUCCESS, POLL_ERRORS, TOKEN_PRICE_UPDATED, TOKEN_PRICE_USD, VALUES_SKIPPED,
};
use crate::adapters::ExtraGauge;

use crate::config::{Config, NodeConfig};
use crate::resources::{Allocation, Resource};

/// Bucket bounds of `depin_adapter_poll_duration_seconds`: from a local HTTP answer (ms) to a
/// poll cut by a timeout of up to a minute.
pub const POLL_DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric {name}: {source}")]
    Prometheus {
        name: String,
        source: prometheus::Error,
    },
    #[error("metric {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// The label values that identify one node's series: node, protocol, then the config's extra
/// labels in [`Metrics`]' order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeLabels(Vec<String>);

impl NodeLabels {
    pub fn node(&self) -> &str {
        &self.0[0]
    }

    pub fn protocol(&self) -> &str {
        &self.0[1]
    }

    /// node, protocol, then the values of the config's extra labels.
    pub fn values(&self) -> &[String] {
        &self.0
    }

    /// node, protocol, `inserted…`, extra labels.
    fn with(&self, inserted: &[&str]) -> Vec<String> {
        let mut v = Vec::with_capacity(self.0.len() + inserted.len());
        v.extend_from_slice(&self.0[..2]);
        v.extend(inserted.iter().map(|s| s.to_string()));
        v.extend_from_slice(&self.0[2..]);
        v
    }
}

/// A dynamically registered family of protocol-specific gauges.
struct ExtraFamily {
    /// The adapter's own label names (after node, protocol and the config's labels).
    own_labels: Vec<String>,
    gauge: GaugeVec,
}

pub struct Metrics {
    registry: Registry,
    extra_label_names: Vec<String>,
    endpoint_up: GaugeVec,
    endpoint_last_success: GaugeVec,
    token_price_usd: GaugeVec,
    token_price_updated: GaugeVec,
    values_skipped: CounterVec,
    allocation: [GaugeVec; 4],
    usage: [GaugeVec; 4],
    capacity: [Gauge; 4],
    adapter_up: GaugeVec,
    poll_duration: HistogramVec,
    poll_errors: CounterVec,
    last_success: GaugeVec,
    consecutive_failures: GaugeVec,
    extras: Mutex<HashMap<String, ExtraFamily>>,
}

fn reg<C: Collector + Clone + 'static>(r: &Registry, name: &str, c: C) -> Result<C, MetricsError> {
    r.register(Box::new(c.clone()))
        .map_err(|source| MetricsError::Prometheus {
            name: name.into(),
            source,
        })?;
    Ok(c)
}

fn is_metric_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

impl Metrics {
    /// The families for a config: its nodes' extra label names, its host capacity.
    pub fn for_config(config: &Config) -> Result<Metrics, MetricsError> {
        let m = Metrics::new(&config.extra_label_names())?;
        m.set_capacity(&config.host.capacity);
        for (token, price) in &config.prices {
            m.set_token_price(token, *price);
        }
        Ok(m)
    }

    /// Registers every family; `extra_label_names` are the config's per-node label names.
    pub fn new(extra_label_names: &[String]) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let mut extra: Vec<String> = extra_label_names.to_vec();
        extra.sort();
        extra.dedup();
        let f = Registrar {
            registry: &registry,
            extra: &extra,
        };
        let r = &registry;
        let token_price_usd = f.host_gauge(&TOKEN_PRICE_USD)?;
        let token_price_updated = f.host_gauge(&TOKEN_PRICE_UPDATED)?;
        let poll_duration = f.poll_duration()?;
        let build_info = f.host_gauge(&BUILD_INFO)?;
        build_info
            .with_label_values(&[
                crate::build::VERSION,
                crate::build::REVISION,
                crate::build::BRANCH,
                crate::build::RUSTC_VERSION,
            ])
            .set(1.0);
        // Process metrics (CPU seconds, resident memory, open fds, start time) on Linux.
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        r.register(Box::new(pc))
            .map_err(|source| MetricsError::Prometheus {
                name: "process_*".into(),
                source,
            })?;

        Ok(Metrics {
            endpoint_up: f.gauge(&ENDPOINT_UP)?,
            endpoint_last_success: f.gauge(&ENDPOINT_LAST_SUCCESS)?,
            token_price_usd,
            token_price_updated,
            values_skipped: f.counter(&VALUES_SKIPPED)?,
            allocation: f.per_resource("depin_allocation", "The node's share of the host")?,
            usage: f.per_resource("depin_usage", "What the node uses now")?,
            capacity: f.capacity()?,
            adapter_up: f.gauge(&ADAPTER_UP)?,
            poll_duration,
            poll_errors: f.counter(&POLL_ERRORS)?,
            last_success: f.gauge(&LAST_SUCCESS)?,
            consecutive_failures: f.gauge(&CONSECUTIVE_FAILURES)?,
            extras: Mutex::new(HashMap::new()),
            extra_label_names: extra,
            registry,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every family's current values, for the tsdb and the exposition.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The text exposition format (version 0.0.4), as `/metrics` serves it.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on invalid families, which `new` cannot register.
        if let Err(e) = TextEncoder::new().encode(&self.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode /metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The label values of a configured node.
    pub fn node_labels(&self, node: &NodeConfig) -> NodeLabels {
        self.labels_for(&node.name, node.protocol(), &node.labels)
    }

    /// The label values of a node given by its parts; labels not known to this registry are
    /// left out.
    pub fn labels_for(
        &self,
        name: &str,
        protocol: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> NodeLabels {
        let mut v = vec![name.to_string(), protocol.to_string()];
        v.extend(
            self.extra_label_names
                .iter()
                .map(|n| labels.get(n).cloned().unwrap_or_default()),
        );
        NodeLabels(v)
    }

    fn vals(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    pub fn set_capacity(&self, cap: &Allocation) {
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            self.capacity[i].set(cap.get(r));
        }
    }

    pub fn set_token_price(&self, token: &str, usd: f64) {
        self.token_price_usd.with_label_values(&[token]).set(usd);
    }

    /// Records that the token's price was fetched at `unix_seconds`.
    pub fn set_token_price_updated(&self, token: &str, unix_seconds: f64) {
        self.token_price_updated
            .with_label_values(&[token])
            .set(unix_seconds);
    }

    /// Ends a token's price series (its price expired and there is no static one).
    pub fn remove_token_price(&self, token: &str) {
        let _ = self.token_price_usd.remove_label_values(&[token]);
    }

    /// Counts a value of the node's answer that was left out (`field`: a JSON pointer or a
    /// series selector).
    pub fn count_skipped(&self, n: &NodeLabels, field: &str) {
        self.values_skipped
            .with_label_values(&Self::vals(&n.with(&[field])))
            .inc();
    }

    /// How many values of `field` were skipped for a node (0 when none).
    pub fn skipped(&self, n: &NodeLabels, field: &str) -> f64 {
        self.values_skipped
            .get_metric_with_label_values(&Self::vals(&n.with(&[field])))
            .map(|c| c.get())
            .unwrap_or(0.0)
    }

    /// The config's extra label names, in the order of [`NodeLabels::values`] after node and
    /// protocol (for collectors registered from outside, such as the earnings ledger's).
    pub fn extra_label_names(&self) -> &[String] {
        &self.extra_label_names
    }

    /// The sum of a family's samples of one node whose labels include `with` (0 when none):
    /// read from a gather, whoever registered the family.
    pub fn node_sum(&self, family: &str, n: &NodeLabels, with: &[(&str, &str)]) -> f64 {
        self.gather()
            .iter()
            .filter(|f| f.name() == family)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let has = |k: &str, v: &str| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                };
                has("node", n.node()) && with.iter().all(|(k, v)| has(k, v))
            })
            .map(|m| {
                if m.get_counter().is_some() {
                    m.get_counter().value()
                } else {
                    m.get_gauge().value()
                }
            })
            .sum()
    }

    /// The current value of `depin_earnings_total` for a node and token, over its networks.
    pub fn earnings(&self, n: &NodeLabels, token: &str) -> f64 {
        self.node_sum("depin_earnings_total", n, &[("token", token)])
    }

    /// The current value of `depin_earnings_usd_total` for a node (0 when unseen).
    pub fn earnings_usd(&self, n: &NodeLabels) -> f64 {
        self.node_sum("depin_earnings_usd_total", n, &[])
    }

    /// A secondary endpoint's state: whether its last call succeeded, and when one last did.
    pub fn set_endpoint(&self, n: &NodeLabels, endpoint: &str, up: bool, success_s: Option<f64>) {
        let v = n.with(&[endpoint]);
        self.endpoint_up
            .with_label_values(&Self::vals(&v))
            .set(if up { 1.0 } else { 0.0 });
        if let Some(t) = success_s {
            self.endpoint_last_success
                .with_label_values(&Self::vals(&v))
                .set(t);
        }
    }

    pub fn set_allocation(&self, n: &NodeLabels, r: Resource, v: f64) {
        self.allocation[r as usize]
            .with_label_values(&Self::vals(&n.0))
            .set(v);
    }

    pub fn set_usage(&self, n: &NodeLabels, r: Resource, v: Option<f64>) {
        match v {
            Some(v) => self.usage[r as usize]
                .with_label_values(&Self::vals(&n.0))
                .set(v),
            // Unknown now: the series ends rather than repeating a stale value.
            None => {
                let _ = self.usage[r as usize].remove_label_values(&Self::vals(&n.0));
            }
        }
    }

    pub fn set_up(&self, n: &NodeLabels, up: bool) {
        self.adapter_up
            .with_label_values(&Self::vals(&n.0))
            .set(if up { 1.0 } else { 0.0 });
    }

    pub fn observe_poll_duration(&self, n: &NodeLabels, seconds: f64) {
        self.poll_duration
            .with_label_values(&Self::vals(&n.0))
            .observe(seconds);
    }

    pub fn count_poll_error(&self, n: &NodeLabels, reason: &str) {
        self.poll_errors
            .with_label_values(&Self::vals(&n.with(&[reason])))
            .inc();
    }

    /// Shows every reason at 0 so `rate()` and `increase()` see the first error.
    pub fn init_poll_errors(&self, n: &NodeLabels) {
        for reason in crate::adapters::PollError::REASONS {
            self.poll_errors
                .with_label_values(&Self::vals(&n.with(&[reason])));
        }
    }

    pub fn poll_errors(&self, n: &NodeLabels, reason: &str) -> f64 {
        self.poll_errors
            .get_metric_with_label_values(&Self::vals(&n.with(&[reason])))
            .map(|c| c.get())
            .unwrap_or(0.0)
    }

    pub fn set_last_success(&self, n: &NodeLabels, unix_seconds: f64) {
        self.last_success
            .with_label_values(&Self::vals(&n.0))
            .set(unix_seconds);
    }

    pub fn set_consecutive_failures(&self, n: &NodeLabels, count: u32) {
        self.consecutive_failures
            .with_label_values(&Self::vals(&n.0))
            .set(count as f64);
    }

    /// The value of a per-node gauge family by name, for tests and the health view.
    pub fn node_gauge(&self, name: &str, n: &NodeLabels) -> Option<f64> {
        let fam = self.gather().into_iter().find(|f| f.name() == name)?;
        fam.get_metric()
            .iter()
            .find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "node" && l.value() == n.node())
            })
            .map(|m| m.get_gauge().value())
    }

    /// Sets a protocol-specific gauge; the family is registered on first use with a `depin_`
    /// prefix. Returns the key to remove it later, or why it was refused (bad name, label
    /// names that differ from the family's, a name that collides with a fixed family).
    pub fn set_extra(&self, n: &NodeLabels, g: &ExtraGauge) -> Result<ExtraKey, MetricsError> {
        let name = if g.name.starts_with("depin_") {
            g.name.clone()
        } else {
            format!("depin_{}", g.name)
        };
        if !is_metric_name(&name) {
            return Err(MetricsError::Invalid {
                name,
                reason: "not a valid metric name".into(),
            });
        }
        let own: Vec<String> = g.labels.iter().map(|(k, _)| k.clone()).collect();
        if let Some(bad) = own
            .iter()
            .find(|l| !is_label_name(l) || self.is_fixed_label(l))
        {
            return Err(MetricsError::Invalid {
                name,
                reason: format!("label name \"{bad}\" is not allowed"),
            });
        }
        let mut extras = self.extras.lock().unwrap_or_else(|e| e.into_inner());
        if !extras.contains_key(&name) {
            let mut l: Vec<String> = vec!["node".into(), "protocol".into()];
            l.extend(self.extra_label_names.iter().cloned());
            l.extend(own.iter().cloned());
            let lr: Vec<&str> = l.iter().map(String::as_str).collect();
            let help = if g.help.is_empty() {
                format!("{} as the node reports it.", g.name)
            } else {
                g.help.clone()
            };
            let gauge = GaugeVec::new(Opts::new(&name, help), &lr).map_err(|source| {
                MetricsError::Prometheus {
                    name: name.clone(),
                    source,
                }
            })?;
            self.registry
                .register(Box::new(gauge.clone()))
                .map_err(|source| MetricsError::Prometheus {
                    name: name.clone(),
                    source,
                })?;
            extras.insert(
                name.clone(),
                ExtraFamily {
                    own_labels: own.clone(),
                    gauge,
                },
            );
        }
        let fam = &extras[&name];
        if fam.own_labels != own {
            return Err(MetricsError::Invalid {
                name,
                reason: format!(
                    "labels {:?} differ from the family's {:?}",
                    own, fam.own_labels
                ),
            });
        }
        let mut values = n.0.clone();
        values.extend(g.labels.iter().map(|(_, v)| v.clone()));
        fam.gauge
            .with_label_values(&Self::vals(&values))
            .set(g.value);
        Ok(ExtraKey { name, values })
    }

    /// Ends a protocol-specific series (the node stopped reporting it, or failed).
    pub fn remove_extra(&self, key: &ExtraKey) {
        let extras = self.extras.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = extras.get(&key.name) {
            let _ = f.gauge.remove_label_values(&Self::vals(&key.values));
        }
    }

    fn is_fixed_label(&self, l: &str) -> bool {
        l == "node" || l == "protocol" || self.extra_label_names.iter().any(|x| x == l)
    }
}

/// Identifies one protocol-specific series, to remove it when it vanishes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtraKey {
    name: String,
    values: Vec<String>,
}

/// Gauges whose values are read when `/metrics` is gathered, from something that already
/// counts them (the tsdb's size, the event ring): nothing has to keep a second copy current.
/// One read serves every gauge of a gather, so a costly source (the tsdb walks its series) is
/// asked once per scrape.
pub struct ReadAtScrape {
    descs: Vec<prometheus::core::Desc>,
    gauges: Vec<Gauge>,
    read: Box<dyn Fn() -> Vec<f64> + Send + Sync>,
}

impl ReadAtScrape {
    /// `gauges`: (name, help) in the order `read` returns their values.
    pub fn new(
        gauges: &[(&str, &str)],
        read: impl Fn() -> Vec<f64> + Send + Sync + 'static,
    ) -> Result<ReadAtScrape, MetricsError> {
        let gauges = gauges
            .iter()
            .map(|(name, help)| {
                Gauge::new(*name, *help).map_err(|source| MetricsError::Prometheus {
                    name: name.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadAtScrape {
            descs: gauges.iter().flat_map(|g| g.desc()).cloned().collect(),
            gauges,
            read: Box::new(read),
        })
    }

    /// Registers the gauges in `registry`.
    pub fn register(self, registry: &Registry) -> Result<(), MetricsError> {
        let names = self
            .descs
            .iter()
            .map(|d| d.fq_name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        registry
            .register(Box::new(self))
            .map_err(|source| MetricsError::Prometheus {
                name: names,
                source,
            })
    }
}

impl Collector for ReadAtScrape {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let values = (self.read)();
        self.gauges
            .iter()
            .zip(values)
            .flat_map(|(g, v)| {
                g.set(v);
                g.collect()
            })
            .collect()
    }
}

impl crate::adapters::prices::PriceGauges for Metrics {
    fn set_price(&self, token: &str, usd: f64) {
        self.set_token_price(token, usd);
    }

    fn set_updated(&self, token: &str, unix_seconds: f64) {
        self.set_token_price_updated(token, unix_seconds);
    }

    fn remove_price(&self, token: &str) {
        self.remove_token_price(token);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn metrics_with_data() -> Metrics {
        let c = crate::config::demo();
        let m = Metrics::for_config(&c).unwrap();
        let ledger = std::sync::Arc::new(crate::earnings::Earnings::new(
            crate::earnings::Ledger::in_memory(),
            m.extra_label_names(),
        ));
        crate::earnings::Earnings::register(&ledger, m.registry()).unwrap();
        for node in &c.nodes {
            let n = m.node_labels(node);
            m.init_poll_errors(&n);
            m.set_up(&n, true);
            m.observe_poll_duration(&n, 0.003);
            m.set_last_success(&n, 1.7e9);
            m.set_consecutive_failures(&n, 0);
            ledger.add_node(n.values().to_vec());
            let glm = crate::adapters::decimal::Decimal::parse("1.5").unwrap();
            let r = [crate::adapters::reading::Reading::counter("GLM", glm)];
            ledger
                .apply(n.node(), n.node(), 0, &r, &|_| Some(0.3))
                .unwrap();
            for r in Resource::ALL {
                m.set_allocation(&n, r, 1.0);
                m.set_usage(&n, r, Some(0.5));
            }
            m.set_extra(
                &n,
                &ExtraGauge {
                    name: "storj_audit_score".into(),
                    help: "Audit score per satellite, 0 to 1.".into(),
                    labels: vec![("satellite".into(), "us1".into())],
                    value: 1.0,
                },
            )
            .unwrap();
        }
        m
    }

    #[test]
    fn exposition_has_the_documented_names() {
        let text = metrics_with_data().render();
        for name in [
            "depin_earnings_total{node=\"golem\",protocol=\"golem\",token=\"GLM\"} 1.5",
            "depin_earnings_usd_total{node=\"golem\",protocol=\"golem\"} 0.45",
            "depin_token_price_usd{token=\"STORJ\"} 0.45",
            "depin_host_capacity_cpu_cores 8",
            "depin_allocation_bandwidth_bytes_per_second{node=\"grass\",protocol=\"grass\"} 1",
            "depin_usage_memory_bytes{node=\"storj\",protocol=\"storj\"} 0.5",
            "depin_adapter_up{node=\"streamr\",protocol=\"streamr\"} 1",
            "depin_adapter_poll_duration_seconds_bucket{node=\"golem\",protocol=\"golem\",le=\"0.005\"} 1",
            "depin_adapter_poll_errors_total{node=\"golem\",protocol=\"golem\",reason=\"timeout\"} 0",
            "depin_adapter_last_success_timestamp_seconds{node=\"golem\",protocol=\"golem\"} 1700000000",
            "depin_adapter_consecutive_failures{node=\"golem\",protocol=\"golem\"} 0",
            "depin_storj_audit_score{node=\"storj\",protocol=\"storj\",satellite=\"us1\"} 1",
            "depin_orcha_build_info{branch=",
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn extra_gauges_must_keep_their_labels() {
        let m = metrics_with_data();
        let c = crate::config::demo();
        let n = m.node_labels(&c.nodes[0]);
        let other = ExtraGauge {
            name: "storj_audit_score".into(),
            help: String::new(),
            labels: vec![],
            value: 1.0,
        };
        assert!(m.set_extra(&n, &other).is_err());
        let clash = ExtraGauge {
            name: "adapter_up".into(),
            help: String::new(),
            labels: vec![],
            value: 1.0,
        };
        assert!(
            m.set_extra(&n, &clash).is_err(),
            "must not shadow a fixed family"
        );
        let bad = ExtraGauge {
            name: "a-b".into(),
            help: String::new(),
            labels: vec![],
            value: 1.0,
        };
        assert!(m.set_extra(&n, &bad).is_err());
    }

    #[test]
    fn config_labels_are_on_every_node_series() {
        let text = "host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\n\
                    nodes:\n  - {name: a, kind: sim, labels: {disk: sda}, sim: {protocol: storj, allocation: {}}}\n  \
                    - {name: b, kind: sim, sim: {protocol: grass, allocation: {}}}\n";
        let c = crate::config::parse_str(text, "t.yml").unwrap();
        let m = Metrics::for_config(&c).unwrap();
        for node in &c.nodes {
            m.set_up(&m.node_labels(node), true);
        }
        let out = m.render();
        assert!(
            out.contains("depin_adapter_up{disk=\"sda\",node=\"a\",protocol=\"storj\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("depin_adapter_up{disk=\"\",node=\"b\",protocol=\"grass\"} 1"),
            "{out}"
        );
    }

    /// Runs `promtool check metrics` on `text`: `None` when promtool is not installed (a CI
    /// run, CI=true, fails instead), else what it reported (empty when it found nothing).
    pub(crate) fn promtool_check(text: &str) -> Option<String> {
        use std::io::Write;
        let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(promtool) = promtool else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing on CI"
            );
            eprintln!("skipped: promtool is not installed");
            return None;
        };
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() && report.trim().is_empty() {
            return Some(format!("promtool exited with {}", out.status));
        }
        Some(report.trim().to_string())
    }

    /// `promtool check metrics` lints the exposition (names, units, help, types). It must find
    /// nothing. Skipped when promtool is not installed, unless CI=true.
    #[test]
    fn promtool_finds_nothing() {
        let text = metrics_with_data().render();
        if let Some(report) = promtool_check(&text) {
            assert!(
                report.is_empty(),
                "promtool check metrics:\n{report}\n---\n{text}"
            );
        }
        // The check itself works: a counter without help and _total is reported.
        if let Some(report) = promtool_check("# TYPE foo counter\nfoo 1\n") {
            assert!(!report.is_empty());
        }
    }

    #[test]
    fn read_at_scrape_gauges_show_the_value_of_the_moment() {
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
        let src = n.clone();
        let r = Registry::new();
        ReadAtScrape::new(&[("a_bytes", "A in bytes."), ("b", "B.")], move || {
            let v = src.load(std::sync::atomic::Ordering::Relaxed) as f64;
            vec![v, 2.0 * v]
        })
        .unwrap()
        .register(&r)
        .unwrap();
        let text = |r: &Registry| {
            let mut buf = Vec::new();
            TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(text(&r).contains("\na_bytes 3\n"), "{}", text(&r));
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        let t = text(&r);
        assert!(t.contains("\na_bytes 5\n") && t.contains("\nb 10\n"), "{t}");
        assert!(
            t.contains("# HELP a_bytes A in bytes.\n# TYPE a_bytes gauge\n"),
            "{t}"
        );
        // A second registration of a name is refused with the name in the error.
        let e = ReadAtScrape::new(&[("a_bytes", "again")], Vec::new)
            .unwrap()
            .register(&r)
            .unwrap_err();
        assert!(e.to_string().contains("a_bytes"), "{e}");
    }
}

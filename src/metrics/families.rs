//! The fixed families of `/metrics` as a table (name, help, the labels inserted after `node`
//! and `protocol`), and the registration of each into the registry.

use prometheus::{CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};

use super::{reg, MetricsError, POLL_DURATION_BUCKETS};
use crate::resources::Resource;

/// One family: its name, its help text and the labels it inserts between `protocol` and the
/// config's labels (per-node families), or its only labels (host-wide families).
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) labels: &'static [&'static str],
}

pub(super) const TOKEN_PRICE_USD: Family = Family {
    name: "depin_token_price_usd",
    help: "Price of one token unit, in USD.",
    labels: &["token"],
};
pub(super) const TOKEN_PRICE_UPDATED: Family = Family {
    name: "depin_token_price_last_update_timestamp_seconds",
    help: "When the token's price was last fetched from the price source, in seconds since the Unix epoch (only prices from prices.http; static prices have none).",
    labels: &["token"],
};
pub(super) const POLL_DURATION: Family = Family {
    name: "depin_adapter_poll_duration_seconds",
    help: "Time one poll of the node took, failed ones included, in seconds.",
    labels: &[],
};
pub(super) const BUILD_INFO: Family = Family {
    name: "depin_orcha_build_info",
    help: "Always 1; its labels say which depin-orcha build runs.",
    labels: &["version", "revision", "branch", "rustversion"],
};
pub(super) const ENDPOINT_UP: Family = Family {
    name: "depin_adapter_endpoint_up",
    help: "1 if the last call of the node's secondary endpoint succeeded, else 0 (its series keep their last values meanwhile).",
    labels: &["endpoint"],
};
pub(super) const ENDPOINT_LAST_SUCCESS: Family = Family {
    name: "depin_adapter_endpoint_last_success_timestamp_seconds",
    help: "When the node's secondary endpoint last answered, in seconds since the Unix epoch: the age of its series is time() minus this.",
    labels: &["endpoint"],
};
pub(super) const VALUES_SKIPPED: Family = Family {
    name: "depin_adapter_values_skipped_total",
    help: "Values in the node's answers that were left out instead of shown wrong (a wrong type, a missing field, a counter that went backwards), by field.",
    labels: &["field"],
};
pub(super) const ADAPTER_UP: Family = Family {
    name: "depin_adapter_up",
    help: "1 if the last poll of the node succeeded, else 0.",
    labels: &[],
};
pub(super) const POLL_ERRORS: Family = Family {
    name: "depin_adapter_poll_errors_total",
    help: "Failed polls of the node, by reason (timeout, refused, http_status, parse, too_large, io, other).",
    labels: &["reason"],
};
pub(super) const LAST_SUCCESS: Family = Family {
    name: "depin_adapter_last_success_timestamp_seconds",
    help: "When the node was last polled successfully, in seconds since the Unix epoch.",
    labels: &[],
};
pub(super) const CONSECUTIVE_FAILURES: Family = Family {
    name: "depin_adapter_consecutive_failures",
    help: "Polls of the node that failed in a row since its last success.",
    labels: &[],
};

/// Registers families into one registry; per-node families get `node`, `protocol`, their own
/// labels, then the config's `extra` label names.
pub(super) struct Registrar<'a> {
    pub(super) registry: &'a Registry,
    pub(super) extra: &'a [String],
}

fn prom_err(name: &str) -> impl FnOnce(prometheus::Error) -> MetricsError + '_ {
    move |source| MetricsError::Prometheus {
        name: name.into(),
        source,
    }
}

impl Registrar<'_> {
    /// node, protocol, `inserted…`, the extra labels.
    fn names(&self, inserted: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["node".into(), "protocol".into()];
        v.extend(inserted.iter().map(|s| s.to_string()));
        v.extend(self.extra.iter().cloned());
        v
    }

    pub(super) fn counter(&self, f: &Family) -> Result<CounterVec, MetricsError> {
        let l = self.names(f.labels);
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        let c = CounterVec::new(Opts::new(f.name, f.help), &l).map_err(prom_err(f.name))?;
        reg(self.registry, f.name, c)
    }

    pub(super) fn gauge(&self, f: &Family) -> Result<GaugeVec, MetricsError> {
        self.gauge_named(f.name, f.help, f.labels)
    }

    fn gauge_named(
        &self,
        name: &str,
        help: &str,
        inserted: &[&str],
    ) -> Result<GaugeVec, MetricsError> {
        let l = self.names(inserted);
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        let g = GaugeVec::new(Opts::new(name, help), &l).map_err(prom_err(name))?;
        reg(self.registry, name, g)
    }

    /// One per-node gauge per resource: `{prefix}_{resource}`.
    pub(super) fn per_resource(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<[GaugeVec; 4], MetricsError> {
        let mk = |res: Resource| {
            self.gauge_named(
                &format!("{prefix}_{}", res.key()),
                &format!("{what}, in {}.", res.unit()),
                &[],
            )
        };
        Ok([
            mk(Resource::ALL[0])?,
            mk(Resource::ALL[1])?,
            mk(Resource::ALL[2])?,
            mk(Resource::ALL[3])?,
        ])
    }

    /// The host's capacity of each resource: `depin_host_capacity_{resource}`, no labels.
    pub(super) fn capacity(&self) -> Result<[Gauge; 4], MetricsError> {
        let mk = |res: Resource| -> Result<Gauge, MetricsError> {
            let name = format!("depin_host_capacity_{}", res.key());
            let g = Gauge::with_opts(Opts::new(
                &name,
                format!("What the host can give its nodes, in {}.", res.unit()),
            ))
            .map_err(|source| MetricsError::Prometheus {
                name: name.clone(),
                source,
            })?;
            reg(self.registry, &name, g)
        };
        Ok([
            mk(Resource::ALL[0])?,
            mk(Resource::ALL[1])?,
            mk(Resource::ALL[2])?,
            mk(Resource::ALL[3])?,
        ])
    }

    /// A host-wide gauge with only the family's own labels.
    pub(super) fn host_gauge(&self, f: &Family) -> Result<GaugeVec, MetricsError> {
        let g = GaugeVec::new(Opts::new(f.name, f.help), f.labels).map_err(prom_err(f.name))?;
        reg(self.registry, f.name, g)
    }

    /// The poll-duration histogram, per node.
    pub(super) fn poll_duration(&self) -> Result<HistogramVec, MetricsError> {
        let f = &POLL_DURATION;
        let l = self.names(f.labels);
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        let opts = HistogramOpts::new(f.name, f.help).buckets(POLL_DURATION_BUCKETS.to_vec());
        let h = HistogramVec::new(opts, &l).map_err(prom_err(f.name))?;
        reg(self.registry, f.name, h)
    }
}

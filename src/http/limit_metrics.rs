//! The server's limits on `/metrics`, read when it is gathered from what counts them already
//! (the memory budget, the connection table, the stream slots): how close the API is to its
//! limits and how often they refused.

use std::sync::{Arc, Weak};

use super::conns::Connections;
use super::AppState;

/// The limits on `/metrics`, read when it is gathered: how close the API is to them and how
/// often they refused. Registering twice (a second server on one registry) keeps the first.
pub fn register(state: &Arc<AppState>, conns: &Arc<Connections>) {
    let made = LimitMetrics::new(Arc::downgrade(state), Arc::downgrade(conns));
    match made {
        Ok(m) => {
            let _ = state.registry.register(Box::new(m));
        }
        Err(e) => tracing::warn!(error = %e, "registering the limit metrics failed"),
    }
}

/// Gauges and counters read from the memory budget, the connection table and the stream slots.
struct LimitMetrics {
    state: Weak<AppState>,
    conns: Weak<Connections>,
    gauges: [prometheus::IntGauge; 4],
    counters: [prometheus::IntCounter; 2],
    descs: Vec<prometheus::core::Desc>,
}

impl LimitMetrics {
    fn new(state: Weak<AppState>, conns: Weak<Connections>) -> prometheus::Result<LimitMetrics> {
        use prometheus::core::Collector;
        let g = prometheus::IntGauge::new;
        let c = prometheus::IntCounter::new;
        let gauges = [
            g("depin_orcha_query_memory_bytes", "Memory held now by the queries and API reads running at once (what --query.max-memory limits).")?,
            g("depin_orcha_query_memory_max_bytes", "--query.max-memory.")?,
            g("depin_orcha_http_connections", "HTTP connections open now.")?,
            g("depin_orcha_http_streams", "Event streams and exports open now (what --web.max-streams limits).")?,
        ];
        let counters = [
            c("depin_orcha_query_memory_refusals_total", "Queries and API reads refused because they would have gone over --query.max-memory.")?,
            c("depin_orcha_http_connections_evicted_total", "Connections closed while they waited for a request, to make room for a new client.")?,
        ];
        let descs = gauges
            .iter()
            .flat_map(|m| m.desc())
            .chain(counters.iter().flat_map(|m| m.desc()))
            .cloned()
            .collect();
        Ok(LimitMetrics {
            state,
            conns,
            gauges,
            counters,
            descs,
        })
    }
}

impl prometheus::core::Collector for LimitMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (Some(st), Some(conns)) = (self.state.upgrade(), self.conns.upgrade()) else {
            return Vec::new();
        };
        let (open, evicted) = conns.counts();
        let streams = st
            .stream_slots_max
            .saturating_sub(st.stream_slots.available_permits());
        let now = [st.memory.used_bytes(), st.memory.max_bytes(), open, streams];
        for (g, v) in self.gauges.iter().zip(now) {
            g.set(v as i64);
        }
        for (c, v) in self.counters.iter().zip([st.memory.refusals(), evicted]) {
            // The sources count; the counters only carry their values out.
            c.reset();
            c.inc_by(v);
        }
        self.gauges
            .iter()
            .flat_map(|m| m.collect())
            .chain(self.counters.iter().flat_map(|m| m.collect()))
            .collect()
    }
}

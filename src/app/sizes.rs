//! The gauges of what grows by design, read when `/metrics` is gathered: the time series
//! storage's running counters (head, block files, WAL, query cache, failures) and the event
//! ring (bounded by count and bytes). A soak subtracts them from the resident memory to see what
//! else grows.

use std::sync::Arc;

use crate::events::Bus;
use crate::metrics::storage::StorageCollector;
use crate::metrics::{MetricsError, ReadAtScrape};
use crate::tsdb::Db;

/// What the process holds that grows with time, read when `/metrics` is gathered: the time
/// series storage's running counters (no walk over the series) and the event ring (bounded by
/// count and bytes). A soak subtracts them from the resident memory to see what else grows.
pub fn register(
    registry: &prometheus::Registry,
    db: &Arc<Db>,
    bus: &Bus,
) -> Result<(), MetricsError> {
    StorageCollector::new(db.clone())?.register(registry)?;
    let bus = bus.clone();
    ReadAtScrape::new(
        &[
            (
                "depin_events_buffered",
                "Events kept for Last-Event-ID resumption of /api/v1/events.",
            ),
            (
                "depin_events_buffered_bytes",
                "Bytes of the events kept for Last-Event-ID resumption of /api/v1/events.",
            ),
        ],
        move || vec![bus.len() as f64, bus.bytes() as f64],
    )?
    .register(registry)
}

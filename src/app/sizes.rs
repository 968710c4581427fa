//! The gauges of what grows by design, read when `/metrics` is gathered: the stored history
//! (bounded by retention and `--storage.max-bytes`), the query cache and the event ring
//! (bounded by count and bytes). A soak subtracts them from the resident memory to see what
//! else grows.

use std::sync::Arc;

use crate::events::Bus;
use crate::metrics::{MetricsError, ReadAtScrape};
use crate::tsdb::Db;

/// What the process holds that grows with time, read when `/metrics` is gathered: the stored
/// history (bounded by retention and `--storage.max-bytes`) and the event ring (bounded by
/// count and bytes). A soak subtracts them from the resident memory to see what else grows.
pub fn register(
    registry: &prometheus::Registry,
    db: &Arc<Db>,
    bus: &Bus,
) -> Result<(), MetricsError> {
    let db = db.clone();
    ReadAtScrape::new(
        &[
            ("depin_tsdb_head_series", "Series held by the time series storage."),
            ("depin_tsdb_samples", "Samples held in memory by the time series storage (sealed chunks and open heads)."),
            ("depin_tsdb_memory_bytes", "Bytes of samples, chunks and label index the time series storage holds in memory (what --storage.max-bytes limits)."),
            ("depin_tsdb_wal_storage_size_bytes", "Size of the time series storage's write-ahead log on disk (emptied by each snapshot)."),
            ("depin_tsdb_query_cache_bytes", "Bytes of decoded chunks kept for queries that read them again (bounded: 2 MiB of samples)."),
        ],
        move || {
            let st = db.stats();
            vec![
                st.series as f64,
                st.samples as f64,
                st.total_bytes as f64,
                st.wal_bytes as f64,
                db.query_cache_bytes() as f64,
            ]
        },
    )?
    .register(registry)?;
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

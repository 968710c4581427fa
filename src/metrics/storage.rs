//! The time series storage's own numbers on `/metrics`: read from the database's running
//! counters ([`Db::gauges`]) each time the registry is gathered, so a scrape costs no walk over
//! the series. The tsdb owns the numbers; this collector only names them, in Prometheus'
//! `prometheus_tsdb_*` vocabulary with our prefix.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::Registry;

use crate::metrics::MetricsError;
use crate::tsdb::{Db, Gauges};

type Read = fn(&Gauges) -> f64;

/// (name, help, type, how to read it).
const FAMILIES: &[(&str, &str, MetricType, Read)] = &[
    ("depin_tsdb_head_series", "Series the time series storage knows (with samples in memory, in block files or both).", MetricType::GAUGE, |g| g.series as f64),
    ("depin_tsdb_samples", "Samples the time series storage holds in memory (the head: sealed chunks and open heads).", MetricType::GAUGE, |g| g.head_samples as f64),
    ("depin_tsdb_head_chunks", "Sealed chunks the time series storage holds in memory.", MetricType::GAUGE, |g| g.head_chunks as f64),
    ("depin_tsdb_memory_bytes", "Bytes the time series storage holds in memory: samples, labels, postings and the tables of the loaded block files.", MetricType::GAUGE, |g| g.memory_bytes as f64),
    ("depin_tsdb_head_range_seconds", "How far back from the newest sample the head keeps samples in memory (the longest range the rules and the controller read, plus a margin).", MetricType::GAUGE, |g| g.head_range_ms as f64 / 1000.0),
    ("depin_tsdb_head_max_time_seconds", "Time of the newest sample in the time series storage.", MetricType::GAUGE, |g| g.max_time.map_or(f64::NAN, |t| t as f64 / 1000.0)),
    ("depin_tsdb_blocks_loaded", "Block files of sealed chunks the time series storage reads on demand.", MetricType::GAUGE, |g| g.blocks as f64),
    ("depin_tsdb_storage_blocks_bytes", "Bytes of the block files on disk.", MetricType::GAUGE, |g| g.block_bytes as f64),
    ("depin_tsdb_wal_storage_size_bytes", "Bytes of the write-ahead log segments on disk (every segment kept, until a snapshot covers them).", MetricType::GAUGE, |g| g.wal_bytes as f64),
    ("depin_tsdb_query_cache_bytes", "Bytes of decoded chunks kept for queries that read them again (bounded: 2 MiB of samples).", MetricType::GAUGE, |g| g.query_cache_bytes as f64),
    ("depin_tsdb_wal_write_failures_total", "Write-ahead log records of the time series storage that could not be written or fsynced (full disk, read-only or failing storage). They are kept in memory and written before the next record.", MetricType::COUNTER, |g| g.wal_write_failures as f64),
    ("depin_tsdb_snapshot_failures_total", "Failed writes of the time series storage's head to disk (block files or head snapshot); the head and the write-ahead log still hold the data.", MetricType::COUNTER, |g| g.snapshot_failures as f64),
    ("depin_tsdb_chunks_unreadable_total", "Chunks of block files that failed their checksum when read; each is skipped (and logged) once.", MetricType::COUNTER, |g| g.chunks_unreadable as f64),
    ("depin_tsdb_blocks_written_total", "Block files the time series storage wrote.", MetricType::COUNTER, |g| g.blocks_written as f64),
];

/// Reads [`Db::gauges`] at every gather.
pub struct StorageCollector {
    db: Arc<Db>,
    descs: Vec<Desc>,
}

impl StorageCollector {
    pub fn new(db: Arc<Db>) -> Result<StorageCollector, MetricsError> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, _)| {
                Desc::new(name.to_string(), help.to_string(), vec![], HashMap::new()).map_err(
                    |source| MetricsError::Prometheus {
                        name: name.to_string(),
                        source,
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(StorageCollector { db, descs })
    }

    pub fn register(self, registry: &Registry) -> Result<(), MetricsError> {
        registry
            .register(Box::new(self))
            .map_err(|source| MetricsError::Prometheus {
                name: "depin_tsdb_*".into(),
                source,
            })
    }
}

impl Collector for StorageCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let g = self.db.gauges();
        FAMILIES
            .iter()
            .map(|(name, help, kind, read)| {
                let v = read(&g);
                let mut m = proto::Metric::default();
                if *kind == MetricType::COUNTER {
                    let mut c = proto::Counter::default();
                    c.set_value(v);
                    m.set_counter(c);
                } else {
                    let mut x = proto::Gauge::default();
                    x.set_value(v);
                    m.set_gauge(x);
                }
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(*kind);
                f.mut_metric().push(m);
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    #[test]
    fn the_families_follow_the_database() {
        let db = Arc::new(Db::in_memory());
        let r = Registry::new();
        StorageCollector::new(db.clone())
            .unwrap()
            .register(&r)
            .unwrap();
        for i in 0..10 {
            db.append(&Labels::from_pairs([("__name__", "x")]), i * 1000, 1.0)
                .unwrap();
        }
        let fams = r.gather();
        let value = |name: &str| {
            let f = fams.iter().find(|f| f.name() == name).unwrap();
            let m = &f.get_metric()[0];
            match f.get_field_type() {
                MetricType::COUNTER => m.get_counter().value(),
                _ => m.get_gauge().value(),
            }
        };
        assert_eq!(value("depin_tsdb_head_series"), 1.0);
        assert_eq!(value("depin_tsdb_samples"), 10.0);
        assert_eq!(value("depin_tsdb_wal_write_failures_total"), 0.0);
        assert_eq!(value("depin_tsdb_head_max_time_seconds"), 9.0);
        assert!(value("depin_tsdb_memory_bytes") > 0.0);
        assert_eq!(fams.len(), FAMILIES.len());
    }
}

//! depin-orcha: polls the DePIN nodes on a host, keeps their time series, serves them to
//! Prometheus and evaluates rules over them. See DESIGN.md for the map of modules.

pub mod actuators;
pub mod adapters;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod events;
pub mod export;
pub mod head_range;
pub mod http;
pub mod labels;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod promql;
pub mod reallocation;
pub mod remote_write;
pub mod report;
pub mod rules;
pub mod sim;
pub mod storage_metrics;
pub mod tsdb;

/// The version and revision that `depin_orcha_build_info` and `/api/v1/status/buildinfo` report.
pub mod build {
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    pub const REVISION: &str = match option_env!("DEPIN_ORCHA_REVISION") {
        Some(r) => r,
        None => "unknown",
    };
}

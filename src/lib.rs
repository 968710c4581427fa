//! depin-orcha: polls the DePIN nodes on a host, keeps their time series, serves them to
//! Prometheus and evaluates rules over them. See DESIGN.md for the map of modules.

pub mod actuators;
pub mod adapters;
pub mod app;
pub mod build;
pub mod clock;
pub mod compat;
pub mod config;
pub mod coordinator;
pub mod events;
pub mod export;
pub mod http;
pub mod labels;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod optimizer;
pub mod promql;
pub mod reallocation;
pub mod remote_write;
pub mod report;
pub mod resources;
pub mod rules;
pub mod schema;
pub mod sim;
pub mod tsdb;

//! Safe reallocation: takes the optimizer's [`Plan`](crate::optimizer::Plan), decides whether
//! it may be carried out (gates, then pre-flight), carries it out step by step through the
//! actuators with verification and full rollback, records everything durably, measures the
//! realized gain after the hold period and undoes a move that made things worse. It owns the
//! controller loop and the control API; it never plans (that is `optimizer`) and never polls
//! on a schedule (that is `coordinator`: the controller only reads a node once before planning
//! and the actuators poll to verify).
//!
//! - `gates`: pure gate functions with verdicts a person reads.
//! - `preflight`: capacity, bounds, health and freshness, actuator reachability.
//! - `execute`: the steps (releases before grants), apply + verify, rollback, crash recovery.
//! - `history`: the durable JSON-lines log under `--storage.path`.
//! - `learning`: the learner's hourly data points under `--storage.path`.
//! - `realized`: the realized gain from the tsdb through PromQL.
//! - `controller`: the loop (`interval` of the optimization rules), dry run, pause/resume,
//!   metrics, and [`plan_once`] for `depin-orcha plan`.
//! - `reload`: re-reading the optimization rules file (SIGHUP, `/-/reload`, a change).
//! - `nodes`: the controlled nodes, with their actuators from the rules.
//!
//! Its HTTP routes are `crate::http::control`.

pub mod controller;
pub mod execute;
pub mod gates;
pub mod history;
pub mod learning;
pub mod nodes;
pub mod preflight;
pub mod realized;
pub mod reload;

pub use controller::{
    plan_once, ApplyRequest, ControlledNode, Controller, ControllerError, ControllerMetrics,
    ControllerOptions, Evaluation, HealthSource, OptimizerPlanner, PlanInput, PlanReport, Planner,
};
pub use gates::{Gate, GateReport, Verdict};
pub use history::{History, HistoryError, Outcome, Record, Source, Step};
pub use nodes::controlled_nodes;
pub use preflight::Preflight;
pub use reload::OptimizationReloader;

/// The default `rollback_margin`: a reallocation whose realized gain is a loss of more than
/// this fraction of what the host would have earned without it (and more than the market's own
/// movement, see [`realized`]) is undone. The optimization rules' `gates` has
/// no such key yet; the controller takes it as [`ControllerOptions::rollback_margin`].
pub const DEFAULT_ROLLBACK_MARGIN: f64 = 0.1;

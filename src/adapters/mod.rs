//! Adapters: one file per node kind. An adapter asks one node what it earned and what it uses
//! ([`Adapter::poll`] → [`Observation`]); a node whose resources can be moved also implements
//! [`Allocatable`]. Each kind's file holds its config block (raw serde struct + validation), its
//! [`kind::NodeSpec`] and its runtime struct, so a new kind is one file plus one line in
//! [`kind::KINDS`].
//!
//! Adapters own no metrics, no timeouts and no schedule: the coordinator polls them, cuts slow
//! polls with its own timeout and turns observations into series. A node whose answer comes
//! from several calls of unequal cost names its secondary calls ([`Adapter::endpoints`]): the
//! coordinator runs each on its own interval and timeout ([`Adapter::fetch`]), so a slow or
//! failing secondary call keeps its own last values and never takes the node down; the node is
//! up when [`Adapter::poll`], the primary call, answers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::resources::{Allocation, Resources};

pub mod conf;
pub mod decimal;
pub mod docker;
pub mod evm;
pub mod exec;
pub mod fields;
pub mod golem;
pub mod golem_invoices;
pub mod grass;
pub mod http_json;
pub mod kind;
pub mod mapping;
pub mod prices;
pub mod prometheus;
pub mod reading;
pub mod sim;
pub mod storj;
pub mod storj_payout;
pub mod streamr;

/// What a node says about itself at one poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Cumulative earnings per token of a generic kind, as the node reports them (token
    /// units, not USD), read as Prometheus counters ([`reading::Reading::counter`]).
    pub earnings: BTreeMap<String, f64>,
    /// What the node said about money, for the earnings ledger (the real kinds).
    pub readings: Vec<reading::Reading>,
    /// Who earns, as the node program identifies it (Storj's node ID, yagna's identity); the
    /// ledger keys its streams by it. `None`: the node's config name.
    pub account: Option<String>,
    /// What the node uses now; `None` where the node does not tell.
    pub usage: Resources<Option<f64>>,
    /// The share the node is configured with now; `None` where the node does not tell (the
    /// coordinator then falls back to the configured allocation).
    pub allocation: Resources<Option<f64>>,
    /// The node's own view of its health.
    pub health: Health,
    /// Protocol-specific gauges (Storj audit scores per satellite, Golem activities, …).
    pub gauges: Vec<ExtraGauge>,
    /// Values the node sent that could not be used (a wrong type, a counter that went
    /// backwards, a missing field), by the field's name (a JSON pointer or key path). The rest
    /// of the observation holds; the coordinator counts these in
    /// `depin_adapter_values_skipped_total{field}` instead of showing a wrong number.
    pub skipped: Vec<String>,
}

/// The node's own view of its health; a node that answers is `up` even when degraded.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Health {
    #[default]
    Healthy,
    /// The node answers but says something is wrong (suspended, disqualified, offline…).
    Degraded(String),
}

/// A protocol-specific gauge. The coordinator prefixes `depin_` when missing and adds the
/// `node` and `protocol` labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraGauge {
    /// Metric name in the protocol's own words and base units, e.g. `storj_audit_score`.
    pub name: String,
    /// Help text with the unit.
    pub help: String,
    /// Extra labels, e.g. `satellite`.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Why a poll failed. [`PollError::reason`] is the `reason` label of
/// `depin_adapter_poll_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The node did not answer within the poll timeout (set by the coordinator).
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection was refused: the node is not running or not listening there.
    #[error("connection refused: {0}")]
    Refused(String),
    /// The node answered with an HTTP status other than success.
    #[error("HTTP status {status}: {detail}")]
    HttpStatus { status: u16, detail: String },
    /// The node answered something we cannot read.
    #[error("cannot parse the answer: {0}")]
    Parse(String),
    /// The answer was longer than the body size limit; it was not read to the end.
    #[error("the answer is larger than the limit of {limit} bytes: {detail}")]
    TooLarge { limit: usize, detail: String },
    /// A local I/O error (a command that failed to start, a file that cannot be read).
    #[error("I/O: {0}")]
    Io(String),
    #[error("{0}")]
    Other(String),
}

impl PollError {
    /// The value of the `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Timeout(_) => "timeout",
            PollError::Refused(_) => "refused",
            PollError::HttpStatus { .. } => "http_status",
            PollError::Parse(_) => "parse",
            PollError::TooLarge { .. } => "too_large",
            PollError::Io(_) => "io",
            PollError::Other(_) => "other",
        }
    }

    /// All reasons, so the error counters can be shown at 0 before the first error.
    pub const REASONS: [&'static str; 7] = [
        "timeout",
        "refused",
        "http_status",
        "parse",
        "too_large",
        "io",
        "other",
    ];
}

impl From<crate::net::http::Error> for PollError {
    fn from(e: crate::net::http::Error) -> PollError {
        use crate::net::http::Error as E;
        match e {
            E::Timeout(d) => PollError::Timeout(d),
            E::Refused(s) => PollError::Refused(s),
            E::HttpStatus { status, detail } => PollError::HttpStatus { status, detail },
            E::Parse(s) => PollError::Parse(s),
            E::TooLarge { limit, detail } => PollError::TooLarge { limit, detail },
            E::Io(s) => PollError::Io(s),
            E::Other(s) => PollError::Other(s),
        }
    }
}

/// Why an allocation could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ActuateError {
    #[error("{resource} = {value} is out of bounds: {detail}")]
    OutOfBounds {
        resource: &'static str,
        value: f64,
        detail: String,
    },
    #[error("applying the allocation failed: {0}")]
    Failed(String),
}

pub type PollFuture<'a> = Pin<Box<dyn Future<Output = Result<Observation, PollError>> + Send + 'a>>;
pub type ActuateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ActuateError>> + Send + 'a>>;

/// Reads one node. Object safe, so the coordinator holds `Arc<dyn Adapter>`.
pub trait Adapter: Send + Sync {
    /// The node's name from the config (unique per host).
    fn name(&self) -> &str;
    /// The protocol the node runs: `storj`, `golem`, `streamr`, `grass`, or a user's word.
    fn protocol(&self) -> &str;
    /// Asks the node once. May take arbitrarily long: the caller applies the timeout.
    fn poll(&self) -> PollFuture<'_>;
    /// The actuator side of this node, if its resources can be changed.
    fn allocatable(&self) -> Option<&dyn Allocatable> {
        None
    }
    /// The node's secondary calls, each run on its own schedule (none by default).
    fn endpoints(&self) -> Vec<Endpoint> {
        Vec::new()
    }
    /// Makes the secondary call `endpoint` once; its observation carries only what that call
    /// reads (gauges, readings, skipped values).
    fn fetch(&self, endpoint: &str) -> PollFuture<'_> {
        let e = PollError::Other(format!("no endpoint {endpoint}"));
        Box::pin(std::future::ready(Err(e)))
    }
    /// The durable position `name` of this node's paging, as the ledger journaled it: given
    /// once before the first call, and after every journaled [`reading::Reading::Cursor`].
    /// A call reads from the last position given here, never from one it did not see
    /// journaled, so a crash can repeat a page but never skip or double one.
    fn set_cursor(&self, _name: &str, _value: &serde_json::Value) {}
}

/// A secondary call of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Its name, the `endpoint` label (`estimated_payout`, `satellites`).
    pub name: &'static str,
    /// How often it is called; `None`: as often as the node is polled.
    pub interval: Option<std::time::Duration>,
    /// How long one call may take.
    pub timeout: std::time::Duration,
}

/// A node whose share of the host can be changed at run time.
pub trait Allocatable: Send + Sync {
    /// The allocation in force now.
    fn allocation(&self) -> Allocation;
    /// Applies a new allocation; on error the previous one stays in force.
    fn set_allocation(&self, to: Allocation) -> ActuateFuture<'_>;
}

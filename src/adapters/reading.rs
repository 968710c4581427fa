//! What an adapter says about money: readings, which the earnings ledger (`crate::earnings`)
//! turns into counters. An adapter never decides what is credited; it says what the node
//! reported and what that value means:
//!
//! - [`Reading::Cumulative`]: a total the node keeps (Storj's month-to-date estimate, Grass'
//!   points, a status command's "confirmed" sum), with the period it restarts in, what a first
//!   sight of it means and what a drop means;
//! - [`Reading::Credit`]: new immutable records (settled invoices, payments) the adapter read
//!   past its durable cursor: each amount is credited once;
//! - [`Reading::Cursor`]: where the adapter's paging stands, journaled in the same line as the
//!   credits it read, so both happen or neither does;
//! - [`Reading::Close`]: periods of a stream the node will never report again (Storj's month
//!   before last): their pending drops are final and late readings of them are ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::decimal::Decimal;

/// The series of `depin_earnings_total`; other series names are shown as `depin_<name>_total`.
pub const EARNINGS: &str = "earnings";

/// One counted quantity of an account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    /// Unique within the account: `gross`, `held`, `paid`, `invoices`, `pool`, `points`, or a
    /// token for the generic kinds.
    pub name: String,
    /// [`EARNINGS`], or the name of a counter of its own (`storj_held_usd`).
    pub series: String,
    pub token: String,
    /// The chain network (`polygon`, `hoodi`), "" where the node has none.
    pub network: String,
}

impl StreamId {
    pub fn earnings(name: &str, token: &str, network: &str) -> StreamId {
        StreamId {
            name: name.into(),
            series: EARNINGS.into(),
            token: token.into(),
            network: network.into(),
        }
    }
}

/// What the first reading of a stream of an account never seen before means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstSight {
    /// The whole value is credited: the series starts at the node's own total.
    Credit,
    /// The value is the baseline; only growth after it is credited (Storj's previous month at
    /// a first start: it was earned before depin-orcha watched).
    Baseline,
}

/// What a value lower than the last one means.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDrop {
    /// The node took money back (a disqualification, a re-normalized estimate, a restored
    /// database): the drop is recorded as a correction, never credited again, and finalized
    /// at once with a cause or after the confirmation time without one; a value that climbs
    /// back reverses it.
    Correction,
    /// A Prometheus counter: a drop of more than [`RESET_TOLERANCE`] is a restart from 0,
    /// so the whole new value is new; a smaller drop is noise and changes nothing. For the
    /// generic kinds, whose values have no identity to tell a reset from a correction.
    Reset,
}

/// The drop, as a fraction of the last value, below which [`OnDrop::Reset`] sees noise.
pub const RESET_TOLERANCE: f64 = 0.01;

/// One statement of a node's answer about money.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    Cumulative {
        stream: StreamId,
        /// What the value restarts in: Storj's UTC month `YYYY-MM`; `all` when it never does.
        period: String,
        value: Decimal,
        /// Why a drop happened, when the node says (a satellite that disqualified the node):
        /// such a drop is final at once.
        cause: Option<String>,
        first_sight: FirstSight,
        on_drop: OnDrop,
        /// How long a drop without a cause waits for the value to come back.
        confirm: Duration,
    },
    Credit {
        stream: StreamId,
        amount: Decimal,
    },
    Cursor {
        name: String,
        value: serde_json::Value,
    },
    Close {
        /// The stream's name.
        stream: String,
        /// Periods before this one are closed.
        before: String,
    },
}

/// The period of streams that never restart.
pub const ALL_TIME: &str = "all";

impl Reading {
    /// A total that only a restart of the node program takes down (the generic kinds).
    pub fn counter(token: &str, value: Decimal) -> Reading {
        Reading::Cumulative {
            stream: StreamId::earnings(token, token, ""),
            period: ALL_TIME.into(),
            value,
            cause: None,
            first_sight: FirstSight::Credit,
            on_drop: OnDrop::Reset,
            confirm: Duration::ZERO,
        }
    }
}

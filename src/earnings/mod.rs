//! The earnings ledger: the one owner of every earnings counter. Adapters report readings
//! ([`crate::adapters::reading`]); the ledger decides what is credited, what is a correction
//! and what is a reset, keeps that state durable under `--storage.path`
//! ([`journal`]), and gives the node pipeline exact totals to show.
//!
//! Semantics (the README's config reference says it per kind):
//! - a first reading of an account never seen is taken whole (the series starts at the
//!   node's own total), unless the adapter marks it a baseline; never again after a restart of
//!   depin-orcha, because the journal says it was seen;
//! - no reset is guessed from a lower value: a new period (Storj's UTC month) is a new stream
//!   that starts at 0, a new identity is a new account; any other drop is a correction,
//!   pending until it has a cause or stayed `confirm`, reversed if the value comes back, and
//!   never credited twice. Only generic kinds (Prometheus counters) read a drop as a reset;
//! - every change is journaled and fsynced before a counter moves, so a restart or `kill -9`
//!   at any point neither adds nor loses money;
//! - amounts are exact decimals; f64 appears only on `/metrics`.
//!
//! - `state`: the state and the pure apply function;
//! - `journal`: the files, replay and compaction;
//! - `collector`: the ledger as node pipelines share it, and its families on `/metrics`.

use std::collections::BTreeMap;
use std::path::Path;

pub mod collector;
pub mod journal;
pub mod state;

#[cfg(test)]
mod tests;

use crate::adapters::decimal::Decimal;
use crate::adapters::reading::Reading;
pub use collector::Earnings;
pub use journal::{Journal, JournalError, OpenReport};
pub use state::{ApplyError, Change, Event, State, TotalKey, Totals};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// One node's counters of one series, token and network, as `/metrics` shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: TotalKey,
    pub totals: Totals,
    pub pending: Decimal,
}

/// The ledger: its state, and the journal that makes it durable (none in `simulate` and in
/// tests that do not need one).
pub struct Ledger {
    state: State,
    journal: Option<Journal>,
    report: OpenReport,
}

impl Ledger {
    /// A ledger that forgets everything when the process ends.
    pub fn in_memory() -> Ledger {
        Ledger {
            state: State::default(),
            journal: None,
            report: OpenReport::default(),
        }
    }

    /// The durable ledger under `storage` (`--storage.path`).
    pub fn open(storage: &Path) -> Result<Ledger, JournalError> {
        let (journal, state, report) = Journal::open(storage)?;
        for line in &report.damaged_lines {
            tracing::error!(
                file = %storage.join(journal::DIR).join(journal::JOURNAL).display(),
                line,
                "skipped a damaged line of the earnings journal; a copy of the file is kept beside it"
            );
        }
        if report.torn_tail {
            tracing::warn!("the earnings journal ended in a torn line (a crash while writing it); it was cut off, and the next poll reads that money again");
        }
        Ok(Ledger {
            state,
            journal: Some(journal),
            report,
        })
    }

    /// What opening found (damaged lines, a torn tail).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Applies one observation's readings of `node` (earning for `account`): journaled first,
    /// then taken in. On error nothing changed and the same readings may come again.
    pub fn apply(
        &mut self,
        node: &str,
        account: &str,
        now_ms: i64,
        readings: &[Reading],
        price: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Change, LedgerError> {
        let change = self.state.apply(node, account, now_ms, readings, price)?;
        if change.is_empty() {
            return Ok(change);
        }
        if let Some(j) = &mut self.journal {
            j.append(&change)?;
        }
        self.state.commit(&change);
        if let Some(j) = &mut self.journal {
            if j.wants_compaction() {
                // The journal holds everything already; a failed compaction only delays it.
                if let Err(e) = j.compact(&self.state) {
                    tracing::warn!(error = %e, "compacting the earnings journal failed; it keeps growing until it works");
                }
            }
        }
        Ok(change)
    }

    /// The paging positions journaled for `node`'s adapter.
    pub fn cursors(&self, node: &str) -> BTreeMap<String, serde_json::Value> {
        self.state.cursors.get(node).cloned().unwrap_or_default()
    }

    /// Every counter of `node`.
    pub fn rows(&self, node: &str) -> Vec<Row> {
        self.state
            .node_totals(node)
            .into_iter()
            .map(|(key, totals, pending)| Row {
                key,
                totals,
                pending,
            })
            .collect()
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}

//! Recording and alerting rules with Prometheus' semantics: rule files, groups, the alerting
//! state machine, templates, the manager that schedules groups, the `/api/v1/rules`,
//! `/api/v1/alerts` and `/-/reload` routes, the notifier and `test rules`.
//!
//! Files and owners:
//! - `file`: rule files in the Prometheus format (`groups: [{name, interval, limit,
//!   query_offset, labels, rules}]`), validated as `rulefmt` does, every error with
//!   `FILE:LINE:COL`.
//! - `group`, `recording`, `alerting`: one evaluation of a group at an explicit timestamp
//!   (pure and deterministic: no clock, no I/O besides the [`crate::tsdb::Db`]).
//! - `manager`: loads files, schedules groups (aligned like Prometheus' `EvalTimestamp`),
//!   reloads (atomically, keeping alert state), restores `for` state, polls the files for
//!   changes, and hands the alerts to send to a callback; its metrics (`depin_rule_*`).
//! - `template` (own helper), `notifier`, `unittest`: see their files.
//!
//! # API for the other parts
//!
//! Loading:
//! - [`load_files`]`(&[PathBuf]) -> Result<Vec<Group>, RuleErrors>` reads files (glob patterns
//!   are expanded; a pattern matching nothing is no error, as in Prometheus);
//!   [`parse_rule_file`]`(name, text)` parses text. [`RuleErrors`] displays one
//!   `FILE:LINE:COL: message` per line; `.0` is the list of [`RuleError`].
//!
//! Evaluation (what `test rules` drives with explicit timestamps):
//! - [`Group::eval`]`(&mut self, ts_ms, &Db, &Engine, &EvalContext) -> GroupEvalResult`:
//!   evaluates the rules in order at `ts_ms` (minus the group's `query_offset`), appends
//!   recording outputs, `ALERTS` and `ALERTS_FOR_STATE` and staleness markers to the Db, and
//!   returns the alerts to send now ([`Alert`], after `sendAlerts`' resend logic).
//! - [`Group::alerting_rules`] / [`AlertingRule::alerts`]: the active alerts with their state
//!   ([`ActiveAlert`]: labels, annotations, state, value, active_at, fired_at, resolved_at, …),
//!   what `alert_rule_test` compares against.
//! - [`Group::restore_for_state`]: Prometheus' `RestoreForState` from `ALERTS_FOR_STATE`.
//!
//! Running: [`manager::RuleManager`] (see its docs for what `main` calls): `new`, `load`
//! (atomic; failure keeps the old rules), `reload`, `run(shutdown, notify)` on the wall clock,
//! or `tick(now_ms)` driven by a virtual clock. HTTP: `crate::http::rules`. `check rules`:
//! [`file::check_rules_report`].

pub mod alerting;

pub mod file;
pub mod group;
pub mod manager;
pub mod notifier;
pub mod recording;
pub mod template;
pub mod unittest;

use std::fmt;

use crate::labels::Labels;

pub use alerting::{ActiveAlert, AlertState, AlertingRule};
pub use file::{load_files, parse_rule_file};
pub use group::{EvalContext, Group, GroupEvalResult, Rule, RuleFailure, RuleHealth};
pub use manager::{ManagerOptions, RuleManager};
pub use recording::RecordingRule;

/// An alert as the rules hand it to the notifier (Prometheus' `notifier.Alert`, built by
/// `rules.SendAlerts`).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels: the sample's labels without `__name__`, the rule's labels
    /// (expanded) and `alertname`. External labels are not added here (the notifier adds them,
    /// as Prometheus' notifier does).
    pub labels: Labels,
    /// The expanded annotations.
    pub annotations: Labels,
    /// When the alert started firing (`FiredAt`), milliseconds since the epoch.
    pub starts_at: i64,
    /// `ResolvedAt` for a resolved alert, else `ValidUntil` (now + 4 × max(resend delay, group
    /// interval)), milliseconds since the epoch.
    pub ends_at: i64,
    /// `externalURL` + `/graph?g0.expr=<expr>&g0.tab=1`.
    pub generator_url: String,
}

/// One error in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The file as given (or the name passed to [`parse_rule_file`]).
    pub file: String,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every error found in a set of rule files; `Display` gives one `FILE:LINE:COL: message` per
/// line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Prometheus' `strutil.TableLinkForExpression`: the generator URL path of an alert.
pub fn table_link_for_expression(expr: &str) -> String {
    let escaped: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!("/graph?g0.expr={escaped}&g0.tab=1")
}

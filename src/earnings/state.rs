//! The ledger's state and the pure function that applies one observation's readings to it:
//! `(state, readings, now, prices) → Change`, where a [`Change`] holds the after-images of
//! everything it touches. Committing a change only overwrites; replaying a journaled one
//! twice changes nothing.
//!
//! A cumulative stream keeps `reported` (the node's last value), `level` (the highest value
//! credited up to) and at most one `pending` drop. A value above `level` credits the
//! difference; a drop below it is a correction, pending until the node states a cause or it
//! stayed for the stream's confirmation time, reversed by a value that climbs back. So per
//! stream `credited − corrected − pending == reported − opening` at every step, and nothing
//! is ever credited twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adapters::decimal::Decimal;
use crate::adapters::reading::{FirstSight, OnDrop, Reading, StreamId, RESET_TOLERANCE};

/// Digits kept of a USD value computed from a price (a nano-dollar).
pub const USD_SCALE: u32 = 9;

/// A cumulative stream of one account in one period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamKey {
    pub account: String,
    pub stream: String,
    pub period: String,
}

/// A drop not yet final.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub amount: Decimal,
    pub since_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// The config node whose counters it moves.
    pub node: String,
    pub id: StreamId,
    pub reported: Decimal,
    pub level: Decimal,
    /// The value at the stream's start that was not credited.
    pub opening: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// Where a total is shown: the series, token and network of a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TotalKey {
    pub node: String,
    pub series: String,
    pub token: String,
    pub network: String,
}

impl TotalKey {
    fn of(node: &str, id: &StreamId) -> TotalKey {
        TotalKey {
            node: node.into(),
            series: id.series.clone(),
            token: id.token.clone(),
            network: id.network.clone(),
        }
    }
}

/// A node's counters of one series, token and network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub credited: Decimal,
    pub corrected: Decimal,
    /// USD of the credits, each at its token's price when credited (0 without a price).
    pub credited_usd: Decimal,
    /// USD of the corrections, each at its token's price when finalized.
    pub corrected_usd: Decimal,
}

/// Something worth telling an operator (and `report`): a correction with its cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A drop became final: never credited again.
    Corrected {
        stream: String,
        period: String,
        token: String,
        amount: Decimal,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
    /// A pending drop the node took back.
    Reversed {
        stream: String,
        period: String,
        amount: Decimal,
    },
    /// A reading of a period already closed, ignored.
    LateReading { stream: String, period: String },
}

/// The whole ledger.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Accounts whose first reading was taken: a later first reading of a stream of theirs
    /// (a new month, a new token) starts from 0.
    pub accounts: BTreeSet<String>,
    #[serde(with = "entries")]
    pub streams: BTreeMap<StreamKey, Stream>,
    /// Per account and stream name, the first period still open.
    #[serde(with = "entries")]
    pub closed_before: BTreeMap<(String, String), String>,
    /// Per node, its adapter's paging positions.
    pub cursors: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    #[serde(with = "entries")]
    pub totals: BTreeMap<TotalKey, Totals>,
    /// The last [`HISTORY`] corrections and reversals, oldest first: (time ms, node, event).
    #[serde(default)]
    pub history: Vec<(i64, String, Event)>,
}

/// Corrections and reversals kept in [`State::history`].
pub const HISTORY: usize = 1000;

/// The after-images of one observation's readings: what one journal line holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub t: i64,
    pub node: String,
    pub account: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_account: bool,
    /// Streams after the change; `None` for a stream whose period closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<(StreamKey, Option<Stream>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_before: Vec<((String, String), String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursors: Vec<(String, serde_json::Value)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub totals: Vec<(TotalKey, Totals)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

impl Change {
    /// Whether committing it would change nothing (then it need not be journaled).
    pub fn is_empty(&self) -> bool {
        !self.new_account
            && self
                .events
                .iter()
                .all(|e| matches!(e, Event::LateReading { .. }))
            && self.streams.is_empty()
            && self.closed_before.is_empty()
            && self.cursors.is_empty()
            && self.totals.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("stream {0}: an amount overflows")]
    Overflow(String),
}

/// Applies readings to a working copy of the parts of a [`State`] they touch.
struct Working<'a> {
    state: &'a State,
    change: Change,
    streams: BTreeMap<StreamKey, Option<Stream>>,
    totals: BTreeMap<TotalKey, Totals>,
    closed: BTreeMap<(String, String), String>,
    price: &'a dyn Fn(&str) -> Option<f64>,
}

fn overflow(what: &str) -> ApplyError {
    ApplyError::Overflow(what.to_string())
}

fn add(a: Decimal, b: Decimal, what: &str) -> Result<Decimal, ApplyError> {
    a.checked_add(b).ok_or_else(|| overflow(what))
}

fn sub(a: Decimal, b: Decimal, what: &str) -> Result<Decimal, ApplyError> {
    a.checked_sub(b).ok_or_else(|| overflow(what))
}

impl Working<'_> {
    fn stream(&self, k: &StreamKey) -> Option<Stream> {
        match self.streams.get(k) {
            Some(s) => s.clone(),
            None => self.state.streams.get(k).cloned(),
        }
    }

    fn totals(&mut self, k: &TotalKey) -> &mut Totals {
        if !self.totals.contains_key(k) {
            let t = self.state.totals.get(k).cloned().unwrap_or_default();
            self.totals.insert(k.clone(), t);
        }
        self.totals.get_mut(k).expect("inserted above")
    }

    fn usd(&self, token: &str, amount: Decimal) -> Decimal {
        match (self.price)(token) {
            // Exact for USD itself (Storj's amounts): no float on the way.
            Some(1.0) => amount,
            Some(p) => Decimal::from_f64(amount.to_f64() * p, USD_SCALE).unwrap_or_default(),
            None => Decimal::ZERO,
        }
    }

    fn credit(&mut self, node: &str, id: &StreamId, amount: Decimal) -> Result<(), ApplyError> {
        if amount.is_zero() {
            return Ok(());
        }
        let usd = self.usd(&id.token, amount);
        let t = self.totals(&TotalKey::of(node, id));
        t.credited = add(t.credited, amount, &id.name)?;
        t.credited_usd = add(t.credited_usd, usd, &id.name)?;
        Ok(())
    }

    fn finalize(&mut self, key: &StreamKey, s: &mut Stream) -> Result<(), ApplyError> {
        let Some(p) = s.pending.take() else {
            return Ok(());
        };
        let usd = self.usd(&s.id.token, p.amount);
        let t = self.totals(&TotalKey::of(&s.node, &s.id));
        t.corrected = add(t.corrected, p.amount, &s.id.name)?;
        t.corrected_usd = add(t.corrected_usd, usd, &s.id.name)?;
        s.level = s.reported;
        self.change.events.push(Event::Corrected {
            stream: key.stream.clone(),
            period: key.period.clone(),
            token: s.id.token.clone(),
            amount: p.amount,
            cause: p.cause,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn cumulative(
        &mut self,
        key: StreamKey,
        id: &StreamId,
        v: Decimal,
        cause: &Option<String>,
        first_sight: FirstSight,
        on_drop: OnDrop,
        confirm: Duration,
        new_account: bool,
    ) -> Result<(), ApplyError> {
        let node = self.change.node.clone();
        let closed = self
            .closed
            .get(&(key.account.clone(), key.stream.clone()))
            .or_else(|| {
                self.state
                    .closed_before
                    .get(&(key.account.clone(), key.stream.clone()))
            });
        if closed.is_some_and(|b| key.period < *b) {
            self.change.events.push(Event::LateReading {
                stream: key.stream,
                period: key.period,
            });
            return Ok(());
        }
        let now = self.change.t;
        let mut s = match self.stream(&key) {
            Some(s) => s,
            None => {
                // A first sight of an account the ledger never saw may be its baseline; any
                // other new stream (a new month, a new token) was watched from its start.
                let base = if new_account && first_sight == FirstSight::Baseline {
                    v
                } else {
                    Decimal::ZERO
                };
                // The counters exist from the stream's first reading, at 0 if nothing is new.
                self.totals(&TotalKey::of(&node, id));
                Stream {
                    node: node.clone(),
                    id: id.clone(),
                    reported: base,
                    level: base,
                    opening: base,
                    pending: None,
                }
            }
        };
        match on_drop {
            OnDrop::Reset => {
                if v >= s.level {
                    self.credit(&node, id, sub(v, s.level, &id.name)?)?;
                    s.level = v;
                } else if v.to_f64() < s.level.to_f64() * (1.0 - RESET_TOLERANCE) {
                    self.credit(&node, id, v)?;
                    s.level = v;
                }
                s.reported = v;
            }
            OnDrop::Correction => {
                if v >= s.level {
                    self.credit(&node, id, sub(v, s.level, &id.name)?)?;
                    s.level = v;
                    if let Some(p) = s.pending.take() {
                        self.change.events.push(Event::Reversed {
                            stream: key.stream.clone(),
                            period: key.period.clone(),
                            amount: p.amount,
                        });
                    }
                } else if v >= s.reported && s.pending.is_some() {
                    // Climbing back towards the level: part of the drop is reversed.
                    let p = s.pending.as_mut().expect("checked");
                    let back = sub(p.amount, sub(s.level, v, &id.name)?, &id.name)?;
                    p.amount = sub(s.level, v, &id.name)?;
                    if !back.is_zero() {
                        self.change.events.push(Event::Reversed {
                            stream: key.stream.clone(),
                            period: key.period.clone(),
                            amount: back,
                        });
                    }
                } else {
                    let since = s.pending.as_ref().map_or(now, |p| p.since_ms);
                    let cause = cause
                        .clone()
                        .or_else(|| s.pending.as_ref().and_then(|p| p.cause.clone()));
                    s.pending = Some(Pending {
                        amount: sub(s.level, v, &id.name)?,
                        since_ms: since,
                        cause,
                    });
                }
                s.reported = v;
                // A cause (the node says why its value dropped) makes the drop final at once,
                // also when the reading that brings it shows the same value as the last one.
                let due = s.pending.as_ref().is_some_and(|p| {
                    cause.is_some() || now.saturating_sub(p.since_ms) >= confirm.as_millis() as i64
                });
                if due {
                    self.finalize(&key, &mut s)?;
                }
            }
        }
        if Some(&s) != self.state.streams.get(&key) || self.streams.contains_key(&key) {
            self.streams.insert(key, Some(s));
        }
        Ok(())
    }

    fn close(&mut self, account: &str, stream: &str, before: &str) -> Result<(), ApplyError> {
        let ck = (account.to_string(), stream.to_string());
        let current = self
            .closed
            .get(&ck)
            .or_else(|| self.state.closed_before.get(&ck));
        if current.is_some_and(|c| c.as_str() >= before) {
            return Ok(());
        }
        let keys: Vec<StreamKey> = self
            .state
            .streams
            .keys()
            .chain(self.streams.keys())
            .filter(|k| k.account == account && k.stream == stream && k.period.as_str() < before)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for k in keys {
            if let Some(mut s) = self.stream(&k) {
                self.finalize(&k, &mut s)?;
            }
            self.streams.insert(k, None);
        }
        self.closed.insert(ck, before.to_string());
        Ok(())
    }
}

impl State {
    /// What `readings` of `node` (earning for `account`) at `now_ms` change. Pure: the state
    /// is untouched until [`State::commit`].
    pub fn apply(
        &self,
        node: &str,
        account: &str,
        now_ms: i64,
        readings: &[Reading],
        price: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<Change, ApplyError> {
        let new_account = !self.accounts.contains(account);
        let mut w = Working {
            state: self,
            change: Change {
                t: now_ms,
                node: node.into(),
                account: account.into(),
                new_account,
                ..Change::default()
            },
            streams: BTreeMap::new(),
            totals: BTreeMap::new(),
            closed: BTreeMap::new(),
            price,
        };
        for r in readings {
            match r {
                Reading::Cumulative {
                    stream,
                    period,
                    value,
                    cause,
                    first_sight,
                    on_drop,
                    confirm,
                } => {
                    let key = StreamKey {
                        account: account.into(),
                        stream: stream.name.clone(),
                        period: period.clone(),
                    };
                    w.cumulative(
                        key,
                        stream,
                        *value,
                        cause,
                        *first_sight,
                        *on_drop,
                        *confirm,
                        new_account,
                    )?;
                }
                Reading::Credit { stream, amount } => {
                    if !amount.is_negative() {
                        w.credit(node, stream, *amount)?;
                    }
                }
                Reading::Cursor { name, value } => {
                    // An unchanged position needs no journal line.
                    let known = self.cursors.get(node).and_then(|c| c.get(name));
                    if known != Some(value) {
                        w.change.cursors.push((name.clone(), value.clone()));
                    }
                }
                Reading::Close { stream, before } => w.close(account, stream, before)?,
            }
        }
        let mut change = w.change;
        change.streams = w.streams.into_iter().collect();
        change.closed_before = w.closed.into_iter().collect();
        change.totals = w
            .totals
            .into_iter()
            .filter(|(k, t)| self.totals.get(k) != Some(t))
            .collect();
        Ok(change)
    }

    /// Takes a change in (after it was journaled, or while replaying the journal).
    pub fn commit(&mut self, c: &Change) {
        self.accounts.insert(c.account.clone());
        for (k, s) in &c.streams {
            match s {
                Some(s) => {
                    self.streams.insert(k.clone(), s.clone());
                }
                None => {
                    self.streams.remove(k);
                }
            }
        }
        for (k, b) in &c.closed_before {
            self.closed_before.insert(k.clone(), b.clone());
        }
        for (name, v) in &c.cursors {
            self.cursors
                .entry(c.node.clone())
                .or_default()
                .insert(name.clone(), v.clone());
        }
        for (k, t) in &c.totals {
            self.totals.insert(k.clone(), t.clone());
        }
        for e in &c.events {
            if !matches!(e, Event::LateReading { .. }) {
                self.history.push((c.t, c.node.clone(), e.clone()));
            }
        }
        let over = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..over);
    }

    /// The pending drops of a node's series, token and network, summed.
    pub fn pending(&self, key: &TotalKey) -> Decimal {
        self.streams
            .values()
            .filter(|s| TotalKey::of(&s.node, &s.id) == *key)
            .filter_map(|s| s.pending.as_ref())
            .fold(Decimal::ZERO, |a, p| a.checked_add(p.amount).unwrap_or(a))
    }

    /// Every total of `node` with its pending drops.
    pub fn node_totals(&self, node: &str) -> Vec<(TotalKey, Totals, Decimal)> {
        let mut keys: BTreeSet<TotalKey> = self
            .totals
            .keys()
            .filter(|k| k.node == node)
            .cloned()
            .collect();
        keys.extend(
            self.streams
                .values()
                .filter(|s| s.node == node && s.pending.is_some())
                .map(|s| TotalKey::of(&s.node, &s.id)),
        );
        keys.into_iter()
            .map(|k| {
                let t = self.totals.get(&k).cloned().unwrap_or_default();
                let p = self.pending(&k);
                (k, t, p)
            })
            .collect()
    }
}

/// Maps with structured keys as JSON arrays of `[key, value]` pairs.
mod entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

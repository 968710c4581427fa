//! Node kind `storj`: a Storj storage node read through its dashboard API (the console server,
//! `http://127.0.0.1:14002` by default, no authentication). Each call is an endpoint of its
//! own, so a slow or failing one never takes the node down:
//!
//! - primary, `GET /api/sno/` every poll: the node's ID (the ledger's account), disk used,
//!   trash and allocated (`diskSpace.available` is the *allocated* space, so it becomes
//!   `depin_allocation_disk_bytes`), bandwidth used this month, and per satellite whether it
//!   disqualified or suspended the node;
//! - `estimated_payout`, `GET /api/sno/` then `GET /api/sno/estimated-payout` every
//!   `payout_interval` (the node ID and the satellites' state with the money): the gross
//!   month-to-date estimate (`depin_earnings_total{token="USD"}` and
//!   `depin_earnings_usd_total`) and its held-back part (`depin_storj_held_usd_total`), see
//!   [`super::storj_payout`];
//! - `satellites`, `GET /api/sno/satellites` every `satellites_interval` (at least 60 s: the
//!   call is expensive, real nodes take tens of seconds): audit, suspension and online scores;
//! - `paystubs`, `GET /api/heldamount/paystubs/{from}/{to}` every `paystubs_interval`: what
//!   the satellites paid (`depin_storj_paid_usd_total`), over the last twelve months.
//!
//! Earnings are in token `USD` (price 1): Storj pays out in STORJ, but the node only knows its
//! earnings in USD. A drop of the estimate within a month is a correction (never a reset): final
//! at once when a satellite disqualified the node (or left its list) since the last reading,
//! since the estimate leaves out such a satellite's whole month; otherwise after
//! `correction_confirm` unless the value comes back.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf;
use super::fields::number;
use super::reading::Reading;
use super::storj_payout;
use super::{Adapter, Endpoint, ExtraGauge, Health, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:14002";
/// The shortest interval between two `/api/sno/satellites` calls.
pub const MIN_SATELLITES_INTERVAL: Duration = Duration::from_secs(60);
/// The token label of Storj earnings.
pub const TOKEN: &str = storj_payout::TOKEN;

/// The validated `storj:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct StorjSpec {
    pub url: url::Url,
    pub satellites_interval: Duration,
    /// `None`: every poll of the node.
    pub payout_interval: Option<Duration>,
    pub paystubs_interval: Duration,
    /// Readings this close to 00:00 UTC on the 1st are held back (the node's clock may differ).
    pub month_boundary_guard: Duration,
    /// How long a drop without a known cause waits for the value to come back.
    pub correction_confirm: Duration,
    pub timeouts: Timeouts,
    pub allocation: Option<Allocation>,
}

/// Per-call timeouts of the secondary endpoints (the primary one has the node's poll timeout).
#[derive(Clone, Debug, PartialEq)]
pub struct Timeouts {
    pub estimated_payout: Duration,
    pub satellites: Duration,
    pub paystubs: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorj {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    satellites_interval: Option<Value>,
    #[serde(default)]
    payout_interval: Option<Value>,
    #[serde(default)]
    paystubs_interval: Option<Value>,
    #[serde(default)]
    month_boundary_guard: Option<Value>,
    #[serde(default)]
    correction_confirm: Option<Value>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default)]
    estimated_payout: Option<Value>,
    #[serde(default)]
    satellites: Option<Value>,
    #[serde(default)]
    paystubs: Option<Value>,
}

pub fn validate(block: Option<Value>, path: &str, d: &mut Diagnostics) -> Option<StorjSpec> {
    let raw: RawStorj = d.deserialize(path, conf::block_or_empty(block))?;
    let url = conf::http_url(
        raw.url.as_deref(),
        Some(DEFAULT_URL),
        &join_key(path, "url"),
        d,
    );
    let sp = join_key(path, "satellites_interval");
    let interval = conf::duration_or(
        raw.satellites_interval.as_ref(),
        MIN_SATELLITES_INTERVAL,
        &sp,
        d,
    );
    let interval = match interval {
        Some(i) if i < MIN_SATELLITES_INTERVAL => {
            d.error(
                &sp,
                format!(
                    "must be at least 60s: the satellites call is expensive on the node, got {}",
                    humantime::format_duration(i)
                ),
            );
            None
        }
        i => i,
    };
    let dur = |v: Option<&Value>, default: u64, key: &str, d: &mut Diagnostics| {
        conf::duration_or(v, Duration::from_secs(default), &join_key(path, key), d)
    };
    let payout_interval = match raw.payout_interval.as_ref() {
        None => Some(None),
        v => dur(v, 0, "payout_interval", d).map(Some),
    };
    let paystubs_interval = dur(
        raw.paystubs_interval.as_ref(),
        12 * 3600,
        "paystubs_interval",
        d,
    );
    let guard = match raw.month_boundary_guard.as_ref() {
        // 0s turns the guard off (a node whose clock is known to be right).
        Some(Value::String(s)) if s.trim() == "0s" => Some(Duration::ZERO),
        v => dur(v, 900, "month_boundary_guard", d),
    };
    let confirm = dur(
        raw.correction_confirm.as_ref(),
        6 * 3600,
        "correction_confirm",
        d,
    );
    let t = raw.timeouts.unwrap_or_default();
    let tp = join_key(path, "timeouts");
    let tdur = |v: Option<&Value>, default: u64, key: &str, d: &mut Diagnostics| {
        conf::duration_or(v, Duration::from_secs(default), &join_key(&tp, key), d)
    };
    let timeouts = match (
        tdur(t.estimated_payout.as_ref(), 30, "estimated_payout", d),
        tdur(t.satellites.as_ref(), 120, "satellites", d),
        tdur(t.paystubs.as_ref(), 60, "paystubs", d),
    ) {
        (Some(estimated_payout), Some(satellites), Some(paystubs)) => Some(Timeouts {
            estimated_payout,
            satellites,
            paystubs,
        }),
        _ => None,
    };
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(StorjSpec {
        url: url?,
        satellites_interval: interval?,
        payout_interval: payout_interval?,
        paystubs_interval: paystubs_interval?,
        month_boundary_guard: guard?,
        correction_confirm: confirm?,
        timeouts: timeouts?,
        allocation: allocation?,
    })
}

/// The runtime of a Storj node.
pub struct StorjNode {
    name: String,
    spec: StorjSpec,
    clock: SharedClock,
    state: Mutex<State>,
}

/// What the dashboard said last, for the payout readings.
#[derive(Default)]
struct State {
    /// The node's ID (`nodeID`).
    node_id: Option<String>,
    /// Satellites in the dashboard's list, and those that disqualified the node.
    satellites: BTreeSet<String>,
    disqualified: BTreeSet<String>,
    /// The same at the last journaled estimated-payout reading ([`SEEN`]): a satellite that
    /// disqualified the node or left its list since then explains a drop of the estimate.
    at_last_payout: Option<Seen>,
}

/// The cursor that keeps the satellites seen at the last payout reading across restarts.
pub const SEEN: &str = "satellites_seen";

pub const ESTIMATED_PAYOUT: &str = "estimated_payout";
pub const SATELLITES: &str = "satellites";
pub const PAYSTUBS: &str = "paystubs";

impl StorjNode {
    pub fn new(name: &str, spec: StorjSpec, clock: SharedClock) -> StorjNode {
        StorjNode {
            name: name.to_string(),
            spec,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn url(&self, path: &str) -> Result<url::Url, PollError> {
        self.spec
            .url
            .join(path)
            .map_err(|e| PollError::Other(format!("{}: {e}", self.spec.url)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get(&self, path: &str, timeout: Duration) -> Result<Json, PollError> {
        let mut req = HttpRequest::get(self.url(path)?);
        req.timeout = timeout;
        Ok(fetch_json(&req).await?)
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let mut obs = Observation::default();
        let dash = fetch_json(&HttpRequest::get(self.url("api/sno/")?)).await?;
        if !dash.is_object() {
            return Err(PollError::Parse("/api/sno/: expected a JSON object".into()));
        }
        let seen = read_dashboard(&dash, &mut obs);
        let mut st = self.lock();
        if let Some(id) = dash.get("nodeID").and_then(Json::as_str) {
            st.node_id = Some(id.to_string());
        }
        st.satellites = seen.satellites;
        st.disqualified = seen.disqualified;
        obs.account = st.node_id.clone();
        if obs.allocation.disk_bytes.is_none() {
            obs.allocation.disk_bytes = self.spec.allocation.map(|a| a.disk_bytes);
        }
        Ok(obs)
    }

    async fn satellites(&self) -> Result<Observation, PollError> {
        let v = self
            .get("api/sno/satellites", self.spec.timeouts.satellites)
            .await?;
        let mut obs = Observation::default();
        read_audits(&v, &mut obs.gauges, &mut obs.skipped);
        Ok(obs)
    }

    /// The satellites now, and the cause of a drop: satellites that disqualified the node or
    /// left its list since the last journaled estimated-payout reading.
    fn drop_cause(&self) -> (Seen, Option<String>) {
        let st = self.lock();
        let now = Seen {
            satellites: st.satellites.clone(),
            disqualified: st.disqualified.clone(),
        };
        let Some(before) = &st.at_last_payout else {
            return (now, None);
        };
        let mut why: Vec<String> = now
            .disqualified
            .difference(&before.disqualified)
            .map(|s| format!("disqualified by {s}"))
            .collect();
        why.extend(
            before
                .satellites
                .difference(&now.satellites)
                .map(|s| format!("{s} left the node's satellite list")),
        );
        (now, (!why.is_empty()).then(|| why.join(", ")))
    }

    async fn estimated_payout(&self) -> Result<Observation, PollError> {
        // The node ID (the ledger's account) and the satellites' state are read with the
        // money, as Storj's own dashboard does: a node reinstalled since the last dashboard
        // poll has a new ID, and its estimate must not count as a drop of the old one.
        self.poll_once().await?;
        let v = self
            .get(
                "api/sno/estimated-payout",
                self.spec.timeouts.estimated_payout,
            )
            .await?;
        if !v.is_object() {
            return Err(PollError::Parse(
                "/api/sno/estimated-payout: expected a JSON object".into(),
            ));
        }
        let mut obs = Observation {
            account: self.lock().node_id.clone(),
            ..Default::default()
        };
        let (seen, cause) = self.drop_cause();
        let cx = storj_payout::PayoutContext {
            now_ms: self.clock.now_ms(),
            cause,
            confirm: self.spec.correction_confirm,
            guard: self.spec.month_boundary_guard,
            skipped: &mut obs.skipped,
        };
        obs.readings = storj_payout::estimated_payout(&v, cx);
        if !obs.readings.is_empty() {
            let value = serde_json::to_value(&seen).map_err(|e| PollError::Other(e.to_string()))?;
            obs.readings.push(Reading::Cursor {
                name: SEEN.into(),
                value,
            });
        }
        if let Ok(cents) = number(&v, "/currentMonthExpectations") {
            obs.gauges.push(gauge(
                "storj_payout_month_expected_usd",
                "The node's projection of this month's total payout, USD.",
                vec![],
                cents / 100.0,
            ));
        }
        Ok(obs)
    }

    async fn paystubs(&self) -> Result<Observation, PollError> {
        self.poll_once().await?;
        let now = self.clock.now_ms();
        let from = storj_payout::months_back(now, 12);
        let to = storj_payout::period_of(now);
        let v = self
            .get(
                &format!("api/heldamount/paystubs/{from}/{to}"),
                self.spec.timeouts.paystubs,
            )
            .await?;
        let mut obs = Observation {
            account: self.lock().node_id.clone(),
            ..Default::default()
        };
        obs.readings =
            storj_payout::paystubs(&v, &from, self.spec.correction_confirm, &mut obs.skipped);
        Ok(obs)
    }
}

fn gauge(name: &str, help: &str, labels: Vec<(String, String)>, value: f64) -> ExtraGauge {
    ExtraGauge {
        name: name.into(),
        help: help.into(),
        labels,
        value,
    }
}

/// `us1.storj.io:7777` → `us1.storj.io`, the satellite label (as the sim nodes write it).
fn satellite_label(s: &str) -> String {
    match s.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
        _ => s.to_string(),
    }
}

/// The satellites of a dashboard answer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    satellites: BTreeSet<String>,
    disqualified: BTreeSet<String>,
}

/// Disk, bandwidth and per-satellite status from `/api/sno/`.
fn read_dashboard(dash: &Json, obs: &mut Observation) -> Seen {
    let mut seen = Seen::default();
    let used = number(dash, "/diskSpace/used");
    let trash = number(dash, "/diskSpace/trash");
    match (&used, &trash) {
        (Ok(u), Ok(t)) => obs.usage.disk_bytes = Some(u + t),
        (Ok(u), Err(_)) => obs.usage.disk_bytes = Some(*u),
        _ => {}
    }
    for (field, name, help) in [
        (
            &used,
            "storj_disk_used_bytes",
            "Disk space used by pieces, bytes.",
        ),
        (
            &trash,
            "storj_disk_trash_bytes",
            "Disk space used by trash (deleted pieces kept a few days), bytes.",
        ),
    ] {
        match field {
            Ok(v) => obs.gauges.push(gauge(name, help, vec![], *v)),
            Err(f) => obs.skipped.push(f.clone()),
        }
    }
    match number(dash, "/diskSpace/available") {
        Ok(v) if v >= 0.0 => obs.allocation.disk_bytes = Some(v),
        Ok(_) => obs.skipped.push("/diskSpace/available".into()),
        Err(f) => obs.skipped.push(f),
    }
    match number(dash, "/bandwidth/used") {
        Ok(v) => obs.gauges.push(gauge(
            "storj_bandwidth_month_bytes",
            "Bandwidth used this month (ingress and egress), bytes.",
            vec![],
            v,
        )),
        Err(f) => obs.skipped.push(f),
    }
    let mut trouble = Vec::new();
    if let Some(sats) = dash.get("satellites").and_then(Json::as_array) {
        for (i, s) in sats.iter().enumerate() {
            let Some(url) = s
                .get("url")
                .and_then(Json::as_str)
                .or_else(|| s.get("id").and_then(Json::as_str))
            else {
                obs.skipped.push(format!("/satellites/{i}/url"));
                continue;
            };
            let sat = satellite_label(url);
            seen.satellites.insert(sat.clone());
            if matches!(s.get("disqualified"), Some(Json::String(_))) {
                seen.disqualified.insert(sat.clone());
            }
            for (key, name, help) in [
                (
                    "disqualified",
                    "storj_disqualified",
                    "1 when the satellite has disqualified the node (permanent), else 0.",
                ),
                (
                    "suspended",
                    "storj_suspended",
                    "1 when the satellite has suspended the node, else 0.",
                ),
            ] {
                // RFC3339 timestamp when it happened, null otherwise.
                let v = match s.get(key) {
                    None | Some(Json::Null) => 0.0,
                    Some(Json::String(_)) => {
                        trouble.push(format!("{key} on {sat}"));
                        1.0
                    }
                    Some(_) => {
                        obs.skipped.push(format!("/satellites/{i}/{key}"));
                        continue;
                    }
                };
                obs.gauges.push(gauge(
                    name,
                    help,
                    vec![("satellite".into(), sat.clone())],
                    v,
                ));
            }
        }
    }
    if !trouble.is_empty() {
        obs.health = Health::Degraded(trouble.join(", "));
    }
    seen
}

/// Scores per satellite from `/api/sno/satellites` (`audits` is an array there; the
/// single-satellite call has one object, accepted too).
fn read_audits(v: &Json, gauges: &mut Vec<ExtraGauge>, skipped: &mut Vec<String>) {
    let audits: Vec<&Json> = match v.get("audits") {
        Some(Json::Array(a)) => a.iter().collect(),
        Some(o @ Json::Object(_)) => vec![o],
        _ => {
            skipped.push("/audits".into());
            return;
        }
    };
    for (i, a) in audits.into_iter().enumerate() {
        let Some(sat) = a.get("satelliteName").and_then(Json::as_str) else {
            skipped.push(format!("/audits/{i}/satelliteName"));
            continue;
        };
        let sat = satellite_label(sat);
        for (key, name, help) in [
            (
                "auditScore",
                "storj_audit_score",
                "Audit score per satellite, 0 to 1 (disqualification below 0.96).",
            ),
            (
                "suspensionScore",
                "storj_suspension_score",
                "Suspension (unknown audit) score per satellite, 0 to 1 (suspension below 0.6).",
            ),
            (
                "onlineScore",
                "storj_online_score",
                "Online score per satellite, 0 to 1 (suspension below 0.6).",
            ),
        ] {
            match number(a, &format!("/{key}")) {
                Ok(x) if (0.0..=1.0).contains(&x) => gauges.push(gauge(
                    name,
                    help,
                    vec![("satellite".into(), sat.clone())],
                    x,
                )),
                _ => skipped.push(format!("/audits/{i}/{key}")),
            }
        }
    }
}

impl Adapter for StorjNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        "storj"
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(self.poll_once())
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        vec![
            Endpoint {
                name: ESTIMATED_PAYOUT,
                interval: self.spec.payout_interval,
                timeout: self.spec.timeouts.estimated_payout,
            },
            Endpoint {
                name: SATELLITES,
                interval: Some(self.spec.satellites_interval),
                timeout: self.spec.timeouts.satellites,
            },
            Endpoint {
                name: PAYSTUBS,
                interval: Some(self.spec.paystubs_interval),
                timeout: self.spec.timeouts.paystubs,
            },
        ]
    }

    fn fetch(&self, endpoint: &str) -> PollFuture<'_> {
        match endpoint {
            ESTIMATED_PAYOUT => Box::pin(self.estimated_payout()),
            SATELLITES => Box::pin(self.satellites()),
            PAYSTUBS => Box::pin(self.paystubs()),
            other => {
                let e = PollError::Other(format!("no endpoint {other}"));
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }

    fn set_cursor(&self, name: &str, value: &Json) {
        if name != SEEN {
            return;
        }
        match serde_json::from_value::<Seen>(value.clone()) {
            Ok(s) => self.lock().at_last_payout = Some(s),
            Err(e) => {
                tracing::warn!(node = %self.name, error = %e, "cannot read the journaled satellites; a drop of the estimate waits for correction_confirm")
            }
        }
    }
}

impl super::kind::NodeSpec for StorjSpec {
    fn kind(&self) -> &'static str {
        "storj"
    }

    fn protocol(&self) -> &str {
        "storj"
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        vec![TOKEN.to_string()]
    }

    fn build(
        &self,
        name: &str,
        clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(StorjNode::new(name, self.clone(), clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satellite_labels_drop_the_port() {
        assert_eq!(satellite_label("us1.storj.io:7777"), "us1.storj.io");
        assert_eq!(satellite_label("12EayRS2V1k"), "12EayRS2V1k");
    }
}

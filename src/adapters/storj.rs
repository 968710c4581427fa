//! Node kind `storj`: a Storj storage node read through its dashboard API (the console server,
//! `http://127.0.0.1:14002` by default, no authentication).
//!
//! - `GET /api/sno/` every poll: disk used, trash and allocated (`diskSpace.available` is the
//!   *allocated* space, so it becomes `depin_allocation_disk_bytes`), bandwidth used this
//!   month, and per satellite whether it disqualified or suspended the node.
//! - `GET /api/sno/satellites` at most once per `satellites_interval` (at least 60 s: the call
//!   is expensive on the node): audit, suspension and online scores per satellite, repeated
//!   from the cache between calls.
//! - `GET /api/sno/estimated-payout` every poll: `currentMonth.payout`, US cents.
//!
//! Earnings are reported in token `USD` (price 1, added to the price table when missing):
//! Storj pays out in STORJ, but the node only knows its earnings in USD, and converting them
//! to STORJ at today's price to convert them back would only add noise. The estimate restarts
//! every UTC month; the coordinator's reset handling turns it into a monotonic counter. A drop
//! *within* a month is not a reset: it is skipped (counted in
//! `depin_adapter_values_skipped_total{field="/currentMonth/payout"}`) unless it persists for
//! [`DROP_CONFIRMATIONS`] polls (a reinstalled node), after which the lower value is taken.
//! `payout` is the gross estimate; the part held back (`held`) is included.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf;
use super::fields::number;
use super::{Adapter, ExtraGauge, Health, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:14002";
/// The shortest interval between two `/api/sno/satellites` calls.
pub const MIN_SATELLITES_INTERVAL: Duration = Duration::from_secs(60);
/// Polls in a row that must show a lower payout in the same month before it is believed.
pub const DROP_CONFIRMATIONS: u32 = 3;
/// The token label of Storj earnings.
pub const TOKEN: &str = "USD";

/// The validated `storj:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct StorjSpec {
    pub url: url::Url,
    pub satellites_interval: Duration,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorj {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    satellites_interval: Option<Value>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
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
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(StorjSpec {
        url: url?,
        satellites_interval: interval?,
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

#[derive(Default)]
struct State {
    /// Clock time of the last successful satellites call, and its gauges.
    satellites_at_ms: Option<i64>,
    satellite_gauges: Vec<ExtraGauge>,
    payout: PayoutTracker,
}

/// Tells a monthly restart of the payout estimate from a value that went backwards.
#[derive(Default, Debug)]
pub struct PayoutTracker {
    /// The month (its end, ms) and the last value accepted.
    last: Option<(i64, f64)>,
    drops: u32,
}

impl PayoutTracker {
    /// `Some(value)` to report, `None` to skip it.
    pub fn accept(&mut self, now_ms: i64, usd: f64) -> Option<f64> {
        let month = crate::compat::calendar::next_month_start_ms(now_ms);
        match self.last {
            Some((m, prev)) if m == month && usd < prev => {
                self.drops += 1;
                if self.drops < DROP_CONFIRMATIONS {
                    return None;
                }
            }
            _ => {}
        }
        self.drops = 0;
        self.last = Some((month, usd));
        Some(usd)
    }
}

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

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let now = self.clock.now_ms();
        let mut obs = Observation::default();
        let dash = fetch_json(&HttpRequest::get(self.url("api/sno/")?)).await?;
        if !dash.is_object() {
            return Err(PollError::Parse("/api/sno/: expected a JSON object".into()));
        }
        read_dashboard(&dash, &mut obs);

        let due = {
            let st = self.lock();
            st.satellites_at_ms
                .is_none_or(|t| now - t >= self.spec.satellites_interval.as_millis() as i64)
        };
        if due {
            let got = fetch_json(&HttpRequest::get(self.url("api/sno/satellites")?)).await;
            let mut st = self.lock();
            match got {
                Ok(v) => {
                    let mut gauges = Vec::new();
                    read_audits(&v, &mut gauges, &mut obs.skipped);
                    st.satellite_gauges = gauges;
                    st.satellites_at_ms = Some(now);
                }
                Err(e) => {
                    // The node answers; only its scores are unknown until the next try.
                    tracing::debug!(node = %self.name, error = %e, "satellites call failed");
                    st.satellite_gauges.clear();
                    st.satellites_at_ms = Some(now);
                    obs.skipped.push("/api/sno/satellites".into());
                }
            }
        }
        obs.gauges
            .extend(self.lock().satellite_gauges.iter().cloned());

        let payout = fetch_json(&HttpRequest::get(self.url("api/sno/estimated-payout")?)).await?;
        match number(&payout, "/currentMonth/payout") {
            Ok(cents) if cents >= 0.0 => {
                if let Some(usd) = self.lock().payout.accept(now, cents / 100.0) {
                    obs.earnings.insert(TOKEN.into(), usd);
                } else {
                    obs.skipped.push("/currentMonth/payout".into());
                }
            }
            _ => obs.skipped.push("/currentMonth/payout".into()),
        }
        if let Ok(cents) = number(&payout, "/currentMonthExpectations") {
            obs.gauges.push(gauge(
                "storj_payout_month_expected_usd",
                "The node's projection of this month's total payout, USD.",
                vec![],
                cents / 100.0,
            ));
        }
        if obs.allocation.disk_bytes.is_none() {
            obs.allocation.disk_bytes = self.spec.allocation.map(|a| a.disk_bytes);
        }
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

/// Disk, bandwidth and per-satellite status from `/api/sno/`.
fn read_dashboard(dash: &Json, obs: &mut Observation) {
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

    const JAN: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn a_drop_within_the_month_is_skipped_a_new_month_is_not() {
        let mut t = PayoutTracker::default();
        let day = 86_400_000;
        assert_eq!(t.accept(JAN + day, 1.0), Some(1.0));
        assert_eq!(t.accept(JAN + 2 * day, 1.5), Some(1.5));
        assert_eq!(t.accept(JAN + 3 * day, 0.2), None, "same month: skipped");
        assert_eq!(t.accept(JAN + 3 * day, 1.6), Some(1.6));
        // February: the estimate restarts.
        assert_eq!(t.accept(JAN + 32 * day, 0.1), Some(0.1));
        // A reinstalled node: the lower value persists and is believed at the third poll.
        assert_eq!(t.accept(JAN + 33 * day, 0.05), None);
        assert_eq!(t.accept(JAN + 33 * day, 0.05), None);
        assert_eq!(t.accept(JAN + 33 * day, 0.05), Some(0.05));
    }

    #[test]
    fn satellite_labels_drop_the_port() {
        assert_eq!(satellite_label("us1.storj.io:7777"), "us1.storj.io");
        assert_eq!(satellite_label("12EayRS2V1k"), "12EayRS2V1k");
    }
}

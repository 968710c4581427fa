//! Node kind `golem`: a Golem provider (yagna + ya-provider).
//!
//! Earnings in GLM, from one of two sources (`earnings:`):
//! - `invoices` (default): yagna's REST API (`http://127.0.0.1:7465`, `Authorization: Bearer
//!   <app-key>`), `GET /payment-api/v1/invoices?afterTimestamp=…&maxItems=…`. An invoice counts
//!   as earned once its status is `SETTLED` (paid on chain); with `count_accepted: true` also
//!   once `ACCEPTED` (the requestor agreed to pay, the payment may still fail). Amounts are
//!   decimal strings summed exactly ([`super::decimal`]); each invoice is counted once by
//!   `invoiceId`, so the total never goes backwards. The first poll reads the invoices of the
//!   last `lookback` (default 30 days): the counter starts at that sum.
//! - `status`: the JSON of `yagna payment status --json` run as a command (argv, no shell):
//!   `incoming.confirmed` (plus `accepted` with `count_accepted`), either the newer shape
//!   `{"totalAmount": "1.2", "agreementsCount": 25}` or the older plain decimal. Run it without
//!   `--last`, so the amounts are totals.
//!
//! Allocation: the active profile of ya-provider's `hardware.json` (`hardware_file`):
//! `cpu_threads` → cores, `mem_gib` and `storage_gib` → bytes (GiB = 2^30). It is read at each
//! poll (the provider itself watches the file).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::decimal::Decimal;
use super::exec::run_json;
use super::fields::decimal;
use super::{Adapter, ExtraGauge, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7465";
pub const APP_KEY_ENV: &str = "YAGNA_APPKEY";
pub const TOKEN: &str = "GLM";
const GIB: f64 = 1_073_741_824.0;
/// Invoices asked for per call; the next poll continues after the last one seen.
pub const MAX_ITEMS: usize = 1000;

#[derive(Clone, Debug, PartialEq)]
pub enum Earnings {
    Invoices { lookback: Duration },
    Status { command: Vec<String> },
}

/// The validated `golem:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct GolemSpec {
    pub url: url::Url,
    /// Required with `earnings: invoices`.
    pub app_key: Option<Credential>,
    pub earnings: Earnings,
    pub count_accepted: bool,
    pub hardware_file: Option<PathBuf>,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGolem {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    app_key_file: Option<String>,
    #[serde(default)]
    app_key_env: Option<String>,
    #[serde(default)]
    earnings: Option<String>,
    #[serde(default)]
    lookback: Option<Value>,
    #[serde(default)]
    status_command: Option<Vec<String>>,
    #[serde(default)]
    count_accepted: Option<bool>,
    #[serde(default)]
    hardware_file: Option<String>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<GolemSpec> {
    let raw: RawGolem = d.deserialize(path, conf::block_or_empty(block))?;
    let url = conf::http_url(
        raw.url.as_deref(),
        Some(DEFAULT_URL),
        &join_key(path, "url"),
        d,
    );
    let lookback = conf::duration_or(
        raw.lookback.as_ref(),
        Duration::from_secs(30 * 86_400),
        &join_key(path, "lookback"),
        d,
    );
    let earnings = match raw.earnings.as_deref() {
        None | Some("invoices") => lookback.map(|lookback| Earnings::Invoices { lookback }),
        Some("status") => match raw.status_command.clone() {
            Some(c) if !c.is_empty() && !c[0].is_empty() => Some(Earnings::Status { command: c }),
            Some(_) => {
                d.error(
                    &join_key(path, "status_command"),
                    "must name a program, e.g. [yagna, payment, status, --json]",
                );
                None
            }
            None => Some(Earnings::Status {
                command: ["yagna", "payment", "status", "--json"]
                    .map(String::from)
                    .to_vec(),
            }),
        },
        Some(other) => {
            d.error(
                &join_key(path, "earnings"),
                format!("unknown earnings source \"{other}\"; expected invoices or status"),
            );
            None
        }
    };
    let needs_key = matches!(earnings, Some(Earnings::Invoices { .. }));
    let app_key = Credential::validate(
        raw.app_key_file.as_deref(),
        raw.app_key_env.as_deref(),
        Some(APP_KEY_ENV),
        path,
        "app_key_file",
        node_name,
        needs_key,
        d,
    );
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(GolemSpec {
        url: url?,
        app_key: app_key?,
        earnings: earnings?,
        count_accepted: raw.count_accepted.unwrap_or(false),
        hardware_file: raw.hardware_file.map(PathBuf::from),
        allocation: allocation?,
    })
}

/// Invoices seen, so each is counted once.
#[derive(Default)]
pub struct InvoiceLedger {
    counted: std::collections::HashSet<String>,
    /// Not yet counted and not final: (id, timestamp ms), to ask again from the oldest.
    pending: std::collections::HashMap<String, i64>,
    total: Decimal,
    /// The newest invoice timestamp seen (ms).
    newest_ms: Option<i64>,
}

impl InvoiceLedger {
    /// `afterTimestamp` for the next call: just before the oldest pending invoice, else the
    /// newest seen, else `start_ms`.
    pub fn after_ms(&self, start_ms: i64) -> i64 {
        let oldest_pending = self.pending.values().min().copied();
        oldest_pending
            .or(self.newest_ms)
            .map(|t| t - 1000)
            .unwrap_or(start_ms)
    }

    /// Takes one call's invoices; wrong fields go to `skipped`.
    pub fn take(&mut self, list: &[Json], count_accepted: bool, skipped: &mut Vec<String>) {
        for (i, inv) in list.iter().enumerate() {
            let Some(id) = inv.get("invoiceId").and_then(Json::as_str) else {
                skipped.push(format!("/{i}/invoiceId"));
                continue;
            };
            let ts = inv
                .get("timestamp")
                .and_then(Json::as_str)
                .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64);
            if let Some(t) = ts {
                self.newest_ms = Some(self.newest_ms.map_or(t, |n| n.max(t)));
            }
            if self.counted.contains(id) {
                continue;
            }
            let status = inv.get("status").and_then(Json::as_str).unwrap_or("");
            let earned = status == "SETTLED" || (count_accepted && status == "ACCEPTED");
            let open = matches!(status, "ISSUED" | "RECEIVED" | "ACCEPTED");
            if earned {
                match inv.get("amount").and_then(decimal) {
                    Some(a) if !a.is_negative() => match self.total.checked_add(a) {
                        Some(t) => {
                            self.total = t;
                            self.counted.insert(id.to_string());
                            self.pending.remove(id);
                        }
                        None => skipped.push(format!("/{i}/amount")),
                    },
                    _ => {
                        skipped.push(format!("/{i}/amount"));
                        // Counted as seen, so one bad invoice is reported once.
                        self.counted.insert(id.to_string());
                        self.pending.remove(id);
                    }
                }
            } else if open {
                if let Some(t) = ts {
                    self.pending.insert(id.to_string(), t);
                }
            } else {
                self.pending.remove(id);
            }
        }
    }

    pub fn total(&self) -> Decimal {
        self.total
    }
}

/// GLM earned according to a `yagna payment status --json` answer, either shape.
pub fn status_earned(v: &Json, count_accepted: bool) -> Result<Decimal, String> {
    let stage = |name: &str| -> Result<Decimal, String> {
        let ptr = format!("/incoming/{name}");
        match v.pointer(&ptr) {
            // Newer: {"totalAmount": "1.2", "agreementsCount": 25}
            Some(o @ Json::Object(_)) => o
                .get("totalAmount")
                .and_then(decimal)
                .ok_or(format!("{ptr}/totalAmount")),
            // Older: a plain decimal.
            Some(x) => decimal(x).ok_or(ptr),
            None => Err(ptr),
        }
    };
    if count_accepted {
        // accepted includes what was since confirmed (the stages are cumulative).
        stage("accepted")
    } else {
        stage("confirmed")
    }
}

/// The active profile of a `hardware.json`.
pub fn hardware_allocation(v: &Json) -> Result<(f64, f64, f64), String> {
    let active = v.get("active").and_then(Json::as_str).ok_or("/active")?;
    let p = v
        .get("profiles")
        .and_then(|p| p.get(active))
        .ok_or(format!("/profiles/{active}"))?;
    let num = |k: &str| {
        p.get(k)
            .and_then(Json::as_f64)
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or(format!("/profiles/{active}/{k}"))
    };
    Ok((
        num("cpu_threads")?,
        num("mem_gib")? * GIB,
        num("storage_gib")? * GIB,
    ))
}

pub struct GolemNode {
    name: String,
    spec: GolemSpec,
    start_ms: i64,
    ledger: Mutex<InvoiceLedger>,
    /// One invoice call at a time, so two overlapping polls do not race on the ledger.
    busy: tokio::sync::Mutex<()>,
}

impl GolemNode {
    pub fn new(name: &str, spec: GolemSpec, clock: SharedClock) -> GolemNode {
        let lookback = match &spec.earnings {
            Earnings::Invoices { lookback } => lookback.as_millis() as i64,
            Earnings::Status { .. } => 0,
        };
        GolemNode {
            name: name.to_string(),
            start_ms: clock.now_ms() - lookback,
            spec,
            ledger: Mutex::new(InvoiceLedger::default()),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let mut obs = Observation::default();
        match &self.spec.earnings {
            Earnings::Invoices { .. } => {
                let _one = self.busy.lock().await;
                let key = self
                    .spec
                    .app_key
                    .as_ref()
                    .ok_or_else(|| PollError::Other("no app key configured".into()))?
                    .read()?;
                let after = {
                    let l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
                    l.after_ms(self.start_ms)
                };
                let after = humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + Duration::from_millis(after.max(0) as u64),
                );
                let mut url = self
                    .spec
                    .url
                    .join("payment-api/v1/invoices")
                    .map_err(|e| PollError::Other(e.to_string()))?;
                url.query_pairs_mut()
                    .append_pair("afterTimestamp", &after.to_string())
                    .append_pair("maxItems", &MAX_ITEMS.to_string());
                let v = fetch_json(&HttpRequest::get(url).bearer(&key)).await?;
                let Json::Array(list) = v else {
                    return Err(PollError::Parse(
                        "/payment-api/v1/invoices: expected a JSON array".into(),
                    ));
                };
                let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
                l.take(&list, self.spec.count_accepted, &mut obs.skipped);
                obs.earnings.insert(TOKEN.into(), l.total().to_f64());
            }
            Earnings::Status { command } => {
                let v = run_json(command, Duration::from_secs(30)).await?;
                match status_earned(&v, self.spec.count_accepted) {
                    Ok(d) if !d.is_negative() => {
                        obs.earnings.insert(TOKEN.into(), d.to_f64());
                    }
                    Ok(_) => obs.skipped.push("/incoming".into()),
                    Err(f) => obs.skipped.push(f),
                }
                if let Some(b) = v.get("amount").and_then(decimal) {
                    obs.gauges.push(ExtraGauge {
                        name: "golem_wallet_balance_glm".into(),
                        help: "GLM on the provider's wallet (on chain), as yagna reports it."
                            .into(),
                        labels: vec![],
                        value: b.to_f64(),
                    });
                }
            }
        }
        if let Some(f) = &self.spec.hardware_file {
            let read = std::fs::read(f)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Json>(&b).map_err(|e| e.to_string()))
                .and_then(|v| hardware_allocation(&v));
            match read {
                Ok((cpu, mem, disk)) => {
                    obs.allocation.cpu_cores = Some(cpu);
                    obs.allocation.memory_bytes = Some(mem);
                    obs.allocation.disk_bytes = Some(disk);
                }
                Err(e) => {
                    tracing::debug!(node = %self.name, file = %f.display(), error = %e, "cannot read hardware.json");
                    obs.skipped.push("hardware.json".into());
                }
            }
        }
        Ok(obs)
    }
}

impl Adapter for GolemNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        "golem"
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(self.poll_once())
    }
}

impl super::kind::NodeSpec for GolemSpec {
    fn kind(&self) -> &'static str {
        "golem"
    }

    fn protocol(&self) -> &str {
        "golem"
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
        std::sync::Arc::new(GolemNode::new(name, self.clone(), clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_both_shapes() {
        let new = json!({"amount":"12.3456","incoming":{"requested":{"totalAmount":"1.5","agreementsCount":30},
            "accepted":{"totalAmount":"1.4","agreementsCount":28},"confirmed":{"totalAmount":"1.2","agreementsCount":25},"overdue":null}});
        assert_eq!(status_earned(&new, false).unwrap().to_f64(), 1.2);
        assert_eq!(status_earned(&new, true).unwrap().to_f64(), 1.4);
        let old =
            json!({"amount":"3","incoming":{"requested":"1.5","accepted":"1.4","confirmed":"1.2"}});
        assert_eq!(status_earned(&old, false).unwrap().to_f64(), 1.2);
        let wrong = json!({"incoming":{"confirmed":{"totalAmount":[1]}}});
        assert_eq!(
            status_earned(&wrong, false).unwrap_err(),
            "/incoming/confirmed/totalAmount"
        );
    }

    #[test]
    fn each_invoice_counts_once_and_pending_ones_are_asked_again() {
        let mut l = InvoiceLedger::default();
        let mut skipped = Vec::new();
        let a = json!({"invoiceId":"a","timestamp":"2026-01-01T10:00:00Z","amount":"0.1","status":"SETTLED"});
        let b = json!({"invoiceId":"b","timestamp":"2026-01-01T11:00:00Z","amount":"0.2","status":"ACCEPTED"});
        l.take(&[a.clone(), b], false, &mut skipped);
        assert_eq!(l.total().to_f64(), 0.1);
        // b is pending: the next call starts just before it.
        assert_eq!(l.after_ms(0), 1_767_265_200_000 - 1000);
        let b2 = json!({"invoiceId":"b","timestamp":"2026-01-01T11:00:00Z","amount":"0.2","status":"SETTLED"});
        l.take(&[a, b2.clone(), b2], false, &mut skipped);
        assert_eq!(l.total().to_string(), "0.3");
        let bad = json!({"invoiceId":"c","timestamp":"2026-01-01T12:00:00Z","amount":{"x":1},"status":"SETTLED"});
        l.take(&[bad], false, &mut skipped);
        assert_eq!(skipped, ["/0/amount"]);
        assert_eq!(l.total().to_string(), "0.3");
    }

    #[test]
    fn hardware_json_active_profile() {
        let v = json!({"active":"default","profiles":{"default":{"cpu_threads":7,"mem_gib":22.4,"storage_gib":180.5}}});
        let (c, m, d) = hardware_allocation(&v).unwrap();
        assert_eq!(c, 7.0);
        assert_eq!(m, 22.4 * GIB);
        assert_eq!(d, 180.5 * GIB);
        assert!(hardware_allocation(&json!({"active":"x","profiles":{}})).is_err());
    }
}

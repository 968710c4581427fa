//! Node kind `golem`: a Golem provider (yagna + ya-provider).
//!
//! Earnings, from one of two sources (`earnings:`):
//! - `invoices` (default): yagna's REST API (`http://127.0.0.1:7465`, `Authorization: Bearer
//!   <app-key>`). The primary call is `GET /me` (the node's identity, the ledger's account);
//!   the secondary endpoint `invoices` (every `invoices_interval`) counts the invoices this
//!   node issued once SETTLED (with `count_accepted: true`, once ACCEPTED), exactly and however
//!   many there are ([`super::golem_invoices`]). Counted per network
//!   (`depin_earnings_total{token="GLM",network="polygon"}`); test networks count in tGLM,
//!   which has no price unless the config gives it one. The first poll ever reads the last
//!   `lookback` (default 30 days) and takes it whole; after that the journaled cursor goes on.
//! - `status`: the JSON of `yagna payment status --json --network <status_network> --driver
//!   erc20` run as a command (argv, no shell): `incoming.confirmed` (plus `accepted` with
//!   `count_accepted`), either the newer shape `{"totalAmount": "1.2", "agreementsCount": 25}`
//!   or the older plain decimal, as a cumulative total (a drop, e.g. a reset database, is a
//!   correction). The answer's `network`, when present, must be the one configured: without
//!   `--network` yagna reports its default network, a testnet. yagna sums only agreements
//!   that have an invoice there.
//!
//! Allocation: the active profile of ya-provider's `hardware.json` (`hardware_file`):
//! `cpu_threads` → cores, `mem_gib` and `storage_gib` → bytes (GiB = 2^30). It is read at each
//! poll (the provider itself watches the file).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::decimal::Decimal;
use super::exec::run_json;
use super::fields::decimal;
use super::golem_invoices::{self as inv, InvoiceCursor, Options, Page, Tally};
use super::reading::{FirstSight, OnDrop, Reading, StreamId, ALL_TIME};
use super::{Adapter, Endpoint, ExtraGauge, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7465";
pub const APP_KEY_ENV: &str = "YAGNA_APPKEY";
pub const TOKEN: &str = "GLM";
const GIB: f64 = 1_073_741_824.0;
/// The name of the invoices endpoint and of its journaled cursor.
pub const INVOICES: &str = "invoices";

#[derive(Clone, Debug, PartialEq)]
pub enum Earnings {
    Invoices {
        lookback: Duration,
        /// `None`: every poll of the node.
        interval: Option<Duration>,
        timeout: Duration,
        /// Pages of each kind read per call at most; the rest waits for the next call.
        max_pages: usize,
    },
    Status {
        command: Vec<String>,
        /// The network the answer must be for.
        network: String,
    },
}

/// The validated `golem:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct GolemSpec {
    pub url: url::Url,
    /// Required with `earnings: invoices`.
    pub app_key: Option<Credential>,
    pub earnings: Earnings,
    pub count_accepted: bool,
    /// Networks counted (empty: every network).
    pub networks: Vec<String>,
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
    networks: Option<Vec<String>>,
    #[serde(default)]
    status_network: Option<String>,
    #[serde(default)]
    invoices_interval: Option<Value>,
    #[serde(default)]
    invoices_timeout: Option<Value>,
    #[serde(default)]
    max_pages_per_poll: Option<usize>,
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
    let dur = |v: Option<&Value>, default: u64, key: &str, d: &mut Diagnostics| {
        conf::duration_or(v, Duration::from_secs(default), &join_key(path, key), d)
    };
    let interval = match raw.invoices_interval.as_ref() {
        None => Some(None),
        v => dur(v, 0, "invoices_interval", d).map(Some),
    };
    let timeout = dur(raw.invoices_timeout.as_ref(), 60, "invoices_timeout", d);
    let max_pages = match raw.max_pages_per_poll {
        Some(0) => {
            d.error(&join_key(path, "max_pages_per_poll"), "must be at least 1");
            None
        }
        n => Some(n.unwrap_or(20)),
    };
    let network = raw
        .status_network
        .clone()
        .unwrap_or_else(|| "polygon".to_string());
    let earnings = match raw.earnings.as_deref() {
        None | Some("invoices") => match (lookback, interval, timeout, max_pages) {
            (Some(lookback), Some(interval), Some(timeout), Some(max_pages)) => {
                Some(Earnings::Invoices {
                    lookback,
                    interval,
                    timeout,
                    max_pages,
                })
            }
            _ => None,
        },
        Some("status") => match raw.status_command.clone() {
            Some(c) if !c.is_empty() && !c[0].is_empty() => Some(Earnings::Status {
                command: c,
                network,
            }),
            Some(_) => {
                d.error(
                    &join_key(path, "status_command"),
                    "must name a program, e.g. [yagna, payment, status, --json]",
                );
                None
            }
            None => Some(Earnings::Status {
                command: [
                    "yagna",
                    "payment",
                    "status",
                    "--json",
                    "--network",
                    &network,
                    "--driver",
                    "erc20",
                ]
                .map(String::from)
                .to_vec(),
                network,
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
        networks: raw.networks.unwrap_or_default(),
        hardware_file: raw.hardware_file.map(PathBuf::from),
        allocation: allocation?,
    })
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
    clock: SharedClock,
    /// The journaled paging position (None before the first invoices call ever).
    cursor: Mutex<Option<InvoiceCursor>>,
}

impl GolemNode {
    pub fn new(name: &str, spec: GolemSpec, clock: SharedClock) -> GolemNode {
        GolemNode {
            name: name.to_string(),
            spec,
            clock,
            cursor: Mutex::new(None),
        }
    }

    fn key(&self) -> Result<String, PollError> {
        self.spec
            .app_key
            .as_ref()
            .ok_or_else(|| PollError::Other("no app key configured".into()))?
            .read()
    }

    fn api(&self, path: &str) -> Result<url::Url, PollError> {
        self.spec
            .url
            .join(path)
            .map_err(|e| PollError::Other(e.to_string()))
    }

    /// `GET /me`: the identity of the app key.
    async fn me(&self, key: &str) -> Result<String, PollError> {
        let v = fetch_json(&HttpRequest::get(self.api("me")?).bearer(key)).await?;
        v.get("identity")
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| PollError::Parse("/me: no identity".into()))
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let mut obs = Observation::default();
        match &self.spec.earnings {
            Earnings::Invoices { .. } => {
                obs.account = Some(self.me(&self.key()?).await?);
            }
            Earnings::Status { command, network } => {
                let v = run_json(command, Duration::from_secs(30)).await?;
                self.read_status(&v, network, &mut obs)?;
            }
        }
        self.read_hardware(&mut obs);
        Ok(obs)
    }

    fn read_status(&self, v: &Json, network: &str, obs: &mut Observation) -> Result<(), PollError> {
        if let Some(n) = v.get("network").and_then(Json::as_str) {
            if n != network {
                return Err(PollError::Parse(format!(
                    "yagna answered for network {n}, the config asks for {network} (golem.status_network)"
                )));
            }
        }
        let token = v
            .get("token")
            .and_then(Json::as_str)
            .unwrap_or(TOKEN)
            .to_string();
        match status_earned(v, self.spec.count_accepted) {
            Ok(d) if !d.is_negative() => obs.readings.push(Reading::Cumulative {
                stream: StreamId::earnings("status", &token, network),
                period: ALL_TIME.into(),
                value: d,
                cause: None,
                first_sight: FirstSight::Credit,
                on_drop: OnDrop::Correction,
                confirm: Duration::from_secs(6 * 3600),
            }),
            Ok(_) => obs.skipped.push("/incoming".into()),
            Err(f) => obs.skipped.push(f),
        }
        if let Some(b) = v.get("amount").and_then(decimal) {
            obs.gauges.push(ExtraGauge {
                name: "golem_wallet_balance".into(),
                help: "Tokens on the provider's wallet (on chain) on the configured network, as yagna reports them.".into(),
                labels: vec![("token".into(), token.clone()), ("network".into(), network.into())],
                value: b.to_f64(),
            });
            if token == TOKEN {
                obs.gauges.push(ExtraGauge {
                    name: "golem_wallet_balance_glm".into(),
                    help: "GLM on the provider's wallet (on chain), as yagna reports it (mainnet networks only; see depin_golem_wallet_balance).".into(),
                    labels: vec![],
                    value: b.to_f64(),
                });
            }
        }
        Ok(())
    }

    fn read_hardware(&self, obs: &mut Observation) {
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
    }

    /// One page of `path` after `after_ms`.
    async fn page(
        &self,
        key: &str,
        path: &str,
        after_ms: i64,
        events: bool,
    ) -> Result<Vec<Json>, PollError> {
        let mut url = self.api(path)?;
        let after = crate::compat::calendar::rfc3339_millis(after_ms);
        url.query_pairs_mut().append_pair("afterTimestamp", &after);
        if events {
            url.query_pairs_mut()
                .append_pair("maxEvents", &inv::PAGE.to_string())
                .append_pair("timeout", "0");
        } else {
            url.query_pairs_mut()
                .append_pair("maxItems", &inv::PAGE.to_string());
        }
        let mut req = HttpRequest::get(url).bearer(key);
        if events {
            req = req
                .header("X-Provider-Events", inv::PROVIDER_EVENTS)
                .header("X-Requestor-Events", inv::REQUESTOR_EVENTS);
        }
        if let Earnings::Invoices { timeout, .. } = &self.spec.earnings {
            req.timeout = *timeout;
        }
        match fetch_json(&req).await? {
            Json::Array(list) => Ok(list),
            _ => Err(PollError::Parse(format!(
                "/payment-api/v1/{path}: expected a JSON array"
            ))),
        }
    }

    /// The invoices endpoint: pages both cursors from the journaled position.
    async fn invoices(&self) -> Result<Observation, PollError> {
        let Earnings::Invoices {
            lookback,
            max_pages,
            ..
        } = &self.spec.earnings
        else {
            return Err(PollError::Other(
                "earnings: status has no invoices endpoint".into(),
            ));
        };
        let key = self.key()?;
        let me = self.me(&key).await?;
        let start = self.clock.now_ms() - lookback.as_millis() as i64;
        let mut cur = self
            .cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| InvoiceCursor {
                ts_ms: Some(start),
                ev_ts_ms: Some(start),
                ..Default::default()
            });
        let o = Options {
            me: &me,
            count_accepted: self.spec.count_accepted,
            networks: &self.spec.networks,
        };
        let mut tally = Tally::default();
        let mut backlog = false;
        for (path, events) in [
            ("payment-api/v1/invoices", false),
            ("payment-api/v1/invoiceEvents", true),
        ] {
            let mut pages = 0;
            loop {
                let (ts, seen) = if events {
                    (cur.ev_ts_ms.unwrap_or(start), !cur.ev_ids.is_empty())
                } else {
                    (cur.ts_ms.unwrap_or(start), !cur.ids.is_empty())
                };
                let list = self
                    .page(&key, path, inv::after_ms(ts, seen), events)
                    .await?;
                let outcome = if events {
                    cur.take_events(&list, &o, &mut tally)
                } else {
                    cur.take_invoices(&list, &o, &mut tally)
                };
                pages += 1;
                match outcome {
                    Page::Complete => break,
                    Page::Stuck => {
                        tally.skipped.push(format!(
                            "/{path}: over {} items in one millisecond",
                            inv::PAGE
                        ));
                        break;
                    }
                    Page::More if pages >= *max_pages => {
                        backlog = true;
                        break;
                    }
                    Page::More => {}
                }
            }
            // An event is never older than its invoice: events wait until every invoice
            // before them was read, or a settlement would find no open invoice to count.
            if backlog {
                break;
            }
        }
        let mut obs = Observation {
            account: Some(me),
            skipped: tally.skipped,
            ..Default::default()
        };
        for ((token, network), amount) in tally.credits {
            obs.readings.push(Reading::Credit {
                stream: StreamId::earnings(&format!("{INVOICES}@{network}"), &token, &network),
                amount,
            });
        }
        let (open, receivable) = cur.open_summary();
        for (network, n) in open {
            obs.gauges.push(ExtraGauge {
                name: "golem_invoices_open".into(),
                help: "Invoices the provider issued that are not settled yet (a row each, however old).".into(),
                labels: vec![("network".into(), network)],
                value: n as f64,
            });
        }
        for ((token, network), amount) in receivable {
            obs.gauges.push(ExtraGauge {
                name: "golem_receivable".into(),
                help: "Accepted invoices not yet settled, in units of the token.".into(),
                labels: vec![("token".into(), token), ("network".into(), network)],
                value: amount.to_f64(),
            });
        }
        obs.gauges.push(ExtraGauge {
            name: "golem_invoices_backlog".into(),
            help: "1 while invoices remain to be read beyond this call's page limit (max_pages_per_poll), else 0.".into(),
            labels: vec![],
            value: if backlog { 1.0 } else { 0.0 },
        });
        let value = serde_json::to_value(&cur).map_err(|e| PollError::Other(e.to_string()))?;
        obs.readings.push(Reading::Cursor {
            name: INVOICES.into(),
            value,
        });
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

    fn endpoints(&self) -> Vec<Endpoint> {
        match &self.spec.earnings {
            Earnings::Invoices {
                interval, timeout, ..
            } => vec![Endpoint {
                name: INVOICES,
                interval: *interval,
                // Every page of both cursors within one call.
                timeout: *timeout,
            }],
            Earnings::Status { .. } => Vec::new(),
        }
    }

    fn fetch(&self, endpoint: &str) -> PollFuture<'_> {
        match endpoint {
            INVOICES => Box::pin(self.invoices()),
            other => {
                let e = PollError::Other(format!("no endpoint {other}"));
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }

    fn set_cursor(&self, name: &str, value: &Json) {
        if name != INVOICES {
            return;
        }
        match serde_json::from_value::<InvoiceCursor>(value.clone()) {
            Ok(c) => *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(c),
            Err(e) => {
                tracing::error!(node = %self.name, error = %e, "cannot read the journaled invoices cursor; invoices are read from the lookback window again")
            }
        }
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
    fn hardware_json_active_profile() {
        let v = json!({"active":"default","profiles":{"default":{"cpu_threads":7,"mem_gib":22.4,"storage_gib":180.5}}});
        let (c, m, d) = hardware_allocation(&v).unwrap();
        assert_eq!(c, 7.0);
        assert_eq!(m, 22.4 * GIB);
        assert_eq!(d, 180.5 * GIB);
        assert!(hardware_allocation(&json!({"active":"x","profiles":{}})).is_err());
    }
}

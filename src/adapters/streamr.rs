//! Node kind `streamr`: a Streamr node, and optionally its operator's earnings on chain.
//!
//! Health (the primary call), from the first of:
//! - `health: {docker: {container, docker_socket, crash_loop}}`: the container's state
//!   ([`super::docker`]; the node usually runs as the `streamr/node` image);
//! - `health: {tcp: "127.0.0.1:7170"}`: a TCP connect to a port a plugin listens on
//!   (websocket 7170, mqtt 1883, http 7171);
//! - `health: {info: {url, api_key_file}}`, or the older top-level `url`/`api_key_*`: `GET
//!   /info` of the `info` plugin (port 7171, `Authorization: Bearer <api key>` with
//!   `apiAuthentication`). The node's HTTP server exists only when some plugin serves HTTP,
//!   and Streamr's setup wizard never enables `info`: such a node needs `docker` or `tcp`.
//!
//! Earnings (off unless `earnings:` is given) are on chain, and they are the **operator's**:
//! the Operator contract holds what its sponsorships earned for owner and delegators together,
//! before the protocol fee and the operator's cut; no per-node earning exists on chain. A
//! secondary endpoint (`chain`, every `earnings.interval`) reads, at one block N = latest −
//! `confirmations`, the pool's earnings: Σ of every `Profit` event (value increase + cut +
//! fee: what each withdrawal realized) since the first reading + the unwithdrawn earnings
//! `getSponsorshipsAndEarnings()` now. A withdrawal moves money from one term to the other,
//! so it is not a reset; only a `Loss` (slashing, a kick) lowers the sum, a correction with
//! that cause. Shown as:
//! - `depin_streamr_pool_earnings_data_total`: the whole pool, named as such;
//! - `depin_earnings_total{token="DATA"}`: `earnings.share` of it (this node runner's stated
//!   share, e.g. `0.3`), or the whole pool when no share is given (a warning at start says
//!   so); two nodes of one operator must each state a share;
//! - `depin_streamr_pool_unwithdrawn_data`: the unwithdrawn part at block N.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::decimal::Decimal;
use super::docker::{valid_container, Container, ContainerSpec};
use super::evm::{decode_earnings, word_wei, Rpc};
use super::reading::{FirstSight, OnDrop, Reading, StreamId, ALL_TIME};
use super::{Adapter, Endpoint, ExtraGauge, Observation, PollError, PollFuture};
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7171";
pub const TOKEN: &str = "DATA";
/// keccak256("getSponsorshipsAndEarnings()")[..4].
pub const SELECTOR: &str = "0x2ebd89d1";
/// keccak256("Profit(uint256,uint256,uint256)").
pub const PROFIT: &str = "0x604b365b22dbda1203004fba26c477ed19c49ad01cadf6eedf5f17f52ebbae18";
/// keccak256("Loss(uint256)").
pub const LOSS: &str = "0xb65b2e085d7d040c313f7d4e1ac90f5937026fee497e0e24a7eff16a55e1c5ea";
/// The chain endpoint and its journaled cursor.
pub const CHAIN: &str = "chain";
/// The series of the whole pool.
pub const POOL_SERIES: &str = "streamr_pool_earnings_data";
/// Log windows read per call at most; the rest waits for the next call.
pub const MAX_WINDOWS: usize = 50;

#[derive(Clone, Debug, PartialEq)]
pub struct OperatorEarnings {
    pub rpc_url: url::Url,
    /// `0x` and 40 hex digits, lower case.
    pub operator_contract: String,
    pub interval: Duration,
    /// This node's share of the pool (0 < share ≤ 1); `None`: the whole pool.
    pub share: Option<Decimal>,
    pub confirmations: u64,
    pub max_block_range: u64,
}

/// Where the node's health comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthSource {
    Info {
        url: url::Url,
        api_key: Option<Credential>,
    },
    Docker(ContainerSpec),
    Tcp(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamrSpec {
    pub health: HealthSource,
    pub earnings: Option<OperatorEarnings>,
    pub allocation: Option<Allocation>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStreamr {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    api_key_file: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    earnings: Option<RawEarnings>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    docker: Option<RawDocker>,
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    info: Option<RawInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    docker_socket: Option<String>,
    #[serde(default)]
    crash_loop: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInfo {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    api_key_file: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEarnings {
    #[serde(default)]
    rpc_url: Option<String>,
    #[serde(default)]
    operator_contract: Option<String>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    share: Option<Value>,
    #[serde(default)]
    confirmations: Option<u64>,
    #[serde(default)]
    max_block_range: Option<u64>,
}

fn info_health(
    url: Option<&str>,
    file: Option<&str>,
    env: Option<&str>,
    path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<HealthSource> {
    let default_info = format!("{DEFAULT_URL}/info");
    let url = conf::http_url(url, Some(&default_info), &join_key(path, "url"), d);
    let api_key = Credential::validate(
        file,
        env,
        None,
        path,
        "api_key_file",
        node_name,
        env.is_some(),
        d,
    );
    Some(HealthSource::Info {
        url: url?,
        api_key: api_key?,
    })
}

fn validate_health(
    raw: &RawStreamr,
    path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<HealthSource> {
    let Some(h) = &raw.health else {
        return info_health(
            raw.url.as_deref(),
            raw.api_key_file.as_deref(),
            raw.api_key_env.as_deref(),
            path,
            node_name,
            d,
        );
    };
    let hp = join_key(path, "health");
    if raw.url.is_some() || raw.api_key_file.is_some() || raw.api_key_env.is_some() {
        d.error(
            &hp,
            "give either health: or the top-level url/api_key_* (the info plugin), not both",
        );
        return None;
    }
    let given = [h.docker.is_some(), h.tcp.is_some(), h.info.is_some()];
    if given.iter().filter(|x| **x).count() != 1 {
        d.error(&hp, "give exactly one of docker, tcp or info");
        return None;
    }
    if let Some(dk) = &h.docker {
        let dp = join_key(&hp, "docker");
        let container = match dk.container.as_deref() {
            Some(c) if valid_container(c) => Some(c.to_string()),
            Some(c) => {
                d.error(
                    &join_key(&dp, "container"),
                    format!("invalid container name or id \"{c}\""),
                );
                None
            }
            None => {
                d.error(&dp, "missing required key \"container\"");
                None
            }
        };
        let crash_loop = super::grass::validate_crash_loop(
            dk.crash_loop.as_ref(),
            &join_key(&dp, "crash_loop"),
            d,
        );
        return Some(HealthSource::Docker(ContainerSpec {
            socket: dk
                .docker_socket
                .as_deref()
                .unwrap_or(super::docker::DEFAULT_SOCKET)
                .into(),
            container: container?,
            crash_loop: crash_loop?,
        }));
    }
    if let Some(t) = &h.tcp {
        let ok = t
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            d.error(
                &join_key(&hp, "tcp"),
                format!("{t:?} is not host:port, e.g. \"127.0.0.1:7170\""),
            );
            return None;
        }
        return Some(HealthSource::Tcp(t.clone()));
    }
    let i = h.info.as_ref()?;
    info_health(
        i.url.as_deref(),
        i.api_key_file.as_deref(),
        i.api_key_env.as_deref(),
        &join_key(&hp, "info"),
        node_name,
        d,
    )
}

fn validate_earnings(e: &RawEarnings, ep: &str, d: &mut Diagnostics) -> Option<OperatorEarnings> {
    let rpc = conf::http_url(e.rpc_url.as_deref(), None, &join_key(ep, "rpc_url"), d);
    let contract = match e.operator_contract.as_deref() {
        Some(c)
            if c.len() == 42
                && c.starts_with("0x")
                && c[2..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(c.to_ascii_lowercase())
        }
        Some(c) => {
            d.error(
                &join_key(ep, "operator_contract"),
                format!("{c:?} is not an address (0x and 40 hex digits)"),
            );
            None
        }
        None => {
            d.error(ep, "missing required key \"operator_contract\"");
            None
        }
    };
    let interval = conf::duration_or(
        e.interval.as_ref(),
        Duration::from_secs(300),
        &join_key(ep, "interval"),
        d,
    );
    let sp = join_key(ep, "share");
    let share = match &e.share {
        None => {
            d.warn(
                ep,
                "no share: depin_earnings_total counts the whole operator pool (owner and delegators, before the protocol fee and the operator's cut); give earnings.share: <fraction> for this node's part",
            );
            Some(None)
        }
        Some(v) => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            match Decimal::parse(&text) {
                Ok(x) if x > Decimal::ZERO && x <= Decimal::parse("1").unwrap_or_default() => {
                    Some(Some(x))
                }
                _ => {
                    d.error(
                        &sp,
                        format!("must be a fraction above 0 and at most 1 (this node's part of the operator pool), got {text:?}"),
                    );
                    None
                }
            }
        }
    };
    let max_block_range = match e.max_block_range {
        Some(0) => {
            d.error(&join_key(ep, "max_block_range"), "must be at least 1");
            None
        }
        n => Some(n.unwrap_or(2000)),
    };
    Some(OperatorEarnings {
        rpc_url: rpc?,
        operator_contract: contract?,
        interval: interval?,
        share: share?,
        confirmations: e.confirmations.unwrap_or(64),
        max_block_range: max_block_range?,
    })
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<StreamrSpec> {
    let raw: RawStreamr = d.deserialize(path, conf::block_or_empty(block))?;
    let health = validate_health(&raw, path, node_name, d);
    let earnings = match &raw.earnings {
        None => Some(None),
        Some(e) => validate_earnings(e, &join_key(path, "earnings"), d).map(Some),
    };
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(StreamrSpec {
        health: health?,
        earnings: earnings?,
        allocation: allocation?,
    })
}

/// Where the chain reading stands: the block read up to, and the Profit sum up to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainCursor {
    pub block: u64,
    pub withdrawn: Decimal,
}

/// The sum a Profit log realized (value increase + cut + fee), or a Loss log's block.
pub enum LogKind {
    Profit(Decimal),
    Loss(u64),
}

/// One log of `eth_getLogs`.
pub fn read_log(log: &Json) -> Result<LogKind, String> {
    if log.get("removed").and_then(Json::as_bool) == Some(true) {
        return Err("a removed log (a reorganization deeper than the confirmations)".into());
    }
    let topics: Vec<&str> = log
        .get("topics")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    match topics.first().copied() {
        Some(PROFIT) if topics.len() == 3 => {
            let data = log.get("data").and_then(Json::as_str).ok_or("no data")?;
            let mut sum = word_wei(data)?;
            for t in &topics[1..] {
                sum = sum.checked_add(word_wei(t)?).ok_or("the sum overflows")?;
            }
            Ok(LogKind::Profit(sum))
        }
        Some(LOSS) => {
            let block = log
                .get("blockNumber")
                .map(super::evm::parse_quantity)
                .and_then(Result::ok)
                .unwrap_or(0);
            Ok(LogKind::Loss(block))
        }
        _ => Err("a log that is neither Profit nor Loss".into()),
    }
}

pub struct StreamrNode {
    name: String,
    spec: StreamrSpec,
    clock: SharedClock,
    container: Option<Container>,
    cursor: std::sync::Mutex<Option<ChainCursor>>,
}

impl StreamrNode {
    pub fn new(name: &str, spec: StreamrSpec, clock: SharedClock) -> StreamrNode {
        let container = match &spec.health {
            HealthSource::Docker(c) => Some(Container::new(c.clone())),
            _ => None,
        };
        StreamrNode {
            name: name.to_string(),
            spec,
            clock,
            container,
            cursor: std::sync::Mutex::new(None),
        }
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        match (&self.spec.health, &self.container) {
            (_, Some(c)) => {
                c.check(self.clock.now_ms()).await?;
            }
            (HealthSource::Tcp(addr), _) => {
                tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| PollError::Refused(format!("{addr}: {e}")))?;
            }
            (HealthSource::Info { url, api_key }, _) => {
                let mut req = HttpRequest::get(url.clone());
                if let Some(k) = api_key {
                    req = req.bearer(&k.read()?);
                }
                // Any JSON is healthy: the SDK calls its shape unstable.
                let _info = fetch_json(&req).await?;
            }
            (HealthSource::Docker(_), None) => unreachable!("built in new"),
        }
        Ok(Observation::default())
    }

    async fn chain(&self) -> Result<Observation, PollError> {
        let Some(e) = &self.spec.earnings else {
            return Err(PollError::Other("no earnings: configured".into()));
        };
        let rpc = Rpc {
            url: &e.rpc_url,
            timeout: Duration::from_secs(30),
        };
        let c = &e.operator_contract;
        let target = rpc.block_number().await?.saturating_sub(e.confirmations);
        let cur = self
            .cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // The first reading ever starts at the pinned block: its unwithdrawn earnings are the
        // node's total at first sight.
        let mut cur = cur.unwrap_or(ChainCursor {
            block: target,
            withdrawn: Decimal::ZERO,
        });
        let mut causes = Vec::new();
        let mut windows = 0;
        while cur.block < target && windows < MAX_WINDOWS {
            let to = (cur.block + e.max_block_range).min(target);
            for log in rpc.logs(c, &[PROFIT, LOSS], cur.block + 1, to).await? {
                match read_log(&log).map_err(|m| PollError::Parse(format!("eth_getLogs: {m}")))? {
                    LogKind::Profit(x) => {
                        cur.withdrawn = cur
                            .withdrawn
                            .checked_add(x)
                            .ok_or_else(|| PollError::Parse("the Profit sum overflows".into()))?;
                    }
                    LogKind::Loss(b) => causes.push(format!("Loss event at block {b}")),
                }
            }
            cur.block = to;
            windows += 1;
        }
        let hex = rpc.eth_call(c, SELECTOR, cur.block).await?;
        let unwithdrawn =
            decode_earnings(&hex).map_err(|m| PollError::Parse(format!("eth_call result: {m}")))?;
        let pool = cur
            .withdrawn
            .checked_add(unwithdrawn)
            .ok_or_else(|| PollError::Parse("the pool sum overflows".into()))?;
        let cause = (!causes.is_empty()).then(|| causes.join(", "));
        let cumulative = |stream: StreamId, value: Decimal| Reading::Cumulative {
            stream,
            period: ALL_TIME.into(),
            value,
            cause: cause.clone(),
            first_sight: FirstSight::Credit,
            on_drop: OnDrop::Correction,
            confirm: Duration::from_secs(6 * 3600),
        };
        let pool_id = StreamId {
            name: "pool".into(),
            series: POOL_SERIES.into(),
            token: TOKEN.into(),
            network: String::new(),
        };
        let own = match e.share {
            Some(s) => pool
                .checked_mul(s)
                .map(|x| x.round_to(18))
                .ok_or_else(|| PollError::Parse("the share overflows".into()))?,
            None => pool,
        };
        let operator = vec![("operator".to_string(), c.clone())];
        let gauges = vec![
            ExtraGauge {
                name: "streamr_pool_unwithdrawn_data".into(),
                help: "The operator pool's unwithdrawn earnings (owner and delegators, before the protocol fee and the operator's cut) at the block read, DATA.".into(),
                labels: operator.clone(),
                value: unwithdrawn.to_f64(),
            },
            ExtraGauge {
                name: "streamr_chain_block".into(),
                help: "The block the operator's earnings were read at.".into(),
                labels: operator,
                value: cur.block as f64,
            },
        ];
        let value = serde_json::to_value(&cur).map_err(|e| PollError::Other(e.to_string()))?;
        Ok(Observation {
            readings: vec![
                cumulative(pool_id, pool),
                cumulative(StreamId::earnings("earnings", TOKEN, ""), own),
                Reading::Cursor {
                    name: CHAIN.into(),
                    value,
                },
            ],
            gauges,
            ..Default::default()
        })
    }
}

impl Adapter for StreamrNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        "streamr"
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(self.poll_once())
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.spec
            .earnings
            .iter()
            .map(|e| Endpoint {
                name: CHAIN,
                interval: Some(e.interval),
                timeout: Duration::from_secs(120),
            })
            .collect()
    }

    fn fetch(&self, endpoint: &str) -> PollFuture<'_> {
        match endpoint {
            CHAIN => Box::pin(self.chain()),
            other => {
                let e = PollError::Other(format!("no endpoint {other}"));
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }

    fn set_cursor(&self, name: &str, value: &Json) {
        if name != CHAIN {
            return;
        }
        match serde_json::from_value::<ChainCursor>(value.clone()) {
            Ok(c) => *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = Some(c),
            Err(e) => {
                tracing::error!(node = %self.name, error = %e, "cannot read the journaled chain cursor; the operator's earnings start again from the current block")
            }
        }
    }
}

impl super::kind::NodeSpec for StreamrSpec {
    fn kind(&self) -> &'static str {
        "streamr"
    }

    fn protocol(&self) -> &str {
        "streamr"
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        self.earnings.iter().map(|_| TOKEN.to_string()).collect()
    }

    fn earning_account(&self) -> Option<(String, Option<f64>)> {
        self.earnings.as_ref().map(|e| {
            (
                format!("Streamr operator {}", e.operator_contract),
                e.share.map(Decimal::to_f64),
            )
        })
    }

    fn build(
        &self,
        name: &str,
        clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(StreamrNode::new(name, self.clone(), clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profit_log_realizes_fee_cut_and_value_increase() {
        let p = format!(
            "{}/tests/fixtures/nodes/streamr/eth_getLogs_profit.constructed.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: Json = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let log = &v["response"]["result"][0];
        let LogKind::Profit(sum) = read_log(log).unwrap() else {
            panic!("a Profit log")
        };
        assert_eq!(sum.to_string(), "4.000000000000000001");
        let mut removed = log.clone();
        removed["removed"] = true.into();
        assert!(read_log(&removed).is_err());
    }
}

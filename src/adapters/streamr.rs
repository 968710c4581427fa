//! Node kind `streamr`: a Streamr node. Health from its HTTP server (`/info` of the `info`
//! plugin, port 7171, `Authorization: Bearer <api key>` when the node has
//! `apiAuthentication`); the answer is opaque JSON (the SDK calls its shape unstable), so any
//! JSON is healthy and anything else is reason `parse`.
//!
//! Earnings (off unless `earnings:` is given) are on chain only: an `eth_call` of the Operator
//! contract's `getSponsorshipsAndEarnings()` (selector `0x2ebd89d1`) through a JSON-RPC
//! endpoint, summing the `earnings` array (wei, 18 decimals) exactly. That sum is the
//! operator's *unwithdrawn* earnings: it drops when the node withdraws them into the operator
//! value, which the coordinator reads as a reset, so `depin_earnings_total{token="DATA"}`
//! keeps counting (what was earned between the last call and the withdrawal is missed). The
//! call is made at most once per `earnings.interval` (default 5m); between calls the last sum
//! is repeated. A failed call leaves the node up and skips the value
//! (`field="getSponsorshipsAndEarnings"`). The RPC URL is a local Polygon node or a public
//! `https://` endpoint.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value;

use super::conf::{self, Credential};
use super::decimal::Decimal;
use super::{Adapter, Observation, PollError, PollFuture};
use crate::net::http::{fetch_json, HttpRequest};
use crate::resources::Allocation;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::RawAllocation;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7171";
pub const TOKEN: &str = "DATA";
/// keccak256("getSponsorshipsAndEarnings()")[..4].
pub const SELECTOR: &str = "0x2ebd89d1";

#[derive(Clone, Debug, PartialEq)]
pub struct OperatorEarnings {
    pub rpc_url: url::Url,
    /// `0x` and 40 hex digits.
    pub operator_contract: String,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamrSpec {
    /// The node's `/info` URL.
    pub url: url::Url,
    pub api_key: Option<Credential>,
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
    earnings: Option<RawEarnings>,
    #[serde(default)]
    allocation: Option<RawAllocation>,
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
}

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<StreamrSpec> {
    let raw: RawStreamr = d.deserialize(path, conf::block_or_empty(block))?;
    let default_info = format!("{DEFAULT_URL}/info");
    let url = conf::http_url(
        raw.url.as_deref(),
        Some(&default_info),
        &join_key(path, "url"),
        d,
    );
    let api_key = Credential::validate(
        raw.api_key_file.as_deref(),
        raw.api_key_env.as_deref(),
        None,
        path,
        "api_key_file",
        node_name,
        raw.api_key_env.is_some(),
        d,
    );
    let earnings = match &raw.earnings {
        None => Some(None),
        Some(e) => {
            let ep = join_key(path, "earnings");
            let rpc = conf::http_url(e.rpc_url.as_deref(), None, &join_key(&ep, "rpc_url"), d);
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
                        &join_key(&ep, "operator_contract"),
                        format!("{c:?} is not an address (0x and 40 hex digits)"),
                    );
                    None
                }
                None => {
                    d.error(&ep, "missing required key \"operator_contract\"");
                    None
                }
            };
            let interval = conf::duration_or(
                e.interval.as_ref(),
                Duration::from_secs(300),
                &join_key(&ep, "interval"),
                d,
            );
            match (rpc, contract, interval) {
                (Some(rpc_url), Some(operator_contract), Some(interval)) => {
                    Some(Some(OperatorEarnings {
                        rpc_url,
                        operator_contract,
                        interval,
                    }))
                }
                _ => None,
            }
        }
    };
    let allocation = conf::optional_allocation(raw.allocation.as_ref(), path, d);
    Some(StreamrSpec {
        url: url?,
        api_key: api_key?,
        earnings: earnings?,
        allocation: allocation?,
    })
}

/// The sum of the `earnings` array in an ABI-encoded `(address[], uint[], uint)` answer, wei.
pub fn decode_earnings(hex: &str) -> Result<Decimal, String> {
    let h = hex.strip_prefix("0x").ok_or("not 0x-prefixed hex")?;
    if h.len() % 64 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not a whole number of 32-byte words".into());
    }
    let words: Vec<&str> = (0..h.len() / 64).map(|i| &h[i * 64..i * 64 + 64]).collect();
    let word_usize = |w: &str| -> Result<usize, String> {
        let (hi, lo) = w.split_at(48);
        if hi.bytes().any(|b| b != b'0') {
            return Err("offset out of range".into());
        }
        usize::from_str_radix(lo, 16).map_err(|e| e.to_string())
    };
    let off = word_usize(words.get(1).ok_or("short answer")?)?;
    if off % 32 != 0 {
        return Err("misaligned offset".into());
    }
    let at = off / 32;
    let n = word_usize(words.get(at).ok_or("offset past the end")?)?;
    let mut sum = Decimal::ZERO;
    for i in 0..n {
        let w = words.get(at + 1 + i).ok_or("array past the end")?;
        let (hi, lo) = w.split_at(32);
        if hi.bytes().any(|b| b != b'0') {
            return Err("an amount exceeds 2^128 wei".into());
        }
        let wei = u128::from_str_radix(lo, 16).map_err(|e| e.to_string())?;
        let dec = Decimal::from_units(wei, 18).ok_or("an amount exceeds 2^127 wei")?;
        sum = sum.checked_add(dec).ok_or("the sum overflows")?;
    }
    Ok(sum)
}

pub struct StreamrNode {
    name: String,
    spec: StreamrSpec,
    /// When the last earnings call was made (tokio time) and its sum in DATA.
    earnings: Mutex<(Option<tokio::time::Instant>, Option<f64>)>,
}

impl StreamrNode {
    pub fn new(name: &str, spec: StreamrSpec) -> StreamrNode {
        StreamrNode {
            name: name.to_string(),
            spec,
            earnings: Mutex::new((None, None)),
        }
    }

    async fn call_earnings(&self, e: &OperatorEarnings) -> Result<Decimal, PollError> {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_call",
            "params":[{"to": e.operator_contract, "data": SELECTOR}, "latest"]});
        let req = HttpRequest::post_json(e.rpc_url.clone(), body.to_string().into_bytes());
        let v = fetch_json(&req).await?;
        if let Some(err) = v.get("error") {
            return Err(PollError::Other(format!("eth_call: {err}")));
        }
        let hex = v
            .get("result")
            .and_then(Json::as_str)
            .ok_or_else(|| PollError::Parse("eth_call: no result".into()))?;
        decode_earnings(hex).map_err(|m| PollError::Parse(format!("eth_call result: {m}")))
    }

    async fn poll_once(&self) -> Result<Observation, PollError> {
        let mut req = HttpRequest::get(self.spec.url.clone());
        if let Some(k) = &self.spec.api_key {
            req = req.bearer(&k.read()?);
        }
        let _info = fetch_json(&req).await?;
        let mut obs = Observation::default();
        if let Some(e) = &self.spec.earnings {
            let due = {
                let st = self.earnings.lock().unwrap_or_else(|p| p.into_inner());
                st.0.is_none_or(|t| t.elapsed() >= e.interval)
            };
            if due {
                let got = self.call_earnings(e).await;
                let mut st = self.earnings.lock().unwrap_or_else(|p| p.into_inner());
                st.0 = Some(tokio::time::Instant::now());
                match got {
                    Ok(d) => st.1 = Some(d.to_f64()),
                    Err(err) => {
                        tracing::debug!(node = %self.name, error = %err, "operator earnings call failed");
                        st.1 = None;
                    }
                }
            }
            match self.earnings.lock().unwrap_or_else(|p| p.into_inner()).1 {
                Some(v) => {
                    obs.earnings.insert(TOKEN.into(), v);
                }
                None => obs.skipped.push("getSponsorshipsAndEarnings".into()),
            }
        }
        Ok(obs)
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

    fn build(
        &self,
        name: &str,
        _clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(StreamrNode::new(name, self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ABI encoding of (address[] a, uint[] e, uint max).
    pub fn encode(addrs: usize, earnings: &[u128], max: u128) -> String {
        let w = |x: u128| format!("{x:064x}");
        let mut s = String::from("0x");
        s += &w(96);
        s += &w(96 + 32 * (1 + addrs as u128));
        s += &w(max);
        s += &w(addrs as u128);
        for i in 0..addrs {
            s += &w(0xabc0 + i as u128);
        }
        s += &w(earnings.len() as u128);
        for e in earnings {
            s += &w(*e);
        }
        s
    }

    #[test]
    fn sums_wei_exactly() {
        let hex = encode(
            2,
            &[1_500_000_000_000_000_001, 2_500_000_000_000_000_000],
            9,
        );
        let d = decode_earnings(&hex).unwrap();
        assert_eq!(d.to_string(), "4.000000000000000001");
        assert_eq!(decode_earnings(&encode(0, &[], 0)).unwrap().to_f64(), 0.0);
        assert!(decode_earnings("0x12").is_err());
        assert!(decode_earnings(&hex[..hex.len() - 64]).is_err());
    }
}

//! Reading an EVM chain over JSON-RPC (a local Polygon node or a public `https://` endpoint):
//! `eth_blockNumber`, `eth_call` at a pinned block and `eth_getLogs`, with the ABI's 32-byte
//! big-endian words decoded exactly into [`Decimal`] wei.

use serde_json::{json, Value as Json};

use super::decimal::Decimal;
use super::PollError;
use crate::net::http::{fetch_json, HttpRequest};

/// A JSON-RPC endpoint.
pub struct Rpc<'a> {
    pub url: &'a url::Url,
    pub timeout: std::time::Duration,
}

/// `0x…` hex of a block number.
pub fn block_tag(n: u64) -> String {
    format!("{n:#x}")
}

/// A `0x`-prefixed hex quantity.
pub fn parse_quantity(v: &Json) -> Result<u64, String> {
    let s = v.as_str().ok_or("not a hex string")?;
    let h = s.strip_prefix("0x").ok_or("not 0x-prefixed")?;
    u64::from_str_radix(h, 16).map_err(|e| format!("{s}: {e}"))
}

/// The words of a `0x` hex ABI blob.
pub fn words(hex: &str) -> Result<Vec<&str>, String> {
    let h = hex.strip_prefix("0x").ok_or("not 0x-prefixed hex")?;
    if h.len() % 64 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not a whole number of 32-byte words".into());
    }
    Ok((0..h.len() / 64).map(|i| &h[i * 64..i * 64 + 64]).collect())
}

/// One uint256 word as wei of an 18-decimal token.
pub fn word_wei(w: &str) -> Result<Decimal, String> {
    let w = w.strip_prefix("0x").unwrap_or(w);
    if w.len() != 64 {
        return Err("not a 32-byte word".into());
    }
    let (hi, lo) = w.split_at(32);
    if hi.bytes().any(|b| b != b'0') {
        return Err("an amount exceeds 2^128 wei".into());
    }
    let wei = u128::from_str_radix(lo, 16).map_err(|e| e.to_string())?;
    Decimal::from_units(wei, 18).ok_or_else(|| "an amount exceeds 2^127 wei".into())
}

fn word_usize(w: &str) -> Result<usize, String> {
    let (hi, lo) = w.split_at(48);
    if hi.bytes().any(|b| b != b'0') {
        return Err("offset out of range".into());
    }
    usize::from_str_radix(lo, 16).map_err(|e| e.to_string())
}

/// The sum of the `earnings` array in an ABI-encoded `(address[], uint[], uint)` answer
/// (`getSponsorshipsAndEarnings()`), in the token (wei / 10^18).
pub fn decode_earnings(hex: &str) -> Result<Decimal, String> {
    let words = words(hex)?;
    let off = word_usize(words.get(1).ok_or("short answer")?)?;
    if off % 32 != 0 {
        return Err("misaligned offset".into());
    }
    let at = off / 32;
    let n = word_usize(words.get(at).ok_or("offset past the end")?)?;
    let mut sum = Decimal::ZERO;
    for i in 0..n {
        let w = words.get(at + 1 + i).ok_or("array past the end")?;
        sum = sum.checked_add(word_wei(w)?).ok_or("the sum overflows")?;
    }
    Ok(sum)
}

impl Rpc<'_> {
    /// One call; a JSON-RPC error object is an error with its message.
    pub async fn call(&self, method: &str, params: Json) -> Result<Json, PollError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut req = HttpRequest::post_json(self.url.clone(), body.to_string().into_bytes());
        req.timeout = self.timeout;
        let v = fetch_json(&req).await?;
        if let Some(err) = v.get("error") {
            return Err(PollError::Other(format!("{method}: {err}")));
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| PollError::Parse(format!("{method}: no result")))
    }

    pub async fn block_number(&self) -> Result<u64, PollError> {
        let v = self.call("eth_blockNumber", json!([])).await?;
        parse_quantity(&v).map_err(|m| PollError::Parse(format!("eth_blockNumber: {m}")))
    }

    /// `eth_call` of `data` on `to` at `block`; the hex result.
    pub async fn eth_call(&self, to: &str, data: &str, block: u64) -> Result<String, PollError> {
        let v = self
            .call(
                "eth_call",
                json!([{"to": to, "data": data}, block_tag(block)]),
            )
            .await?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| PollError::Parse("eth_call: result is not a hex string".into()))
    }

    /// `eth_getLogs` of `address` with topic0 in `topics`, blocks `from..=to`.
    pub async fn logs(
        &self,
        address: &str,
        topics: &[&str],
        from: u64,
        to: u64,
    ) -> Result<Vec<Json>, PollError> {
        let v = self
            .call(
                "eth_getLogs",
                json!([{"address": address, "topics": [topics], "fromBlock": block_tag(from), "toBlock": block_tag(to)}]),
            )
            .await?;
        match v {
            Json::Array(a) => Ok(a),
            _ => Err(PollError::Parse(
                "eth_getLogs: result is not an array".into(),
            )),
        }
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

    #[test]
    fn the_constructed_answer_decodes() {
        let p = format!(
            "{}/tests/fixtures/nodes/streamr/eth_call.constructed.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: Json = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let hex = v["getSponsorshipsAndEarnings"]["response"]["result"]
            .as_str()
            .unwrap();
        assert_eq!(
            decode_earnings(hex).unwrap().to_string(),
            "4.000000000000000001"
        );
        assert_eq!(parse_quantity(&json!("0x4c4b40")).unwrap(), 5_000_000);
    }
}

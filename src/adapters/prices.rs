//! Token prices: the `prices:` block of the config (static prices, and an optional HTTP JSON
//! price source) and the task that refreshes the coordinator's [`PriceTable`] from that source.
//!
//! `prices:` is either the plain map `{TOKEN: usd}` (static prices, as before) or
//! `{static: {TOKEN: usd}, http: {...}}`. The HTTP source is fetched every `interval`; each
//! token's price is read at its JSON pointer (a number, or a string holding one). A fetched
//! price is used until a newer one arrives; when the source keeps failing for longer than
//! `max_age` after a token's last successful fetch, the token falls back to its static price,
//! or to no price (USD earnings stop growing rather than use a price that may be far off).
//! `depin_token_price_last_update_timestamp_seconds{token}` is the time of the last successful
//! fetch of each token (only tokens of the HTTP source: static prices are never stale), which
//! the shipped alert `DepinTokenPriceStale` watches.
//!
//! Token `USD` (Storj earnings) has the price 1 unless the config says otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

use super::conf;
use super::fields::{number_or_string, valid_pointer};
use super::PollError;
use crate::clock::SharedClock;
use crate::net::http::{fetch_json, HttpRequest};
use crate::schema::diag::{join_key, Diagnostics};

/// The validated `prices.http` block.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpPriceSpec {
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    /// How often the source is fetched (default 5m).
    pub interval: Duration,
    /// How long one fetch may take (default 10s).
    pub timeout: Duration,
    /// How long a fetched price stays in use while the source fails (default 1h).
    pub max_age: Duration,
    /// Token → JSON pointer of its USD price.
    pub tokens: BTreeMap<String, String>,
}

/// The validated `prices:` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PricesConfig {
    pub static_prices: BTreeMap<String, f64>,
    pub http: Option<HttpPriceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    #[serde(default, rename = "static")]
    static_prices: Option<Value>,
    #[serde(default)]
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    max_age: Option<Value>,
    #[serde(default)]
    tokens: Option<BTreeMap<String, String>>,
}

fn static_map(
    raw: Option<Value>,
    path: &str,
    d: &mut Diagnostics,
) -> Option<BTreeMap<String, f64>> {
    let prices: BTreeMap<String, f64> = match raw {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => d.deserialize(path, v)?,
    };
    let mut ok = true;
    for (token, price) in &prices {
        let p = join_key(path, token);
        if token.trim().is_empty() {
            d.error(&p, "a token name must not be empty");
            ok = false;
        }
        if !price.is_finite() || *price < 0.0 {
            d.error(
                &p,
                format!("a price must be a number of USD, 0 or more, got {price}"),
            );
            ok = false;
        }
        ok &= check_priceable(token, &p, d);
    }
    ok.then_some(prices)
}

/// Points have no market price: a price for them is an error (`GRASS`, the traded token, is
/// another name, which real Grass nodes never report).
fn check_priceable(token: &str, path: &str, d: &mut Diagnostics) -> bool {
    if token.eq_ignore_ascii_case(crate::adapters::grass::TOKEN) {
        d.error(
            path,
            format!("{token} are Grass points: points have no market price, so they can never be valued in USD"),
        );
        return false;
    }
    true
}

/// Validates `prices:` in either form.
pub fn validate(raw: Option<Value>, d: &mut Diagnostics) -> Option<PricesConfig> {
    let structured = matches!(&raw, Some(Value::Mapping(m))
        if m.keys().any(|k| matches!(k.as_str(), Some("static") | Some("http"))));
    if !structured {
        return static_map(raw, "prices", d).map(|static_prices| PricesConfig {
            static_prices,
            http: None,
        });
    }
    let raw: RawPrices = d.deserialize("prices", raw.unwrap_or(Value::Null))?;
    let static_prices = static_map(raw.static_prices, "prices.static", d);
    let http = match raw.http {
        None => Some(None),
        Some(h) => {
            let p = "prices.http";
            let url = conf::http_url(h.url.as_deref(), None, &join_key(p, "url"), d);
            let interval = conf::duration_or(
                h.interval.as_ref(),
                Duration::from_secs(300),
                &join_key(p, "interval"),
                d,
            );
            let timeout = conf::duration_or(
                h.timeout.as_ref(),
                Duration::from_secs(10),
                &join_key(p, "timeout"),
                d,
            );
            let max_age = conf::duration_or(
                h.max_age.as_ref(),
                Duration::from_secs(3600),
                &join_key(p, "max_age"),
                d,
            );
            let mut ok = true;
            let tokens = h.tokens.unwrap_or_default();
            for token in tokens.keys() {
                ok &= check_priceable(token, &join_key(&join_key(p, "tokens"), token), d);
            }
            if tokens.is_empty() {
                d.error(
                    p,
                    "missing required key \"tokens\" (token: JSON pointer of its USD price)",
                );
                ok = false;
            }
            for (t, ptr) in &tokens {
                if !valid_pointer(ptr) {
                    d.error(
                        &join_key(&join_key(p, "tokens"), t),
                        format!("{ptr:?} is not a JSON pointer (write /key/key)"),
                    );
                    ok = false;
                }
            }
            if let (Some(i), Some(m)) = (interval, max_age) {
                if m < i {
                    d.error(
                        &join_key(p, "max_age"),
                        format!(
                            "max_age {} is shorter than interval {}: every price would expire before the next fetch",
                            humantime::format_duration(m),
                            humantime::format_duration(i)
                        ),
                    );
                    ok = false;
                }
            }
            match (url, interval, timeout, max_age, ok) {
                (Some(url), Some(interval), Some(timeout), Some(max_age), true) => {
                    Some(Some(HttpPriceSpec {
                        url,
                        headers: conf::headers(h.headers.as_ref()),
                        interval,
                        timeout,
                        max_age,
                        tokens,
                    }))
                }
                _ => None,
            }
        }
    };
    Some(PricesConfig {
        static_prices: static_prices?,
        http: http?,
    })
}

/// Reads each token's price out of an answer; a token whose value is missing or not a number
/// of 0 or more is left out (and named in the second list).
pub fn read_prices(spec: &HttpPriceSpec, v: &Json) -> (BTreeMap<String, f64>, Vec<String>) {
    let mut got = BTreeMap::new();
    let mut bad = Vec::new();
    for (token, ptr) in &spec.tokens {
        match v.pointer(ptr).and_then(number_or_string) {
            Some(p) if p >= 0.0 => {
                got.insert(token.clone(), p);
            }
            _ => bad.push(token.clone()),
        }
    }
    (got, bad)
}

/// USD per token unit. Shared so a price source can update it while the loop runs.
#[derive(Debug, Default)]
pub struct PriceTable(RwLock<BTreeMap<String, f64>>);

impl PriceTable {
    pub fn new(prices: BTreeMap<String, f64>) -> PriceTable {
        PriceTable(RwLock::new(prices))
    }

    pub fn get(&self, token: &str) -> Option<f64> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .copied()
    }

    pub fn set(&self, token: &str, usd: f64) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), usd);
    }

    /// Forgets a token's price (it expired and there is no static one).
    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    pub fn snapshot(&self) -> BTreeMap<String, f64> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What shows the prices a source fetches: the metrics layer implements it for
/// `depin_token_price_usd` and `depin_token_price_last_update_timestamp_seconds`.
pub trait PriceGauges: Send + Sync {
    fn set_price(&self, token: &str, usd: f64);
    fn set_updated(&self, token: &str, unix_seconds: f64);
    fn remove_price(&self, token: &str);
}

/// Fetches the source once.
pub async fn fetch_prices(
    spec: &HttpPriceSpec,
) -> Result<(BTreeMap<String, f64>, Vec<String>), PollError> {
    let mut req = HttpRequest::get(spec.url.clone());
    req.timeout = spec.timeout;
    req.headers.extend(spec.headers.iter().cloned());
    let v = fetch_json(&req).await?;
    Ok(read_prices(spec, &v))
}

/// The refresh loop of an HTTP price source.
pub struct HttpPriceSource {
    pub spec: HttpPriceSpec,
    pub static_prices: BTreeMap<String, f64>,
    pub table: Arc<PriceTable>,
    /// Where the prices and their update times are shown (`depin_token_price_usd`).
    pub gauges: Arc<dyn PriceGauges>,
    pub clock: SharedClock,
}

impl HttpPriceSource {
    /// One refresh: fetch, update the table and gauges, expire old prices. `last_ok` holds
    /// each token's last successful fetch (clock ms).
    pub async fn refresh(&self, last_ok: &mut BTreeMap<String, i64>) -> Result<(), PollError> {
        let result = fetch_prices(&self.spec).await;
        let now = self.clock.now_ms();
        let out = match result {
            Ok((got, bad)) => {
                for (token, p) in got {
                    self.table.set(&token, p);
                    self.gauges.set_price(&token, p);
                    self.gauges.set_updated(&token, now as f64 / 1000.0);
                    last_ok.insert(token, now);
                }
                if !bad.is_empty() {
                    tracing::warn!(tokens = ?bad, url = %self.spec.url, "price source: no usable price for these tokens");
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        let max_age = self.spec.max_age.as_millis() as i64;
        for token in self.spec.tokens.keys() {
            let stale = last_ok.get(token).is_none_or(|t| now - t > max_age);
            // A token never fetched keeps its static price (if any) from the start.
            if stale && last_ok.contains_key(token) {
                match self.static_prices.get(token) {
                    Some(p) => {
                        self.table.set(token, *p);
                        self.gauges.set_price(token, *p);
                    }
                    None => {
                        self.table.remove(token);
                        self.gauges.remove_price(token);
                    }
                }
                last_ok.remove(token);
                tracing::warn!(
                    token,
                    "price expired (max_age): falling back to the static price, if any"
                );
            }
        }
        out
    }

    /// Refreshes every `interval` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_ok = BTreeMap::new();
        let mut tick = tokio::time::interval(self.spec.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            match self.refresh(&mut last_ok).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(url = %self.spec.url, "price source answers again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(url = %self.spec.url, reason = e.reason(), error = %e, "price source failed");
                }
                Err(_) => {}
            }
        }
    }
}

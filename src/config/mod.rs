//! The config file: its schema, defaults and validation. It owns turning YAML text into a
//! validated [`Config`] and nothing else: it starts no tasks and touches no node.
//!
//! Two steps, as DESIGN.md asks: raw serde structs (`deny_unknown_fields`, every key optional
//! at the serde level so that a missing key is reported together with the other errors), then
//! validation into typed values (durations, byte sizes, resolved capacities). Validation
//! reports every error at once, one per line, as `FILE:LINE:COL: key.path: message`.
//!
//! # Reference
//!
//! ```yaml
//! global:
//!   poll_interval: 5s      # how often each node is polled (duration; default 5s)
//!   poll_timeout: 4s       # a poll that takes longer fails with reason "timeout" (duration;
//!                          # default 4s, or poll_interval when that is shorter). Must not be
//!                          # longer than poll_interval (an error, as in Prometheus' scrape
//!                          # config); equal is allowed.
//!   scrape_interval: 5s    # how often /metrics' registry is written into the time series
//!                          # database (duration; default = poll_interval)
//!   evaluation_interval: 15s  # how often rule groups without their own `interval` are
//!                          # evaluated (duration; default 15s: Prometheus' default is 1m, but
//!                          # our series move every 5s)
//!   external_labels:       # labels of this depin-orcha towards Alertmanager and in alert
//!     host: home-1         # templates ($externalLabels); names as Prometheus allows, not
//!                          # starting with __ (default: none)
//! rule_files:              # Prometheus rule files (recording and alerting rules); paths or
//!   - rules/*.yml          # globs, relative to this file's directory (default: none)
//! host:
//!   capacity:              # what the host can give its nodes
//!     cpu_cores: auto      # CPU cores: `auto` (the cores this process may use) or a number (default auto)
//!     memory_bytes: auto   # bytes: `auto` (MemTotal of /proc/meminfo), a number or a size
//!                          # like 16GiB / 500GB (default auto)
//!     disk_bytes: 2TB      # bytes, required; sizes: B, kB, MB, GB, TB, PB (powers of 1000),
//!                          # KiB … PiB (powers of 1024); case does not matter; the B may be left out
//!     bandwidth_bytes_per_second: 12.5MB   # bytes per second, required (100 Mbit/s = 12.5MB)
//! prices:                  # USD per token, static (default: none). A token without a price
//!   STORJ: 0.45            # is counted in depin_earnings_total but adds nothing to
//!   GLM: 0.30              # depin_earnings_usd_total (a warning says so). Grass pays points,
//!   DATA: 0.03             # which have no market price: give GRASS: 0 or leave it out.
//!   GRASS: 0.0             # USD (Storj earnings) is 1 unless given.
//! # … or, with a price source (the plain map above is the same as `static:` alone):
//! prices:
//!   static: {STORJ: 0.45}  # USD per token; used until the source answers, and again when a
//!                          # fetched price is older than max_age
//!   http:                  # a JSON document of prices, fetched every interval
//!     url: http://127.0.0.1:8090/prices.json   # required; http:// or https://
//!     headers: {Accept: application/json}      # extra request headers (default: none)
//!     interval: 5m         # duration between fetches (default 5m)
//!     timeout: 10s         # duration one fetch may take (default 10s)
//!     max_age: 1h          # a fetched price is dropped (static fallback, else no price) when
//!                          # the source has failed for this long (default 1h; >= interval)
//!     tokens:              # required: token → JSON pointer of its USD price (a number or a
//!       GLM: /glm/usd      # string holding one). Sets depin_token_price_usd and
//!       DATA: /data/usd    # depin_token_price_last_update_timestamp_seconds{token}.
//! nodes:                   # the nodes on this host (default: none)
//!   - name: golem          # unique; letters, digits, `_`, `-`, `.`; the `node` label
//!     kind: sim            # the node kind; the block named like the kind holds its settings
//!     poll_interval: 5s    # overrides global.poll_interval for this node
//!     poll_timeout: 4s     # overrides global.poll_timeout (default: the global one, capped at
//!                          # this node's poll_interval)
//!     labels: {site: home} # extra labels on every series of this node; names as Prometheus
//!                          # allows, not starting with __, not node/protocol/token/reason/le/quantile
//!     sim:                 # kind sim: a simulated node earning from a market model
//!       protocol: golem    # storj | golem | streamr | grass (required)
//!       allocation:        # this node's share of the host (required; each key default 0)
//!         cpu_cores: 4     # cores
//!         memory_bytes: 8GiB
//!         disk_bytes: 20GB
//!         bandwidth_bytes_per_second: 2MB
//!       seed: 7            # random seed of the market model (default: from the node name)
//!       market:            # the market model, the same keys as a scenario's nodes[i].market
//!         rate_per_hour: 0.05    # token units per hour with ample resources and demand 1 (or
//!                                # price_per_unit × work_per_hour, as scenarios write it)
//!         need: {cpu_cores: 4}   # allocation giving 63 % of the rate (same keys as allocation)
//!         daily_amplitude: 0.5   # relative swing of demand over the day, 0–1
//!         peak_hour: 15          # UTC hour of peak demand, 0–24
//!         weekly_amplitude: 0.1  # relative swing of demand over the week, 0–1
//!         peak_weekday: 2        # day of the weekly peak, 0 = Monday … 6 = Sunday
//!         drift: 0.08            # std. dev. of the hourly step of log-demand
//!         noise: 0.4             # relative std. dev. of per-minute earnings noise
//!         shocks: [{at: 10d, demand: 0.3}]  # from `at` after the node starts, demand × `demand`
//!         switching: {downtime: 5m}  # no earnings for this long after a change of allocation
//!                                # (cost_usd: counted by `simulate` only)
//!       fault:             # make the node misbehave, for tests and demos
//!         mode: hang       # hang (never answers) | error (HTTP 500) | refused | garbage (unparsable answer)
//!         after: 30s       # from the start (duration; default 0s)
//!         duration: 1m     # how long it lasts (duration; default: for ever)
//! remote_write:            # push every stored sample to central Prometheus-compatible
//!   - url: http://central:9090/api/v1/write   # stores (default: none); the keys are in
//!                          # `remote_write.rs`; global.external_labels are added to each sample
//! ```
//!
//! ## Real node kinds
//!
//! Every real kind takes an optional `allocation:` (same keys as `sim.allocation`): the share
//! the operator gave the node (container limits, the Storj allocation). It is shown as
//! `depin_allocation_*` where the node does not report its own, and is checked against the
//! host capacity. URLs are `http://` or `https://` (Mozilla's root certificates). Credentials from
//! a file (read at every poll, surrounding whitespace trimmed) or an environment variable: a
//! node with neither is a config error naming the node; a file that cannot be read is a
//! warning, and that node is down with reason `io` until it can be read, while the others run.
//! A value of a node's answer with a wrong type or missing is left out and counted in
//! `depin_adapter_values_skipped_total{field}`; answers are read up to 4 MiB (reason
//! `too_large` beyond).
//!
//! ```yaml
//!   - name: storj-disk1
//!     kind: storj          # a Storj storage node's dashboard API (no auth)
//!     storj:               # the block may be left empty: {}
//!       url: http://127.0.0.1:14002   # default; /api/sno/, /api/sno/satellites,
//!                                     # /api/sno/estimated-payout are read
//!       satellites_interval: 60s      # duration between /api/sno/satellites calls (default
//!                                     # and minimum 60s: expensive on the node)
//!       # Earnings: currentMonth.payout (US cents) as token USD (price 1); the monthly
//!       # restart is a counter reset; a drop within a month is skipped unless it persists for
//!       # 3 polls. Allocation disk_bytes = diskSpace.available (the allocated space).
//!   - name: golem
//!     kind: golem          # a Golem provider (yagna REST API)
//!     golem:
//!       url: http://127.0.0.1:7465    # default
//!       app_key_file: /etc/depin-orcha/golem.appkey  # the app key (yagna app-key list)
//!       app_key_env: YAGNA_APPKEY     # variable used when no file is given (default
//!                                     # YAGNA_APPKEY); one of them is required for invoices
//!       earnings: invoices            # invoices (default): SETTLED invoices, GLM, summed
//!                                     # exactly, each once | status: a command's JSON
//!       lookback: 30d                 # invoices: how far back the first poll reads (default 30d)
//!       count_accepted: false         # also count ACCEPTED invoices / the accepted amount
//!                                     # (default false: only what was paid)
//!       status_command: [yagna, payment, status, --json]  # status: argv, no shell (default)
//!       hardware_file: /home/golem/.local/share/ya-provider/hardware.json
//!                                     # ya-provider's profiles: the active one gives the
//!                                     # allocation (cpu_threads, mem_gib, storage_gib; GiB =
//!                                     # 2^30 bytes). Default: not read
//!   - name: streamr
//!     kind: streamr        # a Streamr node's HTTP server with the info plugin
//!     streamr:
//!       url: http://127.0.0.1:7171/info   # default; any JSON answer is healthy
//!       api_key_file: /etc/depin-orcha/streamr.apikey  # Bearer key (default: none)
//!       api_key_env: STREAMR_API_KEY      # or a variable (then required to be set)
//!       earnings:                         # off by default: on-chain DATA earnings
//!         rpc_url: http://127.0.0.1:8545  # a JSON-RPC endpoint (required)
//!         operator_contract: "0x…"        # the Operator contract (required, 40 hex digits)
//!         interval: 5m                    # duration between eth_calls (default 5m)
//!   - name: grass
//!     kind: grass          # a Grass container: health from Docker, points opt-in
//!     grass:
//!       container: grass              # container name or id (required)
//!       docker_socket: /var/run/docker.sock   # default
//!       points:                       # off by default; UNOFFICIAL account API
//!         url: https://api.grass.io/retrieveUser  # required
//!         token_file: /etc/depin-orcha/grass.token # or token_env (default GRASS_TOKEN)
//!         interval: 15m               # duration between calls (default 15m)
//!   - name: custom
//!     kind: http_json      # any JSON status endpoint
//!     http_json:
//!       url: http://127.0.0.1:9000/status   # required
//!       protocol: mynode                    # the protocol label (default http_json)
//!       headers: {X-Api-Key: abc}           # extra request headers (default: none)
//!       bearer_token_file: /path            # or bearer_token_env (default: no token)
//!       earnings:                           # token → JSON pointer, cumulative token units
//!         GLM: /wallet/earned               # a number or a decimal string
//!         USD: {pointer: /cents, scale: 0.01}   # scale: factor to the base unit (default 1)
//!       usage: {cpu_cores: /cpu, memory_bytes: {pointer: /mem_mib, scale: 1048576}}
//!       allocation_fields: {disk_bytes: /quota}   # the node's own allocation, same form
//!   - name: exporter
//!     kind: prometheus     # any Prometheus exporter's /metrics (text format)
//!     prometheus:
//!       url: http://127.0.0.1:9651/metrics  # required
//!       protocol: storj                     # the protocol label (default prometheus)
//!       headers: {}                         # and bearer_token_file / bearer_token_env
//!       earnings:                           # token → series; matching series are summed
//!         USD: {metric: storj_payout_currentMonth, labels: {type: payout}, scale: 0.01}
//!       usage: {disk_bytes: {metric: storj_total_diskspace, labels: {type: used}}}
//!       allocation_fields: {disk_bytes: {metric: storj_total_diskspace, labels: {type: available}}}
//!   - name: script
//!     kind: exec           # a program printing JSON (schema in src/adapters/exec.rs)
//!     exec:
//!       command: [/usr/local/bin/node-status, --json]   # argv, no shell (required)
//!       protocol: custom   # the protocol label (default exec)
//!       timeout: 10s       # the program is killed after this duration (default 10s)
//! ```
//!
//! Top-level keys starting with `x-` are ignored, so they can hold YAML anchors that nodes
//! merge in (`<<: *storj_defaults`).
//!
//! The sum of the nodes' allocations of each resource must fit the host's capacity, and so
//! must each node's own allocation.

pub mod remote_write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::adapters::kind::{KindBlock, NodeSpec};
use crate::adapters::{self, Adapter};
use crate::clock::SharedClock;
use crate::resources::{Allocation, Resource, Resources};
use crate::schema::diag::{join_index, join_key, validate_document, Diag, Diagnostics, Diags};
use crate::schema::units;

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the config came from (file path or a name like `demo.yml`), for messages.
    pub origin: String,
    pub global: Global,
    pub host: Host,
    /// USD per token unit: the static prices (`prices:` as a plain map, or `prices.static`),
    /// plus `USD: 1` when a node earns USD and no price was given.
    pub prices: BTreeMap<String, f64>,
    /// `prices.http`: a price source refreshed at run time.
    pub price_source: Option<crate::adapters::prices::HttpPriceSpec>,
    pub nodes: Vec<NodeConfig>,
    /// `rule_files`: paths or glob patterns, resolved against the config file's directory.
    pub rule_files: Vec<std::path::PathBuf>,
    /// `remote_write`: where samples are pushed (see [`remote_write`]).
    pub remote_write: Vec<remote_write::RemoteWriteConfig>,
    /// Findings that do not stop the config from loading, as `FILE:LINE:COL: path: message`.
    pub warnings: Vec<Diag>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// `global.poll_interval`: how often each node is polled (default 5s).
    pub poll_interval: Duration,
    /// `global.poll_timeout`: a poll taking longer fails with reason `timeout` (default 4s,
    /// capped at `poll_interval`; a longer value is an error).
    pub poll_timeout: Duration,
    /// `global.scrape_interval`: how often the registry is written into the tsdb (default =
    /// `poll_interval`).
    pub scrape_interval: Duration,
    /// `global.evaluation_interval`: interval of rule groups without their own (default 15s).
    pub evaluation_interval: Duration,
    /// `global.external_labels`.
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// What the host can give its nodes, `auto` values resolved.
    pub capacity: Allocation,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Unique per host; the value of the `node` label.
    pub name: String,
    /// The node's own poll interval (default: `global.poll_interval`).
    pub poll_interval: Duration,
    /// The node's own poll timeout (default: `global.poll_timeout`, capped at this node's
    /// `poll_interval`); never longer than `poll_interval`.
    pub poll_timeout: Duration,
    /// Extra labels on every series of this node.
    pub labels: BTreeMap<String, String>,
    /// The kind's validated settings block.
    pub kind: Arc<dyn NodeSpec>,
}

// By hand: a derive cannot compare `dyn NodeSpec` through the `Arc`.
impl PartialEq for NodeConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.poll_interval == other.poll_interval
            && self.poll_timeout == other.poll_timeout
            && self.labels == other.labels
            && *self.kind == *other.kind
    }
}

impl NodeConfig {
    pub fn protocol(&self) -> &str {
        self.kind.protocol()
    }

    pub fn allocation(&self) -> Option<Allocation> {
        self.kind.allocation()
    }

    /// The node's runtime adapter.
    pub fn build(&self, clock: SharedClock) -> Arc<dyn Adapter> {
        self.kind.build(&self.name, clock)
    }
}

impl Config {
    /// The names of all nodes' extra labels, sorted: the metric families carry all of them
    /// (a node without one has it empty, which Prometheus treats as absent).
    pub fn extra_label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| n.labels.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Why a config did not load. `Display` gives one error per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diags),
}

impl ConfigError {
    /// The error lines.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(v) => v.lines(),
            other => vec![other.to_string()],
        }
    }
}

/// Reads and validates a config file; messages name the file as given.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: origin.clone(),
        source,
    })?;
    parse_str(&text, &origin)
}

/// The demo config embedded in the binary: four simulated nodes (storj, golem, streamr, grass)
/// on a home host of 8 cores, 16GiB, 2TB of disk and 12.5 MB/s upstream.
pub const DEMO_YAML: &str = include_str!("demo.yml");

/// Parses [`DEMO_YAML`]. It is part of the program and covered by a test, so a failure here is
/// a bug in the build, not bad input.
pub fn demo() -> Config {
    match parse_str(DEMO_YAML, "demo.yml") {
        Ok(c) => c,
        Err(e) => panic!("the embedded demo config is invalid:\n{e}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: Option<Value>,
    #[serde(default)]
    host: Option<Value>,
    #[serde(default)]
    prices: Option<Value>,
    #[serde(default)]
    nodes: Option<Value>,
    #[serde(default)]
    rule_files: Option<Value>,
    #[serde(default)]
    remote_write: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default)]
    poll_interval: Option<Value>,
    #[serde(default)]
    poll_timeout: Option<Value>,
    #[serde(default)]
    scrape_interval: Option<Value>,
    #[serde(default)]
    evaluation_interval: Option<Value>,
    #[serde(default)]
    external_labels: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    capacity: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    #[serde(default)]
    cpu_cores: Option<Value>,
    #[serde(default)]
    memory_bytes: Option<Value>,
    #[serde(default)]
    disk_bytes: Option<Value>,
    #[serde(default)]
    bandwidth_bytes_per_second: Option<Value>,
}

/// The keys every node has, whatever its kind; the kind's block is split off before serde
/// sees the rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeCommon {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    poll_interval: Option<Value>,
    #[serde(default)]
    poll_timeout: Option<Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

const NODE_COMMON_KEYS: [&str; 5] = ["name", "kind", "poll_interval", "poll_timeout", "labels"];

/// Parses and validates config text. `origin` names it in messages (a file name).
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let (mut config, warnings) =
        validate_document(text, origin, |value, d| validate(value, origin, d))
            .map_err(ConfigError::Invalid)?;
    config.warnings = warnings;
    Ok(config)
}

fn validate(mut value: Value, origin: &str, d: &mut Diagnostics) -> Option<Config> {
    // YAML merge keys (`<<: *defaults`), so node lists can share settings through anchors.
    if let Err(e) = value.apply_merge() {
        d.error_at(None, format!("invalid merge key (<<): {e}"));
        return None;
    }
    // Top-level keys starting with `x-` are free for anchors (as in Compose files).
    if let Value::Mapping(m) = &mut value {
        m.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    }
    if matches!(value, Value::Null) {
        d.error_at(
            Some((1, 1)),
            "the config is empty: expected a mapping with at least host.capacity",
        );
        return None;
    }
    // `host:` with nothing under it reads as absent to serde; tell the two apart.
    let host_written = value.get("host").is_some();
    let raw: RawConfig = d.deserialize("", value)?;

    let global = validate_global(raw.global, d);
    let host = match raw.host {
        Some(h) => validate_host(h, d),
        None if host_written => validate_host(Value::Null, d),
        None => {
            d.error("", "missing required key \"host\"");
            None
        }
    };
    let prices = crate::adapters::prices::validate(raw.prices, d);
    let nodes = match raw.nodes {
        None | Some(Value::Null) => None,
        Some(Value::Sequence(list)) => Some(list),
        Some(_) => {
            d.error("nodes", "expected a list of nodes");
            return None;
        }
    };
    let nodes = match (nodes, &global) {
        (Some(list), Some(g)) => validate_nodes(list, g, d),
        (Some(list), None) => {
            // Still check the nodes against the defaults, so their errors show too.
            let g = Global {
                poll_interval: Duration::from_secs(5),
                poll_timeout: Duration::from_secs(4),
                scrape_interval: Duration::from_secs(5),
                evaluation_interval: Duration::from_secs(15),
                external_labels: BTreeMap::new(),
            };
            validate_nodes(list, &g, d)
        }
        (None, _) => Some(Vec::new()),
    };

    if let (Some(host), Some(nodes)) = (&host, &nodes) {
        check_allocations(host, nodes, d);
    }
    let mut prices = prices;
    if let (Some(p), Some(nodes)) = (&mut prices, &nodes) {
        // USD is priced 1 unless the config says otherwise (Storj earnings are in USD).
        if nodes
            .iter()
            .any(|n| n.kind.tokens().iter().any(|t| t == "USD"))
        {
            p.static_prices.entry("USD".to_string()).or_insert(1.0);
        }
    }
    if let (Some(p), Some(nodes)) = (&prices, &nodes) {
        let fetched: Vec<&String> = p.http.iter().flat_map(|h| h.tokens.keys()).collect();
        for (i, n) in nodes.iter().enumerate() {
            for token in n.kind.tokens() {
                if !p.static_prices.contains_key(&token) && !fetched.contains(&&token) {
                    d.warn(
                        &join_key(&join_index("nodes", i), "kind"),
                        format!("token {token} has no price in prices: node \"{}\" adds nothing to depin_earnings_usd_total", n.name),
                    );
                }
            }
        }
    }
    let rule_files = validate_rule_files(raw.rule_files, origin, d);
    let remote_write = remote_write::validate(raw.remote_write, origin, d);
    Some(Config {
        remote_write: remote_write?,
        origin: origin.to_string(),
        rule_files: rule_files?,
        global: global?,
        host: host?,
        price_source: prices.as_ref().and_then(|p| p.http.clone()),
        prices: prices?.static_prices,
        nodes: nodes?,
        warnings: Vec::new(),
    })
}

/// A positive duration at `path`, or `default` when absent.
fn positive_duration(
    v: Option<&Value>,
    path: &str,
    d: &mut Diagnostics,
) -> Result<Option<Duration>, ()> {
    let Some(v) = v else { return Ok(None) };
    match units::duration(v) {
        Ok(x) if x.is_zero() => {
            d.error(path, "must be greater than 0");
            Err(())
        }
        Ok(x) => Ok(Some(x)),
        Err(e) => {
            d.error(path, e);
            Err(())
        }
    }
}

fn validate_global(raw: Option<Value>, d: &mut Diagnostics) -> Option<Global> {
    let raw: RawGlobal = match raw {
        None | Some(Value::Null) => RawGlobal::default(),
        Some(v) => d.deserialize("global", v)?,
    };
    let interval = positive_duration(raw.poll_interval.as_ref(), "global.poll_interval", d);
    let timeout = positive_duration(raw.poll_timeout.as_ref(), "global.poll_timeout", d);
    let scrape = positive_duration(raw.scrape_interval.as_ref(), "global.scrape_interval", d);
    let evaluation = positive_duration(
        raw.evaluation_interval.as_ref(),
        "global.evaluation_interval",
        d,
    );
    let external_labels = validate_external_labels(raw.external_labels, d);
    let (Ok(interval), Ok(timeout), Ok(scrape), Ok(evaluation), Some(external_labels)) =
        (interval, timeout, scrape, evaluation, external_labels)
    else {
        return None;
    };
    let poll_interval = interval.unwrap_or(Duration::from_secs(5));
    // As Prometheus does with scrape_timeout: an unset timeout never exceeds the interval.
    let poll_timeout = timeout.unwrap_or_else(|| Duration::from_secs(4).min(poll_interval));
    if poll_timeout > poll_interval {
        d.error(
            "global.poll_timeout",
            format!(
                "poll_timeout {} is longer than poll_interval {}",
                humantime::format_duration(poll_timeout),
                humantime::format_duration(poll_interval)
            ),
        );
        return None;
    }
    Some(Global {
        poll_interval,
        poll_timeout,
        scrape_interval: scrape.unwrap_or(poll_interval),
        evaluation_interval: evaluation.unwrap_or(Duration::from_secs(15)),
        external_labels,
    })
}

/// `global.external_labels`: a mapping of valid label names (not starting with `__`) to
/// non-empty strings.
fn validate_external_labels(
    raw: Option<Value>,
    d: &mut Diagnostics,
) -> Option<BTreeMap<String, String>> {
    let map = match raw {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            d.error(
                "global.external_labels",
                "expected a mapping of label names to values",
            );
            return None;
        }
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in map {
        let Some(name) = k.as_str().map(str::to_string) else {
            d.error("global.external_labels", "label names must be strings");
            ok = false;
            continue;
        };
        let path = join_key("global.external_labels", &name);
        if !valid_label_name(&name) || name.starts_with("__") {
            d.error(
                &path,
                format!(
                    "invalid label name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
                ),
            );
            ok = false;
        }
        let value = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                d.error(&path, "expected a string");
                ok = false;
                continue;
            }
        };
        if value.is_empty() {
            d.error(&path, "must not be empty");
            ok = false;
        }
        out.insert(name, value);
    }
    ok.then_some(out)
}

/// `rule_files`: a list of paths or glob patterns, resolved against the directory of the
/// config file as Prometheus resolves them.
fn validate_rule_files(
    raw: Option<Value>,
    origin: &str,
    d: &mut Diagnostics,
) -> Option<Vec<std::path::PathBuf>> {
    let list = match raw {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Sequence(l)) => l,
        Some(_) => {
            d.error("rule_files", "expected a list of paths or glob patterns");
            return None;
        }
    };
    let dir = Path::new(origin).parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    let mut ok = true;
    for (i, v) in list.into_iter().enumerate() {
        let path = join_index("rule_files", i);
        let Value::String(p) = v else {
            d.error(&path, "expected a path or glob pattern");
            ok = false;
            continue;
        };
        if p.is_empty() {
            d.error(&path, "must not be empty");
            ok = false;
            continue;
        }
        if let Err(e) = glob::Pattern::new(&p) {
            d.error(&path, format!("invalid rule file path {p:?}: {e}"));
            ok = false;
            continue;
        }
        out.push(resolve_relative(dir, &p));
    }
    ok.then_some(out)
}

fn validate_host(raw: Value, d: &mut Diagnostics) -> Option<Host> {
    if raw.is_null() {
        d.error("host", "missing required key \"capacity\"");
        return None;
    }
    let host_has_capacity = raw.get("capacity").is_some();
    let raw: RawHost = d.deserialize("host", raw)?;
    let cap = match raw.capacity {
        None if !host_has_capacity => {
            d.error("host", "missing required key \"capacity\"");
            return None;
        }
        // `capacity:` with nothing under it: report the keys it needs.
        None | Some(Value::Null) => RawCapacity::default(),
        Some(v) => d.deserialize::<RawCapacity>("host.capacity", v)?,
    };
    let auto = Value::String("auto".into());
    let raw = Resources {
        cpu_cores: Some(cap.cpu_cores.as_ref().unwrap_or(&auto)),
        memory_bytes: Some(cap.memory_bytes.as_ref().unwrap_or(&auto)),
        disk_bytes: cap.disk_bytes.as_ref(),
        bandwidth_bytes_per_second: cap.bandwidth_bytes_per_second.as_ref(),
    };
    let mut ok = true;
    let capacity = raw.map(|r, v| {
        let path = join_key("host.capacity", r.key());
        let Some(v) = v else {
            d.error(
                "host.capacity",
                format!("missing required key \"{}\"", r.key()),
            );
            ok = false;
            return 0.0;
        };
        let parsed = match (r, units::is_auto(v)) {
            (Resource::CpuCores, true) => units::detect_cpu_cores(),
            (Resource::MemoryBytes, true) => units::detect_memory_bytes(),
            (_, true) => Err(format!(
                "{} cannot be auto: give a number or a size",
                r.key()
            )),
            (Resource::CpuCores, false) => units::cores(v),
            (_, false) => units::size(v),
        };
        match parsed {
            Ok(x) if x.is_finite() && x > 0.0 => x,
            Ok(x) => {
                let shown = if r == Resource::CpuCores {
                    units::trim_float(x)
                } else {
                    units::fmt_bytes(x)
                };
                d.error(&path, format!("must be greater than 0, got {shown}"));
                ok = false;
                0.0
            }
            Err(e) => {
                d.error(&path, e);
                ok = false;
                0.0
            }
        }
    });
    ok.then_some(Host { capacity })
}

const RESERVED_LABELS: [&str; 7] = [
    "node", "protocol", "token", "reason", "field", "le", "quantile",
];

fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_nodes(
    list: Vec<Value>,
    global: &Global,
    d: &mut Diagnostics,
) -> Option<Vec<NodeConfig>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in list.into_iter().enumerate() {
        let path = join_index("nodes", i);
        match validate_node(v, &path, global, d) {
            Some(n) => {
                if let Some(first) = seen.get(&n.name) {
                    d.error(
                        &join_key(&path, "name"),
                        format!(
                            "duplicate node name \"{}\" (also nodes[{first}].name)",
                            n.name
                        ),
                    );
                    ok = false;
                } else {
                    seen.insert(n.name.clone(), i);
                }
                out.push(n);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn validate_node(v: Value, path: &str, global: &Global, d: &mut Diagnostics) -> Option<NodeConfig> {
    let Value::Mapping(map) = v else {
        d.error(path, "a node must be a mapping with at least name and kind");
        return None;
    };
    // Split the kind's block (the key named like the kind) from the common keys.
    let kind_word = map.get("kind").and_then(Value::as_str).map(str::to_string);
    let mut common = serde_yaml::Mapping::new();
    let mut block: Option<Value> = None;
    let mut ok = true;
    for (k, v) in map {
        let key = k.as_str().map(str::to_string);
        match key {
            Some(key) if NODE_COMMON_KEYS.contains(&key.as_str()) => {
                common.insert(k, v);
            }
            Some(key) if Some(&key) == kind_word.as_ref() => block = Some(v),
            // Without a kind the block cannot be checked; "missing kind" says enough.
            Some(key) if kind_word.is_none() && adapters::kind::find(&key).is_some() => {}
            Some(key) => {
                let expected = match &kind_word {
                    Some(kw) if adapters::kind::find(kw).is_some() => {
                        format!("{}, {kw}", NODE_COMMON_KEYS.join(", "))
                    }
                    _ => NODE_COMMON_KEYS.join(", "),
                };
                let hint = if adapters::kind::find(&key).is_some() {
                    format!("; the block \"{key}\" only goes with kind: {key}")
                } else {
                    String::new()
                };
                d.error(
                    &join_key(path, &key),
                    format!("unknown key \"{key}\"; expected one of {expected}{hint}"),
                );
                ok = false;
            }
            None => {
                d.error(path, "node keys must be strings");
                ok = false;
            }
        }
    }
    let Some(raw) = d.deserialize::<RawNodeCommon>(path, Value::Mapping(common)) else {
        // Still check the kind's block, so its errors show in the same run.
        if let Some(k) = &kind_word {
            validate_kind(k, block, path, "", d);
        }
        return None;
    };

    let name = match raw.name {
        Some(n) if valid_node_name(&n) => Some(n),
        Some(n) => {
            d.error(
                &join_key(path, "name"),
                format!("invalid node name \"{n}\": use letters, digits, _, - and . only"),
            );
            None
        }
        None => {
            d.error(path, "missing required key \"name\"");
            None
        }
    };
    let interval = positive_duration(
        raw.poll_interval.as_ref(),
        &join_key(path, "poll_interval"),
        d,
    );
    let timeout = positive_duration(
        raw.poll_timeout.as_ref(),
        &join_key(path, "poll_timeout"),
        d,
    );
    let times = match (interval, timeout) {
        (Ok(i), Ok(t)) => {
            let interval = i.unwrap_or(global.poll_interval);
            let timeout = t.unwrap_or_else(|| global.poll_timeout.min(interval));
            if timeout > interval {
                let at = if t.is_some() {
                    "poll_timeout"
                } else {
                    "poll_interval"
                };
                d.error(
                    &join_key(path, at),
                    format!(
                        "poll_timeout {} is longer than poll_interval {}",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
                None
            } else {
                Some((interval, timeout))
            }
        }
        _ => None,
    };
    for label in raw.labels.keys() {
        let p = join_key(&join_key(path, "labels"), label);
        if !valid_label_name(label) || label.starts_with("__") {
            d.error(&p, format!("invalid label name \"{label}\": use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"));
            ok = false;
        } else if RESERVED_LABELS.contains(&label.as_str()) {
            d.error(
                &p,
                format!("label \"{label}\" is set by depin-orcha itself"),
            );
            ok = false;
        }
    }
    let kind = match raw.kind {
        None => {
            d.error(path, "missing required key \"kind\"");
            None
        }
        Some(k) => validate_kind(&k, block, path, name.as_deref().unwrap_or(""), d),
    };
    let (interval, timeout) = times?;
    ok.then_some(NodeConfig {
        name: name?,
        poll_interval: interval,
        poll_timeout: timeout,
        labels: raw.labels,
        kind: kind?,
    })
}

/// Dispatches a node's settings block to its kind.
fn validate_kind(
    kind: &str,
    block: Option<Value>,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<Arc<dyn NodeSpec>> {
    let path = join_key(node_path, kind);
    let Some(k) = adapters::kind::find(kind) else {
        d.error(
            &join_key(node_path, "kind"),
            format!(
                "unknown kind \"{kind}\"; expected one of {}",
                adapters::kind::names().join(", ")
            ),
        );
        return None;
    };
    let block = KindBlock {
        block,
        path: &path,
        node_path,
        node_name,
    };
    (k.validate)(block, d)
}

fn check_allocations(host: &Host, nodes: &[NodeConfig], d: &mut Diagnostics) {
    for r in Resource::ALL {
        let cap = host.capacity.get(r);
        let fmt = |v: f64| {
            if r == Resource::CpuCores {
                units::trim_float(v)
            } else {
                units::fmt_bytes(v)
            }
        };
        let mut sum = 0.0;
        let mut parts = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Some(a) = n.kind.allocation() else {
                continue;
            };
            let at = join_key(n.kind.kind(), "allocation");
            let v = a.get(r);
            if v > cap {
                let p = join_key(&join_key(&join_index("nodes", i), &at), r.key());
                d.error(
                    &p,
                    format!(
                        "allocation {} exceeds the host capacity {}",
                        fmt(v),
                        fmt(cap)
                    ),
                );
            }
            if v > 0.0 {
                sum += v;
                parts.push(format!("{} {}", n.name, fmt(v)));
            }
        }
        // A little slack for sizes that add up through floating point.
        if sum > cap * (1.0 + 1e-12) && parts.len() > 1 {
            d.error(
                &join_key("host.capacity", r.key()),
                format!(
                    "the nodes' allocations add up to {} ({}), more than the capacity {}",
                    fmt(sum),
                    parts.join(", "),
                    fmt(cap)
                ),
            );
        }
    }
}

/// Resolves rule file paths from a config file as Prometheus does: relative paths are relative
/// to the config file's directory.
fn resolve_relative(config_dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_loads_with_four_nodes() {
        let c = demo();
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["storj", "golem", "streamr", "grass"]);
        assert_eq!(c.host.capacity.cpu_cores, 8.0);
        assert_eq!(c.host.capacity.memory_bytes, 16.0 * 1073741824.0);
        assert_eq!(c.global.poll_interval, Duration::from_secs(5));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn defaults() {
        let c = parse_str(
            "host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\n",
            "t.yml",
        )
        .unwrap();
        assert_eq!(c.global.poll_interval, Duration::from_secs(5));
        assert_eq!(c.global.poll_timeout, Duration::from_secs(4));
        assert_eq!(c.global.scrape_interval, Duration::from_secs(5));
        assert!(c.host.capacity.cpu_cores >= 1.0);
        assert!(c.host.capacity.memory_bytes > 0.0);
        assert!(c.nodes.is_empty());
        assert_eq!(c.global.evaluation_interval, Duration::from_secs(15));
        assert!(c.global.external_labels.is_empty());
        assert!(c.rule_files.is_empty());
    }

    #[test]
    fn rule_files_are_relative_to_the_config_directory() {
        let text = "host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\nrule_files: [rules/*.yml, /abs/x.yml]\nglobal: {external_labels: {host: a}}\n";
        let c = parse_str(text, "/etc/depin/config.yml").unwrap();
        assert_eq!(
            c.rule_files,
            vec![
                std::path::PathBuf::from("/etc/depin/rules/*.yml"),
                std::path::PathBuf::from("/abs/x.yml")
            ]
        );
        assert_eq!(
            c.global.external_labels.get("host").map(String::as_str),
            Some("a")
        );
        let c = parse_str(text, "config.yml").unwrap();
        assert_eq!(c.rule_files[0], std::path::PathBuf::from("rules/*.yml"));
    }

    #[test]
    fn short_interval_caps_the_default_timeout() {
        let text = "global: {poll_interval: 2s}\nhost: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\n\
                    nodes:\n  - name: a\n    kind: sim\n    poll_interval: 1s\n    sim: {protocol: grass, allocation: {}}\n";
        let c = parse_str(text, "t.yml").unwrap();
        assert_eq!(c.global.poll_timeout, Duration::from_secs(2));
        assert_eq!(c.nodes[0].poll_timeout, Duration::from_secs(1));
    }

    #[test]
    fn missing_price_warns() {
        let text = "host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\nprices: {GLM: 0.3}\n\
                    nodes:\n  - name: a\n    kind: sim\n    sim: {protocol: grass, allocation: {}}\n";
        let c = parse_str(text, "t.yml").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0]
                .to_string()
                .starts_with("t.yml:5:5: nodes[0].kind: token GRASS has no price"),
            "{:?}",
            c.warnings
        );
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text, "t.yml") {
            Ok(c) => panic!("should fail: {c:?}"),
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn empty_sections() {
        // Empty global, prices and nodes are their defaults; an empty host is not enough.
        let e = errors("global:\nprices:\nnodes:\nhost:\n");
        assert_eq!(e, ["t.yml:4:1: host: missing required key \"capacity\""]);
        let e = errors("host:\n  capacity:\n");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn wrong_item_types_in_lists_are_reported_once() {
        let e = errors("host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\nprices: [1, 2]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.yml:2:1: prices: invalid type: sequence, expected a mapping"),
            "{e:?}"
        );
    }
}

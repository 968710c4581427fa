//! The config file: its schema, defaults and validation. It owns turning YAML text into a
//! validated [`Config`] and nothing else: it starts no tasks and touches no node.
//!
//! Two steps: raw serde structs (`deny_unknown_fields`, every key optional
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
//!   GLM: 0.30              # depin_earnings_usd_total (a warning says so). USD (Storj
//!   DATA: 0.03             # earnings) is 1 unless given. Grass points (grass_points) have
//!                          # no market price: a price for them is an error.
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

mod global;
mod host;
mod nodes;
mod raw;
pub mod remote_write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;

use self::global::{validate_global, validate_rule_files};
use self::host::{check_allocations, validate_host};
use self::nodes::validate_nodes;
use self::raw::RawConfig;
use crate::adapters::kind::NodeSpec;
use crate::adapters::Adapter;
use crate::clock::SharedClock;
use crate::resources::Allocation;
use crate::schema::diag::{join_index, join_key, validate_document, Diag, Diagnostics, Diags};

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

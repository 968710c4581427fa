//! The raw serde shapes of the config file: every key optional at the serde level and unknown
//! keys refused, so validation can report each finding at its position.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) global: Option<Value>,
    #[serde(default)]
    pub(super) host: Option<Value>,
    #[serde(default)]
    pub(super) prices: Option<Value>,
    #[serde(default)]
    pub(super) nodes: Option<Value>,
    #[serde(default)]
    pub(super) rule_files: Option<Value>,
    #[serde(default)]
    pub(super) remote_write: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    #[serde(default)]
    pub(super) poll_interval: Option<Value>,
    #[serde(default)]
    pub(super) poll_timeout: Option<Value>,
    #[serde(default)]
    pub(super) scrape_interval: Option<Value>,
    #[serde(default)]
    pub(super) evaluation_interval: Option<Value>,
    #[serde(default)]
    pub(super) external_labels: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    #[serde(default)]
    pub(super) capacity: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapacity {
    #[serde(default)]
    pub(super) cpu_cores: Option<Value>,
    #[serde(default)]
    pub(super) memory_bytes: Option<Value>,
    #[serde(default)]
    pub(super) disk_bytes: Option<Value>,
    #[serde(default)]
    pub(super) bandwidth_bytes_per_second: Option<Value>,
}

/// The keys every node has, whatever its kind; the kind's block is split off before serde
/// sees the rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNodeCommon {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) poll_interval: Option<Value>,
    #[serde(default)]
    pub(super) poll_timeout: Option<Value>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

pub(super) const NODE_COMMON_KEYS: [&str; 5] =
    ["name", "kind", "poll_interval", "poll_timeout", "labels"];

//! The raw serde shapes of the optimization rules: every key optional at the serde level and
//! unknown keys refused, so validation can report each finding at its position.

use serde::Deserialize;
use serde_yaml::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    #[serde(default)]
    pub(super) interval: Option<Value>,
    #[serde(default)]
    pub(super) gates: Option<Value>,
    #[serde(default)]
    pub(super) confidence: Option<Value>,
    #[serde(default)]
    pub(super) resources: Option<Value>,
    #[serde(default)]
    pub(super) protocols: Option<Value>,
    #[serde(default)]
    pub(super) nodes: Option<Value>,
    #[serde(default)]
    pub(super) planner: Option<Value>,
    #[serde(default)]
    pub(super) exploration_budget: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGates {
    #[serde(default)]
    pub(super) min_improvement: Option<Value>,
    #[serde(default)]
    pub(super) min_confidence: Option<Value>,
    #[serde(default)]
    pub(super) max_reallocations_per_hour: Option<Value>,
    #[serde(default)]
    pub(super) min_hold: Option<Value>,
    #[serde(default)]
    pub(super) max_step: Option<Value>,
    #[serde(default)]
    pub(super) payback_within_hold: Option<Value>,
    #[serde(default)]
    pub(super) max_reallocations_per_day: Option<Value>,
    #[serde(default)]
    pub(super) max_reallocations_per_30_days: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfidence {
    #[serde(default)]
    pub(super) window: Option<Value>,
    #[serde(default)]
    pub(super) resolution: Option<Value>,
    #[serde(default)]
    pub(super) cv_half: Option<Value>,
    #[serde(default)]
    pub(super) min_samples: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    #[serde(default)]
    pub(super) capacity: Option<Value>,
    #[serde(default)]
    pub(super) reserve: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    #[serde(default)]
    pub(super) value_per_hour: Option<Value>,
    #[serde(default)]
    pub(super) demand: Option<Value>,
    #[serde(default)]
    pub(super) usage: Option<Value>,
    #[serde(default)]
    pub(super) response: Option<Value>,
    #[serde(default)]
    pub(super) needs_together: Option<Value>,
    #[serde(default)]
    pub(super) bounds: Option<Value>,
    #[serde(default)]
    pub(super) actuator: Option<Value>,
    #[serde(default)]
    pub(super) switching_cost: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponse {
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) knee: Option<Value>,
    #[serde(default)]
    pub(super) points: Option<Value>,
    #[serde(default)]
    pub(super) demand_cap: Option<Value>,
    #[serde(default)]
    pub(super) weight: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTogether {
    #[serde(default)]
    pub(super) resources: Option<Vec<String>>,
    #[serde(default)]
    pub(super) ratio: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActuator {
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) command: Option<Vec<String>>,
    #[serde(default)]
    pub(super) undo: Option<Vec<String>>,
    #[serde(default)]
    pub(super) check: Option<Vec<String>>,
    #[serde(default)]
    pub(super) container: Option<String>,
    #[serde(default)]
    pub(super) socket: Option<String>,
    #[serde(default)]
    pub(super) program: Option<Value>,
    #[serde(default)]
    pub(super) profile: Option<String>,
    #[serde(default)]
    pub(super) data_dir: Option<String>,
    #[serde(default)]
    pub(super) config_file: Option<String>,
    #[serde(default)]
    pub(super) restart: Option<Vec<String>>,
    #[serde(default)]
    pub(super) unit: Option<String>,
    #[serde(default)]
    pub(super) runtime: Option<bool>,
    #[serde(default)]
    pub(super) timeout: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwitching {
    #[serde(default)]
    pub(super) downtime: Option<Value>,
    #[serde(default)]
    pub(super) usd: Option<Value>,
}

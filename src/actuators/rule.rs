//! The `actuator:` entry of an optimization rule as written: which kind moves the node and
//! that kind's keys, checked key by key by the optimization-rules parser. The defaults are
//! filled in, and what is still missing reported, by [`super::ActuatorKind::from_rule`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `actuator`: `sim`, `exec`, `docker`, `golem_profile`, `storj_config`, `systemd`, or a
/// mapping `{kind: ..., <that kind's keys>}` (see [`ActuatorParams`]). The parser checks that
/// each key belongs to the kind and is well formed; [`super::ActuatorKind::from_rule`]
/// fills in the defaults and reports what is still missing for a node at start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActuatorRule {
    pub kind: RuleKind,
    /// `command` (exec): argv; the new allocation is passed in the environment by `actuators`.
    pub command: Option<Vec<String>>,
    /// The other kinds' keys; all `None` in the string form.
    #[serde(skip_serializing_if = "ActuatorParams::is_empty")]
    pub params: ActuatorParams,
}

/// The keys of an actuator mapping besides `kind` and `command`; which kind takes which is
/// [`RuleKind::keys`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ActuatorParams {
    /// `undo` (exec): argv template run with the previous allocation to undo a step. Default:
    /// `command` with the previous allocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<Vec<String>>,
    /// `check` (exec): argv template run in pre-flight; must exit 0. Default: `command`'s
    /// program must be found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Vec<String>>,
    /// `container` (docker): container name or id. Default: the node's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `socket` (docker): the Engine's unix socket. Default `/var/run/docker.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// `program` (golem_profile, systemd): the tool to run, a name or path or an argv prefix
    /// (`[docker, exec, golem, ya-provider]`). Default `ya-provider`, `systemctl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<Vec<String>>,
    /// `profile` (golem_profile): the hardware profile to update. Default `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `data_dir` (golem_profile): ya-provider's `--data-dir`. Default: ya-provider's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// `config_file` (storj_config): the node's config.yaml. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// `restart` (storj_config): argv that restarts the node after an edit. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Vec<String>>,
    /// `unit` (systemd): the service. Default: the node's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `runtime` (systemd): `set-property --runtime` (lost at reboot). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<bool>,
    /// `timeout` (every kind but sim): the longest one call or command may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl ActuatorParams {
    pub fn is_empty(&self) -> bool {
        *self == ActuatorParams::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Sim,
    Exec,
    Docker,
    GolemProfile,
    StorjConfig,
    Systemd,
}

impl RuleKind {
    pub const ALL: [RuleKind; 6] = [
        RuleKind::Sim,
        RuleKind::Exec,
        RuleKind::Docker,
        RuleKind::GolemProfile,
        RuleKind::StorjConfig,
        RuleKind::Systemd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Sim => "sim",
            RuleKind::Exec => "exec",
            RuleKind::Docker => "docker",
            RuleKind::GolemProfile => "golem_profile",
            RuleKind::StorjConfig => "storj_config",
            RuleKind::Systemd => "systemd",
        }
    }

    /// The mapping keys this kind takes besides `kind`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            RuleKind::Sim => &[],
            RuleKind::Exec => &["command", "undo", "check", "timeout"],
            RuleKind::Docker => &["container", "socket", "timeout"],
            RuleKind::GolemProfile => &["program", "profile", "data_dir", "timeout"],
            RuleKind::StorjConfig => &["config_file", "restart", "timeout"],
            RuleKind::Systemd => &["unit", "program", "runtime", "timeout"],
        }
    }
}

//! A node's `actuator:`: a kind's name or a mapping with that kind's keys, checked against
//! the keys the kind takes.

use std::time::Duration;

use serde_yaml::Value;

use super::raw::RawActuator;
use super::scalar::show;
use crate::actuators::exec::ArgvTemplate;
use crate::actuators::rule::{ActuatorParams, ActuatorRule, RuleKind};
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

pub(super) fn validate_actuator(v: Value, path: &str, d: &mut Diagnostics) -> Option<ActuatorRule> {
    let (k, raw) = kind_of(v, path, d)?;
    let Some(raw) = raw else {
        if k == RuleKind::Exec {
            d.error(path, "actuator exec needs command: [program, args...]");
            return None;
        }
        return Some(ActuatorRule {
            kind: k,
            command: None,
            params: ActuatorParams::default(),
        });
    };
    let mut ok = keys_of_kind(k, &raw, path, d);
    let program_list = program_argv(&raw.program, path, &mut ok, d);
    let mut text = |key: &str, v: &Option<String>| -> Option<String> {
        let s = v.as_ref()?;
        if s.trim().is_empty() {
            d.error(&join_key(path, key), "must not be empty");
            ok = false;
            return None;
        }
        Some(s.clone())
    };
    let container = text("container", &raw.container);
    let socket = text("socket", &raw.socket);
    let profile = text("profile", &raw.profile);
    let data_dir = text("data_dir", &raw.data_dir);
    let config_file = text("config_file", &raw.config_file);
    let unit = text("unit", &raw.unit);
    let mut argv = |key: &str, v: &Option<Vec<String>>| -> Option<Vec<String>> {
        let a = v.as_ref()?;
        if a.is_empty() {
            d.error(&join_key(path, key), "must name a program");
            ok = false;
            return None;
        }
        if a[0].trim().is_empty() {
            d.error(
                &join_index(&join_key(path, key), 0),
                "the program must not be empty",
            );
            ok = false;
            return None;
        }
        Some(a.clone())
    };
    let command = argv("command", &raw.command);
    let undo = argv("undo", &raw.undo);
    let check = argv("check", &raw.check);
    let program = argv("program", &program_list);
    let restart = argv("restart", &raw.restart);
    // exec's argv templates: an unknown `{placeholder}` is an error here, not at the first move.
    for (key, t) in [("command", &command), ("undo", &undo), ("check", &check)] {
        if let Some(t) = t {
            if let Err((i, e)) = ArgvTemplate::parse(t) {
                d.error(&join_index(&join_key(path, key), i), e);
                ok = false;
            }
        }
    }
    if k == RuleKind::Exec && raw.command.is_none() {
        d.error(path, "actuator exec needs command: [program, args...]");
        ok = false;
    }
    let timeout = timeout_of(&raw.timeout, path, &mut ok, d);
    ok.then_some(ActuatorRule {
        kind: k,
        command,
        params: ActuatorParams {
            undo,
            check,
            container,
            socket,
            program,
            profile,
            data_dir,
            config_file,
            restart,
            unit,
            runtime: raw.runtime,
            timeout,
        },
    })
}

/// The actuator's kind, from its name or its mapping's `kind`, and the mapping when one was
/// given.
fn kind_of(v: Value, path: &str, d: &mut Diagnostics) -> Option<(RuleKind, Option<RawActuator>)> {
    let (kind, raw, kind_path) = match v {
        Value::String(s) => (Some(s), None, path.to_string()),
        Value::Mapping(_) => {
            let raw: RawActuator = d.deserialize(path, v)?;
            (raw.kind.clone(), Some(raw), join_key(path, "kind"))
        }
        other => {
            d.error(
                path,
                format!(
                    "expected an actuator name or {{kind: ..., <its keys>}}, got {}",
                    show(&other)
                ),
            );
            return None;
        }
    };
    let Some(kind) = kind else {
        d.error(path, "missing required key \"kind\"");
        return None;
    };
    let Some(k) = RuleKind::ALL.into_iter().find(|k| k.name() == kind) else {
        d.error(
            &kind_path,
            format!(
                "unknown actuator \"{kind}\"; expected one of {}",
                RuleKind::ALL.map(|k| k.name()).join(", ")
            ),
        );
        return None;
    };
    Some((k, raw))
}

/// Every key given must belong to the kind: a `container` under golem_profile is a typo or a
/// wrong kind, and silently ignoring it would act on the wrong thing. False on a finding.
fn keys_of_kind(k: RuleKind, raw: &RawActuator, path: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    let given: [(&str, bool); 13] = [
        ("command", raw.command.is_some()),
        ("undo", raw.undo.is_some()),
        ("check", raw.check.is_some()),
        ("container", raw.container.is_some()),
        ("socket", raw.socket.is_some()),
        ("program", raw.program.is_some()),
        ("profile", raw.profile.is_some()),
        ("data_dir", raw.data_dir.is_some()),
        ("config_file", raw.config_file.is_some()),
        ("restart", raw.restart.is_some()),
        ("unit", raw.unit.is_some()),
        ("runtime", raw.runtime.is_some()),
        ("timeout", raw.timeout.is_some()),
    ];
    for (key, present) in given {
        if present && !k.keys().contains(&key) {
            let takes = if k.keys().is_empty() {
                "no other keys".to_string()
            } else {
                k.keys().join(", ")
            };
            d.error(
                &join_key(path, key),
                format!(
                    "actuator {} does not take \"{key}\" (it takes {takes})",
                    k.name()
                ),
            );
            ok = false;
        }
    }
    ok
}

/// `program`: one name or path, or an argv prefix (a tool run through `docker exec`).
fn program_argv(
    program: &Option<Value>,
    path: &str,
    ok: &mut bool,
    d: &mut Diagnostics,
) -> Option<Vec<String>> {
    match program {
        None => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Sequence(items)) => {
            let list: Option<Vec<String>> =
                items.iter().map(|v| v.as_str().map(String::from)).collect();
            if list.is_none() {
                d.error(
                    &join_key(path, "program"),
                    "every element of the argv must be a string",
                );
                *ok = false;
            }
            list
        }
        Some(other) => {
            d.error(
                &join_key(path, "program"),
                format!(
                    "expected a program name or an argv list like [docker, exec, golem, ya-provider], got {}",
                    show(other)
                ),
            );
            *ok = false;
            None
        }
    }
}

/// `timeout`: a duration longer than 0s.
fn timeout_of(
    timeout: &Option<Value>,
    path: &str,
    ok: &mut bool,
    d: &mut Diagnostics,
) -> Option<Duration> {
    match timeout {
        None => None,
        Some(v) => match units::duration(v) {
            Ok(t) if t > Duration::ZERO => Some(t),
            Ok(_) => {
                d.error(&join_key(path, "timeout"), "must be longer than 0s");
                *ok = false;
                None
            }
            Err(e) => {
                d.error(&join_key(path, "timeout"), e);
                *ok = false;
                None
            }
        },
    }
}

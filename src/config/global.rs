//! The `global:` block (poll, scrape and evaluation intervals, external labels) and
//! `rule_files:`, resolved against the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::nodes::valid_label_name;
use super::raw::RawGlobal;
use super::Global;
use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

/// A positive duration at `path`, or `default` when absent.
pub(super) fn positive_duration(
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

pub(super) fn validate_global(raw: Option<Value>, d: &mut Diagnostics) -> Option<Global> {
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
pub(super) fn validate_external_labels(
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
pub(super) fn validate_rule_files(
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

/// Resolves rule file paths from a config file as Prometheus does: relative paths are relative
/// to the config file's directory.
pub(super) fn resolve_relative(config_dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    }
}

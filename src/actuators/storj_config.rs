//! Actuator kind `storj_config`: sets a Storj storage node's allocated disk space, the
//! `storage.allocated-disk-space` line of its `config.yaml`, then restarts the node with a
//! configured argv (`[docker, restart, storagenode]`, `[systemctl, restart, storagenode]`).
//! The node reads the setting once at start; there is no runtime API for it (protocols.md §1).
//!
//! This actuator is **disruptive**: the node is offline while it restarts, which costs
//! earnings and online score. The node's `switching_cost.downtime` in optimization.yml must
//! cover the restart (the shipped rules say 5m), so that the planner only moves disk when the
//! gain pays for it.
//!
//! The edit keeps every other byte of the file as it was (comments, order, line endings, the
//! key's own indentation, spacing, quotes and trailing comment): only the value changes. It is
//! written to a temporary file beside the original, fsynced, given the original's mode (and
//! owner, when running as root), renamed over it, and the directory is fsynced, so a crash
//! leaves either the old or the new file. Sizes are written in decimal units as Storj writes
//! them (`2.00 TB`, `1234.57 GB`), in the largest unit whose two decimals are within 0.1 %.
//!
//! With Docker, the `STORAGE` environment variable given to `docker run` becomes the flag
//! `--storage.allocated-disk-space`, which overrides config.yaml: drop `STORAGE` from the run
//! command (the container then reads the mounted config.yaml) before using this actuator.
//!
//! `verify` reads the file back, then polls the node's adapter until it reports the new
//! allocation (the storj adapter reads `diskSpace.available`), with a longer wait than other
//! kinds since the node restarts. `undo` writes the previous value and restarts again. `check`
//! requires the file to be readable and writable with exactly one uncommented key line, and
//! the restart program to exist.
//!
//! ```yaml
//! actuator:
//!   kind: storj_config
//!   config_file: /srv/storj/config/config.yaml
//!   restart: [docker, restart, storagenode]
//!   timeout: 2m          # for the restart command
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::process::{self, find_program};
use super::{verify_reported, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::{Allocation, Resource};
use crate::schema::units::parse_size;

/// The config key Storj reads the allocation from.
pub const KEY: &str = "storage.allocated-disk-space";
/// The default time the restart command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The validated parameters of a storj_config actuator.
#[derive(Clone, Debug, PartialEq)]
pub struct StorjConfigSpec {
    pub config_file: PathBuf,
    /// argv run after each edit; no shell.
    pub restart: Vec<String>,
    pub timeout: Duration,
}

/// Why the config file cannot be read or edited.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{file}: {detail}")]
    Io { file: String, detail: String },
    #[error("{file}: no uncommented `{KEY}:` line (add one, e.g. `{KEY}: 1.00 TB`)")]
    NoKey { file: String },
    #[error("{file}:{first}: `{KEY}` is set more than once (also line {second})")]
    Duplicate {
        file: String,
        first: usize,
        second: usize,
    },
    #[error("{file}:{line}: `{KEY}: {value}`: {detail}")]
    BadValue {
        file: String,
        line: usize,
        value: String,
        detail: String,
    },
}

/// Where the value sits in the file.
#[derive(Debug, PartialEq)]
struct Found {
    /// 1-based line number.
    line: usize,
    /// Byte range of the value (without quotes) in the text.
    value: std::ops::Range<usize>,
    bytes: f64,
}

/// Finds the one uncommented `storage.allocated-disk-space:` line of `text`.
fn find(text: &str, file: &str) -> Result<Found, ConfigFileError> {
    let mut found: Option<Found> = None;
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let body = line.trim_start();
        let Some(rest) = body.strip_prefix(KEY) else {
            continue;
        };
        let rest_t = rest.trim_start();
        let Some(after_colon) = rest_t.strip_prefix(':') else {
            continue;
        };
        // Byte offset of the value: skip spaces after the colon.
        let colon_at = start + (line.len() - body.len()) + KEY.len() + (rest.len() - rest_t.len());
        let value_part = after_colon.trim_start();
        let mut vstart = colon_at + 1 + (after_colon.len() - value_part.len());
        // A trailing comment needs whitespace before `#`.
        let mut value = match value_part.find(" #").or_else(|| value_part.find("\t#")) {
            Some(j) => &value_part[..j],
            None => value_part,
        }
        .trim_end();
        for q in ['"', '\''] {
            if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
                value = &value[1..value.len() - 1];
                vstart += 1;
            }
        }
        let bytes = parse_size(value).map_err(|detail| ConfigFileError::BadValue {
            file: file.to_string(),
            line: i + 1,
            value: value.to_string(),
            detail,
        })?;
        if let Some(f) = &found {
            return Err(ConfigFileError::Duplicate {
                file: file.to_string(),
                first: f.line,
                second: i + 1,
            });
        }
        found = Some(Found {
            line: i + 1,
            value: vstart..vstart + value.len(),
            bytes,
        });
    }
    found.ok_or_else(|| ConfigFileError::NoKey {
        file: file.to_string(),
    })
}

/// `bytes` as Storj writes sizes: decimal units, two decimals, the largest unit within 0.1 %.
pub fn format_size(bytes: f64) -> String {
    const UNITS: [(f64, &str); 5] = [
        (1e15, "PB"),
        (1e12, "TB"),
        (1e9, "GB"),
        (1e6, "MB"),
        (1e3, "KB"),
    ];
    for (m, u) in UNITS {
        let v = bytes / m;
        if v < 1.0 {
            continue;
        }
        let shown = (v * 100.0).round() / 100.0;
        if ((shown * m) - bytes).abs() <= bytes * 1e-3 {
            return format!("{shown:.2} {u}");
        }
    }
    format!("{:.0} B", bytes.round())
}

/// Reads the allocated disk space from `path`.
pub fn read_allocation(path: &Path) -> Result<f64, ConfigFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::Io {
        file: file.clone(),
        detail: e.to_string(),
    })?;
    find(&text, &file).map(|f| f.bytes)
}

/// Writes `bytes` as the allocated disk space into `path`, every other byte unchanged, through
/// a temporary file, fsync and rename. Returns the value that was there.
pub fn write_allocation(path: &Path, bytes: f64) -> Result<f64, ConfigFileError> {
    use std::os::unix::fs::MetadataExt;
    let file = path.display().to_string();
    let io = |what: &str, e: std::io::Error| ConfigFileError::Io {
        file: file.clone(),
        detail: format!("{what}: {e}"),
    };
    let text = std::fs::read_to_string(path).map_err(|e| io("reading", e))?;
    let meta = std::fs::metadata(path).map_err(|e| io("reading metadata", e))?;
    let f = find(&text, &file)?;
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..f.value.start]);
    out.push_str(&format_size(bytes));
    out.push_str(&text[f.value.end..]);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.yaml".into());
    let tmp = dir.join(format!(".{name}.depin-orcha.tmp"));
    let result = (|| {
        let mut t =
            std::fs::File::create(&tmp).map_err(|e| io("creating the temporary file", e))?;
        t.write_all(out.as_bytes()).map_err(|e| io("writing", e))?;
        t.set_permissions(meta.permissions())
            .map_err(|e| io("setting the mode", e))?;
        // Root may edit a file another user owns: keep it theirs.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::fchown(&t, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| io("setting the owner", e))?;
        }
        t.sync_all().map_err(|e| io("fsync", e))?;
        drop(t);
        std::fs::rename(&tmp, path).map_err(|e| io("renaming the temporary file", e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(f.bytes)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub struct StorjConfigActuator {
    spec: StorjConfigSpec,
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
}

impl StorjConfigActuator {
    pub fn new(spec: StorjConfigSpec, adapter: Arc<dyn Adapter>, verify: VerifySpec) -> Self {
        StorjConfigActuator {
            spec,
            adapter,
            verify,
        }
    }

    async fn set(
        &self,
        node: &str,
        action: &'static str,
        to: &Allocation,
    ) -> Result<(), ActuatorError> {
        let fail = |detail: String| ActuatorError::failed(node, action, detail);
        let b = to.disk_bytes;
        if !b.is_finite() || b <= 0.0 {
            return Err(fail(format!(
                "disk_bytes must be a finite amount > 0 for {KEY}, got {b}"
            )));
        }
        let path = self.spec.config_file.clone();
        tokio::task::spawn_blocking(move || write_allocation(&path, b))
            .await
            .map_err(|e| fail(format!("editing the config file: {e}")))?
            .map_err(|e| fail(e.to_string()))?;
        process::run_plain(node, action, &self.spec.restart, self.spec.timeout)
            .await
            .map(|_| ())
    }
}

impl Actuator for StorjConfigActuator {
    fn kind(&self) -> &'static str {
        "storj_config"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        Box::pin(async move {
            let unreachable =
                |detail: String| ActuatorError::unreachable(node, "storj_config", detail);
            read_allocation(&self.spec.config_file).map_err(|e| unreachable(e.to_string()))?;
            // The edit writes a temporary file beside it and renames it over.
            let dir = self
                .spec
                .config_file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // SAFETY: access() reads a NUL-terminated path and has no other precondition.
            let writable = |p: &Path| {
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                    .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
                    .unwrap_or(false)
            };
            if !writable(&self.spec.config_file) || !writable(dir) {
                return Err(unreachable(format!(
                    "{} or its directory is not writable by this user",
                    self.spec.config_file.display()
                )));
            }
            let program = self.spec.restart.first().cloned().unwrap_or_default();
            find_program(&program).map_err(|e| unreachable(format!("restart command: {e}")))?;
            Ok(())
        })
    }

    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "apply", to))
    }

    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        Box::pin(async move {
            let now =
                read_allocation(&self.spec.config_file).map_err(|e| ActuatorError::Verify {
                    node: node.to_string(),
                    attempts: 1,
                    detail: e.to_string(),
                })?;
            // The file holds two decimals of the unit: within 0.1 % by construction.
            if !super::matches(now, expected.disk_bytes, self.verify.tolerance.max(1e-3)) {
                return Err(ActuatorError::Verify {
                    node: node.to_string(),
                    attempts: 1,
                    detail: format!(
                        "{} has {KEY}: {} (expected {})",
                        self.spec.config_file.display(),
                        format_size(now),
                        format_size(expected.disk_bytes)
                    ),
                });
            }
            verify_reported(
                self.adapter.as_ref(),
                node,
                expected,
                &self.verify,
                &[Resource::DiskBytes],
            )
            .await
        })
    }

    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.set(node, "undo", previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# how much disk space a node should use\n\
        # storage.allocated-disk-space: 9.00 TB\n\
        storage.allocated-disk-space:   \"1.00 TB\"   # set by hand\r\n\
        storage.path: /app/config/storage\n";

    #[test]
    fn sizes_as_storj_writes_them() {
        assert_eq!(format_size(2e12), "2.00 TB");
        assert_eq!(format_size(1.8e12), "1.80 TB");
        // 1.234567 TB: two decimals of TB would be 0.37 % off; GB keep it within 0.1 %.
        assert_eq!(format_size(1.234567e12), "1234.57 GB");
        assert_eq!(format_size(500e9), "500.00 GB");
        assert_eq!(parse_size("1234.57 GB").unwrap(), 1.23457e12);
    }

    #[test]
    fn only_the_value_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, CONFIG).unwrap();
        assert_eq!(read_allocation(&p).unwrap(), 1e12);
        let old = write_allocation(&p, 1.5e12).unwrap();
        assert_eq!(old, 1e12);
        let after = std::fs::read_to_string(&p).unwrap();
        assert_eq!(after, CONFIG.replace("\"1.00 TB\"", "\"1.50 TB\""));
        assert_eq!(read_allocation(&p).unwrap(), 1.5e12);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_duplicate_and_bad_keys_name_file_and_line() {
        let e = find("# storage.allocated-disk-space: 1TB\n", "c.yaml").unwrap_err();
        assert!(matches!(e, ConfigFileError::NoKey { .. }), "{e}");
        let e = find(
            "storage.allocated-disk-space: 1TB\nx: 1\nstorage.allocated-disk-space: 2TB\n",
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:1: `storage.allocated-disk-space` is set more than once (also line 3)"
        );
        let e = find("storage.allocated-disk-space: lots\n", "c.yaml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.yaml:1: `storage.allocated-disk-space: lots`"),
            "{e}"
        );
        // A longer key that starts the same is not this key.
        assert!(find("storage.allocated-disk-space-old: 1TB\n", "c").is_err());
    }
}

//! Config helpers the real node kinds share: URLs (`http://` or `https://`), durations with a
//! default, and credentials (a file or an environment variable) that are read again at every
//! poll. Each helper reports into [`Diagnostics`] with the key path, like the rest of the
//! config.
//!
//! Credentials: a node with no credential source at all (neither the file key nor the
//! environment variable) is a config error, since it can never work. A credential *file* that
//! cannot be read when the config loads is only a warning naming the node and the file: the
//! other nodes start, and that node is down with reason `io` at every poll until the file can
//! be read (a key rotated or a permission fixed takes effect without a restart).

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::PollError;
use crate::schema::diag::{join_key, Diagnostics};
use crate::schema::units;

/// An `http://` or `https://` URL at `path`, or `default` when absent.
pub fn http_url(
    v: Option<&str>,
    default: Option<&str>,
    path: &str,
    d: &mut Diagnostics,
) -> Option<url::Url> {
    let Some(s) = v.or(default) else {
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        d.error(parent, format!("missing required key \"{key}\""));
        return None;
    };
    match url::Url::parse(s) {
        // https: rustls with Mozilla's roots (`adapters::http`), for public APIs (prices,
        // JSON-RPC, Grass' account API) and nodes behind a TLS proxy.
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Ok(_) => {
            d.error(
                path,
                format!("{s:?}: expected an http:// or https:// URL with a host"),
            );
            None
        }
        Err(e) => {
            d.error(path, format!("invalid URL {s:?}: {e}"));
            None
        }
    }
}

/// A positive duration at `path`, or `default` when absent.
pub fn duration_or(
    v: Option<&Value>,
    default: Duration,
    path: &str,
    d: &mut Diagnostics,
) -> Option<Duration> {
    match v {
        None => Some(default),
        Some(v) => match units::duration(v) {
            Ok(x) if x.is_zero() => {
                d.error(path, "must be greater than 0");
                None
            }
            Ok(x) => Some(x),
            Err(e) => {
                d.error(path, e);
                None
            }
        },
    }
}

/// Where a secret comes from; read at each use, never stored in the config value or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// A file holding the secret (surrounding whitespace trimmed); wins over `env`.
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub env: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("file", &self.file)
            .field("env", &self.env)
            .finish()
    }
}

impl Credential {
    /// Reads the secret now.
    pub fn read(&self) -> Result<String, PollError> {
        if let Some(f) = &self.file {
            let s = std::fs::read_to_string(f)
                .map_err(|e| PollError::Io(format!("credential file {}: {e}", f.display())))?;
            let s = s.trim();
            if s.is_empty() {
                return Err(PollError::Io(format!(
                    "credential file {} is empty",
                    f.display()
                )));
            }
            return Ok(s.to_string());
        }
        if let Some(v) = &self.env {
            return match std::env::var(v) {
                Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(PollError::Io(format!(
                    "environment variable {v} is not set"
                ))),
            };
        }
        Err(PollError::Other("no credential configured".into()))
    }

    /// Validates a credential at `node_path`: `file_key` is the config key of the file
    /// (`app_key_file`), `env_default` the variable tried when no file is given. `required`:
    /// whether having neither is an error.
    #[allow(clippy::too_many_arguments)]
    pub fn validate(
        file: Option<&str>,
        env: Option<&str>,
        env_default: Option<&str>,
        block_path: &str,
        file_key: &str,
        node_name: &str,
        required: bool,
        d: &mut Diagnostics,
    ) -> Option<Option<Credential>> {
        let env = env.or(env_default).map(str::to_string);
        match file {
            Some(f) if f.trim().is_empty() => {
                d.error(&join_key(block_path, file_key), "must not be empty");
                None
            }
            Some(f) => {
                let p = PathBuf::from(f);
                if let Err(e) = std::fs::read_to_string(&p) {
                    d.warn(
                        &join_key(block_path, file_key),
                        format!("node \"{node_name}\": cannot read {f}: {e}; the node will be down (reason io) until it can"),
                    );
                }
                Some(Some(Credential { file: Some(p), env }))
            }
            None => {
                let set = env
                    .as_ref()
                    .is_some_and(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
                if set {
                    Some(Some(Credential { file: None, env }))
                } else if required {
                    let via_env = env
                        .as_ref()
                        .map(|v| format!(" or set the environment variable {v}"))
                        .unwrap_or_default();
                    d.error(
                        block_path,
                        format!("node \"{node_name}\" has no credential: give {file_key}{via_env}"),
                    );
                    None
                } else {
                    Some(None)
                }
            }
        }
    }
}

/// Reads the `http_json`/`prometheus` style `headers:` map, refusing non-string values.
pub fn headers(v: Option<&std::collections::BTreeMap<String, String>>) -> Vec<(String, String)> {
    v.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// An optional `allocation:` block of a real node: the share the operator gave it (container
/// limits, the Storj allocation), shown where the node does not report its own and checked
/// against the host capacity.
pub fn optional_allocation(
    raw: Option<&crate::schema::RawAllocation>,
    block_path: &str,
    d: &mut Diagnostics,
) -> Option<Option<super::Allocation>> {
    match raw {
        None => Some(None),
        Some(a) => a
            .validate(
                &join_key(block_path, "allocation"),
                super::Allocation::default(),
                d,
            )
            .map(Some),
    }
}

/// A kind's block as a value to deserialize: absent or `null` is an empty mapping (all
/// defaults).
pub fn block_or_empty(block: Option<Value>) -> Value {
    match block {
        None | Some(Value::Null) => Value::Mapping(Default::default()),
        Some(v) => v,
    }
}

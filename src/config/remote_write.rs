//! The `remote_write:` section of the config file, in Prometheus' own shape (a list of remote
//! endpoints with auth, headers, write relabelling and queue settings), validated into
//! [`RemoteWriteConfig`] with every error at its `FILE:LINE:COL`. It owns only the schema; the
//! pushing lives in `crate::remote_write`.
//!
//! ```yaml
//! remote_write:
//!   - url: https://central:9090/api/v1/write  # required; http:// or https://
//!     tls_config:
//!       ca_file: /etc/depin-orcha/central-ca.pem   # also trust this CA (PEM; relative to
//!                                                  # this file); Mozilla's roots always

//!     name: central        # unique; letters, digits, _ - . (default: rw-<crc32 of the url>);
//!                          # the `remote` label of depin_remote_write_* and the queue's
//!                          # directory <storage.path>/remote_write/<name>/
//!     headers: {X-Scope-OrgID: home}   # extra request headers
//!     basic_auth: {username: u, password: p}   # or password_file (relative to this file)
//!     bearer_token: t      # or bearer_token_file; not together with basic_auth
//!     remote_timeout: 30s  # one request's timeout (default 30s)
//!     write_relabel_configs:   # Prometheus relabel rules, applied before queueing
//!       - {source_labels: [__name__], regex: 'go_.*', action: drop}
//!     queue_config:
//!       capacity: 1000000  # samples held on disk while the remote is unreachable; a number
//!                          # is samples, a size (512MiB) is bytes; beyond it the oldest are
//!                          # dropped (default 1000000 samples)
//!       max_samples_per_send: 2000   # default 2000
//!       batch_send_deadline: 5s      # longest wait for a full batch (default 5s)
//!       min_backoff: 30ms            # first retry wait, doubled per retry (default 30ms)
//!       max_backoff: 5s              # longest retry wait (default 5s)
//!       min_shards: 1                # accepted for compatibility; depin-orcha sends in order
//!       max_shards: 1                # with one connection per remote
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::schema::diag::{join_index, join_key, Diagnostics};
use crate::schema::units;

/// One validated `remote_write` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: url::Url,
    /// Unique name: the `remote` label and the queue directory.
    pub name: String,
    pub headers: BTreeMap<String, String>,
    pub auth: Option<Auth>,
    pub remote_timeout: Duration,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub queue: QueueConfig,
    /// `tls_config.ca_file`: a CA to trust besides Mozilla's roots (https only).
    pub tls_ca_file: Option<PathBuf>,
}

/// A secret given inline or in a file (read at each request, so it may be rotated).
#[derive(Clone, Debug, PartialEq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// What the durable queue holds at most.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    Samples(u64),
    Bytes(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub capacity: Capacity,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_shards: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: Capacity::Samples(1_000_000),
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            max_shards: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelabelAction {
    Replace,
    Keep,
    Drop,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

pub const RELABEL_ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "labelmap",
    "labeldrop",
    "labelkeep",
];

/// One relabel rule, as Prometheus' `relabel_config`.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// Anchored at both ends, as Prometheus anchors it.
    pub regex: regex::Regex,
    pub target_label: String,
    pub replacement: String,
    pub action: RelabelAction,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.regex.as_str() == o.regex.as_str()
            && self.target_label == o.target_label
            && self.replacement == o.replacement
            && self.action == o.action
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    remote_timeout: Option<Value>,
    #[serde(default)]
    write_relabel_configs: Vec<RawRelabel>,
    #[serde(default)]
    queue_config: Option<RawQueue>,
    #[serde(default)]
    tls_config: Option<RawTls>,
}

/// Prometheus' `tls_config`, of which depin-orcha takes `ca_file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabel {
    #[serde(default)]
    source_labels: Vec<String>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    capacity: Option<Value>,
    #[serde(default)]
    max_samples_per_send: Option<u64>,
    #[serde(default)]
    batch_send_deadline: Option<Value>,
    #[serde(default)]
    min_backoff: Option<Value>,
    #[serde(default)]
    max_backoff: Option<Value>,
    #[serde(default)]
    min_shards: Option<u32>,
    #[serde(default)]
    max_shards: Option<u32>,
}

fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The name a remote without `name:` gets: stable for its URL, so its queue survives restarts.
pub fn default_name(url: &str) -> String {
    format!("rw-{:08x}", crc32fast::hash(url.as_bytes()))
}

/// Validates the `remote_write` list. `origin` is the config file, against whose directory the
/// `*_file` paths are resolved.
pub fn validate(
    raw: Option<Value>,
    origin: &str,
    d: &mut Diagnostics,
) -> Option<Vec<RemoteWriteConfig>> {
    let list = match raw {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Sequence(l)) => l,
        Some(_) => {
            d.error("remote_write", "expected a list of remote write endpoints");
            return None;
        }
    };
    let dir = Path::new(origin).parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, v) in list.into_iter().enumerate() {
        let path = join_index("remote_write", i);
        match validate_one(v, &path, dir, d) {
            Some(r) => {
                if let Some(first) = seen.get(&r.name) {
                    let at = if r.name == default_name(r.url.as_str()) {
                        "url"
                    } else {
                        "name"
                    };
                    d.error(
                        &join_key(&path, at),
                        format!(
                            "duplicate remote write name \"{}\" (also remote_write[{first}]); give each a distinct name",
                            r.name
                        ),
                    );
                    ok = false;
                } else {
                    seen.insert(r.name.clone(), i);
                }
                out.push(r);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn duration_or(
    v: Option<&Value>,
    path: &str,
    default: Duration,
    d: &mut Diagnostics,
    ok: &mut bool,
) -> Duration {
    let Some(v) = v else { return default };
    match units::duration(v) {
        Ok(x) if x.is_zero() => {
            d.error(path, "must be greater than 0");
            *ok = false;
            default
        }
        Ok(x) => x,
        Err(e) => {
            d.error(path, e);
            *ok = false;
            default
        }
    }
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn validate_one(
    v: Value,
    path: &str,
    dir: &Path,
    d: &mut Diagnostics,
) -> Option<RemoteWriteConfig> {
    if !matches!(v, Value::Mapping(_)) {
        d.error(
            path,
            "a remote write endpoint must be a mapping with at least url",
        );
        return None;
    }
    let raw: RawRemote = d.deserialize(path, v)?;
    let mut ok = true;
    let url = parse_url(raw.url.as_deref(), path, d);
    let name = match (&raw.name, &url) {
        (Some(n), _) if valid_name(n) => Some(n.clone()),
        (Some(n), _) => {
            d.error(
                &join_key(path, "name"),
                format!("invalid name \"{n}\": use letters, digits, _, - and . only"),
            );
            None
        }
        (None, Some(u)) => Some(default_name(u.as_str())),
        (None, None) => None,
    };
    ok &= check_headers(&raw.headers, path, d);
    let auth = validate_auth(
        raw.basic_auth,
        raw.bearer_token,
        raw.bearer_token_file,
        path,
        dir,
        d,
        &mut ok,
    );
    let remote_timeout = duration_or(
        raw.remote_timeout.as_ref(),
        &join_key(path, "remote_timeout"),
        Duration::from_secs(30),
        d,
        &mut ok,
    );
    let mut relabels = Vec::new();
    for (i, r) in raw.write_relabel_configs.into_iter().enumerate() {
        let rp = join_index(&join_key(path, "write_relabel_configs"), i);
        match validate_relabel(r, &rp, d) {
            Some(r) => relabels.push(r),
            None => ok = false,
        }
    }
    let queue = validate_queue(
        raw.queue_config,
        &join_key(path, "queue_config"),
        d,
        &mut ok,
    );
    if !ok {
        return None;
    }
    let tls_ca_file = raw
        .tls_config
        .and_then(|t| t.ca_file)
        .map(|f| resolve(dir, &f));
    if let Some(f) = &tls_ca_file {
        if !f.is_file() {
            d.error(
                &join_key(&join_key(path, "tls_config"), "ca_file"),
                format!("{}: no such file", f.display()),
            );
            return None;
        }
    }
    Some(RemoteWriteConfig {
        url: url?,
        name: name?,
        headers: raw.headers,
        auth,
        remote_timeout,
        write_relabel_configs: relabels,
        queue,
        tls_ca_file,
    })
}

/// `url`: required, http or https with a host.
fn parse_url(url: Option<&str>, path: &str, d: &mut Diagnostics) -> Option<url::Url> {
    match url {
        None => {
            d.error(path, "missing required key \"url\"");
            None
        }
        Some(u) => match url::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            Ok(u) => {
                d.error(
                    &join_key(path, "url"),
                    format!("expected an http:// or https:// URL with a host, got \"{u}\""),
                );
                None
            }
            Err(e) => {
                d.error(&join_key(path, "url"), format!("invalid URL \"{u}\": {e}"));
                None
            }
        },
    }
}

/// `headers`: valid names and values, none that depin-orcha sets itself. False on a finding.
fn check_headers(headers: &BTreeMap<String, String>, path: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    for (k, v) in headers {
        let p = join_key(&join_key(path, "headers"), k);
        if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            d.error(&p, format!("invalid header name \"{k}\""));
            ok = false;
        } else if hyper::header::HeaderValue::from_str(v).is_err() {
            d.error(&p, "invalid header value");
            ok = false;
        }
        let lower = k.to_ascii_lowercase();
        if [
            "authorization",
            "content-encoding",
            "content-type",
            "x-prometheus-remote-write-version",
            "user-agent",
            "host",
            "content-length",
        ]
        .contains(&lower.as_str())
        {
            d.error(
                &p,
                format!("header \"{k}\" is set by depin-orcha itself (use basic_auth or bearer_token for Authorization)"),
            );
            ok = false;
        }
    }
    ok
}

/// `basic_auth`, `bearer_token` or `bearer_token_file`: at most one of them, a password or
/// token inline or from a file (resolved against `dir`); `ok` turns false on a finding.
fn validate_auth(
    basic_auth: Option<RawBasicAuth>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    path: &str,
    dir: &Path,
    d: &mut Diagnostics,
    ok: &mut bool,
) -> Option<Auth> {
    let basic = match basic_auth {
        None => None,
        Some(b) => {
            let bp = join_key(path, "basic_auth");
            let username = b.username.unwrap_or_default();
            if username.is_empty() {
                d.error(&bp, "missing required key \"username\"");
                *ok = false;
            }
            match (b.password, b.password_file) {
                (Some(_), Some(_)) => {
                    d.error(
                        &join_key(&bp, "password_file"),
                        "at most one of password and password_file must be configured",
                    );
                    *ok = false;
                    None
                }
                (Some(p), None) => Some(Auth::Basic {
                    username,
                    password: Secret::Inline(p),
                }),
                (None, Some(f)) => Some(Auth::Basic {
                    username,
                    password: Secret::File(resolve(dir, &f)),
                }),
                (None, None) => Some(Auth::Basic {
                    username,
                    password: Secret::Inline(String::new()),
                }),
            }
        }
    };
    let bearer = match (bearer_token, bearer_token_file) {
        (Some(_), Some(_)) => {
            d.error(
                &join_key(path, "bearer_token_file"),
                "at most one of bearer_token and bearer_token_file must be configured",
            );
            *ok = false;
            None
        }
        (Some(t), None) => Some(Auth::Bearer(Secret::Inline(t))),
        (None, Some(f)) => Some(Auth::Bearer(Secret::File(resolve(dir, &f)))),
        (None, None) => None,
    };
    match (basic, bearer) {
        (Some(_), Some(_)) => {
            d.error(
                &join_key(path, "basic_auth"),
                "at most one of basic_auth and bearer_token (or bearer_token_file) must be configured",
            );
            *ok = false;
            None
        }
        (a, b) => a.or(b),
    }
}

fn validate_queue(
    raw: Option<RawQueue>,
    path: &str,
    d: &mut Diagnostics,
    ok: &mut bool,
) -> QueueConfig {
    let raw = raw.unwrap_or_default();
    let def = QueueConfig::default();
    let capacity = match &raw.capacity {
        None => def.capacity,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if x > 0 => Capacity::Samples(x),
            _ => {
                d.error(
                    &join_key(path, "capacity"),
                    "must be a whole number of samples greater than 0, or a size like 256MiB",
                );
                *ok = false;
                def.capacity
            }
        },
        Some(v) => match units::size(v) {
            Ok(b) if b >= 1.0 && b.is_finite() => Capacity::Bytes(b as u64),
            Ok(_) => {
                d.error(&join_key(path, "capacity"), "must be greater than 0");
                *ok = false;
                def.capacity
            }
            Err(e) => {
                d.error(&join_key(path, "capacity"), e);
                *ok = false;
                def.capacity
            }
        },
    };
    let max_samples_per_send = match raw.max_samples_per_send {
        None => def.max_samples_per_send,
        Some(0) => {
            d.error(
                &join_key(path, "max_samples_per_send"),
                "must be greater than 0",
            );
            *ok = false;
            def.max_samples_per_send
        }
        Some(x) => x as usize,
    };
    let batch_send_deadline = duration_or(
        raw.batch_send_deadline.as_ref(),
        &join_key(path, "batch_send_deadline"),
        def.batch_send_deadline,
        d,
        ok,
    );
    let min_backoff = duration_or(
        raw.min_backoff.as_ref(),
        &join_key(path, "min_backoff"),
        def.min_backoff,
        d,
        ok,
    );
    let max_backoff = duration_or(
        raw.max_backoff.as_ref(),
        &join_key(path, "max_backoff"),
        def.max_backoff,
        d,
        ok,
    );
    if min_backoff > max_backoff {
        d.error(
            &join_key(path, "min_backoff"),
            format!(
                "min_backoff {} is longer than max_backoff {}",
                humantime::format_duration(min_backoff),
                humantime::format_duration(max_backoff)
            ),
        );
        *ok = false;
    }
    let max_shards = raw.max_shards.unwrap_or(def.max_shards);
    if max_shards == 0 {
        d.error(&join_key(path, "max_shards"), "must be greater than 0");
        *ok = false;
    }
    if let Some(min) = raw.min_shards {
        if min == 0 || min > max_shards {
            d.error(
                &join_key(path, "min_shards"),
                format!("must be between 1 and max_shards ({max_shards})"),
            );
            *ok = false;
        }
    }
    QueueConfig {
        capacity,
        max_samples_per_send,
        batch_send_deadline,
        min_backoff,
        max_backoff,
        max_shards,
    }
}

fn validate_relabel(r: RawRelabel, path: &str, d: &mut Diagnostics) -> Option<RelabelConfig> {
    let mut ok = true;
    let action = match r.action.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("replace") => RelabelAction::Replace,
        Some("keep") => RelabelAction::Keep,
        Some("drop") => RelabelAction::Drop,
        Some("labelmap") => RelabelAction::LabelMap,
        Some("labeldrop") => RelabelAction::LabelDrop,
        Some("labelkeep") => RelabelAction::LabelKeep,
        Some(other) => {
            d.error(
                &join_key(path, "action"),
                format!(
                    "unknown relabel action \"{other}\"; expected one of {}",
                    RELABEL_ACTIONS.join(", ")
                ),
            );
            return None;
        }
    };
    let regex_text = r.regex.clone().unwrap_or_else(|| "(.*)".to_string());
    let regex = match regex::Regex::new(&format!("^(?:{regex_text})$")) {
        Ok(re) => Some(re),
        Err(e) => {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or(&msg).trim().to_string();
            d.error(
                &join_key(path, "regex"),
                format!("invalid regular expression \"{regex_text}\": {last}"),
            );
            ok = false;
            None
        }
    };
    for (i, l) in r.source_labels.iter().enumerate() {
        if !valid_label_name(l) {
            d.error(
                &join_index(&join_key(path, "source_labels"), i),
                format!("invalid label name \"{l}\""),
            );
            ok = false;
        }
    }
    let target = r.target_label.clone().unwrap_or_default();
    match action {
        RelabelAction::Replace => {
            if target.is_empty() {
                d.error(path, "relabel action replace requires target_label");
                ok = false;
            } else if !target.contains('$') && !valid_label_name(&target) {
                d.error(
                    &join_key(path, "target_label"),
                    format!("invalid target label \"{target}\""),
                );
                ok = false;
            }
        }
        RelabelAction::Keep | RelabelAction::Drop => {
            if r.source_labels.is_empty() {
                d.error(
                    path,
                    format!(
                        "relabel action {} requires source_labels",
                        r.action.as_deref().unwrap_or("")
                    ),
                );
                ok = false;
            }
        }
        RelabelAction::LabelDrop | RelabelAction::LabelKeep | RelabelAction::LabelMap => {
            let name = r.action.as_deref().unwrap_or("");
            let extra = if action == RelabelAction::LabelMap {
                // labelmap uses regex and replacement only.
                [
                    (!r.source_labels.is_empty(), "source_labels"),
                    (r.separator.is_some(), "separator"),
                    (r.target_label.is_some(), "target_label"),
                ]
            } else {
                [
                    (!r.source_labels.is_empty(), "source_labels"),
                    (r.target_label.is_some(), "target_label"),
                    (r.replacement.is_some(), "replacement"),
                ]
            };
            for (set, key) in extra {
                if set {
                    d.error(
                        &join_key(path, key),
                        format!("{key} must not be set for relabel action {name}"),
                    );
                    ok = false;
                }
            }
        }
    }
    if !ok {
        return None;
    }
    Some(RelabelConfig {
        source_labels: r.source_labels,
        separator: r.separator.unwrap_or_else(|| ";".to_string()),
        regex: regex?,
        target_label: target,
        replacement: r.replacement.unwrap_or_else(|| "$1".to_string()),
        action,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    use super::*;

    fn load(rw: &str) -> Vec<RemoteWriteConfig> {
        let text = format!(
            "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nremote_write:\n{rw}"
        );
        parse_str(&text, "/etc/depin/c.yml")
            .unwrap_or_else(|e| panic!("{e}"))
            .remote_write
    }

    #[test]
    fn defaults_as_documented() {
        let r = &load("  - url: http://c:9090/api/v1/write\n")[0];
        assert_eq!(r.name, default_name("http://c:9090/api/v1/write"));
        assert!(
            r.name.starts_with("rw-") && r.name.len() == 11,
            "{}",
            r.name
        );
        assert_eq!(r.remote_timeout, Duration::from_secs(30));
        assert_eq!(r.queue, QueueConfig::default());
        assert_eq!(r.auth, None);
        assert!(r.write_relabel_configs.is_empty());
    }

    #[test]
    fn capacity_in_samples_or_bytes_and_secret_files_beside_the_config() {
        let r = load(
            "  - {url: 'http://a:1/w', queue_config: {capacity: 5000}, basic_auth: {username: u, password_file: p.txt}}\n  - {url: 'http://b:1/w', queue_config: {capacity: 1MiB}, bearer_token_file: /run/t}\n",
        );
        assert_eq!(r[0].queue.capacity, Capacity::Samples(5000));
        assert_eq!(r[1].queue.capacity, Capacity::Bytes(1 << 20));
        assert_eq!(
            r[0].auth,
            Some(Auth::Basic {
                username: "u".into(),
                password: Secret::File(PathBuf::from("/etc/depin/p.txt"))
            })
        );
        assert_eq!(
            r[1].auth,
            Some(Auth::Bearer(Secret::File(PathBuf::from("/run/t"))))
        );
    }

    #[test]
    fn two_remotes_with_the_same_url_need_names() {
        let e = parse_str(
            "host: {capacity: {disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}\nremote_write:\n  - url: http://a:1/w\n  - url: http://a:1/w\n",
            "t.yml",
        )
        .unwrap_err()
        .lines();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.yml:4:5: remote_write[1].url: duplicate remote write name"),
            "{e:?}"
        );
    }
}

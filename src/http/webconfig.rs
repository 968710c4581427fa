//! `--web.config.file`: TLS and basic authentication for the server, in the file format of the
//! Prometheus exporter toolkit (`tls_server_config`, `http_server_config`, `basic_auth_users`),
//! so a web config written for node_exporter or Prometheus works here unchanged.
//!
//! The file is read and validated once at start; every error names the file and the key. This
//! module owns the parsed config, the TLS acceptor (rustls with the `ring` provider), the basic
//! auth check (bcrypt hashes, with a small cache of verified credentials as the toolkit keeps,
//! because bcrypt is deliberately slow; only right ones, unlike the toolkit) and the extra response headers. It does not route or
//! touch the bearer token of the control API, which travels in its own header beside basic
//! auth (see `http::unauthorized`).
//!
//! The check comes in two steps, so that the server can run bcrypt off its async workers:
//! [`WebConfig::begin_basic_auth`] answers at once when it can (no users, no or malformed
//! credentials, credentials verified before), else hands back a [`PendingCheck`] whose `verify`
//! is the slow part. An unknown user is verified against a dummy hash of the users' own cost,
//! so that a wrong password takes as long for a user that does not exist as for one that does
//! (the time would otherwise tell which user names exist).
//!
//! Differences from the toolkit, all stricter: rustls speaks TLS 1.2 and 1.3 only, so
//! `min_version: TLS10|TLS11` still means TLS 1.2; `client_auth_type` `RequestClientCert` and
//! `RequireAnyClientCert` (certificates accepted without verification) are refused;
//! `cipher_suites`, `curve_preferences` and `http2` are refused rather than silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde::Deserialize;

use super::HttpResponse;

/// Errors name the file, and the key when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

fn invalid(file: &str, key: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// The headers the toolkit lets a web config set (`web/tls_config.go`, `extraHTTPHeaders`), with
/// the values it allows where it restricts them.
const ALLOWED_HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Most verified credentials remembered; beyond, an entry is dropped (the toolkit keeps 100).
const AUTH_CACHE_SIZE: usize = 100;

/// The toolkit's hash of an unknown password, for a config whose users' hashes have cost 10.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// A validated web config.
pub struct WebConfig {
    file: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    /// Verified against for unknown users: a hash of the cost most of the users' hashes have.
    dummy_hash: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// SHA-256 of `user:hash:password` of credentials verified right. Refusals are not kept:
    /// a flood of wrong passwords would otherwise push the right ones out, and every request
    /// of a real client would pay bcrypt again.
    cache: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt verifications run so far, known users or not.
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicUsize,
}

/// What [`WebConfig::begin_basic_auth`] found.
pub enum AuthStep {
    /// No users configured, or credentials verified before.
    Allowed,
    /// No or malformed credentials: answer [`WebConfig::denied`].
    Denied,
    /// Credentials to verify with bcrypt (slow: off the async workers).
    Verify(PendingCheck),
}

/// Basic-auth credentials waiting for their bcrypt verification.
pub struct PendingCheck {
    user: String,
    pass: String,
    key: [u8; 32],
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads and validates `path`; relative `cert_file`, `key_file` and `client_ca_file` are taken
/// from the file's directory, as the toolkit does.
pub fn load_file(path: &Path) -> Result<WebConfig, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_str(&text, &file, dir)
}

/// Parses a web config; `file` names it in errors, `dir` resolves relative paths.
pub fn parse_str(text: &str, file: &str, dir: &Path) -> Result<WebConfig, Error> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // The YAML library's message carries the line and column.
            let inner = e.into_inner();
            invalid(
                file,
                if key == "." { "(top level)" } else { &key },
                inner.to_string(),
            )
        })?
    };
    let tls = match raw.tls_server_config {
        Some(t) => tls_config(t, file, dir)?,
        None => None,
    };
    let mut headers = Vec::new();
    if let Some(h) = raw.http_server_config {
        if h.http2.is_some() {
            return Err(invalid(
                file,
                "http_server_config.http2",
                "HTTP/2 is not served; remove the key",
            ));
        }
        for (name, value) in h.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((canon, allowed)) = ALLOWED_HEADERS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(invalid(
                    file,
                    &key,
                    format!("header not allowed; allowed: {}", names.join(", ")),
                ));
            };
            if let Some(values) = allowed {
                if !values.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
                    return Err(invalid(
                        file,
                        &key,
                        format!("invalid value {value:?}; allowed: {}", values.join(", ")),
                    ));
                }
            }
            let v = HeaderValue::from_str(&value)
                .map_err(|e| invalid(file, &key, format!("invalid header value: {e}")))?;
            headers.push((HeaderName::from_static_lower(canon), v));
        }
    }
    let users = raw.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        let key = format!("basic_auth_users.{user}");
        if user.contains(':') {
            return Err(invalid(file, &key, "a user name cannot contain ':'"));
        }
        // Checking the hash now turns a typo into a start error instead of a locked door.
        if bcrypt::verify("", hash).is_err() {
            return Err(invalid(
                file,
                &key,
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
    }
    let dummy_hash = dummy_hash(&users);
    Ok(WebConfig {
        file: file.to_string(),
        tls,
        users,
        dummy_hash,
        headers,
        cache: Mutex::new(HashSet::new()),
        #[cfg(test)]
        verifications: Default::default(),
    })
}

/// A hash of an unknown password with the cost most of the users' hashes have (`$2y$<cost>$…`),
/// so verifying against it takes as long as verifying against theirs.
fn dummy_hash(users: &BTreeMap<String, String>) -> String {
    let mut costs: BTreeMap<u32, usize> = BTreeMap::new();
    for hash in users.values() {
        if let Some(c) = hash.get(4..6).and_then(|c| c.parse::<u32>().ok()) {
            *costs.entry(c).or_default() += 1;
        }
    }
    match costs.into_iter().max_by_key(|&(c, n)| (n, c)) {
        Some((10, _)) | None => DUMMY_HASH.to_string(),
        Some((cost, _)) => bcrypt::hash(DUMMY_HASH, cost).unwrap_or_else(|_| DUMMY_HASH.into()),
    }
}

trait FromStaticLower {
    fn from_static_lower(s: &str) -> HeaderName;
}

impl FromStaticLower for HeaderName {
    /// The allowed names are constants, so parsing them cannot fail.
    fn from_static_lower(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes())
            .unwrap_or(HeaderName::from_static("x-invalid"))
    }
}

fn tls_version(
    v: &str,
    file: &str,
    key: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, Error> {
    match v {
        // rustls has nothing older than 1.2: the floor stays there.
        "TLS10" | "TLS11" | "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(invalid(
            file,
            key,
            format!("unknown TLS version {other:?}; one of TLS10, TLS11, TLS12, TLS13"),
        )),
    }
}

fn tls_config(
    t: RawTls,
    file: &str,
    dir: &Path,
) -> Result<Option<Arc<rustls::ServerConfig>>, Error> {
    const K: &str = "tls_server_config";
    let (cert_file, key_file) = match (
        t.cert_file.filter(|s| !s.is_empty()),
        t.key_file.filter(|s| !s.is_empty()),
    ) {
        (None, None) => {
            // As the toolkit: an empty tls_server_config means plain HTTP, but not with other keys.
            if t.client_ca_file.is_some() || t.client_auth_type.is_some() {
                return Err(invalid(
                    file,
                    &format!("{K}.cert_file"),
                    "missing cert_file",
                ));
            }
            return Ok(None);
        }
        (None, Some(_)) => {
            return Err(invalid(
                file,
                &format!("{K}.cert_file"),
                "missing cert_file",
            ))
        }
        (Some(_), None) => return Err(invalid(file, &format!("{K}.key_file"), "missing key_file")),
        (Some(c), Some(k)) => (c, k),
    };
    for (key, set) in [
        ("cipher_suites", t.cipher_suites.is_some()),
        ("curve_preferences", t.curve_preferences.is_some()),
    ] {
        if set {
            return Err(invalid(
                file,
                &format!("{K}.{key}"),
                "not configurable here: rustls' safe defaults are used; remove the key",
            ));
        }
    }
    let _ = t.prefer_server_cipher_suites;
    let versions = protocol_versions(t.min_version.as_deref(), t.max_version.as_deref(), file)?;
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let cert_key = format!("{K}.cert_file");
    let cert_path = resolve(&cert_file);
    let certs = read_certs(&cert_path, file, &cert_key)?;
    let key_key = format!("{K}.key_file");
    let key_path = resolve(&key_file);
    let private_key = read_key(&key_path, file, &key_key)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(file, &format!("{K}.min_version"), e.to_string()))?;
    let auth_key = format!("{K}.client_auth_type");
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" | "" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca_key = format!("{K}.client_ca_file");
            let Some(ca) = t.client_ca_file.filter(|s| !s.is_empty()) else {
                return Err(invalid(file, &ca_key, format!("client_auth_type {auth} needs client_ca_file")));
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(&resolve(&ca), file, &ca_key)? {
                roots.add(c).map_err(|e| invalid(file, &ca_key, e.to_string()))?;
            }
            let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == "VerifyClientCertIfGiven" {
                v = v.allow_unauthenticated();
            }
            let v = v.build().map_err(|e| invalid(file, &ca_key, e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(invalid(file, &auth_key, format!("{auth} accepts unverified certificates and is not supported; use RequireAndVerifyClientCert with client_ca_file")))
        }
        other => {
            return Err(invalid(file, &auth_key, format!("unknown client_auth_type {other:?}; one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert")))
        }
    };
    let mut cfg = builder.with_single_cert(certs, private_key).map_err(|e| {
        invalid(
            file,
            &key_key,
            format!("certificate and key do not form a pair: {e}"),
        )
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// The TLS versions from `min_version` to `max_version` (TLS 1.2 and 1.3 by default).
fn protocol_versions(
    min_version: Option<&str>,
    max_version: Option<&str>,
    file: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, Error> {
    const K: &str = "tls_server_config";
    let min = tls_version(
        min_version.unwrap_or("TLS12"),
        file,
        &format!("{K}.min_version"),
    )?;
    let max = tls_version(
        max_version.unwrap_or("TLS13"),
        file,
        &format!("{K}.max_version"),
    )?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                version_rank(v) >= version_rank(min) && version_rank(v) <= version_rank(max)
            })
            .collect();
    if versions.is_empty() {
        return Err(invalid(
            file,
            &format!("{K}.max_version"),
            "max_version is below min_version",
        ));
    }
    Ok(versions)
}

/// The private key of a PEM file; `key` names the setting in messages.
fn read_key(
    key_path: &Path,
    file: &str,
    key_key: &str,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, Error> {
    let key_pem = std::fs::read(key_path)
        .map_err(|e| invalid(file, key_key, format!("{}: {e}", key_path.display())))?;
    rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| invalid(file, key_key, format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| {
            invalid(
                file,
                key_key,
                format!("{}: no private key in PEM", key_path.display()),
            )
        })
}

fn version_rank(v: &rustls::SupportedProtocolVersion) -> u8 {
    if v.version == rustls::ProtocolVersion::TLSv1_3 {
        13
    } else {
        12
    }
}

fn read_certs(
    path: &Path,
    file: &str,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
    let pem =
        std::fs::read(path).map_err(|e| invalid(file, key, format!("{}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(file, key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            file,
            key,
            format!("{}: no certificate in PEM", path.display()),
        ));
    }
    Ok(certs)
}

impl WebConfig {
    /// The file it came from, for log lines.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The rustls config when the file asks for TLS.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn has_basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// `None` when no users are configured or the request's `Authorization: Basic` names a user
    /// and the right password, else the 401 to answer (with `WWW-Authenticate: Basic`).
    /// Blocking when it has to verify: the server uses [`WebConfig::begin_basic_auth`].
    pub fn check_basic_auth(&self, headers: &HeaderMap) -> Option<HttpResponse> {
        let ok = match self.begin_basic_auth(headers) {
            AuthStep::Allowed => true,
            AuthStep::Denied => false,
            AuthStep::Verify(p) => self.verify(p),
        };
        (!ok).then(|| self.denied())
    }

    /// The 401 for refused credentials, asking for basic auth.
    pub fn denied(&self) -> HttpResponse {
        let mut r = super::text_response(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "Unauthorized\n",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    }

    /// The quick part of the check: what can be answered without bcrypt. The scheme is matched
    /// in any case (RFC 7235); of several `Authorization` headers the first Basic one counts.
    pub fn begin_basic_auth(&self, headers: &HeaderMap) -> AuthStep {
        if self.users.is_empty() {
            return AuthStep::Allowed;
        }
        let creds = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let (scheme, rest) = v.trim_start().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let Some((user, pass)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
            return AuthStep::Denied;
        };
        let key = self.cache_key(user, pass);
        if self.cache.lock().is_ok_and(|c| c.contains(&key)) {
            return AuthStep::Allowed;
        }
        AuthStep::Verify(PendingCheck {
            user: user.to_string(),
            pass: pass.to_string(),
            key,
        })
    }

    /// The slow part: bcrypt against the user's hash, or the dummy hash for an unknown user, so
    /// both take the same time; right credentials are remembered.
    pub fn verify(&self, p: PendingCheck) -> bool {
        let (known, hash) = match self.users.get(&p.user) {
            Some(h) => (true, h.as_str()),
            None => (false, self.dummy_hash.as_str()),
        };
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Both run always: `known && verify(…)` would skip bcrypt for unknown users.
        let matched = bcrypt::verify(&p.pass, hash).unwrap_or(false);
        let ok = known & matched;
        if ok {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= AUTH_CACHE_SIZE {
                    // Any entry: the set's order is random per process, like the toolkit's
                    // eviction.
                    if let Some(k) = cache.iter().next().copied() {
                        cache.remove(&k);
                    }
                }
                cache.insert(p.key);
            }
        }
        ok
    }

    /// SHA-256 of user, the hash verified against and password, each after its length, so
    /// "a:b" + "c" and "a" + "b:c" never share a key.
    fn cache_key(&self, user: &str, pass: &str) -> [u8; 32] {
        let hash = self
            .users
            .get(user)
            .map_or(self.dummy_hash.as_str(), String::as_str);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [user, hash, pass] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Adds the configured `http_server_config.headers` to a response.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.headers {
            headers.insert(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, Error> {
        parse_str(text, "web.yml", Path::new("/nonexistent"))
    }

    fn err(text: &str) -> String {
        parse(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        let c = parse("").unwrap();
        assert!(!c.has_tls() && !c.has_basic_auth());
        assert!(c.check_basic_auth(&HeaderMap::new()).is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        assert_eq!(
            err("tls_server_config:\n  cert_file: a.pem\n"),
            "web.yml: tls_server_config.key_file: missing key_file"
        );
        let e = err("tls_server_config:\n  cert_fle: a.pem\n");
        assert!(
            e.starts_with("web.yml: tls_server_config.cert_fle: "),
            "{e}"
        );
        assert!(
            e.contains("unknown field `cert_fle`") && e.contains("line 2"),
            "{e}"
        );
        let e = err("basic_auth_users:\n  alice: plaintext\n");
        assert!(
            e.starts_with("web.yml: basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    Server: x\n");
        assert!(
            e.starts_with("web.yml: http_server_config.headers.Server: header not allowed"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.contains("invalid value \"allow\""), "{e}");
        let e = err("tls_server_config:\n  cert_file: /nope/c.pem\n  key_file: /nope/k.pem\n");
        assert!(
            e.starts_with("web.yml: tls_server_config.cert_file: /nope/c.pem: "),
            "{e}"
        );
    }

    #[test]
    fn basic_auth_accepts_the_right_password_only_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        assert!(c.check_basic_auth(&basic("alice", "s3cret")).is_none());
        let denied = c.check_basic_auth(&basic("alice", "wrong")).unwrap();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(denied.headers()[WWW_AUTHENTICATE], "Basic");
        assert!(c.check_basic_auth(&basic("bob", "s3cret")).is_some());
        assert!(c.check_basic_auth(&HeaderMap::new()).is_some());
        // A password with ':' is split at the first one, as RFC 7617 says.
        let hash2 = bcrypt::hash("a:b", 4).unwrap();
        let c2 = parse(&format!("basic_auth_users:\n  carol: '{hash2}'\n")).unwrap();
        assert!(c2.check_basic_auth(&basic("carol", "a:b")).is_none());
        // Right credentials are remembered; wrong ones are not, so a flood of wrong guesses
        // cannot push the right ones out.
        assert_eq!(c.cache.lock().unwrap().len(), 1);
        for i in 0..(AUTH_CACHE_SIZE + 20) {
            let _ = c.check_basic_auth(&basic("nobody", &i.to_string()));
        }
        assert_eq!(c.cache.lock().unwrap().len(), 1);
        assert!(matches!(
            c.begin_basic_auth(&basic("alice", "s3cret")),
            AuthStep::Allowed
        ));
    }

    #[test]
    fn unknown_users_cost_a_bcrypt_verification_like_known_ones() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        assert!(c.dummy_hash.starts_with("$2b$04$"), "{}", c.dummy_hash);
        let runs = || c.verifications.load(std::sync::atomic::Ordering::Relaxed);
        for (user, pass) in [
            ("alice", "wrong"),
            ("mallory", "wrong"),
            ("mallory", "s3cret"),
        ] {
            let AuthStep::Verify(p) = c.begin_basic_auth(&basic(user, pass)) else {
                panic!("{user}:{pass} was answered without verifying");
            };
            let before = runs();
            assert!(!c.verify(p), "{user}:{pass}");
            assert!(runs() > before, "{user}:{pass} skipped bcrypt");
        }
        // A refusal is not remembered: the same guess is verified again, as long.
        assert!(matches!(
            c.begin_basic_auth(&basic("mallory", "wrong")),
            AuthStep::Verify(_)
        ));
        // Scheme names in any case (RFC 7235).
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("bAsIc {v}")).unwrap(),
        );
        assert!(c.check_basic_auth(&h).is_none());
    }

    #[test]
    fn headers_are_added_with_their_canonical_names() {
        let c = parse("http_server_config:\n  headers:\n    x-content-type-options: nosniff\n")
            .unwrap();
        let mut h = HeaderMap::new();
        c.apply_headers(&mut h);
        assert_eq!(h["X-Content-Type-Options"], "nosniff");
    }
}

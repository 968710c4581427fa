//! The one HTTP client of the program: one request over HTTP/1.1 (TCP, TLS over TCP for
//! `https://`, or a unix socket for the Docker Engine API), with a timeout, a body size limit
//! that stops reading at the limit, a status check and JSON parsing; and the pooled TLS
//! connector of the long-lived clients (Alertmanager, remote write). Failures are an [`Error`]
//! whose kinds are the adapters' poll error reasons (`timeout`, `refused`, `http_status`,
//! `too_large`, `parse`, `io`), so `depin_adapter_poll_errors_total{reason}` says what went
//! wrong.
//!
//! TLS is rustls (the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`). The server's
//! certificate is verified against the Mozilla roots compiled in (`webpki-roots`, so no OS
//! store is needed in a container) plus, when the request names one, the certificates of a
//! PEM `ca_file` (a private CA or a self-signed node certificate). There is no switch to skip
//! verification. A handshake or certificate failure is reason `io`, with rustls' words.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer within the request's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection was refused: nothing listens there.
    #[error("connection refused: {0}")]
    Refused(String),
    /// An HTTP status other than success.
    #[error("HTTP status {status}: {detail}")]
    HttpStatus { status: u16, detail: String },
    /// An answer that cannot be read (not JSON where JSON was asked for).
    #[error("cannot parse the answer: {0}")]
    Parse(String),
    /// An answer longer than the body size limit; it was not read to the end.
    #[error("the answer is larger than the limit of {limit} bytes: {detail}")]
    TooLarge { limit: usize, detail: String },
    /// A connection, TLS or transfer failure.
    #[error("I/O: {0}")]
    Io(String),
    /// A request that could not be made (a bad URL or header).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The reason word, as `depin_adapter_poll_errors_total{reason}` shows it.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::Refused(_) => "refused",
            Error::HttpStatus { .. } => "http_status",
            Error::Parse(_) => "parse",
            Error::TooLarge { .. } => "too_large",
            Error::Io(_) => "io",
            Error::Other(_) => "other",
        }
    }
}

/// The default body size limit: far above any node answer seen (a few KiB), far below what
/// would hurt the host.
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

/// The default timeout of one request made outside the coordinator's own poll timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: url::Url,
    /// Extra headers (e.g. `Authorization`); values that are secrets are marked sensitive.
    pub headers: Vec<(String, String)>,
    /// A JSON body (sent with `Content-Type: application/json`).
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    /// The most body bytes read; a longer answer fails with reason `too_large`.
    pub limit: usize,
    /// `https://`: PEM certificates trusted besides the built-in roots. Read at each request,
    /// so a renewed file is picked up.
    pub ca_file: Option<PathBuf>,
}

impl HttpRequest {
    pub fn get(url: url::Url) -> HttpRequest {
        HttpRequest {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
            limit: DEFAULT_BODY_LIMIT,
            ca_file: None,
        }
    }

    /// Trusts the certificates in the PEM file `path` as well (for `https://`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> HttpRequest {
        self.ca_file = Some(path.into());
        self
    }

    pub fn bearer(mut self, token: &str) -> HttpRequest {
        self.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn post_json(url: url::Url, body: Vec<u8>) -> HttpRequest {
        HttpRequest {
            method: Method::POST,
            body: Some(body),
            ..HttpRequest::get(url)
        }
    }

    /// `host[:port]/path?query` for messages (no credentials: they are in headers only).
    fn shown(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }
}

/// Aborts the connection task when the request ends (also on timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where an answer's body goes: collected (at most `req.limit` bytes), or written to a sink as
/// it arrives (a download of any length; only a 2xx answer is streamed).
type Sink<'a> = Option<&'a mut (dyn std::io::Write + Send)>;

/// Sends `req` over TCP; returns the status and the body (at most `req.limit` bytes).
pub async fn send(req: &HttpRequest) -> Result<(u16, Bytes), Error> {
    send_to(req, None).await
}

/// Sends `req` and writes the body of its 2xx answer to `out` as it arrives (no size limit:
/// `req.timeout` bounds the whole transfer); any other status is an `http_status` error
/// quoting the start of the body.
pub async fn download(
    req: &HttpRequest,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), Error> {
    let (status, body) = send_to(req, Some(out)).await?;
    check_status(status, &body, &req.shown())
}

/// Runs one request to its end on a runtime of its own, for the command-line tools that make
/// a few requests and have no runtime.
pub fn blocking<T>(fut: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("starting a runtime: {e}")))?
        .block_on(fut)
}

async fn send_to(req: &HttpRequest, sink: Sink<'_>) -> Result<(u16, Bytes), Error> {
    let shown = req.shown();
    let fut = async {
        let tls = match req.url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(Error::Other(format!(
                    "{shown}: unsupported scheme {other:?}; use http:// or https://"
                )))
            }
        };
        let host = req
            .url
            .host_str()
            .ok_or_else(|| Error::Other(format!("{shown}: the URL has no host")))?;
        let port = req.url.port_or_known_default().unwrap_or(80);
        // IPv6 literals come bracketed from host_str; connect wants them bare.
        let connect_host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((connect_host, port))
            .await
            .map_err(|e| connect_error(&shown, e))?;
        let host_header = match req.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut path = req.url.path().to_string();
        if let Some(q) = req.url.query() {
            path.push('?');
            path.push_str(q);
        }
        if !tls {
            return exchange(stream, req, &host_header, &path, &shown, sink).await;
        }
        let config = client_config(req.ca_file.as_deref())
            .map_err(|e| Error::Io(format!("{shown}: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(connect_host.to_string())
            .map_err(|e| Error::Other(format!("{shown}: TLS server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| Error::Io(format!("{shown}: TLS handshake: {e}")))?;
        exchange(stream, req, &host_header, &path, &shown, sink).await
    };
    tokio::time::timeout(req.timeout, fut)
        .await
        .unwrap_or(Err(Error::Timeout(req.timeout)))
}

/// A connector for hyper-util's pooled client (remote write, Alertmanager) that speaks
/// `http://` and `https://`, with the same TLS config as [`send`] (Mozilla's roots plus
/// `ca_file`'s certificates).
pub fn pooled_connector(
    connect_timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String>
{
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let mut tls = (*client_config(ca_file)?).clone();
    // hyper-rustls sets ALPN itself (`enable_http1`) and refuses a config that has it.
    tls.alpn_protocols.clear();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The TLS client config: the built-in roots (built once), plus `ca_file`'s certificates.
fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let build = |extra: Option<&Path>| -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(p) = extra {
            let pem = std::fs::read(p).map_err(|e| format!("ca_file {}: {e}", p.display()))?;
            let mut n = 0;
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                let c = c.map_err(|e| format!("ca_file {}: {e}", p.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", p.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "ca_file {}: no PEM certificate in the file",
                    p.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    };
    match ca_file {
        None => DEFAULT.get_or_init(|| build(None)).clone(),
        Some(p) => build(Some(p)),
    }
}

/// Sends `req` over the unix socket at `socket`; the URL's path and query are used, its host
/// only names the request (`http://localhost/containers/x/json`).
pub async fn send_unix(socket: &Path, req: &HttpRequest) -> Result<(u16, Bytes), Error> {
    let shown = format!("unix:{}{}", socket.display(), req.url.path());
    let fut = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| connect_error(&shown, e))?;
        let mut path = req.url.path().to_string();
        if let Some(q) = req.url.query() {
            path.push('?');
            path.push_str(q);
        }
        exchange(stream, req, "localhost", &path, &shown, None).await
    };
    tokio::time::timeout(req.timeout, fut)
        .await
        .unwrap_or(Err(Error::Timeout(req.timeout)))
}

fn connect_error(shown: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
            Error::Refused(format!("{shown}: {e}"))
        }
        _ => Error::Io(format!("{shown}: connecting: {e}")),
    }
}

async fn exchange<S>(
    io: S,
    req: &HttpRequest,
    host: &str,
    path: &str,
    shown: &str,
    sink: Sink<'_>,
) -> Result<(u16, Bytes), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::Io(format!("{shown}: HTTP handshake: {e}")))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut b = Request::builder()
        .method(req.method.clone())
        .uri(path)
        .header(HOST, host)
        .header(
            USER_AGENT,
            concat!("depin-orcha/", env!("CARGO_PKG_VERSION")),
        );
    if req.body.is_some() {
        b = b.header(CONTENT_TYPE, "application/json");
    }
    let headers = b
        .headers_mut()
        .ok_or_else(|| Error::Other(format!("{shown}: invalid request")))?;
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| Error::Other(format!("{shown}: header name {k:?}: {e}")))?;
        let mut value = HeaderValue::from_str(v)
            // The value may be a secret: name the header only.
            .map_err(|_| Error::Other(format!("{shown}: header {k} has an invalid value")))?;
        if name == hyper::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.append(name, value);
    }
    let body = Full::new(Bytes::from(req.body.clone().unwrap_or_default()));
    let request = b
        .body(body)
        .map_err(|e| Error::Other(format!("{shown}: building the request: {e}")))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| Error::Io(format!("{shown}: {e}")))?;
    let status = resp.status().as_u16();
    if let Some(out) = sink.filter(|_| (200..300).contains(&status)) {
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Error::Io(format!("{shown}: reading the answer: {e}")))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)
                    .map_err(|e| Error::Io(format!("{shown}: writing the answer: {e}")))?;
            }
        }
        return Ok((status, Bytes::new()));
    }
    // Refuse early when the node announces a body over the limit.
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced.filter(|l| *l > req.limit as u64) {
        return Err(Error::TooLarge {
            limit: req.limit,
            detail: format!("{shown}: Content-Length {len}"),
        });
    }
    let body = Limited::new(resp.into_body(), req.limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Error::TooLarge {
                    limit: req.limit,
                    detail: shown.to_string(),
                }
            } else {
                Error::Io(format!("{shown}: reading the answer: {e}"))
            }
        })?;
    Ok((status, body.to_bytes()))
}

/// Sends `req` and fails with reason `http_status` unless the status is 2xx.
pub async fn fetch(req: &HttpRequest) -> Result<Bytes, Error> {
    let (status, body) = send(req).await?;
    check_status(status, &body, &req.shown())?;
    Ok(body)
}

/// `Err(HttpStatus)` unless `status` is 2xx; the detail quotes the start of the body.
pub fn check_status(status: u16, body: &[u8], shown: &str) -> Result<(), Error> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Err(Error::HttpStatus {
        status,
        detail: format!("{shown}: {}", text.trim()),
    })
}

/// Sends `req` and parses a 2xx answer as JSON (reason `parse` when it is not).
pub async fn fetch_json(req: &HttpRequest) -> Result<serde_json::Value, Error> {
    let body = fetch(req).await?;
    parse_json(&body, &req.shown())
}

pub fn parse_json(body: &[u8], shown: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Parse(format!("{shown}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    /// A TLS server on 127.0.0.1 with a fresh self-signed certificate for `names`, answering
    /// every request with `{"ok": true}`; returns its port and the certificate's PEM file.
    async fn tls_server(names: &[&str], dir: &Path) -> (u16, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let pem = dir.join("node.pem");
        std::fs::write(&pem, ck.cert.pem()).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends the handshake: not an error here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(br#"{"ok": true}"#),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (port, pem)
    }

    fn get(url: &str) -> HttpRequest {
        let mut r = HttpRequest::get(url::Url::parse(url).unwrap());
        r.timeout = Duration::from_secs(5);
        r
    }

    #[tokio::test]
    async fn https_works_with_the_nodes_certificate_as_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (port, pem) = tls_server(&["127.0.0.1", "localhost"], dir.path()).await;
        let url = format!("https://127.0.0.1:{port}/api/sno/");
        let v = fetch_json(&get(&url).ca_file(&pem)).await.unwrap();
        assert_eq!(v["ok"], true);
    }

    #[tokio::test]
    async fn https_refuses_an_unknown_or_misnamed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (port, pem) = tls_server(&["localhost"], dir.path()).await;
        // Self-signed and not in ca_file: the built-in roots do not know it.
        let url = format!("https://127.0.0.1:{port}/");
        let e = fetch(&get(&url)).await.unwrap_err();
        assert_eq!(e.reason(), "io");
        assert!(
            e.to_string()
                .contains("TLS handshake: invalid peer certificate: UnknownIssuer"),
            "{e}"
        );
        // Trusted, but issued for `localhost`, not 127.0.0.1.
        let e = fetch(&get(&url).ca_file(&pem)).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("certificate not valid for name \"127.0.0.1\""),
            "{e}"
        );
        // A ca_file that is not there, or holds no certificate, is named.
        let e = fetch(&get(&url).ca_file(dir.path().join("nope.pem")))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("ca_file ") && e.to_string().contains("nope.pem"),
            "{e}"
        );
        std::fs::write(dir.path().join("empty.pem"), "hello\n").unwrap();
        let e = fetch(&get(&url).ca_file(dir.path().join("empty.pem")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = fetch(&get("ftp://127.0.0.1/")).await.unwrap_err();
        assert!(e.to_string().contains("unsupported scheme \"ftp\""), "{e}");
    }
}

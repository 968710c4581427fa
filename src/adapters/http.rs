//! The HTTP client every node kind shares: one request over plain HTTP/1.1 (TCP, or a unix
//! socket for the Docker Engine API), with a timeout, a body size limit that stops reading at
//! the limit, a status check and JSON parsing. Failures map onto [`PollError`] reasons
//! (`timeout`, `refused`, `http_status`, `too_large`, `parse`, `io`) so that
//! `depin_adapter_poll_errors_total{reason}` says what went wrong.
//!
//! There is no TLS: the crate's HTTP stack is hyper without a TLS connector. Nodes answer on
//! loopback over plain HTTP; an `https://` URL is refused at config validation (see
//! [`crate::adapters::conf::http_url`]).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::PollError;

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
        }
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

/// Sends `req` over TCP; returns the status and the body (at most `req.limit` bytes).
pub async fn send(req: &HttpRequest) -> Result<(u16, Bytes), PollError> {
    let shown = req.shown();
    let fut = async {
        if req.url.scheme() != "http" {
            return Err(PollError::Other(format!(
                "{shown}: only http:// URLs are supported (no TLS in this build)"
            )));
        }
        let host = req
            .url
            .host_str()
            .ok_or_else(|| PollError::Other(format!("{shown}: the URL has no host")))?;
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
        exchange(stream, req, &host_header, &path, &shown).await
    };
    tokio::time::timeout(req.timeout, fut)
        .await
        .unwrap_or(Err(PollError::Timeout(req.timeout)))
}

/// Sends `req` over the unix socket at `socket`; the URL's path and query are used, its host
/// only names the request (`http://localhost/containers/x/json`).
pub async fn send_unix(socket: &Path, req: &HttpRequest) -> Result<(u16, Bytes), PollError> {
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
        exchange(stream, req, "localhost", &path, &shown).await
    };
    tokio::time::timeout(req.timeout, fut)
        .await
        .unwrap_or(Err(PollError::Timeout(req.timeout)))
}

fn connect_error(shown: &str, e: std::io::Error) -> PollError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
            PollError::Refused(format!("{shown}: {e}"))
        }
        _ => PollError::Io(format!("{shown}: connecting: {e}")),
    }
}

async fn exchange<S>(
    io: S,
    req: &HttpRequest,
    host: &str,
    path: &str,
    shown: &str,
) -> Result<(u16, Bytes), PollError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| PollError::Io(format!("{shown}: HTTP handshake: {e}")))?;
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
        .ok_or_else(|| PollError::Other(format!("{shown}: invalid request")))?;
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| PollError::Other(format!("{shown}: header name {k:?}: {e}")))?;
        let mut value = HeaderValue::from_str(v)
            // The value may be a secret: name the header only.
            .map_err(|_| PollError::Other(format!("{shown}: header {k} has an invalid value")))?;
        if name == hyper::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.append(name, value);
    }
    let body = Full::new(Bytes::from(req.body.clone().unwrap_or_default()));
    let request = b
        .body(body)
        .map_err(|e| PollError::Other(format!("{shown}: building the request: {e}")))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| PollError::Io(format!("{shown}: {e}")))?;
    let status = resp.status().as_u16();
    // Refuse early when the node announces a body over the limit.
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced.filter(|l| *l > req.limit as u64) {
        return Err(PollError::TooLarge {
            limit: req.limit,
            detail: format!("{shown}: Content-Length {len}"),
        });
    }
    let body = Limited::new(resp.into_body(), req.limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                PollError::TooLarge {
                    limit: req.limit,
                    detail: shown.to_string(),
                }
            } else {
                PollError::Io(format!("{shown}: reading the answer: {e}"))
            }
        })?;
    Ok((status, body.to_bytes()))
}

/// Sends `req` and fails with reason `http_status` unless the status is 2xx.
pub async fn fetch(req: &HttpRequest) -> Result<Bytes, PollError> {
    let (status, body) = send(req).await?;
    check_status(status, &body, &req.shown())?;
    Ok(body)
}

/// `Err(HttpStatus)` unless `status` is 2xx; the detail quotes the start of the body.
pub fn check_status(status: u16, body: &[u8], shown: &str) -> Result<(), PollError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Err(PollError::HttpStatus {
        status,
        detail: format!("{shown}: {}", text.trim()),
    })
}

/// Sends `req` and parses a 2xx answer as JSON (reason `parse` when it is not).
pub async fn fetch_json(req: &HttpRequest) -> Result<serde_json::Value, PollError> {
    let body = fetch(req).await?;
    parse_json(&body, &req.shown())
}

pub fn parse_json(body: &[u8], shown: &str) -> Result<serde_json::Value, PollError> {
    serde_json::from_slice(body).map_err(|e| PollError::Parse(format!("{shown}: {e}")))
}

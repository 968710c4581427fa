//! One remote write request over HTTP/1.1 (hyper 1 through hyper-util's pooled client): the
//! protocol 1.0 headers, the configured auth and headers, the timeout, and the verdict the
//! queue acts on: sent, retry (5xx, 429, network errors, timeouts) or drop (other 4xx).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::proto;
use crate::config::remote_write::{Auth, RemoteWriteConfig, Secret};

/// How a send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent,
    /// Worth trying again later: 5xx, 429, connection or timeout errors.
    Retry(String),
    /// The remote refused the data for good (other 4xx): dropping it is all we can do.
    Drop(String),
}

pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<Auth>,
    timeout: Duration,
    user_agent: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("remote_write {name}: url {url}: {reason}")]
    Url {
        name: String,
        url: String,
        reason: String,
    },
}

impl Sender {
    pub fn new(cfg: &RemoteWriteConfig) -> Result<Sender, ClientError> {
        let url: hyper::Uri =
            cfg.url
                .as_str()
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ClientError::Url {
                    name: cfg.name.clone(),
                    url: cfg.url.to_string(),
                    reason: e.to_string(),
                })?;
        // Config validation checked names and values; anything that still fails is skipped.
        let headers = cfg
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        let connector =
            crate::net::http::pooled_connector(cfg.remote_timeout, cfg.tls_ca_file.as_deref())
                .map_err(|reason| ClientError::Url {
                    name: cfg.name.clone(),
                    url: cfg.url.to_string(),
                    reason,
                })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Sender {
            client,
            url,
            headers,
            auth: cfg.auth.clone(),
            timeout: cfg.remote_timeout,
            user_agent: HeaderValue::from_static(concat!(
                "depin-orcha/",
                env!("CARGO_PKG_VERSION")
            )),
        })
    }

    fn authorization(&self) -> Result<Option<HeaderValue>, String> {
        let read = |s: &Secret| -> Result<String, String> {
            match s {
                Secret::Inline(v) => Ok(v.clone()),
                Secret::File(p) => std::fs::read_to_string(p)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| format!("reading {}: {e}", p.display())),
            }
        };
        let text = match &self.auth {
            None => return Ok(None),
            Some(Auth::Basic { username, password }) => {
                format!(
                    "Basic {}",
                    base64(format!("{username}:{}", read(password)?).as_bytes())
                )
            }
            Some(Auth::Bearer(t)) => format!("Bearer {}", read(t)?),
        };
        HeaderValue::from_str(&text)
            .map(Some)
            .map_err(|_| "the credentials contain characters not allowed in a header".to_string())
    }

    /// POSTs one snappy-compressed `WriteRequest`.
    pub async fn send(&self, body: Bytes) -> Outcome {
        let auth = match self.authorization() {
            Ok(a) => a,
            // A missing password file may appear (secrets mounted late): retry.
            Err(e) => return Outcome::Retry(e),
        };
        let mut req = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, proto::CONTENT_TYPE)
            .header(hyper::header::CONTENT_ENCODING, proto::CONTENT_ENCODING)
            .header(proto::VERSION_HEADER, proto::VERSION)
            .header(hyper::header::USER_AGENT, self.user_agent.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(a) = auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Drop(format!("building the request: {e}")),
        };
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| {
                use std::error::Error;
                let mut msg = e.to_string();
                if let Some(src) = e.source() {
                    msg = format!("{msg}: {src}");
                }
                msg
            })?;
            let status = resp.status();
            // Read a little of the body for the log; remote write answers are short.
            let body = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let text = String::from_utf8_lossy(&body[..body.len().min(256)])
                .trim()
                .to_string();
            Ok::<_, String>((status, text))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Outcome::Retry(format!(
                "no answer within remote_timeout {}",
                humantime::format_duration(self.timeout)
            )),
            Ok(Err(e)) => Outcome::Retry(e),
            Ok(Ok((s, _))) if s.is_success() => Outcome::Sent,
            Ok(Ok((s, text))) if s.is_server_error() || s.as_u16() == 429 => {
                Outcome::Retry(format!("HTTP {s}: {text}"))
            }
            Ok(Ok((s, text))) => Outcome::Drop(format!("HTTP {s}: {text}")),
        }
    }
}

/// Standard base64 with padding, for the Basic auth header.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}

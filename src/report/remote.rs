//! The report's [`Source`] over a running instance: `/api/v1/query` and
//! `/api/v1/reallocations` over plain HTTP/1.1 (the default listen address is loopback, so no
//! TLS). A blocking client of a few lines: the report makes a dozen requests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::{RawSeries, Reallocation, ReportError, Row, Source};

pub struct RemoteSource {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    pub timeout: Duration,
}

impl RemoteSource {
    pub fn new(base: &str) -> RemoteSource {
        RemoteSource {
            base: base.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(120),
        }
    }

    fn get(&self, path_and_query: &str) -> Result<Value, ReportError> {
        let url_text = format!("{}{}", self.base, path_and_query);
        let err = |message: String| ReportError::Http {
            url: url_text.clone(),
            message,
        };
        let url = url::Url::parse(&url_text).map_err(|e| err(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(err("only http:// URLs are supported".into()));
        }
        let host = url.host_str().ok_or_else(|| err("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut s = TcpStream::connect((host, port)).map_err(|e| err(e.to_string()))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| err(e.to_string()))?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| err("malformed HTTP response".into()))?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            err(format!(
                "status {status}, not JSON ({e}): {}",
                body.chars().take(200).collect::<String>()
            ))
        })?;
        if v["status"] != "success" {
            return Err(err(format!("status {status}: {}", v["error"])));
        }
        Ok(v["data"].clone())
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `[<seconds>, "<value>"]` to `(ms, value)`.
fn point(p: &Value) -> Option<(i64, f64)> {
    let t = p.get(0)?.as_f64()?;
    let v = p.get(1)?.as_str()?;
    let v = match v {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        x => x.parse().ok()?,
    };
    Some(((t * 1000.0).round() as i64, v))
}

fn secs(ms: i64) -> String {
    crate::export::fmt_seconds(ms)
}

impl Source for RemoteSource {
    fn instant(&self, query: &str, t_ms: i64) -> Result<Vec<Row>, ReportError> {
        let d = self.get(&format!(
            "/api/v1/query?query={}&time={}",
            enc(query),
            secs(t_ms)
        ))?;
        let result = &d["result"];
        Ok(match d["resultType"].as_str() {
            Some("vector") => result
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| Some((labels(&s["metric"]), point(&s["value"])?.1)))
                        .collect()
                })
                .unwrap_or_default(),
            Some("scalar") => point(result)
                .map(|p| vec![(BTreeMap::new(), p.1)])
                .unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    fn raw(&self, selector: &str, t_ms: i64, range_ms: i64) -> Result<Vec<RawSeries>, ReportError> {
        let q = format!("{selector}[{}s]", (range_ms / 1000).max(1));
        let d = self.get(&format!(
            "/api/v1/query?query={}&time={}",
            enc(&q),
            secs(t_ms)
        ))?;
        Ok(d["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let pts = s["values"]
                            .as_array()
                            .map(|v| v.iter().filter_map(point).collect())
                            .unwrap_or_default();
                        (labels(&s["metric"]), pts)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn reallocations(&self) -> Result<Vec<Reallocation>, ReportError> {
        // Without a controller the route does not exist: no reallocations to report.
        let d = match self.get("/api/v1/reallocations?limit=1000000") {
            Ok(d) => d,
            Err(ReportError::Http { message, .. }) if message.contains("404") => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for r in d["reallocations"].as_array().cloned().unwrap_or_default() {
            let nodes = r["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x["node"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let mut row: Reallocation = serde_json::from_value(r)
                .map_err(|e| ReportError::History(format!("/api/v1/reallocations: {e}")))?;
            row.nodes = nodes;
            out.push(row);
        }
        Ok(out)
    }
}

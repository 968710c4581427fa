//! The report's [`Source`] over a running instance: `/api/v1/query` and
//! `/api/v1/reallocations` through the program's HTTP client (`http://` or `https://`), one
//! request at a time: the report makes a dozen.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::net::http::{self, HttpRequest};

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
        let mut req = HttpRequest::get(url).header("accept", "application/json");
        req.timeout = self.timeout;
        // Range queries over a long history answer more than a node does.
        req.limit = 256 << 20;
        let (status, body) = http::blocking(http::send(&req)).map_err(|e| err(e.to_string()))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            err(format!(
                "status {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        if v["status"] != "success" {
            return Err(err(format!("status {status}: {}", v["error"])));
        }
        Ok(v["data"].clone())
    }
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

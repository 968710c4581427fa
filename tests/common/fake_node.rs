//! A fake of a node program's HTTP API (on 127.0.0.1:0, or a unix socket for the Docker
//! Engine API): each path answers what the test set, with the faults a real node shows (a
//! hang, a truncated or huge answer, a slow one) and JSON-RPC by method. The answers are the
//! fixtures of tests/fixtures/nodes/, each with its source noted in the README there.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the fake answers on one path.
#[derive(Clone)]
pub enum Reply {
    Json(u16, String),
    Text(String),
    /// Accepts the request and never answers.
    Hang,
    /// Announces more bytes than it sends, then closes.
    CutShort(String),
    /// A chunked body of this many bytes, no Content-Length.
    Huge(usize),
    /// A JSON-RPC endpoint: the `result` per method; a method not listed is a JSON-RPC error.
    Rpc(HashMap<String, serde_json::Value>),
    /// Answers after this long.
    Slow(Duration, Box<Reply>),
    /// A list paged as yagna's payment API does (`WHERE timestamp > afterTimestamp ORDER BY
    /// timestamp LIMIT maxItems|maxEvents`): the items and the field holding their time.
    Paged(Arc<Mutex<Vec<serde_json::Value>>>, &'static str),
}

/// Milliseconds of an RFC 3339 time.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// yagna's paging of `items` for a request target with `afterTimestamp` and a limit.
fn page(items: &[serde_json::Value], field: &str, target: &str) -> String {
    let query = target.split_once('?').map(|x| x.1).unwrap_or("");
    let mut after = i64::MIN;
    let mut limit = usize::MAX;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "afterTimestamp" => after = rfc3339_ms(&v).unwrap_or(i64::MIN),
            "maxItems" | "maxEvents" => limit = v.parse().unwrap_or(usize::MAX),
            _ => {}
        }
    }
    let ts = |x: &serde_json::Value| x[field].as_str().and_then(rfc3339_ms).unwrap_or(0);
    let mut out: Vec<&serde_json::Value> = items.iter().filter(|x| ts(x) > after).collect();
    out.sort_by_key(|x| ts(x));
    out.truncate(limit);
    serde_json::to_string(&out).unwrap()
}

#[derive(Clone, Default)]
pub struct Fake {
    pub routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// (path with query, Authorization header, body) of each request.
    pub seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Fake {
    pub fn set(&self, path: &str, r: Reply) {
        self.routes.lock().unwrap().insert(path.into(), r);
    }
    pub fn json(&self, path: &str, body: &str) {
        self.set(path, Reply::Json(200, body.into()));
    }
    pub fn hits(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0.starts_with(prefix))
            .count()
    }
    pub fn auth_of(&self, prefix: &str) -> Option<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.0.starts_with(prefix))
            .map(|s| s.1.clone())
    }

    /// Serves on 127.0.0.1:0; returns the base URL.
    pub async fn serve_tcp(&self) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(me.clone().handle(s));
            }
        });
        format!("http://{addr}")
    }

    pub async fn serve_unix(&self, path: &Path) {
        let l = tokio::net::UnixListener::bind(path).unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(me.clone().handle(s));
            }
        });
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(self, mut s: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let target = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let mut auth = String::new();
        let mut len = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    auth = v.trim().to_string();
                }
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        while buf.len() < head_end + len {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
        self.seen
            .lock()
            .unwrap()
            .push((target.clone(), auth, body.clone()));
        let path = target.split('?').next().unwrap_or("/").to_string();
        let reply = self.routes.lock().unwrap().get(&path).cloned();
        let mut reply = reply.unwrap_or(Reply::Json(404, r#"{"error":"not found"}"#.into()));
        if let Reply::Slow(d, r) = reply {
            tokio::time::sleep(d).await;
            reply = *r;
        }
        if let Reply::Paged(items, field) = &reply {
            let body = page(&items.lock().unwrap(), field, &target);
            reply = Reply::Json(200, body);
        }
        if let Reply::Rpc(results) = &reply {
            let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let method = req["method"].as_str().unwrap_or("");
            let answer = match results.get(method) {
                Some(r) => serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": r}),
                None => {
                    serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": format!("the method {method} does not exist")}})
                }
            };
            reply = Reply::Json(200, answer.to_string());
        }
        let write = |status: u16, ctype: &str, body: &str| {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        match reply {
            Reply::Json(st, b) => {
                let _ = s
                    .write_all(write(st, "application/json", &b).as_bytes())
                    .await;
            }
            Reply::Text(b) => {
                let _ = s
                    .write_all(write(200, "text/plain; version=0.0.4", &b).as_bytes())
                    .await;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Reply::Rpc(_) | Reply::Slow(..) | Reply::Paged(..) => unreachable!("answered above"),
            Reply::CutShort(b) => {
                let h = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len() + 100
                );
                let _ = s.write_all(h.as_bytes()).await;
            }
            Reply::Huge(n) => {
                let h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(h.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b' '; 65536];
                let mut sent = 0;
                while sent < n {
                    let c = format!("{:x}\r\n", piece.len());
                    if s.write_all(c.as_bytes()).await.is_err()
                        || s.write_all(&piece).await.is_err()
                        || s.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    sent += piece.len();
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        }
        let _ = s.shutdown().await;
    }
}

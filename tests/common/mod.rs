//! Helpers for the tests that drive the real `depin-orcha` binary: start it on a free port,
//! read the address it logs, speak plain HTTP/1.1 to it, stop it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod fake_node;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_depin-orcha"))
}

/// Path of `../shared/<rel>` beside the crate, or `None` (with a note) when a clone elsewhere
/// has no shared directory. With `CI=true` its absence fails the test.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing, and CI=true requires it", p.display());
    }
    eprintln!(
        "skipping: {} is absent (a clone without ../shared)",
        p.display()
    );
    None
}

/// `/usr/bin/<name>` from the Debian package `package`, or `None` (with a note) when it is not
/// installed; with `CI=true` its absence fails (scripts/test installs it).
pub fn system_bin(name: &str, package: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/bin").join(name);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing; scripts/test installs the Debian package {package}",
            p.display()
        );
    }
    eprintln!(
        "skipping: {} is not installed (Debian package {package})",
        p.display()
    );
    None
}

/// `promtool` (Debian package prometheus); see [`system_bin`].
pub fn promtool() -> Option<PathBuf> {
    system_bin("promtool", "prometheus")
}

/// The Prometheus server (Debian package prometheus); see [`system_bin`].
pub fn prometheus_bin() -> Option<PathBuf> {
    system_bin("prometheus", "prometheus")
}

/// A child process (a Prometheus, an Alertmanager…) killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A config with one simulated Storj node named `flaky`, polled, scraped and evaluated every
/// second; with `fault: Some((after, duration))` its polls fail from `after` for `duration`.
pub fn flaky_node_config(fault: Option<(&str, &str)>) -> String {
    let mut text = String::from(
        "global:
  poll_interval: 1s
  poll_timeout: 1s
  scrape_interval: 1s
host:
  capacity:
    cpu_cores: 4
    memory_bytes: 8GiB
    disk_bytes: 1TB
    bandwidth_bytes_per_second: 10MB
nodes:
  - name: flaky
    kind: sim
    sim:
      protocol: storj
      allocation:
        cpu_cores: 1
        memory_bytes: 1GiB
        disk_bytes: 100GB
        bandwidth_bytes_per_second: 1MB
",
    );
    if let Some((after, duration)) = fault {
        text.push_str(&format!(
            "      fault:\n        mode: error\n        after: {after}\n        duration: {duration}\n"
        ));
    }
    text
}

/// Optimization rules `text` with the top-level `interval:` (how often the controller plans)
/// set to `every`, so a test plans in seconds. Panics when the text has no such line.
pub fn with_planning_interval(text: &str, every: &str) -> String {
    let mut done = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !done && line.starts_with("interval:") {
            done = true;
            out.push_str(&format!("interval: {every}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        done,
        "the optimization rules have no top-level `interval:` line"
    );
    out
}

/// Polls `ok` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A running `depin-orcha run`. Killed (SIGKILL) when dropped.
pub struct Orcha {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the process logged so far arrives here, line by line.
    pub log: mpsc::Receiver<String>,
}

impl Orcha {
    /// Starts `depin-orcha run` with `args` plus a loopback port of its own choosing and
    /// waits until it logs its address.
    pub fn start(args: &[&str]) -> Orcha {
        Orcha::launch(Command::new(bin()), args)
    }

    /// [`Orcha::start`] through `cmd`: the binary, or a wrapper that runs it (`setpriv …
    /// depin-orcha`), with whatever working directory the test sets.
    pub fn launch(mut cmd: Command, args: &[&str]) -> Orcha {
        let mut child = cmd
            .arg("run")
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format",
                "logfmt",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start depin-orcha");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(addr) = line.split("address=").nth(1) {
                        let addr = addr
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .trim_matches('"');
                        if let Ok(addr) = addr.parse() {
                            return Orcha {
                                child,
                                addr,
                                log: rx,
                            };
                        }
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "depin-orcha did not report its address; it logged:\n{}",
            seen.join("\n")
        );
    }

    pub fn get(&self, path_and_query: &str) -> Response {
        http(self.addr, "GET", path_and_query, None)
    }

    /// Polls `/-/ready` until it answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = try_http(self.addr, "GET", "/-/ready", None) {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("depin-orcha at {} never became ready", self.addr);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "depin-orcha did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Orcha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<(&str, &str)>) -> Response {
    try_http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One request with `Connection: close`; `body` is `(content type, body)`.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> std::io::Result<Response> {
    try_http_with(addr, method, path, &[], body)
}

/// A POST of JSON with `Authorization: Bearer <token>` (the control API).
pub fn post_json_with_token(addr: SocketAddr, path: &str, token: &str, json: &str) -> Response {
    let auth = format!("Bearer {token}");
    try_http_with(
        addr,
        "POST",
        path,
        &[("Authorization", &auth)],
        Some(("application/json", json)),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// [`try_http`] with extra request headers.
pub fn try_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ct, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some((_, b)) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
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

/// The value of the first sample line of `family{...}` whose labels contain every `needle`.
pub fn metric_value(exposition: &str, family: &str, needles: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("depin-orcha-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

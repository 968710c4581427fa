//! Load on the real binary, loopback only: many keep-alive clients hit `/metrics`, an instant
//! query and a range query while the nodes are polled. Nothing may fail, and polling must keep
//! its 5 s cadence. Prints requests per second and latency percentiles.
//!
//! `LOAD_SECS` (default 5) and `LOAD_CLIENTS` (default 50) set the size; the README's numbers
//! come from `LOAD_SECS=30 LOAD_CLIENTS=200 cargo test --release --test load_http -- --nocapture`;
//! `LOAD_BIN` loads another build instead (a baseline measured under the same conditions).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PATHS: [&str; 3] = [
    "/metrics",
    "/api/v1/query?query=sum%20by%20(protocol)%20(rate(depin_earnings_usd_total%5B5m%5D))",
    "/api/v1/query_range?query=depin_usage_cpu_cores&start=-600&end=0&step=15",
];

/// One keep-alive connection; `None` on any transport error.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Client {
            r: BufReader::new(s),
        })
    }

    /// Status of one GET, reading the whole body.
    fn get(&mut self, path: &str) -> std::io::Result<u16> {
        write!(
            self.r.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: load\r\n\r\n"
        )?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body)?;
        Ok(status)
    }
}

fn polls(addr: SocketAddr) -> f64 {
    let m = http(addr, "GET", "/metrics", None).body;
    metric_value(
        &m,
        "depin_adapter_poll_duration_seconds_count",
        &["node=\"golem\""],
    )
    .unwrap_or(0.0)
}

#[test]
fn many_clients_get_answers_and_polling_keeps_its_cadence() {
    let secs = env_or("LOAD_SECS", 5);
    let clients = env_or("LOAD_CLIENTS", 50) as usize;
    let dir = temp_dir("load");
    // LOAD_BIN: another build to load (a baseline measured on the same machine at the same time).
    let binary = std::env::var_os("LOAD_BIN").map_or_else(bin, std::path::PathBuf::from);
    let orcha = Orcha::launch(
        std::process::Command::new(binary),
        &["--storage.path", dir.join("data").to_str().unwrap()],
    );
    orcha.wait_ready();
    // Range queries relative to now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let paths: Arc<Vec<String>> = Arc::new(
        PATHS
            .iter()
            .map(|p| {
                p.replace("start=-600", &format!("start={}", now - 600))
                    .replace("end=0", &format!("end={}", now + 3600))
            })
            .collect(),
    );
    let addr = orcha.addr;
    let polls_before = polls(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, paths) = (stop.clone(), paths.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = Vec::new();
                let mut c = match Client::connect(addr) {
                    Ok(c) => c,
                    Err(e) => return (lat, vec![format!("connect: {e}")]),
                };
                let mut k = i;
                while !stop.load(Ordering::Relaxed) {
                    let p = &paths[k % paths.len()];
                    k += 1;
                    let t = Instant::now();
                    match c.get(p) {
                        Ok(200) => lat.push(((k - 1) % paths.len(), t.elapsed())),
                        Ok(s) => errors.push(format!("{p}: {s}")),
                        Err(e) => {
                            errors.push(format!("{p}: {e}"));
                            match Client::connect(addr) {
                                Ok(n) => c = n,
                                Err(_) => break,
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let polls_after = polls(addr);
    let mut by_path: Vec<Vec<Duration>> = vec![Vec::new(); PATHS.len()];
    for (i, d) in &lat {
        by_path[*i].push(*d);
    }
    let mut lat: Vec<Duration> = lat.into_iter().map(|(_, d)| d).collect();
    lat.sort();
    let pct_of = |lat: &[Duration], p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let pct = |p: f64| pct_of(&lat, p);
    println!(
        "load: {clients} clients for {elapsed:.1}s: {} requests, {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors; golem polled {} times (5 s cadence)",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        errors.len(),
        polls_after - polls_before,
    );
    for (path, l) in ["/metrics", "instant query", "range query"]
        .iter()
        .zip(&mut by_path)
    {
        l.sort();
        println!(
            "  {path}: p50 {:.1} ms, p99 {:.1} ms",
            pct_of(l, 0.50).as_secs_f64() * 1000.0,
            pct_of(l, 0.99).as_secs_f64() * 1000.0
        );
    }
    assert!(
        errors.is_empty(),
        "{} failed requests, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(!lat.is_empty(), "no request answered");
    let expected = (elapsed / 5.0).floor() - 1.0;
    assert!(
        polls_after - polls_before >= expected,
        "polls fell behind under load: {} in {elapsed:.1}s",
        polls_after - polls_before
    );
}

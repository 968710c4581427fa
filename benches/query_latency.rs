//! Query latency against a real Prometheus holding the same data: `depin-orcha simulate
//! scenarios/steady.yml --days N --storage.path DIR` writes the demo's series (the depin-orcha
//! strategy's scrapes, recording rules and alerts) into DIR; `depin-orcha export --format
//! openmetrics` reads them out and `promtool tsdb create-blocks-from openmetrics` loads them into
//! Prometheus. `depin-orcha run --storage.path DIR` and Prometheus then serve the same history;
//! the same queries go over HTTP to both, and the ratio of the medians is printed (below 1.0:
//! depin-orcha is faster). Two groups: ten queries over the last hour (what dashboards and rules
//! ask all the time; goal: median ratio at most 0.6) and three over the whole history (goal:
//! each within 2x).
//!
//! `cargo bench --bench query_latency`. QUERY_BENCH_DAYS (default 15) sets the history,
//! QUERY_BENCH_POLL (default 60s) the simulated poll interval, QUERY_BENCH_REPS (default 30)
//! the repetitions per query, QUERY_BENCH_DIR (default: a temporary directory, removed at the
//! end) where the history is kept: a later run with the same days and poll interval reuses it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET over a fresh connection; returns the status and body length.
fn get(addr: SocketAddr, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw.len())
}

fn wait_ready(addr: SocketAddr) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        if TcpStream::connect(addr).is_ok() && get(addr, "/-/ready").0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{addr} never became ready");
}

/// The newest sample time (Unix seconds) of the simulated adapters, from `run`'s API.
fn newest_sample(addr: SocketAddr) -> i64 {
    let path = format!(
        "/api/v1/query?query={}",
        enc("max(max_over_time(timestamp(depin_adapter_up)[1d:1m]))")
    );
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    // The value is the quoted number after the time: ..."value":[<t>,"<v>"]...
    let v = body
        .rsplit_once("\"value\":[")
        .and_then(|(_, x)| x.split('"').nth(1))
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no newest sample in {body}"));
    v as i64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Simulates the history into `dir/orcha` and loads the same samples into `dir/prom`.
fn make_history(root: &Path, dir: &Path, days: f64, poll: &str) {
    let bin = env!("CARGO_BIN_EXE_depin-orcha");
    let orcha_data = dir.join("orcha");
    let prom_data = dir.join("prom");
    let t = Instant::now();
    let st = Command::new(bin)
        .arg("simulate")
        .arg(root.join("scenarios/steady.yml"))
        .args(["--days", &days.to_string(), "--poll-interval", poll])
        .arg("--storage.path")
        .arg(&orcha_data)
        .current_dir(root)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "depin-orcha simulate --storage.path failed");
    println!("simulate: {:.1} s", t.elapsed().as_secs_f64());
    let om = dir.join("samples.om");
    let t = Instant::now();
    let st = Command::new(bin)
        .args([
            "export",
            "--match",
            "{__name__=~\".+\"}",
            "--format",
            "openmetrics",
        ])
        .arg("--storage.path")
        .arg(&orcha_data)
        .stdout(std::fs::File::create(&om).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "depin-orcha export failed");
    println!("export: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let st = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&prom_data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "promtool create-blocks-from failed");
    println!(
        "promtool create-blocks-from: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(&om);
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !Path::new("/usr/bin/prometheus").exists() || !Path::new("/usr/bin/promtool").exists() {
        println!(
            "SKIP: needs /usr/bin/prometheus and /usr/bin/promtool (Debian package prometheus)"
        );
        return;
    }
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let days: f64 = env("QUERY_BENCH_DAYS", "15")
        .parse()
        .expect("QUERY_BENCH_DAYS");
    let poll = env("QUERY_BENCH_POLL", "60s");
    let reps: usize = env("QUERY_BENCH_REPS", "30")
        .parse()
        .expect("QUERY_BENCH_REPS");
    // QUERY_BENCH_DIR: keep the simulated history there and reuse it in later runs with the
    // same days and poll interval (simulating 15 days and loading them into Prometheus takes
    // minutes); without it, a fresh temporary directory that is removed at the end.
    let keep = std::env::var_os("QUERY_BENCH_DIR").map(PathBuf::from);
    let dir: PathBuf = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("depin-orcha-qbench-{}", std::process::id()))
    });
    let made = dir.join("made");
    let wanted = format!("days={days} poll={poll}\n");
    let reuse = keep.is_some() && std::fs::read_to_string(&made).ok().as_deref() == Some(&wanted);
    let orcha_data = dir.join("orcha");
    let prom_data = dir.join("prom");
    if !reuse {
        // Only what this bench writes there: the directory may be the caller's.
        for d in [&orcha_data, &prom_data] {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_file(&made);
    }
    std::fs::create_dir_all(&dir).unwrap();
    if reuse {
        println!("reusing the history in {}", dir.display());
    } else {
        make_history(root, &dir, days, &poll);
        std::fs::write(&made, wanted).unwrap();
    }

    // Both serve the same history; neither scrapes anything during the run.
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global: {scrape_interval: 1h}\n").unwrap();
    let pport = free_port();
    let _prom = Kill(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", prom_data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let empty = dir.join("empty.yml");
    std::fs::write(&empty, "host:\n  capacity: {cpu_cores: 1, memory_bytes: 1GiB, disk_bytes: 1GB, bandwidth_bytes_per_second: 1MB}\nnodes: []\n").unwrap();
    let oport = free_port();
    let _orcha = Kill(
        Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
            .args([
                "run",
                "--log.level",
                "warn",
                "--storage.retention.time",
                "36500d",
            ])
            .arg("--config.file")
            .arg(&empty)
            .arg("--storage.path")
            .arg(&orcha_data)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{oport}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let paddr: SocketAddr = format!("127.0.0.1:{pport}").parse().unwrap();
    let oaddr: SocketAddr = format!("127.0.0.1:{oport}").parse().unwrap();
    wait_ready(paddr);
    wait_ready(oaddr);

    // The simulated history ends when `simulate` ran: its newest sample is the queries' end.
    let end = newest_sample(oaddr);
    let hour = end - 3600;
    let q = |expr: &str, at: i64| format!("/api/v1/query?query={}&time={at}", enc(expr));
    let r = |expr: &str, from: i64, step: u32| {
        format!(
            "/api/v1/query_range?query={}&start={from}&end={end}&step={step}",
            enc(expr)
        )
    };
    let last_hour: Vec<(&str, String)> = vec![
        (
            "instant: one series",
            q(r#"depin_adapter_up{node="golem"}"#, end),
        ),
        (
            "instant: regex selector",
            q(r#"{__name__=~"depin_adapter_.*"}"#, end),
        ),
        (
            "instant: sum of rates 5m",
            q("sum by (node) (rate(depin_earnings_usd_total[5m]))", end),
        ),
        (
            "instant: count by name",
            q("count by (__name__) ({__name__=~\"depin_.+\"})", end),
        ),
        (
            "instant: max_over_time 1h",
            q(
                "max_over_time(depin_usage_bandwidth_bytes_per_second[1h])",
                end,
            ),
        ),
        (
            "instant: quantile_over_time 1h",
            q(
                "quantile_over_time(0.9, depin_usage_bandwidth_bytes_per_second[1h])",
                end,
            ),
        ),
        (
            "range 1h/15s: one series",
            r(r#"depin_adapter_up{node="golem"}"#, hour, 15),
        ),
        (
            "range 1h/60s: rate",
            r("rate(depin_earnings_usd_total[5m])", hour, 60),
        ),
        (
            "range 1h/60s: avg by node",
            r(
                "avg by (node) (depin_usage_bandwidth_bytes_per_second)",
                hour,
                60,
            ),
        ),
        (
            "range 1h/30s: const * gauge",
            r("2 * depin_usage_bandwidth_bytes_per_second", hour, 30),
        ),
    ];
    let whole = (days * 86400.0) as i64 - 3600;
    let history: Vec<(&str, String)> = vec![
        (
            "range all/1h: rate 1h",
            r(
                "sum by (node) (rate(depin_earnings_usd_total[1h]))",
                end - whole,
                3600,
            ),
        ),
        (
            "range all/1h: max_over_time 1h",
            r(
                "max_over_time(depin_usage_bandwidth_bytes_per_second[1h])",
                end - whole,
                3600,
            ),
        ),
        (
            "instant: max_over_time all",
            q(
                &format!("max_over_time(depin_usage_bandwidth_bytes_per_second[{whole}s])"),
                end,
            ),
        ),
    ];
    println!("query latency, {days} day(s) of simulated demo history (polls {poll} apart), {reps} reps, medians");
    let mut group_ratios = Vec::new();
    for (group, queries) in [("last hour", &last_hour), ("whole history", &history)] {
        println!();
        println!(
            "{:<34} {:>12} {:>12} {:>8}",
            group, "depin-orcha", "prometheus", "ratio"
        );
        let mut ratios = Vec::new();
        for (name, path) in queries.iter() {
            // Warm both, and check that they answer with data of similar size.
            let (os, olen) = get(oaddr, path);
            let (ps, plen) = get(paddr, path);
            assert!(os == 200 && ps == 200, "{name}: status {os} vs {ps}");
            assert!(
                olen > 150 && plen > 150,
                "{name}: empty answer ({olen} vs {plen} bytes)"
            );
            let mut o = Vec::new();
            let mut p = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                get(oaddr, path);
                o.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                get(paddr, path);
                p.push(t.elapsed().as_secs_f64());
            }
            let (om, pm) = (median(o), median(p));
            ratios.push(om / pm);
            println!(
                "{:<34} {:>10.2}ms {:>10.2}ms {:>8.2}",
                name,
                om * 1e3,
                pm * 1e3,
                om / pm
            );
        }
        group_ratios.push(ratios);
    }
    let hour_median = median(group_ratios[0].clone());
    let worst_history = group_ratios[1].iter().cloned().fold(0.0, f64::max);
    println!();
    println!(
        "last hour: median of the ratios {hour_median:.2} (goal ≤ 0.6: {})",
        if hour_median <= 0.6 { "met" } else { "NOT met" }
    );
    println!(
        "whole history: worst ratio {worst_history:.2} (goal ≤ 2.0: {})",
        if worst_history <= 2.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

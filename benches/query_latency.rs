//! Query latency against a real Prometheus holding the same data: the samples file that
//! `../shared/bench/gen-samples.py` writes is loaded into Prometheus with `promtool tsdb
//! create-blocks-from openmetrics` and into depin-orcha with `depin-orcha tsdb import` (block
//! files; `run` then holds the head's range in memory); the same queries go over HTTP to both,
//! and the ratio of the medians is printed (below 1.0: depin-orcha is faster). Two groups:
//! ten queries over the last hour (what dashboards and rules ask all the time; goal: median
//! ratio at most 0.6) and three over the whole history (goal: each within 2x).
//!
//! `cargo bench --bench query_latency`. QUERY_BENCH_DAYS (default 15) sets the data size,
//! QUERY_BENCH_REPS (default 30) the repetitions per query.

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

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("../shared/bench/gen-samples.py");
    if !script.exists() || !Path::new("/usr/bin/prometheus").exists() {
        println!("SKIP: needs ../shared/bench/gen-samples.py and /usr/bin/prometheus (Debian package prometheus)");
        return;
    }
    let days: f64 = std::env::var("QUERY_BENCH_DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15.0);
    let reps: usize = std::env::var("QUERY_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("depin-orcha-qbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let om = dir.join("samples.om");
    assert!(Command::new("python3")
        .arg(&script)
        .arg(&om)
        .args(["--days", &days.to_string()])
        .status()
        .unwrap()
        .success());

    let prom_data = dir.join("prom");
    let st = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&prom_data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "promtool create-blocks-from failed");
    let orcha_data = dir.join("orcha");
    let st = Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .args(["tsdb", "import"])
        .arg(&om)
        .arg("--storage.path")
        .arg(&orcha_data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "depin-orcha tsdb import failed");

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

    let start = 1_700_000_000i64;
    let end = start + (days * 86400.0) as i64 - 5;
    let hour = end - 3600;
    let q = |expr: &str, at: i64| format!("/api/v1/query?query={}&time={at}", enc(expr));
    let r = |expr: &str, from: i64, step: u32| {
        format!(
            "/api/v1/query_range?query={}&start={from}&end={end}&step={step}",
            enc(expr)
        )
    };
    let last_hour: Vec<(&str, String)> = vec![
        ("instant: one series", q("gauge3_m_7{p=\"x\"}", end)),
        (
            "instant: regex selector",
            q("{__name__=~\"counter_m_1.*\"}", end),
        ),
        (
            "instant: sum of two rates 5m",
            q("sum(rate(counter_m_1[5m]) + rate(counter_m_2[5m]))", end),
        ),
        (
            "instant: count over 50 series",
            q("count({__name__=~\"gauge3_m_.*\"} > 2)", end),
        ),
        (
            "instant: max_over_time 1h",
            q("max_over_time(gauge3_m_9[1h])", end),
        ),
        (
            "instant: quantile_over_time 1h",
            q("quantile_over_time(0.9, gauge3_m_3[1h])", end),
        ),
        ("range 1h/15s: one series", r("gauge3_m_7", hour, 15)),
        ("range 1h/60s: rate", r("rate(counter_m_5[5m])", hour, 60)),
        (
            "range 1h/60s: avg by name",
            r("avg by (__name__) ({__name__=~\"gauge3_m_1.*\"})", hour, 60),
        ),
        (
            "range 1h/30s: const * gauge",
            r("const_m_1 * on(p) gauge3_m_2", hour, 30),
        ),
    ];
    let whole = (days * 86400.0) as i64 - 3600;
    let history: Vec<(&str, String)> = vec![
        (
            "range all/1h: rate 1h",
            r("rate(counter_m_5[1h])", end - whole, 3600),
        ),
        (
            "range all/1h: max_over_time 1h",
            r("max_over_time(gauge3_m_9[1h])", end - whole, 3600),
        ),
        (
            "instant: max_over_time all",
            q(&format!("max_over_time(gauge3_m_9[{whole}s])"), end),
        ),
    ];
    println!("query latency, {days} day(s) of gen-samples data (150 series, 5 s apart), {reps} reps, medians");
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
    let _ = std::fs::remove_dir_all(&dir);
}

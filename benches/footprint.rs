//! Resident memory, CPU and start time of `depin-orcha run` on the embedded demo, with no
//! history and with days of it, against a real Prometheus (Debian package, /usr/bin/prometheus)
//! scraping the same instance every 5 s in the same run: the baseline an operator would
//! otherwise run beside their nodes.
//!
//! The history is made by `depin-orcha simulate scenarios/steady.yml --days N --storage.path
//! DIR` with the scenario's scrape interval set to the demo's 5 s, so the simulated days hold
//! what `run` itself would have stored; then `run --storage.path DIR` starts on it. Printed per
//! history: the time from start to `/-/ready`, peak RSS and CPU over the window, and a query over
//! the whole history. The ratios say whether memory and start time grow with the history.
//!
//! `cargo bench --bench footprint` (about 70 s). FOOTPRINT_SECS sets the window (default 60),
//! FOOTPRINT_HISTORY_DAYS the histories to try, comma-separated (default `0`; the README's
//! numbers: `0,2,15`, which simulates 17 days first, a few minutes).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn clk_tck() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// (utime + stime in seconds, resident bytes) from /proc.
fn cpu_and_rss(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / clk_tck(), rss_kb * 1024))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET; the status and body, or None when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let status = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Simulates `days` of the steady scenario, scraped every 5 s like the demo, into `data`.
fn simulate(dir: &Path, data: &Path, days: u32) -> f64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let steady = std::fs::read_to_string(root.join("scenarios/steady.yml")).unwrap();
    let line = steady
        .lines()
        .find(|l| l.starts_with("scrape_interval:"))
        .expect("the steady scenario sets scrape_interval");
    let scenario = dir.join("steady-5s.yml");
    std::fs::write(&scenario, steady.replace(line, "scrape_interval: 5s")).unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
        .current_dir(root)
        .arg("simulate")
        .arg(&scenario)
        .args(["--days", &days.to_string(), "--storage.path"])
        .arg(data)
        .output()
        .expect("run simulate");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

struct Row {
    days: u32,
    sim_s: f64,
    stored: u64,
    ready_s: f64,
    peak_rss: u64,
    cpu_pct: f64,
    query_ms: f64,
    query_samples: f64,
}

fn measure(days: u32, secs: u64, with_prometheus: bool) -> (Row, Option<(u64, f64)>) {
    let dir = std::env::temp_dir().join(format!(
        "depin-orcha-footprint-{}-{days}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let sim_s = if days > 0 {
        simulate(&dir, &data, days)
    } else {
        0.0
    };
    let stored = dir_bytes(&data);
    let port = free_port();
    let started = Instant::now();
    let orcha = Kill(
        Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "run",
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log.level",
                "warn",
            ])
            .arg("--storage.path")
            .arg(&data)
            .stderr(Stdio::null())
            .spawn()
            .expect("start depin-orcha"),
    );
    while get(port, "/-/ready").is_none_or(|r| r.0 != 200) {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready_s = started.elapsed().as_secs_f64();
    let prom = (with_prometheus && Path::new("/usr/bin/prometheus").exists()).then(|| {
            let cfg = dir.join("prometheus.yml");
            std::fs::write(
                &cfg,
                format!("global: {{scrape_interval: 5s}}\nscrape_configs:\n  - job_name: depin-orcha\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"),
            )
            .unwrap();
            Kill(
                Command::new("/usr/bin/prometheus")
                    .arg(format!("--config.file={}", cfg.display()))
                    .arg(format!("--storage.tsdb.path={}", dir.join("prom").display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start prometheus"),
            )
        });
    // Let both settle before the window opens.
    std::thread::sleep(Duration::from_secs(5));
    let o0 = cpu_and_rss(orcha.0.id()).expect("depin-orcha is running");
    let p0 = prom.as_ref().and_then(|p| cpu_and_rss(p.0.id()));
    let t0 = Instant::now();
    let (mut o_peak, mut p_peak) = (0u64, 0u64);
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some((_, r)) = cpu_and_rss(orcha.0.id()) {
            o_peak = o_peak.max(r);
        }
        if let Some((_, r)) = prom.as_ref().and_then(|p| cpu_and_rss(p.0.id())) {
            p_peak = p_peak.max(r);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let o1 = cpu_and_rss(orcha.0.id()).expect("depin-orcha still running");
    let o_cpu = (o1.0 - o0.0) / wall * 100.0;
    let baseline = prom.as_ref().zip(p0).and_then(|(p, p0)| {
        let p1 = cpu_and_rss(p.0.id())?;
        Some((p_peak, (p1.0 - p0.0) / wall * 100.0))
    });
    // It really worked during the window: four nodes up.
    let (_, body) = get(port, "/api/v1/query?query=sum(depin_adapter_up)").unwrap();
    assert!(body.contains("\"4\""), "not 4 nodes up: {body}");
    // One query over the whole history, from the block files.
    let q = format!(
        "/api/v1/query?query={}",
        enc(&format!(
            "count_over_time(depin_adapter_up{{node=\"golem\"}}[{}d])",
            days + 1
        ))
    );
    let t = Instant::now();
    let (status, body) = get(port, &q).unwrap();
    let query_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(status, 200, "{body}");
    let query_samples = body
        .rsplit("\"")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    drop(orcha);
    let _ = std::fs::remove_dir_all(&dir);
    (
        Row {
            days,
            sim_s,
            stored,
            ready_s,
            peak_rss: o_peak,
            cpu_pct: o_cpu,
            query_ms,
            query_samples,
        },
        baseline,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there are no tests here.
    }
    let secs: u64 = std::env::var("FOOTPRINT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let histories: Vec<u32> = std::env::var("FOOTPRINT_HISTORY_DAYS")
        .unwrap_or_else(|_| "0".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    let mut baseline = None;
    for (i, &days) in histories.iter().enumerate() {
        let (row, b) = measure(days, secs, i == 0);
        baseline = baseline.or(b);
        rows.push(row);
    }

    println!("footprint over {secs} s, demo config (4 simulated nodes, 5 s polls)");
    println!(
        "{:<24} {:>9} {:>10} {:>8} {:>12} {:>8} {:>22}",
        "process", "sim s", "stored MB", "ready s", "peak RSS MB", "CPU %", "query whole history"
    );
    for r in &rows {
        println!(
            "{:<24} {:>9.1} {:>10.1} {:>8.2} {:>12.1} {:>8.2} {:>12.1} ms, {:>6} samples",
            format!("depin-orcha, {} d history", r.days),
            r.sim_s,
            r.stored as f64 / 1e6,
            r.ready_s,
            r.peak_rss as f64 / 1e6,
            r.cpu_pct,
            r.query_ms,
            r.query_samples
        );
    }
    if let Some((p_peak, p_cpu)) = baseline {
        println!(
            "{:<24} {:>9} {:>10} {:>8} {:>12.1} {:>8.2}",
            "prometheus 2.42 (baseline)",
            "",
            "",
            "",
            p_peak as f64 / 1e6,
            p_cpu
        );
        let first = &rows[0];
        println!(
            "ratio depin-orcha ({} d) / prometheus: RSS {:.2}, CPU {:.2}",
            first.days,
            first.peak_rss as f64 / p_peak as f64,
            first.cpu_pct / p_cpu.max(1e-9)
        );
    } else {
        println!("(no /usr/bin/prometheus: baseline skipped)");
    }
    if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
        if rows.len() > 1 {
            println!(
                "ratio {} d / {} d history: RSS {:.2}, ready {:.2}",
                b.days,
                a.days,
                b.peak_rss as f64 / a.peak_rss as f64,
                b.ready_s / a.ready_s
            );
        }
    }
    for r in &rows {
        let goal = if r.days == 0 { 20_000_000 } else { 40_000_000 };
        let ok = r.peak_rss < goal && r.ready_s < 2.0;
        println!(
            "goal with {} d history (RSS < {} MB, ready < 2 s): {}",
            r.days,
            goal / 1_000_000,
            if ok { "met" } else { "NOT met" }
        );
    }
}

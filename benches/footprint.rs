//! Resident memory and CPU of `depin-orcha run` on the embedded demo over a minute, against a
//! real Prometheus (Debian package, /usr/bin/prometheus) scraping the same instance every 5 s
//! in the same run: the baseline an operator would otherwise run beside their nodes.
//!
//! `cargo bench --bench footprint` (about 70 s). Set FOOTPRINT_SECS to change the window.

use std::io::Read;
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

fn main() {
    let secs: u64 = std::env::var("FOOTPRINT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("depin-orcha-footprint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let orcha = Kill(
        Command::new(env!("CARGO_BIN_EXE_depin-orcha"))
            .args([
                "run",
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log.level",
                "warn",
            ])
            .arg("--storage.path")
            .arg(dir.join("data"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start depin-orcha"),
    );
    let prom = std::path::Path::new("/usr/bin/prometheus").exists().then(|| {
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
    // Let both start and settle before the window opens.
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
    // A check that it really worked during the window: it answers with the four nodes up.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Write;
    s.write_all(b"GET /api/v1/query?query=sum(depin_adapter_up) HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(
        body.contains("\"4\""),
        "depin-orcha did not report 4 nodes up: {body}"
    );

    println!("footprint over {wall:.0} s, demo config (4 simulated nodes, 5 s polls)");
    println!(
        "{:<28} {:>12} {:>14}",
        "process", "peak RSS MB", "CPU % of core"
    );
    println!(
        "{:<28} {:>12.1} {:>14.2}",
        "depin-orcha run",
        o_peak as f64 / 1e6,
        o_cpu
    );
    if let (Some(p), Some(p0)) = (prom.as_ref(), p0) {
        if let Some(p1) = cpu_and_rss(p.0.id()) {
            let p_cpu = (p1.0 - p0.0) / wall * 100.0;
            println!(
                "{:<28} {:>12.1} {:>14.2}",
                "prometheus 2.42 (baseline)",
                p_peak as f64 / 1e6,
                p_cpu
            );
            println!(
                "ratio depin-orcha / prometheus: RSS {:.2}, CPU {:.2}",
                o_peak as f64 / p_peak as f64,
                o_cpu / p_cpu.max(1e-9)
            );
        }
    } else {
        println!("(no /usr/bin/prometheus: baseline skipped)");
    }
    let goal_ok = o_peak < 20_000_000 && o_cpu < 1.0;
    println!(
        "goal (< 20 MB, < 1 % of one core): {}",
        if goal_ok { "met" } else { "NOT met" }
    );
}

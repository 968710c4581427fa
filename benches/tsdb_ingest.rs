//! Ingest throughput and resident memory of the tsdb at 10,000 series, scraped every 5 s, next
//! to a baseline measured in the same run: appending `(i64, f64)` to a plain `Vec` per series
//! (no labels lookup, no compression, no durability).
//!
//! Each variant runs in a child process of its own so that resident memory is not blurred by
//! what the allocator kept from the previous one. Environment: `TSDB_INGEST_SERIES` (default
//! 10000), `TSDB_INGEST_SCRAPES` (default 700, just under an hour, so
//! heads are partly filled as they are at any moment in a running process).
//!
//! Run: `cargo bench --bench tsdb_ingest`.

use std::process::Command;
use std::time::Instant;

use depin_orcha::labels::Labels;
use depin_orcha::tsdb::{Db, Options};

const PHASE_VAR: &str = "TSDB_INGEST_PHASE";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Value of series `i` at scrape `k`, shaped like a host's metrics: a third counters with random
/// increments, a third gauges with three decimals, a third constants.
struct Gen {
    state: u64,
    counters: Vec<f64>,
}

impl Gen {
    fn next(&mut self) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }
    fn value(&mut self, i: usize, k: usize) -> f64 {
        match i % 3 {
            0 => {
                let r = self.next();
                self.counters[i] += r * 0.001;
                self.counters[i]
            }
            1 => ((2.0 + (k as f64 / 720.0).sin() + self.next() * 0.1) * 1000.0).round() / 1000.0,
            _ => 1.0,
        }
    }
}

fn child(phase: &str) {
    let n = env_usize("TSDB_INGEST_SERIES", 10_000);
    let scrapes = env_usize("TSDB_INGEST_SCRAPES", 700);
    let labels: Vec<Labels> = (0..n)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("depin_bench_metric_{}", i % 50)),
                (
                    "protocol",
                    ["storj", "golem", "streamr", "grass"][i % 4].to_string(),
                ),
                ("instance", format!("node-{i}")),
            ])
        })
        .collect();
    let mut gen = Gen {
        state: 1,
        counters: vec![0.0; n],
    };
    let t0 = 1_700_000_000_000i64;
    let tmp = tempfile::tempdir().expect("temp dir");
    let rss_before = rss_bytes();
    let mut elapsed = 0.0;
    match phase {
        "baseline" => {
            let mut store: Vec<Vec<(i64, f64)>> = vec![Vec::new(); n];
            for k in 0..scrapes {
                let vals: Vec<f64> = (0..n).map(|i| gen.value(i, k)).collect();
                let start = Instant::now();
                for (i, v) in vals.into_iter().enumerate() {
                    store[i].push((t0 + k as i64 * 5000, v));
                }
                elapsed += start.elapsed().as_secs_f64();
            }
            std::hint::black_box(&store);
            // Measured while the store is alive.
            let rss = rss_bytes();
            println!(
                "RESULT {phase} {} {elapsed} {} ",
                n * scrapes,
                rss.saturating_sub(rss_before)
            );
        }
        "ours" | "ours+wal" => {
            let opts = Options {
                path: (phase == "ours+wal").then(|| tmp.path().to_path_buf()),
                ..Options::default()
            };
            let db = Db::open(opts).expect("open");
            let mut batch: Vec<(Labels, i64, f64)> =
                labels.iter().map(|l| (l.clone(), 0, 0.0)).collect();
            for k in 0..scrapes {
                for (i, s) in batch.iter_mut().enumerate() {
                    s.1 = t0 + k as i64 * 5000;
                    s.2 = gen.value(i, k);
                }
                let start = Instant::now();
                let r = db.append_batch(&batch).expect("append");
                elapsed += start.elapsed().as_secs_f64();
                assert_eq!(r.appended, n);
            }
            drop(batch);
            let st = db.stats();
            let extra = format!(
                "held {:.1} MB (chunks {:.1} + heads {:.1} + index {:.1}), {:.2} B/sample",
                st.total_bytes as f64 / 1e6,
                (st.chunk_bytes + st.chunk_meta_bytes) as f64 / 1e6,
                st.head_bytes as f64 / 1e6,
                st.index_bytes as f64 / 1e6,
                st.bytes_per_sample
            );
            std::hint::black_box(&db);
            let rss = rss_bytes();
            println!(
                "RESULT {phase} {} {elapsed} {} {extra}",
                n * scrapes,
                rss.saturating_sub(rss_before)
            );
        }
        _ => panic!("unknown phase {phase}"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there are no tests here.
    }
    if let Ok(phase) = std::env::var(PHASE_VAR) {
        child(&phase);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!(
        "{} series, {} scrapes 5 s apart; each variant in its own process",
        env_usize("TSDB_INGEST_SERIES", 10_000),
        env_usize("TSDB_INGEST_SCRAPES", 700)
    );
    let mut rows = Vec::new();
    for phase in ["baseline", "ours", "ours+wal"] {
        let out = Command::new(&exe)
            .env(PHASE_VAR, phase)
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("RESULT ")) else {
            println!("{phase}: failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        let f: Vec<&str> = line.splitn(6, ' ').collect();
        let samples: f64 = f[2].parse().unwrap_or(0.0);
        let secs: f64 = f[3].parse().unwrap_or(f64::NAN);
        let rss: f64 = f[4].parse().unwrap_or(0.0);
        rows.push((
            phase,
            samples / secs,
            rss,
            samples,
            f.get(5).unwrap_or(&"").to_string(),
        ));
    }
    let Some(base) = rows.first().map(|r| (r.1, r.2)) else {
        return;
    };
    println!();
    println!(
        "{:<10} {:>14} {:>10} {:>12} {:>10} {:>10}  notes",
        "variant", "samples/s", "vs base", "RSS MB", "vs base", "B/sample"
    );
    for (phase, rate, rss, samples, note) in &rows {
        println!(
            "{phase:<10} {rate:>14.0} {:>9.2}x {:>12.1} {:>9.2}x {:>10.2}  {note}",
            rate / base.0,
            rss / 1e6,
            rss / base.1,
            rss / samples
        );
    }
}

//! Remote write throughput and wire size, against baselines measured in the same run:
//!
//! 1. Encode: samples per second turned into snappy-compressed `WriteRequest`s of 2000
//!    samples on one core, and bytes per sample compressed vs the uncompressed protobuf (the
//!    in-process baseline: what a sender without compression would put on the wire).
//! 2. Push: the whole path (read the Db, relabel, queue on disk with fsync, read back, send
//!    over HTTP to a local sink that answers 204) with the sender on one core, in samples per
//!    second, and bytes on the wire per sample.
//! 3. Catch-up after a 10-minute outage: 10 minutes of `RW_BENCH_SERIES` series (default
//!    10,000) scraped every 5 s are queued at once, then drained; time to drain, next to the
//!    10 minutes they took to accumulate.
//!
//! Run: `cargo bench --bench remote_write_push`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use depin_orcha::labels::Labels;
use depin_orcha::remote_write::{proto, RemoteWriter};
use depin_orcha::tsdb::Db;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Label sets shaped like a host's series: a metric name out of 50, node and protocol labels.
fn series(n: usize) -> Vec<Labels> {
    (0..n)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("depin_metric_{}_total", i % 50)),
                ("node", format!("node-{}", i / 50 % 40)),
                (
                    "protocol",
                    ["storj", "golem", "streamr", "grass"][i % 4].to_string(),
                ),
                ("instance", format!("i{}", i / 2000)),
            ])
        })
        .collect()
}

/// Counters with small random increments, as earnings and byte counters move.
fn value(i: usize, k: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add((k as u64).wrapping_mul(1442695040888963407));
    (k as f64) * 10.0 + ((x >> 33) % 1000) as f64 / 1000.0
}

/// A sink on its own thread and runtime: reads each body and answers 204.
fn sink() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send addr");
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(Full::new(Bytes::new()))
                                .expect("response"),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("sink address")
}

fn metric(reg: &prometheus::Registry, name: &str) -> f64 {
    reg.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().value()))
        .sum()
}

fn encode_bench(labels: &[Labels]) {
    let scrapes = 20;
    let mut raw_bytes = 0usize;
    let mut wire_bytes = 0usize;
    let mut samples = 0usize;
    let start = Instant::now();
    for k in 0..scrapes {
        for chunk in labels.chunks(2000).enumerate() {
            let (c, ls) = chunk;
            let req = proto::WriteRequest {
                timeseries: ls
                    .iter()
                    .enumerate()
                    .map(|(j, l)| {
                        proto::time_series(
                            l,
                            [(1_700_000_000_000 + k as i64 * 5000, value(c * 2000 + j, k))],
                        )
                    })
                    .collect(),
            };
            let raw = proto::encode(&req);
            let z = proto::compress(&raw).expect("compress");
            raw_bytes += raw.len();
            wire_bytes += z.len();
            samples += ls.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encode+compress (one core):   {:>12.0} samples/s",
        samples as f64 / secs
    );
    println!(
        "bytes per sample:             {:>12.1} uncompressed protobuf (baseline), {:.1} snappy on the wire: ratio {:.3}",
        raw_bytes as f64 / samples as f64,
        wire_bytes as f64 / samples as f64,
        wire_bytes as f64 / raw_bytes as f64
    );
}

/// Appends `scrapes` scrapes of `labels` every 5 s, queueing each as it is stored, then
/// drains the queue to the sink; returns (queue seconds, drain seconds, samples, wire bytes).
fn push(labels: &[Labels], scrapes: usize, addr: SocketAddr) -> (f64, f64, u64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::in_memory());
    let t0 = now_ms() + 1000;
    let text = format!(
        "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nremote_write:\n  - url: http://{addr}/api/v1/write\n    name: sink\n    queue_config: {{capacity: 100000000, batch_send_deadline: 50ms}}\n"
    );
    let cfg = depin_orcha::config::parse_str(&text, "bench.yml").expect("config");
    let reg = prometheus::Registry::new();
    let ext = Labels::from_pairs([("host", "bench-1")]);
    // The sender runs on one core: a current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let w = RemoteWriter::new(&cfg.remote_write, &ext, db.clone(), dir.path(), &reg)
        .expect("writer")
        .with_read_interval(Duration::from_secs(3600));
    // Steady state queues each scrape as it comes (one request per scrape batch); an outage
    // queues nothing new while the remote is away, but the queue then holds the scrapes one
    // after the other just the same.
    let mut queued = 0.0;
    let mut n = 0;
    for k in 0..scrapes {
        let batch: Vec<(Labels, i64, f64)> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), t0 + k as i64 * 5000, value(i, k)))
            .collect();
        db.append_batch(&batch).expect("append");
        let start = Instant::now();
        n += w.read_once().expect("read");
        queued += start.elapsed().as_secs_f64();
    }
    assert_eq!(n, labels.len() * scrapes);
    let start = Instant::now();
    rt.block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(w.run(rx));
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if metric(&reg, "depin_remote_write_samples_total") as u64 >= n as u64 {
                break;
            }
        }
        let _ = stop.send(true);
        let _ = task.await;
    });
    let drained = start.elapsed().as_secs_f64();
    let bytes = metric(&reg, "depin_remote_write_bytes_total");
    (queued, drained, n as u64, bytes / n as f64)
}

fn main() {
    let n = env_usize("RW_BENCH_SERIES", 10_000);
    let labels = series(n);
    println!("remote write, {n} series");
    encode_bench(&labels);
    let addr = sink();

    let (q, d, samples, bps) = push(&labels[..n.min(2000)], 30, addr);
    println!(
        "push end to end (one core):   {:>12.0} samples/s (queue {:.0}/s incl. fsync, send {:.0}/s), {bps:.1} bytes/sample on the wire",
        samples as f64 / (q + d),
        samples as f64 / q,
        samples as f64 / d
    );

    // 10 minutes at one scrape per 5 s.
    let (q, d, samples, _) = push(&labels, 120, addr);
    println!(
        "catch-up after a 10 min outage: {samples} samples queued in {q:.2} s, drained in {d:.2} s: {:.0}x faster than they accumulated",
        600.0 / d
    );
}

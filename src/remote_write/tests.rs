//! The remote writer against an in-process receiver that decodes what it gets and answers
//! with a status the test chooses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;
use crate::config::parse_str;
use crate::tsdb::{is_stale_nan, stale_nan};

/// What the receiver saw: series (labels text) → samples.
#[derive(Default)]
struct Received {
    series: BTreeMap<String, Vec<(i64, f64)>>,
    requests: usize,
    headers_ok: bool,
    auth: Option<String>,
}

struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Received>>,
    status: Arc<AtomicU16>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Received::default()));
    let status = Arc::new(AtomicU16::new(204));
    let (g, st) = (got.clone(), status.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (g, st) = (g.clone(), st.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (g, st) = (g.clone(), st.clone());
                    async move {
                        let h = req.headers();
                        let headers_ok = h.get("content-encoding").is_some_and(|v| v == "snappy")
                            && h.get("content-type")
                                .is_some_and(|v| v == "application/x-protobuf")
                            && h.get("x-prometheus-remote-write-version")
                                .is_some_and(|v| v == "0.1.0");
                        let auth = h
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let code = st.load(Ordering::SeqCst);
                        if code == 204 {
                            let wr = proto::decode(&proto::decompress(&body).unwrap()).unwrap();
                            let mut r = lock(&g);
                            r.requests += 1;
                            r.headers_ok = headers_ok;
                            r.auth = auth;
                            for ts in wr.timeseries {
                                let key = ts
                                    .labels
                                    .iter()
                                    .map(|l| format!("{}={}", l.name, l.value))
                                    .collect::<Vec<_>>()
                                    .join(",");
                                r.series
                                    .entry(key)
                                    .or_default()
                                    .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
                            }
                        }
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Receiver { addr, got, status }
}

fn configs(addr: SocketAddr, extra: &str) -> Vec<RemoteWriteConfig> {
    let queue = if extra.contains("queue_config") {
        ""
    } else {
        "    queue_config: {batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 50ms, max_samples_per_send: 5}\n"
    };
    let text = format!(
        "host: {{capacity: {{disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}}}\nremote_write:\n  - url: http://{addr}/api/v1/write\n    name: central\n{queue}{extra}"
    );
    parse_str(&text, "t.yml")
        .unwrap_or_else(|e| panic!("{e}"))
        .remote_write
}

fn l(name: &str, node: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("node", node)])
}

fn metric(reg: &Registry, name: &str) -> f64 {
    for f in reg.gather() {
        if f.name() == name {
            let m = &f.get_metric()[0];
            return if f.get_field_type() == prometheus::proto::MetricType::COUNTER {
                m.get_counter().value()
            } else {
                m.get_gauge().value()
            };
        }
    }
    panic!("no {name}")
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 4s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_new_samples_with_external_labels_relabelling_and_stale_markers() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::in_memory());
    let t0 = now_ms() + 1000;
    // Before the writer exists: history that is not pushed.
    db.append(&l("old", "a"), t0 - 10_000, 1.0).unwrap();
    let reg = Registry::new();
    let cfg = configs(
        rx.addr,
        "    basic_auth: {username: u, password: p}\n    write_relabel_configs:\n      - {source_labels: [__name__], regex: dropped, action: drop}\n",
    );
    let ext = Labels::from_pairs([("host", "h1"), ("node", "ignored")]);
    let w = RemoteWriter::new(&cfg, &ext, db.clone(), dir.path(), &reg)
        .unwrap()
        .with_read_interval(Duration::from_millis(20));
    for i in 0..7 {
        db.append_batch(&[
            (l("m", "a"), t0 + i * 1000, i as f64),
            (l("dropped", "a"), t0 + i * 1000, 0.0),
        ])
        .unwrap();
    }
    db.append(&l("m", "a"), t0 + 7000, stale_nan()).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    let got = rx.got.clone();
    wait_until(|| lock(&got).series.values().map(Vec::len).sum::<usize>() >= 8).await;
    // A late sample of a series, below the newest timestamp of another: still found.
    db.append(&l("late", "b"), t0 + 6500, 3.0).unwrap();
    wait_until(|| lock(&got).series.len() >= 2).await;
    let _ = stop.send(true);
    task.await.unwrap();
    let r = lock(&rx.got);
    assert!(r.headers_ok);
    assert_eq!(
        r.auth.as_deref(),
        Some(
            "Basic dV9w"
                .replace("dV9w", &client::base64(b"u:p"))
                .as_str()
        )
    );
    let keys: Vec<&String> = r.series.keys().collect();
    // The series' own node label wins over the external one; dropped and old are not sent.
    assert_eq!(
        keys,
        ["__name__=late,host=h1,node=b", "__name__=m,host=h1,node=a"]
    );
    let m = &r.series["__name__=m,host=h1,node=a"];
    assert_eq!(m.len(), 8, "{m:?}");
    assert_eq!(m[3], (t0 + 3000, 3.0));
    assert!(is_stale_nan(m[7].1));
    // max_samples_per_send 5: at least two requests for 9 samples.
    assert!(r.requests >= 2);
    assert_eq!(metric(&reg, "depin_remote_write_samples_total"), 9.0);
    assert_eq!(metric(&reg, "depin_remote_write_queue_samples"), 0.0);
    assert!(metric(&reg, "depin_remote_write_bytes_total") > 0.0);
    assert!(metric(&reg, "depin_remote_write_last_send_timestamp_seconds") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_and_drops_4xx() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::in_memory());
    let reg = Registry::new();
    let w = RemoteWriter::new(
        &configs(rx.addr, ""),
        &Labels::empty(),
        db.clone(),
        dir.path(),
        &reg,
    )
    .unwrap()
    .with_read_interval(Duration::from_millis(20));
    rx.status.store(503, Ordering::SeqCst);
    let t0 = now_ms();
    db.append(&l("m", "a"), t0 + 1000, 1.0).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    wait_until(|| metric(&reg, "depin_remote_write_retried_samples_total") >= 3.0).await;
    assert_eq!(metric(&reg, "depin_remote_write_queue_samples"), 1.0);
    rx.status.store(204, Ordering::SeqCst);
    wait_until(|| metric(&reg, "depin_remote_write_samples_total") == 1.0).await;
    rx.status.store(400, Ordering::SeqCst);
    db.append(&l("m", "a"), t0 + 2000, 2.0).unwrap();
    wait_until(|| metric(&reg, "depin_remote_write_failed_samples_total") == 1.0).await;
    wait_until(|| metric(&reg, "depin_remote_write_queue_samples") == 0.0).await;
    let _ = stop.send(true);
    task.await.unwrap();
    assert_eq!(
        lock(&rx.got).series["__name__=m,node=a"],
        [(t0 + 1000, 1.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_samples_go_out_after_a_restart() {
    let rx = receiver().await;
    rx.status.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::in_memory());
    let t0 = now_ms();
    {
        let reg = Registry::new();
        let w = RemoteWriter::new(
            &configs(rx.addr, ""),
            &Labels::empty(),
            db.clone(),
            dir.path(),
            &reg,
        )
        .unwrap();
        db.append(&l("m", "a"), t0 + 1000, 1.0).unwrap();
        db.append(&l("m", "a"), t0 + 2000, 2.0).unwrap();
        assert_eq!(w.read_once().unwrap(), 2);
        // Nothing new: the cursor holds.
        assert_eq!(w.read_once().unwrap(), 0);
        assert_eq!(w.pending_samples(), 2);
    }
    db.append(&l("m", "a"), t0 + 3000, 3.0).unwrap();
    rx.status.store(204, Ordering::SeqCst);
    let reg = Registry::new();
    let w = RemoteWriter::new(
        &configs(rx.addr, ""),
        &Labels::empty(),
        db.clone(),
        dir.path(),
        &reg,
    )
    .unwrap()
    .with_read_interval(Duration::from_millis(20));
    assert_eq!(w.pending_samples(), 2);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    let got = rx.got.clone();
    wait_until(|| lock(&got).series.values().map(Vec::len).sum::<usize>() >= 3).await;
    let _ = stop.send(true);
    task.await.unwrap();
    assert_eq!(
        lock(&rx.got).series["__name__=m,node=a"],
        [(t0 + 1000, 1.0), (t0 + 2000, 2.0), (t0 + 3000, 3.0)]
    );
}

#[test]
fn over_capacity_counts_dropped_samples() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::in_memory());
    let reg = Registry::new();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = configs(
        addr,
        "    queue_config: {capacity: 4, max_samples_per_send: 2}\n",
    );
    let w = RemoteWriter::new(&cfg, &Labels::empty(), db.clone(), dir.path(), &reg).unwrap();
    let t0 = now_ms();
    for i in 0..6 {
        db.append(&l("m", &format!("n{i}")), t0 + 1000, 1.0)
            .unwrap();
    }
    w.read_once().unwrap();
    assert_eq!(w.pending_samples(), 4);
    assert_eq!(
        metric(&reg, "depin_remote_write_dropped_samples_total"),
        2.0
    );
}

#[test]
fn no_remotes_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = RemoteWriter::new(
        &[],
        &Labels::empty(),
        Arc::new(Db::in_memory()),
        dir.path(),
        &Registry::new(),
    )
    .unwrap();
    assert!(w.is_empty());
    assert_eq!(w.read_once().unwrap(), 0);
    assert!(!dir.path().join("remote_write").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_hanging_remote() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::in_memory());
    let reg = Registry::new();
    let cfg = configs(addr, "    remote_timeout: 10m\n");
    let w = RemoteWriter::new(&cfg, &Labels::empty(), db.clone(), dir.path(), &reg)
        .unwrap()
        .with_read_interval(Duration::from_millis(20));
    db.append(&l("m", "a"), now_ms() + 1000, 1.0).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let _ = stop.send(true);
    task.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // Still queued for the next start.
    let w = RemoteWriter::new(&cfg, &Labels::empty(), db, dir.path(), &Registry::new()).unwrap();
    assert_eq!(w.pending_samples(), 1);
}

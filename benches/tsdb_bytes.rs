//! Bytes per sample of the tsdb's chunks on the data `shared/bench/gen-samples.py` writes
//! (counters with random increments, gauges with three decimals, constants, 5 s apart), next to
//! baselines measured in the same run on the same file:
//!
//! * plain Gorilla XOR chunks of 120 samples, as Prometheus' head builds them (in process);
//! * a real Prometheus: `promtool tsdb create-blocks-from openmetrics`, summing `*/chunks/*`;
//! * VictoriaMetrics: import through `/api/v1/import/prometheus` (millisecond timestamps), force
//!   flush and merge, then `vm_data_size_bytes{type=~"storage/.*"}` from its `/metrics`.
//!
//! The on-disk rows are the block files of a persistent database the file is imported into.
//!
//! Tools that are missing are skipped with a message. Environment: `TSDB_BENCH_DAYS` (default 2,
//! the generator's default), `TSDB_BENCH_FILE` (use an existing file instead of generating).
//!
//! Run: `cargo bench --bench tsdb_bytes`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use depin_orcha::tsdb::{import_openmetrics, xor, Db, Options, Queryable};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there are no tests here.
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some((file, what)) = input_file(tmp.path()) else {
        return;
    };
    println!("data: {what}");

    let t0 = Instant::now();
    let db = Db::in_memory();
    let f = std::fs::File::open(&file).expect("open input");
    let imported = import_openmetrics(BufReader::new(f), &db).expect("import");
    let import_s = t0.elapsed().as_secs_f64();
    let samples = imported.samples as f64;
    let live = db.stats();
    db.seal_heads();
    let sealed = db.stats();
    println!(
        "imported {} samples of {} series in {:.1} s ({:.2} M samples/s)",
        imported.samples,
        imported.series,
        import_s,
        samples / import_s / 1e6
    );

    let mut rows: Vec<(String, Option<f64>, String)> = Vec::new();
    rows.push((
        "depin-orcha chunks (all heads sealed)".into(),
        Some(sealed.chunk_bytes as f64 / samples),
        format!("{} chunks, {} B", sealed.chunks, sealed.chunk_bytes),
    ));
    rows.push((
        "depin-orcha as held after import".into(),
        Some((live.chunk_bytes + live.head_bytes) as f64 / samples),
        format!(
            "chunks {} B + open heads {} B",
            live.chunk_bytes, live.head_bytes
        ),
    ));
    rows.push((
        "  + per-chunk bookkeeping".into(),
        Some(live.bytes_per_sample),
        format!("{} B of chunk structs", live.chunk_meta_bytes),
    ));

    // The same samples as depin-orcha keeps them on disk: block files of 2 h periods, each
    // series' period re-encoded as one chunk, with its checksum and index entry.
    let disk_dir = tmp.path().join("orcha");
    let disk = Db::open(Options {
        path: Some(disk_dir.clone()),
        retention_ms: i64::MAX / 4,
        sync_wal: false,
        ..Options::default()
    })
    .expect("open on-disk db");
    let f = std::fs::File::open(&file).expect("open input");
    import_openmetrics(BufReader::new(f), &disk).expect("import to disk");
    let on_disk = disk.stats();
    assert_eq!(
        on_disk.block_samples as f64, samples,
        "every sample in a block file"
    );
    let disk_rows = [
        (
            "depin-orcha block files: chunk data (2 h chunks)",
            on_disk.block_chunk_data_bytes,
            format!(
                "{} chunks in {} files",
                on_disk.block_chunks, on_disk.blocks
            ),
        ),
        (
            "  + per-chunk checksum and index entry",
            on_disk.block_chunk_data_bytes + on_disk.block_chunk_meta_bytes,
            format!(
                "{:.1} B per chunk",
                on_disk.block_chunk_meta_bytes as f64 / on_disk.block_chunks as f64
            ),
        ),
        (
            "  whole files (+ labels, headers, footers)",
            on_disk.block_bytes,
            format!("{} B", on_disk.block_bytes),
        ),
    ];
    for (name, bytes, note) in disk_rows {
        rows.push((name.into(), Some(bytes as f64 / samples), note));
    }
    let disk_bps =
        (on_disk.block_chunk_data_bytes + on_disk.block_chunk_meta_bytes) as f64 / samples;

    // Baseline: Prometheus' XOR chunk format on the very samples we hold.
    let mut xor_bytes = 0usize;
    for s in db.select(&[], i64::MIN, i64::MAX) {
        for c in s.samples.chunks(120) {
            xor_bytes += xor::encode_prometheus_chunk(c).len();
        }
    }
    rows.push((
        "Gorilla XOR, 120-sample chunks (in process)".into(),
        Some(xor_bytes as f64 / samples),
        String::new(),
    ));

    // Where our bytes go, by kind of series (the metric name up to `_m_`).
    let mut kinds: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for s in db.select(&[], i64::MIN, i64::MAX) {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let kind = name.split("_m_").next().unwrap_or("").to_string();
        let e = kinds.entry(kind).or_default();
        for c in s.samples.chunks(depin_orcha::tsdb::chunk::CHUNK_SAMPLES) {
            e.0 += depin_orcha::tsdb::chunk::encode(c).len();
            e.1 += xor::encode_prometheus_chunk(c).len();
        }
        e.2 += s.samples.len();
    }
    // What Prometheus-size chunks cost against twice as long ones, on the same samples.
    for (kind, (ours, gorilla, n)) in &kinds {
        println!(
            "  {kind:<10} ours {:.3} B/sample, Gorilla XOR {:.3} B/sample ({n} samples)",
            *ours as f64 / *n as f64,
            *gorilla as f64 / *n as f64
        );
    }
    rows.push(prometheus(&file, tmp.path(), samples));
    rows.push(victoria_metrics(&file, tmp.path(), samples, &db));

    let ours = rows[0].1.unwrap_or(f64::NAN);
    println!();
    println!(
        "{:<46} {:>12} {:>14}  notes",
        "storage", "bytes/sample", "vs ours sealed"
    );
    for (name, bps, note) in &rows {
        match bps {
            Some(b) => println!("{name:<46} {b:>12.3} {:>13.2}x  {note}", b / ours),
            None => println!("{name:<46} {:>12} {:>14}  {note}", "-", "-"),
        }
    }
    println!();
    println!(
        "index and labels (not in the figures above): depin-orcha {} B for {} series",
        sealed.index_bytes, sealed.series
    );
    println!(
        "goal (on disk, per-chunk bookkeeping counted, at most 2.0 B/sample): {disk_bps:.3} {}",
        if disk_bps <= 2.0 { "met" } else { "NOT met" }
    );
}

/// The samples file: `TSDB_BENCH_FILE`, or one generated with gen-samples.py.
fn input_file(tmp: &Path) -> Option<(PathBuf, String)> {
    if let Ok(f) = std::env::var("TSDB_BENCH_FILE") {
        return Some((PathBuf::from(&f), format!("{f} (TSDB_BENCH_FILE)")));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `../shared` beside the crate root, as CI lays it out.
    let script = ["../shared/bench/gen-samples.py"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists());
    let Some(script) = script else {
        println!("SKIP: ../shared/bench/gen-samples.py not found and TSDB_BENCH_FILE not set");
        return None;
    };
    let days = std::env::var("TSDB_BENCH_DAYS").unwrap_or_else(|_| "2".into());
    let out = tmp.join("samples.om");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .args(["--days", &days])
        .status();
    match st {
        Ok(s) if s.success() => Some((
            out,
            format!("gen-samples.py --days {days} (50 series per kind, 5 s apart)"),
        )),
        other => {
            println!("SKIP: running {} failed: {other:?}", script.display());
            None
        }
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn prometheus(file: &Path, tmp: &Path, samples: f64) -> (String, Option<f64>, String) {
    let name = "Prometheus 2 blocks (promtool), chunks files".to_string();
    if !on_path("promtool") {
        return (name, None, "SKIP: promtool not installed".into());
    }
    let out = tmp.join("prom-blocks");
    let st = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(file)
        .arg(&out)
        .stdout(Stdio::null())
        .status();
    if !st.is_ok_and(|s| s.success()) {
        return (
            name,
            None,
            "SKIP: promtool create-blocks-from failed".into(),
        );
    }
    let (mut chunks, mut index) = (0u64, 0u64);
    for block in std::fs::read_dir(&out).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(block.path().join("chunks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            chunks += f.metadata().map_or(0, |m| m.len());
        }
        index += std::fs::metadata(block.path().join("index")).map_or(0, |m| m.len());
    }
    let version = Command::new("promtool")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    (
        name,
        Some(chunks as f64 / samples),
        format!("{chunks} B chunks, index {index} B; {version}"),
    )
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn victoria_metrics(
    file: &Path,
    tmp: &Path,
    samples: f64,
    db: &Db,
) -> (String, Option<f64>, String) {
    let name = "VictoriaMetrics storage (vm_data_size_bytes)".to_string();
    if !on_path("victoria-metrics") {
        return (
            name,
            None,
            "SKIP: victoria-metrics not installed (apt-get install -y victoria-metrics)".into(),
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    let Ok(port) = port else {
        return (name, None, "SKIP: no free port".into());
    };
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new("victoria-metrics")
        .arg(format!(
            "-storageDataPath={}",
            tmp.join("vm-data").display()
        ))
        .arg(format!("-httpListenAddr={addr}"))
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return (name, None, "SKIP: could not start victoria-metrics".into());
    };
    let _guard = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&addr, "GET", "/health", &[]).is_none() {
        if Instant::now() > deadline {
            return (
                name,
                None,
                "SKIP: victoria-metrics did not become healthy".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Same lines, timestamps in milliseconds, posted in slices.
    let f = std::fs::File::open(file).expect("open input");
    let mut body = Vec::with_capacity(32 << 20);
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((head, ts)) = line.rsplit_once(' ') else {
            continue;
        };
        let ms = ts
            .parse::<f64>()
            .map(|s| (s * 1000.0).round() as i64)
            .unwrap_or(0);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(format!(" {ms}\n").as_bytes());
        if body.len() > 16 << 20 {
            if http(&addr, "POST", "/api/v1/import/prometheus", &body).is_none() {
                return (name, None, "SKIP: import request failed".into());
            }
            body.clear();
        }
    }
    if !body.is_empty() && http(&addr, "POST", "/api/v1/import/prometheus", &body).is_none() {
        return (name, None, "SKIP: import request failed".into());
    }

    let metric = |text: &str, name: &str, type_prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("type=\"{type_prefix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Wait until every row is in storage, then flush to disk and merge parts as VM does over
    // time; read the sizes once they stop changing.
    let mut rows = 0.0;
    for _ in 0..120 {
        http(&addr, "GET", "/internal/force_flush", &[]);
        let m = http(&addr, "GET", "/metrics", &[]).unwrap_or_default();
        rows = metric(&m, "vm_rows{", "storage/");
        if rows >= samples {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    http(&addr, "GET", "/internal/force_merge", &[]);
    let (mut last, mut stable) = (0.0, 0);
    let mut text = String::new();
    for _ in 0..120 {
        std::thread::sleep(Duration::from_millis(500));
        text = http(&addr, "GET", "/metrics", &[]).unwrap_or_default();
        let size = metric(&text, "vm_data_size_bytes{", "storage/");
        stable = if size == last { stable + 1 } else { 0 };
        last = size;
        if stable >= 4 {
            break;
        }
    }
    let data = metric(&text, "vm_data_size_bytes{", "storage/");
    let index = metric(&text, "vm_data_size_bytes{", "indexdb");
    let exact = exactness(&addr, db);
    (
        name,
        Some(data / samples),
        format!("{data} B storage for {rows} rows, indexdb {index} B; {exact}"),
    )
}

/// Reads a few series back from VictoriaMetrics and counts values that differ, bit for bit,
/// from what the file holds (our database returns them exactly, see tests/tsdb_import.rs).
fn exactness(addr: &str, db: &Db) -> String {
    let (mut same, mut differ, mut example) = (0usize, 0usize, String::new());
    for name in ["counter_m_0", "gauge3_m_0", "const_m_0"] {
        let Some(body) = http(
            addr,
            "GET",
            &format!("/api/v1/export?match%5B%5D={name}"),
            &[],
        ) else {
            return "export failed".into();
        };
        let want = db.select(
            &[depin_orcha::labels::Matcher::equal("__name__", name)],
            i64::MIN,
            i64::MAX,
        );
        let Some(want) = want.first() else { continue };
        let exact: std::collections::HashMap<i64, f64> =
            want.samples.iter().map(|s| (s.t, s.v)).collect();
        for line in body.lines() {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(vs), Some(ts)) = (j["values"].as_array(), j["timestamps"].as_array()) else {
                continue;
            };
            for (v, t) in vs.iter().zip(ts) {
                let (Some(v), Some(t)) = (v.as_f64(), t.as_i64()) else {
                    continue;
                };
                match exact.get(&t) {
                    Some(w) if w.to_bits() == v.to_bits() => same += 1,
                    Some(w) => {
                        differ += 1;
                        if example.is_empty() {
                            example = format!(", e.g. {name} {w:?} came back as {v:?}");
                        }
                    }
                    None => {}
                }
            }
        }
    }
    format!(
        "read back: {differ} of {} values differ{example}",
        same + differ
    )
}

/// One HTTP/1.0 request (so the answer is never chunked) over a fresh connection; the body of a 2xx answer.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(300))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let (_, b) = text.split_once("\r\n\r\n")?;
    (200..300).contains(&status).then(|| b.to_string())
}

//! Hostile clients against the real binary, every case at once: `/api/v1/series` with 20,000
//! regex matchers, queries that would hold gigabytes (`count_over_time(x[30d:1ms])`), megabyte
//! regular expressions, wrong passwords (bcrypt cost 10), slowloris connections and more event
//! streams than the server allows, all while a prober asks for `/metrics` and the nodes are
//! polled. The process must not abort, its peak resident memory must stay under
//! `--query.max-memory` (its default) plus 50 MB, `/metrics` must answer within 50 ms at the 99th
//! percentile, and no poll may be missed (the stored `depin_adapter_up` samples keep their 5 s
//! cadence). Then: wrong passwords take as long for unknown users as for known ones; basic auth
//! and the control token work together; a bad regular expression's error is short and says why.
//!
//! `HOSTILE_SECS` (default 8) sets how long the attack lasts; the README's numbers come from
//! `scripts/hostile-soak` (release build, `HOSTILE_SECS=120`). The binary runs under an address
//! space cap (`HOSTILE_AS_CAP_MIB`, default 4096), so a build without the limits fails here by
//! aborting instead of taking the machine's memory; `HOSTILE_BIN` points the attack at another
//! build.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use rand::{Rng, SeedableRng};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "control-t0ken";
/// The default of `--query.max-memory`.
const BUDGET: u64 = 256 << 20;
const MARGIN: u64 = 50_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn basic(user: &str, pass: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b64}")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A web config with basic auth for alice (bcrypt cost 10, as `htpasswd -nBC 10` makes it) and
/// the control token, in `dir`.
fn protected(dir: &std::path::Path) {
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!("basic_auth_users:\n  {USER}: '{hash}'\n"),
    )
    .unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
}

/// Starts the binary with basic auth and the token, under the address space cap.
fn start(dir: &std::path::Path) -> Orcha {
    protected(dir);
    let cap = env_or("HOSTILE_AS_CAP_MIB", 4096) << 20;
    // HOSTILE_BIN: another build to attack (say, one from before the limits).
    let binary = std::env::var_os("HOSTILE_BIN").map_or_else(bin, std::path::PathBuf::from);
    let mut cmd = Command::new(binary);
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: cap,
                rlim_max: cap,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let orcha = Orcha::launch(
        cmd,
        &[
            "--storage.path",
            dir.join("data").to_str().unwrap(),
            "--web.config.file",
            dir.join("web.yml").to_str().unwrap(),
            "--web.auth-token-file",
            dir.join("token").to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(orcha.addr, "/-/ready").map(|r| r.0).ok() != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    orcha
}

/// A request on a fresh connection with the right password: status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let auth = basic(USER, PASSWORD);
    try_http_with(addr, "GET", path, &[("Authorization", &auth)], None).map(|r| (r.status, r.body))
}

fn post_form(
    addr: SocketAddr,
    auth: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    try_http_with(
        addr,
        "POST",
        path,
        &[("Authorization", auth)],
        Some(("application/x-www-form-urlencoded", body)),
    )
    .map(|r| (r.status, r.body))
}

/// `/metrics` on a fresh connection: status, time to connect, time to the whole answer.
fn probe(addr: SocketAddr) -> std::io::Result<(u16, Duration, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    let connect = t.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(USER, PASSWORD)
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let status = String::from_utf8_lossy(raw.get(9..12).unwrap_or_default())
        .parse()
        .unwrap_or(0);
    Ok((status, connect, t.elapsed()))
}

/// Status counts per attacker kind.
#[derive(Default)]
struct Tally(Mutex<std::collections::BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, kind: &str, outcome: &str) {
        let mut m = self.0.lock().unwrap();
        *m.entry(format!("{kind} {outcome}")).or_default() += 1;
    }
    fn print(&self) {
        for (k, n) in self.0.lock().unwrap().iter() {
            println!("  {k}: {n}");
        }
    }
}

fn outcome(r: &std::io::Result<(u16, String)>) -> String {
    match r {
        Ok((s, _)) => s.to_string(),
        Err(e) => format!("transport error ({:?})", e.kind()),
    }
}

/// Runs `f(i)` in `n` threads until `stop`.
fn crowd(
    n: usize,
    stop: &Arc<AtomicBool>,
    f: impl Fn(usize) + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    let f = Arc::new(f);
    (0..n)
        .map(|i| {
            let (stop, f) = (stop.clone(), f.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f(i);
                }
            })
        })
        .collect()
}

/// `n` selectors with a regex matcher each, as one form body.
fn series_body(n: usize) -> String {
    (0..n)
        .map(|i| format!("match%5B%5D={}", enc(&format!("{{job=~\"a{i}\"}}"))))
        .collect::<Vec<_>>()
        .join("&")
}

/// A query whose regex has `bytes` of random words joined by `sep`.
fn regex_query(bytes: usize, sep: char, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut p = String::with_capacity(bytes + 16);
    while p.len() < bytes {
        if !p.is_empty() {
            p.push(sep);
        }
        for _ in 0..8 {
            p.push(rng.random_range(b'a'..=b'z') as char);
        }
    }
    format!(
        "query={}",
        enc(&format!("depin_adapter_up{{node=~\"{p}\"}}"))
    )
}

/// Holds `n` connections that send their headers a line at a time, every two seconds, and
/// reconnects whatever the server closes.
fn slowloris(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let open = |tally: &Tally| -> Option<TcpStream> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
        s.set_nonblocking(true).ok()?;
        tally.add("slowloris", "connected");
        Some(s)
    };
    let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| open(&tally)).collect();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        for s in socks.iter_mut() {
            let closed = match s {
                None => true,
                Some(c) => {
                    let gone = c.read(&mut buf).is_ok() || c.write_all(b"X-Slow: 1\r\n").is_err();
                    if gone {
                        tally.add("slowloris", "closed by server");
                    }
                    gone
                }
            };
            if closed {
                *s = open(&tally);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Holds up to `n` event streams open without reading them; a refused one retries a second
/// later.
fn streams(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let auth = basic(USER, PASSWORD);
    let open = || -> Option<TcpStream> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        write!(
            s,
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        Some(s).filter(|_| &head[9..12] == b"200")
    };
    let mut socks: Vec<Option<TcpStream>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        socks.retain(|s| s.is_some());
        while socks.len() < n && !stop.load(Ordering::Relaxed) {
            let s = open();
            tally.add("event stream", if s.is_some() { "open" } else { "refused" });
            if s.is_none() {
                break;
            }
            socks.push(s);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Samples of `depin_adapter_up` per node in `[from, to]` (ms), read with the export.
fn poll_times(addr: SocketAddr, from: i64, to: i64) -> Vec<(String, Vec<i64>)> {
    let path = format!(
        "/api/v1/export?match[]=depin_adapter_up&format=json&start={}&end={}",
        from as f64 / 1000.0,
        to as f64 / 1000.0
    );
    let (status, body) = get(addr, &path).unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let node = v["metric"]["node"].as_str().unwrap_or("").to_string();
            let ts = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            (node, ts)
        })
        .collect()
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn hostile_clients_cannot_take_it_down_or_starve_the_polls() {
    let secs = env_or("HOSTILE_SECS", 8);
    let dir = temp_dir("hostile");
    let mut orcha = start(&dir);
    let addr = orcha.addr;
    let pid = orcha.child.id();
    // The prober's password is verified (and remembered) before the crowd arrives.
    assert_eq!(get(addr, "/metrics").unwrap().0, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started_ms = now_ms();
    let mut threads = Vec::new();
    // 1. 40 series requests with 20,000 regex matchers each, and with 2,000 (which fit).
    let (big, small) = (Arc::new(series_body(20_000)), Arc::new(series_body(2_000)));
    let t = tally.clone();
    threads.extend(crowd(40, &stop, move |i| {
        let body = if i % 2 == 0 { &big } else { &small };
        let r = post_form(addr, &basic(USER, PASSWORD), "/api/v1/series", body);
        t.add("series", &outcome(&r));
    }));
    // 2. 20 queries that would hold gigabytes.
    let heavy = [
        "count_over_time(depin_adapter_up[30d:1ms])",
        "count_over_time({__name__=~\"depin_.+\"}[1h:1ms])",
    ];
    let t = tally.clone();
    threads.extend(crowd(20, &stop, move |i| {
        let r = post_form(
            addr,
            &basic(USER, PASSWORD),
            "/api/v1/query",
            &format!("query={}", enc(heavy[i % 2])),
        );
        t.add("heavy query", &outcome(&r));
    }));
    // 3. 30 queries with huge regular expressions: 1 MB, or 100 KB of alternatives.
    let (mega, alts) = (
        Arc::new(regex_query(1_000_000, '.', 1)),
        Arc::new(regex_query(100_000, '|', 2)),
    );
    let t = tally.clone();
    threads.extend(crowd(30, &stop, move |i| {
        let body = if i % 2 == 0 { &mega } else { &alts };
        let r = post_form(addr, &basic(USER, PASSWORD), "/api/v1/query", body);
        t.add("regex query", &outcome(&r));
    }));
    // 4. 32 clients guessing passwords, for alice and for users that do not exist.
    let t = tally.clone();
    let guesses = Arc::new(AtomicU64::new(0));
    let g = guesses.clone();
    threads.extend(crowd(32, &stop, move |i| {
        let n = g.fetch_add(1, Ordering::Relaxed);
        let user = if i % 2 == 0 { USER } else { "mallory" };
        let auth = basic(user, &format!("guess{n}"));
        let r = try_http_with(addr, "GET", "/metrics", &[("Authorization", &auth)], None)
            .map(|r| (r.status, r.body));
        t.add("wrong password", &outcome(&r));
    }));
    // 5. 600 slowloris connections, 6. 512 event streams.
    let (s, t) = (stop.clone(), tally.clone());
    threads.push(std::thread::spawn(move || slowloris(addr, 600, s, t)));
    let (s, t) = (stop.clone(), tally.clone());
    threads.push(std::thread::spawn(move || streams(addr, 512, s, t)));

    // The prober: /metrics on a fresh connection every 50 ms, as a scraper would.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let slow = Arc::new(Mutex::new(Vec::new()));
    let probe_errors = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let (stop, lat, errs, slow) = (
            stop.clone(),
            latencies.clone(),
            probe_errors.clone(),
            slow.clone(),
        );
        std::thread::spawn(move || {
            let begun = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match probe(addr) {
                    Ok((200, connect, total)) => {
                        lat.lock().unwrap().push(total);
                        if total > Duration::from_millis(50) {
                            slow.lock().unwrap().push(format!(
                                "at {:.1}s: connect {:.1} ms, answer {:.1} ms",
                                begun.elapsed().as_secs_f64(),
                                connect.as_secs_f64() * 1000.0,
                                total.as_secs_f64() * 1000.0
                            ));
                        }
                    }
                    other => errs
                        .lock()
                        .unwrap()
                        .push(format!("{:?}", other.map(|r| r.0))),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut peak_rss = 0;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        peak_rss = peak_rss.max(status_kb(pid, "VmRSS:"));
        assert!(
            orcha.child.try_wait().unwrap().is_none(),
            "depin-orcha ended under attack"
        );
    }
    let ended_ms = now_ms();
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    for t in threads {
        let _ = t.join();
    }
    let hwm = status_kb(pid, "VmHWM:") * 1024;
    let alive = orcha.child.try_wait().unwrap().is_none();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    println!(
        "hostile: {secs}s; /metrics {} probes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed; peak RSS {:.1} MB (sampled max {:.1} MB), budget {} MB + {} MB margin",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        probe_errors.lock().unwrap().len(),
        hwm as f64 / 1e6,
        peak_rss as f64 * 1024.0 / 1e6,
        BUDGET / 1_000_000,
        MARGIN / 1_000_000,
    );
    tally.print();
    for s in slow.lock().unwrap().iter() {
        println!("  slow /metrics {s}");
    }
    assert!(alive, "depin-orcha ended under attack");
    // Polls: every node's samples kept their 5 s cadence through the attack.
    let polls = poll_times(addr, started_ms - 5_000, ended_ms);
    assert_eq!(polls.len(), 4, "{polls:?}");
    for (node, ts) in &polls {
        let gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(i64::MAX);
        println!(
            "  polls of {node}: {} samples, longest gap {gap} ms",
            ts.len()
        );
        assert!(
            gap <= 7_000 && *ts.last().unwrap() >= ended_ms - 7_000,
            "polls of {node} missed a beat: {ts:?}"
        );
    }
    assert!(
        hwm < BUDGET + MARGIN,
        "peak RSS {hwm} bytes is over the budget plus {MARGIN}"
    );
    assert!(
        probe_errors.lock().unwrap().is_empty(),
        "/metrics failed: {:?}",
        probe_errors.lock().unwrap()
    );
    assert!(pct(0.99) < 50.0, "/metrics p99 {:.1} ms", pct(0.99));
    // The attackers did reach the server (not all turned away at the door).
    let seen = get(addr, "/metrics").unwrap().1;
    let refusals = metric_value(&seen, "depin_orcha_query_memory_refusals_total", &[]);
    assert!(refusals.unwrap_or(0.0) > 0.0, "no query reached its limit");
    // Once the crowd is gone, everything it held is given back and queries work.
    wait_until(Duration::from_secs(30), "the budget emptied", || {
        let m = get(addr, "/metrics").unwrap().1;
        metric_value(&m, "depin_orcha_query_memory_bytes", &[]) == Some(0.0)
    });
    let (status, body) = get(addr, "/api/v1/query?query=sum(depin_adapter_up)").unwrap();
    assert_eq!(status, 200, "{body}");
}

/// One request with a wrong password for `user`: how long its 401 took.
fn auth_time(addr: SocketAddr, user: &str, i: usize) -> Duration {
    let auth = basic(user, &format!("wrong{i}"));
    let t = Instant::now();
    let r = try_http_with(addr, "GET", "/metrics", &[("Authorization", &auth)], None).unwrap();
    assert_eq!(r.status, 401);
    t.elapsed()
}

/// Median times of `n` wrong passwords for each of two users, asked in turns, so a load that
/// comes and goes on the machine weighs on both alike.
fn median_auth_times(addr: SocketAddr, a: &str, b: &str, n: usize) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..n {
        ta.push(auth_time(addr, a, i));
        tb.push(auth_time(addr, b, i));
    }
    ta.sort();
    tb.sort();
    (ta[n / 2], tb[n / 2])
}

#[test]
fn passwords_tokens_and_errors_tell_nothing_they_should_not() {
    let dir = temp_dir("hostile-auth");
    let orcha = start(&dir);
    let addr = orcha.addr;
    // A wrong password takes as long for a user that does not exist as for one that does.
    let (known, unknown) = median_auth_times(addr, USER, "mallory", 7);
    println!("wrong password: known user {known:?}, unknown user {unknown:?} (medians of 7)");
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}: the time tells which users exist"
    );
    // Basic auth and the control token together: the password in Authorization, the token in
    // its own header.
    let pass = basic(USER, PASSWORD);
    let reload = |headers: &[(&str, &str)]| {
        try_http_with(addr, "POST", "/-/reload", headers, None)
            .unwrap()
            .status
    };
    assert_eq!(reload(&[("Authorization", &pass)]), 401, "no token");
    assert_eq!(
        reload(&[("Authorization", &pass), ("X-Depin-Orcha-Token", "wrong")]),
        401
    );
    assert_eq!(
        reload(&[("Authorization", &pass), ("X-Depin-Orcha-Token", TOKEN)]),
        200
    );
    // The token alone does not pass the password check.
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(reload(&[("Authorization", &bearer)]), 401);
    // A bad regular expression: a short error that says why, not the pattern back; in a query
    // and in a series selector alike.
    let pattern = format!("up{{job=~\"({}\"}}", "a".repeat(50_000));
    for (path, field) in [("/api/v1/query", "query"), ("/api/v1/series", "match[]")] {
        let q = format!("{}={}", enc(field), enc(&pattern));
        let (status, body) = post_form(addr, &pass, path, &q).unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.len() < 400,
            "{path}: {} bytes: {}",
            body.len(),
            &body[..400]
        );
        assert!(body.contains("unclosed group"), "{path}: {body}");
    }
    // A megabyte of one: refused before it is compiled (what compiling it would hold is over
    // the memory budget), in as few words.
    let q = format!(
        "query={}",
        enc(&format!("up{{job=~\"({}\"}}", "a".repeat(1_000_000)))
    );
    let (status, body) = post_form(addr, &pass, "/api/v1/query", &q).unwrap();
    assert_eq!(status, 422, "{}", &body[..body.len().min(400)]);
    assert!(body.len() < 400, "{} bytes: {}", body.len(), &body[..400]);
    assert!(body.contains("--query.max-memory"), "{body}");
}

/// `depin_orcha_query_memory_bytes` of a server without basic auth.
fn memory_held(addr: SocketAddr) -> f64 {
    let m = try_http_with(addr, "GET", "/metrics", &[], None)
        .unwrap()
        .body;
    metric_value(&m, "depin_orcha_query_memory_bytes", &[]).unwrap_or(f64::NAN)
}

/// Every read shares the one budget: series, label names, label values and export selectors
/// that would hold more than `--query.max-memory` get 422 naming it, while small ones under the
/// same budget answer. A query whose client goes away stops: what it held is given back at once,
/// not when it would have ended.
#[test]
fn every_read_is_within_the_budget_and_stops_when_its_client_leaves() {
    let dir = temp_dir("hostile-budget");
    let orcha = Orcha::start(&[
        "--storage.path",
        dir.join("data").to_str().unwrap(),
        "--query.max-memory",
        "16MiB",
    ]);
    orcha.wait_ready();
    let addr = orcha.addr;
    // 1,500 regular expressions (a 54 KB URL): compiling them would hold about 24 MiB.
    let (big, small) = (series_body(1_500), series_body(10));
    for path in [
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/node/values",
        "/api/v1/export",
    ] {
        let send = |body: &str| {
            // Prometheus takes label values (and we take exports) on GET only.
            if path.contains("values") || path.contains("export") {
                try_http_with(addr, "GET", &format!("{path}?{body}"), &[], None)
            } else {
                let form = Some(("application/x-www-form-urlencoded", body));
                try_http_with(addr, "POST", path, &[], form)
            }
            .unwrap()
        };
        let r = send(&big);
        assert_eq!(
            r.status,
            422,
            "{path}: {}",
            &r.body[..r.body.len().min(400)]
        );
        assert!(r.body.contains("--query.max-memory"), "{path}: {}", r.body);
        let r = send(&small);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    wait_until(Duration::from_secs(10), "the budget emptied", || {
        memory_held(addr) == 0.0
    });
    // A query that evaluates for minutes within the budget: 120,000 subquery steps, each
    // matching a regular expression against a 10,000-byte label value (about a millisecond a
    // step), while holding a few MiB. With the client waiting, it runs until its timeout...
    let long_value = "a".repeat(10_000);
    let slow = enc(&format!(
        "count_over_time(label_replace(label_replace(vector(1), \"y\", \"{long_value}\", \"\", \"\"), \"x\", \"$1\", \"y\", \"(a*)b\")[2m:1ms])"
    ));
    let t = Instant::now();
    let r = try_http_with(
        addr,
        "GET",
        &format!("/api/v1/query?query={slow}&timeout=3s"),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        r.status,
        503,
        "it ended on its own in {:?}: {}",
        t.elapsed(),
        r.body
    );
    wait_until(
        Duration::from_secs(10),
        "the timed-out query stopped",
        || memory_held(addr) == 0.0,
    );
    // ...and when the client hangs up, it stops as soon as it notices.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/v1/query?query={slow}&timeout=2m HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the query holding memory", || {
        memory_held(addr) > 0.0
    });
    drop(s);
    let t = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "the abandoned query stopped",
        || memory_held(addr) == 0.0,
    );
    println!(
        "an abandoned query let go of its memory {:?} after its client left",
        t.elapsed()
    );
}

//! Remote write end to end: the real `depin-orcha` binary pushes to a real Prometheus 2.42
//! (`/usr/bin/prometheus --web.enable-remote-write-receiver`, Debian package `prometheus`) and a
//! real VictoriaMetrics (`/usr/bin/victoria-metrics`, Debian package `victoria-metrics`), both on
//! loopback, and we compare what their query APIs return with what the host holds:
//!
//! - the same samples, sample by sample, for a few series over a time range;
//! - after the receivers were killed for a minute (`DEPIN_RW_OUTAGE_SECS`, default 60) and
//!   brought back, still the same samples: nothing of the outage is lost;
//! - three depin-orcha processes with `global.external_labels: {host: a|b|c}` show up as three
//!   hosts in one central store.
//!
//! Without the receiver binaries the tests are skipped with a note; with `CI=true` their
//! absence fails. VictoriaMetrics keeps values as decimals, so its values are compared with a
//! relative tolerance of 1e-12; Prometheus' exactly.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{http, metric_value, try_http, Orcha};

fn need(bin: &str, package: &str) -> Option<PathBuf> {
    let p = PathBuf::from(bin);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {bin} is missing (Debian package {package}; scripts/test installs it)");
    }
    eprintln!("skipping: {bin} is not installed (Debian package {package})");
    None
}

fn receivers() -> Option<(PathBuf, PathBuf)> {
    let p = need("/usr/bin/prometheus", "prometheus");
    let v = need("/usr/bin/victoria-metrics", "victoria-metrics");
    Some((p?, v?))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Prometheus,
    Victoria,
}

/// A receiver process on a fixed loopback port and data directory, so it can be killed and
/// started again as the same store.
struct Receiver {
    kind: Kind,
    bin: PathBuf,
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    fn new(kind: Kind, bin: &Path, dir: &Path) -> Receiver {
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .expect("addr");
        std::fs::create_dir_all(dir).expect("mkdir");
        let mut r = Receiver {
            kind,
            bin: bin.to_path_buf(),
            addr,
            dir: dir.to_path_buf(),
            child: None,
        };
        r.start();
        r
    }

    fn write_url(&self) -> String {
        match self.kind {
            Kind::Prometheus => format!("http://{}/api/v1/write", self.addr),
            Kind::Victoria => format!("http://{}/api/v1/write", self.addr),
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("log.txt")).expect("log file");
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            Kind::Prometheus => {
                let cfg = self.dir.join("prometheus.yml");
                std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").expect("write config");
                cmd.arg(format!("--config.file={}", cfg.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        self.dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address={}", self.addr))
                    .arg("--web.enable-remote-write-receiver");
            }
            Kind::Victoria => {
                cmd.arg("-httpListenAddr")
                    .arg(self.addr.to_string())
                    .arg("-storageDataPath")
                    .arg(self.dir.join("data"));
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let path = match self.kind {
            Kind::Prometheus => "/-/ready",
            Kind::Victoria => "/health",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if try_http(self.addr, "GET", path, None).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default();
        panic!("{} did not become ready:\n{log}", self.bin.display());
    }

    /// SIGTERM and wait: a clean stop. (Both receivers acknowledge samples before they are
    /// on disk, so a SIGKILL loses their last second or so: their loss, not the sender's.)
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every sample of the series matching `selector` with timestamps in `(from, to]` (ms),
    /// keyed by the labels without `host`.
    fn samples(&self, selector: &str, from: i64, to: i64) -> BTreeMap<String, Vec<(i64, f64)>> {
        match self.kind {
            Kind::Prometheus => query_range_selector(self.addr, selector, from, to),
            Kind::Victoria => {
                let _ = http(self.addr, "GET", "/internal/force_flush", None);
                let path = format!(
                    "/api/v1/export?match[]={}&start={}&end={}",
                    enc(selector),
                    from / 1000 - 1,
                    to / 1000 + 1
                );
                let r = http(self.addr, "GET", &path, None);
                assert_eq!(r.status, 200, "{}", r.body);
                let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
                for line in r.body.lines().filter(|l| !l.trim().is_empty()) {
                    let v: serde_json::Value = serde_json::from_str(line).expect("export line");
                    let key = series_key(&v["metric"]);
                    let ts = v["timestamps"].as_array().expect("timestamps");
                    let vals = v["values"].as_array().expect("values");
                    let e = out.entry(key).or_default();
                    for (t, x) in ts.iter().zip(vals) {
                        let t = t.as_i64().expect("timestamp");
                        let x = x.as_f64().unwrap_or(f64::NAN);
                        if t > from && t <= to {
                            e.push((t, x));
                        }
                    }
                    e.sort_by_key(|s| s.0);
                }
                out.retain(|_, v| !v.is_empty());
                out
            }
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Prometheus => "Prometheus",
            Kind::Victoria => "VictoriaMetrics",
        }
    }

    /// The values of label `name` across the store.
    fn label_values(&self, name: &str) -> Vec<String> {
        if self.kind == Kind::Victoria {
            let _ = http(self.addr, "GET", "/internal/force_flush", None);
        }
        let r = http(
            self.addr,
            "GET",
            &format!("/api/v1/label/{name}/values"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let mut v: Vec<String> = r.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn series_key(metric: &serde_json::Value) -> String {
    let m: BTreeMap<String, String> = metric
        .as_object()
        .expect("metric")
        .iter()
        .filter(|(k, _)| k.as_str() != "host")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    format!("{m:?}")
}

/// Raw samples through `/api/v1/query` with a range selector (Prometheus and depin-orcha).
fn query_range_selector(
    addr: SocketAddr,
    selector: &str,
    from: i64,
    to: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let secs = (to - from) / 1000 + 1;
    let q = format!("{selector}[{secs}s]");
    let path = format!(
        "/api/v1/query?query={}&time={}.{:03}",
        enc(&q),
        to / 1000,
        to % 1000
    );
    let r = http(addr, "GET", &path, None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    let j = r.json();
    let mut out = BTreeMap::new();
    for s in j["data"]["result"].as_array().expect("result") {
        let vals: Vec<(i64, f64)> = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().expect("value").parse().unwrap_or(f64::NAN);
                (t, v)
            })
            .filter(|(t, _)| *t > from && *t <= to)
            .collect();
        if !vals.is_empty() {
            out.insert(series_key(&s["metric"]), vals);
        }
    }
    out
}

fn orcha_config(dir: &Path, host: &str, remotes: &[(&str, String)]) -> PathBuf {
    let mut rw = String::from("remote_write:\n");
    for (name, url) in remotes {
        rw.push_str(&format!(
            "  - url: {url}\n    name: {name}\n    remote_timeout: 5s\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n"
        ));
    }
    let text = format!(
        "global:\n  poll_interval: 1s\n  scrape_interval: 1s\n  external_labels: {{host: {host}}}\n\
         host: {{capacity: {{cpu_cores: 4, memory_bytes: 8GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 10MB}}}}\n\
         prices: {{STORJ: 0.45, GLM: 0.3}}\n\
         nodes:\n  - {{name: storj, kind: sim, sim: {{protocol: storj, allocation: {{cpu_cores: 1, disk_bytes: 100GB}}}}}}\n\
         \x20 - {{name: golem, kind: sim, sim: {{protocol: golem, allocation: {{cpu_cores: 2, memory_bytes: 4GiB}}}}}}\n{rw}"
    );
    std::fs::create_dir_all(dir).expect("mkdir");
    let p = dir.join(format!("orcha-{host}.yml"));
    std::fs::write(&p, text).expect("write config");
    p
}

fn start_orcha(dir: &Path, host: &str, remotes: &[(&str, String)]) -> Orcha {
    let cfg = orcha_config(dir, host, remotes);
    let storage = dir.join(format!("storage-{host}"));
    let o = Orcha::start(&[
        "--config.file",
        cfg.to_str().expect("utf-8 path"),
        "--storage.path",
        storage.to_str().expect("utf-8 path"),
    ]);
    o.wait_ready();
    o
}

/// Waits until each remote's queue has been seen empty, with something sent, at least once
/// since the call: everything queued before the call has then been sent to it. Each remote is
/// waited for on its own, since the host keeps scraping and two queues that each send every
/// second may never be empty in the same read.
fn wait_drained(o: &Orcha, remotes: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    let mut drained = vec![false; remotes.len()];
    loop {
        let m = o.get("/metrics").body;
        for (r, seen) in remotes.iter().zip(drained.iter_mut()) {
            let needle = format!("remote=\"{r}\"");
            *seen |= metric_value(&m, "depin_remote_write_queue_samples", &[&needle]) == Some(0.0)
                && metric_value(&m, "depin_remote_write_samples_total", &[&needle])
                    .is_some_and(|v| v > 0.0);
        }
        if drained.iter().all(|d| *d) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "remote write queues of {:?} were never seen drained:\n{}",
            remotes
                .iter()
                .zip(&drained)
                .filter(|(_, d)| !**d)
                .map(|(r, _)| *r)
                .collect::<Vec<_>>(),
            m.lines()
                .filter(|l| l.starts_with("depin_remote_write"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const SELECTORS: [&str; 3] = [
    r#"depin_earnings_total{node="storj"}"#,
    r#"depin_earnings_total{node="golem"}"#,
    r#"depin_adapter_up"#,
];

/// The receiver holds exactly the host's samples of SELECTORS (for `host`) over `(from, to]`.
fn assert_same_samples(o: &Orcha, rx: &Receiver, host: &str, from: i64, to: i64) -> usize {
    let mut compared = 0;
    for sel in SELECTORS {
        let ours = query_range_selector(o.addr, sel, from, to);
        let with_host = match sel.strip_suffix('}') {
            Some(s) => format!("{s},host=\"{host}\"}}"),
            None => format!("{sel}{{host=\"{host}\"}}"),
        };
        let theirs = rx.samples(&with_host, from, to);
        assert!(!ours.is_empty(), "the host holds no {sel} in the range");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "series of {sel}"
        );
        for (k, a) in &ours {
            let b = &theirs[k];
            let ta: Vec<i64> = a.iter().map(|s| s.0).collect();
            let tb: Vec<i64> = b.iter().map(|s| s.0).collect();
            assert_eq!(ta, tb, "timestamps of {k} in {}", rx.name());
            for (x, y) in a.iter().zip(b) {
                let same = match rx.kind {
                    Kind::Prometheus => {
                        x.1.to_bits() == y.1.to_bits() || (x.1.is_nan() && y.1.is_nan())
                    }
                    Kind::Victoria => (x.1 - y.1).abs() <= 1e-12 * x.1.abs().max(1.0),
                };
                assert!(same, "{k} at {}: host {} receiver {}", x.0, x.1, y.1);
            }
            compared += a.len();
        }
    }
    compared
}

#[test]
fn prometheus_and_victoriametrics_hold_the_samples_the_host_holds() {
    let Some((prom, vm)) = receivers() else {
        return;
    };
    let dir = common::temp_dir("rw-same");
    let p = Receiver::new(Kind::Prometheus, &prom, &dir.join("prom"));
    let v = Receiver::new(Kind::Victoria, &vm, &dir.join("vm"));
    let o = start_orcha(&dir, "a", &[("prom", p.write_url()), ("vm", v.write_url())]);
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(6));
    let to = now_ms();
    wait_drained(&o, &["prom", "vm"], Duration::from_secs(20));
    // Give the last scrape before `to` time to be read and sent.
    std::thread::sleep(Duration::from_secs(3));
    wait_drained(&o, &["prom", "vm"], Duration::from_secs(20));
    let n = assert_same_samples(&o, &p, "a", from, to);
    assert!(n >= 3 * 4, "compared only {n} samples");
    let n = assert_same_samples(&o, &v, "a", from, to);
    assert!(n >= 3 * 4, "compared only {n} samples");
    assert_eq!(p.label_values("host"), ["a"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_outage_of_the_central_store_loses_no_sample() {
    let Some((prom, vm)) = receivers() else {
        return;
    };
    let outage: u64 = std::env::var("DEPIN_RW_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = common::temp_dir("rw-outage");
    let mut p = Receiver::new(Kind::Prometheus, &prom, &dir.join("prom"));
    let mut v = Receiver::new(Kind::Victoria, &vm, &dir.join("vm"));
    let o = start_orcha(&dir, "a", &[("prom", p.write_url()), ("vm", v.write_url())]);
    let from = now_ms();
    wait_drained(&o, &["prom", "vm"], Duration::from_secs(20));
    p.stop();
    v.stop();
    let down = now_ms();
    std::thread::sleep(Duration::from_secs(outage));
    let up = now_ms();
    // While they are down the samples wait in the queue.
    let m = o.get("/metrics").body;
    let queued =
        metric_value(&m, "depin_remote_write_queue_samples", &["remote=\"prom\""]).unwrap_or(0.0);
    assert!(queued > 0.0, "nothing queued during the outage");
    assert!(
        metric_value(
            &m,
            "depin_remote_write_retried_samples_total",
            &["remote=\"prom\""]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    p.start();
    v.start();
    wait_drained(&o, &["prom", "vm"], Duration::from_secs(60));
    let to = now_ms() - 2000;
    std::thread::sleep(Duration::from_secs(3));
    wait_drained(&o, &["prom", "vm"], Duration::from_secs(20));
    for rx in [&p, &v] {
        assert_same_samples(&o, rx, "a", from, to);
        // And the outage itself is covered: about one sample per second of it.
        let during = rx.samples(r#"depin_adapter_up{node="golem",host="a"}"#, down, up);
        let n = during.values().map(Vec::len).sum::<usize>() as u64;
        assert!(
            n + 2 >= outage,
            "only {n} samples of the {outage} s outage arrived"
        );
    }
    let m = o.get("/metrics").body;
    assert_eq!(
        metric_value(
            &m,
            "depin_remote_write_dropped_samples_total",
            &["remote=\"prom\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "depin_remote_write_failed_samples_total",
            &["remote=\"prom\""]
        ),
        Some(0.0)
    );
    drop(o);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_hosts_appear_as_three_hosts_in_one_central_store() {
    let Some((prom, vm)) = receivers() else {
        return;
    };
    let dir = common::temp_dir("rw-fleet");
    let p = Receiver::new(Kind::Prometheus, &prom, &dir.join("prom"));
    let v = Receiver::new(Kind::Victoria, &vm, &dir.join("vm"));
    let remotes = [("prom", p.write_url()), ("vm", v.write_url())];
    let from = now_ms();
    let hosts: Vec<Orcha> = ["a", "b", "c"]
        .iter()
        .map(|h| start_orcha(&dir, h, &remotes))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for o in &hosts {
        wait_drained(o, &["prom", "vm"], Duration::from_secs(30));
    }
    let to = now_ms() - 2000;
    for rx in [&p, &v] {
        // VictoriaMetrics makes new series searchable a moment after it acknowledged them.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut hosts = rx.label_values("host");
        while hosts.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            hosts = rx.label_values("host");
        }
        assert_eq!(hosts, ["a", "b", "c"], "hosts in {}", rx.name());
    }
    // A fleet-wide query: nodes up per host.
    let r = http(
        p.addr,
        "GET",
        &format!(
            "/api/v1/query?query={}",
            enc("sum by (host) (depin_adapter_up)")
        ),
        None,
    );
    let res = r.json()["data"]["result"]
        .as_array()
        .expect("result")
        .clone();
    assert_eq!(res.len(), 3, "{}", r.body);
    // Each host's samples arrived as its own.
    std::thread::sleep(Duration::from_secs(2));
    for (o, h) in hosts.iter().zip(["a", "b", "c"]) {
        wait_drained(o, &["prom", "vm"], Duration::from_secs(30));
        assert_same_samples(o, &p, h, from, to);
        assert_same_samples(o, &v, h, from, to);
    }
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
}

/// depin-orcha crashes (SIGKILL) while the central store is away and starts again: what was
/// queued, and what was stored but not yet queued at the crash, still arrives.
#[test]
fn a_crash_of_the_host_during_an_outage_loses_no_sample() {
    let Some((_, vm)) = receivers() else { return };
    let dir = common::temp_dir("rw-crash");
    let mut v = Receiver::new(Kind::Victoria, &vm, &dir.join("vm"));
    let remotes = [("vm", v.write_url())];
    let o = start_orcha(&dir, "a", &remotes);
    let from = now_ms();
    wait_drained(&o, &["vm"], Duration::from_secs(20));
    v.stop();
    std::thread::sleep(Duration::from_secs(5));
    let m = o.get("/metrics").body;
    assert!(
        metric_value(&m, "depin_remote_write_queue_samples", &["remote=\"vm\""]).unwrap_or(0.0)
            > 0.0,
        "nothing queued while the store was away"
    );
    o.kill9();
    let o = start_orcha(&dir, "a", &remotes);
    std::thread::sleep(Duration::from_secs(2));
    v.start();
    wait_drained(&o, &["vm"], Duration::from_secs(60));
    let to = now_ms() - 2000;
    std::thread::sleep(Duration::from_secs(3));
    wait_drained(&o, &["vm"], Duration::from_secs(20));
    let n = assert_same_samples(&o, &v, "a", from, to);
    assert!(n >= 3 * 8, "compared only {n} samples");
    drop(o);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Remote write over https: a real Prometheus serving TLS (`--web.config.file`, a fresh
/// self-signed certificate for 127.0.0.1) receives the host's samples when the remote trusts
/// that certificate through `tls_config.ca_file`; a second remote to the same server without
/// it sends nothing (the certificate is verified, not waved through).
#[test]
fn remote_write_over_https_verifies_the_receivers_certificate() {
    let Some(prom) = common::prometheus_bin() else {
        return;
    };
    let dir = common::temp_dir("rw-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(&prom_cfg, "global:\n  scrape_interval: 1m\n").unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let _prom = common::KillOnDrop(
        Command::new(prom)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let url = format!("https://{addr}/api/v1/write");
    let cfg = orcha_config(&dir, "t", &[("tls", url.clone()), ("untrusted", url)]);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "name: tls\n",
        &format!("name: tls\n    tls_config: {{ca_file: {}}}\n", ca.display()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let o = Orcha::start(&[
        "--config.file",
        cfg.to_str().expect("utf-8 path"),
        "--storage.path",
        dir.join("storage").to_str().expect("utf-8 path"),
    ]);
    o.wait_ready();
    // Prometheus starts in the meantime; the queue keeps what it could not send yet.
    wait_drained(&o, &["tls"], Duration::from_secs(60));
    let m = o.get("/metrics").body;
    let untrusted = |family: &str| metric_value(&m, family, &["remote=\"untrusted\""]);
    assert_eq!(
        untrusted("depin_remote_write_samples_total"),
        Some(0.0),
        "a remote without the CA sent samples"
    );
    assert!(
        untrusted("depin_remote_write_queue_samples").is_some_and(|v| v > 0.0),
        "the untrusted remote's samples should wait in its queue"
    );
}

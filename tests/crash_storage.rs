//! Storage faults of the real binary, as an operator meets them:
//!
//! - a full disk under `--storage.path` (a tmpfs of a few MiB filled up while the binary runs;
//!   needs root for `mount`, skipped otherwise): WAL writes and snapshots fail, the loops keep
//!   polling and evaluating, `/metrics` counts the failures, the shipped
//!   `DepinStorageWriteFailing` fires in the binary's own `/api/v1/alerts`; once the disk is
//!   freed and a snapshot succeeds, a `kill -9` loses nothing, not even what was polled while
//!   the disk was full;
//! - the storage directory made read-only (chmod 0555) after start: snapshots fail and
//!   `DepinStorageSnapshotFailing` fires, the WAL keeps its open segment and loses nothing.
//!   Root ignores directory permissions, so as root the binary runs as `nobody` through
//!   `setpriv` (skipped when that is missing);
//! - `kill -9` while snapshots are written every 100 ms, at random moments and (every other
//!   cycle) aimed at the moment a snapshot starts: the binary starts again, the
//!   snapshot it finds loads whole (the old or the new one, never moved aside as damaged), and
//!   no sample read over the API before the kill is missing after it.
//!
//! `CRASH_CYCLES` sets the kill/restart cycles of the last test (default 5, about 3 s each).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The demo config (four simulated nodes) polled and scraped every second, rules every second.
fn fast_demo(dir: &Path) -> PathBuf {
    let demo = std::fs::read_to_string(Path::new(ROOT).join("src/config/demo.yml")).unwrap();
    let global = "global:\n  poll_interval: 5s\n  poll_timeout: 4s\n  scrape_interval: 5s\n";
    assert!(
        demo.contains(global),
        "the demo's global block changed; update this test"
    );
    let cfg = demo.replacen(
        global,
        "global:\n  poll_interval: 1s\n  poll_timeout: 1s\n  scrape_interval: 1s\n  evaluation_interval: 1s\n",
        1,
    );
    let p = dir.join("demo.yml");
    std::fs::write(&p, cfg).unwrap();
    p
}

/// The shipped storage alerts, taken from rules/prometheus/alerts.yml as they are, in a group evaluated
/// every second.
fn storage_alerts(dir: &Path) -> PathBuf {
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("rules/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut rules = Vec::new();
    for g in shipped["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            if matches!(
                r["alert"].as_str(),
                Some("DepinStorageWriteFailing" | "DepinStorageSnapshotFailing")
            ) {
                rules.push(r.clone());
            }
        }
    }
    assert_eq!(rules.len(), 2, "both storage alerts are shipped");
    let mut group = serde_yaml::Mapping::new();
    group.insert("name".into(), "storage".into());
    group.insert("interval".into(), "1s".into());
    group.insert("rules".into(), serde_yaml::Value::Sequence(rules));
    let mut file = serde_yaml::Mapping::new();
    file.insert(
        "groups".into(),
        serde_yaml::Value::Sequence(vec![group.into()]),
    );
    let p = dir.join("storage_alerts.yml");
    std::fs::write(&p, serde_yaml::to_string(&file).unwrap()).unwrap();
    p
}

/// Starts `prefix... depin-orcha run args...` in `cwd` (no rules/ there, so no controller)
/// and waits for the address it logs.
fn start(prefix: &[&str], args: &[String], cwd: &Path) -> Orcha {
    let bin = bin();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.current_dir(cwd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Orcha::launch(cmd, &args)
}

fn metric(orcha: &Orcha, family: &str) -> f64 {
    let text = orcha.get("/metrics").body;
    metric_value(&text, family, &[]).unwrap_or_else(|| panic!("{family} missing from /metrics"))
}

fn query_one(orcha: &Orcha, q: &str) -> f64 {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = orcha.get(&format!("/api/v1/query?query={enc}"));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    r.json()["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Samples of one demo series held: grows by one per scrape while the loops run.
const HELD: &str = r#"count_over_time(depin_adapter_up{node="golem"}[1h])"#;

fn firing(orcha: &Orcha, alertname: &str) -> bool {
    let j = orcha.get("/api/v1/alerts").json();
    j["data"]["alerts"].as_array().is_some_and(|a| {
        a.iter()
            .any(|a| a["labels"]["alertname"] == alertname && a["state"] == "firing")
    })
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{secs} s passed without {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Log lines received so far.
fn drain(orcha: &Orcha, into: &mut Vec<String>) {
    while let Ok(l) = orcha.log.try_recv() {
        into.push(l);
    }
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_counted_alerted_and_survived() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs as a disk to fill needs root");
        return;
    }
    let dir = temp_dir("storage-full");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&data)
        .stderr(Stdio::piped())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: no mount command: {e}");
            return;
        }
    }
    let _unmount = Unmount(data.clone());
    let args = vec![
        "--config.file".into(),
        fast_demo(&dir).display().to_string(),
        "--rules.file".into(),
        storage_alerts(&dir).display().to_string(),
        "--storage.path".into(),
        data.display().to_string(),
        "--storage.snapshot-interval".into(),
        "2s".into(),
    ];
    let orcha = start(&[], &args, &dir);
    orcha.wait_ready();
    wait_until("two scrapes stored", 10, || query_one(&orcha, HELD) >= 2.0);
    assert_eq!(metric(&orcha, "depin_tsdb_wal_write_failures_total"), 0.0);
    assert!(!firing(&orcha, "DepinStorageWriteFailing"));

    // Fill the disk to the last byte.
    let filler = data.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
        // Whatever half block fitted stays; an fsync error is the same full disk.
        let _ = f.sync_all();
    }
    let held_at_fill = query_one(&orcha, HELD);
    wait_until("WAL write failures on /metrics", 15, || {
        metric(&orcha, "depin_tsdb_wal_write_failures_total") > 0.0
    });
    wait_until("DepinStorageWriteFailing firing", 15, || {
        firing(&orcha, "DepinStorageWriteFailing")
    });
    // The loops go on: polls land in memory, queries answer, the process is healthy.
    wait_until("polls stored while the disk is full", 10, || {
        query_one(&orcha, HELD) >= held_at_fill + 3.0
    });
    assert_eq!(orcha.get("/-/healthy").status, 200);
    assert!(metric(&orcha, "depin_tsdb_snapshot_failures_total") > 0.0);
    let mut log = Vec::new();
    drain(&orcha, &mut log);
    let wal_line = log
        .iter()
        .find(|l| l.contains("write-ahead log write failed"))
        .unwrap_or_else(|| panic!("no log line for the failed write in:\n{}", log.join("\n")));
    assert!(
        wal_line.contains(&data.display().to_string()) && wal_line.contains("No space left"),
        "the line names the file and the error: {wal_line}"
    );

    // Free the disk; once a snapshot succeeds, what was polled meanwhile is durable too.
    std::fs::remove_file(&filler).unwrap();
    wait_until("a snapshot after the disk was freed", 15, || {
        drain(&orcha, &mut log);
        log.iter()
            .any(|l| l.contains("tsdb snapshots succeed again"))
    });
    let held = query_one(&orcha, HELD);
    orcha.kill9();
    let orcha = start(&[], &args, &dir);
    orcha.wait_ready();
    let after = query_one(&orcha, HELD);
    assert!(
        after >= held,
        "{held} samples before the kill -9, {after} after the restart"
    );
    println!(
        "crash_storage: full disk survived; {held_at_fill} samples when it filled, {held} before the kill, {after} after"
    );
}

#[test]
fn a_read_only_storage_directory_fails_snapshots_not_samples() {
    let mut prefix: Vec<&str> = Vec::new();
    if is_root() {
        if !Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipped: root ignores directory permissions and setpriv (util-linux) to run as nobody is missing");
            return;
        }
        prefix = vec![
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ];
        // A checkout under a private home directory is out of nobody's reach.
        let runs = Command::new(prefix[0])
            .args(&prefix[1..])
            .arg(bin())
            .arg("--version")
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !runs {
            eprintln!(
                "skipped: as root this test runs the binary as nobody, who cannot run {}",
                bin().display()
            );
            return;
        }
    }
    let dir = temp_dir("storage-ro");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    }
    let args = vec![
        "--config.file".into(),
        fast_demo(&dir).display().to_string(),
        "--rules.file".into(),
        storage_alerts(&dir).display().to_string(),
        "--storage.path".into(),
        data.display().to_string(),
        "--storage.snapshot-interval".into(),
        "1s".into(),
    ];
    let orcha = start(&prefix, &args, &dir);
    orcha.wait_ready();
    wait_until("two scrapes stored", 10, || query_one(&orcha, HELD) >= 2.0);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    wait_until("snapshot failures on /metrics", 10, || {
        metric(&orcha, "depin_tsdb_snapshot_failures_total") > 0.0
    });
    wait_until("DepinStorageSnapshotFailing firing", 15, || {
        firing(&orcha, "DepinStorageSnapshotFailing")
    });
    let held_ro = query_one(&orcha, HELD);
    wait_until("polls stored in the read-only directory", 10, || {
        query_one(&orcha, HELD) >= held_ro + 2.0
    });
    // The open segment stays writable: nothing is lost, nothing counts as a WAL failure.
    assert_eq!(metric(&orcha, "depin_tsdb_wal_write_failures_total"), 0.0);
    let mut log = Vec::new();
    drain(&orcha, &mut log);
    assert!(
        log.iter().any(|l| l.contains("tsdb snapshot failed")
            && l.contains(&data.display().to_string())
            && l.contains("ermission denied")),
        "no log line naming the directory and the error in:\n{}",
        log.join("\n")
    );
    let held = query_one(&orcha, HELD);
    orcha.kill9();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let orcha = start(&prefix, &args, &dir);
    orcha.wait_ready();
    let after = query_one(&orcha, HELD);
    assert!(
        after >= held,
        "{held} samples before the kill -9, {after} after the restart"
    );
}

fn cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[test]
fn kill_9_during_snapshots_keeps_a_whole_snapshot_and_every_read_sample() {
    let dir = temp_dir("crash-snapshot");
    let data = dir.join("data");
    let args = vec![
        "--config.file".into(),
        fast_demo(&dir).display().to_string(),
        "--storage.path".into(),
        data.display().to_string(),
        "--storage.snapshot-interval".into(),
        "100ms".into(),
    ];
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash_storage: seed {seed} (CRASH_SEED to replay)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    // Two days of 50 noisy series backfilled first, so each snapshot is about 2 MB and takes
    // long enough to be hit.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut om = String::from("# TYPE bulk gauge\n");
    for i in 0..50 {
        for k in 0..6000u64 {
            let v: f64 = rng.random_range(0.0..1000.0);
            om.push_str(&format!(
                "bulk{{i=\"{i}\"}} {v} {}\n",
                now - 2 * 86400 + k * 30
            ));
        }
    }
    om.push_str("# EOF\n");
    let om_file = dir.join("bulk.om");
    std::fs::write(&om_file, om).unwrap();
    let imported = Command::new(bin())
        .args(["tsdb", "import"])
        .arg(&om_file)
        .arg("--storage.path")
        .arg(&data)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let snapshot_bytes = std::fs::metadata(data.join("snapshot")).map_or(0, |m| m.len());
    let mut before = 0.0;
    let mut mid_write = 0;
    for cycle in 0..=cycles() {
        let orcha = start(&[], &args, &dir);
        orcha.wait_ready();
        let mut log = Vec::new();
        drain(&orcha, &mut log);
        let damaged: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("damaged tsdb file") && l.contains("snapshot"))
            .collect();
        assert!(
            damaged.is_empty(),
            "cycle {cycle}: the snapshot was damaged: {damaged:?}"
        );
        let corrupt: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snapshot.corrupt"))
            .collect();
        assert!(corrupt.is_empty(), "cycle {cycle}: {corrupt:?}");
        let held = query_one(&orcha, HELD);
        assert!(
            held >= before,
            "cycle {cycle}: {before} samples read before the kill -9, {held} after the restart"
        );
        if cycle == cycles() {
            break;
        }
        // Let it scrape and snapshot a while, then kill at a random moment.
        wait_until("a scrape after the start", 10, || {
            query_one(&orcha, HELD) > held
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1000)));
        before = query_one(&orcha, HELD);
        if cycle % 2 == 1 {
            // Aim: a snapshot starts by opening the next WAL segment; wait until one appears,
            // then kill within the next 25 ms: here its temp file appears ~3 ms after the
            // segment and is renamed 10-30 ms later, so the kill lands while the snapshot is
            // being captured, written, fsynced or renamed.
            let newest = || {
                std::fs::read_dir(&data)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| e.file_name().to_str().map(String::from))
                            .filter(|n| n.starts_with("wal-"))
                            .max()
                    })
                    .ok()
                    .flatten()
            };
            let was = newest();
            let deadline = Instant::now() + Duration::from_secs(5);
            while newest() == was && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..25_000)));
        }
        orcha.kill9();
        if data.join("snapshot.tmp").exists() {
            mid_write += 1;
        }
    }
    println!(
        "crash_storage: {} kill -9 during 100 ms snapshots of {snapshot_bytes} bytes survived ({mid_write} left a snapshot.tmp: killed while one was written); {before} samples read before the last kill all kept",
        cycles()
    );
}

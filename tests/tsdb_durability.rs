//! Durability of the tsdb under `Options::path`: what a restart, a torn or damaged WAL record, a
//! damaged snapshot and a `kill -9` in the middle of ingestion leave behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use depin_orcha::labels::{Labels, Matcher};
use depin_orcha::tsdb::{stale_nan, Db, Options, Queryable};

fn opts(dir: &Path) -> Options {
    Options {
        path: Some(dir.to_path_buf()),
        ..Options::default()
    }
}

/// Everything in the database, values as bits so NaNs compare.
fn dump(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
    db.select(&[], i64::MIN, i64::MAX)
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Batch `k`: a scrape of four series at `k * step_ms` (5 s in most tests), one of them with a
/// staleness marker now and then and one with full-precision floats.
fn batch_at(k: i64, step_ms: i64) -> Vec<(Labels, i64, f64)> {
    let t = 1_700_000_000_000 + k * step_ms;
    let l = |n: &str, i: &str| Labels::from_pairs([("__name__", n), ("instance", i)]);
    vec![
        (l("depin_earnings_total", "storj"), t, k as f64 * 0.001),
        (l("depin_usage_cpu_cores", "golem"), t, (k % 7) as f64 / 3.0),
        (
            l("depin_adapter_up", "grass"),
            t,
            if k % 11 == 10 { stale_nan() } else { 1.0 },
        ),
        (
            l("depin_token_price_usd", "storj"),
            t,
            0.5 + k as f64 * 1e-7,
        ),
    ]
}

fn write(db: &Db, ks: std::ops::Range<i64>) {
    write_at(db, ks, 5000)
}

fn write_at(db: &Db, ks: std::ops::Range<i64>, step_ms: i64) {
    for k in ks {
        let r = db.append_batch(&batch_at(k, step_ms)).unwrap();
        assert!(r.rejected.is_empty());
    }
}

fn expected(ks: std::ops::Range<i64>) -> Vec<(String, Vec<(i64, u64)>)> {
    expected_at(ks, 5000)
}

fn expected_at(ks: std::ops::Range<i64>, step_ms: i64) -> Vec<(String, Vec<(i64, u64)>)> {
    let db = Db::in_memory();
    write_at(&db, ks, step_ms);
    dump(&db)
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// The segment the database is logging to (the newest one).
fn current_wal(dir: &Path) -> PathBuf {
    let w: Vec<PathBuf> = files(dir, "wal-")
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("corrupt"))
        .collect();
    w.last().cloned().expect("a WAL segment")
}

#[test]
fn reopening_without_a_snapshot_gives_identical_samples() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..300);
    }
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(dump(&db), expected(0..300));
    let rep = db.open_report();
    assert_eq!(
        (rep.wal_records, rep.wal_samples, rep.damaged.len()),
        (300, 1200, 0)
    );
    // It keeps logging: a second restart still has everything.
    write(&db, 300..310);
    drop(db);
    assert_eq!(dump(&Db::open(opts(dir.path())).unwrap()), expected(0..310));
}

#[test]
fn a_torn_last_record_loses_only_the_last_batch_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (good_len, full_len, wal_name) = {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..20);
        let wal = current_wal(dir.path());
        let good = std::fs::metadata(&wal).unwrap().len();
        write(&db, 20..21);
        (
            good,
            std::fs::metadata(&wal).unwrap().len(),
            wal.file_name().unwrap().to_owned(),
        )
    };
    let bytes = std::fs::read(dir.path().join(&wal_name)).unwrap();
    assert!(full_len > good_len + 8);
    let before = expected(0..20);
    for cut in good_len..full_len {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(&wal_name), &bytes[..cut as usize]).unwrap();
        let db = Db::open(opts(d.path())).unwrap();
        assert_eq!(dump(&db), before, "cut at {cut}");
        let rep = db.open_report().clone();
        if cut == good_len {
            assert!(rep.damaged.is_empty());
            continue;
        }
        assert_eq!(rep.damaged.len(), 1, "cut at {cut}");
        assert_eq!(rep.damaged[0].offset, good_len);
        let moved = rep.damaged[0].moved_to.clone().expect("moved aside");
        assert!(moved.to_string_lossy().contains(".corrupt-") && moved.exists());
        // The good part was saved in a snapshot: the next start is clean and complete.
        write(&db, 21..22);
        drop(db);
        let again = Db::open(opts(d.path())).unwrap();
        assert!(again.open_report().damaged.is_empty());
        let mut want = expected(0..20);
        let extra = expected(21..22);
        for (w, e) in want.iter_mut().zip(extra) {
            w.1.extend(e.1);
        }
        assert_eq!(dump(&again), want);
    }
}

/// Batches `ks` without batch `gap`.
fn expected_without(ks: std::ops::Range<i64>, gap: i64) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut want = expected(ks.start..gap);
    for (w, e) in want.iter_mut().zip(expected(gap + 1..ks.end)) {
        w.1.extend(e.1);
    }
    want
}

#[test]
fn a_flipped_byte_costs_only_the_record_it_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let offsets: Vec<u64> = {
        let db = Db::open(opts(dir.path())).unwrap();
        let wal = current_wal(dir.path());
        (0..10)
            .map(|k| {
                let at = std::fs::metadata(&wal).unwrap().len();
                write(&db, k..k + 1);
                at
            })
            .collect()
    };
    let wal = current_wal(dir.path());
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[offsets[6] as usize + 12] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(dump(&db), expected_without(0..10, 6));
    let rep = db.open_report();
    assert_eq!(rep.damaged.len(), 1);
    assert_eq!(rep.damaged[0].offset, offsets[6]);
    assert_eq!(rep.damaged[0].reason, "checksum mismatch");
    assert_eq!(
        files(dir.path(), "wal-")
            .iter()
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .count(),
        1
    );
}

#[test]
fn snapshot_plus_wal_restores_everything_and_drops_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..150);
        let size = db.snapshot().unwrap();
        assert!(size > 0);
        write(&db, 150..200);
        assert_eq!(db.stats().snapshots, 1);
    }
    let wal_files = files(dir.path(), "wal-");
    assert_eq!(
        wal_files.len(),
        1,
        "covered segments are deleted: {wal_files:?}"
    );
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(dump(&db), expected(0..200));
    let rep = db.open_report();
    assert_eq!((rep.snapshot_series, rep.wal_records), (4, 50));

    // Snapshot, then appends that only reach the WAL, then another restart.
    db.snapshot().unwrap();
    write(&db, 200..210);
    drop(db);
    assert_eq!(dump(&Db::open(opts(dir.path())).unwrap()), expected(0..210));
}

#[test]
fn a_damaged_snapshot_loads_its_good_series_and_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..100);
        db.snapshot().unwrap();
    }
    let snap = dir.path().join("snapshot");
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() - 30]).unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let rep = db.open_report().clone();
    assert_eq!(rep.damaged.len(), 1);
    assert_eq!(rep.damaged[0].path, snap);
    assert!(
        rep.snapshot_series >= 2 && rep.snapshot_series < 4,
        "{rep:?}"
    );
    let got = dump(&db);
    let want = expected(0..100);
    assert_eq!(got.len(), rep.snapshot_series);
    for s in &got {
        assert!(want.contains(s), "{} differs", s.0);
    }
    // A new snapshot was written at once; the next start is clean.
    drop(db);
    let again = Db::open(opts(dir.path())).unwrap();
    assert!(again.open_report().damaged.is_empty());
    assert_eq!(dump(&again), got);
}

#[test]
fn ingest_scrape_is_durable_and_keeps_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let fams = |names: &[&str]| {
        let r = prometheus::Registry::new();
        for n in names {
            let g = prometheus::Gauge::new(*n, "h").unwrap();
            g.set(3.0);
            r.register(Box::new(g)).unwrap();
        }
        r.gather()
    };
    {
        let db = Db::open(opts(dir.path())).unwrap();
        db.ingest_scrape(1000, &fams(&["a", "b"])).unwrap();
        db.ingest_scrape(6000, &fams(&["a"])).unwrap();
    }
    let db = Db::open(opts(dir.path())).unwrap();
    let b = db.select(&[Matcher::equal("__name__", "b")], 0, 10_000);
    assert_eq!(b[0].samples.len(), 2);
    assert!(depin_orcha::tsdb::is_stale_nan(b[0].samples[1].v));
}

const CHILD_DIR: &str = "DEPIN_ORCHA_TSDB_KILL_TEST_DIR";
const CHILD_STEP: &str = "DEPIN_ORCHA_TSDB_KILL_TEST_STEP_MS";

/// Not a test of its own: the body of the child process of the `kill_9_*` tests. It ingests
/// batches forever (`CHILD_STEP` apart) and prints the number of each batch once its commit
/// has returned.
#[test]
#[ignore = "helper run in a child process by the kill_9_* tests"]
fn child_ingest_loop() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let step: i64 = std::env::var(CHILD_STEP)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let db = Db::open(opts(Path::new(&dir))).unwrap();
    for k in 0.. {
        write_at(&db, k..k + 1, step);
        println!("committed {k}");
        if k % 25 == 24 {
            db.snapshot().unwrap();
        }
    }
}

/// Runs the child with batches `step_ms` apart, kills it with SIGKILL once it reported `at_least`
/// batches committed, and checks what a restart finds.
fn kill_9_child(step_ms: i64, at_least: i64) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_ingest_loop",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_STEP, step_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut last_committed = -1i64;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("committed ") {
            last_committed = k.trim().parse().unwrap();
            if last_committed >= at_least {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(last_committed >= at_least, "child stopped early");

    let db = Db::open(opts(dir.path())).unwrap();
    assert!(
        db.open_report().damaged.is_empty(),
        "{:?}",
        db.open_report()
    );
    let got = dump(&db);
    // Every series holds a prefix of the batches: all that were reported committed, and maybe
    // the few the child committed after the last line we read, never half a batch.
    let counts: Vec<usize> = got.iter().map(|s| s.1.len()).collect();
    assert_eq!(got.len(), 4);
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "a batch was torn: {counts:?}"
    );
    let n = counts[0] as i64;
    assert!(
        n > last_committed,
        "lost committed batches: have {n}, committed {}",
        last_committed + 1
    );
    assert_eq!(got, expected_at(0..n, step_ms));
}

#[test]
fn kill_9_loses_at_most_the_batch_being_written() {
    kill_9_child(5000, 60);
}

/// Batches ten minutes apart: a block file is written every dozen batches, and the kill lands
/// anywhere in writing one, renaming it or the snapshot after it.
#[test]
fn kill_9_while_block_files_are_written_loses_nothing_committed() {
    for at_least in [150, 277, 400] {
        kill_9_child(600_000, at_least);
    }
}

#[test]
fn failed_snapshots_leave_no_empty_segments_and_every_kept_segment_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    write(&db, 0..10);
    // The snapshot's temp file cannot be created: every snapshot fails.
    std::fs::create_dir(dir.path().join("snapshot.tmp")).unwrap();
    let segment_sizes = || -> Vec<u64> {
        files(dir.path(), "wal-")
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    };
    for _ in 0..5 {
        assert!(db.snapshot().is_err());
    }
    let sizes = segment_sizes();
    assert!(
        sizes.iter().filter(|&&s| s == 0).count() <= 1,
        "failed snapshots left empty segments: {sizes:?}"
    );
    // Appends between failed snapshots: each kept segment holds data and is counted.
    for k in 10..14 {
        write(&db, k..k + 1);
        assert!(db.snapshot().is_err());
    }
    let sizes = segment_sizes();
    assert!(sizes.len() >= 4, "{sizes:?}");
    assert_eq!(db.gauges().wal_bytes, sizes.iter().sum::<u64>());
    assert_eq!(db.gauges().snapshot_failures, 9);
    // The disk recovers: one snapshot covers them all.
    std::fs::remove_dir(dir.path().join("snapshot.tmp")).unwrap();
    db.snapshot().unwrap();
    assert_eq!(segment_sizes().len(), 1);
    assert_eq!(db.gauges().wal_bytes, segment_sizes().iter().sum::<u64>());
    drop(db);
    assert_eq!(dump(&Db::open(opts(dir.path())).unwrap()), expected(0..14));
}

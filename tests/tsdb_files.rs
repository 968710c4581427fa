//! The tsdb's history in block files: what queries see across memory and files, what a restart
//! reads, how damage in a block stays in its chunk (or its file), retention and the size cap on
//! files, and the running counters against a full walk.

use std::path::{Path, PathBuf};

use depin_orcha::labels::{Labels, Matcher};
use depin_orcha::tsdb::{stale_nan, Db, Options, Queryable, BLOCK_SPAN_MS};

const H: i64 = 3600 * 1000;
const T0: i64 = 1_700_000_000_000;

fn opts(dir: &Path) -> Options {
    Options {
        path: Some(dir.to_path_buf()),
        retention_ms: 365 * 24 * H,
        ..Options::default()
    }
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        (
            "__name__",
            if i.is_multiple_of(2) { "even" } else { "odd" }.to_string(),
        ),
        ("i", i.to_string()),
    ])
}

/// Scrape `k` (one a minute): `n` series, one of them stale now and then, one starting late.
fn batch(k: i64, n: usize) -> Vec<(Labels, i64, f64)> {
    let t = T0 + k * 60_000;
    (0..n)
        .filter(|&i| i != 3 || k > 500)
        .map(|i| {
            let v = match i % 3 {
                0 => k as f64 * 0.25,
                1 if k % 97 == 96 => stale_nan(),
                1 => ((k * 31 + i as i64) % 1000) as f64 / 1000.0,
                _ => 1.0,
            };
            (labels(i), t, v)
        })
        .collect()
}

fn write(db: &Db, ks: std::ops::Range<i64>, n: usize) {
    for k in ks {
        let r = db.append_batch(&batch(k, n)).unwrap();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    }
}

/// Everything in the range, values as bits so NaNs compare.
fn dump(db: &dyn Queryable, mint: i64, maxt: i64) -> Vec<(String, Vec<(i64, u64)>)> {
    db.select(&[], mint, maxt)
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

fn reference(ks: std::ops::Range<i64>, n: usize) -> Db {
    let db = Db::open(Options {
        retention_ms: 365 * 24 * H,
        ..Options::default()
    })
    .unwrap();
    write(&db, ks, n);
    db
}

fn blocks(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("block-") && !n.contains('.')
        })
        .collect();
    v.sort();
    v
}

/// Queries the two databases the same ways and compares the answers.
fn assert_same(got: &Db, want: &Db, what: &str) {
    let newest = T0 + 3000 * 60_000;
    for (mint, maxt) in [
        (i64::MIN, i64::MAX),
        (T0 + 7 * H + 1, T0 + 9 * H),
        (newest - H, newest),
        (T0 + 2 * H - 60_000, T0 + 2 * H + 60_000),
        (T0 - H, T0 - 1),
    ] {
        assert_eq!(
            dump(got, mint, maxt),
            dump(want, mint, maxt),
            "{what}: select [{mint}, {maxt}]"
        );
        assert_eq!(
            got.series(&[Matcher::equal("__name__", "odd")], mint, maxt),
            want.series(&[Matcher::equal("__name__", "odd")], mint, maxt),
            "{what}: series [{mint}, {maxt}]"
        );
        assert_eq!(
            got.label_values("i", &[], mint, maxt),
            want.label_values("i", &[], mint, maxt),
            "{what}: label values [{mint}, {maxt}]"
        );
    }
}

#[test]
fn history_goes_to_block_files_and_reads_back_as_one_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(0..3000, 8);
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..3000, 8);
        let g = db.gauges();
        // 50 hours of samples: all 2 h periods but the last two or three went to files, and
        // the one whole UTC day among them (the data starts at 22:13) was merged into one.
        assert!(g.blocks_written >= 23, "{g:?}");
        assert!(g.blocks >= 10 && g.blocks <= 14, "{g:?}");
        assert_eq!(g.blocks as usize, blocks(dir.path()).len());
        // Memory holds the head's range (3 h) and what is not in a file yet, not 50 hours.
        assert!(g.head_samples < 8 * 6 * 60, "{g:?}");
        assert_same(&db, &want, "before the restart");
    }
    let db = Db::open(opts(dir.path())).unwrap();
    let rep = db.open_report().clone();
    assert!(rep.damaged.is_empty(), "{rep:?}");
    assert!(rep.blocks >= 10);
    // The WAL and the snapshot cover the head only: a few hours, not the history.
    assert!(rep.wal_samples < 8 * 6 * 60, "{rep:?}");
    assert_same(&db, &want, "after the restart");
    // It goes on: appends after the restart keep the order the files set.
    assert!(db.append(&labels(0), T0 + 2999 * 60_000, 1.0).is_err());
    write(&db, 3000..3100, 8);
    drop(db);
    let db = Db::open(opts(dir.path())).unwrap();
    let want = reference(0..3100, 8);
    assert_eq!(
        dump(&db, i64::MIN, i64::MAX),
        dump(&want, i64::MIN, i64::MAX)
    );
}

#[test]
fn the_head_keeps_the_range_readers_ask_for_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    write(&db, 0..3000, 4);
    let short = db.gauges().head_samples;
    db.require_head_range(24 * H);
    assert_eq!(db.head_range_ms(), 25 * H, "the margin is added");
    let long = db.gauges().head_samples;
    // A day of samples is read back from the files at once.
    assert!(long >= 4 * 24 * 60, "{short} -> {long}");
    write(&db, 3000..3060, 4);
    assert!(db.gauges().head_samples >= 4 * 24 * 60);
    drop(db);
    // After a restart the default range is read back; the caller asks again.
    let db = Db::open(opts(dir.path())).unwrap();
    assert!(db.gauges().head_samples < long);
    let want = reference(0..3060, 4);
    assert_eq!(
        dump(&db, i64::MIN, i64::MAX),
        dump(&want, i64::MIN, i64::MAX)
    );
}

#[test]
fn a_flipped_byte_in_a_chunk_costs_that_chunk_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..3000, 8);
    }
    let files = blocks(dir.path());
    let victim = &files[5];
    let mut bytes = std::fs::read(victim).unwrap();
    // Just after the 8-byte magic: the first chunk of the first series of the file.
    bytes[12] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    assert!(
        db.open_report().damaged.is_empty(),
        "chunks are checked when read"
    );
    let want = reference(0..3000, 8);
    let got = dump(&db, i64::MIN, i64::MAX);
    let all = dump(&want, i64::MIN, i64::MAX);
    let mut lost_series = 0;
    for (g, w) in got.iter().zip(&all) {
        assert_eq!(g.0, w.0);
        if g.1 != w.1 {
            lost_series += 1;
            // What is missing is one period of this series, nothing else.
            let missing: Vec<_> = w.1.iter().filter(|x| !g.1.contains(x)).collect();
            assert!(missing.len() <= (BLOCK_SPAN_MS / 60_000) as usize);
            assert!(g.1.iter().all(|x| w.1.contains(x)));
        }
    }
    assert_eq!(lost_series, 1);
    assert_eq!(db.gauges().chunks_unreadable, 1);
    // Read again: skipped again, counted once.
    dump(&db, i64::MIN, i64::MAX);
    assert_eq!(db.gauges().chunks_unreadable, 1);
}

#[test]
fn a_damaged_block_index_costs_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..3000, 8);
    }
    let files = blocks(dir.path());
    let victim = files[5].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 60] ^= 0x01; // in the index, just before the footer
    std::fs::write(&victim, &bytes).unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let rep = db.open_report().clone();
    assert_eq!(rep.damaged.len(), 1, "{rep:?}");
    assert_eq!(rep.damaged[0].path, victim);
    assert!(rep.damaged[0].moved_to.as_ref().unwrap().exists());
    assert_eq!(blocks(dir.path()).len(), files.len() - 1);
    // Every series keeps everything outside that one period.
    let want = reference(0..3000, 8);
    let got = dump(&db, i64::MIN, i64::MAX);
    for (g, w) in got.iter().zip(dump(&want, i64::MIN, i64::MAX)) {
        let missing = w.1.len() - g.1.len();
        assert!(
            missing <= (BLOCK_SPAN_MS / 60_000) as usize + 1,
            "{}: {missing}",
            g.0
        );
    }
}

#[test]
fn retention_and_the_size_cap_drop_whole_files_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options {
        retention_ms: 10 * H,
        ..opts(dir.path())
    })
    .unwrap();
    write(&db, 0..3000, 8);
    let newest = T0 + 2999 * 60_000;
    let oldest = db.select(&[], i64::MIN, i64::MAX)[0].samples[0].t;
    assert!(
        oldest >= newest - 10 * H - BLOCK_SPAN_MS,
        "{}",
        (newest - oldest) / H
    );
    assert!(oldest <= newest - 10 * H);
    let st = db.stats();
    assert!(st.blocks <= 6, "{st:?}");
    assert!(st.retention_dropped_samples > 0);
    drop(db);

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    write(&db, 0..3000, 8);
    let full = db.stats();
    drop(db);
    let cap = full.block_bytes / 2 + full.total_bytes + full.wal_bytes;
    let db = Db::open(Options {
        max_bytes: Some(cap),
        ..opts(dir.path())
    })
    .unwrap();
    write(&db, 3000..3001, 8);
    let st = db.stats();
    assert!(
        st.block_bytes + st.total_bytes + st.wal_bytes <= cap,
        "{st:?}"
    );
    assert!(st.blocks < full.blocks && st.blocks > 0);
    // The newest data stays, the oldest went.
    let got = db.select(&[Matcher::equal("i", "0")], i64::MIN, i64::MAX);
    assert_eq!(got[0].samples.last().unwrap().t, T0 + 3000 * 60_000);
    assert!(got[0].samples[0].t > T0 + 10 * H);
}

/// The running counters `/metrics` reads equal a walk over everything, whatever happened.
#[test]
fn running_counters_equal_a_full_walk() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 42u64;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let check = |db: &Db, when: &str| {
        let g = db.gauges();
        let st = db.stats();
        assert_eq!(g.series, st.series, "{when}");
        assert_eq!(g.head_samples, st.samples, "{when}");
        assert_eq!(g.head_chunks, st.chunks, "{when}");
        assert_eq!(g.memory_bytes, st.total_bytes, "{when}");
        assert_eq!(g.blocks, st.blocks, "{when}");
        assert_eq!(g.block_bytes, st.block_bytes, "{when}");
        assert_eq!(g.wal_bytes, st.wal_bytes, "{when}");
    };
    let mut k = 0i64;
    for round in 0..6 {
        let db = Db::open(Options {
            retention_ms: 20 * H,
            max_bytes: (round == 4).then_some(60_000),
            ..opts(dir.path())
        })
        .unwrap();
        check(&db, &format!("round {round} after open"));
        for _ in 0..(200 + rnd(800)) {
            k += 1 + rnd(3) as i64;
            let mut b = batch(k, 3 + rnd(6) as usize);
            b.retain(|_| rnd(10) > 0);
            db.append_batch(&b).unwrap();
        }
        check(&db, &format!("round {round} after appends"));
        if rnd(2) == 0 {
            db.snapshot().unwrap();
            check(&db, &format!("round {round} after a snapshot"));
        }
        if round == 3 {
            db.require_head_range(30 * H);
            check(&db, "after the head range grew");
        }
    }
}

#[test]
fn samples_in_a_block_and_in_the_wal_are_read_once() {
    // A crash between writing a block and the next snapshot leaves its samples in both.
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 0..200, 4);
        db.snapshot().unwrap();
        write(&db, 200..230, 4);
    }
    // The state just before the next period is written to a file...
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, before.path().join(p.file_name().unwrap())).unwrap();
    }
    {
        let db = Db::open(opts(dir.path())).unwrap();
        write(&db, 230..400, 4);
    }
    // ... plus the block files written after it, without the snapshot that followed them.
    for b in blocks(dir.path()) {
        std::fs::copy(&b, before.path().join(b.file_name().unwrap())).unwrap();
    }
    let db = Db::open(opts(before.path())).unwrap();
    assert!(db.open_report().damaged.is_empty());
    let want = reference(0..230, 4);
    assert_eq!(
        dump(&db, i64::MIN, i64::MAX),
        dump(&want, i64::MIN, i64::MAX)
    );
}

#[test]
fn blocks_merged_into_a_day_are_read_once_even_if_a_crash_left_them_behind() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    // Until 26.7 h after 22:13: the next day's 2 h blocks are written but not merged yet.
    write(&db, 0..1600, 4);
    let two_hour = blocks(dir.path());
    assert!(two_hour.len() >= 12, "{two_hour:?}");
    for b in &two_hour {
        std::fs::copy(b, saved.path().join(b.file_name().unwrap())).unwrap();
    }
    write(&db, 1600..2000, 4);
    let after = blocks(dir.path());
    assert!(
        after.len() < two_hour.len(),
        "the day was merged: {after:?}"
    );
    let want = reference(0..2000, 4);
    assert_eq!(
        dump(&db, i64::MIN, i64::MAX),
        dump(&want, i64::MIN, i64::MAX)
    );
    drop(db);
    // As if the process died after writing the merged block, before deleting what it merged.
    for e in std::fs::read_dir(saved.path()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let db = Db::open(opts(dir.path())).unwrap();
    assert!(db.open_report().damaged.is_empty());
    assert_eq!(
        blocks(dir.path()),
        after,
        "the merged blocks are deleted at open"
    );
    assert_eq!(
        dump(&db, i64::MIN, i64::MAX),
        dump(&want, i64::MIN, i64::MAX)
    );
    assert_eq!(db.gauges().blocks as usize, after.len());
}

#[test]
fn a_damaged_chunk_is_left_out_of_a_merged_day_and_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    write(&db, 0..1600, 4);
    // The first files hold 22:00-24:00 of the first day, then the 2 h blocks of the next.
    let victim = blocks(dir.path())[3].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[12] ^= 0x40; // the first chunk of the file's first series
    std::fs::write(&victim, &bytes).unwrap();
    write(&db, 1600..2000, 4);
    assert!(!victim.exists(), "the day holding {victim:?} was merged");
    assert_eq!(db.gauges().chunks_unreadable, 1);
    let check = |db: &Db| {
        let want = reference(0..2000, 4);
        let mut lost_series = 0;
        for (g, w) in dump(db, i64::MIN, i64::MAX)
            .iter()
            .zip(&dump(&want, i64::MIN, i64::MAX))
        {
            assert_eq!(g.0, w.0);
            assert!(g.1.iter().all(|x| w.1.contains(x)));
            if g.1 != w.1 {
                lost_series += 1;
                assert!(w.1.len() - g.1.len() <= (BLOCK_SPAN_MS / 60_000) as usize);
            }
        }
        assert_eq!(lost_series, 1);
    };
    check(&db);
    drop(db);
    let db = Db::open(opts(dir.path())).unwrap();
    check(&db);
    // The merged file holds no damaged chunk: nothing more is counted.
    assert_eq!(db.gauges().chunks_unreadable, 0);
}

/// A query over the whole retention reads every file, and `--query.max-samples` bounds it: the
/// same selection is refused with a limit one sample below what it holds.
#[test]
fn a_query_over_the_whole_retention_reads_the_files_within_the_query_limits() {
    use depin_orcha::promql::{parse, Engine, EngineOptions, Error, Value};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    write(&db, 0..3000, 4);
    db.snapshot().unwrap();
    assert!(db.gauges().blocks >= 10);
    let at = T0 + 2999 * 60_000;
    let expr = parse(r#"count_over_time(even{i="0"}[3000m])"#).unwrap();
    let engine = |max_samples| {
        Engine::new(EngineOptions {
            max_samples,
            ..EngineOptions::default()
        })
    };
    match engine(3000).instant_query(&db, &expr, at).unwrap().value {
        Value::Vector(v) => assert_eq!(v[0].v, 3000.0, "every sample of 50 hours"),
        other => panic!("{other:?}"),
    }
    let refused = engine(2999).instant_query(&db, &expr, at);
    assert!(
        matches!(refused, Err(Error::TooManySamples(_))),
        "{refused:?}"
    );
}

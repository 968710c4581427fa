//! Behaviour of the whole database as its users see it: what `select` returns, how appends are
//! admitted, staleness from scrapes, retention, the memory cap and concurrent readers.

use super::*;
use crate::labels::{MatchOp, Matcher};

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).unwrap()
}

#[test]
fn select_is_inclusive_sorted_and_spans_chunks() {
    let db = Db::in_memory();
    let b = l(&[("__name__", "up"), ("job", "b")]);
    let a = l(&[("__name__", "up"), ("job", "a")]);
    for i in 0..500 {
        db.append(&b, i * 1000, i as f64 * 0.5).unwrap();
        db.append(&a, i * 1000, 1.0).unwrap();
    }
    let other = l(&[("__name__", "up"), ("job", "c")]);
    db.append(&other, 999_000, 1.0).unwrap();

    let got = db.select(&[Matcher::equal("__name__", "up")], 100_000, 300_000);
    assert_eq!(
        got.iter()
            .map(|s| s.labels.get("job").unwrap())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let ts: Vec<i64> = got[1].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, (100..=300).map(|i| i * 1000).collect::<Vec<_>>());
    assert_eq!(got[1].samples[0].v, 50.0);
    assert!(
        db.stats().chunks >= 2 * (500 / crate::tsdb::chunk::CHUNK_SAMPLES as u64),
        "samples should be in sealed chunks"
    );
}

#[test]
fn appends_follow_prometheus_admission_rules() {
    let db = Db::in_memory();
    let s = l(&[("__name__", "x")]);
    db.append(&s, 10, 1.0).unwrap();
    db.append(&s, 10, 1.0).unwrap(); // exact repeat: no-op
    assert!(matches!(
        db.append(&s, 9, 1.0),
        Err(Error::OutOfOrder { t: 9, .. })
    ));
    assert!(matches!(
        db.append(&s, 10, 2.0),
        Err(Error::DuplicateTimestamp { t: 10, .. })
    ));
    db.append(&s, 11, stale_nan()).unwrap();
    db.append(&s, 11, stale_nan()).unwrap();
    let got = db.select(&[Matcher::equal("__name__", "x")], 0, 100);
    assert_eq!(got[0].samples.len(), 2);
    assert!(is_stale_nan(got[0].samples[1].v));
    let st = db.stats();
    assert_eq!(
        (st.out_of_order_samples, st.duplicate_timestamp_samples),
        (1, 1)
    );
}

#[test]
fn a_batch_keeps_good_samples_and_reports_bad_ones() {
    let db = Db::in_memory();
    let s = l(&[("__name__", "x")]);
    let batch = vec![
        (s.clone(), 5, 1.0),
        (s.clone(), 6, 2.0),
        (s.clone(), 4, 3.0),
        (s.clone(), 7, 4.0),
    ];
    let r = db.append_batch(&batch).unwrap();
    assert_eq!(r.appended, 3);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(
        (
            r.rejected[0].index,
            r.rejected[0].t,
            r.rejected[0].out_of_order
        ),
        (2, 4, true)
    );
}

#[test]
fn absent_labels_match_the_empty_string() {
    let db = Db::in_memory();
    let with = l(&[("__name__", "m"), ("a", "1")]);
    let without = l(&[("__name__", "m")]);
    db.append(&with, 1, 1.0).unwrap();
    db.append(&without, 1, 1.0).unwrap();
    let names = |ms: &[Matcher]| {
        db.series(ms, 0, 10)
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&[m(MatchOp::Equal, "a", "")]), vec!["m"]);
    assert_eq!(names(&[m(MatchOp::NotEqual, "a", "")]), vec![r#"m{a="1"}"#]);
    assert_eq!(names(&[m(MatchOp::Regex, "a", "1|")]).len(), 2);
    assert_eq!(names(&[m(MatchOp::NotRegex, "a", "1")]), vec!["m"]);
    assert_eq!(
        names(&[
            m(MatchOp::NotEqual, "a", "2"),
            Matcher::equal("__name__", "m")
        ])
        .len(),
        2
    );
}

#[test]
fn label_names_and_values_respect_the_time_range() {
    let db = Db::in_memory();
    db.append(&l(&[("__name__", "old"), ("job", "j1")]), 1_000, 1.0)
        .unwrap();
    db.append(&l(&[("__name__", "new"), ("zone", "z")]), 100_000, 1.0)
        .unwrap();
    assert_eq!(
        db.label_names(&[], 0, i64::MAX),
        vec!["__name__", "job", "zone"]
    );
    assert_eq!(
        db.label_names(&[], 50_000, i64::MAX),
        vec!["__name__", "zone"]
    );
    assert_eq!(db.label_values("__name__", &[], 0, 5_000), vec!["old"]);
    let sets = vec![vec![Matcher::equal("zone", "z")]];
    assert_eq!(db.label_values("__name__", &sets, 0, i64::MAX), vec!["new"]);
}

#[test]
fn a_chunk_spanning_the_whole_range_is_checked_sample_by_sample() {
    let db = Db::in_memory();
    let s = l(&[("__name__", "sparse")]);
    // Two samples far apart, sealed into one chunk by the others after them.
    db.append(&s, 0, 1.0).unwrap();
    for i in 0..(crate::tsdb::chunk::CHUNK_SAMPLES as i64 - 1) {
        db.append(&s, 1_000_000 + i, 1.0).unwrap();
    }
    assert_eq!(db.stats().chunks, 1);
    assert!(db.series(&[], 10, 900_000).is_empty());
    assert_eq!(db.series(&[], 0, 900_000).len(), 1);
}

fn registry_families(gauges: &[&str]) -> Vec<prometheus::proto::MetricFamily> {
    let r = prometheus::Registry::new();
    for g in gauges {
        let x = prometheus::Gauge::new(*g, "help").unwrap();
        x.set(2.5);
        r.register(Box::new(x)).unwrap();
    }
    r.gather()
}

#[test]
fn scrapes_mark_vanished_series_stale() {
    let db = Db::in_memory();
    assert_eq!(
        db.ingest_scrape(1000, &registry_families(&["g1", "g2"]))
            .unwrap(),
        2
    );
    assert_eq!(
        db.ingest_scrape(6000, &registry_families(&["g1"])).unwrap(),
        1
    );
    let g2 = db.select(&[Matcher::equal("__name__", "g2")], 0, 10_000);
    assert_eq!(g2[0].samples.len(), 2);
    assert!(is_stale_nan(g2[0].samples[1].v));
    assert_eq!(g2[0].samples[1].t, 6000);
    // Only once: the next scrape does not mark it again.
    db.ingest_scrape(11000, &registry_families(&["g1"]))
        .unwrap();
    assert_eq!(
        db.select(&[Matcher::equal("__name__", "g2")], 0, 20_000)[0]
            .samples
            .len(),
        2
    );
}

#[test]
fn retention_drops_old_chunks_and_empty_series() {
    let opts = Options {
        retention_ms: 3_600_000,
        ..Options::default()
    };
    let db = Db::open(opts).unwrap();
    let gone = l(&[("__name__", "gone")]);
    let kept = l(&[("__name__", "kept")]);
    db.append(&gone, 0, 1.0).unwrap();
    for i in 0..2000 {
        db.append(&kept, i * 5000, i as f64).unwrap();
    }
    let st = db.stats();
    assert_eq!(st.series, 1, "the series without recent samples is removed");
    assert!(db
        .select(&[Matcher::equal("__name__", "gone")], 0, i64::MAX)
        .is_empty());
    let kept_samples = &db.select(&[Matcher::equal("__name__", "kept")], 0, i64::MAX)[0].samples;
    let newest = 1999 * 5000;
    assert!(
        kept_samples[0].t >= newest - 3_600_000 - 120 * 5000,
        "only whole chunks older than the cutoff go"
    );
    assert!(kept_samples[0].t <= newest - 3_600_000);
    assert!(st.retention_dropped_chunks > 0);
    assert_eq!(
        st.retention_dropped_samples as usize + kept_samples.len(),
        2001,
        "every sample is kept or counted"
    );
}

#[test]
fn memory_cap_drops_oldest_chunks_first_and_counts_them() {
    let db = Db::open(Options {
        max_bytes: Some(20_000),
        ..Options::default()
    })
    .unwrap();
    let noisy = |i: i64| ((i * 7919) % 1009) as f64 * 1.000_001;
    for i in 0..3000 {
        db.append(&l(&[("__name__", "a")]), i * 1000, noisy(i))
            .unwrap();
        db.append(&l(&[("__name__", "b")]), i * 1000 + 500, noisy(i + 1))
            .unwrap();
    }
    let st = db.stats();
    assert!(st.total_bytes <= 20_000, "{st:?}");
    assert!(st.memory_dropped_chunks > 0 && st.memory_dropped_bytes > 0);
    // What is left is the newest data of both series.
    for s in db.select(&[], 0, i64::MAX) {
        assert_eq!(s.samples.last().unwrap().t / 1000, 2999, "{}", s.labels);
        assert!(s.samples[0].t > 1000 * 1000);
    }
}

#[test]
fn stats_count_samples_and_bytes() {
    let db = Db::in_memory();
    for i in 0..1000 {
        db.append(&l(&[("__name__", "c")]), i * 5000, 1.0).unwrap();
    }
    let st = db.stats();
    assert_eq!(
        (st.series, st.samples, st.chunks, st.head_samples),
        (
            1,
            1000,
            1000 / crate::tsdb::chunk::CHUNK_SAMPLES as u64,
            1000 % crate::tsdb::chunk::CHUNK_SAMPLES as u64
        )
    );
    assert!(st.chunk_bytes_per_sample < 0.2, "{st:?}");
    assert!(st.bytes_per_sample > st.chunk_bytes_per_sample);
    assert_eq!(st.min_time, Some(0));
    assert_eq!(st.max_time, Some(999 * 5000));
}

#[test]
fn readers_run_while_one_appender_writes() {
    let db = Arc::new(Db::in_memory());
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..3000 {
                for j in 0..5 {
                    db.append(&l(&[("__name__", "w"), ("j", &j.to_string())]), i, i as f64)
                        .unwrap();
                }
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let got = db.select(&[Matcher::equal("__name__", "w")], 0, i64::MAX);
        for s in &got {
            // Each series is a prefix 0..n of the writes: no gaps, nothing torn.
            assert!(s
                .samples
                .iter()
                .enumerate()
                .all(|(k, x)| x.t == k as i64 && x.v == k as f64));
        }
        let n = got.iter().map(|s| s.samples.len()).sum::<usize>();
        assert!(n >= last);
        last = n;
    }
    writer.join().unwrap();
    assert_eq!(
        db.select(&[], 0, i64::MAX)
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>(),
        15_000
    );
}

#[test]
fn a_series_removed_by_retention_comes_back_when_scraped_again() {
    let db = Db::open(Options {
        retention_ms: 3_600_000,
        ..Options::default()
    })
    .unwrap();
    let a = l(&[("__name__", "a")]);
    let b = l(&[("__name__", "b")]);
    let h10 = 10 * 3_600_000;
    // `a` is older than the retention allows and goes in the very commit that wrote it.
    db.append_batch(&[(a.clone(), 0, 1.0), (b.clone(), h10, 1.0)])
        .unwrap();
    assert!(db
        .select(&[Matcher::equal("__name__", "a")], 0, i64::MAX)
        .is_empty());
    // Same batch layout again: `a` must land in a live series, not in the removed one.
    db.append_batch(&[(a.clone(), h10, 2.0), (b.clone(), h10 + 5000, 1.0)])
        .unwrap();
    let got = db.select(&[Matcher::equal("__name__", "a")], 0, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![Sample { t: h10, v: 2.0 }]);
}

#[test]
fn repeated_queries_see_new_samples_and_decode_sealed_chunks_once() {
    // The decoded-chunk cache must never change an answer: the head grows between queries
    // and is cut into chunks, and every select must equal a fresh decode.
    let db = Db::in_memory();
    let x = l(&[("__name__", "x")]);
    let sel = [Matcher::equal("__name__", "x")];
    let mut expected = Vec::new();
    for i in 0..400i64 {
        let s = Sample {
            t: i * 60_000,
            v: (i * 7 % 13) as f64,
        };
        db.append(&x, s.t, s.v).unwrap();
        expected.push(s);
        if i % 37 == 0 || i == 399 {
            for _ in 0..2 {
                let got = db.select(&sel, 0, i64::MAX);
                assert_eq!(got[0].samples, expected, "after {} samples", i + 1);
                let window = db.select(&sel, (i - 150) * 60_000 + 1, i * 60_000);
                let want: Vec<Sample> = expected
                    .iter()
                    .filter(|s| s.t > (i - 150) * 60_000)
                    .copied()
                    .collect();
                assert_eq!(window[0].samples, want);
            }
        }
    }
    let (hits, misses) = db.decoded.lock().unwrap().counts();
    // 400 samples are 3 sealed chunks and a head: each chunk is decoded once, after that only
    // the head (new at every query round) misses.
    assert!(misses <= 3 + 2 * 12, "{misses} misses, {hits} hits");
    assert!(hits > misses, "{misses} misses, {hits} hits");
}

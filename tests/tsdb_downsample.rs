//! Downsampling (`Options::downsample_after_ms`, `--storage.downsample.after`): a month of a
//! counter with resets and of a gauge, written once raw and once downsampled; PromQL over
//! ranges aligned to the 5-minute windows gives the raw answers (`increase` of the counter,
//! min/max/avg of the gauge through its aggregate series), also after a restart, from fewer
//! samples on disk.

use std::path::Path;

use depin_orcha::labels::Labels;
use depin_orcha::promql::{parse, Engine, Value};
use depin_orcha::tsdb::downsample::WINDOW_MS;
use depin_orcha::tsdb::{Db, Options, Queryable};

const DAY: i64 = 86_400_000;
const H: i64 = 3_600_000;
/// A UTC midnight, so days and windows are aligned as in real use.
const T0: i64 = 1_767_225_600_000;
const DAYS: i64 = 30;
const SCRAPE: i64 = 30_000;

fn opts(dir: &Path, downsample_after_ms: Option<i64>) -> Options {
    Options {
        path: Some(dir.to_path_buf()),
        retention_ms: 60 * DAY,
        sync_wal: false,
        downsample_after_ms,
        ..Options::default()
    }
}

/// A counter that resets now and then (to values near 0) and a gauge, one scrape every 30 s.
fn fill(db: &Db) {
    let c = Labels::from_pairs([("__name__", "work_done_total"), ("node", "a")]);
    let g = Labels::from_pairs([("__name__", "temperature"), ("node", "a")]);
    let mut counter = 0.0;
    for k in 0..DAYS * DAY / SCRAPE {
        let t = T0 + k * SCRAPE;
        // Resets every 7 h 37 min, off the windows' edges, and one exactly on an edge a day.
        if k % 913 == 912 || k % 2880 == 1440 {
            counter = (k % 5) as f64;
        } else {
            counter += ((k * 7919) % 13) as f64 * 0.5;
        }
        let gauge = 40.0 + ((k * 104_729) % 1000) as f64 / 37.0 - (k % 200) as f64 * 0.01;
        let r = db
            .append_batch(&[(c.clone(), t, counter), (g.clone(), t, gauge)])
            .unwrap();
        assert!(r.rejected.is_empty());
    }
    db.snapshot().unwrap();
}

fn scalar(db: &Db, q: &str, t: i64) -> f64 {
    let expr = parse(q).unwrap();
    match Engine::default().instant_query(db, &expr, t).unwrap().value {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1, "{q} at {t}: {v:?}");
            v[0].v
        }
        other => panic!("{q}: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn samples_in_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("block-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The running counters behind `/metrics` equal a full walk, aggregate series included.
fn counters_match_the_walk(db: &Db, when: &str) {
    let (g, st) = (db.gauges(), db.stats());
    assert_eq!(g.series, st.series, "{when}");
    assert_eq!(g.head_samples, st.samples, "{when}");
    assert_eq!(g.memory_bytes, st.total_bytes, "{when}");
    assert_eq!(g.blocks, st.blocks, "{when}");
    assert_eq!(g.block_bytes, st.block_bytes, "{when}");
}

#[test]
fn a_downsampled_month_answers_aligned_queries_as_the_raw_one() {
    let raw_dir = tempfile::tempdir().unwrap();
    let ds_dir = tempfile::tempdir().unwrap();
    let raw = Db::open(opts(raw_dir.path(), None)).unwrap();
    fill(&raw);
    let ds = Db::open(opts(ds_dir.path(), Some(2 * DAY))).unwrap();
    fill(&ds);

    // Days 0..27 are downsampled: a day of the counter keeps far fewer of its 2,880 samples.
    let day5 = T0 + 5 * DAY;
    let raw_n = scalar(&raw, "count_over_time(work_done_total[1d])", day5);
    let ds_n = scalar(&ds, "count_over_time(work_done_total[1d])", day5);
    assert_eq!(raw_n, 2880.0);
    assert!(ds_n < raw_n / 4.0, "{ds_n} counter samples kept of {raw_n}");
    let g_n = scalar(&ds, "count_over_time(temperature[1d])", day5);
    // One per window, and the window ending at the next midnight is cut by the day's block
    // boundary into two (its sample at midnight is in the next day's block).
    assert_eq!(
        g_n,
        (DAY / WINDOW_MS + 1) as f64,
        "one gauge sample per window"
    );
    let (raw_bytes, ds_bytes) = (
        samples_in_files(raw_dir.path()),
        samples_in_files(ds_dir.path()),
    );
    assert!(
        ds_bytes < raw_bytes * 3 / 4,
        "{ds_bytes} bytes vs {raw_bytes}"
    );

    let check = |db_raw: &Db, db_ds: &Db| {
        let mut checked = 0;
        // Every 1 h from day 1 to day 27, and ranges of 5 m, 1 h and 1 d.
        for h in (24..27 * 24).step_by(5) {
            let t = T0 + h * H;
            for r in ["5m", "1h", "1d"] {
                let pairs = [
                    (
                        format!("increase(work_done_total[{r}])"),
                        format!("increase(work_done_total[{r}])"),
                    ),
                    (
                        format!("rate(work_done_total[{r}])"),
                        format!("rate(work_done_total[{r}])"),
                    ),
                    (
                        format!("resets(work_done_total[{r}])"),
                        format!("resets(work_done_total[{r}])"),
                    ),
                    (
                        format!("min_over_time(temperature[{r}])"),
                        format!("min_over_time(temperature:min_5m[{r}])"),
                    ),
                    (
                        format!("max_over_time(temperature[{r}])"),
                        format!("max_over_time(temperature:max_5m[{r}])"),
                    ),
                    (
                        format!("avg_over_time(temperature[{r}])"),
                        format!(
                            "sum_over_time(temperature:sum_5m[{r}]) / sum_over_time(temperature:count_5m[{r}])"
                        ),
                    ),
                    (
                        format!("count_over_time(temperature[{r}])"),
                        format!("sum_over_time(temperature:count_5m[{r}])"),
                    ),
                ];
                for (q_raw, q_ds) in pairs {
                    let (a, b) = (scalar(db_raw, &q_raw, t), scalar(db_ds, &q_ds, t));
                    assert!(
                        close(a, b),
                        "at day {} h {}: {q_raw} = {a}, {q_ds} = {b}",
                        h / 24,
                        h % 24
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 2000);
    };
    check(&raw, &ds);
    counters_match_the_walk(&ds, "after downsampling");
    // The last days stay raw: a query there sees every sample.
    let recent = T0 + (DAYS - 1) * DAY + 12 * H;
    assert_eq!(
        scalar(&ds, "count_over_time(work_done_total[1h])", recent),
        120.0
    );

    // After a restart the downsampled blocks and their aggregate series are read back.
    drop(ds);
    let ds = Db::open(opts(ds_dir.path(), Some(2 * DAY))).unwrap();
    assert!(ds.open_report().damaged.is_empty());
    counters_match_the_walk(&ds, "after a restart");
    check(&raw, &ds);
    assert!(ds
        .series(&[], T0, T0 + DAY)
        .iter()
        .any(|l| l.metric_name() == Some("temperature:count_5m")));
}

//! OpenMetrics import of the benchmark data written by `../shared/bench/gen-samples.py` (read
//! from the shared directory beside the crate; skipped with a message when it is absent, failed
//! when `CI=true`): every sample comes back bit for bit, and the chunks are smaller than
//! Prometheus' XOR chunks of the same samples.

use std::path::PathBuf;
use std::process::Command;

use depin_orcha::tsdb::{import_openmetrics, xor, Db, Options, Queryable};

fn script() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // `../shared` beside the crate root, as CI lays it out.
    let found = ["../shared/bench/gen-samples.py"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "../shared/bench/gen-samples.py is missing"
        );
        println!("skipped: ../shared/bench/gen-samples.py not found");
    }
    found
}

/// The file's samples as written, per series line prefix, parsed the plain way.
fn naive(text: &str) -> std::collections::BTreeMap<String, Vec<(i64, u64)>> {
    let mut m: std::collections::BTreeMap<String, Vec<(i64, u64)>> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split(' ');
        let (series, v, t) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let v: f64 = v.parse().unwrap();
        let t: i64 = t.parse::<i64>().unwrap() * 1000;
        m.entry(series.to_string())
            .or_default()
            .push((t, v.to_bits()));
    }
    m
}

#[test]
fn gen_samples_file_round_trips_bit_for_bit_and_compresses() {
    let Some(script) = script() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.om");
    let ok = Command::new("python3")
        .arg(&script)
        .arg(&file)
        .args(["--days", "0.05", "--series-per-kind", "4"])
        .status()
        .unwrap();
    assert!(ok.success());
    let text = std::fs::read_to_string(&file).unwrap();
    let want = naive(&text);

    let db = Db::open(Options {
        path: Some(dir.path().join("db")),
        ..Options::default()
    })
    .unwrap();
    let st = import_openmetrics(text.as_bytes(), &db).unwrap();
    assert_eq!(st.series, 12);
    assert_eq!(st.samples, 12 * 864);

    let check = |db: &Db| {
        let got = db.select(&[], i64::MIN, i64::MAX);
        assert_eq!(got.len(), want.len());
        for s in &got {
            let key = s.labels.to_string().replace(' ', "");
            let samples: Vec<(i64, u64)> = s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
            assert_eq!(Some(&samples), want.get(&key), "{key}");
        }
    };
    check(&db);
    // The import ends with a snapshot: a restart has it all without replaying the WAL.
    drop(db);
    let db = Db::open(Options {
        path: Some(dir.path().join("db")),
        ..Options::default()
    })
    .unwrap();
    assert_eq!(db.open_report().wal_records, 0);
    check(&db);

    db.seal_heads();
    let ours = db.stats().chunk_bytes as usize;
    let gorilla: usize = db
        .select(&[], i64::MIN, i64::MAX)
        .iter()
        .flat_map(|s| {
            s.samples
                .chunks(120)
                .map(xor::encode_prometheus_chunk)
                .collect::<Vec<_>>()
        })
        .map(|c| c.len())
        .sum();
    assert!(
        ours * 3 < gorilla * 2,
        "ours {ours} B vs Gorilla XOR {gorilla} B"
    );
}

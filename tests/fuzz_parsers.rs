//! Fuzzing of everything that reads outside input, with proptest (cargo-fuzz needs nightly):
//! the config parser, the rule loader, the optimization-rule loader, the PromQL parser and
//! evaluator, the promqltest script parser, the web config, the HTTP API parameters, and the
//! answers of every real node kind and of the HTTP price source (polled for real against a
//! fake node, see the second half of this file, which also holds the price API fault test).
//!
//! Inputs are seeds from `tests/fuzz/corpus/<target>/` bent by random mutations (flips,
//! dictionary tokens, deletions, duplications, truncation), plus generated PromQL over a small
//! Db. Every case must return (no panic) within a per-case time bound and without the process
//! growing past a memory bound. Failures proptest finds are kept in
//! `tests/fuzz/regressions/<target>.txt` and replayed first on every run.
//!
//! `FUZZ_CASES` sets the cases per target (default 200: the whole file runs in well under 30 s
//! in debug); each target prints how many inputs it executed.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use depin_orcha::labels::Labels;
use depin_orcha::promql::{Engine, EngineOptions};
use depin_orcha::tsdb::Db;

/// Longest one case may take (debug build, a loaded 2-core machine).
const CASE_LIMIT: Duration = Duration::from_secs(10);
/// The process must stay below this resident size.
const RSS_LIMIT_BYTES: u64 = 2 << 30;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Failures found are written to `tests/fuzz/regressions/<target>.txt` and replayed first.
fn config(target: &str) -> Config {
    let file: &'static str = Box::leak(
        format!(
            "{}/tests/fuzz/regressions/{target}.txt",
            env!("CARGO_MANIFEST_DIR")
        )
        .into_boxed_str(),
    );
    Config {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(file),
        )),
        ..Config::default()
    }
}

fn corpus(target: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    // A target seeded only by shipped files (below) has no directory of its own.
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut entries: Vec<_> = listing
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if p.extension().is_some_and(|e| e == "txt") {
            // One seed a line.
            out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        } else {
            out.push(text);
        }
    }
    // The files the project ships are seeds too, read where they are rather than copied into
    // the corpus (a copy goes stale the first time the shipped file changes).
    let shipped: &[&str] = match target {
        "rules" => &[
            "rules/prometheus/alerts.yml",
            "rules/prometheus/recording.yml",
        ],
        "optimization" => &["rules/optimization.yml"],
        "config" => &["src/config/demo.yml"],
        _ => &[],
    };
    for f in shipped {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        out.push(std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Runs `f(input)` on its own thread: a panic, a case slower than [`CASE_LIMIT`] or a process
/// above [`RSS_LIMIT_BYTES`] fails the case with the input in the message.
fn bounded<F>(target: &str, input: &str, f: F) -> Result<(), TestCaseError>
where
    F: FnOnce(String) + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let owned = input.to_string();
    let started = Instant::now();
    std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .spawn(move || {
            f(owned);
            let _ = tx.send(());
        })
        .map_err(|e| TestCaseError::fail(format!("spawn: {e}")))?;
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // The thread is left behind: the case has failed and the run ends with it.
            return Err(TestCaseError::fail(format!(
                "{target}: no answer within {CASE_LIMIT:?} for input {input:?}"
            )));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(TestCaseError::fail(format!(
                "{target}: panicked on input {input:?}"
            )));
        }
    }
    let rss = rss_bytes();
    if rss > RSS_LIMIT_BYTES {
        return Err(TestCaseError::fail(format!(
            "{target}: process at {rss} bytes after {:?} on input {input:?}",
            started.elapsed()
        )));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation(dict_len: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), 0..dict_len).prop_map(|(p, t)| Mutation::Insert(p, t)),
        (any::<usize>(), 1usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1usize..200).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(seed: &str, muts: &[Mutation], dict: &[&str]) -> String {
    let mut b = seed.as_bytes().to_vec();
    for m in muts {
        let len = b.len().max(1);
        match *m {
            Mutation::Flip(p, x) => {
                if !b.is_empty() {
                    let i = p % b.len();
                    // Mostly printable, so the parsers get past their UTF-8 check.
                    b[i] = if x < 200 { 0x20 + x % 0x5f } else { x };
                }
            }
            Mutation::Insert(p, t) => {
                let i = p % len.min(b.len() + 1);
                b.splice(i..i, dict[t].bytes());
            }
            Mutation::Delete(p, n) => {
                if !b.is_empty() {
                    let i = p % b.len();
                    let j = (i + n).min(b.len());
                    b.drain(i..j);
                }
            }
            Mutation::Duplicate(p, n) => {
                if !b.is_empty() {
                    let i = p % b.len();
                    let j = (i + n).min(b.len());
                    let piece = b[i..j].to_vec();
                    b.splice(j..j, piece);
                }
            }
            Mutation::Truncate(p) => b.truncate(p % len),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

const YAML_DICT: &[&str] = &[
    "\n",
    ": ",
    "- ",
    "  ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "<<: *a\n",
    "'",
    "\"",
    "~",
    "null",
    "1e308",
    "-1",
    "99999999999999999999",
    "5s",
    "0s",
    "1h30m",
    "NaN",
    "!!binary ",
    "\t",
    "{{",
    "}}",
    "{{ $labels.x }}",
    "{{ range . }}",
    "expr: ",
    "for: ",
    "record: ",
    "alert: ",
    "labels:\n    a: b\n",
    "groups:\n",
    "- name: g\n  rules:\n",
    "nodes:\n",
    "kind: sim\n",
    "interval: ",
    "%",
    "GiB",
    "1e-9",
    "protocols:\n",
    "bounds: ",
    "[1, 0]",
    "---\n",
    "? ",
    "|\n",
    ">\n",
    "#",
    "\u{feff}",
    "\u{0}",
    "é",
    "sum(rate(x[5m]))",
    "x{",
    "[5m:1m]",
    "@ end()",
    "/ 0",
];

const PROMQL_DICT: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    " ",
    "=~",
    "!~",
    "!=",
    "\"",
    "'",
    "`",
    "5m",
    "1s",
    "0s",
    "1y",
    "offset -5m",
    "@ start()",
    "@ 1e12",
    "by (a)",
    "without (a)",
    "on(a)",
    "ignoring(b)",
    "group_left",
    "group_right(c)",
    "bool",
    "and",
    "or",
    "unless",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "atan2",
    "==",
    ">=",
    "sum",
    "count_values(\"v\",",
    "quantile(2,",
    "topk(1e9,",
    "rate(",
    "histogram_quantile(0.5,",
    "label_replace(x,\"a\",\"$1\",\"b\",\"(.*\")",
    "absent_over_time(",
    "predict_linear(",
    "[1000000d:1ms]",
    "1e308",
    "NaN",
    "Inf",
    "-Inf",
    "0x1f",
    "__name__",
    "\\",
];

/// Runs one target: a seed from its corpus under random mutations.
fn fuzz_corpus(target: &'static str, dict: &'static [&'static str], f: fn(String)) {
    let seeds = Arc::new(corpus(target));
    let executed = Arc::new(AtomicUsize::new(0));
    let mut runner = TestRunner::new(config(target));
    let n = seeds.len();
    let strat = (0..n, proptest::collection::vec(mutation(dict.len()), 0..12));
    let started = Instant::now();
    let seeds2 = seeds.clone();
    let ex = executed.clone();
    let result = runner.run(&strat, move |(i, muts)| {
        let input = apply(&seeds2[i], &muts, dict);
        ex.fetch_add(1, Ordering::Relaxed);
        bounded(target, &input, f)
    });
    println!(
        "fuzz {target}: {} executions in {:.1}s, {}",
        executed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        if result.is_ok() {
            "no failure"
        } else {
            "FAILED"
        }
    );
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        lookback_delta_ms: 5 * 60_000,
        max_samples: 2_000_000,
        timeout: Duration::from_secs(2),
    })
}

fn small_db() -> Db {
    let db = Db::in_memory();
    for (proto, scale) in [("golem", 1.0), ("storj", 2.5), ("grass", 0.0)] {
        for (name, f) in [
            ("depin_earnings_usd_total", 1.0),
            ("depin_usage_cpu_cores", 0.1),
            ("depin_adapter_up", 0.0),
        ] {
            let l = Labels::from_pairs([("__name__", name), ("protocol", proto)]);
            for i in 0..120i64 {
                let v = if name == "depin_adapter_up" {
                    (i % 7 != 0) as i64 as f64
                } else {
                    i as f64 * f * scale
                };
                let _ = db.append(&l, i * 15_000, v);
            }
        }
    }
    for le in ["0.1", "1", "+Inf"] {
        let l = Labels::from_pairs([
            ("__name__", "depin_adapter_poll_duration_seconds_bucket"),
            ("le", le),
        ]);
        for i in 0..120i64 {
            let _ = db.append(&l, i * 15_000, i as f64 * le.len() as f64);
        }
    }
    db
}

#[test]
fn fuzz_config_parser() {
    fuzz_corpus("config", YAML_DICT, |s| {
        let _ = depin_orcha::config::parse_str(&s, "fuzz.yml");
    });
}

#[test]
fn fuzz_rule_loader() {
    fuzz_corpus("rules", YAML_DICT, |s| {
        let _ = depin_orcha::rules::file::parse_rule_file("fuzz.yml", &s);
    });
}

#[test]
fn fuzz_optimization_rules() {
    fuzz_corpus("optimization", YAML_DICT, |s| {
        let _ = depin_orcha::optimizer::parse_str(&s, "fuzz.yml");
    });
}

#[test]
fn fuzz_promqltest_scripts() {
    fuzz_corpus("promqltest", PROMQL_DICT, |s| {
        let _ = depin_orcha::promql::promqltest::run_script("fuzz.test", &s);
    });
}

#[test]
fn fuzz_web_config() {
    fuzz_corpus("webconfig", YAML_DICT, |s| {
        let _ = depin_orcha::http::webconfig::parse_str(&s, "web.yml", Path::new("/nonexistent"));
    });
}

/// Mutated expressions from the corpus, parsed and evaluated (instant and range) over the
/// small Db within the engine's timeout.
#[test]
fn fuzz_promql_mutated() {
    static DB: std::sync::OnceLock<Arc<Db>> = std::sync::OnceLock::new();
    DB.get_or_init(|| Arc::new(small_db()));
    fuzz_corpus("promql", PROMQL_DICT, |s| {
        let db = DB.get().expect("initialised above");
        eval_both(db, &s);
    });
}

fn eval_both(db: &Db, q: &str) {
    if let Ok(expr) = depin_orcha::promql::parse(q) {
        let e = engine();
        let _ = e.instant_query(db, &expr, 1_800_000);
        let _ = e.range_query(db, &expr, 0, 1_800_000, 60_000);
    }
}

/// Expressions built from PromQL's grammar, so most of them parse and reach the evaluator.
fn expr() -> impl Strategy<Value = String> {
    let metric = prop_oneof![
        Just("depin_earnings_usd_total".to_string()),
        Just("depin_usage_cpu_cores".to_string()),
        Just("depin_adapter_up".to_string()),
        Just("depin_adapter_poll_duration_seconds_bucket".to_string()),
        Just("nope".to_string()),
        Just("{protocol=~\"g.*\"}".to_string()),
    ];
    let selector = (
        metric,
        prop_oneof![
            Just(""),
            Just("{protocol=\"golem\"}"),
            Just("{protocol!~\"s.*\"}")
        ],
    )
        .prop_map(|(m, l)| {
            if m.starts_with('{') {
                m
            } else {
                format!("{m}{l}")
            }
        });
    let number = prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-2.5".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("Inf".to_string()),
        (-1000i64..1000).prop_map(|n| n.to_string()),
    ];
    let range = prop_oneof![
        Just("[1m]"),
        Just("[5m]"),
        Just("[30m:1m]"),
        Just("[1h]"),
        Just("[10s]")
    ];
    let leaf = prop_oneof![selector.clone(), number.clone()];
    leaf.prop_recursive(5, 48, 3, move |inner| {
        let sel = selector.clone();
        let range = range.clone();
        prop_oneof![
            (
                prop_oneof![
                    Just("rate"),
                    Just("increase"),
                    Just("delta"),
                    Just("deriv"),
                    Just("max_over_time"),
                    Just("avg_over_time"),
                    Just("changes"),
                    Just("resets"),
                    Just("absent_over_time"),
                    Just("stddev_over_time"),
                    Just("last_over_time"),
                    Just("irate"),
                    Just("count_over_time")
                ],
                sel.clone(),
                range.clone()
            )
                .prop_map(|(f, s, r)| format!("{f}({s}{r})")),
            (
                prop_oneof![
                    Just("sum"),
                    Just("avg"),
                    Just("max"),
                    Just("min"),
                    Just("count"),
                    Just("stddev"),
                    Just("group")
                ],
                prop_oneof![
                    Just(""),
                    Just(" by (protocol)"),
                    Just(" without (protocol)"),
                    Just(" by (le)")
                ],
                inner.clone()
            )
                .prop_map(|(a, g, e)| format!("{a}{g} ({e})")),
            (
                prop_oneof![
                    Just("+"),
                    Just("-"),
                    Just("*"),
                    Just("/"),
                    Just("%"),
                    Just("^"),
                    Just(">"),
                    Just("== bool"),
                    Just("and"),
                    Just("or"),
                    Just("unless"),
                    Just("/ on(protocol)"),
                    Just("* ignoring(le) group_left"),
                    Just("atan2")
                ],
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| format!("({a}) {op} ({b})")),
            (
                prop_oneof![
                    Just("abs"),
                    Just("ceil"),
                    Just("sort_desc"),
                    Just("timestamp"),
                    Just("exp"),
                    Just("ln"),
                    Just("sqrt"),
                    Just("scalar"),
                    Just("vector"),
                    Just("absent"),
                    Just("-")
                ],
                inner.clone()
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            (
                prop_oneof![
                    Just("topk"),
                    Just("bottomk"),
                    Just("quantile"),
                    Just("limitk")
                ],
                number.clone(),
                inner.clone()
            )
                .prop_map(|(f, k, e)| format!("{f}({k}, {e})")),
            (number.clone(), inner.clone())
                .prop_map(|(q, e)| format!("histogram_quantile({q}, {e})")),
            (
                inner.clone(),
                prop_oneof![Just("[5m:1m]"), Just("[1h:]"), Just("[2m:10s]")],
                prop_oneof![
                    Just(""),
                    Just(" offset 5m"),
                    Just(" @ 100"),
                    Just(" offset -1h")
                ]
            )
                .prop_map(|(e, r, o)| format!("max_over_time(({e}){r}{o})")),
            (inner.clone(), number.clone())
                .prop_map(|(e, t)| format!("predict_linear(({e})[10m:1m], {t})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"x\", \"$1\", \"protocol\", \"(.)\")")),
            inner.prop_map(|e| format!("count_values(\"v\", {e})")),
        ]
    })
}

#[test]
fn fuzz_promql_generated() {
    let db = Arc::new(small_db());
    let executed = Arc::new(AtomicUsize::new(0));
    let parsed = Arc::new(AtomicUsize::new(0));
    let mut runner = TestRunner::new(config("promql_generated"));
    let started = Instant::now();
    let (ex, pa) = (executed.clone(), parsed.clone());
    let result = runner.run(&expr(), move |q| {
        ex.fetch_add(1, Ordering::Relaxed);
        if depin_orcha::promql::parse(&q).is_ok() {
            pa.fetch_add(1, Ordering::Relaxed);
        }
        let db = db.clone();
        bounded("promql_generated", &q, move |q| eval_both(&db, &q))
    });
    println!(
        "fuzz promql_generated: {} executions ({} parsed and evaluated) in {:.1}s, {}",
        executed.load(Ordering::Relaxed),
        parsed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        if result.is_ok() {
            "no failure"
        } else {
            "FAILED"
        }
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The query API with mutated parameters, through the synchronous dispatcher the server uses.
#[test]
fn fuzz_http_params() {
    use depin_orcha::http::{api, AppState, Params};
    static STATE: std::sync::OnceLock<AppState> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        let mut engine = engine();
        engine.opts.timeout = Duration::from_secs(2);
        let st = AppState::new(
            Arc::new(small_db()),
            engine,
            prometheus::Registry::new(),
            Arc::new(depin_orcha::clock::ManualClock::new(1_800_000)),
        );
        st.set_ready(true);
        st
    });
    fuzz_corpus("http_params", PROMQL_DICT, |line| {
        let st = STATE.get().expect("initialised above");
        let (path, query) = line.split_once('?').unwrap_or((&line, ""));
        let p = Params::new(Some(query), None);
        let _ = api::dispatch_sync(st, path, &p);
        // The same parameters as a form body.
        let p = Params::new(None, Some(query.as_bytes()));
        let _ = api::dispatch_sync(st, path, &p);
    });
}

// ---- The node adapters and the price source, polled for real against a fake node ----------
//
// Every real node kind (storj, golem, streamr, grass, http_json, prometheus, exec) and the
// HTTP price source is built from a config and polled through its own HTTP client (or its
// Docker socket, or its command) against a fake node that answers the real payloads of
// `tests/fuzz/corpus/<target>/` (copies of tests/fixtures/nodes/, the shapes of protocols.md)
// with one answer mutated per case, or with arbitrary bytes. A poll may fail (parse, ...);
// it must not panic, must end in bounded time, and an observation it returns must hold only
// finite, non-negative earnings: those become counters on /metrics that can never go back.

use depin_orcha::adapters::{self, Observation, PollError};

const JSON_DICT: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "-1",
    "0",
    "-0",
    "1e308",
    "-1e308",
    "1e400",
    "\"1e400\"",
    "\"-5\"",
    "\"NaN\"",
    "\"inf\"",
    "4.9e-324",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "\"0.1\"",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "[[[[[[[[[[[[[[[[",
    "{\"a\":",
    "0x",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0000000000000000000000000000000000000000000000000000000000000020",
    "00000000000000000000000000000000ffffffffffffffffffffffffffffffff",
    "\"SETTLED\"",
    "\"ACCEPTED\"",
    "\"RECEIVED\"",
    "\"payout\"",
    "\"audit\"",
    "\"Running\":false",
    "# HELP x y\n",
    "# TYPE storj_total_diskspace gauge\n",
    "{type=\"used\"}",
    "{le=\"+Inf\"}",
    " NaN\n",
    " +Inf\n",
    " 1 1700000000000\n",
    "\n",
    "\r\n",
    "\t",
    "é",
    "\u{feff}",
];

/// Answers the fake node gives as faults instead of bytes: never answering, and a 500.
const HANG: &[u8] = b"\0fault:hang";
const ERROR_500: &[u8] = b"\0fault:500";

static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the fake node")
});

/// One fake node for every target: answers each request path with the bytes set for it (404
/// when none), over TCP and over a unix socket (the Docker Engine API of grass).
struct FakeNode {
    routes: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    base: String,
    socket: std::path::PathBuf,
    dir: tempfile::TempDir,
}

static FAKE: std::sync::LazyLock<Arc<FakeNode>> = std::sync::LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("docker.sock");
    std::fs::write(dir.path().join("key"), "fuzz-key\n").expect("key file");
    let (tcp, unix) = RT.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            tokio::net::UnixListener::bind(&socket).expect("bind unix"),
        )
    });
    let base = format!("http://{}", tcp.local_addr().expect("address"));
    let fake = Arc::new(FakeNode {
        routes: Default::default(),
        base,
        socket,
        dir,
    });
    let f = fake.clone();
    RT.spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            tokio::spawn(f.clone().answer(s));
        }
    });
    let f = fake.clone();
    RT.spawn(async move {
        while let Ok((s, _)) = unix.accept().await {
            tokio::spawn(f.clone().answer(s));
        }
    });
    fake
});

impl FakeNode {
    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut s: S,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let target = head.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/");
        let body = self.routes.lock().unwrap().get(path).cloned();
        let (status, body) = match body {
            // Fault markers of the price fault test.
            Some(b) if b == HANG => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Some(b) if b == ERROR_500 => (500, b"internal error".to_vec()),
            Some(b) => (200, b),
            None => (404, b"{}".to_vec()),
        };
        let mut out = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        let _ = s.write_all(&out).await;
        let _ = s.shutdown().await;
    }

    fn set(&self, path: &str, body: &[u8]) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.into(), body.to_vec());
    }

    /// A file in the fake's directory holding `body` (for commands and hardware.json).
    fn file(&self, name: &str, body: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).expect("write fuzz file");
        p.display().to_string()
    }
}

/// The first seed of a target's corpus (in name order): the answer of a healthy node.
fn seed(target: &str) -> Vec<u8> {
    corpus(target).swap_remove(0).into_bytes()
}

/// The targets that poll a node: each names the answer it mutates.
const NODE_TARGETS: &[&str] = &[
    "storj_sno",
    "storj_satellites",
    "storj_payout",
    "golem_invoices",
    "golem_status",
    "golem_hardware",
    "streamr_info",
    "streamr_rpc",
    "grass_container",
    "grass_points",
    "http_json",
    "prometheus_text",
    "exec_output",
    "prices",
];

const HOST: &str = "host: {capacity: {cpu_cores: 64, memory_bytes: 1TiB, disk_bytes: 100TB, bandwidth_bytes_per_second: 1GB}}\n";

/// Serves `body` as `target`'s answer (the other answers of that node kind are their seeds),
/// builds the node from a config and polls it once.
/// `ns` keeps the paths and files of tests running side by side apart.
fn poll_target(ns: &str, target: &str, body: &[u8]) -> Result<Observation, PollError> {
    let f = &**FAKE;
    let base = &f.base;
    // Each target has its own paths and files, so targets can run side by side.
    let p = format!("/{ns}/{target}");
    let pick = |t: &str| if t == target { body.to_vec() } else { seed(t) };
    let key = f.dir.path().join("key").display().to_string();
    let block = match target {
        "storj_sno" | "storj_satellites" | "storj_payout" => {
            f.set(&format!("{p}/api/sno/"), &pick("storj_sno"));
            f.set(
                &format!("{p}/api/sno/satellites"),
                &pick("storj_satellites"),
            );
            f.set(
                &format!("{p}/api/sno/estimated-payout"),
                &pick("storj_payout"),
            );
            format!("kind: storj\n    storj: {{url: \"{base}{p}/\"}}")
        }
        "golem_invoices" => {
            f.set(&format!("{p}/payment-api/v1/invoices"), body);
            // The identity (the ledger's account) and an empty event page.
            f.set(
                &format!("{p}/me"),
                br#"{"identity":"0xprov","name":"fuzz","role":"manager"}"#,
            );
            f.set(&format!("{p}/payment-api/v1/invoiceEvents"), b"[]");
            format!("kind: golem\n    golem: {{url: \"{base}{p}/\", app_key_file: \"{key}\"}}")
        }
        "golem_status" | "golem_hardware" => {
            let status = f.file(&format!("{ns}-{target}.status"), &pick("golem_status"));
            let hw = f.file(&format!("{ns}-{target}.hardware"), &pick("golem_hardware"));
            format!("kind: golem\n    golem: {{earnings: status, status_command: [/bin/cat, \"{status}\"], hardware_file: \"{hw}\"}}")
        }
        "streamr_info" | "streamr_rpc" => {
            f.set(&format!("{p}/info"), &pick("streamr_info"));
            f.set(&format!("{p}/rpc"), &pick("streamr_rpc"));
            format!("kind: streamr\n    streamr: {{url: \"{base}{p}/info\", earnings: {{rpc_url: \"{base}{p}/rpc\", operator_contract: \"0x00000000000000000000000000000000000000aB\"}}}}")
        }
        "grass_container" | "grass_points" => {
            let container = format!("{ns}-{target}");
            f.set(
                &format!("/containers/{container}/json"),
                &pick("grass_container"),
            );
            f.set(&format!("{p}/retrieveUser"), &pick("grass_points"));
            format!(
                "kind: grass\n    grass: {{container: {container}, docker_socket: \"{}\", points: {{url: \"{base}{p}/retrieveUser\", token_file: \"{key}\"}}}}",
                f.socket.display()
            )
        }
        "http_json" => {
            f.set(&format!("{p}/status"), body);
            format!("kind: http_json\n    http_json: {{url: \"{base}{p}/status\", earnings: {{USD: {{pointer: /wallet/earned_cents, scale: 0.01}}, PTS: /wallet/points}}, usage: {{cpu_cores: /res/cpu, memory_bytes: {{pointer: /res/mem_mib, scale: 1048576}}, disk_bytes: /res/disk}}, allocation_fields: {{cpu_cores: /cap/cpu}}}}")
        }
        "prometheus_text" => {
            f.set(&format!("{p}/metrics"), body);
            format!("kind: prometheus\n    prometheus: {{url: \"{base}{p}/metrics\", earnings: {{USD: {{metric: storj_payout_currentMonth, labels: {{type: payout}}, scale: 0.01}}}}, usage: {{disk_bytes: {{metric: storj_total_diskspace, labels: {{type: used}}}}}}, allocation_fields: {{disk_bytes: {{metric: storj_total_diskspace, labels: {{type: available}}}}}}}}")
        }
        "exec_output" => {
            let out = f.file(&format!("{ns}-exec_output.json"), body);
            format!("kind: exec\n    exec: {{command: [/bin/cat, \"{out}\"]}}")
        }
        "prices" => {
            f.set(&format!("{p}/prices"), body);
            let cfg = depin_orcha::config::parse_str(
                &format!("{HOST}prices:\n  http: {{url: \"{base}{p}/prices\", timeout: 5s, tokens: {{STORJ: /storj/usd, GLM: /golem/usd, DATA: /data/usd}}}}\n"),
                "fuzz.yml",
            )
            .expect("the price config loads");
            let spec = cfg.price_source.expect("an http price source");
            let got = RT.block_on(adapters::prices::fetch_prices(&spec))?;
            // Prices are checked as earnings are: numbers a user would see.
            return Ok(Observation {
                earnings: got.0,
                ..Observation::default()
            });
        }
        other => panic!("unknown target {other}"),
    };
    let cfg = depin_orcha::config::parse_str(
        &format!("{HOST}nodes:\n  - name: n\n    {block}\n"),
        "fuzz.yml",
    )
    .unwrap_or_else(|e| panic!("{target}: the config does not load: {e}"));
    let clock: depin_orcha::clock::SharedClock =
        Arc::new(depin_orcha::clock::ManualClock::new(1_767_225_600_000));
    let node = cfg.nodes[0].build(clock);
    // Answers of a secondary endpoint are read by that endpoint's own call.
    let endpoint = match target {
        "storj_payout" => Some("estimated_payout"),
        "storj_satellites" => Some("satellites"),
        // streamr_rpc's seeds are single eth_call answers; the chain call also asks
        // eth_blockNumber and eth_getLogs, which one static answer cannot serve.
        "golem_invoices" | "grass_points" => node.endpoints().first().map(|e| e.name),
        _ => None,
    };
    let limit = Duration::from_secs(5);
    RT.block_on(async {
        let polled = tokio::time::timeout(limit, node.poll())
            .await
            .unwrap_or(Err(PollError::Timeout(limit)));
        match endpoint {
            Some(e) => tokio::time::timeout(limit, node.fetch(e))
                .await
                .unwrap_or(Err(PollError::Timeout(limit))),
            None => polled,
        }
    })
}

/// What every answer must give: no panic (checked by [`bounded`]) and only numbers a counter
/// can take.
fn node_case(ns: &str, target: &str, body: &[u8]) {
    if let Ok(obs) = poll_target(ns, target, body) {
        for (token, v) in &obs.earnings {
            assert!(
                v.is_finite() && *v >= 0.0,
                "{target}: earnings {token} = {v} would corrupt a counter"
            );
        }
    }
}

/// The unmutated seeds poll successfully: the fuzzing reaches the parsers, not only errors.
#[test]
fn adapter_seeds_poll_cleanly() {
    for target in NODE_TARGETS {
        let ok = corpus(target)
            .iter()
            .filter(|s| poll_target("seeds", target, s.as_bytes()).is_ok())
            .count();
        assert!(ok > 0, "{target}: no seed polls successfully");
    }
}

macro_rules! fuzz_node {
    ($($name:ident => $target:literal),* $(,)?) => {$(
        #[test]
        fn $name() {
            fuzz_corpus($target, JSON_DICT, |s| node_case("mutated", $target, s.as_bytes()));
        }
    )*};
}

fuzz_node! {
    fuzz_storj_dashboard => "storj_sno",
    fuzz_storj_satellites => "storj_satellites",
    fuzz_storj_payout => "storj_payout",
    fuzz_golem_invoices => "golem_invoices",
    fuzz_golem_payment_status => "golem_status",
    fuzz_golem_hardware_json => "golem_hardware",
    fuzz_streamr_info => "streamr_info",
    fuzz_streamr_operator_earnings => "streamr_rpc",
    fuzz_grass_container_state => "grass_container",
    fuzz_grass_points => "grass_points",
    fuzz_http_json => "http_json",
    fuzz_prometheus_text => "prometheus_text",
    fuzz_exec_output => "exec_output",
    fuzz_price_source => "prices",
}

/// Arbitrary bytes (not UTF-8, not JSON) as any node's answer.
#[test]
fn fuzz_adapters_arbitrary_bytes() {
    let executed = Arc::new(AtomicUsize::new(0));
    let mut runner = TestRunner::new(config("adapters_bytes"));
    let started = Instant::now();
    let ex = executed.clone();
    let strat = (
        0..NODE_TARGETS.len(),
        proptest::collection::vec(any::<u8>(), 0..2048),
    );
    let result = runner.run(&strat, move |(t, bytes)| {
        ex.fetch_add(1, Ordering::Relaxed);
        let target = NODE_TARGETS[t];
        let shown = format!("{target} <- {:?}", String::from_utf8_lossy(&bytes));
        bounded("adapters_bytes", &shown, move |_| {
            node_case("bytes", target, &bytes)
        })
    });
    println!(
        "fuzz adapters_bytes: {} executions in {:.1}s, {}",
        executed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        if result.is_ok() {
            "no failure"
        } else {
            "FAILED"
        }
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The price API failing in each way a user meets (no answer within the timeout, a 500, a
/// garbled body) keeps the last price and its update time, so the price ages; the shipped
/// `DepinTokenPriceStale` (rules/prometheus/alerts.yml, evaluated by the rule manager over the stored
/// scrapes on a manual clock, one scrape, refresh and evaluation a minute) fires once the price
/// is an hour old plus its `for: 5m`, and not before.
#[test]
fn price_api_faults_age_the_price_until_the_shipped_alert_fires() {
    use depin_orcha::adapters::prices::HttpPriceSource;
    use depin_orcha::adapters::prices::PriceTable;
    use depin_orcha::clock::ManualClock;
    use depin_orcha::metrics::Metrics;
    use depin_orcha::rules::manager::{ManagerOptions, RuleManager};

    const T0: i64 = 1_767_225_600_000;
    let f = &**FAKE;
    let route = "/price_faults/prices";
    f.set(route, &seed("prices"));
    let cfg = depin_orcha::config::parse_str(
        &format!(
            "{HOST}prices:\n  http: {{url: \"{}{route}\", interval: 1m, timeout: 200ms, max_age: 1h, tokens: {{STORJ: /storj/usd}}}}\n",
            f.base
        ),
        "prices.yml",
    )
    .expect("the price config loads");
    let mc = ManualClock::new(T0);
    let clock: depin_orcha::clock::SharedClock = Arc::new(mc.clone());
    let metrics = Arc::new(Metrics::for_config(&cfg).unwrap());
    let src = HttpPriceSource {
        spec: cfg.price_source.clone().unwrap(),
        static_prices: cfg.prices.clone(),
        table: Arc::new(PriceTable::new(cfg.prices.clone())),
        gauges: metrics.clone(),
        clock: clock.clone(),
    };
    let db = Arc::new(Db::in_memory());
    let manager = RuleManager::new(
        ManagerOptions {
            evaluation_interval: Duration::from_secs(60),
            for_grace_period: Duration::ZERO,
            file_poll_interval: Duration::ZERO,
            registry: prometheus::Registry::new(),
            ..Default::default()
        },
        db.clone(),
        engine(),
        clock.clone(),
        Labels::default(),
        "http://localhost:9817/".into(),
    );
    manager
        .load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/prometheus/alerts.yml")])
        .expect("the shipped alerts load");

    let garbled = br#"{"storj":{"usd":0.4"#;
    let mut last_ok = Default::default();
    let mut reasons = std::collections::BTreeSet::new();
    let mut first_firing = None;
    for minute in 0..=75i64 {
        let now = T0 + minute * 60_000;
        mc.set(now);
        match minute {
            0 => {}
            1 => f.set(route, HANG),
            2 => f.set(route, ERROR_500),
            m if m % 2 == 1 => f.set(route, garbled),
            _ => f.set(route, ERROR_500),
        }
        match RT.block_on(src.refresh(&mut last_ok)) {
            Ok(()) => assert_eq!(minute, 0, "only the first answer is good"),
            Err(e) => {
                reasons.insert(e.reason());
            }
        }
        db.ingest_scrape(now, &metrics.gather()).unwrap();
        let firing = manager.tick(now).into_iter().any(|a| {
            a.labels.get("alertname") == Some("DepinTokenPriceStale")
                && a.labels.get("token") == Some("STORJ")
                && a.ends_at > now
        });
        if firing && first_firing.is_none() {
            first_firing = Some(minute);
        }
    }
    assert_eq!(
        reasons.into_iter().collect::<Vec<_>>(),
        ["http_status", "parse", "timeout"]
    );
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "depin_token_price_last_update_timestamp_seconds{{token=\"STORJ\"}} {}",
            T0 / 1000
        )),
        "the update time stays at the last good answer:\n{text}"
    );
    // Older than 3600 s from minute 61 on, pending there, firing 5 minutes later.
    assert_eq!(
        first_firing,
        Some(66),
        "DepinTokenPriceStale fired at minute {first_firing:?}"
    );
}

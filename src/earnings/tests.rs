//! The ledger's semantics case by case, its files through crashes, and the property: for random
//! sequences of true earnings, drops (with and without a cause), reversals, new periods,
//! restarts of depin-orcha at every point of a write and lost polls, the counters equal the
//! true earnings to the cent.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::adapters::reading::{FirstSight, OnDrop, StreamId, ALL_TIME};

const HOUR: i64 = 3_600_000;
const CONFIRM: Duration = Duration::from_secs(6 * 3600);

fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

fn cents(c: u64) -> Decimal {
    Decimal::from_units(c as u128, 2).unwrap()
}

fn gross(period: &str, value: Decimal, cause: Option<&str>, first: FirstSight) -> Reading {
    Reading::Cumulative {
        stream: StreamId::earnings("gross", "USD", ""),
        period: period.into(),
        value,
        cause: cause.map(String::from),
        first_sight: first,
        on_drop: OnDrop::Correction,
        confirm: CONFIRM,
    }
}

fn usd_price(t: &str) -> Option<f64> {
    (t == "USD").then_some(1.0)
}

fn row(l: &Ledger, node: &str) -> (Decimal, Decimal, Decimal, Decimal) {
    let r = l
        .rows(node)
        .into_iter()
        .find(|r| r.key.series == "earnings")
        .expect("a row");
    (
        r.totals.credited,
        r.totals.corrected,
        r.pending,
        r.totals.credited_usd,
    )
}

#[test]
fn a_disqualification_is_a_correction_not_a_reset() {
    let mut l = Ledger::in_memory();
    let p = &usd_price;
    l.apply(
        "n",
        "id",
        0,
        &[gross("2026-01", d("1.64"), None, FirstSight::Credit)],
        p,
    )
    .unwrap();
    let c = l
        .apply(
            "n",
            "id",
            HOUR,
            &[gross(
                "2026-01",
                d("1.50"),
                Some("disqualified by us1"),
                FirstSight::Credit,
            )],
            p,
        )
        .unwrap();
    assert_eq!(row(&l, "n"), (d("1.64"), d("0.14"), d("0"), d("1.64")));
    assert!(
        matches!(&c.events[0], Event::Corrected { amount, cause: Some(_), .. } if *amount == d("0.14"))
    );
    // What it earns afterwards is new money, credited at once.
    l.apply(
        "n",
        "id",
        2 * HOUR,
        &[gross("2026-01", d("1.60"), None, FirstSight::Credit)],
        p,
    )
    .unwrap();
    assert_eq!(row(&l, "n"), (d("1.74"), d("0.14"), d("0"), d("1.74")));
}

#[test]
fn a_drop_without_cause_waits_and_a_reversal_credits_nothing() {
    let mut l = Ledger::in_memory();
    let p = &usd_price;
    let g = |v: &str| [gross("2026-01", d(v), None, FirstSight::Credit)];
    l.apply("n", "id", 0, &g("2.00"), p).unwrap();
    l.apply("n", "id", HOUR, &g("1.20"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("2"), d("0"), d("0.8"), d("2")));
    l.apply("n", "id", 2 * HOUR, &g("1.50"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("2"), d("0"), d("0.5"), d("2")));
    l.apply("n", "id", 3 * HOUR, &g("2.10"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("2.1"), d("0"), d("0"), d("2.1")));
    // A drop that stays for the confirmation time is final.
    l.apply("n", "id", 4 * HOUR, &g("1.00"), p).unwrap();
    l.apply("n", "id", 10 * HOUR, &g("1.00"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("2.1"), d("1.1"), d("0"), d("2.1")));
}

#[test]
fn a_new_period_starts_at_zero_and_the_first_sight_is_taken_whole() {
    let mut l = Ledger::in_memory();
    let p = &usd_price;
    // First sight: this month whole, the previous month as a baseline.
    l.apply(
        "n",
        "id",
        0,
        &[
            gross("2026-01", d("5"), None, FirstSight::Credit),
            gross("2025-12", d("30"), None, FirstSight::Baseline),
        ],
        p,
    )
    .unwrap();
    assert_eq!(row(&l, "n").0, d("5"));
    // The last hours of January arrive as previousMonth; February starts at 0.
    l.apply(
        "n",
        "id",
        HOUR,
        &[
            gross("2026-02", d("0.1"), None, FirstSight::Credit),
            gross("2026-01", d("5.4"), None, FirstSight::Baseline),
            Reading::Close {
                stream: "gross".into(),
                before: "2026-01".into(),
            },
        ],
        p,
    )
    .unwrap();
    assert_eq!(row(&l, "n").0, d("5.5"));
    // A late reading of a closed month is ignored, not taken as a new stream.
    let c = l
        .apply(
            "n",
            "id",
            HOUR,
            &[gross("2025-12", d("31"), None, FirstSight::Credit)],
            p,
        )
        .unwrap();
    assert!(matches!(c.events[..], [Event::LateReading { .. }]));
    assert_eq!(row(&l, "n").0, d("5.5"));
}

#[test]
fn a_reinstalled_node_is_a_new_account_that_neither_adds_nor_loses() {
    let dir = tempfile::tempdir().unwrap();
    let p = &usd_price;
    let month = |v: &str| {
        [
            gross("2026-01", d(v), None, FirstSight::Credit),
            gross("2025-12", d("30"), None, FirstSight::Baseline),
        ]
    };
    let mut l = Ledger::open(dir.path()).unwrap();
    l.apply("n", "old-id", 0, &month("5"), p).unwrap();
    l.apply("n", "old-id", HOUR, &month("5.2"), p).unwrap();
    // Reinstalled: a new node ID whose estimate starts again near 0 (and whose previous month
    // is not this operator's money seen by depin-orcha). Not a correction of the old one.
    l.apply("n", "new-id", 2 * HOUR, &month("0.1"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("5.3"), d("0"), d("0"), d("5.3")));
    drop(l);
    // After a restart the new account is known: its next reading is growth, not a first sight.
    let mut l = Ledger::open(dir.path()).unwrap();
    l.apply("n", "new-id", 3 * HOUR, &month("0.4"), p).unwrap();
    assert_eq!(row(&l, "n"), (d("5.6"), d("0"), d("0"), d("5.6")));
}

#[test]
fn prometheus_counters_reset_and_ignore_noise() {
    let mut l = Ledger::in_memory();
    let p = &|_: &str| Some(2.0);
    for v in ["10", "15", "3", "5", "4.99", "6"] {
        l.apply("n", "n", 0, &[Reading::counter("X", d(v))], p)
            .unwrap();
    }
    let (c, k, pend, usd) = row(&l, "n");
    assert_eq!((c, k, pend), (d("21"), d("0"), d("0")));
    assert_eq!(usd, d("42"));
}

#[test]
fn credits_and_cursors_land_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::open(dir.path()).unwrap();
    let id = StreamId::earnings("invoices", "GLM", "polygon");
    let rs = [
        Reading::Credit {
            stream: id.clone(),
            amount: d("0.1"),
        },
        Reading::Cursor {
            name: "invoices".into(),
            value: serde_json::json!({"ts": 5}),
        },
    ];
    l.apply("g", "0xab", 0, &rs, &|_| Some(0.3)).unwrap();
    drop(l);
    let text = std::fs::read_to_string(dir.path().join("earnings/journal.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let l = Ledger::open(dir.path()).unwrap();
    assert_eq!(l.cursors("g")["invoices"], serde_json::json!({"ts": 5}));
    let (c, _, _, usd) = row(&l, "g");
    assert_eq!((c, usd), (d("0.1"), d("0.03")));
}

#[test]
fn a_second_instance_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _l = Ledger::open(dir.path()).unwrap();
    let e = Ledger::open(dir.path()).err().expect("locked");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
}

#[test]
fn torn_and_damaged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("earnings/journal.jsonl");
    {
        let mut l = Ledger::open(dir.path()).unwrap();
        for (i, v) in ["1", "2", "3"].iter().enumerate() {
            l.apply("n", "n", i as i64, &[Reading::counter("X", d(v))], &|_| {
                None
            })
            .unwrap();
        }
    }
    // Damage the first line and tear the last.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let damaged = lines[0].replacen("\"t\":0", "\"t\":9", 1);
    let torn = &lines[2][..lines[2].len() / 2];
    std::fs::write(&path, format!("{damaged}\n{}\n{torn}", lines[1])).unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    assert_eq!(l.open_report().damaged_lines, [1]);
    assert!(l.open_report().torn_tail);
    // Line 2 holds the after-image of its totals: 2 credited.
    assert_eq!(row(&l, "n").0, d("2"));
    assert!(std::fs::read_dir(dir.path().join("earnings"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("damaged")));
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Step {
    /// The node's current-month value grows by this many cents.
    Earn(u64),
    /// It drops by this many cents; with a cause (a disqualification) or not.
    Drop(u64, bool),
    /// A pending drop comes back.
    Reverse,
    /// The UTC month ends.
    NewMonth,
    /// `n` new payments of 1..=500 cents each arrive.
    Pay(Vec<u64>),
    /// depin-orcha polls.
    Poll,
    /// The poll is lost (a timeout, a 500).
    LostPoll,
    /// Six hours pass.
    Wait,
    /// depin-orcha dies at a point of its write and starts again.
    Restart(Crash),
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    /// Between polls.
    Idle,
    /// After computing a change, before journaling it.
    BeforeAppend,
    /// In the middle of the journal line (this many bytes of it are lost, at least one).
    Torn(usize),
    /// After the line is durable, before the counters move.
    AfterFsync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..5000).prop_map(Step::Earn),
        2 => (1u64..3000, any::<bool>()).prop_map(|(c, k)| Step::Drop(c, k)),
        1 => Just(Step::Reverse),
        1 => Just(Step::NewMonth),
        2 => prop::collection::vec(1u64..=500, 0..12).prop_map(Step::Pay),
        5 => Just(Step::Poll),
        2 => Just(Step::LostPoll),
        1 => Just(Step::Wait),
        2 => prop_oneof![
            Just(Crash::Idle),
            Just(Crash::BeforeAppend),
            (1usize..400).prop_map(Crash::Torn),
            Just(Crash::AfterFsync),
        ]
        .prop_map(Step::Restart),
    ]
}

/// The simulated nodes: a Storj-like month-to-date estimate and a yagna-like payment list.
struct World {
    month: u32,
    /// Per month, what the node reports for it now.
    months: BTreeMap<u32, u64>,
    /// The value before the last drop of the current month (what a reversal restores).
    before_drop: Option<u64>,
    cause: bool,
    payments: Vec<u64>,
    now: i64,
}

fn period(m: u32) -> String {
    format!("2026-{:02}", m % 12 + 1)
}

impl World {
    /// What one poll of both nodes reads. The payment adapter reads at most 5 records past its
    /// journaled cursor.
    fn readings(&self, cursors: &BTreeMap<String, serde_json::Value>) -> Vec<Reading> {
        let cur = self.months[&self.month];
        let mut rs = vec![gross(
            &period(self.month),
            cents(cur),
            self.cause.then_some("disqualified"),
            FirstSight::Credit,
        )];
        if let Some(prev) = self.month.checked_sub(1) {
            rs.push(gross(
                &period(prev),
                cents(*self.months.get(&prev).unwrap_or(&0)),
                None,
                FirstSight::Baseline,
            ));
            rs.push(Reading::Close {
                stream: "gross".into(),
                before: period(prev),
            });
        }
        let from = cursors
            .get("payments")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        let to = (from + 5).min(self.payments.len());
        let sum: u64 = self.payments[from..to].iter().sum();
        rs.push(Reading::Credit {
            stream: StreamId::earnings("payments", "GLM", "polygon"),
            amount: cents(sum),
        });
        rs.push(Reading::Cursor {
            name: "payments".into(),
            value: serde_json::json!(to),
        });
        rs
    }
}

fn totals_of(l: &Ledger) -> (Decimal, Decimal, Decimal, Decimal) {
    let mut out = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for r in l.rows("n") {
        if r.key.token == "USD" {
            out.0 = r.totals.credited;
            out.1 = r.totals.corrected;
            out.2 = r.pending;
        } else {
            out.3 = r.totals.credited;
        }
    }
    out
}

/// One poll; the cause of a drop is told with the first reading after it.
fn poll(l: &mut Ledger, w: &mut World) {
    let rs = w.readings(&l.cursors("n"));
    l.apply("n", "id", w.now, &rs, &usd_price).unwrap();
    w.cause = false;
}

/// Kills the ledger at the point `c` of a poll's write and opens it again; whether the poll's
/// readings were journaled.
fn crash(
    mut l: Ledger,
    w: &mut World,
    dir: &Path,
    c: Crash,
) -> Result<(Ledger, bool), TestCaseError> {
    let journal = dir.join("earnings/journal.jsonl");
    let mut read = false;
    match c {
        Crash::Idle | Crash::BeforeAppend => {}
        Crash::Torn(k) => {
            let before_poll = totals_of(&l);
            let before = std::fs::metadata(&journal).unwrap().len();
            poll(&mut l, w);
            let len = std::fs::metadata(&journal).unwrap().len();
            if len == before {
                // Nothing was written: nothing to tear.
                return Ok((l, true));
            }
            let text = std::fs::read_to_string(&journal).unwrap();
            let last = text
                .trim_end_matches('\n')
                .rsplit('\n')
                .next()
                .unwrap_or("");
            let cut = (k as u64).clamp(1, last.len() as u64 + 1).min(len);
            drop(l);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&journal)
                .unwrap();
            f.set_len(len - cut).unwrap();
            let l = Ledger::open(dir).unwrap();
            prop_assert!(l.open_report().damaged_lines.is_empty());
            // The torn poll's readings are lost, not half applied.
            prop_assert_eq!(totals_of(&l), before_poll);
            return Ok((l, false));
        }
        Crash::AfterFsync => {
            let st = l.state().clone();
            let rs = w.readings(&l.cursors("n"));
            let change = st.apply("n", "id", w.now, &rs, &usd_price).unwrap();
            if !change.is_empty() {
                l.journal.as_mut().unwrap().append(&change).unwrap();
            }
            w.cause = false;
            read = true;
        }
    }
    drop(l);
    Ok((Ledger::open(dir).unwrap(), read))
}

fn run(steps: &[Step], dir: &Path) -> Result<(), TestCaseError> {
    let mut l = Ledger::open(dir).unwrap();
    let mut w = World {
        month: 0,
        months: BTreeMap::from([(0, 100)]),
        before_drop: None,
        cause: false,
        payments: Vec::new(),
        now: 0,
    };
    // The opening: the first poll takes the month whole.
    poll(&mut l, &mut w);
    let opening_month = 0u32;
    let mut last_seen = totals_of(&l);
    // Months seen while current or previous, so their value reaches the ledger (the design's
    // precondition: a month is read at least once after its last change).
    let mut read_after_change: BTreeMap<u32, bool> = BTreeMap::from([(0, true)]);
    for s in steps {
        w.now += 60_000;
        match s {
            Step::Earn(c) => {
                *w.months.get_mut(&w.month).unwrap() += c;
                w.before_drop = None;
                read_after_change.insert(w.month, false);
            }
            Step::Drop(c, cause) => {
                let v = w.months.get_mut(&w.month).unwrap();
                w.before_drop.get_or_insert(*v);
                *v = v.saturating_sub(*c);
                w.cause |= *cause;
                read_after_change.insert(w.month, false);
            }
            Step::Reverse => {
                if let Some(b) = w.before_drop.take() {
                    w.months.insert(w.month, b);
                    read_after_change.insert(w.month, false);
                }
            }
            Step::NewMonth => {
                w.month += 1;
                w.months.insert(w.month, 0);
                w.before_drop = None;
                // A month two back is never read again: its last value must have been read.
                if let Some(old) = w.month.checked_sub(2) {
                    if read_after_change.get(&old) == Some(&false) {
                        // Precondition broken: poll once before the boundary instead.
                        w.month -= 1;
                        poll(&mut l, &mut w);
                        read_after_change.insert(w.month, true);
                        read_after_change.insert(w.month - 1, true);
                        w.month += 1;
                    }
                }
                read_after_change.insert(w.month, false);
            }
            Step::Pay(p) => w.payments.extend(p),
            Step::Poll => {
                poll(&mut l, &mut w);
                read_after_change.insert(w.month, true);
                if w.month > 0 {
                    read_after_change.insert(w.month - 1, true);
                }
            }
            Step::LostPoll => {}
            Step::Wait => w.now += 6 * HOUR,
            Step::Restart(c) => {
                let (restarted, read) = crash(l, &mut w, dir, *c)?;
                l = restarted;
                if read {
                    read_after_change.insert(w.month, true);
                    if w.month > 0 {
                        read_after_change.insert(w.month - 1, true);
                    }
                }
            }
        }
        let t = totals_of(&l);
        // Counters never go back, across restarts too.
        prop_assert!(
            t.0 >= last_seen.0,
            "credited went back: {:?} < {:?}",
            t,
            last_seen
        );
        prop_assert!(t.1 >= last_seen.1);
        prop_assert!(t.3 >= last_seen.3);
        last_seen = t;
    }
    // The node stops changing; polls come through until the payments are read.
    for _ in 0..=w.payments.len() / 5 + 1 {
        w.now += 60_000;
        poll(&mut l, &mut w);
    }
    let (credited, corrected, pending, paid) = totals_of(&l);
    // Storj: Σ over months of the last value read − the opening (this month at first sight is
    // taken whole, so the opening is 0; the month before it was a baseline and never changes).
    let truth: u64 = w
        .months
        .iter()
        .filter(|(m, _)| **m >= opening_month)
        .map(|(_, v)| v)
        .sum();
    let net = credited
        .checked_sub(corrected)
        .and_then(|x| x.checked_sub(pending))
        .unwrap();
    prop_assert_eq!(net.round_to(2), cents(truth));
    // Payments: every one credited once.
    prop_assert_eq!(paid, cents(w.payments.iter().sum()));
    // USD: price 1, exact.
    let usd = l
        .rows("n")
        .into_iter()
        .find(|r| r.key.token == "USD")
        .unwrap()
        .totals
        .credited_usd;
    prop_assert_eq!(usd, credited);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn counters_equal_the_true_earnings_to_the_cent(steps in prop::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        run(&steps, dir.path())?;
    }
}

#[test]
fn the_all_time_period_is_one_stream() {
    assert_eq!(ALL_TIME, "all");
}

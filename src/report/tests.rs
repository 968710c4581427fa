//! A report over a known history gives the exact numbers.

use super::local::LocalSource;
use super::*;
use crate::labels::Labels;
use crate::reallocation::history::{Outcome, Record, Source as RSource, Step};
use crate::reallocation::History;
use crate::resources::Allocation;
use crate::tsdb::Db;

const H: i64 = 3_600_000;
const MIN: i64 = 60_000;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
}

/// Two days (one period of 24 h and the one before), a sample a minute: node `a` earns
/// 1 USD/h in the first day and 2 USD/h in the second, with 2 cores; node `b` earns 0.5 USD/h
/// and is down for 6 hours of the second day; an alert fires twice.
fn fixture() -> (Db, History, i64) {
    let db = Db::in_memory();
    let end = 1_700_000_000_000 / H * H;
    let start = end - 48 * H;
    let usd_a = l(&[
        ("__name__", "depin_earnings_usd_total"),
        ("node", "a"),
        ("protocol", "golem"),
    ]);
    let usd_b = l(&[
        ("__name__", "depin_earnings_usd_total"),
        ("node", "b"),
        ("protocol", "storj"),
    ]);
    let tok_a = l(&[
        ("__name__", "depin_earnings_total"),
        ("node", "a"),
        ("protocol", "golem"),
        ("token", "GLM"),
    ]);
    let cpu_a = l(&[
        ("__name__", "depin_allocation_cpu_cores"),
        ("node", "a"),
        ("protocol", "golem"),
    ]);
    let up_a = l(&[
        ("__name__", "depin_adapter_up"),
        ("node", "a"),
        ("protocol", "golem"),
    ]);
    let up_b = l(&[
        ("__name__", "depin_adapter_up"),
        ("node", "b"),
        ("protocol", "storj"),
    ]);
    let alert = l(&[
        ("__name__", "ALERTS"),
        ("alertname", "NodeDown"),
        ("alertstate", "firing"),
        ("node", "b"),
    ]);
    let mut t = start;
    let (mut a, mut b) = (0.0f64, 0.0f64);
    while t <= end {
        db.append(&usd_a, t, a).unwrap();
        db.append(&tok_a, t, a * 4.0).unwrap();
        db.append(&usd_b, t, b).unwrap();
        db.append(&cpu_a, t, 2.0).unwrap();
        db.append(&up_a, t, 1.0).unwrap();
        let second_day = t > end - 24 * H;
        let b_down = second_day && t > end - 12 * H && t <= end - 6 * H;
        db.append(&up_b, t, if b_down { 0.0 } else { 1.0 }).unwrap();
        let firing = second_day
            && ((t > end - 20 * H && t <= end - 19 * H) || (t > end - 10 * H && t <= end - 9 * H));
        if firing {
            db.append(&alert, t, 1.0).unwrap();
        } else if second_day && (t == end - 19 * H + MIN || t == end - 9 * H + MIN) {
            db.append(&alert, t, crate::tsdb::stale_nan()).unwrap();
        }
        // The second day's rate from its first minute: 48 USD in (end - 24 h, end].
        a += if t >= end - 24 * H { 2.0 } else { 1.0 } / 60.0;
        b += 0.5 / 60.0;
        t += MIN;
    }
    let mut hist = History::in_memory();
    let al = |cpu: f64| Allocation {
        cpu_cores: cpu,
        memory_bytes: 0.0,
        disk_bytes: 0.0,
        bandwidth_bytes_per_second: 0.0,
    };
    let applied_at = end - 12 * H;
    hist.append(Record::Intent {
        id: 1,
        t_ms: applied_at - MIN,
        source: RSource::Controller,
        steps: vec![Step {
            node: "a".into(),
            from: al(1.0),
            to: al(2.0),
        }],
        expected_gain_usd_per_hour: Some(0.8),
        current_usd_per_hour: Some(1.0),
        hold_ms: H,
        summary: "a: 1 -> 2 cores".into(),
    })
    .unwrap();
    hist.append(Record::Outcome {
        id: 1,
        t_ms: applied_at,
        outcome: Outcome::Applied,
        reason: String::new(),
        undo_errors: vec![],
    })
    .unwrap();
    hist.append(Record::Realized {
        id: 1,
        t_ms: applied_at + H,
        before_usd_per_hour: Some(1.0),
        after_usd_per_hour: Some(1.5),
        realized_gain_usd_per_hour: Some(0.5),
        expected_gain_usd_per_hour: Some(0.8),
        rollback_id: None,
        note: String::new(),
    })
    .unwrap();
    (db, hist, end)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_report_over_a_known_history_gives_the_exact_numbers() {
    let (db, hist, end) = fixture();
    let src = LocalSource {
        db: &db,
        engine: crate::promql::Engine::default(),
        history: &hist,
        ledger: None,
    };
    let r = build(&src, end, 24 * H).unwrap();
    assert_eq!(r.nodes.len(), 2, "{:?}", r.nodes);
    let a = &r.nodes[0];
    assert_eq!((a.node.as_str(), a.protocol.as_str()), ("a", "golem"));
    assert!(close(a.usd, 48.0), "a earned {}", a.usd);
    assert!(close(a.usd_previous.unwrap(), 24.0), "{:?}", a.usd_previous);
    assert!(close(a.change_ratio.unwrap(), 1.0));
    assert!(close(a.usd_per_hour, 2.0));
    assert!(close(a.tokens["GLM"], 192.0), "{:?}", a.tokens);
    assert!(
        close(a.usd_per_hour_per_unit["core"], 1.0),
        "{:?}",
        a.usd_per_hour_per_unit
    );
    assert!(close(a.uptime.unwrap(), 1.0));
    // A flat rate within the period: no trend.
    assert!(
        a.trend_usd_per_hour_per_day.is_some_and(|t| t.abs() < 1e-6),
        "{:?}",
        a.trend_usd_per_hour_per_day
    );
    let b = &r.nodes[1];
    assert!(close(b.usd, 12.0), "b earned {}", b.usd);
    assert!(close(b.change_ratio.unwrap(), 0.0));
    assert!(
        close(b.uptime.unwrap(), 18.0 / 24.0),
        "uptime {:?}",
        b.uptime
    );
    assert!(close(r.total_usd, 60.0));
    assert_eq!(
        r.alerts_fired.get("NodeDown"),
        Some(&2),
        "{:?}",
        r.alerts_fired
    );
    assert_eq!(r.reallocations.len(), 1);
    let x = &r.reallocations[0];
    assert_eq!(x.expected_gain_usd_per_hour, Some(0.8));
    assert_eq!(x.realized_gain_usd_per_hour, Some(0.5));
    assert!(close(x.held_hours, 12.0));
    // 0.5 USD/h held for the 12 hours to the end of the period.
    assert!(
        close(r.controller_gain_usd, 6.0),
        "{}",
        r.controller_gain_usd
    );
    let text = render::render(&r, render::Style::Text);
    assert!(
        text.contains("The nodes earned 60.00 USD, against 36.00 USD"),
        "{text}"
    );
    assert!(
        text.contains("Gain attributable to the controller: 6.00 USD"),
        "{text}"
    );
}

#[test]
fn firing_episodes_end_at_staleness_or_a_long_gap() {
    let nan = f64::NAN;
    assert_eq!(
        count_episodes(&[(0, 1.0), (10, 1.0), (20, nan), (30, 1.0)]),
        2
    );
    assert_eq!(
        count_episodes(&[(0, 1.0), (10, 1.0), (20, 1.0), (500, 1.0), (510, 1.0)]),
        2
    );
    assert_eq!(count_episodes(&[]), 0);
}

#[test]
fn a_later_move_of_the_same_node_ends_the_hold() {
    let r = |id, t, nodes: &[&str], g| Reallocation {
        id,
        started_ms: t,
        finished_ms: Some(t),
        summary: String::new(),
        outcome: Some("applied".into()),
        expected_gain_usd_per_hour: None,
        realized_gain_usd_per_hour: g,
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        held_hours: 0.0,
        attributed_usd: None,
    };
    let out = attribute(
        vec![
            r(1, 2 * H, &["a"], Some(1.0)),
            r(2, 5 * H, &["a", "b"], Some(2.0)),
        ],
        0,
        10 * H,
    );
    assert!(close(out[0].held_hours, 3.0) && close(out[0].attributed_usd.unwrap(), 3.0));
    assert!(close(out[1].attributed_usd.unwrap(), 10.0));
}

#[test]
fn earnings_are_net_of_corrections_with_their_causes() {
    let db = Db::in_memory();
    let end = 1_700_000_000_000 / H * H;
    let series = |name: &str| l(&[("__name__", name), ("node", "s"), ("protocol", "storj")]);
    let (usd, corr) = (
        series("depin_earnings_usd_total"),
        series("depin_earnings_corrections_usd_total"),
    );
    let mut t = end - 48 * H;
    while t <= end {
        let earned = if t >= end - 12 * H { 1.64 } else { 0.0 };
        let taken = if t >= end - 6 * H { 0.14 } else { 0.0 };
        db.append(&usd, t, earned).unwrap();
        db.append(&corr, t, taken).unwrap();
        t += MIN;
    }
    let mut ledger = crate::earnings::State::default();
    ledger.history.push((
        end - 6 * H,
        "s".into(),
        crate::earnings::Event::Corrected {
            stream: "gross".into(),
            period: "2023-11".into(),
            token: "USD".into(),
            amount: crate::adapters::decimal::Decimal::parse("0.14").unwrap(),
            cause: Some("disqualified by us1.storj.io".into()),
        },
    ));
    let hist = History::in_memory();
    let src = LocalSource {
        db: &db,
        engine: crate::promql::Engine::default(),
        history: &hist,
        ledger: Some(&ledger),
    };
    let r = build(&src, end, 24 * H).unwrap();
    let s = &r.nodes[0];
    assert!(close(s.credited_usd, 1.64), "{s:?}");
    assert!(close(s.corrections_usd, 0.14), "{s:?}");
    assert!(close(s.usd, 1.50), "{s:?}");
    assert!(close(r.total_usd, 1.50));
    assert_eq!(r.corrections.len(), 1);
    let text = render::render(&r, render::Style::Text);
    assert!(text.contains("disqualified by us1.storj.io"), "{text}");
    assert!(text.contains("-0.140000 USD"), "{text}");
    assert!(text.contains("The nodes earned 1.50 USD"), "{text}");
}

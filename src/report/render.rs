//! The report as text (aligned tables, plain words), Markdown or JSON.

use std::fmt::Write;

use super::{Report, RESOURCES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Text,
    Markdown,
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

fn pct(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:+.1}%", r * 100.0),
        None => "n/a".into(),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "n/a".into())
}

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A table: text pads columns (numbers right-aligned), Markdown draws pipes.
fn table(style: Style, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    match style {
        Style::Markdown => {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(
                out,
                "|{}",
                header.iter().map(|_| "---|").collect::<String>()
            );
            for r in rows {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
        }
        Style::Text => {
            let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in rows {
                for (i, c) in r.iter().enumerate() {
                    if i < w.len() {
                        w[i] = w[i].max(c.chars().count());
                    }
                }
            }
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i == 0 {
                            format!("{c:<width$}", width = w[i])
                        } else {
                            format!("{c:>width$}", width = w[i])
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            let _ = writeln!(
                out,
                "{}",
                line(header.iter().map(|h| h.to_string()).collect())
            );
            for r in rows {
                let _ = writeln!(out, "{}", line(r.clone()));
            }
        }
    }
    out
}

pub fn render(r: &Report, style: Style) -> String {
    let mut o = String::new();
    let h = |o: &mut String, title: &str| {
        let _ = match style {
            Style::Markdown => writeln!(o, "\n## {title}\n"),
            Style::Text => writeln!(o, "\n{title}\n{}", "-".repeat(title.len())),
        };
    };
    let _ = match style {
        Style::Markdown => writeln!(o, "# depin-orcha report"),
        Style::Text => writeln!(o, "depin-orcha report"),
    };
    let _ = writeln!(
        o,
        "\nFrom {} to {} ({:.1} hours). The nodes earned {} USD, against {} USD in the {:.1} hours before ({}).",
        time(r.start_ms),
        time(r.end_ms),
        r.period_hours,
        money(r.total_usd),
        opt(r.total_usd_previous, money),
        r.period_hours,
        pct(r.total_usd_previous.filter(|p| *p > 0.0).map(|p| (r.total_usd - p) / p)),
    );
    h(&mut o, "Earnings per node");
    o.push_str(&earnings_table(r, style));
    h(&mut o, "Token earnings");
    let mut rows = Vec::new();
    for n in &r.nodes {
        for (tok, v) in &n.tokens {
            rows.push(vec![
                n.node.clone(),
                tok.clone(),
                format!("{v:.6}"),
                opt(n.tokens_previous.get(tok).copied(), |v| format!("{v:.6}")),
            ]);
        }
    }
    o.push_str(&table(
        style,
        &["node", "token", "tokens", "tokens before"],
        &rows,
    ));
    h(&mut o, "Corrections");
    corrections(&mut o, r, style);
    h(&mut o, "USD/h per unit of resource allocated");
    let units: Vec<&str> = RESOURCES.iter().map(|r| r.1).collect();
    let mut header = vec!["node"];
    let labels: Vec<String> = units.iter().map(|u| format!("per {u}")).collect();
    header.extend(labels.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            let mut row = vec![n.node.clone()];
            for u in &units {
                row.push(opt(n.usd_per_hour_per_unit.get(*u).copied(), |v| {
                    format!("{v:.4}")
                }));
            }
            row
        })
        .collect();
    o.push_str(&table(style, &header, &rows));
    h(&mut o, "Alerts fired");
    if r.alerts_fired.is_empty() {
        let _ = writeln!(o, "No alert fired.");
    } else {
        let rows: Vec<Vec<String>> = r
            .alerts_fired
            .iter()
            .map(|(a, n)| vec![a.clone(), n.to_string()])
            .collect();
        o.push_str(&table(style, &["alert", "times fired"], &rows));
    }
    h(&mut o, "Reallocations");
    reallocations(&mut o, r, style);
    let _ = writeln!(
        o,
        "\nGain attributable to the controller: {} USD (realized gain x hours held).",
        money(r.controller_gain_usd)
    );
    o
}

/// Earnings per node: USD, corrections, the period before, the change, the rate and its trend,
/// uptime.
fn earnings_table(r: &Report, style: Style) -> String {
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.protocol.clone(),
                money(n.usd),
                money(n.corrections_usd),
                opt(n.usd_previous, money),
                pct(n.change_ratio),
                format!("{:.4}", n.usd_per_hour),
                opt(n.trend_usd_per_hour_per_day, |v| format!("{v:+.4}")),
                opt(n.uptime, |u| format!("{:.2}%", u * 100.0)),
            ]
        })
        .collect();
    table(
        style,
        &[
            "node",
            "protocol",
            "USD",
            "taken back USD",
            "USD before",
            "change",
            "USD/h",
            "trend USD/h per day",
            "uptime",
        ],
        &rows,
    )
}

/// The reallocations of the period, or a line saying there were none.
fn reallocations(o: &mut String, r: &Report, style: Style) {
    if r.reallocations.is_empty() {
        let _ = writeln!(o, "No reallocation.");
    } else {
        let rows: Vec<Vec<String>> = r
            .reallocations
            .iter()
            .map(|x| {
                vec![
                    x.id.to_string(),
                    time(x.started_ms),
                    x.outcome.clone().unwrap_or_else(|| "running".into()),
                    x.nodes.join(","),
                    opt(x.expected_gain_usd_per_hour, |v| format!("{v:+.4}")),
                    opt(x.realized_gain_usd_per_hour, |v| format!("{v:+.4}")),
                    format!("{:.1}", x.held_hours),
                    opt(x.attributed_usd, |v| format!("{v:+.2}")),
                ]
            })
            .collect();
        o.push_str(&table(
            style,
            &[
                "id",
                "started",
                "outcome",
                "nodes",
                "expected USD/h",
                "realized USD/h",
                "hours held",
                "gain USD",
            ],
            &rows,
        ));
    }
}

/// The corrections of the period with their causes, and the drops still pending.
fn corrections(o: &mut String, r: &Report, style: Style) {
    let _ = writeln!(
        o,
        "What the nodes took back after reporting it (a disqualification, a re-normalized estimate): counted once, never again. USD above is net of it."
    );
    if r.corrections.is_empty() {
        let _ = writeln!(o, "\nNo correction.");
    } else {
        let rows: Vec<Vec<String>> = r
            .corrections
            .iter()
            .map(|c| {
                vec![
                    time(c.t_ms),
                    c.node.clone(),
                    format!("{} {}", c.stream, c.period),
                    if c.reversed {
                        format!("{:.6} came back", c.amount)
                    } else {
                        format!("-{:.6} {}", c.amount, c.token)
                    },
                    c.cause.clone().unwrap_or_else(|| {
                        if c.reversed {
                            String::new()
                        } else {
                            "stayed down".into()
                        }
                    }),
                ]
            })
            .collect();
        o.push('\n');
        o.push_str(&table(
            style,
            &["time", "node", "stream", "amount", "cause"],
            &rows,
        ));
    }
    let pending: Vec<Vec<String>> = r
        .nodes
        .iter()
        .flat_map(|n| {
            n.pending
                .iter()
                .map(|(t, v)| vec![n.node.clone(), t.clone(), format!("{v:.6}")])
        })
        .collect();
    if !pending.is_empty() {
        let _ = writeln!(o, "\nPending (may still come back):");
        o.push_str(&table(style, &["node", "token", "pending"], &pending));
    }
}

//! Export of stored samples, series by series, as CSV, JSON lines or OpenMetrics text: the
//! `depin-orcha export` command and `GET /api/v1/export`.
//!
//! Nothing is built whole in memory: the label sets are listed first (labels only), then each
//! series is read in time windows of [`WINDOW_MS`] and written out before the next is read, so
//! a year of samples never has to fit in memory, let alone twice. Staleness markers are not
//! samples and are left out.
//!
//! Shapes:
//! - `csv`: header `timestamp,value,__name__,<other label names, sorted>`; one row per sample;
//!   `timestamp` in milliseconds since the epoch; an empty cell is a label the series lacks.
//!   Label columns are the union over the selected series.
//! - `json`: one line per series, as VictoriaMetrics' `/api/v1/export`:
//!   `{"metric":{...},"values":[...],"timestamps":[...]}` (timestamps in ms; `NaN`, `+Inf`,
//!   `-Inf` as strings, which JSON numbers cannot be).
//! - `openmetrics`: `# TYPE <name> unknown` per metric name, samples
//!   `name{labels} value <seconds with ms fraction>`, and `# EOF`; what `depin-orcha tsdb
//!   import` and `promtool tsdb create-blocks-from openmetrics` read back.
//!
//! It reads storage only through [`Queryable`].

use std::collections::{BTreeSet, HashSet};
use std::io::Write;

use crate::labels::{Labels, Matcher, METRIC_NAME};
use crate::tsdb::{is_stale_nan, Queryable, Sample};

/// The time window a series is read in.
pub const WINDOW_MS: i64 = 6 * 3600 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    OpenMetrics,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "json" | "jsonl" | "" => Some(Format::Json),
            "openmetrics" | "om" => Some(Format::OpenMetrics),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/x-ndjson",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub series: usize,
    pub samples: usize,
}

/// The label sets selected by any of `matcher_sets` in `[mint, maxt]`, in output order: by
/// metric name, then labels (so one metric's series are together, as OpenMetrics wants).
pub fn select_series(
    db: &dyn Queryable,
    matcher_sets: &[Vec<Matcher>],
    mint: i64,
    maxt: i64,
) -> Vec<Labels> {
    let mut seen = HashSet::new();
    let mut out: Vec<Labels> = Vec::new();
    for ms in matcher_sets {
        for l in db.series(ms, mint, maxt) {
            if seen.insert(l.clone()) {
                out.push(l);
            }
        }
    }
    out.sort_by(|a, b| {
        a.metric_name()
            .unwrap_or("")
            .cmp(b.metric_name().unwrap_or(""))
            .then_with(|| a.cmp(b))
    });
    out
}

/// Calls `f` with the samples of exactly `labels` in `[mint, maxt]`, window by window.
fn for_each_window(
    db: &dyn Queryable,
    labels: &Labels,
    mint: i64,
    maxt: i64,
    mut f: impl FnMut(&[Sample]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let matchers: Vec<Matcher> = labels
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    let mut from = mint;
    while from <= maxt {
        let to = from.saturating_add(WINDOW_MS - 1).min(maxt);
        for s in db.select(&matchers, from, to) {
            // Equality matchers also match series with more labels: keep the exact one.
            if s.labels == *labels {
                let kept: Vec<Sample> = s
                    .samples
                    .into_iter()
                    .filter(|x| !is_stale_nan(x.v))
                    .collect();
                if !kept.is_empty() {
                    f(&kept)?;
                }
            }
        }
        if to == maxt {
            break;
        }
        from = to + 1;
    }
    Ok(())
}

/// Prometheus' float text (Go's `'f'` shortest form): shortest round-trip digits, never an
/// exponent, `NaN`, `+Inf`, `-Inf`.
pub fn fmt_value(v: f64) -> String {
    crate::compat::strconv::format_float(v, 'f', -1)
}

/// Milliseconds as seconds with up to three decimals, exact (no float rounding).
pub fn fmt_seconds(ms: i64) -> String {
    let (s, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        format!("{s}")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}", f.trim_end_matches('0'))
    }
}

fn om_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn json_value(v: f64) -> String {
    if v.is_finite() {
        fmt_value(v)
    } else {
        format!("\"{}\"", fmt_value(v))
    }
}

/// `[mint, maxt]` narrowed to the times `db` holds (`None` when they do not meet), so that an
/// open range (`-inf`..`+inf`, the API's default) is walked window by window over real data only.
pub fn clamp_range(db: &crate::tsdb::Db, mint: i64, maxt: i64) -> Option<(i64, i64)> {
    let st = db.stats();
    let (lo, hi) = (st.min_time?, st.max_time?);
    let (a, b) = (mint.max(lo), maxt.min(hi));
    (a <= b).then_some((a, b))
}

/// Writes the selected series to `w` in `format`, series by series. The range should be
/// bounded by the data (see [`clamp_range`]): it is read in windows of [`WINDOW_MS`].
pub fn write_export(
    db: &dyn Queryable,
    matcher_sets: &[Vec<Matcher>],
    mint: i64,
    maxt: i64,
    format: Format,
    w: &mut dyn Write,
) -> std::io::Result<ExportStats> {
    let series = select_series(db, matcher_sets, mint, maxt);
    write_series(db, &series, mint, maxt, format, w)
}

/// Writes `series` (as [`select_series`] lists them) to `w` in `format`; for callers that
/// look at the list before writing (the HTTP export charges it to the query memory budget).
pub fn write_series(
    db: &dyn Queryable,
    series: &[Labels],
    mint: i64,
    maxt: i64,
    format: Format,
    w: &mut dyn Write,
) -> std::io::Result<ExportStats> {
    let mut stats = ExportStats::default();
    match format {
        Format::Csv => {
            let names: Vec<String> = series
                .iter()
                .flat_map(|l| l.iter().map(|x| x.name.clone()))
                .filter(|n| n != METRIC_NAME)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut header = String::from("timestamp,value,__name__");
            for n in &names {
                header.push(',');
                header.push_str(&csv_cell(n));
            }
            writeln!(w, "{header}")?;
            for l in series {
                let mut tail = csv_cell(l.metric_name().unwrap_or(""));
                for n in &names {
                    tail.push(',');
                    tail.push_str(&csv_cell(l.get(n).unwrap_or("")));
                }
                let mut any = false;
                for_each_window(db, l, mint, maxt, |ss| {
                    any = true;
                    for s in ss {
                        writeln!(w, "{},{},{tail}", s.t, fmt_value(s.v))?;
                    }
                    stats.samples += ss.len();
                    Ok(())
                })?;
                stats.series += usize::from(any);
            }
        }
        Format::Json => {
            for l in series {
                let metric: serde_json::Map<String, serde_json::Value> = l
                    .iter()
                    .map(|x| (x.name.clone(), serde_json::Value::String(x.value.clone())))
                    .collect();
                let metric = serde_json::Value::Object(metric).to_string();
                write!(w, "{{\"metric\":{metric},\"values\":[")?;
                let mut n = 0usize;
                for_each_window(db, l, mint, maxt, |ss| {
                    for s in ss {
                        if n > 0 {
                            w.write_all(b",")?;
                        }
                        w.write_all(json_value(s.v).as_bytes())?;
                        n += 1;
                    }
                    Ok(())
                })?;
                w.write_all(b"],\"timestamps\":[")?;
                let mut m = 0usize;
                // Second pass: the timestamps follow the values in this shape, and holding the
                // values of a long series in memory is what this module avoids.
                for_each_window(db, l, mint, maxt, |ss| {
                    for s in ss {
                        if m > 0 {
                            w.write_all(b",")?;
                        }
                        write!(w, "{}", s.t)?;
                        m += 1;
                    }
                    Ok(())
                })?;
                w.write_all(b"]}\n")?;
                stats.series += 1;
                stats.samples += n;
            }
        }
        Format::OpenMetrics => {
            let mut family: Option<String> = None;
            for l in series {
                let name = l.metric_name().unwrap_or("").to_string();
                let mut text = om_escape(&name);
                let rest: Vec<String> = l
                    .iter()
                    .filter(|x| x.name != METRIC_NAME)
                    .map(|x| format!("{}=\"{}\"", x.name, om_escape(&x.value)))
                    .collect();
                if !rest.is_empty() {
                    text.push('{');
                    text.push_str(&rest.join(","));
                    text.push('}');
                }
                let mut any = false;
                for_each_window(db, l, mint, maxt, |ss| {
                    if !any && family.as_deref() != Some(name.as_str()) {
                        writeln!(w, "# TYPE {name} unknown")?;
                        family = Some(name.clone());
                    }
                    any = true;
                    for s in ss {
                        writeln!(w, "{text} {} {}", fmt_value(s.v), fmt_seconds(s.t))?;
                    }
                    stats.samples += ss.len();
                    Ok(())
                })?;
                stats.series += usize::from(any);
            }
            writeln!(w, "# EOF")?;
        }
    }
    w.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchOp;
    use crate::tsdb::Db;

    fn db() -> Db {
        let db = Db::in_memory();
        let a = Labels::from_pairs([
            ("__name__", "depin_earnings_usd_total"),
            ("protocol", "storj"),
        ]);
        let b = Labels::from_pairs([
            ("__name__", "depin_earnings_usd_total"),
            ("protocol", "golem"),
            ("node", "g,1"),
        ]);
        let c = Labels::from_pairs([("__name__", "depin_adapter_up"), ("protocol", "storj")]);
        for i in 0..3i64 {
            db.append(&a, 1_000 + i * 1500, i as f64 * 0.5).unwrap();
            db.append(&b, 1_000 + i * 1500, 10.0 + i as f64).unwrap();
            db.append(&c, 1_000 + i * 1500, 1.0).unwrap();
        }
        db
    }

    fn export(db: &Db, sel: &[Matcher], f: Format) -> String {
        let sets = vec![sel.to_vec()];
        let mut out = Vec::new();
        write_export(db, &sets, 0, 10_000, f, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_header_and_rows_match_the_series() {
        let got = export(
            &db(),
            &[Matcher::equal("__name__", "depin_earnings_usd_total")],
            Format::Csv,
        );
        assert_eq!(
            got,
            "timestamp,value,__name__,node,protocol\n\
             1000,10,depin_earnings_usd_total,\"g,1\",golem\n\
             2500,11,depin_earnings_usd_total,\"g,1\",golem\n\
             4000,12,depin_earnings_usd_total,\"g,1\",golem\n\
             1000,0,depin_earnings_usd_total,,storj\n\
             2500,0.5,depin_earnings_usd_total,,storj\n\
             4000,1,depin_earnings_usd_total,,storj\n"
        );
    }

    #[test]
    fn json_lines_like_victoriametrics() {
        let got = export(&db(), &[Matcher::equal("protocol", "storj")], Format::Json);
        assert_eq!(
            got,
            "{\"metric\":{\"__name__\":\"depin_adapter_up\",\"protocol\":\"storj\"},\"values\":[1,1,1],\"timestamps\":[1000,2500,4000]}\n\
             {\"metric\":{\"__name__\":\"depin_earnings_usd_total\",\"protocol\":\"storj\"},\"values\":[0,0.5,1],\"timestamps\":[1000,2500,4000]}\n"
        );
    }

    #[test]
    fn openmetrics_round_trips_through_our_import() {
        let src = db();
        let text = export(
            &src,
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
            Format::OpenMetrics,
        );
        assert!(
            text.starts_with(
                "# TYPE depin_adapter_up unknown\ndepin_adapter_up{protocol=\"storj\"} 1 1\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        let back = Db::in_memory();
        crate::tsdb::import_openmetrics(text.as_bytes(), &back).unwrap();
        let all = [Matcher::new(crate::labels::MatchOp::Regex, "__name__", ".+").unwrap()];
        assert_eq!(back.select(&all, 0, 10_000), src.select(&all, 0, 10_000));
    }

    #[test]
    fn long_series_are_read_in_windows_without_losing_or_repeating_samples() {
        let db = Db::in_memory();
        let l = Labels::from_pairs([("__name__", "x")]);
        let step = 3_600_000;
        for i in 0..30i64 {
            db.append(&l, i * step, i as f64).unwrap();
        }
        let sets = vec![vec![Matcher::equal("__name__", "x")]];
        let mut out = Vec::new();
        let st = write_export(&db, &sets, 0, 29 * step, Format::Csv, &mut out).unwrap();
        assert_eq!(
            st,
            ExportStats {
                series: 1,
                samples: 30
            }
        );
        let text = String::from_utf8(out).unwrap();
        let ts: Vec<i64> = text
            .lines()
            .skip(1)
            .map(|r| r.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ts, (0..30).map(|i| i * step).collect::<Vec<_>>());
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(fmt_seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(fmt_seconds(1_700_000_000_100), "1700000000.1");
        assert_eq!(fmt_seconds(5_000), "5");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
    }
}

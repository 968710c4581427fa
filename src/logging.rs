//! Log lines as the Prometheus tools write them: `ts=… caller=file.rs:123 level=info msg="…"`
//! then the event's own fields, in logfmt or as one JSON object per line, on stderr; and
//! `--log.level`, which takes Prometheus' four levels and nothing else (a level it does not
//! know is an error at start, not a filter that silences everything).

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};

/// The levels `--log.level` takes, most verbose first.
pub const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// `--log.level`'s value: one of [`LEVELS`].
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s {
        "debug" => Ok(LevelFilter::DEBUG),
        "info" => Ok(LevelFilter::INFO),
        "warn" => Ok(LevelFilter::WARN),
        "error" => Ok(LevelFilter::ERROR),
        _ => Err(format!(
            "unrecognized log level {s:?}: one of {}",
            LEVELS.join(", ")
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
}

/// A [`Layer`] writing each event as one line on stderr.
pub struct PrometheusStyle {
    pub format: Format,
}

impl<S: Subscriber> Layer<S> for PrometheusStyle {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.rsplit('/').next().unwrap_or(f)),
            _ => meta.target().to_string(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let line = render(
            self.format,
            &crate::compat::calendar::rfc3339_millis(now_ms),
            &caller,
            *meta.level(),
            &fields.msg,
            &fields.rest,
        );
        // One write per line, so lines of two threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.msg = value;
        } else {
            self.rest.push((field.name().to_string(), value));
        }
    }
}

fn level_word(l: Level) -> &'static str {
    match l {
        Level::TRACE | Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// One line, `\n` included: the fixed keys first (`ts`, `caller`, `level`, `msg`), then the
/// event's fields in the order they were given.
pub fn render(
    format: Format,
    ts: &str,
    caller: &str,
    level: Level,
    msg: &str,
    fields: &[(String, String)],
) -> String {
    let fixed = [
        ("ts", ts),
        ("caller", caller),
        ("level", level_word(level)),
        ("msg", msg),
    ];
    let all = fixed
        .into_iter()
        .chain(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    match format {
        Format::Logfmt => {
            let mut out = String::new();
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}={}", logfmt_value(v));
            }
            out.push('\n');
            out
        }
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> = all
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            let mut out = serde_json::Value::Object(map).to_string();
            out.push('\n');
            out
        }
    }
}

/// A logfmt value: bare when it has no space, quote, `=` or control character (and is not
/// empty), else quoted with `"` and `\` escaped, as go-logfmt does.
fn logfmt_value(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if bare {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_lines_have_the_prometheus_keys_in_order() {
        let line = render(
            Format::Logfmt,
            "2026-01-02T03:04:05.006Z",
            "main.rs:12",
            Level::INFO,
            "listening",
            &[("address".into(), "127.0.0.1:9817".into())],
        );
        assert_eq!(
            line,
            "ts=2026-01-02T03:04:05.006Z caller=main.rs:12 level=info msg=listening address=127.0.0.1:9817\n"
        );
        let line = render(
            Format::Logfmt,
            "t",
            "c",
            Level::WARN,
            "a \"quoted\" word",
            &[
                ("e".into(), "x=y\nz".into()),
                ("empty".into(), String::new()),
            ],
        );
        assert_eq!(
            line,
            "ts=t caller=c level=warn msg=\"a \\\"quoted\\\" word\" e=\"x=y\\nz\" empty=\"\"\n"
        );
    }

    #[test]
    fn json_lines_carry_the_same_keys() {
        let line = render(
            Format::Json,
            "t",
            "c",
            Level::ERROR,
            "m",
            &[("k".into(), "v".into())],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "t");
        assert_eq!(v["caller"], "c");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "m");
        assert_eq!(v["k"], "v");
    }

    #[test]
    fn only_the_four_levels_are_taken() {
        for l in LEVELS {
            assert!(parse_level(l).is_ok(), "{l}");
        }
        let e = parse_level("bogus").unwrap_err();
        assert_eq!(
            e,
            "unrecognized log level \"bogus\": one of debug, info, warn, error"
        );
        assert!(parse_level("depin_orcha=debug").is_err());
    }
}

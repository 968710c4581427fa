//! Request parameters of the Prometheus HTTP API: the merged form (URL query string plus an
//! `application/x-www-form-urlencoded` body), and the parsers for times, durations, limits and
//! `match[]` selectors, with the error texts of Prometheus' `web/api/v1/api.go`.
//!
//! Pure functions only: no storage, no evaluation, no I/O.

use crate::labels::{MatchOp, Matcher, METRIC_NAME};

/// What a parameter parser rejects. The texts are Prometheus' own, so that clients and people
/// who know Prometheus' messages recognise them; the API wraps them as
/// `invalid parameter "<name>": <text>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("cannot parse {0:?} to a valid timestamp")]
    Time(String),
    /// The wording of Prometheus' `parseTimeParam` (optional time parameters).
    #[error("invalid time value for '{param}': cannot parse {value:?} to a valid timestamp")]
    TimeValue { param: &'static str, value: String },
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
    #[error("cannot parse {0:?} to a valid duration. It overflows int64")]
    DurationOverflow(String),
    /// Go's `strconv.Atoi` message, which Prometheus passes through.
    #[error("strconv.Atoi: parsing {0:?}: invalid syntax")]
    LimitSyntax(String),
    #[error("strconv.Atoi: parsing {0:?}: value out of range")]
    LimitRange(String),
    #[error("limit must be non-negative")]
    NegativeLimit,
    #[error("end timestamp must not be before start time")]
    EndBeforeStart,
    #[error(
        "zero or negative query resolution step widths are not accepted. Try a positive integer"
    )]
    Step,
    /// A `match[]` value that is not a series selector; the text is the parser's.
    #[error("{0}")]
    Selector(String),
    #[error("match[] must contain at least one non-empty matcher")]
    EmptyMatchers,
}

/// The request's form: body pairs first, then query-string pairs, as Go's `Request.ParseForm`
/// merges them, so that `get` (Go's `FormValue`) prefers the body. Cloning shares the pairs
/// (a form can be a megabyte of `match[]`, and the handler moves a clone to a work thread).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pairs: std::sync::Arc<Vec<(String, String)>>,
}

impl Params {
    /// `query` is the raw URL query string; `form_body` the body of a form-encoded request
    /// (`None` for other content types, whose bodies Prometheus does not read as parameters).
    pub fn new(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(b) = form_body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params {
            pairs: std::sync::Arc::new(pairs),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Params {
        Params {
            pairs: std::sync::Arc::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The first value of `name`, or "" when absent (Go's `FormValue`; Prometheus treats an
    /// empty value as absent everywhere).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`, in form order (for `match[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The earliest and latest times an optional range defaults to, in milliseconds.
pub const MIN_TIME_MS: i64 = i64::MIN;
pub const MAX_TIME_MS: i64 = i64::MAX;

/// Parses a timestamp as Prometheus' `parseTime`: Unix seconds as a float (rounded to the
/// millisecond) or RFC 3339 with an optional fraction and a `Z` or `±hh:mm` offset.
/// Returns milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let secs = f.trunc();
            let ms = (f.fract() * 1000.0).round();
            let t = secs * 1000.0 + ms;
            if t >= i64::MIN as f64 && t <= i64::MAX as f64 {
                return Ok(t as i64);
            }
        }
    }
    // Prometheus' own MinTime and MaxTime as clients format them (Go's RFC 3339 parser cannot
    // read years beyond four digits, so Prometheus matches these strings; so do we).
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    parse_rfc3339(s).ok_or_else(|| ParamError::Time(s.to_string()))
}

/// An optional time parameter: `default` when absent or empty, Prometheus' `parseTimeParam`.
pub fn parse_time_param(
    params: &Params,
    name: &'static str,
    default: i64,
) -> Result<i64, ParamError> {
    let v = params.get(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|_| ParamError::TimeValue {
        param: name,
        value: v.to_string(),
    })
}

/// RFC 3339 (`2015-07-01T20:10:51.781Z`, `2015-07-01T22:10:51+02:00`) to milliseconds;
/// the fraction is truncated to the millisecond as Prometheus' `timestamp.FromTime` does.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_s = match &s[i..] {
        "Z" => 0,
        rest if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':' =>
        {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if rest.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + frac_ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a duration as Prometheus' API `parseDuration`: float seconds, or a Prometheus
/// duration (`1h30m`, `5m`, `500ms`). Returns nanoseconds, Go's `time.Duration`.
pub fn parse_duration(s: &str) -> Result<i64, ParamError> {
    if let Ok(d) = s.parse::<f64>() {
        if d.is_finite() {
            let ns = d * 1e9;
            if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
                return Err(ParamError::DurationOverflow(s.to_string()));
            }
            return Ok(ns as i64);
        }
    }
    // `model.ParseDuration` (`1h30m`), in nanoseconds.
    crate::compat::duration::parse_model_duration(s)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| ParamError::Duration(s.to_string()))
}

/// Prometheus' `parseLimitParam`: 0 (no limit) when absent.
pub fn parse_limit(s: &str) -> Result<usize, ParamError> {
    if s.is_empty() {
        return Ok(0);
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParamError::LimitSyntax(s.to_string()));
    }
    let n: i64 = s
        .parse()
        .map_err(|_| ParamError::LimitRange(s.to_string()))?;
    if n < 0 {
        return Err(ParamError::NegativeLimit);
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Parses `match[]` values into matcher sets, as Prometheus' `parseMatchersParam`: each value
/// must be a series selector, and each set must have a matcher that rejects the empty string.
/// A selector with `or` (`{a="1" or b="2"}`) becomes one set per alternative.
pub fn parse_match_sets(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ParamError> {
    let mut sets = Vec::new();
    for v in values {
        for set in parse_selector(v)? {
            if !set.iter().any(|m| !m.matches_empty()) {
                return Err(ParamError::EmptyMatchers);
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

/// One series selector (`up{job="x"}`) to its matcher sets.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, ParamError> {
    let expr = crate::promql::parse(s).map_err(|e| ParamError::Selector(e.to_string()))?;
    let vs = match expr {
        promql_parser::parser::Expr::VectorSelector(vs) => vs,
        _ => {
            return Err(ParamError::Selector(format!(
                "invalid series selector {s:?}: not a vector selector"
            )))
        }
    };
    let mut base: Vec<Matcher> = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    base.extend(convert_matchers(&vs.matchers.matchers)?);
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|alt| {
            let mut set = base.clone();
            set.extend(convert_matchers(alt)?);
            Ok(set)
        })
        .collect()
}

fn convert_matchers(ms: &[promql_parser::label::Matcher]) -> Result<Vec<Matcher>, ParamError> {
    use promql_parser::label::MatchOp as P;
    ms.iter()
        .map(|m| {
            let op = match m.op {
                P::Equal => MatchOp::Equal,
                P::NotEqual => MatchOp::NotEqual,
                P::Re(_) => MatchOp::Regex,
                P::NotRe(_) => MatchOp::NotRegex,
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| ParamError::Selector(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_float_seconds_round_to_the_millisecond() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451.7814"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
    }

    #[test]
    fn times_as_rfc3339() {
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59.9999Z"), Ok(-1000 + 999));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
    }

    #[test]
    fn prometheus_min_and_max_time_strings() {
        assert_eq!(parse_time("-292273086-05-16T16:47:06Z"), Ok(MIN_TIME_MS));
        assert_eq!(
            parse_time("292277025-08-18T07:12:54.999999999Z"),
            Ok(MAX_TIME_MS)
        );
    }

    #[test]
    fn bad_times_name_the_value() {
        assert_eq!(
            parse_time("yesterday").unwrap_err().to_string(),
            r#"cannot parse "yesterday" to a valid timestamp"#
        );
        for bad in [
            "",
            "NaN",
            "inf",
            "2023-02-30T00:00:00Z",
            "2015-07-01 20:10:51Z",
            "2015-07-01T20:10:51",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} must not parse");
        }
        let p = Params::from_pairs([("start", "x")]);
        assert_eq!(
            parse_time_param(&p, "start", 0).unwrap_err().to_string(),
            r#"invalid time value for 'start': cannot parse "x" to a valid timestamp"#
        );
        assert_eq!(parse_time_param(&p, "end", 42), Ok(42));
    }

    #[test]
    fn durations_as_seconds_or_prometheus_units() {
        assert_eq!(parse_duration("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("1m500ms"), Ok(60_500_000_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in ["", "5x", "30m1h", "1.5m", "m", "5mm"] {
            assert_eq!(
                parse_duration(bad),
                Err(ParamError::Duration(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration("1e300").unwrap_err().to_string(),
            r#"cannot parse "1e300" to a valid duration. It overflows int64"#
        );
    }

    #[test]
    fn limits_as_go_atoi() {
        assert_eq!(parse_limit(""), Ok(0));
        assert_eq!(parse_limit("10"), Ok(10));
        assert_eq!(
            parse_limit("abc").unwrap_err().to_string(),
            r#"strconv.Atoi: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            parse_limit("-1").unwrap_err().to_string(),
            "limit must be non-negative"
        );
        assert!(matches!(
            parse_limit("99999999999999999999"),
            Err(ParamError::LimitRange(_))
        ));
    }

    #[test]
    fn form_body_values_come_before_the_query_string() {
        let p = Params::new(
            Some("query=up&match[]=a"),
            Some(b"query=1%2B1&match%5B%5D=b"),
        );
        assert_eq!(p.get("query"), "1+1");
        assert_eq!(p.all("match[]"), vec!["b", "a"]);
        assert_eq!(p.get("absent"), "");
    }

    #[test]
    fn selectors_become_matcher_sets() {
        let sets = parse_match_sets(&[r#"up{job=~"a|b"}"#]).unwrap();
        assert_eq!(sets.len(), 1);
        let text: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(text, vec![r#"__name__="up""#, r#"job=~"a|b""#]);
        let or = parse_match_sets(&[r#"{a="1" or b="2"}"#]).unwrap();
        assert_eq!(or.len(), 2);
        // The parser itself rejects a selector that matches everything, as Prometheus' does.
        let err = parse_match_sets(&[r#"{job=~".*"}"#])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one non-empty matcher"), "{err}");
        assert!(matches!(
            parse_match_sets(&["up +"]),
            Err(ParamError::Selector(_))
        ));
        assert!(matches!(
            parse_match_sets(&["sum(up)"]),
            Err(ParamError::Selector(_))
        ));
    }
}

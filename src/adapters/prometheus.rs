//! Node kind `prometheus`: scrapes any exporter's `/metrics` (Prometheus text format 0.0.4;
//! e.g. anclrii's Storj-Exporter on :9651, or yagna's `/metrics-api/v1/expose`) and maps
//! series, chosen by metric name and label values, to earnings per token, usage and
//! allocation per resource, each with an optional `scale`. When several series match, their
//! values are summed (e.g. one per satellite). No match, or a NaN/negative value, is skipped
//! and counted (`field="<metric>{labels}"`). An answer that is not the text format is reason
//! `parse`. Counters and gauges are read the same way: an earnings counter that resets is
//! handled by the coordinator's reset logic.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::mapping::{self, request, MappedSpec};
use super::{Adapter, Observation, PollError, PollFuture};
use crate::net::http::{fetch, HttpRequest};
use crate::resources::Resource;
use crate::schema::diag::{join_key, Diagnostics};

/// One sample of the text format.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format: comments and `# HELP`/`# TYPE` lines are
/// skipped; label values may hold escaped `\\`, `\"` and `\n`; values may be `NaN`, `+Inf`,
/// `-Inf`; an optional timestamp after the value is ignored. Errors name the line.
pub fn parse_text(text: &str) -> Result<Vec<TextSample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_line(line: &str) -> Result<TextSample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err("expected a metric name".into());
    }
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut consumed = None;
        loop {
            // Skip spaces and commas between pairs.
            while let Some(&(_, c)) = chars.peek() {
                if c == ' ' || c == ',' {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some(&(i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut lname = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if is_name_char(c, lname.is_empty()) && c != ':' {
                    lname.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if lname.is_empty() {
                return Err("expected a label name".into());
            }
            while matches!(chars.peek(), Some(&(_, ' '))) {
                chars.next();
            }
            if !matches!(chars.next(), Some((_, '='))) {
                return Err(format!("expected = after label {lname}"));
            }
            while matches!(chars.peek(), Some(&(_, ' '))) {
                chars.next();
            }
            if !matches!(chars.next(), Some((_, '"'))) {
                return Err(format!("expected a quoted value for label {lname}"));
            }
            let mut val = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, '\\')) => val.push('\\'),
                        Some((_, '"')) => val.push('"'),
                        Some((_, c)) => {
                            val.push('\\');
                            val.push(c);
                        }
                        None => return Err("unterminated label value".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => val.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.push((lname, val));
        }
        let Some(end) = consumed else {
            return Err("expected } after the labels".into());
        };
        rest = &r[end..];
    }
    let mut parts = rest.split_whitespace();
    let v = parts.next().ok_or("expected a value")?;
    let value = match v {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("invalid value {v:?}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("invalid timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("unexpected text after the value".into());
    }
    Ok(TextSample {
        name,
        labels,
        value,
    })
}

/// Which series one number comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub metric: String,
    /// Labels that must have these values (other labels may be anything).
    pub labels: BTreeMap<String, String>,
    pub scale: f64,
}

impl Selector {
    /// `metric{a="b"}`, the `field` label of a skipped value.
    pub fn shown(&self) -> String {
        if self.labels.is_empty() {
            return self.metric.clone();
        }
        let l: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{}{{{}}}", self.metric, l.join(","))
    }

    /// The scaled sum of the matching samples; `None` when none matches or a value is not a
    /// finite number of 0 or more.
    pub fn pick(&self, samples: &[TextSample]) -> Option<f64> {
        let mut sum = 0.0;
        let mut any = false;
        for s in samples.iter().filter(|s| {
            s.name == self.metric
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        }) {
            if !s.value.is_finite() || s.value < 0.0 {
                return None;
            }
            sum += s.value;
            any = true;
        }
        any.then_some(sum * self.scale)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    metric: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    scale: Option<f64>,
}

fn selector(raw: &RawSelector, path: &str, d: &mut Diagnostics) -> Option<Selector> {
    let mut ok = true;
    if raw.metric.is_empty()
        || !raw
            .metric
            .char_indices()
            .all(|(i, c)| is_name_char(c, i == 0))
    {
        d.error(
            &join_key(path, "metric"),
            format!("invalid metric name {:?}", raw.metric),
        );
        ok = false;
    }
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale <= 0.0 {
        d.error(
            &join_key(path, "scale"),
            format!("must be a number above 0, got {scale}"),
        );
        ok = false;
    }
    ok.then(|| Selector {
        metric: raw.metric.clone(),
        labels: raw.labels.clone(),
        scale,
    })
}

/// The settings of a `prometheus` node: fields are series selectors.
pub type PrometheusSpec = MappedSpec<Selector>;

pub fn validate(
    block: Option<Value>,
    path: &str,
    node_path: &str,
    node_name: &str,
    d: &mut Diagnostics,
) -> Option<PrometheusSpec> {
    mapping::validate("prometheus", block, path, node_path, node_name, d, selector)
}

/// Applies the mapping to a scrape.
pub fn read(spec: &PrometheusSpec, samples: &[TextSample]) -> Observation {
    let mut obs = Observation::default();
    for (token, s) in &spec.earnings {
        match s.pick(samples) {
            Some(v) => {
                obs.earnings.insert(token.clone(), v);
            }
            None => obs.skipped.push(s.shown()),
        }
    }
    for r in Resource::ALL {
        for (sel, target) in [
            (spec.usage.get_ref(r), &mut obs.usage),
            (spec.allocation_fields.get_ref(r), &mut obs.allocation),
        ] {
            if let Some(s) = sel {
                let v = s.pick(samples);
                if v.is_none() {
                    obs.skipped.push(s.shown());
                }
                target.set(r, v);
            }
        }
    }
    obs
}

pub struct PrometheusNode {
    name: String,
    spec: PrometheusSpec,
}

impl PrometheusNode {
    pub fn new(name: &str, spec: PrometheusSpec) -> PrometheusNode {
        PrometheusNode {
            name: name.to_string(),
            spec,
        }
    }
}

impl Adapter for PrometheusNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn protocol(&self) -> &str {
        &self.spec.protocol
    }

    fn poll(&self) -> PollFuture<'_> {
        Box::pin(async move {
            let req: HttpRequest = request(
                &self.spec.url,
                &self.spec.headers,
                self.spec.bearer.as_ref(),
            )?;
            let body = fetch(&req).await?;
            let text = std::str::from_utf8(&body)
                .map_err(|e| PollError::Parse(format!("{}: not UTF-8: {e}", self.spec.url)))?;
            let samples = parse_text(text)
                .map_err(|e| PollError::Parse(format!("{}: {e}", self.spec.url)))?;
            Ok(read(&self.spec, &samples))
        })
    }
}

impl super::kind::NodeSpec for PrometheusSpec {
    fn kind(&self) -> &'static str {
        "prometheus"
    }

    fn protocol(&self) -> &str {
        &self.protocol
    }

    fn allocation(&self) -> Option<crate::resources::Allocation> {
        self.allocation
    }

    fn tokens(&self) -> Vec<String> {
        self.earnings.keys().cloned().collect()
    }

    fn build(
        &self,
        name: &str,
        _clock: crate::clock::SharedClock,
    ) -> std::sync::Arc<dyn super::Adapter> {
        std::sync::Arc::new(PrometheusNode::new(name, self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP storj_total_diskspace Storj total diskspace metrics\n\
# TYPE storj_total_diskspace gauge\n\
storj_total_diskspace{type=\"used\"} 3.381577296e+12\n\
storj_total_diskspace{type=\"available\"} 3.5e+12\n\
weird{a=\"x\\\"y\\\\z\\n\",b=\"\"} NaN 1700000000000\n\
up 1\n\
x_inf{} +Inf\n";
        let s = parse_text(text).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].labels, [("type".to_string(), "used".to_string())]);
        assert_eq!(s[0].value, 3.381577296e12);
        assert_eq!(s[2].labels[0].1, "x\"y\\z\n");
        assert!(s[2].value.is_nan());
        assert_eq!(s[4].value, f64::INFINITY);
        for bad in [
            "x{a=\"b} 1",
            "x{a=b} 1",
            "x 1 2 3",
            "x abc",
            "{a=\"b\"} 1",
            "x{a=\"b\" 1",
        ] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_sum_matches_and_skip_bad_values() {
        let s = parse_text(
            "a{sat=\"1\",type=\"x\"} 1\na{sat=\"2\",type=\"x\"} 2\na{type=\"y\"} 5\nb NaN\n",
        )
        .unwrap();
        let sel = |m: &str, l: &[(&str, &str)]| Selector {
            metric: m.into(),
            labels: l
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            scale: 0.5,
        };
        assert_eq!(sel("a", &[("type", "x")]).pick(&s), Some(1.5));
        assert_eq!(sel("a", &[]).pick(&s), Some(4.0));
        assert_eq!(sel("a", &[("type", "z")]).pick(&s), None);
        assert_eq!(sel("b", &[]).pick(&s), None);
        assert_eq!(sel("a", &[("type", "x")]).shown(), "a{type=\"x\"}");
    }
}

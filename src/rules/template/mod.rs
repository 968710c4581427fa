//! Label and annotation templates of alerting rules, in Go's `text/template` language exactly
//! as Prometheus runs them (`template/template.go`, `rules/alerting.go`): a lexer, parser and
//! executor ported from Go's `text/template`, Go's builtin functions and `fmt` verbs, and
//! Prometheus' template functions (`query`, `humanize`, `toTime`, ...).
//!
//! It owns template text → output text only. It never evaluates PromQL itself: `query` goes
//! through the [`QueryFn`] the caller supplies (the rules engine implements it with the PromQL
//! engine at the rule's evaluation time), and it keeps no alert state.
//!
//! Entry points:
//! - [`expand_alert`] / [`AlertTemplate`]: expand one label or annotation value of an alert the
//!   way Prometheus does (with `$labels`, `$externalLabels`, `$externalURL`, `$value` defined);
//!   an error yields Prometheus' `<error expanding template: ...>` text and is also returned.
//! - [`check_alert`] / [`check`]: what `promtool check rules` does with a template: parse it and
//!   report where it is wrong.
//! - [`Expander`] and [`Template`]: the general engine, for any data [`Value`].
//!
//! Not supported (none of it reachable from a Prometheus alert template, except where said):
//! HTML mode and `tmpl` (Prometheus offers them to consoles only), native-histogram sample
//! values, complex numbers, custom delimiters, `missingkey` other than Prometheus' `zero`;
//! `printf` argument indexes (`%[1]d` prints `%!(BADINDEX)`), `%#v`/`%+v` (printed as `%v`),
//! `%x`/`%b` of floats; `Time` methods beyond `Format String Add Sub Truncate Round Before
//! After Equal Unix UnixMilli UnixMicro UnixNano UTC Local Year Day Hour Minute Second
//! Nanosecond YearDay IsZero`. Differences: a query result printed inside a list shows
//! `&{...}` where Go prints a pointer address; `title` approximates Unicode word breaks;
//! regexps run on the `regex` crate (RE2 syntax, Go's ASCII `\d \w \s \b`, other error
//! texts); `.x` on a missing `map[string]interface{}` entry is `<no value>` where Go errors;
//! `{{template}}` nests at most 256 deep and blocks/parentheses 100 deep.
//!
//! Why not the `gtmpl` crate: its last release is from 2021, it lacks `html`/`js`, its `printf`
//! is partial, and its JSON-like value model cannot tell Go's int from float64 or
//! `map[string]string` from `map[string]interface{}`, which decide `eq`/`printf` results and
//! missing-key output in Prometheus.

mod exec;
mod fmt;
mod funcs;
mod lex;
mod parse;
mod prom;
mod time;
pub mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use value::{MapKind, MapValue, SampleValue, StructValue, Value};

/// One element of an instant query's result, as [`QueryFn`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    /// The series' labels, `__name__` included when the result keeps it.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the epoch. Prometheus' templates do not expose it; kept for callers.
    pub timestamp_ms: i64,
}

impl QuerySample {
    /// A sample from a label set of the crate's own [`crate::labels::Labels`].
    pub fn new(labels: &crate::labels::Labels, value: f64, timestamp_ms: i64) -> Self {
        QuerySample {
            labels: labels_to_map(labels),
            value,
            timestamp_ms,
        }
    }
}

/// A label set as the `map[string]string` templates see.
pub fn labels_to_map(labels: &crate::labels::Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Runs a PromQL instant query for a template's `query` function, at the time the template is
/// expanded for. The error text ends up in the template error.
pub trait QueryFn {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String>;
}

/// A [`QueryFn`] for contexts without a query engine: every query fails.
pub struct NoQueries;

impl QueryFn for NoQueries {
    fn query(&self, _expr: &str) -> Result<Vec<QuerySample>, String> {
        Err("queries are not available in this context".into())
    }
}

/// What template functions see of the outside world.
pub struct Env<'a> {
    pub(crate) query: Option<&'a dyn QueryFn>,
    /// The evaluation time (`now`), milliseconds since the epoch.
    pub(crate) timestamp_ms: i64,
    /// `externalURL`; `pathPrefix` is its path.
    pub(crate) external_url: &'a str,
}

impl<'a> Env<'a> {
    /// The outside world of one execution: queries (none when `query` is `None`: `query` then
    /// fails), the evaluation time in milliseconds, and the external URL.
    pub fn new(query: Option<&'a dyn QueryFn>, timestamp_ms: i64, external_url: &'a str) -> Self {
        Env {
            query,
            timestamp_ms,
            external_url,
        }
    }
}

/// A template that failed to parse or to execute. `Display` gives Prometheus' text
/// (`error parsing template NAME: template: NAME:LINE: ...`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("error parsing template {name}: template: {name}:{go_line}: {message}")]
    Parse {
        name: String,
        /// Go's message, e.g. `function "foo" not defined`.
        message: String,
        /// The line Go reports (in the whole parsed text).
        go_line: usize,
        /// Line (1-based) of the offending token in the caller's text.
        line: usize,
        /// Column (1-based, in characters) of the offending token in the caller's text.
        column: usize,
    },
    #[error("error executing template {name}: {message}")]
    Exec {
        name: String,
        /// Go's message: `template: NAME:LINE:COL: executing "NAME" at <...>: ...`.
        message: String,
        /// Where in the caller's text the failing node is (1-based), when known.
        line: Option<usize>,
        column: Option<usize>,
    },
}

impl TemplateError {
    /// Go's own error text, without Prometheus' `error parsing template NAME: ` wrapper: what
    /// `promtool check rules` prints after `annotation "summary": `.
    pub fn go_text(&self) -> String {
        match self {
            TemplateError::Parse {
                name,
                message,
                go_line,
                ..
            } => {
                format!("template: {name}:{go_line}: {message}")
            }
            TemplateError::Exec { message, .. } => message.clone(),
        }
    }

    /// Line and column (1-based) in the caller's text, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            TemplateError::Parse { line, column, .. } => Some((*line, *column)),
            TemplateError::Exec {
                line: Some(l),
                column: Some(c),
                ..
            } => Some((*l, *c)),
            TemplateError::Exec { .. } => None,
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = 1 + before.matches('\n').count();
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[start..].chars().count() + 1)
}

/// A parsed template, ready to execute any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    /// The full parsed text (with any prefix).
    text: String,
    /// Bytes of `text` before the caller's own text (the alert prelude), so positions can be
    /// reported in the caller's terms.
    prefix_len: usize,
    trees: parse::TreeSet,
}

impl Template {
    /// Parses `text` as template `name`, with Prometheus' function set.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        Self::parse_with_prefix(name, "", text)
    }

    fn parse_with_prefix(name: &str, prefix: &str, text: &str) -> Result<Template, TemplateError> {
        let full = format!("{prefix}{text}");
        match parse::parse(name, &full, &funcs::exists) {
            Ok(trees) => Ok(Template {
                name: name.to_string(),
                text: full,
                prefix_len: prefix.len(),
                trees,
            }),
            Err(e) => {
                let (line, column) = line_col(text, e.offset.saturating_sub(prefix.len()));
                Err(TemplateError::Parse {
                    name: name.to_string(),
                    message: e.message,
                    go_line: e.line,
                    line,
                    column,
                })
            }
        }
    }

    /// Runs the template on `data`.
    pub fn execute(&self, data: &Value, env: &Env<'_>) -> Result<String, TemplateError> {
        exec::execute(&self.trees, &self.name, &self.text, &self.name, data, env).map_err(|e| {
            let pos = e
                .offset
                .filter(|o| *o >= self.prefix_len)
                .map(|o| line_col(&self.text[self.prefix_len..], o - self.prefix_len));
            TemplateError::Exec {
                name: self.name.clone(),
                message: e.message,
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
            }
        })
    }
}

/// Prometheus' `template.Expander` in text mode: a template, its data and the outside world.
pub struct Expander<'a> {
    name: String,
    text: String,
    data: Value,
    timestamp_ms: i64,
    external_url: String,
    query: Option<&'a dyn QueryFn>,
}

impl<'a> Expander<'a> {
    pub fn new(name: impl Into<String>, text: impl Into<String>, data: Value) -> Self {
        Expander {
            name: name.into(),
            text: text.into(),
            data,
            timestamp_ms: 0,
            external_url: String::new(),
            query: None,
        }
    }

    /// The evaluation time `now` returns, in milliseconds since the epoch.
    pub fn timestamp_ms(mut self, ts: i64) -> Self {
        self.timestamp_ms = ts;
        self
    }

    /// What `externalURL` returns (and `pathPrefix` takes the path of).
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = url.into();
        self
    }

    pub fn query(mut self, q: &'a dyn QueryFn) -> Self {
        self.query = Some(q);
        self
    }

    /// Parses and runs the template (Prometheus' `Expand`).
    pub fn expand(&self) -> Result<String, TemplateError> {
        let t = Template::parse(&self.name, &self.text)?;
        let env = Env {
            query: self.query,
            timestamp_ms: self.timestamp_ms,
            external_url: &self.external_url,
        };
        t.execute(&self.data, &env)
    }
}

/// The variables Prometheus defines in front of every alert label and annotation template.
pub const ALERT_TEMPLATE_PREFIX: &str =
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// The data an alert template runs on (Prometheus' `AlertTemplateData`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertData {
    /// The alert's labels (the sample's labels without `__name__`, plus the rule's labels).
    pub labels: BTreeMap<String, String>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    /// The sample value that made the alert fire.
    pub value: f64,
}

impl AlertData {
    /// The data as a Go struct value: `.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`.
    pub fn to_value(&self) -> Value {
        Value::Struct(Arc::new(StructValue {
            type_name: "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"
                .into(),
            fields: vec![
                ("Labels".into(), Value::string_map(self.labels.clone())),
                ("ExternalLabels".into(), Value::string_map(self.external_labels.clone())),
                ("ExternalURL".into(), Value::String(self.external_url.clone())),
                ("Value".into(), Value::Float(self.value)),
            ],
        }))
    }
}

/// The result of expanding an alert template: the text to use, and the error if there was one
/// (then `text` is Prometheus' `<error expanding template: ...>`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertExpansion {
    pub text: String,
    pub error: Option<TemplateError>,
}

/// A label or annotation template of one alerting rule, parsed once and expanded per alert.
#[derive(Debug, Clone)]
pub struct AlertTemplate {
    parsed: Result<Template, TemplateError>,
}

impl AlertTemplate {
    /// Parses `text` for the rule named `alert_name` (the template is named `__alert_NAME`, as
    /// in Prometheus' messages). A parse error is kept and reported at each expansion.
    pub fn parse(alert_name: &str, text: &str) -> Self {
        AlertTemplate {
            parsed: Template::parse_with_prefix(
                &format!("__alert_{alert_name}"),
                ALERT_TEMPLATE_PREFIX,
                text,
            ),
        }
    }

    /// The parse error, if the template does not parse.
    pub fn parse_error(&self) -> Option<&TemplateError> {
        self.parsed.as_ref().err()
    }

    /// Expands the template for one alert at `timestamp_ms`, as Prometheus' alerting rule does.
    pub fn expand(
        &self,
        data: &AlertData,
        timestamp_ms: i64,
        query: &dyn QueryFn,
    ) -> AlertExpansion {
        let result = self.parsed.as_ref().map_err(Clone::clone).and_then(|t| {
            let env = Env {
                query: Some(query),
                timestamp_ms,
                external_url: &data.external_url,
            };
            t.execute(&data.to_value(), &env)
        });
        match result {
            Ok(text) => AlertExpansion { text, error: None },
            Err(e) => AlertExpansion {
                text: format!("<error expanding template: {e}>"),
                error: Some(e),
            },
        }
    }
}

/// Expands one label or annotation value `text` of alert `alert_name` (see [`AlertTemplate`]).
pub fn expand_alert(
    alert_name: &str,
    text: &str,
    data: &AlertData,
    timestamp_ms: i64,
    query: &dyn QueryFn,
) -> AlertExpansion {
    AlertTemplate::parse(alert_name, text).expand(data, timestamp_ms, query)
}

/// Checks that an alert template of rule `alert_name` parses, as `promtool check rules` does;
/// the error has the position in `text`.
pub fn check_alert(alert_name: &str, text: &str) -> Result<(), TemplateError> {
    match AlertTemplate::parse(alert_name, text).parsed {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`check_alert`] for a template whose rule name does not matter.
pub fn check(text: &str) -> Result<(), TemplateError> {
    check_alert("", text)
}

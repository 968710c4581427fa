//! Runner for Prometheus' `promqltest` scripts (`load`, `clear`, `eval instant|range`,
//! `expect …`), the format of `promql/promqltest/` in the Prometheus repository. It owns the
//! script parser, loading into an in-memory [`Db`], evaluation through [`Engine`] and the
//! comparison of results; it never evaluates PromQL itself. `depin-orcha test promql FILE…`
//! and `tests/promqltest.rs` call [`run_file`] / [`run_script`].
//!
//! Semantics follow Prometheus 3.14's `test.go`: every `eval` is one case; floats compare with
//! `almost.Equal` (relative epsilon 1e-6, NaN equals NaN, a stale marker only equals a stale
//! marker); `expect fail|warn|info|no_warn|no_info|ordered` and the deprecated `eval_fail`,
//! `eval_warn`, `eval_info`, `eval_ordered`, `expected_fail_message`, `expected_fail_regexp`;
//! `expect range vector from … to … step …` and `expect string "…"`. An instant case is also run
//! as a range query from t-1m to t+1m step 1m and its middle step compared ("range mode"), as
//! Prometheus does, unless it expects a range vector or a string, is ordered, or calls
//! `start()`/`end()`/`range()`/`step()`. Like test.go, an instant case is then run again with
//! `@ <t>` on every selector and subquery, at the times -10t, 0, t/5, t and 10t (-1s, 0, 1s when
//! t is 0), unless it calls a function whose value depends on the evaluation time.
//!
//! Annotation positions: `promql-parser` keeps no source positions, so an annotation of ours
//! without a trailing `(line:col)` is compared with the expected message after removing the
//! expected one's `(line:col)` suffix (for `regex:` expectations, the annotation is also tried
//! with the position the pattern spells out, or ` (1:1)`).
//!
//! A parse error in the script is a failure of the case (or `load`) on that line; the rest of the
//! file still runs.
//!
//! Skip rules (a skipped case is reported with its reason, never counted as passed):
//! 1. native histograms: the case expects a `{{…}}` result, or one of its selectors can match a
//!    series that was loaded with `{{…}}` samples or built by `load_with_nhcb` (the float series
//!    of an NHCB load are still loaded), or it calls a function that only reads native
//!    histograms (`histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
//!    `histogram_stdvar`);
//! 2. experimental functions (marked `Experimental` in Prometheus 3.14 `parser/functions.go`)
//!    that we do not implement: `info` (needs `target_info` joins), `start`, `end`, `range`,
//!    `step` (need the query's range, which a function call does not see), `start_timestamp`
//!    (needs stored start timestamps). The experimental features we do implement run like any
//!    other case: `double_exponential_smoothing`, `histogram_quantiles`, `mad_over_time`,
//!    `sort_by_label`, `sort_by_label_desc`, `ts_of_{first,last,min,max}_over_time`, `max_of`,
//!    `min_of`, and the `limitk`/`limit_ratio` aggregations;
//! 3. experimental syntax that `promql-parser` cannot parse (the `anchored`/`smoothed` range
//!    modifiers, `fill…` binary-operator modifiers, duration expressions): a parse failure of an
//!    expression that uses one of these words is a skip, any other parse failure a failure.

use std::fmt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr, VectorSelector};
use regex::Regex;

use crate::compat::duration::parse_model_duration;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::{Engine, Error, QueryResult, Value};
use crate::tsdb::{is_stale_nan, stale_nan, Db};

/// Relative error allowed for sample values (`defaultEpsilon` in test.go).
const EPSILON: f64 = 0.000001;

/// Experimental functions we do not implement (skip rule 2).
const SKIPPED_EXPERIMENTAL_FUNCTIONS: &[&str] = &["info", "start_timestamp"];

/// Functions that only read native histograms (skip rule 1).
const NATIVE_HISTOGRAM_FUNCTIONS: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_stddev",
    "histogram_stdvar",
];

/// Words whose presence explains a parse failure as experimental syntax (skip rule 3).
const EXPERIMENTAL_SYNTAX: &[&str] = &[
    "anchored",
    "smoothed",
    "fill(",
    "fill_left(",
    "fill_right(",
    "fill (",
];

/// A case that did not pass: where, what, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseFailure {
    /// 1-based line of the `eval` (or `load`, or the offending line of a script error).
    pub line: usize,
    pub expr: String,
    pub message: String,
}

/// A case that was not run, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseSkip {
    pub line: usize,
    pub expr: String,
    pub reason: String,
}

/// The outcome of one script.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub failures: Vec<CaseFailure>,
    pub skips: Vec<CaseSkip>,
}

impl FileReport {
    fn fail(&mut self, line: usize, expr: &str, message: impl Into<String>) {
        self.failed += 1;
        self.failures.push(CaseFailure {
            line,
            expr: expr.to_string(),
            message: message.into(),
        });
    }

    fn skip(&mut self, line: usize, expr: &str, reason: impl Into<String>) {
        self.skipped += 1;
        self.skips.push(CaseSkip {
            line,
            expr: expr.to_string(),
            reason: reason.into(),
        });
    }

    /// Share of the cases that ran (passed + failed) that passed, in percent; 100 when none ran.
    pub fn pass_percent(&self) -> f64 {
        let ran = self.passed + self.failed;
        if ran == 0 {
            100.0
        } else {
            100.0 * self.passed as f64 / ran as f64
        }
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.failures {
            writeln!(
                f,
                "FAIL {}:{}: {}\n    {}",
                self.name, x.line, x.expr, x.message
            )?;
        }
        for s in &self.skips {
            writeln!(
                f,
                "SKIP {}:{}: {} ({})",
                self.name, s.line, s.expr, s.reason
            )?;
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Runs one `.test` file. An unreadable file is one failure at line 0.
pub fn run_file(path: &Path) -> FileReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text),
        Err(e) => {
            let mut r = FileReport {
                name,
                ..FileReport::default()
            };
            r.fail(0, "", format!("cannot read script: {e}"));
            r
        }
    }
}

/// Runs a script given as text; `name` only labels the report.
pub fn run_script(name: &str, text: &str) -> FileReport {
    let mut report = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    let mut state = State {
        db: Db::in_memory(),
        native: Vec::new(),
        engine: Engine::default(),
    };
    for cmd in parse_script(text) {
        match cmd {
            Command::Clear => {
                state.db = Db::in_memory();
                state.native.clear();
            }
            Command::Load(l) => {
                if let Err(e) = state.load(&l) {
                    report.fail(l.line, "load", e);
                }
            }
            // An engine panic fails this case only, so the rest of the report survives.
            Command::Eval(ev) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.eval(&ev)))
                    .unwrap_or_else(|p| {
                        Outcome::Fail(format!("engine panicked: {}", panic_text(&*p)))
                    }) {
                    Outcome::Pass => report.passed += 1,
                    Outcome::Fail(m) => report.fail(ev.line, &ev.expr, m),
                    Outcome::Skip(m) => report.skip(ev.line, &ev.expr, m),
                }
            }
            Command::Invalid {
                line,
                text,
                message,
            } => report.fail(line, &text, message),
        }
    }
    report
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

// ---------------------------------------------------------------------------------------------
// Script model and parser

/// One position of a series description (`SequenceValue` in Prometheus).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this step.
    Omitted,
    Float(f64),
    /// A `{{…}}` native histogram sample (not loaded; see the skip rules).
    Histogram,
}

#[derive(Clone, Debug, PartialEq)]
struct LoadCmd {
    line: usize,
    interval_ms: i64,
    with_nhcb: bool,
    series: Vec<(Labels, Vec<SeqValue>)>,
}

#[derive(Clone, Debug, PartialEq)]
enum ExpectKind {
    Fail,
    Warn,
    NoWarn,
    Info,
    NoInfo,
    Ordered,
}

/// `msg:` (exact) or `regex:`; a bare `expect warn` matches anything.
#[derive(Clone, Debug)]
enum MsgMatch {
    Exact(String),
    Regex(Regex),
}

impl MsgMatch {
    fn any() -> MsgMatch {
        // The pattern is a constant, so this cannot fail.
        MsgMatch::Regex(Regex::new("^.*$").unwrap_or_else(|_| unreachable!()))
    }

    fn describe(&self) -> String {
        match self {
            MsgMatch::Exact(m) => format!("message {m:?}"),
            MsgMatch::Regex(r) => format!("pattern {:?}", r.as_str()),
        }
    }

    /// Whether an error text matches exactly as test.go compares it.
    fn matches_error(&self, s: &str) -> bool {
        match self {
            MsgMatch::Exact(m) => m == s,
            MsgMatch::Regex(r) => r.is_match(s),
        }
    }

    /// Whether an annotation matches, tolerating our missing `(line:col)` suffix.
    fn matches_annotation(&self, s: &str) -> bool {
        if self.matches_error(s) {
            return true;
        }
        if has_position_suffix(s) {
            return false;
        }
        match self {
            MsgMatch::Exact(m) => strip_position_suffix(m) == s,
            MsgMatch::Regex(r) => {
                // Use the position the pattern spells out, if any.
                let pos = Regex::new(r"\\\((\d+):(\d+)\\\)")
                    .ok()
                    .and_then(|p| {
                        p.captures(r.as_str())
                            .map(|c| format!("({}:{})", &c[1], &c[2]))
                    })
                    .unwrap_or_else(|| "(1:1)".to_string());
                r.is_match(&format!("{s} {pos}"))
            }
        }
    }
}

fn position_re() -> Regex {
    Regex::new(r" \(\d+:\d+\)$").unwrap_or_else(|_| unreachable!())
}

fn has_position_suffix(s: &str) -> bool {
    position_re().is_match(s)
}

fn strip_position_suffix(s: &str) -> String {
    position_re().replace(s, "").into_owned()
}

#[derive(Clone, Debug, PartialEq)]
enum EvalKind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Clone, Debug, PartialEq)]
struct ExpectedSeries {
    /// 1-based position among the expected series (for `ordered`).
    pos: usize,
    labels: Labels,
    vals: Vec<SeqValue>,
}

#[derive(Clone, Debug)]
struct EvalCmd {
    line: usize,
    expr: String,
    kind: EvalKind,
    /// Deprecated `eval_fail` / `eval_warn` / `eval_info` / `eval_ordered`.
    fail: bool,
    warn: bool,
    info: bool,
    ordered: bool,
    expected_fail_message: Option<String>,
    expected_fail_regexp: Option<Regex>,
    expects: Vec<(ExpectKind, MsgMatch)>,
    /// `expect range vector from … to … step …` on an instant query: `(start, end, step)`.
    range_vector: Option<(i64, i64, i64)>,
    expected_string: Option<String>,
    expected_scalar: Option<f64>,
    expected: Vec<ExpectedSeries>,
    /// An expected value is a native histogram.
    expects_histogram: bool,
    /// A problem in the case's own lines (reported as its failure).
    error: Option<String>,
}

impl EvalCmd {
    fn is_fail(&self) -> bool {
        self.fail || self.expects.iter().any(|(k, _)| *k == ExpectKind::Fail)
    }
    fn is_ordered(&self) -> bool {
        self.ordered || self.expects.iter().any(|(k, _)| *k == ExpectKind::Ordered)
    }
    fn expects_of(&self, kind: ExpectKind) -> Vec<&MsgMatch> {
        self.expects
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| m)
            .collect()
    }
    fn has(&self, kind: ExpectKind) -> bool {
        self.expects.iter().any(|(k, _)| *k == kind)
    }
    fn excluded_from_range_mode(&self) -> bool {
        self.range_vector.is_some() || self.expected_string.is_some()
    }
}

#[derive(Clone, Debug)]
enum Command {
    Clear,
    Load(LoadCmd),
    Eval(Box<EvalCmd>),
    Invalid {
        line: usize,
        text: String,
        message: String,
    },
}

/// Lines trimmed, comments blanked (`getLines`).
fn get_lines(input: &str) -> Vec<String> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect()
}

fn parse_script(input: &str) -> Vec<Command> {
    let lines = get_lines(input);
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l.split([' ', '\t']).next().unwrap_or("").to_lowercase();
        if word == "clear" {
            cmds.push(Command::Clear);
        } else if word.starts_with("load") {
            let (next, cmd) = parse_load(&lines, i);
            i = next;
            cmds.push(cmd);
        } else if word.starts_with("eval") {
            let (next, cmd) = parse_eval(&lines, i);
            i = next;
            cmds.push(cmd);
        } else {
            cmds.push(Command::Invalid {
                line: i + 1,
                text: l.clone(),
                message: format!("invalid command {l:?}"),
            });
        }
        i += 1;
    }
    cmds
}

/// Parses `load <interval>` and its series lines. Returns the index of the last line consumed.
fn parse_load(lines: &[String], start: usize) -> (usize, Command) {
    let head = &lines[start];
    let invalid = |i: usize, message: String| Command::Invalid {
        line: i + 1,
        text: lines[i].clone(),
        message,
    };
    let re = Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap_or_else(|_| unreachable!());
    let mut i = start;
    // Consume the block whatever happens, so that its series lines are not read as commands.
    let mut end = start;
    while end + 1 < lines.len() && !lines[end + 1].is_empty() {
        end += 1;
    }
    let Some(caps) = re.captures(head) else {
        return (
            end,
            invalid(
                start,
                "invalid load command. (load[_with_nhcb] <step:duration>)".into(),
            ),
        );
    };
    let with_nhcb = caps.get(1).is_some();
    let step = caps.get(2).map_or("", |m| m.as_str());
    let interval_ms = match parse_model_duration(step) {
        Ok(d) => d,
        Err(e) => {
            return (
                end,
                invalid(start, format!("invalid step definition {step:?}: {e}")),
            )
        }
    };
    let mut series: Vec<(Labels, Vec<SeqValue>)> = Vec::new();
    while i < end {
        i += 1;
        match parse_series(&lines[i]) {
            Ok((labels, vals)) => {
                // A later definition of the same series replaces the earlier one, as in test.go.
                series.retain(|(l, _)| *l != labels);
                series.push((labels, vals));
            }
            Err(e) => return (end, invalid(i, format!("bad series line: {e}"))),
        }
    }
    (
        end,
        Command::Load(LoadCmd {
            line: start + 1,
            interval_ms,
            with_nhcb,
            series,
        }),
    )
}

fn parse_eval(lines: &[String], start: usize) -> (usize, Command) {
    let head = &lines[start];
    let pat_instant =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap_or_else(|_| unreachable!());
    let pat_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap_or_else(|_| unreachable!());
    let block_end = {
        let mut e = start;
        while e + 1 < lines.len() && !lines[e + 1].is_empty() {
            e += 1;
        }
        e
    };
    let (modifier, expr, kind) = if let Some(c) = pat_instant.captures(head) {
        let m = c.get(1).map(|m| m.as_str().to_string());
        let expr = c.get(3).map_or("", |m| m.as_str()).to_string();
        let at = c.get(2).map_or("", |m| m.as_str());
        match parse_model_duration(at) {
            Ok(t) => (m, expr, EvalKind::Instant { at: t }),
            Err(e) => {
                return (
                    block_end,
                    Command::Invalid {
                        line: start + 1,
                        text: expr.clone(),
                        message: format!("invalid timestamp definition {at:?}: {e}"),
                    },
                )
            }
        }
    } else if let Some(c) = pat_range.captures(head) {
        let m = c.get(1).map(|m| m.as_str().to_string());
        let g = |n: usize| c.get(n).map_or("", |m| m.as_str());
        let expr = g(5).to_string();
        match parse_durations(g(2), g(3), g(4)) {
            Ok((start_t, end_t, step)) => (
                m,
                expr,
                EvalKind::Range {
                    start: start_t,
                    end: end_t,
                    step,
                },
            ),
            Err(e) => {
                return (
                    block_end,
                    Command::Invalid {
                        line: start + 1,
                        text: expr,
                        message: e,
                    },
                )
            }
        }
    } else {
        return (
            block_end,
            Command::Invalid {
                line: start + 1,
                text: head.clone(),
                message: "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from <from> to <to> step <step> <query>'".into(),
            },
        );
    };
    let mut cmd = EvalCmd {
        line: start + 1,
        expr,
        kind,
        fail: modifier.as_deref() == Some("fail"),
        warn: modifier.as_deref() == Some("warn"),
        info: modifier.as_deref() == Some("info"),
        ordered: modifier.as_deref() == Some("ordered"),
        expected_fail_message: None,
        expected_fail_regexp: None,
        expects: Vec::new(),
        range_vector: None,
        expected_string: None,
        expected_scalar: None,
        expected: Vec::new(),
        expects_histogram: false,
        error: None,
    };
    let is_instant = matches!(cmd.kind, EvalKind::Instant { .. });
    let mut i = start;
    let mut j = 0usize;
    while i + 1 < lines.len() {
        i += 1;
        j += 1;
        let def = lines[i].as_str();
        if def.is_empty() {
            i -= 1;
            break;
        }
        let fail_at = |cmd: &mut EvalCmd, msg: String| {
            if cmd.error.is_none() {
                cmd.error = Some(format!("line {}: {msg}", i + 1));
            }
        };
        if cmd.fail && def.starts_with("expected_fail_message") {
            cmd.expected_fail_message = Some(
                def.trim_start_matches("expected_fail_message")
                    .trim()
                    .to_string(),
            );
            break;
        }
        if cmd.fail && def.starts_with("expected_fail_regexp") {
            let pattern = def.trim_start_matches("expected_fail_regexp").trim();
            match Regex::new(pattern) {
                Ok(r) => cmd.expected_fail_regexp = Some(r),
                Err(e) => fail_at(
                    &mut cmd,
                    format!("invalid regexp '{pattern}' for expected_fail_regexp: {e}"),
                ),
            }
            break;
        }
        if def.starts_with("expect range vector") {
            match parse_expect_range_vector(def) {
                Ok(r) => {
                    cmd.range_vector = Some(r);
                    cmd.kind = EvalKind::Instant { at: r.1 };
                }
                Err(e) => fail_at(&mut cmd, e),
            }
            continue;
        }
        if def.starts_with("expect string") {
            match parse_expect_string(def) {
                Ok(s) => cmd.expected_string = Some(s),
                Err(e) => fail_at(&mut cmd, e),
            }
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            match parse_expect(def) {
                Ok(x) => {
                    cmd.expects.push(x);
                    j -= 1;
                    if let Err(e) = validate_expects(&cmd) {
                        fail_at(&mut cmd, e);
                    }
                }
                Err(e) => fail_at(&mut cmd, e),
            }
            continue;
        }
        if let Some(f) = parse_number(def) {
            cmd.expected_scalar = Some(f);
            cmd.expected.clear();
            break;
        }
        match parse_series(def) {
            Ok((labels, vals)) => {
                if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
                    cmd.expects_histogram = true;
                }
                if vals.len() > 1 && is_instant && cmd.range_vector.is_none() {
                    fail_at(&mut cmd, "expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' directive to enable a range vector result for an instant query".into());
                }
                cmd.expected_scalar = None;
                cmd.expected.retain(|e| e.labels != labels);
                cmd.expected.push(ExpectedSeries {
                    pos: j,
                    labels,
                    vals,
                });
            }
            Err(e) => fail_at(&mut cmd, format!("bad expected series: {e}")),
        }
    }
    (i, Command::Eval(Box::new(cmd)))
}

fn parse_expect(def: &str) -> Result<(ExpectKind, MsgMatch), String> {
    let re =
        Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
            .unwrap_or_else(|_| unreachable!());
    let c = re.captures(def.trim()).ok_or(
        "invalid expect statement, must match `expect <type> <match_type>: <string>` format",
    )?;
    let kind = match c.get(1).map_or("", |m| m.as_str()) {
        "ordered" => ExpectKind::Ordered,
        "fail" => ExpectKind::Fail,
        "warn" => ExpectKind::Warn,
        "no_warn" => ExpectKind::NoWarn,
        "info" => ExpectKind::Info,
        _ => ExpectKind::NoInfo,
    };
    let m = match (
        c.get(2).map(|m| m.as_str()),
        c.get(3).map(|m| m.as_str().trim()),
    ) {
        (Some("msg"), Some(s)) => MsgMatch::Exact(s.to_string()),
        (Some(_), Some(p)) => {
            MsgMatch::Regex(Regex::new(p).map_err(|e| format!("invalid regex {p} : {e}"))?)
        }
        _ => MsgMatch::any(),
    };
    Ok((kind, m))
}

fn validate_expects(cmd: &EvalCmd) -> Result<(), String> {
    if cmd.has(ExpectKind::Info) && cmd.has(ExpectKind::NoInfo) {
        return Err("invalid expect lines, info and no_info cannot be used together".into());
    }
    if cmd.has(ExpectKind::Warn) && cmd.has(ExpectKind::NoWarn) {
        return Err("invalid expect lines, warn and no_warn cannot be used together".into());
    }
    if cmd.expects_of(ExpectKind::Fail).len() > 1 {
        return Err("invalid expect lines, multiple expect fail lines are not allowed".into());
    }
    Ok(())
}

fn parse_expect_range_vector(def: &str) -> Result<(i64, i64, i64), String> {
    let re = Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
        .unwrap_or_else(|_| unreachable!());
    let c = re
        .captures(def)
        .ok_or_else(|| format!("invalid range vector definition {def:?}"))?;
    let g = |n: usize| c.get(n).map_or("", |m| m.as_str());
    parse_durations(g(1), g(2), g(3))
}

fn parse_expect_string(def: &str) -> Result<String, String> {
    let rest = def.strip_prefix("expect string").unwrap_or("");
    let s = rest.strip_prefix(' ').unwrap_or("");
    if s.is_empty() {
        return Err(
            "expected string literal not valid - a quoted string literal is required".into(),
        );
    }
    let mut chars = s.chars().peekable();
    let lit = unquote(&mut chars).map_err(|_| {
        "expected string literal not valid - check that the string is correctly quoted".to_string()
    })?;
    if chars.next().is_some() {
        return Err(
            "expected string literal not valid - check that the string is correctly quoted".into(),
        );
    }
    Ok(lit)
}

fn parse_durations(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let f = parse_model_duration(from)
        .map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let t = parse_model_duration(to)
        .map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if t < f {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let s =
        parse_model_duration(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((f, t, s))
}

/// test.go's `parseNumber`: an integer with Go's base prefixes, or a float.
fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let int = {
        let b = body.replace('_', "");
        let lower = b.to_ascii_lowercase();
        let parsed = if let Some(h) = lower.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()
        } else if let Some(o) = lower.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()
        } else if let Some(bn) = lower.strip_prefix("0b") {
            i64::from_str_radix(bn, 2).ok()
        } else if lower.len() > 1 && lower.starts_with('0') {
            i64::from_str_radix(&lower[1..], 8).ok()
        } else if !body.contains('_') {
            lower.parse::<i64>().ok()
        } else {
            None
        };
        parsed.filter(|_| !b.is_empty() && (body == b || lower.starts_with('0')))
    };
    if let Some(n) = int {
        let f = n as f64;
        return Some(if neg { -f } else { f });
    }
    if body.contains('_') || body.starts_with(['+', '-']) {
        return None;
    }
    let f: f64 = body.parse().ok()?;
    Some(if neg { -f } else { f })
}

/// Parses a series description `metric{a="b"} 1 2+3x4 _ stale` into labels and values.
pub fn parse_series(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let mut chars = line.trim().chars().peekable();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name: String = std::iter::from_fn(|| {
        chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
    })
    .collect();
    if !name.is_empty() {
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("invalid metric name {name:?}"));
        }
        pairs.push((METRIC_NAME.to_string(), name));
    }
    let has_braces = chars.peek() == Some(&'{');
    if has_braces {
        chars.next();
        loop {
            skip_ws(&mut chars);
            match chars.peek() {
                Some('}') => {
                    chars.next();
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let lname = if matches!(chars.peek(), Some('"') | Some('\'') | Some('`')) {
                unquote(&mut chars)?
            } else {
                let n: String = std::iter::from_fn(|| {
                    chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                })
                .collect();
                if n.is_empty() {
                    return Err(format!(
                        "unexpected character in label set: {:?}",
                        chars.peek()
                    ));
                }
                n
            };
            skip_ws(&mut chars);
            if chars.peek() == Some(&'=') {
                chars.next();
                skip_ws(&mut chars);
                let v = unquote(&mut chars)?;
                pairs.push((lname, v));
            } else {
                // A lone quoted string is the metric name (UTF-8 syntax `{"my.metric"}`).
                pairs.push((METRIC_NAME.to_string(), lname));
            }
            skip_ws(&mut chars);
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("unexpected {other:?} in label set")),
            }
        }
    }
    if pairs.is_empty() && !has_braces {
        return Err("missing metric name or label set".into());
    }
    let rest: String = chars.collect();
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(format!("unexpected {rest:?} after the label set"));
    }
    let vals = parse_values(rest.trim())?;
    Ok((Labels::from_pairs(pairs), vals))
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// A Go/PromQL string literal (`"…"`, `'…'` or `` `…` ``) with its escapes.
fn unquote(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let q = chars.next().ok_or("expected a quoted string")?;
    if !matches!(q, '"' | '\'' | '`') {
        return Err(format!("expected a quoted string, got {q:?}"));
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    loop {
        let c = chars.next().ok_or("unterminated quoted string")?;
        if c == q {
            break;
        }
        if c != '\\' || q == '`' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or("unterminated escape")?;
        let mut take_hex = |n: usize| -> Result<u32, String> {
            let s: String = (0..n).filter_map(|_| chars.next()).collect();
            u32::from_str_radix(&s, 16).map_err(|_| format!("bad escape \\{e}{s}"))
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '"' | '\'' => {
                flush(&mut bytes, &mut out);
                out.push(e)
            }
            'x' => {
                let v = take_hex(2)?;
                bytes.push(v as u8);
                continue;
            }
            'u' | 'U' => {
                let v = take_hex(if e == 'u' { 4 } else { 8 })?;
                flush(&mut bytes, &mut out);
                out.push(char::from_u32(v).ok_or("bad unicode escape")?);
            }
            '0'..='7' => {
                let s: String = std::iter::once(e)
                    .chain((0..2).filter_map(|_| chars.next()))
                    .collect();
                let v =
                    u32::from_str_radix(&s, 8).map_err(|_| format!("bad octal escape \\{s}"))?;
                bytes.push(v as u8);
                continue;
            }
            other => return Err(format!("unknown escape sequence \\{other}")),
        }
    }
    flush(&mut bytes, &mut out);
    Ok(out)
}

/// The value part of a series description: `_`, `_xN`, `v`, `vxN`, `v+dxN`, `v-dxN`, `stale`,
/// `{{…}}` (histogram, possibly with `xN`).
fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_whitespace() {
            i += 1;
            continue;
        }
        if b[i] == '{' && b.get(i + 1) == Some(&'{') {
            // A histogram item extends to the next whitespace after its closing `}}`; `+{{…}}`
            // continuations are included.
            let mut depth = 0;
            let mut k = i;
            while k < b.len() {
                if b[k] == '{' {
                    depth += 1;
                } else if b[k] == '}' {
                    depth -= 1;
                } else if b[k].is_whitespace() && depth == 0 {
                    break;
                }
                k += 1;
            }
            let item: String = b[i..k].iter().collect();
            let n = item
                .rsplit_once("}}x")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map_or(1, |n| n + 1);
            out.extend(std::iter::repeat_n(SeqValue::Histogram, n));
            i = k;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_whitespace() {
            i += 1;
        }
        let item: String = b[start..i].iter().collect();
        parse_item(&item, &mut out).map_err(|e| format!("{e} in {item:?}"))?;
    }
    Ok(out)
}

fn parse_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    if item == "_" {
        out.push(SeqValue::Omitted);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| "bad repetition count")?;
        out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
        return Ok(());
    }
    let b = item.as_bytes();
    let mut pos = 0;
    let base = lex_value(item, &mut pos)?;
    if pos == b.len() {
        out.push(SeqValue::Float(base));
        return Ok(());
    }
    let mut delta = 0.0;
    if b[pos] == b'+' || b[pos] == b'-' {
        let neg = b[pos] == b'-';
        pos += 1;
        let d = lex_number(item, &mut pos)?;
        delta = if neg { -d } else { d };
        if pos >= b.len() || b[pos] != b'x' {
            return Err("expected 'x<count>' after the increment".into());
        }
    }
    if b[pos] != b'x' {
        return Err(format!("unexpected {:?}", &item[pos..]));
    }
    let n: u64 = item[pos + 1..]
        .parse()
        .map_err(|_| "bad repetition count")?;
    // Repeated addition, as Prometheus' grammar does (`$1 += $2`), so rounding matches.
    let mut v = base;
    for _ in 0..=n {
        out.push(SeqValue::Float(v));
        v += delta;
    }
    Ok(())
}

/// A series value: `stale`, or a signed number.
fn lex_value(s: &str, pos: &mut usize) -> Result<f64, String> {
    if s[*pos..].starts_with("stale") {
        *pos += 5;
        return Ok(stale_nan());
    }
    let b = s.as_bytes();
    let neg = match b.get(*pos) {
        Some(b'-') => {
            *pos += 1;
            true
        }
        Some(b'+') => {
            *pos += 1;
            false
        }
        _ => false,
    };
    let v = lex_number(s, pos)?;
    Ok(if neg { -v } else { v })
}

/// An unsigned number: decimal with optional fraction and exponent, `Inf` or `NaN`.
fn lex_number(s: &str, pos: &mut usize) -> Result<f64, String> {
    let b = s.as_bytes();
    let start = *pos;
    if b.get(*pos).is_some_and(|c| c.is_ascii_alphabetic()) {
        while *pos < b.len() && b[*pos].is_ascii_alphabetic() && b[*pos] != b'x' {
            *pos += 1;
        }
        // `Inf`/`NaN` may be followed directly by `x3`; `inf` contains no `x` anyway.
        return match s[start..*pos].to_ascii_lowercase().as_str() {
            "inf" => Ok(f64::INFINITY),
            "nan" => Ok(f64::NAN),
            w => Err(format!("unexpected {w:?}, want a number or \"stale\"")),
        };
    }
    while *pos < b.len() && (b[*pos].is_ascii_digit() || b[*pos] == b'.' || b[*pos] == b'_') {
        *pos += 1;
    }
    if *pos < b.len() && (b[*pos] == b'e' || b[*pos] == b'E') {
        let save = *pos;
        *pos += 1;
        if *pos < b.len() && (b[*pos] == b'+' || b[*pos] == b'-') {
            *pos += 1;
        }
        let ds = *pos;
        while *pos < b.len() && b[*pos].is_ascii_digit() {
            *pos += 1;
        }
        if *pos == ds {
            *pos = save;
        }
    }
    let text = s[start..*pos].replace('_', "");
    if text.is_empty() {
        return Err("expected a number".into());
    }
    text.parse::<f64>()
        .map_err(|_| format!("bad number {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// Execution

struct State {
    db: Db,
    /// Series that hold native histograms in Prometheus (skip rule 1).
    native: Vec<Labels>,
    engine: Engine,
}

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl State {
    fn load(&mut self, l: &LoadCmd) -> Result<(), String> {
        for (labels, vals) in &l.series {
            if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
                self.native.push(labels.clone());
                continue;
            }
            for (k, v) in vals.iter().enumerate() {
                if let SeqValue::Float(f) = v {
                    self.db
                        .append(labels, k as i64 * l.interval_ms, *f)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if l.with_nhcb {
            for (labels, _) in &l.series {
                let name = labels.metric_name().unwrap_or("");
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s));
                if let Some(base) = base {
                    let mut b = labels.builder();
                    b.set(METRIC_NAME, base).del("le");
                    let h = b.build();
                    if !self.native.contains(&h) {
                        self.native.push(h);
                    }
                }
            }
        }
        Ok(())
    }

    fn eval(&self, ev: &EvalCmd) -> Outcome {
        if let Some(e) = &ev.error {
            return Outcome::Fail(format!("error in the case: {e}"));
        }
        if ev.expects_histogram {
            return Outcome::Skip("expects a native histogram result".into());
        }
        let expr = match crate::promql::parse(&ev.expr) {
            Ok(e) => e,
            Err(e) => {
                if let Some(w) = EXPERIMENTAL_SYNTAX.iter().find(|w| ev.expr.contains(*w)) {
                    return Outcome::Skip(format!(
                        "experimental syntax `{}` not supported by the parser",
                        w.trim_end_matches('(')
                    ));
                }
                // Like a query that fails to be created in test.go: fine if a failure is expected.
                if ev.is_fail() {
                    return match check_result(ev, Err(e), 0, 0, 0) {
                        Ok(()) => Outcome::Pass,
                        Err(m) => Outcome::Fail(m),
                    };
                }
                return Outcome::Fail(format!("parse error: {e}"));
            }
        };
        if let Some(reason) = self.skip_reason(&expr) {
            return Outcome::Skip(reason);
        }
        match ev.kind {
            EvalKind::Range { start, end, step } => {
                let res = self.engine.range_query(&self.db, &expr, start, end, step);
                match check_result(ev, res, start, end, step) {
                    Ok(()) => Outcome::Pass,
                    Err(m) => Outcome::Fail(m),
                }
            }
            EvalKind::Instant { at } => {
                if let Err(m) = self.run_instant(ev, &expr, at) {
                    return Outcome::Fail(m);
                }
                for (variant, t) in at_modifier_variants(&expr, at) {
                    if let Err(m) = self.run_instant(ev, &variant, t) {
                        return Outcome::Fail(format!(
                            "with every selector pinned by `@ {}` and evaluated at {t}ms: {m}",
                            at as f64 / 1000.0
                        ));
                    }
                }
                Outcome::Pass
            }
        }
    }

    fn run_instant(&self, ev: &EvalCmd, expr: &Expr, at: i64) -> Result<(), String> {
        let res = self.engine.instant_query(&self.db, expr, at);
        let (start, end, step) = ev.range_vector.unwrap_or((at, at, 0));
        let instant_was_scalar = matches!(
            res,
            Ok(QueryResult {
                value: Value::Scalar { .. },
                ..
            })
        );
        let ok = res.is_ok();
        check_result(ev, res, start, end, step)?;
        if !ok || ev.excluded_from_range_mode() {
            return Ok(());
        }
        if Regex::new(r"(start|end|range|step)\(\)").is_ok_and(|r| r.is_match(&ev.expr)) {
            return Ok(());
        }
        // Range mode: the same expression as a range query around `at` must give the same
        // result at `at`.
        let rr = self
            .engine
            .range_query(
                &self.db,
                expr,
                at.saturating_sub(60_000),
                at.saturating_add(60_000),
                60_000,
            )
            .map_err(|e| format!("error evaluating query in range mode: {e}"))?;
        if ev.is_ordered() {
            return Ok(());
        }
        let Value::Matrix(m) = rr.value else {
            return Err(format!(
                "range mode: range query returned a {}, want a matrix",
                rr.value.type_name()
            ));
        };
        assert_sorted(&m).map_err(|e| format!("range mode: {e}"))?;
        let mut vec = Vec::new();
        for s in &m {
            if let Some(p) = s.samples.iter().find(|p| p.t == at) {
                vec.push(crate::promql::InstantSample {
                    labels: s.labels.clone(),
                    t: p.t,
                    v: p.v,
                });
            }
        }
        let value = if instant_was_scalar {
            match vec.first() {
                Some(x) => Value::Scalar { t: at, v: x.v },
                None => {
                    return Err(
                        "range mode: no value at the evaluation time for a scalar expression"
                            .into(),
                    )
                }
            }
        } else {
            Value::Vector(vec)
        };
        compare_result(ev, &value, start, end, step).map_err(|e| format!("range mode: {e}"))
    }

    /// Why a case cannot run here (see the module doc), or `None`.
    fn skip_reason(&self, expr: &Expr) -> Option<String> {
        let mut reason = None;
        walk(expr, &mut |e| {
            if reason.is_some() {
                return;
            }
            match e {
                Expr::Call(c) => {
                    let n = c.func.name;
                    if SKIPPED_EXPERIMENTAL_FUNCTIONS.contains(&n) {
                        reason = Some(format!("experimental function {n}()"));
                    } else if NATIVE_HISTOGRAM_FUNCTIONS.contains(&n) {
                        reason = Some(format!("native histogram function {n}()"));
                    }
                }
                Expr::VectorSelector(vs) => {
                    if let Some(l) = self.native.iter().find(|l| selector_matches(vs, l)) {
                        reason = Some(format!("selects native histogram series {l}"));
                    }
                }
                Expr::MatrixSelector(ms) => {
                    if let Some(l) = self.native.iter().find(|l| selector_matches(&ms.vs, l)) {
                        reason = Some(format!("selects native histogram series {l}"));
                    }
                }
                _ => {}
            }
        });
        reason
    }
}

/// Functions whose result depends on the evaluation time even when their arguments are pinned
/// by `@` (`AtModifierUnsafeFunctions`).
const AT_MODIFIER_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

/// test.go's `atModifierTestCases`: the expression with `@ <at>` on every selector and
/// subquery that has none (selectors inside subqueries keep theirs), to be evaluated at
/// other times with the same expected result. Empty when a function makes that unsafe.
fn at_modifier_variants(expr: &Expr, at: i64) -> Vec<(Expr, i64)> {
    let mut unsafe_fn = false;
    walk(expr, &mut |e| {
        if let Expr::Call(c) = e {
            unsafe_fn |= AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name);
        }
    });
    if unsafe_fn {
        return Vec::new();
    }
    let pinned = {
        let mut e = expr.clone();
        pin_at(&mut e, &at_modifier(at));
        e
    };
    let times = if at == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![at.saturating_mul(-10), 0, at / 5, at, at.saturating_mul(10)]
    };
    times.into_iter().map(|t| (pinned.clone(), t)).collect()
}

fn at_modifier(ms: i64) -> AtModifier {
    let d = Duration::from_millis(ms.unsigned_abs());
    AtModifier::At(if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    })
}

fn pin_at(e: &mut Expr, at: &AtModifier) {
    match e {
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert_with(|| at.clone());
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert_with(|| at.clone());
        }
        // The selectors inside a subquery are evaluated relative to it: leave them alone.
        Expr::Subquery(sq) => {
            sq.at.get_or_insert_with(|| at.clone());
        }
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                pin_at(p, at);
            }
            pin_at(&mut a.expr, at);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at);
            pin_at(&mut b.rhs, at);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at),
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                pin_at(a, at);
            }
        }
        _ => {}
    }
}

/// Calls `f` on `e` and every expression below it.
fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, f);
            }
        }
        _ => {}
    }
}

fn selector_matches(vs: &VectorSelector, l: &Labels) -> bool {
    let get = |n: &str| l.get(n).unwrap_or("").to_string();
    if let Some(n) = &vs.name {
        if get(METRIC_NAME) != *n {
            return false;
        }
    }
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(&get(&m.name)));
    if vs.matchers.or_matchers.is_empty() {
        all(&vs.matchers.matchers)
    } else {
        vs.matchers.or_matchers.iter().any(|ms| all(ms))
    }
}

fn almost_equal(a: f64, b: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

/// Checks error expectations, annotations, then the value (test.go's exec + compareResult).
fn check_result(
    ev: &EvalCmd,
    res: Result<QueryResult, Error>,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    let r = match res {
        Err(e) => {
            if !ev.is_fail() {
                return Err(format!("error evaluating query: {e}"));
            }
            let msg = e.to_string();
            if let Some(m) = &ev.expected_fail_message {
                if *m != msg {
                    return Err(format!("expected error {m:?}, but got: {msg}"));
                }
            }
            if let Some(r) = &ev.expected_fail_regexp {
                if !r.is_match(&msg) {
                    return Err(format!(
                        "expected error matching pattern {:?}, but got: {msg}",
                        r.as_str()
                    ));
                }
            }
            if let Some(m) = ev.expects_of(ExpectKind::Fail).first() {
                if !m.matches_error(&msg) {
                    return Err(format!(
                        "expected error matching {}, but got: {msg}",
                        m.describe()
                    ));
                }
            }
            return Ok(());
        }
        Ok(r) => r,
    };
    if ev.is_fail() {
        return Err(format!(
            "expected error evaluating query but got none (result: {})",
            show_value(&r.value)
        ));
    }
    check_annotations(ev, &r.annotations)?;
    compare_result(ev, &r.value, start, end, step)
}

fn check_annotations(ev: &EvalCmd, a: &crate::promql::Annotations) -> Result<(), String> {
    if ev.warn && a.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.info && a.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    check_annotations_of(&ev.expects_of(ExpectKind::Warn), &a.warnings, "warn")?;
    check_annotations_of(&ev.expects_of(ExpectKind::Info), &a.infos, "info")?;
    if ev.has(ExpectKind::NoWarn) && !a.warnings.is_empty() {
        return Err(format!("unexpected warning annotations: {:?}", a.warnings));
    }
    if ev.has(ExpectKind::NoInfo) && !a.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", a.infos));
    }
    Ok(())
}

fn check_annotations_of(
    expected: &[&MsgMatch],
    actual: &[String],
    kind: &str,
) -> Result<(), String> {
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for e in expected {
        if !actual.iter().any(|a| e.matches_annotation(a)) {
            return Err(format!(
                "expected {kind} annotation matching {} but no matching annotation was found, found: {actual:?}",
                e.describe()
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.matches_annotation(a)) {
            return Err(format!("unexpected {kind} annotation {a:?}"));
        }
    }
    Ok(())
}

fn assert_sorted(m: &[crate::tsdb::Series]) -> Result<(), String> {
    for w in m.windows(2) {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but {} sorts after {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    Ok(())
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(vec) => {
            let items: Vec<String> = vec
                .iter()
                .map(|s| format!("{} {}", s.labels, s.v))
                .collect();
            format!("vector [{}]", items.join(", "))
        }
        Value::Matrix(m) => {
            let items: Vec<String> = m.iter().map(show_series).collect();
            format!("matrix [{}]", items.join(", "))
        }
    }
}

fn show_series(s: &crate::tsdb::Series) -> String {
    let pts: Vec<String> = s
        .samples
        .iter()
        .map(|p| format!("{}@{}", p.v, p.t))
        .collect();
    format!("{} [{}]", s.labels, pts.join(" "))
}

fn compare_result(ev: &EvalCmd, v: &Value, start: i64, end: i64, step: i64) -> Result<(), String> {
    let expect_scalar = ev.expected_scalar.is_some();
    match v {
        Value::Matrix(m) => {
            if ev.is_ordered() {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if expect_scalar {
                return Err(format!("expected scalar result, but got {}", show_value(v)));
            }
            assert_sorted(m)?;
            let mut seen = vec![false; ev.expected.len()];
            for s in m {
                let Some(k) = ev.expected.iter().position(|e| e.labels == s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {}",
                        s.labels,
                        show_series(s)
                    ));
                };
                seen[k] = true;
                let exp = &ev.expected[k];
                let mut want = Vec::new();
                for (i, e) in exp.vals.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this many points",
                            exp.vals.len(),
                            exp.labels
                        ));
                    }
                    if let SeqValue::Float(f) = e {
                        want.push((t, *f));
                    }
                }
                if want.len() != s.samples.len() {
                    return Err(format!(
                        "expected {} float points for {}, but got {}",
                        want.len(),
                        exp.labels,
                        show_series(s)
                    ));
                }
                for (i, ((t, f), got)) in want.iter().zip(&s.samples).enumerate() {
                    if *t != got.t {
                        return Err(format!(
                            "expected float value at index {i} for {} to have timestamp {t}, but it had timestamp {} (result has {})",
                            exp.labels,
                            got.t,
                            show_series(s)
                        ));
                    }
                    if !almost_equal(got.v, *f) {
                        return Err(format!(
                            "expected float value at index {i} (t={t}) for {} to be {f}, but got {} (result has {})",
                            exp.labels,
                            got.v,
                            show_series(s)
                        ));
                    }
                }
            }
            if let Some(k) = seen.iter().position(|s| !s) {
                return Err(format!(
                    "expected metric {} not found (result: {})",
                    ev.expected[k].labels,
                    show_value(v)
                ));
            }
        }
        Value::Vector(vec) => {
            if expect_scalar {
                return Err(format!("expected scalar result, but got {}", show_value(v)));
            }
            let mut seen = vec![false; ev.expected.len()];
            for (pos, s) in vec.iter().enumerate() {
                let Some(k) = ev.expected.iter().position(|e| e.labels == s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels, s.v
                    ));
                };
                let exp = &ev.expected[k];
                if ev.is_ordered() && exp.pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} at position {} but was at {}",
                        s.labels,
                        exp.pos,
                        pos + 1
                    ));
                }
                let want = match exp.vals.first() {
                    Some(SeqValue::Float(f)) => *f,
                    // test.go compares an omitted (`_`) expectation as the value 0.
                    Some(SeqValue::Omitted) => 0.0,
                    _ => {
                        return Err(format!(
                            "expected no value for {} but got {}",
                            s.labels, s.v
                        ))
                    }
                };
                if !almost_equal(want, s.v) {
                    return Err(format!("expected {want} for {} but got {}", s.labels, s.v));
                }
                seen[k] = true;
            }
            if let Some(k) = seen.iter().position(|s| !s) {
                return Err(format!(
                    "expected metric {} not found (result: {})",
                    ev.expected[k].labels,
                    show_value(v)
                ));
            }
        }
        Value::Scalar { v: got, .. } => {
            let Some(want) = ev.expected_scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {got}"
                ));
            };
            if !almost_equal(want, *got) {
                return Err(format!("expected scalar {want} but got {got}"));
            }
        }
        Value::String { s, .. } => {
            let want = ev.expected_string.as_deref().unwrap_or("");
            if want != s {
                return Err(format!("expected string {want:?} but got {s:?}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(vals: &[SeqValue]) -> Vec<Option<f64>> {
        vals.iter()
            .map(|v| match v {
                SeqValue::Float(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn expanding_notation() {
        let (l, v) = parse_series(r#"my_metric{env="prod"} 5 2+3x2 _ stale"#).unwrap();
        assert_eq!(l.to_string(), r#"my_metric{env="prod"}"#);
        assert_eq!(
            &floats(&v)[..5],
            &[Some(5.0), Some(2.0), Some(5.0), Some(8.0), None]
        );
        assert!(matches!(v[5], SeqValue::Float(f) if is_stale_nan(f)));
        assert_eq!(v.len(), 6);

        let (_, v) = parse_series("m 1+1x3 _x2 5").unwrap();
        assert_eq!(
            floats(&v),
            vec![
                Some(1.0),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                None,
                None,
                Some(5.0)
            ]
        );

        let (_, v) = parse_series("m -2-3x2 7x2 -Inf Inf NaN 1e3 0x2").unwrap();
        let f = floats(&v);
        assert_eq!(
            &f[..6],
            &[
                Some(-2.0),
                Some(-5.0),
                Some(-8.0),
                Some(7.0),
                Some(7.0),
                Some(7.0)
            ]
        );
        assert_eq!(f[6], Some(f64::NEG_INFINITY));
        assert_eq!(f[7], Some(f64::INFINITY));
        assert!(f[8].is_some_and(f64::is_nan));
        assert_eq!(&f[9..], &[Some(1000.0), Some(0.0), Some(0.0), Some(0.0)]);
    }

    #[test]
    fn increments_accumulate_like_prometheus() {
        let (_, v) = parse_series("m 0+0.1x3").unwrap();
        // Repeated addition: 0.1+0.1+0.1 is not 0.3 in floating point.
        assert_eq!(floats(&v)[3], Some(0.1 + 0.1 + 0.1));
    }

    #[test]
    fn label_sets_and_histograms() {
        let (l, v) =
            parse_series(r#"{__name__="a", b='x\"y', "c.d"="e",} 1 {{schema:0 sum:1 count:2}}x1"#)
                .unwrap();
        assert_eq!(l.get("b"), Some("x\"y"));
        assert_eq!(l.get("c.d"), Some("e"));
        assert_eq!(l.metric_name(), Some("a"));
        assert_eq!(
            v,
            vec![
                SeqValue::Float(1.0),
                SeqValue::Histogram,
                SeqValue::Histogram
            ]
        );
        assert!(parse_series("m 1 zz").is_err());
        assert!(parse_series(r#"m{a="b" 1"#).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_model_duration("0"), Ok(0));
        assert_eq!(parse_model_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_model_duration("1111111s"), Ok(1_111_111_000));
        assert_eq!(parse_model_duration("10ms"), Ok(10));
        assert!(parse_model_duration("1s1m").is_err());
        assert!(parse_model_duration("").is_err());
    }

    #[test]
    fn script_parser_reads_expectations() {
        let script = "load 1m\n  m{a=\"1\"} 1 2\n\n# c\neval instant at 1m m\n  expect warn msg: w (1:1)\n  expect no_info\n  m{a=\"1\"} 2\n\neval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 _\n\neval instant at 0 1\n  1\n";
        let cmds = parse_script(script);
        assert_eq!(cmds.len(), 4);
        let Command::Load(l) = &cmds[0] else {
            panic!("want load")
        };
        assert_eq!(l.interval_ms, 60_000);
        let Command::Eval(e) = &cmds[1] else {
            panic!("want eval")
        };
        assert_eq!(e.line, 5);
        assert_eq!(e.expects.len(), 2);
        assert_eq!(e.expected[0].pos, 1);
        let Command::Eval(r) = &cmds[2] else {
            panic!("want eval")
        };
        assert_eq!(
            r.kind,
            EvalKind::Range {
                start: 0,
                end: 120_000,
                step: 60_000
            }
        );
        let Command::Eval(s) = &cmds[3] else {
            panic!("want eval")
        };
        assert_eq!(s.expected_scalar, Some(1.0));
    }

    #[test]
    fn script_errors_are_failures_with_line_numbers() {
        let r = run_script(
            "t",
            "load 1m\n  m 1\n\nbogus line\n\neval instant at 1m m\n  m{ 1\n",
        );
        assert_eq!(r.failed, 2, "{r}");
        assert_eq!(r.failures[0].line, 4);
        assert_eq!(r.failures[1].line, 6);
        assert!(r.to_string().ends_with("0 passed, 2 failed, 0 skipped"));
    }

    #[test]
    fn deprecated_forms_ordering_and_staleness_against_the_engine() {
        let script = r#"
load 1m
  m{a="1"} 1 2 stale
  m{a="2"} 5 _ 7

eval_ordered instant at 0 sort_desc(m)
  m{a="2"} 5
  m{a="1"} 1

eval_ordered instant at 0 sort(m)
  m{a="2"} 5
  m{a="1"} 1

eval_fail instant at 0 m / on() m
  expected_fail_regexp many-to-many

eval range from 0 to 3m step 1m m
  m{a="1"} 1 2 _ _
  m{a="2"} 5 5 7 7

eval range from 0 to 3m step 1m m
  m{a="1"} 1 2 2 2
  m{a="2"} 5 5 7 7
"#;
        let r = run_script("t", script);
        assert_eq!((r.passed, r.failed, r.skipped), (3, 2, 0), "{r}");
        // The second ordered case and the last range case (the stale marker ends `a="1"`).
        assert_eq!(
            r.failures.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![10, 21],
            "{r}"
        );
    }

    #[test]
    fn unparsable_expressions_fail_unless_failure_is_expected() {
        let r = run_script(
            "t",
            "eval instant at 0 sum(\n  expect fail\n\neval instant at 0 sum(\n  {} 1\n",
        );
        assert_eq!((r.passed, r.failed), (1, 1), "{r}");
        assert!(r.failures[0].message.starts_with("parse error"), "{r}");
    }

    #[test]
    fn native_histograms_and_experimental_functions_are_skipped() {
        let script = "load 1m\n  h {{schema:0 sum:1 count:1}}\n  f 1\n\neval instant at 0 h\n  {} 1\n\neval instant at 0 info(f)\n  f 1\n\neval instant at 0 f\n  f {{schema:0 sum:1 count:1}}\n";
        let r = run_script("t", script);
        assert_eq!((r.passed, r.failed, r.skipped), (0, 0, 3), "{r}");
        assert!(r.skips[1].reason.contains("info"));
    }

    #[test]
    fn at_modifier_variants_pin_selectors_outside_subqueries() {
        let e =
            crate::promql::parse("sum(rate(a[5m])) + max_over_time(b[10m:1m]) + c @ 5").unwrap();
        let v = at_modifier_variants(&e, 60_000);
        let times: Vec<i64> = v.iter().map(|x| x.1).collect();
        assert_eq!(times, vec![-600_000, 0, 12_000, 60_000, 600_000]);
        let mut ats = Vec::new();
        walk(&v[0].0, &mut |x| match x {
            Expr::VectorSelector(vs) => ats.push(("vs", vs.at.clone())),
            Expr::MatrixSelector(ms) => ats.push(("ms", ms.vs.at.clone())),
            Expr::Subquery(sq) => ats.push(("sq", sq.at.clone())),
            _ => {}
        });
        let pinned = Some(at_modifier(60_000));
        let kept = Some(at_modifier(5_000));
        // rate's selector, the subquery (its inner selector untouched), and `c` keeps its own @.
        assert_eq!(
            ats,
            vec![
                ("ms", pinned.clone()),
                ("sq", pinned),
                ("vs", None),
                ("vs", kept)
            ]
        );
        assert_eq!(at_modifier_variants(&e, 0).len(), 3);
        let unsafe_expr = crate::promql::parse("time() + a").unwrap();
        assert!(at_modifier_variants(&unsafe_expr, 60_000).is_empty());
    }

    #[test]
    fn almost_equal_matches_prometheus() {
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(stale_nan(), f64::NAN));
        assert!(almost_equal(1.0, 1.0000000001));
        assert!(!almost_equal(1.0, 1.00001));
        assert!(!almost_equal(0.0, 1e-300));
    }

    #[test]
    fn annotation_positions_are_tolerated_only_when_ours_lack_them() {
        let m = MsgMatch::Exact("PromQL warning: x (1:7)".into());
        assert!(m.matches_annotation("PromQL warning: x"));
        assert!(m.matches_annotation("PromQL warning: x (1:7)"));
        assert!(!m.matches_annotation("PromQL warning: x (1:8)"));
        let r = MsgMatch::Regex(Regex::new(r"PromQL info: y .* \(1:21\)").unwrap());
        assert!(r.matches_annotation("PromQL info: y z"));
        assert!(!r.matches_annotation("PromQL info: y z (1:2)"));
    }
}

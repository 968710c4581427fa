//! The script model of a `.test` file (`load`, `clear`, `eval` and its expectations) and the
//! parser that reads it, line by line, into commands.

use regex::Regex;

use super::series::{parse_series, unquote, SeqValue};
use crate::compat::duration::parse_model_duration;
use crate::labels::Labels;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct LoadCmd {
    pub(super) line: usize,
    pub(super) interval_ms: i64,
    pub(super) with_nhcb: bool,
    pub(super) series: Vec<(Labels, Vec<SeqValue>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum ExpectKind {
    Fail,
    Warn,
    NoWarn,
    Info,
    NoInfo,
    Ordered,
}

/// `msg:` (exact) or `regex:`; a bare `expect warn` matches anything.
#[derive(Clone, Debug)]
pub(super) enum MsgMatch {
    Exact(String),
    Regex(Regex),
}

impl MsgMatch {
    pub(super) fn any() -> MsgMatch {
        // The pattern is a constant, so this cannot fail.
        MsgMatch::Regex(Regex::new("^.*$").unwrap_or_else(|_| unreachable!()))
    }

    pub(super) fn describe(&self) -> String {
        match self {
            MsgMatch::Exact(m) => format!("message {m:?}"),
            MsgMatch::Regex(r) => format!("pattern {:?}", r.as_str()),
        }
    }

    /// Whether an error text matches exactly as test.go compares it.
    pub(super) fn matches_error(&self, s: &str) -> bool {
        match self {
            MsgMatch::Exact(m) => m == s,
            MsgMatch::Regex(r) => r.is_match(s),
        }
    }

    /// Whether an annotation matches, tolerating our missing `(line:col)` suffix.
    pub(super) fn matches_annotation(&self, s: &str) -> bool {
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

pub(super) fn position_re() -> Regex {
    Regex::new(r" \(\d+:\d+\)$").unwrap_or_else(|_| unreachable!())
}

pub(super) fn has_position_suffix(s: &str) -> bool {
    position_re().is_match(s)
}

pub(super) fn strip_position_suffix(s: &str) -> String {
    position_re().replace(s, "").into_owned()
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum EvalKind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExpectedSeries {
    /// 1-based position among the expected series (for `ordered`).
    pub(super) pos: usize,
    pub(super) labels: Labels,
    pub(super) vals: Vec<SeqValue>,
}

#[derive(Clone, Debug)]
pub(super) struct EvalCmd {
    pub(super) line: usize,
    pub(super) expr: String,
    pub(super) kind: EvalKind,
    /// Deprecated `eval_fail` / `eval_warn` / `eval_info` / `eval_ordered`.
    pub(super) fail: bool,
    pub(super) warn: bool,
    pub(super) info: bool,
    pub(super) ordered: bool,
    pub(super) expected_fail_message: Option<String>,
    pub(super) expected_fail_regexp: Option<Regex>,
    pub(super) expects: Vec<(ExpectKind, MsgMatch)>,
    /// `expect range vector from … to … step …` on an instant query: `(start, end, step)`.
    pub(super) range_vector: Option<(i64, i64, i64)>,
    pub(super) expected_string: Option<String>,
    pub(super) expected_scalar: Option<f64>,
    pub(super) expected: Vec<ExpectedSeries>,
    /// An expected value is a native histogram.
    pub(super) expects_histogram: bool,
    /// A problem in the case's own lines (reported as its failure).
    pub(super) error: Option<String>,
}

impl EvalCmd {
    /// A case with nothing expected yet; `modifier` is the deprecated `eval_<modifier>` form.
    fn new(line: usize, expr: String, kind: EvalKind, modifier: Option<&str>) -> EvalCmd {
        EvalCmd {
            line,
            expr,
            kind,
            fail: modifier == Some("fail"),
            warn: modifier == Some("warn"),
            info: modifier == Some("info"),
            ordered: modifier == Some("ordered"),
            expected_fail_message: None,
            expected_fail_regexp: None,
            expects: Vec::new(),
            range_vector: None,
            expected_string: None,
            expected_scalar: None,
            expected: Vec::new(),
            expects_histogram: false,
            error: None,
        }
    }
    pub(super) fn is_fail(&self) -> bool {
        self.fail || self.expects.iter().any(|(k, _)| *k == ExpectKind::Fail)
    }
    pub(super) fn is_ordered(&self) -> bool {
        self.ordered || self.expects.iter().any(|(k, _)| *k == ExpectKind::Ordered)
    }
    pub(super) fn expects_of(&self, kind: ExpectKind) -> Vec<&MsgMatch> {
        self.expects
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| m)
            .collect()
    }
    pub(super) fn has(&self, kind: ExpectKind) -> bool {
        self.expects.iter().any(|(k, _)| *k == kind)
    }
    pub(super) fn excluded_from_range_mode(&self) -> bool {
        self.range_vector.is_some() || self.expected_string.is_some()
    }
}

#[derive(Clone, Debug)]
pub(super) enum Command {
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
pub(super) fn get_lines(input: &str) -> Vec<String> {
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

pub(super) fn parse_script(input: &str) -> Vec<Command> {
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
pub(super) fn parse_load(lines: &[String], start: usize) -> (usize, Command) {
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

/// Parses an `eval` command and its lines. Returns the index of the last line consumed.
pub(super) fn parse_eval(lines: &[String], start: usize) -> (usize, Command) {
    let block_end = {
        let mut e = start;
        while e + 1 < lines.len() && !lines[e + 1].is_empty() {
            e += 1;
        }
        e
    };
    let (modifier, expr, kind) = match parse_eval_head(&lines[start], start + 1) {
        Ok(head) => head,
        Err(invalid) => return (block_end, invalid),
    };
    let mut cmd = EvalCmd::new(start + 1, expr, kind, modifier.as_deref());
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
        if read_eval_line(&mut cmd, def, i + 1, &mut j, is_instant) == LineFlow::Last {
            break;
        }
    }
    (i, Command::Eval(Box::new(cmd)))
}

/// The `eval` line itself: the deprecated modifier (`fail`, `warn`, …), the expression and
/// when to evaluate it; an `Invalid` command when it does not parse.
fn parse_eval_head(head: &str, line: usize) -> Result<(Option<String>, String, EvalKind), Command> {
    let pat_instant =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap_or_else(|_| unreachable!());
    let pat_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap_or_else(|_| unreachable!());
    if let Some(c) = pat_instant.captures(head) {
        let m = c.get(1).map(|m| m.as_str().to_string());
        let expr = c.get(3).map_or("", |m| m.as_str()).to_string();
        let at = c.get(2).map_or("", |m| m.as_str());
        return match parse_model_duration(at) {
            Ok(t) => Ok((m, expr, EvalKind::Instant { at: t })),
            Err(e) => Err(Command::Invalid {
                line,
                text: expr.clone(),
                message: format!("invalid timestamp definition {at:?}: {e}"),
            }),
        };
    }
    if let Some(c) = pat_range.captures(head) {
        let m = c.get(1).map(|m| m.as_str().to_string());
        let g = |n: usize| c.get(n).map_or("", |m| m.as_str());
        let expr = g(5).to_string();
        return match parse_durations(g(2), g(3), g(4)) {
            Ok((start, end, step)) => Ok((m, expr, EvalKind::Range { start, end, step })),
            Err(e) => Err(Command::Invalid {
                line,
                text: expr,
                message: e,
            }),
        };
    }
    Err(Command::Invalid {
        line,
        text: head.to_string(),
        message: "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from <from> to <to> step <step> <query>'".into(),
    })
}

/// Whether the lines after one of an `eval` still belong to it.
#[derive(Debug, PartialEq)]
enum LineFlow {
    More,
    Last,
}

/// Reads one line under an `eval` (line number `line`, `j`-th expected series) into `cmd`:
/// an expected failure message, an `expect …` directive, a scalar or an expected series.
fn read_eval_line(
    cmd: &mut EvalCmd,
    def: &str,
    line: usize,
    j: &mut usize,
    is_instant: bool,
) -> LineFlow {
    let fail_at = |cmd: &mut EvalCmd, msg: String| {
        if cmd.error.is_none() {
            cmd.error = Some(format!("line {line}: {msg}"));
        }
    };
    if cmd.fail && def.starts_with("expected_fail_message") {
        cmd.expected_fail_message = Some(
            def.trim_start_matches("expected_fail_message")
                .trim()
                .to_string(),
        );
        return LineFlow::Last;
    }
    if cmd.fail && def.starts_with("expected_fail_regexp") {
        let pattern = def.trim_start_matches("expected_fail_regexp").trim();
        match Regex::new(pattern) {
            Ok(r) => cmd.expected_fail_regexp = Some(r),
            Err(e) => fail_at(
                cmd,
                format!("invalid regexp '{pattern}' for expected_fail_regexp: {e}"),
            ),
        }
        return LineFlow::Last;
    }
    if def.starts_with("expect range vector") {
        match parse_expect_range_vector(def) {
            Ok(r) => {
                cmd.range_vector = Some(r);
                cmd.kind = EvalKind::Instant { at: r.1 };
            }
            Err(e) => fail_at(cmd, e),
        }
        return LineFlow::More;
    }
    if def.starts_with("expect string") {
        match parse_expect_string(def) {
            Ok(s) => cmd.expected_string = Some(s),
            Err(e) => fail_at(cmd, e),
        }
        return LineFlow::More;
    }
    if def.split(' ').next() == Some("expect") {
        match parse_expect(def) {
            Ok(x) => {
                cmd.expects.push(x);
                *j -= 1;
                if let Err(e) = validate_expects(cmd) {
                    fail_at(cmd, e);
                }
            }
            Err(e) => fail_at(cmd, e),
        }
        return LineFlow::More;
    }
    if let Some(f) = parse_number(def) {
        cmd.expected_scalar = Some(f);
        cmd.expected.clear();
        return LineFlow::Last;
    }
    match parse_series(def) {
        Ok((labels, vals)) => {
            if vals.iter().any(|v| matches!(v, SeqValue::Histogram)) {
                cmd.expects_histogram = true;
            }
            if vals.len() > 1 && is_instant && cmd.range_vector.is_none() {
                fail_at(cmd, "expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' directive to enable a range vector result for an instant query".into());
            }
            cmd.expected_scalar = None;
            cmd.expected.retain(|e| e.labels != labels);
            cmd.expected.push(ExpectedSeries {
                pos: *j,
                labels,
                vals,
            });
        }
        Err(e) => fail_at(cmd, format!("bad expected series: {e}")),
    }
    LineFlow::More
}

pub(super) fn parse_expect(def: &str) -> Result<(ExpectKind, MsgMatch), String> {
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

pub(super) fn validate_expects(cmd: &EvalCmd) -> Result<(), String> {
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

pub(super) fn parse_expect_range_vector(def: &str) -> Result<(i64, i64, i64), String> {
    let re = Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
        .unwrap_or_else(|_| unreachable!());
    let c = re
        .captures(def)
        .ok_or_else(|| format!("invalid range vector definition {def:?}"))?;
    let g = |n: usize| c.get(n).map_or("", |m| m.as_str());
    parse_durations(g(1), g(2), g(3))
}

pub(super) fn parse_expect_string(def: &str) -> Result<String, String> {
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

pub(super) fn parse_durations(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
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
pub(super) fn parse_number(s: &str) -> Option<f64> {
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

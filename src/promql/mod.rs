//! PromQL evaluation over the `promql-parser` AST with Prometheus 3 semantics.
//!
//! - `value`: the values an expression evaluates to (scalar, string, instant vector, matrix).
//! - `engine`: instant and range queries, the step-wise evaluator and limits (timeout, max
//!   samples); with `selector` (lookback, staleness, offset/@, matrix selectors, subqueries),
//!   `call` (function calls), `binary` (arithmetic, comparison and set operators) and
//!   `aggregate` (aggregation operators).
//! - `functions`: every float function, called by the engine once per evaluation step.
//! - `promqltest`: the runner for Prometheus' own `.test` scripts (`depin-orcha test promql`).
//!
//! It reads storage only through [`crate::tsdb::Queryable`] and takes time as arguments: it is
//! synchronous and deterministic, and never looks at the wall clock except for `--query.timeout`.

mod aggregate;
mod binary;
mod call;
pub mod engine;
pub mod functions;
pub mod limits;
pub mod lookback;
mod numeric;
pub mod promqltest;
mod selector;
pub mod value;

pub use engine::{Engine, EngineOptions, QueryResult};
pub use limits::{Limits, MemoryBudget, OverBudget, Reservation};
pub use promql_parser::parser::Expr;
pub use value::{InstantSample, Matrix, Value, Vector};

/// What can go wrong with a query. The variants map onto the Prometheus API's `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The expression does not parse (`bad_data`); the message carries the parser's position.
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (`execution`), e.g. many-to-many matching or a bad argument.
    #[error("{0}")]
    Eval(String),
    /// `--query.timeout` ran out (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// `--query.max-samples` was exceeded (`execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The queries running at once would go over `--query.max-memory` (`execution`).
    #[error("{0}")]
    Memory(OverBudget),
    /// The client went away (`canceled`).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
}

impl Error {
    /// The Prometheus HTTP API's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) => "bad_data",
            Error::Eval(_) | Error::TooManySamples(_) | Error::Memory(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Canceled(_) => "canceled",
        }
    }
}

/// The most operators and opening brackets an expression may hold (see [`nesting_bound`]).
pub const MAX_NESTING: usize = 200;

/// Parses an expression; the error text keeps the parser's position. An expression with more
/// than [`MAX_NESTING`] operators and brackets is refused before parsing: the parser, the
/// evaluator and the tree's drop all recurse once per level, and a 5 KB query such as
/// `1+1+…+1` or `((…))` would otherwise overflow a thread's stack and abort the process
/// (Prometheus, on Go's growable stacks, has no such limit; no real query comes near it).
pub fn parse(expr: &str) -> Result<Expr, Error> {
    if let Some(at) = nesting_bound(expr, MAX_NESTING) {
        return Err(Error::Parse(format!(
            "{}: parse error: expression too deeply nested: more than {MAX_NESTING} operators and brackets",
            promql_parser::parser::lex::position(expr, at)
        )));
    }
    promql_parser::parser::parse(expr).map_err(Error::Parse)
}

/// Expressions parsed by [`parse_cached`], by their text. Dashboards and rules send the same
/// query text again and again (only `time`, `start` and `end` move), and parsing was a large
/// part of a small query: the parser compiles every `=~`/`!~` pattern anew. Bounded like the
/// selector's regex cache: emptied when it reaches [`PARSE_CACHE_ENTRIES`], and texts longer
/// than [`PARSE_CACHE_MAX_TEXT`] are not kept (their compiled patterns could be large).
static PARSED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Parsed>>> =
    std::sync::LazyLock::new(Default::default);

const PARSE_CACHE_ENTRIES: usize = 512;
const PARSE_CACHE_MAX_TEXT: usize = 1024;

struct Parsed {
    expr: Expr,
    /// Bit `c` set: an evaluation over a span of class `c` (see [`mark_slow`]) was slow.
    slow: u64,
}

fn parsed() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, Parsed>> {
    PARSED.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`parse`], from the cache when this text parsed before. Only expressions that parsed are
/// kept, so errors are always the parser's own; an expression is immutable once parsed, so a
/// copy from the cache is the tree `parse` would return.
pub fn parse_cached(expr: &str) -> Result<Expr, Error> {
    if expr.len() > PARSE_CACHE_MAX_TEXT {
        return parse(expr);
    }
    if let Some(p) = parsed().get(expr) {
        return Ok(p.expr.clone());
    }
    // Parsed outside the lock: one slow parse must not hold up every other query.
    let e = parse(expr)?;
    let mut cache = parsed();
    if cache.len() >= PARSE_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(
        expr.to_string(),
        Parsed {
            expr: e.clone(),
            slow: 0,
        },
    );
    Ok(e)
}

/// Whether `expr` is in the parse cache and no evaluation of it over a span of `class` was
/// marked slow: the API evaluates such a query without handing it to a work thread.
pub fn known_quick(expr: &str, class: u32) -> bool {
    parsed().get(expr).is_some_and(|p| p.slow & bit(class) == 0)
}

/// Marks evaluations of `expr` over spans of `class` slow. The class is what the caller makes
/// of a query's range (the API takes the bit length of its span in seconds, so an expression
/// slow over 15 days stays quick over the last hour); classes above 63 share bit 63.
pub fn mark_slow(expr: &str, class: u32) {
    if let Some(p) = parsed().get_mut(expr) {
        p.slow |= bit(class);
    }
}

fn bit(class: u32) -> u64 {
    1 << class.min(63)
}

/// Why a regular expression did not compile, without the pattern: the regex crate's message
/// repeats the whole pattern (a megabyte in a hostile query) above the reason.
pub fn regex_error_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("invalid syntax")
            .to_string(),
        regex::Error::CompiledTooBig(limit) => format!(
            "the compiled expression would be larger than the limit of {}",
            limits::fmt_bytes(*limit)
        ),
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

/// An upper bound on the depth of the tree `expr` parses to: every level of the tree needs an
/// operator (`+ - * / % ^ < > == !=` or `and or unless atan2`) or an opening `(` / `[`, so
/// their count bounds it. Text in quotes and comments is skipped. Returns the byte offset where
/// the count passes `max`, or None when it stays within.
pub fn nesting_bound(expr: &str, max: usize) -> Option<usize> {
    let b = expr.as_bytes();
    let (mut i, mut n) = (0, 0usize);
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                // A string: skip to its closing quote (backslash escapes, not in backticks).
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'(' | b'[' => n += 1,
            b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                n += 1;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i + 1 < b.len()
                    && (b[i + 1].is_ascii_alphanumeric() || b[i + 1] == b'_' || b[i + 1] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..=i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    n += 1;
                }
            }
            _ => {}
        }
        if n > max {
            return Some(i.min(b.len()));
        }
        i += 1;
    }
    None
}

/// Warnings and infos that Prometheus attaches to a result (`warnings` / `infos` in the API,
/// `expect warn` / `expect info` in test scripts), e.g. "metric might not be a counter".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }
    pub fn info(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    #[test]
    fn deep_expressions_are_refused_before_parsing_with_a_position() {
        let parens = format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000));
        let chain = vec!["up"; 5_000].join(" + ");
        let unary = format!("{}1", "-".repeat(5_000));
        let calls = format!("{}up{}", "abs(".repeat(1_000), ")".repeat(1_000));
        let ors = vec!["up"; 300].join(" or ");
        for q in [&parens, &chain, &unary, &calls, &ors] {
            let e = parse(q).expect_err("too deep").to_string();
            assert!(e.starts_with("1:"), "{e}");
            assert!(e.contains("too deeply nested"), "{e}");
        }
    }

    #[test]
    fn cached_parses_equal_fresh_ones_and_errors_are_not_kept() {
        for q in [
            r#"count by (__name__) ({__name__=~"depin_.+"})"#,
            "sum by (node) (rate(x[5m] offset 1m)) > bool 0",
            "x @ 100 + max_over_time(y[5m:1m])",
        ] {
            let fresh = parse(q).unwrap();
            assert_eq!(parse_cached(q).unwrap(), fresh, "{q}");
            assert_eq!(parse_cached(q).unwrap(), fresh, "{q}");
        }
        for q in ["sum(", "rate(x)"] {
            assert_eq!(parse_cached(q), parse(q));
            assert_eq!(parse_cached(q), parse(q));
        }
        // Longer than what is kept: parsed every time, the same tree.
        let long = format!("x{{a=~\"{}\"}}", "a".repeat(2 * PARSE_CACHE_MAX_TEXT));
        assert_eq!(parse_cached(&long).unwrap(), parse(&long).unwrap());
    }

    #[test]
    fn real_queries_are_far_below_the_bound() {
        let q = r#"sum by (node) (rate(depin_earnings_usd_total{protocol=~"storj|golem", instance=~"$i", host!="a+b(c"}[1h])) * 3600
          / ignoring (x) group_left () (1 + 2 - 3 * 4 / 5 % 6 ^ 7 > bool 0 and on () vector(1) or up unless down)  # ((((((("#;
        let n = (0..MAX_NESTING)
            .find(|&m| nesting_bound(q, m).is_none())
            .expect("a bound");
        // 3 `(` of calls and aggregations, 1 `[`, 5 `(` of groupings and vector(), 15 operators.
        assert!(n < 40, "{n}");
        assert!(parse(&format!("{}1{}", "(".repeat(150), ")".repeat(150))).is_ok());
    }
}

#[cfg(test)]
mod type_error_tests {
    use super::*;

    /// Errors of the grammar's type and usage checks say where they are and use Prometheus'
    /// words: each text below is Prometheus' (promql/parser/parse.go `checkAST`, its
    /// parse_test.go where the case is there), position included.
    #[test]
    fn type_errors_name_their_position_in_prometheus_words() {
        let cases = [
            // A function argument of the wrong type: at the argument.
            (
                "rate(x)",
                r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#,
            ),
            (
                "clamp_min(x, y)",
                r#"1:14: parse error: expected type scalar in call to function "clamp_min", got instant vector"#,
            ),
            // A wrong argument count: at the call.
            (
                "clamp(x, 1)",
                r#"1:1: parse error: expected 3 argument(s) in call to "clamp", got 2"#,
            ),
            (
                "round(x, 1, 2)",
                r#"1:1: parse error: expected at most 2 argument(s) in call to "round", got 3"#,
            ),
            (
                "label_join(x)",
                r#"1:1: parse error: expected at least 3 argument(s) in call to "label_join", got 1"#,
            ),
            // A range vector operand: at that operand.
            (
                "x[5m] + 1",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "1 + x[5m]",
                "1:5: parse error: binary expression must contain only scalar and instant vector types",
            ),
            // Aggregations: the expression, then the parameter, at itself.
            (
                "sum(x[5m]) by (a)",
                "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
            ),
            (
                r#"topk("3", x) by (a)"#,
                "1:6: parse error: expected type scalar in aggregation parameter, got string",
            ),
            (
                "count_values(5, x) by (a)",
                "1:14: parse error: expected type string in aggregation parameter, got scalar",
            ),
            (
                "sum(x, y) by (a)",
                "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 1, got 2",
            ),
            // Operators: at the operator, or at the whole expression.
            (
                "1 > 2",
                "1:3: parse error: comparisons between scalars must use BOOL modifier",
            ),
            (
                "x + bool y",
                "1:3: parse error: bool modifier can only be used on comparison operators",
            ),
            (
                "x and 1",
                r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#,
            ),
            (
                "x == on(a) 1",
                "1:1: parse error: vector matching only allowed between instant vectors",
            ),
            (
                "1 + +x[5m]",
                r#"1:5: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "range vector""#,
            ),
            (
                "-x[5m]",
                r#"1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "range vector""#,
            ),
            // Modifiers and selectors.
            (
                "1 offset 5m",
                "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ),
            (
                "x offset 1m offset 2m",
                "1:1: parse error: offset may not be set multiple times",
            ),
            (
                "x offset 1m[5m]",
                "1:12: parse error: no offset modifiers allowed before range",
            ),
            (
                "x[5m][10m:1m]",
                "1:1: parse error: subquery is only allowed on instant vector, got matrix instead",
            ),
            (
                r#"x{__name__="y"}"#,
                r#"1:1: parse error: metric name must not be set twice: "x" or "y""#,
            ),
            (
                "nope(x)",
                r#"1:1: parse error: unknown function with name "nope""#,
            ),
            // Lines count from 1, columns in bytes from the line's start, as Prometheus does.
            (
                "sum(x)\n  + rate(y)",
                r#"2:10: parse error: expected type range vector in call to function "rate", got instant vector"#,
            ),
            (
                r#"{a="é"} + x[5m]"#,
                "1:12: parse error: binary expression must contain only scalar and instant vector types",
            ),
        ];
        for (q, want) in cases {
            let e = parse(q).expect_err(q);
            assert_eq!(e.error_type(), "bad_data", "{q}");
            assert_eq!(e.to_string(), want, "{q}");
        }
    }

    /// Syntax and lexer errors in Prometheus' words and places: each case and its text are
    /// Prometheus' own, from promql/parser/parse_test.go (the line of the case at commit
    /// d15adb9 is given): token names (`<op:*>`, `identifier "x"`, `<by>`), the context of
    /// the grammar's error productions (`in grouping opts, expected label`, `in label
    /// matching, expected string`), lexer errors at the start of the token, Go-quoted text.
    #[test]
    fn syntax_errors_match_prometheus_parse_test() {
        let cases = [
            // parse_test.go:498
            ("", "unknown position: parse error: no expression found in input"),
            // parse_test.go:509
            ("# just a comment\n\n", "1:1: parse error: no expression found in input"),
            // parse_test.go:542
            ("2.5.", r#"1:1: parse error: bad number or duration syntax: "2.5.""#),
            // parse_test.go:553
            ("100..4", r#"1:1: parse error: bad number or duration syntax: "100..""#),
            // parse_test.go:564
            ("0deadbeef", r#"1:1: parse error: bad number or duration syntax: "0de""#),
            // parse_test.go:586
            ("*1", "1:1: parse error: unexpected <op:*>"),
            // parse_test.go:597
            ("(1))", "1:5: parse error: unexpected right parenthesis ')'"),
            // parse_test.go:608
            ("((1)", "1:5: parse error: unclosed left parenthesis"),
            // parse_test.go:630
            ("(", "1:2: parse error: unclosed left parenthesis"),
            // parse_test.go:685
            ("1 !~ 1", "1:3: parse error: unexpected character after '!': '~'"),
            // parse_test.go:729
            ("*test", "1:1: parse error: unexpected <op:*>"),
            // parse_test.go:740
            ("@@", "1:1: parse error: unexpected <op:@>"),
            // parse_test.go:773
            ("a - on(b) ignoring(c) d", "1:11: parse error: unexpected <ignoring>"),
            // parse_test.go:2152
            ("{", "1:2: parse error: unexpected end of input inside braces"),
            // parse_test.go:2163
            ("}", "1:1: parse error: unexpected character: '}'"),
            // parse_test.go:2174
            ("some{", "1:6: parse error: unexpected end of input inside braces"),
            // parse_test.go:2185
            ("some}", "1:5: parse error: unexpected character: '}'"),
            // parse_test.go:2196
            ("some_metric{a=b}", r#"1:15: parse error: unexpected identifier "b" in label matching, expected string"#),
            // parse_test.go:2253
            ("foo{gibberish}", r#"1:14: parse error: unexpected "}" in label matching, expected label matching operator"#),
            // parse_test.go:2343
            ("foo{__name__= =}", r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
            // parse_test.go:2354
            ("foo{,}", r#"1:5: parse error: unexpected "," in label matching, expected identifier or "}""#),
            // parse_test.go:2365
            (r#"foo{__name__ == "bar"}"#, r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
            // parse_test.go:2376
            (r#"foo{__name__="bar" lol}"#, r#"1:20: parse error: unexpected identifier "lol" in label matching, expected "," or "}""#),
            // parse_test.go:2387
            (r#"foo{"a"=}"#, r#"1:9: parse error: unexpected "}" in label matching, expected string"#),
            // parse_test.go:2680
            ("foo[5mm]", r#"1:5: parse error: bad number or duration syntax: "5mm""#),
            // parse_test.go:2691
            ("foo[5m1]", r#"1:5: parse error: bad number or duration syntax: "5m1""#),
            // parse_test.go:2702
            ("foo[5m:1m1]", r#"1:8: parse error: bad number or duration syntax: "1m1""#),
            // parse_test.go:2713
            ("foo[5y1hs]", r#"1:5: parse error: unknown unit "hs" in duration "5y1hs""#),
            // parse_test.go:2729
            ("foo[5m1h]", r#"1:5: parse error: not a valid duration string: "5m1h""#),
            // parse_test.go:2745
            ("foo[5m1m]", r#"1:5: parse error: not a valid duration string: "5m1m""#),
            // parse_test.go:2772
            (r#"foo["5m"]"#, r#"1:5: parse error: unexpected character in duration expression: '"'"#),
            // parse_test.go:2783
            ("foo[]", r#"1:5: parse error: unexpected "]" in subquery or range selector, expected number, duration, step(), or range()"#),
            // parse_test.go:2805
            ("some_metric[5m] OFFSET 1mm", r#"1:24: parse error: bad number or duration syntax: "1mm""#),
            // parse_test.go:2816
            ("some_metric[5m] OFFSET", "1:23: parse error: unexpected end of input in offset, expected number, duration, step(), or range()"),
            // parse_test.go:2964
            (r#"sum by ("foo)(some_metric{})"#, "1:9: parse error: unterminated quoted string"),
            // parse_test.go:3178
            ("sum without(==)(some_metric)", "1:13: parse error: unexpected <op:==> in grouping opts, expected label"),
            // parse_test.go:3189
            ("sum without(,)(some_metric)", r#"1:13: parse error: unexpected "," in grouping opts, expected label"#),
            // parse_test.go:3200
            ("sum without(foo,,)(some_metric)", r#"1:17: parse error: unexpected "," in grouping opts, expected label"#),
            // parse_test.go:3211
            ("sum some_metric by (test)", r#"1:5: parse error: unexpected identifier "some_metric""#),
            // parse_test.go:3222
            ("sum (some_metric) by test", r#"1:22: parse error: unexpected identifier "test" in grouping opts, expected "(""#),
            // parse_test.go:3244
            ("MIN keep_common (some_metric)", r#"1:5: parse error: unexpected identifier "keep_common""#),
            // parse_test.go:3255
            ("MIN (some_metric) keep_common", r#"1:19: parse error: unexpected identifier "keep_common""#),
            // parse_test.go:3266
            ("sum (some_metric) without (test) by (test)", "1:34: parse error: unexpected <by>"),
            // parse_test.go:3277
            ("sum without (test) (some_metric) by (test)", "1:34: parse error: unexpected <by>"),
            // parse_test.go:3535
            ("*1", "1:1: parse error: unexpected <op:*>"),
            // parse_test.go:3557
            ("++-++-+-+-<", "1:11: parse error: unexpected <op:<>"),
            // parse_test.go:3701
            (r#"`\``"#, "1:4: parse error: unterminated raw string"),
            // parse_test.go:3712
            (r#""\"#, "1:1: parse error: escape sequence not terminated"),
            // parse_test.go:3723
            (r#""\c""#, "1:1: parse error: unknown escape sequence U+0063 'c'"),
            // parse_test.go:3734
            (r#""\x.""#, "1:1: parse error: illegal character U+002E '.' in escape sequence"),
            // parse_test.go:3746
            (r#"foo{bar="baz"}["#, "1:16: parse error: unexpected end of input in duration expression"),
            // parse_test.go:5239
            ("foo offset 9.5e10", "1:12: parse error: duration out of range"),
            // parse_test.go:5250
            ("foo[9.5e10]", "1:5: parse error: duration out of range"),
            // parse_test.go:5366
            ("sum(", "1:5: parse error: unclosed left parenthesis"),
            // parse_test.go:5382
            ("sum(rate(", "1:10: parse error: unclosed left parenthesis"),
            // parse_test.go:5398
            ("foo[5s x 5s]", "1:8: parse error: unexpected character: 'x', expected ':'"),
            // parse_test.go:5409
            ("foo[5s s 5s]", "1:8: parse error: unexpected character: 's', expected ':'"),
        ];
        let mut differ = Vec::new();
        for (q, want) in cases {
            match parse(q) {
                Err(e) if e.to_string() == want && e.error_type() == "bad_data" => {}
                got => differ.push(format!("{q:?}\n  want {want}\n  got  {got:?}")),
            }
        }
        assert!(differ.is_empty(), "\n{}", differ.join("\n"));
    }

    #[test]
    fn well_typed_expressions_still_parse() {
        for q in [
            "rate(x[5m])",
            "sum by (a) (rate(x[5m])) > bool 1",
            r#"topk(3, x) or count_values("v", x)"#,
            "-x offset 5m",
            "x[5m:1m] @ 100",
            "clamp(x, 0, 1) + on(a) group_left y",
        ] {
            assert!(parse(q).is_ok(), "{q}: {:?}", parse(q));
        }
    }
}

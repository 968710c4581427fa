//! What a query may use besides time: one memory budget shared by every query that runs at once
//! (`--query.max-memory`), each query's share of it ([`Reservation`]), a flag that tells a query
//! its client went away ([`Limits::cancel`]), and the estimate of what parsing a query costs
//! before it is parsed ([`parse_cost`]).
//!
//! The budget counts what dominates a query's memory, not every allocation: samples read from
//! storage and held between steps, label sets, compiled regular expressions and the encoded
//! answer. Charges are taken before or while the memory is filled, so a query that would go over
//! stops with an error instead of taking the process' memory first. The engine only counts;
//! whoever runs queries for clients (the HTTP API) owns the budget and hands each query a
//! [`Limits`]. Rules and the controller run with [`Limits::default`], which counts nothing
//! against any budget: their queries are our own, and a client must not be able to make them fail.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes counted per sample a query holds between steps: a 16-byte `(t, v)` point, with room
/// for the slack of growing vectors and the source timestamps a selector keeps beside them.
pub const HELD_SAMPLE_BYTES: usize = 32;
/// Bytes counted per sample read from storage (exactly sized vectors of 16-byte points).
pub const READ_SAMPLE_BYTES: usize = 16;
/// Bytes counted per byte of query text: the parser's tokens, tree nodes and strings.
pub const TEXT_BYTE_COST: usize = 64;
/// Bytes counted per regular expression in a query: a small compiled regex takes about 8 KiB
/// (measured with regex 1.13), and each is compiled twice, by the parser and for the storage
/// matcher.
pub const REGEX_COST: usize = 16 << 10;
/// Bytes counted per byte of a regular expression's pattern. Compiling a pattern of 10 KB to
/// 1 MB of literal alternatives (`a|b|…`) peaked at 140 to 300 bytes per byte of pattern
/// (regex 1.13, release build), the syntax tree included, and the compiled form is kept twice.
pub const REGEX_BYTE_COST: usize = 512;

/// Memory shared by the queries running at once. Cheap to clone (a handle).
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl MemoryBudget {
    pub fn new(max_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(Inner {
                max: max_bytes,
                used: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.inner.max
    }

    /// Bytes the running queries hold now.
    pub fn used_bytes(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// How many charges were refused since start.
    pub fn refusals(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// An empty share of this budget for one query.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: Some(self.clone()),
            held: 0,
        }
    }

    fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        let i = &self.inner;
        let mut used = i.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > i.max {
                i.refused.fetch_add(1, Ordering::Relaxed);
                return Err(OverBudget {
                    asked: bytes,
                    used,
                    max: i.max,
                });
            }
            match i
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A charge would take the budget over its maximum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "query processing would use too much memory: {} more asked for while the queries running now hold {} of the {} that --query.max-memory allows",
    fmt_bytes(*asked),
    fmt_bytes(*used),
    fmt_bytes(*max)
)]
pub struct OverBudget {
    pub asked: usize,
    pub used: usize,
    pub max: usize,
}

/// One query's share of a [`MemoryBudget`]: what it holds goes back when it is dropped. The
/// default counts without a budget (nothing is ever refused).
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<MemoryBudget>,
    held: usize,
}

impl Reservation {
    /// Takes `bytes` more, or refuses without taking anything.
    pub fn grow(&mut self, bytes: usize) -> Result<(), OverBudget> {
        if let Some(b) = &self.budget {
            b.take(bytes)?;
        }
        self.held = self.held.saturating_add(bytes);
        Ok(())
    }

    /// Gives back up to `bytes` of what this reservation holds.
    pub fn shrink(&mut self, bytes: usize) {
        let n = bytes.min(self.held);
        self.held -= n;
        if let Some(b) = &self.budget {
            b.give_back(n);
        }
    }

    /// Holds exactly `bytes`: gives back what is over, or takes what is missing.
    pub fn resize(&mut self, bytes: usize) -> Result<(), OverBudget> {
        if bytes >= self.held {
            self.grow(bytes - self.held)
        } else {
            self.shrink(self.held - bytes);
            Ok(())
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let all = self.held;
        self.shrink(all);
    }
}

/// What one query runs under besides the engine's options: its share of the memory budget and
/// the flag its client's going away sets.
#[derive(Debug, Default)]
pub struct Limits {
    pub memory: Reservation,
    pub cancel: Option<Arc<AtomicBool>>,
    /// An end sooner than `--query.timeout`: evaluation past it stops with
    /// [`Error::Timeout`](super::Error::Timeout) (the API's inline budget, see `http::work`).
    pub deadline: Option<std::time::Instant>,
}

impl Limits {
    pub fn new(memory: Reservation, cancel: Arc<AtomicBool>) -> Limits {
        Limits {
            memory,
            cancel: Some(cancel),
            deadline: None,
        }
    }

    pub fn is_canceled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Bytes that parsing `text` may take, to charge before parsing it: [`TEXT_BYTE_COST`] per
/// byte, plus [`REGEX_COST`] and [`REGEX_BYTE_COST`] per byte of pattern for every regular
/// expression (a string after `=~` or `!~`). The parser compiles regular expressions as it
/// goes, so this is the only point where the cost can be refused before it is paid.
pub fn parse_cost(text: &str) -> usize {
    let b = text.as_bytes();
    let mut cost = b.len().saturating_mul(TEXT_BYTE_COST);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q).1,
            b'=' | b'!' if b.get(i + 1) == Some(&b'~') => {
                let mut j = i + 2;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let pattern = match b.get(j) {
                    Some(&q @ (b'"' | b'\'' | b'`')) => {
                        let (len, end) = skip_string(b, j, q);
                        i = end;
                        len
                    }
                    _ => {
                        i = j;
                        0
                    }
                };
                cost = cost
                    .saturating_add(REGEX_COST)
                    .saturating_add(pattern.saturating_mul(REGEX_BYTE_COST));
            }
            _ => i += 1,
        }
    }
    cost
}

/// The length of the string literal opening at `start` (quote `q`) and the index after it.
fn skip_string(b: &[u8], start: usize, q: u8) -> (usize, usize) {
    let mut i = start + 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    let end = i.min(b.len());
    (end - start - 1, (end + 1).min(b.len()))
}

/// Bytes of a label set as the engine holds it: the vector and each name and value string.
pub fn labels_bytes(l: &crate::labels::Labels) -> usize {
    24 + l
        .iter()
        .map(|x| 48 + x.name.len() + x.value.len())
        .sum::<usize>()
}

/// Parses a size flag such as `--query.max-memory`: a whole number of bytes with an optional
/// unit (`B`, `KiB`, `MiB`, `GiB`, `kB`, `MB`, `GB`), more than zero.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let n: usize = num.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a whole number with a unit, e.g. 256MiB")
    })?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (B, KiB, MiB, GiB, kB, MB or GB)"
            ))
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("invalid size {s:?}: must be more than 0")),
        Some(b) => Ok(b),
        None => Err(format!("invalid size {s:?}: too large")),
    }
}

/// `256MiB`, `1.5GiB`, `512B`: sizes in messages.
pub fn fmt_bytes(n: usize) -> String {
    const UNITS: [(&str, f64); 3] = [("GiB", 1073741824.0), ("MiB", 1048576.0), ("KiB", 1024.0)];
    for (u, m) in UNITS {
        let q = n as f64 / m;
        if q >= 1.0 {
            let s = format!("{q:.1}");
            return format!("{}{u}", s.strip_suffix(".0").unwrap_or(&s));
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_budget_and_give_back_on_drop() {
        let b = MemoryBudget::new(1000);
        let mut r1 = b.reservation();
        let mut r2 = b.reservation();
        r1.grow(600).unwrap();
        let e = r2.grow(500).unwrap_err();
        assert_eq!(
            e,
            OverBudget {
                asked: 500,
                used: 600,
                max: 1000
            }
        );
        assert_eq!(r2.held(), 0, "a refused charge takes nothing");
        r2.grow(400).unwrap();
        assert_eq!(b.used_bytes(), 1000);
        r1.resize(100).unwrap();
        assert_eq!(b.used_bytes(), 500);
        assert!(r1.resize(700).is_err(), "500 + 600 more is over 1000");
        r1.shrink(100_000);
        assert_eq!(r1.held(), 0);
        assert_eq!(b.used_bytes(), 400);
        drop(r2);
        assert_eq!(b.used_bytes(), 0);
        assert_eq!(b.refusals(), 2);
        assert!(e.to_string().contains("--query.max-memory"), "{e}");
        // Without a budget nothing is refused.
        let mut free = Reservation::default();
        free.grow(usize::MAX).unwrap();
    }

    #[test]
    fn parse_cost_counts_text_and_regular_expressions() {
        assert_eq!(parse_cost("up"), 2 * TEXT_BYTE_COST);
        let q = r#"up{job=~"a|b", x!~ 'c', y="=~"}"#;
        assert_eq!(
            parse_cost(q),
            q.len() * TEXT_BYTE_COST + 2 * REGEX_COST + 4 * REGEX_BYTE_COST
        );
        // A 1 MB pattern costs far more than a 256 MiB budget, so it is refused unparsed.
        let big = format!("up{{job=~\"{}\"}}", "a".repeat(1 << 20));
        assert!(parse_cost(&big) > 256 << 20);
        // An unterminated string does not run past the end.
        assert!(parse_cost("{a=~\"abc") > REGEX_COST);
    }

    #[test]
    fn size_flags() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").unwrap_err().contains("more than 0"));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(fmt_bytes(256 << 20), "256MiB");
        assert_eq!(fmt_bytes(1536 << 20), "1.5GiB");
        assert_eq!(fmt_bytes(512), "512B");
    }

    #[test]
    fn cancellation_is_seen_through_the_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let l = Limits::new(Reservation::default(), flag.clone());
        assert!(!l.is_canceled());
        flag.store(true, Ordering::Relaxed);
        assert!(l.is_canceled());
        assert!(!Limits::default().is_canceled());
    }
}

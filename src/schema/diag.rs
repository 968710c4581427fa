//! Diagnostics for config files: where each key path sits in the text (line and column from a
//! YAML event parser that keeps marks), the collected errors and warnings, and the helper that
//! runs serde on one block of the document, reporting every unknown key rather than the first.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// One finding in a file: where (file, line, column, key path) and what. A value until it is
/// shown: `Display` renders `FILE:LINE:COL: key.path: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    /// The file as the user named it (empty until [`Diagnostics::finish`] names it).
    pub file: String,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    /// Key path like `nodes[1].sim.allocation.cpu_cores`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl Diag {
    /// A finding about a whole file (it cannot be read, say).
    pub fn file(file: &str, message: impl Into<String>) -> Diag {
        Diag {
            file: file.to_string(),
            pos: None,
            path: String::new(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some((l, c)) = self.pos {
            write!(f, ":{l}:{c}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The errors of a file that did not load, one [`Diag`] per line when shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Diags(pub Vec<Diag>);

impl Diags {
    /// One line of text per finding (for callers that keep text).
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// Key path → position of the key (mapping entries) or of the item (sequence items).
#[derive(Debug, Default)]
pub struct PosIndex(HashMap<String, (usize, usize)>);

impl PosIndex {
    /// Indexes `text`. A document the event parser rejects gets an empty index (serde_yaml then
    /// reports the syntax error with its own location).
    pub fn build(text: &str) -> PosIndex {
        use saphyr_parser::{Event, Parser};
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, next: usize },
        }
        let mut idx = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let pos = |m: saphyr_parser::Marker| (m.line(), m.col() + 1);
        // The path of the value that starts now, given the innermost open container; records
        // sequence items (mapping values were recorded with their key).
        fn value_path(
            stack: &mut [Frame],
            idx: &mut HashMap<String, (usize, usize)>,
            at: (usize, usize),
        ) -> String {
            match stack.last_mut() {
                None => {
                    idx.entry(String::new()).or_insert(at);
                    String::new()
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => join_key(path, &k),
                    None => format!("{path}.?"),
                },
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    idx.entry(p.clone()).or_insert(at);
                    p
                }
            }
        }
        while let Some(ev) = parser.next_event() {
            let Ok((ev, span)) = ev else { break };
            let at = pos(span.start);
            match ev {
                Event::Scalar(v, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut() {
                        if key.is_none() {
                            let p = join_key(path, &v);
                            idx.entry(p).or_insert(at);
                            *key = Some(v.into_owned());
                            continue;
                        }
                    }
                    value_path(&mut stack, &mut idx, at);
                }
                Event::Alias(_) => {
                    value_path(&mut stack, &mut idx, at);
                }
                Event::MappingStart(..) => {
                    let in_key_position =
                        matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                    let path = if in_key_position {
                        // A complex key: give its contents a path nobody asks for.
                        "?complex".to_string()
                    } else {
                        value_path(&mut stack, &mut idx, at)
                    };
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = value_path(&mut stack, &mut idx, at);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let done = stack.pop();
                    if let (Some(Frame::Map { path, .. }), Some(Frame::Map { key, .. })) =
                        (&done, stack.last_mut())
                    {
                        if path == "?complex" {
                            *key = Some("?".into());
                        }
                    }
                }
                _ => {}
            }
        }
        PosIndex(idx)
    }

    /// Position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(at) = self.0.get(p) {
                return Some(*at);
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                // A top-level key that is not there: point at the document.
                None if !p.is_empty() => p = "",
                None => return None,
            }
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub fn join_index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Errors and warnings of one file, positioned through the file's [`PosIndex`].
#[derive(Debug, Default)]
pub struct Diagnostics {
    index: PosIndex,
    pub errors: Vec<Diag>,
    pub warnings: Vec<Diag>,
}

impl Diagnostics {
    pub fn new(index: PosIndex) -> Self {
        Diagnostics {
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.index.find(path);
        self.errors.push(Diag {
            file: String::new(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.index.find(path);
        self.warnings.push(Diag {
            file: String::new(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn error_at(&mut self, pos: Option<(usize, usize)>, message: impl Into<String>) {
        self.errors.push(Diag {
            file: String::new(),
            pos,
            path: String::new(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Runs serde on one block whose path is `prefix`. Every unknown key is reported (the key
    /// is dropped and serde runs again); a value of the wrong type is reported and dropped too;
    /// a missing required key ends the block. Returns the block when only unknown keys were
    /// wrong, so that the semantic checks still run on the rest.
    pub fn deserialize<T: DeserializeOwned>(&mut self, prefix: &str, value: Value) -> Option<T> {
        let mut value = value;
        let mut dropped: Vec<Vec<Seg>> = Vec::new();
        let mut ok = true;
        // Each round removes one offending key, so a block ends after as many rounds as it has
        // keys; the bound only guards against a serde message we fail to act on.
        for _ in 0..256 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return ok.then_some(t),
                Err(e) => {
                    let segs: Vec<Seg> = e
                        .path()
                        .iter()
                        .filter_map(|s| match s {
                            serde_path_to_error::Segment::Map { key } => {
                                Some(Seg::Key(key.clone()))
                            }
                            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                            _ => None,
                        })
                        .collect();
                    let msg = e.inner().to_string();
                    if let Some(rest) = msg.strip_prefix("unknown field `") {
                        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
                        let mut at = segs.clone();
                        if at.last() != Some(&Seg::Key(name.to_string())) {
                            at.push(Seg::Key(name.to_string()));
                        }
                        let expected = expected.trim_start_matches(", ").replace('`', "");
                        let text = if expected.is_empty() || expected == "there are no fields" {
                            format!("unknown key \"{name}\"")
                        } else {
                            format!("unknown key \"{name}\"; {expected}")
                        };
                        self.error(&seg_path(prefix, &at), text);
                        if !remove(&mut value, &at) {
                            return None;
                        }
                        // Unknown keys do not make the rest of the block unusable.
                        continue;
                    }
                    if let Some(rest) = msg.strip_prefix("missing field `") {
                        let name = rest.split('`').next().unwrap_or(rest);
                        let mut at = segs.clone();
                        at.push(Seg::Key(name.to_string()));
                        if !dropped.contains(&at) {
                            self.error(
                                &seg_path(prefix, &segs),
                                format!("missing required key \"{name}\""),
                            );
                        }
                        return None;
                    }
                    let text = plain_serde_message(msg.split(" at line ").next().unwrap_or(&msg));
                    self.error(&seg_path(prefix, &segs), text);
                    ok = false;
                    // A list item is replaced by null rather than removed; if null is wrong
                    // too, the same path fails again: stop there.
                    if segs.is_empty() || dropped.contains(&segs) || !remove(&mut value, &segs) {
                        return None;
                    }
                    dropped.push(segs);
                }
            }
        }
        None
    }

    /// The errors and the warnings, in the order of the text, each naming `file`.
    pub fn finish(mut self, file: &str) -> (Vec<Diag>, Vec<Diag>) {
        let key = |d: &Diag| d.pos.unwrap_or((usize::MAX, usize::MAX));
        self.errors.sort_by_key(key);
        self.warnings.sort_by_key(key);
        for d in self.errors.iter_mut().chain(self.warnings.iter_mut()) {
            d.file = file.to_string();
        }
        (self.errors, self.warnings)
    }
}

/// Reads `text` as one YAML document and hands its value to `validate`: the opening every
/// file of the project shares (config, optimization rules, scenarios). A syntax error is one
/// positioned error; what `validate` finds is positioned through the text's key index and
/// names `file`. Ok: the validated value and its warnings.
pub fn validate_document<T>(
    text: &str,
    file: &str,
    validate: impl FnOnce(Value, &mut Diagnostics) -> Option<T>,
) -> Result<(T, Vec<Diag>), Diags> {
    let mut d = Diagnostics::new(PosIndex::build(text));
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map(|l| (l.line(), l.column()));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            d.error_at(pos, format!("invalid YAML: {msg}"));
            return Err(Diags(d.finish(file).0));
        }
    };
    let out = validate(value, &mut d);
    let (errors, warnings) = d.finish(file);
    match out {
        Some(v) if errors.is_empty() => Ok((v, warnings)),
        _ => Err(Diags(errors)),
    }
}

/// Serde's words for Rust types, in a config writer's words.
fn plain_serde_message(msg: &str) -> String {
    let mut out = msg.replace('`', "\"");
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected a sequence", "expected a list"),
    ] {
        out = out.replace(rust, plain);
    }
    if let Some(i) = out
        .find("expected struct ")
        .or_else(|| out.find("expected a map"))
    {
        out.truncate(i);
        out.push_str("expected a mapping");
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn seg_path(prefix: &str, segs: &[Seg]) -> String {
    let mut p = prefix.to_string();
    for s in segs {
        p = match s {
            Seg::Key(k) => join_key(&p, k),
            Seg::Index(i) => join_index(&p, *i),
        };
    }
    p
}

/// Removes the value at `segs` from `value`; false when it is not there.
fn remove(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = value;
    for s in parents {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        // Replacing keeps the indices of later items, which the paths refer to.
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s[*i] = Value::Null;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_keys_and_items() {
        let text = "global:\n  poll_interval: 5s\nnodes:\n  - name: a\n    kind: sim\n  - {name: b, kind: sim}\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.find("global.poll_interval"), Some((2, 3)));
        assert_eq!(idx.find("nodes[0].name"), Some((4, 5)));
        assert_eq!(idx.find("nodes[0].kind"), Some((5, 5)));
        assert_eq!(idx.find("nodes[1].kind"), Some((6, 15)));
        // A key that is not there falls back to its parent.
        assert_eq!(idx.find("nodes[0].sim.protocol"), Some((4, 5)));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
        #[serde(default)]
        b: Option<u32>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
        #[serde(default)]
        c: Option<String>,
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text = "inner:\n  a: 1\n  zz: 2\n  yy: 3\nc: x\nxx: 1\n";
        let v: Value = serde_yaml::from_str(text).unwrap();
        let mut d = Diagnostics::new(PosIndex::build(text));
        let r: Option<Outer> = d.deserialize("", v);
        assert!(r.is_some());
        let (errs, _) = d.finish("f.yml");
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with("f.yml:3:3: inner.zz: unknown key \"zz\""),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("f.yml:6:1: xx: unknown key \"xx\""),
            "{errs:?}"
        );
    }

    #[test]
    fn wrong_type_and_missing_key() {
        let text = "inner:\n  b: nope\nc: [1]\n";
        let v: Value = serde_yaml::from_str(text).unwrap();
        let mut d = Diagnostics::new(PosIndex::build(text));
        let r: Option<Outer> = d.deserialize("top", v);
        assert!(r.is_none());
        let (errs, _) = d.finish("f.yml");
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("top.inner.b: invalid type"), "{errs:?}");
        assert!(
            errs[1].contains("missing required key \"a\"") || errs[1].contains("c: invalid type"),
            "{errs:?}"
        );
    }
}

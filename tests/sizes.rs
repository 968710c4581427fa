//! The size limits of the sources, checked from src/: no file over 800 lines (counted up to its
//! `#[cfg(test)]` module) and no function of 120 lines or more (from its `fn` line to the
//! closing brace at the same indent). The few exceptions are listed in [`ALLOWED`] with the
//! reason; a file or function over a limit and not listed fails this test and says where.

use std::path::{Path, PathBuf};

/// Most lines a file may have before its `#[cfg(test)]` module.
const MAX_FILE_LINES: usize = 800;
/// A function this long or longer is too long.
const MAX_FN_LINES: usize = 120;

/// Exceptions: (file under src/, function or "" for the file itself, why). An entry whose
/// reason starts with "pending" is being split and may already be within the limits; any other
/// entry must still be over its limit, so the list cannot go stale.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "src/rules/template/tests.rs",
        "",
        "test-only module (Go's text/template test table)",
    ),
    (
        "src/rules/template/tests.rs",
        "go_exec_tests",
        "test-only: one table of Go's exec_test.go cases",
    ),
    (
        "src/earnings/tests.rs",
        "run",
        "test-only: the scripted earnings scenario run step by step",
    ),
];

/// What is over a limit in one file's text: the file's own length when over, then each long
/// function as (name, lines).
#[derive(Debug, PartialEq)]
struct Over {
    file_lines: Option<usize>,
    functions: Vec<(String, usize)>,
}

/// The name of the function a line declares (`pub(crate) async fn name(`), with the line's
/// indent, or None.
fn fn_decl(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start();
    let indent = &line[..line.len() - rest.len()];
    let mut rest = rest;
    if let Some(r) = rest.strip_prefix("pub") {
        let r = match r.strip_prefix('(') {
            Some(inner) => &inner[inner.find(')')? + 1..],
            None => r,
        };
        // `pub` must be followed by whitespace (after any `(…)`), or it is another word.
        if !r.starts_with(char::is_whitespace) {
            return None;
        }
        rest = r.trim_start();
    }
    for word in ["async", "const", "unsafe"] {
        if let Some(r) = rest.strip_prefix(word) {
            if r.starts_with(char::is_whitespace) {
                rest = r.trim_start();
            }
        }
    }
    let r = rest.strip_prefix("fn")?;
    if !r.starts_with(char::is_whitespace) {
        return None;
    }
    let r = r.trim_start();
    let end = r
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(r.len());
    (end > 0).then(|| (indent, &r[..end]))
}

/// Measures a file's text against the limits.
fn measure(text: &str) -> Over {
    let lines: Vec<&str> = text.lines().collect();
    let n = lines
        .iter()
        .position(|l| l.starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    let mut functions = Vec::new();
    for i in 0..n {
        let Some((indent, name)) = fn_decl(lines[i]) else {
            continue;
        };
        let close = format!("{indent}}}");
        if let Some(j) = (i + 1..n).find(|&j| lines[j] == close) {
            let len = j - i + 1;
            if len >= MAX_FN_LINES {
                functions.push((name.to_string(), len));
            }
        }
    }
    Over {
        file_lines: (n > MAX_FILE_LINES).then_some(n),
        functions,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn sources_keep_to_the_size_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut over: Vec<(String, String, usize)> = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let m = measure(&std::fs::read_to_string(f).unwrap());
        if let Some(n) = m.file_lines {
            over.push((rel.clone(), String::new(), n));
        }
        for (name, n) in m.functions {
            over.push((rel.clone(), name, n));
        }
    }
    let allowed = |file: &str, func: &str| ALLOWED.iter().any(|(f, n, _)| *f == file && *n == func);
    let mut problems = Vec::new();
    for (file, func, n) in &over {
        if !allowed(file, func) {
            if func.is_empty() {
                problems.push(format!(
                    "{file}: {n} lines before #[cfg(test)], over {MAX_FILE_LINES}"
                ));
            } else {
                problems.push(format!(
                    "{file}: fn {func} has {n} lines, the limit is under {MAX_FN_LINES}"
                ));
            }
        }
    }
    for (file, func, why) in ALLOWED {
        let still = over.iter().any(|(f, n, _)| f == file && n == func);
        if !still && !why.starts_with("pending") {
            problems.push(format!(
                "{file} {func}: within the limits now; remove it from ALLOWED"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "split these, or list them in ALLOWED with the reason:\n{}",
        problems.join("\n")
    );
}

/// A function text of `body` lines between its `fn` line and its closing brace.
fn function(indent: &str, head: &str, body: usize) -> String {
    let mut s = format!("{indent}{head} {{\n");
    for i in 0..body {
        s.push_str(&format!("{indent}    let x{i} = {i};\n"));
    }
    s.push_str(&format!("{indent}}}\n"));
    s
}

#[test]
fn counting_finds_a_long_function_and_stops_at_the_tests() {
    // 117 body lines + 2 = 119: within the limit; 118 + 2 = 120: too long.
    let text = [
        function("", "fn short()", 117),
        function("", "pub(crate) async fn long_one(a: u8)", 118),
        "impl X {\n".to_string(),
        function("    ", "pub fn method(&self)", 130),
        "}\n".to_string(),
        function("", "const fn in_between()", 5),
    ]
    .concat();
    let m = measure(&text);
    assert_eq!(
        m.functions,
        vec![("long_one".to_string(), 120), ("method".to_string(), 132)]
    );
    assert_eq!(m.file_lines, None, "{} lines", text.lines().count());

    // The same long function inside the test module does not count, nor do its lines.
    let with_tests = format!(
        "{}#[cfg(test)]\nmod tests {{\n{}}}\n",
        function("", "fn short()", 10),
        function("    ", "fn long_test()", 900)
    );
    assert_eq!(
        measure(&with_tests),
        Over {
            file_lines: None,
            functions: Vec::new()
        }
    );

    // A file of 801 lines before its tests is over.
    let long_file = "// x\n".repeat(801);
    assert_eq!(measure(&long_file).file_lines, Some(801));
    assert_eq!(measure(&"// x\n".repeat(800)).file_lines, None);
}

#[test]
fn only_declarations_count_as_functions() {
    assert_eq!(fn_decl("    pub(super) fn a_b("), Some(("    ", "a_b")));
    assert_eq!(fn_decl("pub unsafe fn raw()"), Some(("", "raw")));
    assert_eq!(fn_decl("fn main() {"), Some(("", "main")));
    assert_eq!(fn_decl("    let f = fnord;"), None);
    assert_eq!(fn_decl("// fn commented() {"), None);
    assert_eq!(fn_decl("public fn x()"), None);
    assert_eq!(fn_decl("    fnx()"), None);
}

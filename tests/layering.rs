//! The library's layers, checked from the sources: every module imports only from its own layer
//! or the layers below it, and the modules of one layer import each other without a cycle.
//! The map of the layers is the README's "Where things are"; a new top-level module must be
//! placed here, or this test fails and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import from its own layer (without a cycle) and from any below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "resources",
            "labels",
            "clock",
            "compat",
            "memory",
            "build",
            "logging",
        ],
    ),
    ("schema and network", &["schema", "net"]),
    ("node kinds and actuators", &["adapters", "actuators"]),
    ("config", &["config"]),
    ("storage", &["tsdb"]),
    ("node pipeline", &["metrics", "earnings", "coordinator"]),
    ("query", &["promql"]),
    ("rules and remote write", &["rules", "remote_write"]),
    ("optimizer", &["optimizer"]),
    ("reallocation", &["reallocation"]),
    ("events and export", &["events", "export"]),
    ("http", &["http"]),
    ("application", &["app", "cli", "sim", "report"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The top-level module a file under src/ belongs to (`src/tsdb/wal.rs` → `tsdb`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
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

/// The code of a file without its comments (doc links name other modules without using them).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://…") is code; good enough: cut only when the
            // part before it has an even number of quotes.
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::` (`crate::x::…`, `crate::{x, y::…}`).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `depin_orcha_crate::` or `mycrate::` are not `crate::`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                out.insert(first_ident(item.trim()));
            }
        } else {
            out.insert(first_ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

fn first_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    // module → modules of the same layer it imports, for the cycle check.
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        let Some(layer) = layer_of(&module) else {
            problems.push(format!(
                "src/{module}: a top-level module that is in no layer; place it in LAYERS of tests/layering.rs and in the README's map"
            ));
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(f).unwrap());
        for dep in imports(&code) {
            if dep == module {
                continue;
            }
            match layer_of(&dep) {
                None => problems.push(format!(
                    "{}: imports crate::{dep}, which is in no layer",
                    f.strip_prefix(&src).unwrap().display()
                )),
                Some(l) if l > layer => problems.push(format!(
                    "{}: {module} ({}) imports crate::{dep} from the layer above it ({})",
                    f.strip_prefix(&src).unwrap().display(),
                    LAYERS[layer].0,
                    LAYERS[l].0
                )),
                Some(l) if l == layer => {
                    same_layer.entry(module.clone()).or_default().insert(dep);
                }
                Some(_) => {}
            }
        }
    }
    for (m, deps) in &same_layer {
        for d in deps {
            if same_layer.get(d).is_some_and(|back| back.contains(m)) && m < d {
                problems.push(format!(
                    "{m} and {d} import each other (a cycle in one layer)"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_imports_of_every_form() {
    let code = "use crate::tsdb::Db;\nuse crate::{labels::Labels, promql};\nlet x = crate::http::json::f();\nlet y = depin_orcha_crate::z;";
    let got: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(got, ["http", "labels", "promql", "tsdb"]);
    assert_eq!(layer_of("http"), Some(11));
    assert!(without_comments("let a = 1; // crate::http\n")
        .find("http")
        .is_none());
}

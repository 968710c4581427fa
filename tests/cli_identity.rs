//! The house rules of the Prometheus tools, through the real binary: build identity
//! (`--version`, `depin_orcha_build_info`, `/api/v1/status/buildinfo` carry revision, branch,
//! build user and date, toolchain), the landing page at `/`, `--web.telemetry-path`, log lines
//! with `ts=`/`caller=`/`level=`/`msg=`, flags refused with a clear error, and a failed bind
//! reported once, leaving no storage directory behind.

mod common;

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// `depin-orcha --version`'s fields: `(version, branch, revision, build user, build date,
/// rust version, platform)`.
fn version_fields() -> [String; 7] {
    let out = Command::new(common::bin())
        .arg("--version")
        .output()
        .expect("--version");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    // depin-orcha 0.1.0 (branch: B, revision: R)
    let rest = first
        .strip_prefix("depin-orcha ")
        .unwrap_or_else(|| panic!("{text}"));
    let (version, rest) = rest
        .split_once(" (branch: ")
        .unwrap_or_else(|| panic!("{text}"));
    let (branch, rest) = rest
        .split_once(", revision: ")
        .unwrap_or_else(|| panic!("{text}"));
    let revision = rest.strip_suffix(')').unwrap_or_else(|| panic!("{text}"));
    let mut field = |name: &str| -> String {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"));
        l.trim()
            .strip_prefix(&format!("{name}:"))
            .unwrap_or_else(|| panic!("expected {name}: in {l:?}"))
            .trim()
            .to_string()
    };
    [
        version.to_string(),
        branch.to_string(),
        revision.to_string(),
        field("build user"),
        field("build date"),
        field("rust version"),
        field("platform"),
    ]
}

#[test]
fn version_build_info_and_buildinfo_api_tell_the_same_build() {
    let [version, branch, revision, user, date, rustc, platform] = version_fields();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    if let Some(head) = git(&["rev-parse", "HEAD"]) {
        assert_eq!(revision, head, "the revision is the commit built");
    } else {
        assert!(!revision.is_empty());
    }
    if let Some(b) = git(&["rev-parse", "--abbrev-ref", "HEAD"]) {
        assert_eq!(branch, b);
    }
    assert!(!user.is_empty() && user != "unknown", "build user {user:?}");
    // 20060102-15:04:05
    assert!(
        date.len() == 17
            && date.as_bytes()[8] == b'-'
            && date[..8].bytes().all(|c| c.is_ascii_digit()),
        "build date {date:?}"
    );
    assert!(rustc.starts_with("rustc 1."), "{rustc}");
    assert!(platform.contains("linux"), "{platform}");

    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let orcha = common::Orcha::start(&["--storage.path", &storage]);
    orcha.wait_ready();
    let info = orcha.get("/api/v1/status/buildinfo").json();
    let d = &info["data"];
    for (key, want) in [
        ("version", &version),
        ("revision", &revision),
        ("branch", &branch),
        ("buildUser", &user),
        ("buildDate", &date),
        ("goVersion", &rustc),
    ] {
        assert_eq!(
            d[key].as_str(),
            Some(want.as_str()),
            "buildinfo {key}: {info}"
        );
    }
    let metrics = orcha.get("/metrics").body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("depin_orcha_build_info{"))
        .unwrap_or_else(|| panic!("no build_info in\n{metrics}"));
    for (label, want) in [
        ("version", &version),
        ("revision", &revision),
        ("branch", &branch),
        ("rustversion", &rustc),
    ] {
        assert!(
            line.contains(&format!("{label}=\"{want}\"")),
            "{label} in {line}"
        );
    }
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn landing_page_runbooks_and_telemetry_path() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let orcha = common::Orcha::start(&[
        "--storage.path",
        &storage,
        "--web.telemetry-path",
        "/internal/metrics",
    ]);
    orcha.wait_ready();
    let page = orcha.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for href in [
        "internal/metrics",
        "-/healthy",
        "-/ready",
        "api/v1/status/buildinfo",
        "api/v1/rules",
        "api/v1/alerts",
        "docs/runbooks.md",
    ] {
        assert!(
            page.body.contains(&format!("<a href=\"{href}\"")),
            "{href} in\n{}",
            page.body
        );
        // Every link of the page answers.
        let target = format!("/{href}");
        let r = orcha.get(&target);
        assert_eq!(r.status, 200, "{target}: {}", r.body);
    }
    assert!(orcha
        .get("/internal/metrics")
        .body
        .contains("depin_adapter_up{"));
    assert_eq!(orcha.get("/metrics").status, 404, "/metrics moved");
    let runbooks = orcha.get("/docs/runbooks.md").body;
    assert!(runbooks.contains("## DepinNodeDown"), "{runbooks}");
}

#[test]
fn log_lines_carry_the_prometheus_keys() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    // Orcha::start reads the lines up to the one with the address; the next comes from the
    // server: `ts=… caller=server.rs:N level=info msg="serving HTTP" …`.
    let orcha = common::Orcha::start(&["--storage.path", &storage]);
    let line = orcha
        .log
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("a log line after the address");
    let keys: Vec<&str> = line
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .take(3)
        .collect();
    assert_eq!(keys, ["ts", "caller", "level"], "{line}");
    assert!(line.contains(" msg="), "{line}");
    let caller = line
        .split("caller=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(caller.contains(".rs:"), "{line}");
    assert!(
        !line.contains("message=") && !line.contains("target="),
        "{line}"
    );
    drop(orcha);

    // JSON: the same keys. (On a port already taken the start fails after a few lines.)
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("--web.listen-address={}", taken.local_addr().unwrap());
    let out = Command::new(common::bin())
        .current_dir(dir.path())
        .args(["run", &addr, "--log.format=json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    for k in ["ts", "caller", "level", "msg"] {
        assert!(first[k].is_string(), "{k} in {first}");
    }
    assert!(!text.contains("\"message\""), "{text}");
}

#[test]
fn bad_flags_are_refused_with_a_clear_error() {
    for (flag, words) in [
        (
            "--log.level=bogus",
            "unrecognized log level \"bogus\": one of debug, info, warn, error",
        ),
        (
            "--web.telemetry-path=metrics",
            "must be a path starting with /",
        ),
        (
            "--web.telemetry-path=/api/v1/query",
            "/api/v1/query is a path of the API",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(common::bin())
            .current_dir(dir.path())
            .args(["run", flag])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} was taken");
        assert!(text.contains(words), "{flag}: {text}");
        assert!(!dir.path().join("data").exists(), "{flag} left ./data");
    }
}

#[test]
fn a_failed_bind_is_reported_once_and_leaves_no_storage() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .current_dir(dir.path())
        .args(["run", "--web.listen-address", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.matches("Address already in use").count(), 1, "{text}");
    assert_eq!(
        text.matches(&format!("listening on {addr}")).count(),
        1,
        "{text}"
    );
    assert!(!dir.path().join("data").exists(), "./data left behind");
}

//! Access through the real binary: `--web.config.file` with TLS and basic auth answers a
//! client with the CA and the password and refuses one without, and plain HTTP with a 400; basic
//! auth and the control token work together as the README says (the password in
//! `Authorization`, the token in `X-Depin-Orcha-Token` or a second `Authorization: Bearer`), and
//! scheme names match in any case; a bad web config stops the start with the file and key
//! named; listening beyond loopback without protection warns.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Writes a self-signed certificate for localhost, its key and a web config with TLS and basic
/// auth (alice / s3cret) into `dir`.
fn web_config(dir: &std::path::Path) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  alice: '{hash}'\n"),
    )
    .unwrap();
}

/// `curl` over TLS with the test's CA; `None` (and a note) when curl is missing.
fn curl(args: &[&str]) -> Option<(bool, String)> {
    let out = match Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: curl is not available ({e})");
            return None;
        }
    };
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

// promtool 2.42 (Debian 12) has no --http.config.file for `promtool query`, so curl stands in
// for a Prometheus client here.
#[test]
fn the_query_api_over_tls_needs_the_password() {
    let dir = temp_dir("access-tls");
    web_config(&dir);
    let orcha = Orcha::start(&[
        "--storage.path",
        dir.join("data").to_str().unwrap(),
        "--web.config.file",
        dir.join("web.yml").to_str().unwrap(),
    ]);
    let ca = dir.join("cert.pem");
    let ca = ca.to_str().unwrap();
    let resolve = format!("localhost:{}:127.0.0.1", orcha.addr.port());
    let url = format!(
        "https://localhost:{}/api/v1/query?query=depin_adapter_up",
        orcha.addr.port()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let Some((ok, text)) = curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            ca,
            "-u",
            "alice:s3cret",
            &url,
        ]) else {
            return;
        };
        if ok && text.ends_with("\n200") && text.contains("golem") {
            break text;
        }
        assert!(Instant::now() < deadline, "no answer over TLS: {text}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(body.contains("\"status\":\"success\""), "{body}");
    let (_, text) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        ca,
        "-u",
        "alice:wrong",
        &url,
    ])
    .unwrap();
    assert!(text.ends_with("\n401"), "a wrong password: {text}");
    let (_, text) = curl(&["--resolve", &resolve, "--cacert", ca, &url]).unwrap();
    assert!(text.ends_with("\n401"), "no password: {text}");
    // Without the CA, curl refuses the self-signed certificate; plain HTTP gets a plain 400
    // saying why, as Go's server answers it (not a TLS alert the client cannot read).
    let (ok, _) = curl(&["--resolve", &resolve, "-u", "alice:s3cret", &url]).unwrap();
    assert!(!ok, "an unknown certificate was accepted");
    let plain = try_http(orcha.addr, "GET", "/metrics", None).unwrap();
    assert_eq!(plain.status, 400, "{plain:?}");
    assert_eq!(
        plain.body,
        "Client sent an HTTP request to an HTTPS server.\n"
    );
}

#[test]
fn a_bad_web_config_stops_the_start_naming_file_and_key() {
    let dir = temp_dir("access-bad");
    let web = dir.join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: cert.pem\n").unwrap();
    let out = Command::new(bin())
        .args([
            "run",
            "--web.listen-address",
            "127.0.0.1:0",
            "--storage.path",
        ])
        .arg(dir.join("data"))
        .arg("--web.config.file")
        .arg(&web)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: tls_server_config.key_file: missing key_file",
            web.display()
        )),
        "{err}"
    );
}

#[test]
fn listening_beyond_loopback_unprotected_warns() {
    let dir = temp_dir("access-warn");
    let mut child = Command::new(bin())
        .args(["run", "--web.listen-address", "0.0.0.0:0", "--storage.path"])
        .arg(dir.join("data"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut warned = false;
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("level=warn") && line.contains("beyond loopback") {
            warned = true;
        }
        if line.contains("msg=listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        warned,
        "no warning when listening on 0.0.0.0 without TLS and auth"
    );
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b64}")
}

/// The status of a state-changing POST with these headers.
fn post(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    try_http_with(addr, "POST", path, headers, None)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .status
}

fn paused(addr: std::net::SocketAddr, auth: &[(&str, &str)]) -> Option<f64> {
    let m = try_http_with(addr, "GET", "/metrics", auth, None).unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    metric_value(&m.body, "depin_controller_paused", &[])
}

#[test]
fn basic_auth_and_the_control_token_work_together_in_any_case() {
    let dir = temp_dir("access-token");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!("basic_auth_users:\n  alice: '{hash}'\n"),
    )
    .unwrap();
    std::fs::write(dir.join("token"), "t0ken\n").unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/optimization.yml");
    let token_file = dir.join("token");
    let common_args = [
        "--optimization.rules-file",
        rules.to_str().unwrap(),
        "--web.auth-token-file",
        token_file.to_str().unwrap(),
    ];
    let data = dir.join("data");
    let web = dir.join("web.yml");
    let mut args = vec!["--storage.path", data.to_str().unwrap()];
    args.extend(["--web.config.file", web.to_str().unwrap()]);
    args.extend(common_args);
    let orcha = Orcha::start(&args);
    let addr = orcha.addr;
    let pass = basic("alice", "s3cret");
    // The scheme in lower case is the same scheme (RFC 7235).
    let lower = pass.replacen("Basic", "basic", 1);
    wait_until(Duration::from_secs(30), "ready behind basic auth", || {
        try_http_with(addr, "GET", "/-/ready", &[("Authorization", &lower)], None)
            .is_ok_and(|r| r.status == 200)
    });
    let auth = [("Authorization", pass.as_str())];
    assert_eq!(paused(addr, &auth), Some(0.0));
    let pause = "/api/v1/controller/pause";
    // The password alone, a wrong token, the token alone: refused, and nothing changes.
    assert_eq!(post(addr, pause, &[("Authorization", &pass)]), 401);
    assert_eq!(
        post(
            addr,
            pause,
            &[("Authorization", &pass), ("X-Depin-Orcha-Token", "wrong")]
        ),
        401
    );
    assert_eq!(post(addr, pause, &[("Authorization", "Bearer t0ken")]), 401);
    assert_eq!(post(addr, pause, &[("X-Depin-Orcha-Token", "t0ken")]), 401);
    assert_eq!(paused(addr, &auth), Some(0.0));
    // The password and the token in its own header.
    assert_eq!(
        post(
            addr,
            pause,
            &[("Authorization", &lower), ("X-Depin-Orcha-Token", "t0ken")]
        ),
        200
    );
    assert_eq!(paused(addr, &auth), Some(1.0));
    // The password and the token as a second Authorization header, scheme in lower case.
    assert_eq!(
        post(
            addr,
            "/api/v1/controller/resume",
            &[("Authorization", &pass), ("Authorization", "bearer t0ken")]
        ),
        200
    );
    assert_eq!(paused(addr, &auth), Some(0.0));
    drop(orcha);

    // Without basic auth the token alone is enough, its scheme in any case.
    let data = dir.join("data2");
    let mut args = vec!["--storage.path", data.to_str().unwrap()];
    args.extend(common_args);
    let orcha = Orcha::start(&args);
    orcha.wait_ready();
    let addr = orcha.addr;
    assert_eq!(post(addr, pause, &[("Authorization", "bearer wrong")]), 401);
    assert_eq!(post(addr, pause, &[("Authorization", "bearer t0ken")]), 200);
    assert_eq!(paused(addr, &[]), Some(1.0));
    assert_eq!(
        post(
            addr,
            "/api/v1/controller/resume",
            &[("Authorization", "BEARER t0ken")]
        ),
        200
    );
    assert_eq!(paused(addr, &[]), Some(0.0));
}

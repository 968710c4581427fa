//! What ships besides the binary: the systemd unit (`systemd-analyze verify`, and its
//! sandboxing scored by `systemd-analyze security`), the container image built FROM scratch
//! by `scripts/container-root` + `Dockerfile` with podman (run where the sandbox lets podman
//! run containers; else the image's root file system runs under chroot, as the image's user),
//! and the release archive of `scripts/release` with its checksum.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The unit with ExecStart pointing at the binary under test (verify checks that it exists).
fn unit_under_test(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("deploy/systemd/depin-orcha.service")).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/depin-orcha run"),
        "{text}"
    );
    let p = dir.join("depin-orcha.service");
    std::fs::write(
        &p,
        text.replace(
            "/usr/local/bin/depin-orcha",
            &common::bin().display().to_string(),
        ),
    )
    .unwrap();
    p
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let Some(analyze) = common::system_bin("systemd-analyze", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let (ok, out, err) = output(Command::new(&analyze).arg("verify").arg(&unit));
    // verify exits 0 on unknown keys but says so on stderr: nothing may be said.
    assert!(
        ok && err.trim().is_empty(),
        "systemd-analyze verify:\n{out}{err}"
    );
    let (_, out, err) = output(
        Command::new(&analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
    );
    let text = out + &err;
    let score: f64 = text
        .split("Overall exposure level for depin-orcha.service: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in\n{text}"));
    // 0 is a fully locked-down unit, 10 an unsandboxed one; "OK" is below 4.
    assert!(score <= 2.5, "exposure {score}:\n{text}");
    // Every directive the docs explain is there.
    let shipped =
        std::fs::read_to_string(root().join("deploy/systemd/depin-orcha.service")).unwrap();
    for d in [
        "User=depin-orcha",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "StateDirectory=depin-orcha",
        "#SupplementaryGroups=docker",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(shipped.contains(d), "the unit lacks {d:?}");
    }
}

/// `podman run` fails in sandboxes that forbid what the OCI runtime does (setrlimit, user
/// namespaces): those failures are the environment's, not the image's.
fn refused_by_sandbox(err: &str) -> bool {
    err.contains("Operation not permitted")
        || err.contains("permission denied")
        || err.contains("cannot set up namespace")
        || err.contains("newuidmap")
}

#[test]
fn the_container_image_builds_from_scratch_and_runs() {
    let Some(podman) = common::system_bin("podman", "podman") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let croot = dir.path().join("root");
    let (ok, out, err) = output(
        Command::new(root().join("scripts/container-root"))
            .arg(common::bin())
            .arg(&croot),
    );
    assert!(ok, "scripts/container-root:\n{out}{err}");
    let tag = format!("localhost/depin-orcha-test:{}", std::process::id());
    let (ok, out, err) = output(
        Command::new(&podman)
            .args(["build", "--quiet", "-f"])
            .arg(root().join("Dockerfile"))
            .args(["-t", &tag])
            .arg(&croot),
    );
    assert!(ok, "podman build:\n{out}{err}");
    struct Untag(PathBuf, String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).args(["rmi", "-f", &self.1]).output();
        }
    }
    let _untag = Untag(podman.clone(), tag.clone());
    let (ok, cfg, err) = output(Command::new(&podman).args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.ExposedPorts}} {{len .RootFS.Layers}}",
        &tag,
    ]));
    assert!(ok, "{err}");
    assert!(
        cfg.starts_with("65532:65532 [/usr/local/bin/depin-orcha] map[9817/tcp:{}]"),
        "{cfg}"
    );

    let (ok, out, err) = output(Command::new(&podman).args(["run", "--rm", &tag, "--version"]));
    if ok {
        assert!(out.starts_with("depin-orcha "), "{out}");
        return;
    }
    assert!(refused_by_sandbox(&err), "podman run failed:\n{out}{err}");
    eprintln!(
        "note: this sandbox refuses `podman run` ({}); running the image's root file system under chroot instead",
        err.trim()
    );
    // Root only: chroot, and the storage directory owned by the image's user.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping the chroot run: not root");
        return;
    }
    let state = croot.join("var/lib/depin-orcha");
    let (ok, _, err) = output(Command::new("chown").arg("65532:65532").arg(&state));
    assert!(ok, "{err}");
    let port = common::free_port();
    let mut cmd = Command::new("chroot");
    cmd.arg("--userspec=65532:65532").arg(&croot);
    // The image's CMD, on a loopback port of the test's choosing.
    let child = cmd
        .args([
            "/usr/local/bin/depin-orcha",
            "run",
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.path=/var/lib/depin-orcha",
            "--rules.file=/etc/depin-orcha/rules/prometheus/*.yml",
            "--optimization.rules-file=/etc/depin-orcha/rules/optimization.yml",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chroot");
    let _child = common::KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    common::wait_until(Duration::from_secs(30), "the image's binary ready", || {
        common::try_http(addr, "GET", "/-/ready", None).is_ok_and(|r| r.status == 200)
    });
    let rules = common::http(addr, "GET", "/api/v1/rules", None).json();
    assert_eq!(
        rules["data"]["groups"].as_array().map(|g| g.len()),
        Some(7),
        "the shipped rules load inside the image: {rules}"
    );
    assert!(common::http(addr, "GET", "/metrics", None)
        .body
        .contains("depin_adapter_up{"));
    // It wrote its storage as the image's user.
    assert!(std::fs::read_dir(&state).unwrap().next().is_some());
}

#[test]
fn the_release_archive_holds_what_install_needs_and_its_checksum_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = output(
        Command::new(root().join("scripts/release"))
            .arg("--binary")
            .arg(common::bin())
            .arg("--out")
            .arg(dir.path()),
    );
    assert!(ok, "scripts/release:\n{out}{err}");
    let (ok, out, err) = output(
        Command::new("sha256sum")
            .args(["-c", "sha256sums.txt"])
            .current_dir(dir.path()),
    );
    assert!(ok && out.contains(": OK"), "{out}{err}");
    let archive = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("an archive");
    let (ok, list, err) = output(Command::new("tar").arg("tzf").arg(&archive));
    assert!(ok, "{err}");
    let name = archive
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".tar.gz")
        .to_string();
    assert!(
        name.starts_with(&format!("depin-orcha-{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    for f in [
        "depin-orcha",
        "rules/prometheus/alerts.yml",
        "rules/optimization.yml",
        "deploy/systemd/depin-orcha.service",
        "examples/alertmanager.yml",
        "grafana/dashboards/overview.json",
        "docs/install.md",
        "README.md",
    ] {
        assert!(
            list.lines().any(|l| l == format!("{name}/{f}")),
            "{f} is not in the archive:\n{list}"
        );
    }
    // The packed binary runs.
    let x = tempfile::tempdir().unwrap();
    let (ok, _, err) = output(
        Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(x.path()),
    );
    assert!(ok, "{err}");
    let (ok, out, _) =
        output(Command::new(x.path().join(&name).join("depin-orcha")).arg("--version"));
    assert!(ok && out.starts_with("depin-orcha "), "{out}");
}

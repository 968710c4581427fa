//! Build identity, as the Prometheus tools report it (`--version`, `depin_orcha_build_info`,
//! `/api/v1/status/buildinfo`): revision, branch, build user, build date and toolchain, handed
//! to the crate as `DEPIN_ORCHA_*` environment variables.
//!
//! Each can be given from outside (a release script, `docker build --build-arg`, a source
//! archive without `.git`): a variable already set wins over what git says. The build date
//! honours `SOURCE_DATE_EPOCH` (reproducible builds).

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let given = |name: &str| -> Option<String> {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).ok().filter(|v| !v.is_empty())
    };

    let revision = given("DEPIN_ORCHA_REVISION")
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let branch = given("DEPIN_ORCHA_BRANCH")
        .or_else(|| git(&["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let user = given("DEPIN_ORCHA_BUILD_USER").unwrap_or_else(|| {
        let name = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .or_else(|| {
                let out = Command::new("id").arg("-un").output().ok()?;
                String::from_utf8(out.stdout)
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        if host.is_empty() {
            name
        } else {
            format!("{name}@{host}")
        }
    });
    let epoch = given("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let toolchain = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());

    println!("cargo:rustc-env=DEPIN_ORCHA_REVISION={revision}");
    println!("cargo:rustc-env=DEPIN_ORCHA_BRANCH={branch}");
    println!("cargo:rustc-env=DEPIN_ORCHA_BUILD_USER={user}");
    println!(
        "cargo:rustc-env=DEPIN_ORCHA_BUILD_DATE={}",
        build_date(epoch)
    );
    println!("cargo:rustc-env=DEPIN_ORCHA_RUSTC_VERSION={toolchain}");
    println!("cargo:rustc-env=DEPIN_ORCHA_TARGET={target}");

    // Stamp again when the checked-out commit or branch changes (a worktree's HEAD and refs
    // live where `git rev-parse --git-path` says, not necessarily under ./.git).
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Unix seconds as Prometheus' build date (`20060102-15:04:05`, UTC).
fn build_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

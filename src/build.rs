//! Which build this is, as the Prometheus tools say it: version, revision, branch, build user
//! and date, toolchain and platform (stamped by `build.rs`). Read by `--version`,
//! `depin_orcha_build_info` and `/api/v1/status/buildinfo`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built, or what the release script or `docker build` passed; `unknown`
/// from a source tree without git.
pub const REVISION: &str = env!("DEPIN_ORCHA_REVISION");
pub const BRANCH: &str = env!("DEPIN_ORCHA_BRANCH");
pub const BUILD_USER: &str = env!("DEPIN_ORCHA_BUILD_USER");
/// UTC, `20060102-15:04:05` as Prometheus writes it.
pub const BUILD_DATE: &str = env!("DEPIN_ORCHA_BUILD_DATE");
/// `rustc --version` of the compiler that built the binary (where Prometheus has `go version`).
pub const RUSTC_VERSION: &str = env!("DEPIN_ORCHA_RUSTC_VERSION");
/// The target triple (Prometheus' `platform`).
pub const TARGET: &str = env!("DEPIN_ORCHA_TARGET");

/// `--version`, laid out as `prometheus --version` does (clap prints the name before it).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("DEPIN_ORCHA_BRANCH"),
    ", revision: ",
    env!("DEPIN_ORCHA_REVISION"),
    ")\n  build user:       ",
    env!("DEPIN_ORCHA_BUILD_USER"),
    "\n  build date:       ",
    env!("DEPIN_ORCHA_BUILD_DATE"),
    "\n  rust version:     ",
    env!("DEPIN_ORCHA_RUSTC_VERSION"),
    "\n  platform:         ",
    env!("DEPIN_ORCHA_TARGET"),
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_identity_is_stamped() {
        for (what, v) in [
            ("revision", super::REVISION),
            ("branch", super::BRANCH),
            ("build user", super::BUILD_USER),
            ("toolchain", super::RUSTC_VERSION),
        ] {
            assert!(!v.is_empty(), "{what} is empty");
        }
        assert!(
            super::RUSTC_VERSION.starts_with("rustc "),
            "{}",
            super::RUSTC_VERSION
        );
        let d = super::BUILD_DATE;
        assert_eq!(d.len(), 17, "{d}");
        assert_eq!(&d[8..9], "-", "{d}");
    }
}

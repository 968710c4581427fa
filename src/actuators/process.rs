//! The process runner every command-driven actuator shares (`exec`, `golem_profile`,
//! `storj_config`'s restart, `systemd`): one argv, no shell in between, no stdin, a timeout that
//! kills the child, and an error that carries the exit status and the end of stdout and stderr
//! so the operator sees what the tool said. It owns nothing else: what to run is the caller's.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::ActuatorError;

/// Bytes of stdout and of stderr kept for the error message (the end, where tools say why).
pub const OUTPUT_TAIL_BYTES: usize = 2048;

/// One command: `argv[0]` is the program; `env` is added to the inherited environment.
#[derive(Clone, Debug)]
pub struct Command<'a> {
    pub argv: &'a [String],
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

/// Runs `cmd` for `node`'s `action`; returns its stdout (lossy UTF-8) when it exits 0.
pub async fn run(
    node: &str,
    action: &'static str,
    cmd: Command<'_>,
) -> Result<String, ActuatorError> {
    let fail = |detail: String| ActuatorError::failed(node, action, detail);
    let Some((program, args)) = cmd.argv.split_first() else {
        return Err(fail("empty command".into()));
    };
    let mut c = tokio::process::Command::new(program);
    c.args(args);
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The timeout drops the future: the child must not outlive it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start {program:?}: {e}")))?;
    let out = match tokio::time::timeout(cmd.timeout, child.wait_with_output()).await {
        Err(_) => {
            return Err(ActuatorError::Timeout {
                node: node.to_string(),
                action,
                timeout: cmd.timeout,
            })
        }
        Ok(Err(e)) => return Err(fail(format!("waiting for {program:?}: {e}"))),
        Ok(Ok(o)) => o,
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    Err(fail(format!(
        "{} {}: {status}; stdout: {:?}; stderr: {:?}",
        program,
        args.join(" "),
        tail(&out.stdout),
        tail(&out.stderr)
    )))
}

/// Runs `argv` with the inherited environment only (the tools the real actuators run).
pub async fn run_plain(
    node: &str,
    action: &'static str,
    argv: &[String],
    timeout: Duration,
) -> Result<String, ActuatorError> {
    run(
        node,
        action,
        Command {
            argv,
            env: Vec::new(),
            timeout,
        },
    )
    .await
}

/// The last [`OUTPUT_TAIL_BYTES`] of a command's output, trimmed, as text.
pub fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// Whether `program` can be started: a path that is an executable file, or a name found in
/// `PATH`.
pub fn find_program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return if executable(Path::new(program)) {
            Ok(())
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err(format!("{program} is not found in PATH"))
    }
}

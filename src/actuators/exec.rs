//! Actuator kind `exec`: runs a command given as an argv template, with no shell in between
//! (a value never becomes shell syntax), to apply an allocation, and another (or the same) to
//! undo it; verification polls the node's adapter. Placeholders: `{node}`, `{cpu_cores}`,
//! `{memory_bytes}`, `{memory_gib}`, `{disk_bytes}`, `{disk_gib}`,
//! `{bandwidth_bytes_per_second}`; `{{` and `}}` stand for literal braces. Byte counts are
//! whole numbers, GiB have up to three decimals, cores are trimmed (`2`, `2.5`).
//!
//! A non-zero exit status, a signal or the timeout is a failure; the error carries the exit
//! status and the end of stdout and stderr, so the operator sees what the tool said.
//!
//! ```yaml
//! actuator:
//!   kind: exec
//!   exec:
//!     apply: [ya-provider, profile, update, --name, default, --cpu-threads, "{cpu_cores}", --mem-gib, "{memory_gib}"]
//!     undo:  [ya-provider, profile, update, --name, default, --cpu-threads, "{cpu_cores}", --mem-gib, "{memory_gib}"]  # optional: apply's template, filled with the previous allocation
//!     check: [ya-provider, profile, active]   # optional: run in pre-flight, must exit 0
//!     timeout: 30s
//! ```

use std::sync::Arc;
use std::time::Duration;

use super::process::{self, find_program};
use super::{verify_by_polling, ActFuture, Actuator, ActuatorError, VerifySpec};
use crate::adapters::Adapter;
use crate::resources::Allocation;
use crate::schema::units;

/// The default time a command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of stdout and of stderr kept for the error message (the end, where tools say why).
pub use super::process::OUTPUT_TAIL_BYTES;

/// One placeholder of an argv template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    Node,
    CpuCores,
    MemoryBytes,
    MemoryGib,
    DiskBytes,
    DiskGib,
    BandwidthBytesPerSecond,
}

impl Placeholder {
    pub const ALL: [(&'static str, Placeholder); 7] = [
        ("node", Placeholder::Node),
        ("cpu_cores", Placeholder::CpuCores),
        ("memory_bytes", Placeholder::MemoryBytes),
        ("memory_gib", Placeholder::MemoryGib),
        ("disk_bytes", Placeholder::DiskBytes),
        ("disk_gib", Placeholder::DiskGib),
        (
            "bandwidth_bytes_per_second",
            Placeholder::BandwidthBytesPerSecond,
        ),
    ];

    fn value(self, node: &str, a: &Allocation) -> String {
        const GIB: f64 = 1073741824.0;
        let whole = |v: f64| format!("{:.0}", v.round());
        match self {
            Placeholder::Node => node.to_string(),
            Placeholder::CpuCores => units::trim_float(a.cpu_cores),
            Placeholder::MemoryBytes => whole(a.memory_bytes),
            Placeholder::MemoryGib => units::trim_float(a.memory_bytes / GIB),
            Placeholder::DiskBytes => whole(a.disk_bytes),
            Placeholder::DiskGib => units::trim_float(a.disk_bytes / GIB),
            Placeholder::BandwidthBytesPerSecond => whole(a.bandwidth_bytes_per_second),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Ph(Placeholder),
}

/// An argv whose elements may hold placeholders; the first element is the program.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgvTemplate(Vec<Vec<Part>>);

impl ArgvTemplate {
    /// Parses a list of strings; the error names the element and the problem.
    pub fn parse(args: &[String]) -> Result<ArgvTemplate, (usize, String)> {
        if args.is_empty() {
            return Err((0, "must name at least the program to run".into()));
        }
        let mut out = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            out.push(parse_arg(a).map_err(|e| (i, e))?);
        }
        if out[0].iter().any(|p| matches!(p, Part::Ph(_))) || args[0].is_empty() {
            return Err((
                0,
                "the program must be a fixed name or path, without placeholders".into(),
            ));
        }
        Ok(ArgvTemplate(out))
    }

    /// The argv for `node` at allocation `a`.
    pub fn render(&self, node: &str, a: &Allocation) -> Vec<String> {
        self.0
            .iter()
            .map(|parts| {
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(s) => s.clone(),
                        Part::Ph(ph) => ph.value(node, a),
                    })
                    .collect()
            })
            .collect()
    }

    fn program(&self) -> String {
        self.render("", &Allocation::default())
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

fn parse_arg(a: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = a.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed placeholder \"{{{name}\" in {a:?}")),
                    }
                }
                let Some((_, ph)) = Placeholder::ALL.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<String> = Placeholder::ALL
                        .iter()
                        .map(|(n, _)| format!("{{{n}}}"))
                        .collect();
                    return Err(format!(
                        "unknown placeholder \"{{{name}}}\"; expected one of {} (write {{{{ for a literal brace)",
                        known.join(", ")
                    ));
                };
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Ph(*ph));
            }
            '}' => {
                return Err(format!(
                    "stray \"}}\" in {a:?} (write }}}} for a literal brace)"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// The validated `exec:` block.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecSpec {
    pub apply: ArgvTemplate,
    /// Filled with the previous allocation; `None`: the apply template is used for undo.
    pub undo: Option<ArgvTemplate>,
    /// Run in pre-flight; must exit 0. `None`: pre-flight checks the program can be found.
    pub check: Option<ArgvTemplate>,
    pub timeout: Duration,
}

impl ExecSpec {
    /// From the optimization rules' `actuator: {kind: exec, command: [...]}`: the command is
    /// the apply template (placeholders allowed, the values are in the environment as well)
    /// and, filled with the previous allocation, the undo.
    pub fn from_command(command: &[String]) -> Result<ExecSpec, String> {
        let apply =
            ArgvTemplate::parse(command).map_err(|(i, e)| format!("actuator.command[{i}]: {e}"))?;
        Ok(ExecSpec {
            apply,
            undo: None,
            check: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

pub struct ExecActuator {
    spec: ExecSpec,
    adapter: Arc<dyn Adapter>,
    verify: VerifySpec,
}

impl ExecActuator {
    pub fn new(spec: ExecSpec, adapter: Arc<dyn Adapter>, verify: VerifySpec) -> ExecActuator {
        ExecActuator {
            spec,
            adapter,
            verify,
        }
    }

    async fn run(
        &self,
        node: &str,
        action: &'static str,
        argv: Vec<String>,
        allocation: Option<&Allocation>,
    ) -> Result<(), ActuatorError> {
        let mut env = vec![
            ("DEPIN_NODE", node.to_string()),
            ("DEPIN_ACTION", action.to_string()),
        ];
        // The same values in the environment, for scripts that prefer it to placeholders.
        if let Some(a) = allocation {
            for (name, ph) in [
                ("DEPIN_CPU_CORES", Placeholder::CpuCores),
                ("DEPIN_MEMORY_BYTES", Placeholder::MemoryBytes),
                ("DEPIN_MEMORY_GIB", Placeholder::MemoryGib),
                ("DEPIN_DISK_BYTES", Placeholder::DiskBytes),
                ("DEPIN_DISK_GIB", Placeholder::DiskGib),
                (
                    "DEPIN_BANDWIDTH_BYTES_PER_SECOND",
                    Placeholder::BandwidthBytesPerSecond,
                ),
            ] {
                env.push((name, ph.value(node, a)));
            }
        }
        let cmd = process::Command {
            argv: &argv,
            env,
            timeout: self.spec.timeout,
        };
        process::run(node, action, cmd).await.map(|_| ())
    }
}

impl Actuator for ExecActuator {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn check<'a>(&'a self, node: &'a str) -> ActFuture<'a> {
        Box::pin(async move {
            let unreachable = |detail: String| ActuatorError::unreachable(node, "exec", detail);
            for t in [Some(&self.spec.apply), self.spec.undo.as_ref()]
                .into_iter()
                .flatten()
            {
                find_program(&t.program()).map_err(unreachable)?;
            }
            if let Some(c) = &self.spec.check {
                let argv = c.render(node, &Allocation::default());
                self.run(node, "check", argv, None)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn apply<'a>(&'a self, node: &'a str, to: &'a Allocation) -> ActFuture<'a> {
        Box::pin(self.run(node, "apply", self.spec.apply.render(node, to), Some(to)))
    }

    fn verify<'a>(&'a self, node: &'a str, expected: &'a Allocation) -> ActFuture<'a> {
        Box::pin(verify_by_polling(
            self.adapter.as_ref(),
            node,
            expected,
            &self.verify,
        ))
    }

    fn undo<'a>(&'a self, node: &'a str, previous: &'a Allocation) -> ActFuture<'a> {
        let t = self.spec.undo.as_ref().unwrap_or(&self.spec.apply);
        Box::pin(self.run(node, "undo", t.render(node, previous), Some(previous)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{Observation, PollFuture};

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const A: Allocation = Allocation {
        cpu_cores: 2.5,
        memory_bytes: 6.0 * 1073741824.0,
        disk_bytes: 500e9,
        bandwidth_bytes_per_second: 12.5e6,
    };

    #[test]
    fn placeholders_are_filled_without_a_shell() {
        let t = ArgvTemplate::parse(&argv(&[
            "ya-provider",
            "--cpu-threads={cpu_cores}",
            "{memory_gib}",
            "{memory_bytes}",
            "{disk_gib}GiB",
            "{disk_bytes}",
            "{bandwidth_bytes_per_second}",
            "{node}; rm -rf /",
            "{{literal}}",
        ]))
        .unwrap();
        assert_eq!(
            t.render("golem-1", &A),
            argv(&[
                "ya-provider",
                "--cpu-threads=2.5",
                "6",
                "6442450944",
                "465.661GiB",
                "500000000000",
                "12500000",
                "golem-1; rm -rf /",
                "{literal}",
            ])
        );
    }

    #[test]
    fn template_errors_name_the_element() {
        assert_eq!(
            ArgvTemplate::parse(&argv(&["x", "{cpu}"])).unwrap_err().0,
            1
        );
        assert!(ArgvTemplate::parse(&argv(&["x", "{cpu}"]))
            .unwrap_err()
            .1
            .starts_with("unknown placeholder \"{cpu}\"; expected one of {node}"));
        assert!(ArgvTemplate::parse(&argv(&["{node}"])).is_err());
        assert!(ArgvTemplate::parse(&[]).is_err());
        assert!(ArgvTemplate::parse(&argv(&["x", "{node"])).is_err());
    }

    /// An adapter that reports a fixed allocation.
    struct Fixed(Allocation);
    impl Adapter for Fixed {
        fn name(&self) -> &str {
            "n"
        }
        fn protocol(&self) -> &str {
            "test"
        }
        fn poll(&self) -> PollFuture<'_> {
            let o = Observation {
                allocation: self.0.map(|_, v| Some(v)),
                ..Default::default()
            };
            Box::pin(std::future::ready(Ok(o)))
        }
    }

    fn actuator(apply: &[&str], timeout: Duration) -> ExecActuator {
        ExecActuator::new(
            ExecSpec {
                apply: ArgvTemplate::parse(&argv(apply)).unwrap(),
                undo: None,
                check: None,
                timeout,
            },
            Arc::new(Fixed(A)),
            VerifySpec::default(),
        )
    }

    #[tokio::test]
    async fn a_failing_command_reports_status_and_output() {
        let a = actuator(
            &["sh", "-c", "echo told {cpu_cores}; echo bad >&2; exit 3"],
            DEFAULT_TIMEOUT,
        );
        let e = a.apply("n", &A).await.unwrap_err().to_string();
        assert!(e.contains("exit status 3"), "{e}");
        assert!(e.contains("stdout: \"told 2.5\""), "{e}");
        assert!(e.contains("stderr: \"bad\""), "{e}");
        let env = actuator(
            &["sh", "-c", "test \"$DEPIN_NODE $DEPIN_ACTION $DEPIN_CPU_CORES $DEPIN_MEMORY_GIB\" = \"n apply 2.5 6\""],
            DEFAULT_TIMEOUT,
        );
        env.apply("n", &A).await.unwrap();
        let ok = actuator(&["true"], DEFAULT_TIMEOUT);
        ok.apply("n", &A).await.unwrap();
        ok.verify("n", &A).await.unwrap();
        ok.check("n").await.unwrap();
    }

    #[tokio::test]
    async fn a_slow_command_is_cut_at_the_timeout() {
        let a = actuator(&["sleep", "5"], Duration::from_millis(100));
        let t = std::time::Instant::now();
        let e = a.apply("n", &A).await.unwrap_err();
        assert!(matches!(e, ActuatorError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn check_finds_missing_programs() {
        let a = actuator(&["/nonexistent/ya-provider"], DEFAULT_TIMEOUT);
        let e = a.check("n").await.unwrap_err().to_string();
        assert!(e.contains("is not an executable file"), "{e}");
        let a = actuator(&["no-such-program-depin"], DEFAULT_TIMEOUT);
        assert!(a.check("n").await.is_err());
    }
}

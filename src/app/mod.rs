//! The composition root: the one place that assembles the program's parts into a running
//! whole. `run` builds an [`App`] from the config and its flags and serves until a shutdown
//! signal; `plan` assembles the controller for one plan ([`controller::plan_command`]);
//! `simulate` steps the same parts around simulated nodes on a virtual clock
//! ([`stepped::SteppedApp`]). Nothing below this module wires parts together.
//!
//! - `run`: [`App`]: storage, metrics, coordinator, rules, notifier, controller, events, remote
//!   write and the server; the tasks they run and the one order in which they stop.
//! - `controller`: the controller with its planner, history and API, and `plan`.
//! - `stepped`: the same parts on a virtual clock, stepped by `simulate`'s driver.
//! - `sizes`: the gauges of what grows by design (stored history, query cache, event ring).

pub mod controller;
pub mod run;
pub mod sizes;
pub mod stepped;

pub use run::{App, RunOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the program could not start: what it was doing and the error that stopped it, its
/// chain printed by the caller as `anyhow` prints a context (`doing X: because Y: because Z`).
#[derive(Debug)]
pub struct AppError(Repr);

#[derive(Debug)]
enum Repr {
    Context {
        context: String,
        source: Option<BoxError>,
    },
    /// An error that already says what failed.
    Transparent(BoxError),
}

impl AppError {
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> AppError {
        AppError(Repr::Context {
            context: context.into(),
            source: Some(source.into()),
        })
    }

    /// An error that is its own message.
    pub fn message(text: impl Into<String>) -> AppError {
        AppError(Repr::Context {
            context: text.into(),
            source: None,
        })
    }

    /// An error that already names what failed, passed on as it is.
    pub fn from_error(e: impl Into<BoxError>) -> AppError {
        AppError(Repr::Transparent(e.into()))
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Context { context, .. } => f.write_str(context),
            Repr::Transparent(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Repr::Context { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            Repr::Transparent(e) => e.source(),
        }
    }
}

/// Adds what was being done to an error, as `anyhow::Context` would, for the assembly code.
pub(crate) trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, AppError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Context<T> for Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T, AppError> {
        self.map_err(|e| AppError::new(what, e))
    }
}

//! Reloading the optimization rules file while `run` runs: on SIGHUP, on `POST /-/reload` and
//! when the file's content changes, as for the alerting and recording rule files. The new file
//! is validated whole and the actuators are rebuilt from it; only when that succeeds does the
//! controller get the new rules, between two rounds ([`Controller::replace_rules`]). A file
//! that does not load leaves the old rules running, logs every error with its position, and
//! sets `depin_optimization_rules_last_reload_successful` to 0 (the shipped
//! `DepinRulesReloadFailed` alert watches it).
//!
//! The node list comes from the config, which is not reloaded (as in Prometheus, where a rule
//! reload does not change the scrape targets): a reload changes estimators, responses, bounds,
//! gates, resources, the interval and the actuators of the configured nodes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Gauge, Registry};
use tokio::sync::watch;

use super::controller::Controller;
use super::nodes::controlled_nodes;
use crate::adapters::Adapter;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::optimizer;

/// Re-reads one optimization rules file into one controller.
pub struct OptimizationReloader {
    path: PathBuf,
    config: Config,
    adapters: Vec<Arc<dyn Adapter>>,
    controller: Arc<Controller>,
    clock: SharedClock,
    /// The bytes of the file last read (loaded or not), to notice a change of content.
    last_read: Mutex<Option<Vec<u8>>>,
    last_error: Mutex<Option<String>>,
    successful: Gauge,
    success_time: Gauge,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OptimizationReloader {
    /// A reloader for the rules the controller was started with, read from `path`.
    pub fn new(
        path: PathBuf,
        config: Config,
        adapters: Vec<Arc<dyn Adapter>>,
        controller: Arc<Controller>,
        clock: SharedClock,
        registry: &Registry,
    ) -> Result<OptimizationReloader, prometheus::Error> {
        let successful = Gauge::new(
            "depin_optimization_rules_last_reload_successful",
            "Whether the last load of the optimization rules file succeeded (1) or kept the old rules (0).",
        )?;
        let success_time = Gauge::new(
            "depin_optimization_rules_last_reload_success_timestamp_seconds",
            "When the optimization rules file last loaded successfully (Unix seconds).",
        )?;
        registry.register(Box::new(successful.clone()))?;
        registry.register(Box::new(success_time.clone()))?;
        // The controller was built from this file a moment ago: that was the first success.
        successful.set(1.0);
        success_time.set(clock.now_ms() as f64 / 1000.0);
        let last_read = std::fs::read(&path).ok();
        Ok(OptimizationReloader {
            path,
            config,
            adapters,
            controller,
            clock,
            last_read: Mutex::new(last_read),
            last_error: Mutex::new(None),
            successful,
            success_time,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The error of the last reload, None after a success.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Reads, validates and puts the file in force; on any error the old rules stay.
    pub fn reload(&self) -> Result<(), String> {
        let bytes = std::fs::read(&self.path);
        *lock(&self.last_read) = bytes.as_ref().ok().cloned();
        let result = bytes
            .map_err(|e| format!("{}: cannot read the rules file: {e}", self.path.display()))
            .and_then(|b| {
                let text = String::from_utf8(b)
                    .map_err(|e| format!("{}: not UTF-8: {e}", self.path.display()))?;
                optimizer::parse_str(&text, &self.path.display().to_string())
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(rules) => {
                for w in &rules.warnings {
                    tracing::warn!(file = %self.path.display(), warning = %w, "optimization rules");
                }
                let (nodes, warnings) = controlled_nodes(&self.config, &rules, &self.adapters);
                for w in &warnings {
                    tracing::warn!(warning = %w, "reallocation");
                }
                self.controller.replace_rules(rules, nodes);
                self.successful.set(1.0);
                self.success_time.set(self.clock.now_ms() as f64 / 1000.0);
                *lock(&self.last_error) = None;
                tracing::info!(file = %self.path.display(), "optimization rules reloaded");
                Ok(())
            }
            Err(e) => {
                self.successful.set(0.0);
                *lock(&self.last_error) = Some(e.clone());
                tracing::error!(file = %self.path.display(), error = %e, "reloading the optimization rules failed; the old rules stay in force");
                Err(e)
            }
        }
    }

    /// Whether the file's content differs from what was last read (a file that vanished or
    /// cannot be read counts as changed once, so the failure shows).
    pub fn changed(&self) -> bool {
        let now = std::fs::read(&self.path).ok();
        *lock(&self.last_read) != now
    }

    /// Reloads whenever the file changes, looking every `every`, until `shutdown`.
    pub async fn watch(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if me.changed() {
                    tracing::info!(file = %me.path.display(), "the optimization rules file changed; reloading");
                    let _ = me.reload();
                }
            })
            .await;
        }
    }
}

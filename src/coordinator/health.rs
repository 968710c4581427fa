//! What is known about each node's health (up, last success, failures, the last error, the
//! node's own complaint) and the readiness signal: every node polled at least once.

use std::collections::BTreeMap;
use std::sync::RwLock;

use tokio::sync::watch;

/// Why the last poll failed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LastError {
    /// The `reason` label: timeout, refused, http_status, parse, io, other.
    pub reason: String,
    pub message: String,
}

/// What the coordinator knows about one node's health (serializes for a health API).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NodeHealth {
    pub name: String,
    pub protocol: String,
    /// Whether the last poll succeeded (false before the first poll).
    pub up: bool,
    /// Whether the node has been polled at least once, with success or not.
    pub polled: bool,
    /// Clock time of the last successful poll, milliseconds since the epoch.
    pub last_success_ms: Option<i64>,
    pub consecutive_failures: u32,
    /// The last error, while down.
    pub last_error: Option<LastError>,
    /// The node's own complaint while it answers (suspended, disqualified, …).
    pub degraded: Option<String>,
}

/// Health of all nodes and the readiness signal (every node polled at least once).
pub struct HealthBoard {
    nodes: RwLock<BTreeMap<String, NodeHealth>>,
    ready: watch::Sender<bool>,
}

impl HealthBoard {
    /// Every node unpolled, from its (name, protocol).
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a str)>) -> HealthBoard {
        let map: BTreeMap<String, NodeHealth> = nodes
            .into_iter()
            .map(|(name, protocol)| {
                let h = NodeHealth {
                    name: name.to_string(),
                    protocol: protocol.to_string(),
                    up: false,
                    polled: false,
                    last_success_ms: None,
                    consecutive_failures: 0,
                    last_error: None,
                    degraded: None,
                };
                (h.name.clone(), h)
            })
            .collect();
        let (ready, _) = watch::channel(map.is_empty());
        HealthBoard {
            nodes: RwLock::new(map),
            ready,
        }
    }

    /// All nodes, sorted by name.
    pub fn snapshot(&self) -> Vec<NodeHealth> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<NodeHealth> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// True once every node has been polled at least once.
    pub fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until [`HealthBoard::ready`].
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in self, so the channel cannot close while we wait.
        let _ = rx.wait_for(|r| *r).await;
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut NodeHealth)) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = nodes.get_mut(name) {
            f(h);
        }
        if !*self.ready.borrow() && nodes.values().all(|h| h.polled) {
            self.ready.send_replace(true);
        }
    }
}

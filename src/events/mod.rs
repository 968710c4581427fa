//! The live event bus and `GET /api/v1/events` (Server-Sent Events).
//!
//! [`Bus`] numbers every event (`id`, monotonic within a process), keeps the newest
//! [`DEFAULT_RING_CAPACITY`] in a ring buffer for `Last-Event-ID` resumption, and fans them out
//! over a tokio broadcast channel. Publishing never blocks and never waits for a client: a
//! client that falls more than its queue behind is lagged by the channel and disconnected (it
//! may reconnect with `Last-Event-ID` and gets the rest from the ring, or an `event: gap`).
//!
//! Where events come from: [`watch`] observes the coordinator's [`HealthBoard`], the rule
//! manager's alerts and reloads, and the reallocation history file from outside, on a short
//! tick, so no loop of theirs carries a hook or waits for us. It owns nothing else.

pub mod sse;
pub mod watch;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

pub use sse::EventsApi;

/// Events kept for `Last-Event-ID` resumption (the documented bound of the event history).
pub const DEFAULT_RING_CAPACITY: usize = 10_000;
/// Events one client may fall behind before it is disconnected.
pub const DEFAULT_CLIENT_QUEUE: usize = 1_024;

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: u64,
    /// The SSE `event:` field: `poll`, `node_down`, `node_up`, `alert`, `plan`,
    /// `reallocation_step`, `reallocation_outcome`, `reallocation_realized`, `controller`,
    /// `rule_reload`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Clock time of the event, ms since the epoch.
    pub t_ms: i64,
    pub data: serde_json::Value,
}

impl Event {
    /// The SSE frame: `id`, `event`, `data` (one line of JSON, which has no raw newlines).
    pub fn to_sse(&self) -> String {
        let mut data = self.data.clone();
        if let serde_json::Value::Object(m) = &mut data {
            m.insert("t_ms".into(), self.t_ms.into());
        }
        format!("id: {}\nevent: {}\ndata: {}\n\n", self.id, self.kind, data)
    }
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    next_id: u64,
}

/// The bus. Cheap to clone; all clones share one ring and one channel.
#[derive(Clone)]
pub struct Bus {
    ring: Arc<Mutex<Ring>>,
    capacity: usize,
    tx: broadcast::Sender<Arc<Event>>,
}

/// What a new subscriber gets: the events it missed, or a gap, and the live receiver.
pub struct Subscription {
    /// `Some((last_event_id, oldest_available_id))` when the ring no longer holds everything
    /// after the client's `Last-Event-ID`.
    pub gap: Option<(u64, u64)>,
    /// Events after `Last-Event-ID` still in the ring, oldest first.
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(DEFAULT_RING_CAPACITY, DEFAULT_CLIENT_QUEUE)
    }
}

impl Bus {
    /// A bus keeping `ring_capacity` events; a client lagging `client_queue` events is dropped.
    pub fn new(ring_capacity: usize, client_queue: usize) -> Bus {
        let (tx, _) = broadcast::channel(client_queue.max(1));
        Bus {
            ring: Arc::new(Mutex::new(Ring {
                events: VecDeque::with_capacity(ring_capacity.min(1024)),
                next_id: 1,
            })),
            capacity: ring_capacity.max(1),
            tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event and returns its id. Never blocks on clients.
    pub fn publish(&self, kind: &str, t_ms: i64, data: serde_json::Value) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        ring.next_id += 1;
        let ev = Arc::new(Event {
            id,
            kind: kind.to_string(),
            t_ms,
            data,
        });
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(ev.clone());
        // Sent under the ring lock, so a subscriber that took the ring's backlog under the same
        // lock sees every later event exactly once. No receivers is not an error here.
        let _ = self.tx.send(ev);
        id
    }

    /// Subscribes, resuming after `last_event_id` when given.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Subscription {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        let newest = ring.next_id - 1;
        let oldest = ring.events.front().map(|e| e.id).unwrap_or(ring.next_id);
        let (gap, backlog) = match last_event_id {
            None => (None, Vec::new()),
            // An id from the future is from an earlier life of the process: all may be missed.
            Some(last) if last > newest => {
                (Some((last, oldest)), ring.events.iter().cloned().collect())
            }
            Some(last) => {
                let gap = (last + 1 < oldest).then_some((last, oldest));
                let backlog = ring
                    .events
                    .iter()
                    .filter(|e| e.id > last)
                    .cloned()
                    .collect();
                (gap, backlog)
            }
        };
        Subscription { gap, backlog, rx }
    }

    /// The newest id published (0 before the first event).
    pub fn last_id(&self) -> u64 {
        self.lock().next_id - 1
    }

    /// Events held in the ring.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_monotonic_and_the_ring_is_bounded() {
        let bus = Bus::new(3, 8);
        for i in 0..5 {
            assert_eq!(bus.publish("poll", i, json!({"i": i})), i as u64 + 1);
        }
        assert_eq!(bus.len(), 3);
        assert_eq!(bus.last_id(), 5);
        let s = bus.subscribe(Some(3));
        assert_eq!(s.gap, None);
        assert_eq!(
            s.backlog.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 5]
        );
        // Ids 2 (and 1) have left the ring: a gap, then everything held.
        let s = bus.subscribe(Some(1));
        assert_eq!(s.gap, Some((1, 3)));
        assert_eq!(
            s.backlog.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        // No Last-Event-ID: live events only.
        assert!(bus.subscribe(None).backlog.is_empty());
        // An id from an earlier process.
        assert_eq!(bus.subscribe(Some(99)).gap, Some((99, 3)));
    }

    #[test]
    fn a_subscriber_sees_later_events_once() {
        let bus = Bus::new(10, 8);
        bus.publish("a", 0, json!({}));
        let mut s = bus.subscribe(Some(0));
        bus.publish("b", 1, json!({}));
        assert_eq!(s.backlog.len(), 1);
        let live = s.rx.try_recv().map(|e| e.id).ok();
        assert_eq!(live, Some(2));
        assert!(s.rx.try_recv().is_err());
    }

    #[test]
    fn a_lagging_subscriber_is_told_and_the_publisher_never_waits() {
        let bus = Bus::new(100, 4);
        let mut s = bus.subscribe(None);
        for i in 0..50 {
            bus.publish("poll", i, json!({}));
        }
        assert!(matches!(
            s.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn sse_frames_carry_id_type_and_one_line_of_json() {
        let e = Event {
            id: 7,
            kind: "alert".into(),
            t_ms: 5,
            data: json!({"state": "firing", "text": "a\nb"}),
        };
        assert_eq!(
            e.to_sse(),
            "id: 7\nevent: alert\ndata: {\"state\":\"firing\",\"t_ms\":5,\"text\":\"a\\nb\"}\n\n"
        );
    }
}

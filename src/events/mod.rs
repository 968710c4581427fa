//! The live event bus and `GET /api/v1/events` (Server-Sent Events).
//!
//! [`Bus`] numbers every event (`id`, monotonic within a process), keeps the newest
//! [`DEFAULT_RING_CAPACITY`] (at most [`DEFAULT_RING_BYTES`] of them) in a ring buffer for
//! `Last-Event-ID` resumption, and fans them out
//! over a tokio broadcast channel. Publishing never blocks and never waits for a client: a
//! client that falls more than its queue behind is lagged by the channel and disconnected (it
//! may reconnect with `Last-Event-ID` and gets the rest from the ring, or an `event: gap`).
//!
//! Where events come from: [`watch`] observes the coordinator's [`HealthBoard`], the rule
//! manager's alerts and reloads, and the reallocation history file from outside, on a short
//! tick, so no loop of theirs carries a hook or waits for us. It owns nothing else.

pub mod watch;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Events kept for `Last-Event-ID` resumption (the documented bound of the event history).
pub const DEFAULT_RING_CAPACITY: usize = 10_000;
/// Bytes of SSE frames the ring holds at most: the oldest events leave first when a burst of
/// large ones (alerts with long annotations) would pass it. 10,000 poll events take about
/// 2.5 MB, so the count is the usual bound; this one keeps the footprint known whatever comes.
pub const DEFAULT_RING_BYTES: usize = 4 << 20;
/// Events one client may fall behind before it is disconnected.
pub const DEFAULT_CLIENT_QUEUE: usize = 1_024;

/// One event, held as the SSE frame it is sent as: rendered once when published, so the ring
/// stores one string per event rather than a tree of JSON values (about a quarter of the
/// memory), and every client is sent the same bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: u64,
    /// The SSE `event:` field: `poll`, `node_down`, `node_up`, `alert`, `plan`,
    /// `reallocation_step`, `reallocation_outcome`, `reallocation_realized`, `controller`,
    /// `rule_reload`.
    pub kind: String,
    /// Clock time of the event, ms since the epoch.
    pub t_ms: i64,
    /// `id`, `event`, `data` (one line of JSON, which has no raw newlines, with `t_ms` added
    /// to an object), and the blank line that ends the frame.
    frame: bytes::Bytes,
}

impl Event {
    pub fn new(id: u64, kind: &str, t_ms: i64, mut data: serde_json::Value) -> Event {
        if let serde_json::Value::Object(m) = &mut data {
            m.insert("t_ms".into(), t_ms.into());
        }
        let frame = format!("id: {id}\nevent: {kind}\ndata: {data}\n\n").into();
        Event {
            id,
            kind: kind.to_string(),
            t_ms,
            frame,
        }
    }

    /// The SSE frame (shared, not copied: every client sends the same bytes).
    pub fn to_sse(&self) -> bytes::Bytes {
        self.frame.clone()
    }

    /// The event's JSON data (with `t_ms`), parsed back from the frame (for tests: the server
    /// only ever sends the frame).
    #[cfg(test)]
    pub fn data(&self) -> serde_json::Value {
        let line = std::str::from_utf8(&self.frame)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or("null");
        serde_json::from_str(line).unwrap_or(serde_json::Value::Null)
    }

    /// Heap and inline bytes this event takes in the ring.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Event>() + self.kind.capacity() + self.frame.len()
    }
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Σ [`Event::bytes`] over `events`.
    bytes: usize,
    next_id: u64,
}

/// The bus. Cheap to clone; all clones share one ring and one channel.
#[derive(Clone)]
pub struct Bus {
    ring: Arc<Mutex<Ring>>,
    capacity: usize,
    max_bytes: usize,
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
                bytes: 0,
                next_id: 1,
            })),
            capacity: ring_capacity.max(1),
            max_bytes: DEFAULT_RING_BYTES,
            tx,
        }
    }

    /// A different byte bound for the ring (the newest event is always kept).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Bus {
        self.max_bytes = max_bytes;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event and returns its id. Never blocks on clients.
    pub fn publish(&self, kind: &str, t_ms: i64, data: serde_json::Value) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        ring.next_id += 1;
        let ev = Arc::new(Event::new(id, kind, t_ms, data));
        ring.bytes += ev.bytes();
        ring.events.push_back(ev.clone());
        while ring.events.len() > self.capacity
            || (ring.bytes > self.max_bytes && ring.events.len() > 1)
        {
            if let Some(old) = ring.events.pop_front() {
                ring.bytes -= old.bytes();
            }
        }
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

    /// Bytes the ring's events take (`depin_events_buffered_bytes`).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
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
        let e = Event::new(7, "alert", 5, json!({"state": "firing", "text": "a\nb"}));
        assert_eq!(
            &e.to_sse()[..],
            b"id: 7\nevent: alert\ndata: {\"state\":\"firing\",\"t_ms\":5,\"text\":\"a\\nb\"}\n\n"
        );
        assert_eq!(e.data()["text"], "a\nb");
        assert_eq!(e.data()["t_ms"], 5);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_too() {
        let bus = Bus::new(1_000, 8).with_max_bytes(10_000);
        let big = "x".repeat(1_000);
        for i in 0..100 {
            bus.publish("alert", i, json!({ "text": big }));
        }
        // Each event takes a little over 1 kB: about nine fit, and the count says what is held.
        let held = bus.len();
        assert!((5..10).contains(&held), "{held} events held");
        assert!(bus.bytes() <= 10_000, "{} bytes", bus.bytes());
        let s = bus.subscribe(Some(90));
        assert_eq!(s.backlog.last().map(|e| e.id), Some(100));
        assert_eq!(s.gap, Some((90, 101 - held as u64)));
        // One event larger than the bound is still kept: the newest is never dropped.
        let bus = Bus::new(10, 8).with_max_bytes(10);
        bus.publish("alert", 0, json!({ "text": big }));
        assert_eq!(bus.len(), 1);
        // The count bound holds as before, and the bytes follow what is held.
        let bus = Bus::new(3, 8);
        for i in 0..10 {
            bus.publish("poll", i, json!({}));
        }
        assert_eq!(bus.len(), 3);
        let one = Event::new(10, "poll", 9, json!({})).bytes();
        assert!(
            bus.bytes() >= 3 * (one - 2) && bus.bytes() <= 3 * one,
            "{}",
            bus.bytes()
        );
    }
}

//! The open connections and who gets one when they run out (`--web.max-connections`).
//!
//! A connection is either serving a request (busy: from its headers until its response's body
//! has been sent, a stream's whole life) or waiting for one (an idle keep-alive connection, or a
//! new one still sending its headers). Waiting costs the server a socket and a small buffer, but
//! a client can hold it on purpose (slowloris), so when every connection is taken a new client
//! takes the place of the one that has waited longest, once it has waited at least
//! [`MIN_WAIT_BEFORE_EVICT`] (which bounds how fast clients can push each other out). When none
//! has waited that long, up to [`RESERVED_CONNECTIONS`] more are let in for `/metrics` and the
//! health checks only, with a short header timeout; beyond that, clients wait to be accepted.
//! Busy connections are never closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A waiting connection may be closed for a newcomer once it has waited this long.
pub const MIN_WAIT_BEFORE_EVICT: Duration = Duration::from_secs(1);
/// Connections beyond the limit for `/metrics`, `/-/healthy` and `/-/ready` only.
pub const RESERVED_CONNECTIONS: usize = 32;

/// The table of open connections. Shared by the accept loop and every connection's task.
pub struct Connections {
    table: Mutex<Table>,
    /// Signalled whenever a connection closes.
    freed: Notify,
    limit: usize,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// Open connections admitted from the reserve.
    reserved: usize,
    evicted: u64,
}

struct Entry {
    /// `None` while serving a request; else since when it waits for one.
    waiting_since: Option<Instant>,
    evict: Arc<Notify>,
    reserved: bool,
}

/// What a new connection gets.
pub enum Admission {
    /// A full connection.
    Normal(ConnHandle),
    /// A reserved one: `/metrics` and health checks only.
    Reserved(ConnHandle),
    /// Nothing now: wait for [`Connections::freed`].
    Full,
}

impl Connections {
    /// `limit` full connections (0: no limit) plus the reserve.
    pub fn new(limit: usize) -> Arc<Connections> {
        Arc::new(Connections {
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
            limit: if limit == 0 { usize::MAX } else { limit },
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether [`Connections::admit`] would let a connection in now (the accept loop asks before
    /// accepting, so that clients beyond wait in the kernel's accept queue).
    pub fn has_room(&self, now: Instant) -> bool {
        let t = self.lock();
        t.open.len() - t.reserved < self.limit
            || t.reserved < RESERVED_CONNECTIONS
            || longest_waiting(&t, now).is_some()
    }

    /// Admits a new connection, closing the longest-waiting one to make room if needed.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Admission {
        let mut t = self.lock();
        let full = t.open.len() - t.reserved;
        let reserved = if full < self.limit {
            false
        } else if let Some(id) = longest_waiting(&t, now) {
            if let Some(e) = t.open.remove(&id) {
                if e.reserved {
                    t.reserved -= 1;
                }
                t.evicted += 1;
                e.evict.notify_one();
            }
            false
        } else if t.reserved < RESERVED_CONNECTIONS {
            true
        } else {
            return Admission::Full;
        };
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.open.insert(
            id,
            Entry {
                waiting_since: Some(now),
                evict: evict.clone(),
                reserved,
            },
        );
        if reserved {
            t.reserved += 1;
        }
        let h = ConnHandle {
            id,
            conns: self.clone(),
            evict,
        };
        if reserved {
            Admission::Reserved(h)
        } else {
            Admission::Normal(h)
        }
    }

    /// Completes when a connection has closed since the last call (or at once if one had).
    pub async fn freed(&self) {
        self.freed.notified().await
    }

    /// Open connections, and how many were closed for newcomers since start.
    pub fn counts(&self) -> (usize, u64) {
        let t = self.lock();
        (t.open.len(), t.evicted)
    }
}

/// The connection that has waited longest for a request, if it has waited long enough.
fn longest_waiting(t: &Table, now: Instant) -> Option<u64> {
    t.open
        .iter()
        .filter_map(|(id, e)| Some((*id, e.waiting_since?)))
        .filter(|(_, since)| now.duration_since(*since) >= MIN_WAIT_BEFORE_EVICT)
        .min_by_key(|(_, since)| *since)
        .map(|(id, _)| id)
}

/// One admitted connection; dropping it gives the place back.
pub struct ConnHandle {
    id: u64,
    conns: Arc<Connections>,
    evict: Arc<Notify>,
}

impl ConnHandle {
    /// Marks the connection busy until the guard is dropped.
    pub fn busy(&self) -> BusyGuard {
        self.set_waiting(None);
        BusyGuard {
            id: self.id,
            conns: self.conns.clone(),
        }
    }

    fn set_waiting(&self, since: Option<Instant>) {
        if let Some(e) = self.conns.lock().open.get_mut(&self.id) {
            e.waiting_since = since;
        }
    }

    /// Completes when the connection was closed for a newcomer.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        if let Some(e) = t.open.remove(&self.id) {
            if e.reserved {
                t.reserved -= 1;
            }
        }
        drop(t);
        self.conns.freed.notify_one();
    }
}

/// A request in progress on a connection; when dropped (the response sent), the connection
/// waits for its next request again.
pub struct BusyGuard {
    id: u64,
    conns: Arc<Connections>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(e) = self.conns.lock().open.get_mut(&self.id) {
            e.waiting_since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn normal(a: Admission) -> ConnHandle {
        match a {
            Admission::Normal(h) => h,
            _ => panic!("not a normal admission"),
        }
    }

    #[test]
    fn the_longest_waiting_connection_makes_room_busy_ones_never() {
        let c = Connections::new(2);
        let t0 = Instant::now();
        let a = normal(c.admit(t0));
        let b = normal(c.admit(t0 + Duration::from_millis(10)));
        let _busy = b.busy();
        // Nobody has waited a second yet: the reserve.
        let r = c.admit(t0 + Duration::from_millis(500));
        assert!(matches!(r, Admission::Reserved(_)));
        // Later, `a` (waiting since t0) goes; `b` is busy and stays.
        let later = t0 + Duration::from_secs(2);
        let n = normal(c.admit(later));
        assert_eq!(c.counts(), (3, 1));
        let evicted = std::pin::pin!(a.evicted());
        let waker = std::task::Waker::noop();
        assert!(evicted
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready());
        // Now `b` busy and `n` just arrived: nothing to evict for a fourth normal one.
        drop(r);
        let reserved: Vec<_> = (0..RESERVED_CONNECTIONS)
            .map(|_| c.admit(later + Duration::from_millis(1)))
            .collect();
        assert!(reserved.iter().all(|a| matches!(a, Admission::Reserved(_))));
        assert!(matches!(
            c.admit(later + Duration::from_millis(2)),
            Admission::Full
        ));
        assert!(!c.has_room(later + Duration::from_millis(2)));
        drop(n);
        assert!(c.has_room(later + Duration::from_millis(3)));
    }
}

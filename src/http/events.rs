//! `GET /api/v1/events`: the bus as Server-Sent Events. Each event is `id: <n>`, `event:
//! <type>`, `data: <json>`; `Last-Event-ID` (header, or the `last_event_id` parameter for
//! clients that cannot set headers) resumes from the ring, after an `event: gap` when the ring
//! no longer reaches back that far. A comment line every [`HEARTBEAT`] keeps proxies from
//! closing an idle stream. A client that lags behind the bus, or does not take a chunk within
//! [`SEND_TIMEOUT`], is disconnected; nothing the client does can hold up a publisher. Each
//! stream holds one of the server's stream slots (`--web.max-streams`) while it is open: when
//! all are taken a new client gets 503, and requests never wait for streams.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use tokio::sync::broadcast::error::RecvError;

use super::stream::{channel_body, stream_slot, whole, AnyBody, StreamReply, StreamRoutes};
use super::{text_response, AppState, RouteRequest};
use crate::events::Bus;

pub const PATH: &str = "/api/v1/events";
/// Time between heartbeat comments.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest a chunk may wait for a client before the client is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks buffered per client between the bus and the socket.
const CLIENT_CHUNKS: usize = 64;

/// The route; add to [`AppState::stream_routes`].
pub struct EventsApi {
    bus: Bus,
    heartbeat: Duration,
}

impl EventsApi {
    pub fn new(bus: Bus) -> EventsApi {
        EventsApi {
            bus,
            heartbeat: HEARTBEAT,
        }
    }

    /// A shorter heartbeat, for tests.
    pub fn with_heartbeat(mut self, every: Duration) -> EventsApi {
        self.heartbeat = every;
        self
    }
}

/// The `Last-Event-ID` of a request, if it carries a valid one.
fn last_event_id(req: &RouteRequest<'_>) -> Result<Option<u64>, String> {
    let raw = req
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            let p = req.params.get("last_event_id");
            (!p.is_empty()).then(|| p.to_string())
        });
    match raw {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("invalid Last-Event-ID {s:?}: expected an event id")),
    }
}

fn gap_frame(last: u64, oldest: u64) -> String {
    format!("event: gap\ndata: {{\"last_event_id\":{last},\"oldest_available_id\":{oldest}}}\n\n")
}

impl StreamRoutes for EventsApi {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<StreamReply> {
        self.respond(state, req).map(StreamReply::Now)
    }
}

impl EventsApi {
    fn respond(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<Response<AnyBody>> {
        if req.path != PATH {
            return None;
        }
        if *req.method != Method::GET {
            return Some(whole(text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "Method Not Allowed\n",
            )));
        }
        let last = match last_event_id(req) {
            Ok(l) => l,
            Err(e) => {
                return Some(whole(text_response(
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                )))
            }
        };
        let slot = match stream_slot(state) {
            Ok(s) => s,
            Err(busy) => return Some(busy),
        };
        let mut sub = self.bus.subscribe(last);
        let (tx, body) = channel_body(CLIENT_CHUNKS);
        let heartbeat = self.heartbeat;
        tokio::spawn(async move {
            let _slot = slot;
            let send = |s: Bytes| {
                let tx = tx.clone();
                async move {
                    matches!(
                        tokio::time::timeout(SEND_TIMEOUT, tx.send(s)).await,
                        Ok(Ok(()))
                    )
                }
            };
            if !send(Bytes::from_static(b": depin-orcha events\nretry: 2000\n\n")).await {
                return;
            }
            if let Some((l, oldest)) = sub.gap {
                if !send(gap_frame(l, oldest).into()).await {
                    return;
                }
            }
            for ev in std::mem::take(&mut sub.backlog) {
                if !send(ev.to_sse()).await {
                    return;
                }
            }
            let mut beat = tokio::time::interval(heartbeat);
            beat.tick().await;
            loop {
                let frame = tokio::select! {
                    r = sub.rx.recv() => match r {
                        Ok(ev) => ev.to_sse(),
                        Err(RecvError::Lagged(n)) => {
                            // Too slow for the bus: say so and hang up; the client resumes
                            // with Last-Event-ID from the ring.
                            tracing::debug!(missed = n, "events client lagged; disconnecting");
                            let _ = tx.try_send(Bytes::from(": lagged behind, disconnecting\n\n"));
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = beat.tick() => Bytes::from_static(b": heartbeat\n\n"),
                    _ = tx.closed() => return,
                };
                if !send(frame).await {
                    tracing::debug!("events client did not read; disconnecting");
                    return;
                }
            }
        });
        let mut r = Response::new(AnyBody::Channel(body));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    fn state() -> AppState {
        AppState::new(
            Arc::new(crate::tsdb::Db::in_memory()),
            crate::promql::Engine::default(),
            prometheus::Registry::new(),
            Arc::new(crate::clock::ManualClock::new(0)),
        )
    }

    async fn next_text(body: &mut AnyBody) -> String {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .ok()
            .flatten()
            .and_then(|f| f.ok())
            .and_then(|f| f.into_data().ok())
            .unwrap_or_default();
        String::from_utf8_lossy(&f).into_owned()
    }

    #[tokio::test]
    async fn resumes_after_last_event_id_then_streams_live() {
        let bus = Bus::new(2, 16);
        for i in 0..4 {
            bus.publish("poll", i, serde_json::json!({"node": "a"}));
        }
        let api = EventsApi::new(bus.clone());
        let mut headers = hyper::HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("1"));
        let params = crate::http::Params::new(None, None);
        let body = Bytes::new();
        let req = RouteRequest {
            method: &Method::GET,
            path: PATH,
            params: &params,
            headers: &headers,
            body: &body,
        };
        let st = state();
        let resp = api.respond(&st, &req).expect("owns the path");
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        let mut b = resp.into_body();
        assert!(next_text(&mut b).await.starts_with(": depin-orcha events"));
        assert_eq!(
            next_text(&mut b).await,
            "event: gap\ndata: {\"last_event_id\":1,\"oldest_available_id\":3}\n\n"
        );
        assert!(next_text(&mut b).await.starts_with("id: 3\nevent: poll\n"));
        assert!(next_text(&mut b).await.starts_with("id: 4\n"));
        bus.publish("node_down", 9, serde_json::json!({"node": "a"}));
        assert!(next_text(&mut b)
            .await
            .starts_with("id: 5\nevent: node_down\n"));
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_dropped_and_the_publisher_never_waits() {
        let bus = Bus::new(100_000, 16);
        let api = EventsApi::new(bus.clone());
        let params = crate::http::Params::new(None, None);
        let (headers, body) = (hyper::HeaderMap::new(), Bytes::new());
        let req = RouteRequest {
            method: &Method::GET,
            path: PATH,
            params: &params,
            headers: &headers,
            body: &body,
        };
        let st = state();
        let mut b = api.respond(&st, &req).expect("owns the path").into_body();
        tokio::task::yield_now().await;
        let t = std::time::Instant::now();
        for i in 0..20_000 {
            bus.publish("poll", i, serde_json::json!({"i": i}));
            if i % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "publishing waited for a client"
        );
        // The client finally reads: what was queued, then the end of the stream (it lagged).
        let mut frames = 0;
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(f) = b.frame().await {
                if f.is_ok() {
                    frames += 1;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream of a lagging client did not end");
        assert!(
            frames < 20_000,
            "{frames} frames: the client was not dropped"
        );
    }
}

//! Streamed responses: bodies produced while the client reads them (chunked transfer
//! encoding), for `/api/v1/export` and the Server-Sent Events of `/api/v1/events`.
//!
//! An additive extension of the router: [`StreamRoutes`] are tried first by [`handle_any`] (what
//! the server calls); everything else goes through [`super::handle`] unchanged. The body is fed
//! through a bounded channel, so a producer can never get further ahead of a slow client than
//! the channel's capacity, and it learns that the client left when a send fails.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};

use super::{AppState, Params, RouteRequest};

/// A body fed from a bounded channel: each message is one chunk; the body ends when every
/// sender is dropped.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

/// A sending half and its body. `capacity` chunks at most wait for the client.
pub fn channel_body(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, ChannelBody { rx })
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// The body of any response: a whole one or a streamed one.
pub enum AnyBody {
    Full(Full<Bytes>),
    Channel(ChannelBody),
}

impl Body for AnyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AnyBody::Full(b) => Pin::new(b).poll_frame(cx),
            AnyBody::Channel(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnyBody::Full(b) => b.is_end_stream(),
            AnyBody::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnyBody::Full(b) => b.size_hint(),
            AnyBody::Channel(_) => SizeHint::default(),
        }
    }
}

/// A streamed response.
pub type StreamResponse = Response<ChannelBody>;

/// Routes whose responses stream. Called with the query parameters only (these are GET
/// routes: the request body is not read). `None` for paths a route does not own.
pub trait StreamRoutes: Send + Sync {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<Response<AnyBody>>;
}

/// What the server calls: stream routes first, then [`super::handle`].
pub async fn handle_any<B>(state: &AppState, req: Request<B>) -> Response<AnyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !state.stream_routes.is_empty() {
        let (parts, body) = req.into_parts();
        let params = Params::new(parts.uri.query(), None);
        let empty = Bytes::new();
        let rr = RouteRequest {
            method: &parts.method,
            path: parts.uri.path(),
            params: &params,
            headers: &parts.headers,
            body: &empty,
        };
        for r in &state.stream_routes {
            if let Some(resp) = r.route(state, &rr) {
                let handler = super::handler_label(rr.path);
                state
                    .metrics
                    .requests
                    .with_label_values(&[handler, resp.status().as_str()])
                    .inc();
                return resp;
            }
        }
        let req = Request::from_parts(parts, body);
        return super::handle(state, req).await.map(AnyBody::Full);
    }
    super::handle(state, req).await.map(AnyBody::Full)
}

/// A whole (not streamed) response as an [`AnyBody`] one, for stream routes' errors.
pub fn whole(r: super::HttpResponse) -> Response<AnyBody> {
    r.map(AnyBody::Full)
}

/// Shared list type of the state's stream routes.
pub type StreamRouteList = Vec<Arc<dyn StreamRoutes>>;

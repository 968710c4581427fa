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
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<StreamReply>;
}

/// A stream route's answer: at once, or from work that must run off the async workers first
/// (parsing selectors) and sends the response when it knows it.
pub enum StreamReply {
    Now(Response<AnyBody>),
    Later(tokio::sync::oneshot::Receiver<Response<AnyBody>>),
}

impl From<Response<AnyBody>> for StreamReply {
    fn from(r: Response<AnyBody>) -> StreamReply {
        StreamReply::Now(r)
    }
}

impl StreamReply {
    /// The response; a `Later` one whose sender was dropped becomes a 500.
    pub async fn response(self) -> Response<AnyBody> {
        match self {
            StreamReply::Now(r) => r,
            StreamReply::Later(rx) => rx.await.unwrap_or_else(|_| {
                whole(super::text_response(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "the stream's producer ended before answering\n",
                ))
            }),
        }
    }
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
            if let Some(reply) = r.route(state, &rr) {
                let resp = reply.response().await;
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

/// One of the state's stream slots (`--web.max-streams`), or the 503 to answer when all are
/// taken. The slot is held for the stream's life: move it into whatever feeds the body.
#[allow(clippy::result_large_err)]
pub fn stream_slot(
    state: &AppState,
) -> Result<tokio::sync::OwnedSemaphorePermit, Response<AnyBody>> {
    state.stream_slots.clone().try_acquire_owned().map_err(|_| {
        let mut r = whole(super::text_response(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "too many streams open (--web.max-streams); retry later\n",
        ));
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("5"),
        );
        r
    })
}

/// A whole (not streamed) response as an [`AnyBody`] one, for stream routes' errors.
pub fn whole(r: super::HttpResponse) -> Response<AnyBody> {
    r.map(AnyBody::Full)
}

/// Shared list type of the state's stream routes.
pub type StreamRouteList = Vec<Arc<dyn StreamRoutes>>;

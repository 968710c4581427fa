//! `GET /api/v1/export?match[]=<selector>&start=<t>&end=<t>&format=csv|json|openmetrics`: the
//! export streamed with chunked transfer encoding. The writer runs on a blocking thread and
//! hands 64 KiB chunks through a bounded channel, so at most a few chunks wait for a slow
//! client, and a client that hangs up stops the export at its next chunk.

use std::io::Write;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::params::{self, MAX_TIME_MS, MIN_TIME_MS};
use super::stream::{channel_body, whole, AnyBody, StreamRoutes};
use super::{text_response, ApiError, AppState, RouteRequest};
use crate::export::{clamp_range, write_export, Format};

pub const PATH: &str = "/api/v1/export";
const CHUNK_BYTES: usize = 64 * 1024;
const CHANNEL_CHUNKS: usize = 4;

/// The route; add to [`AppState::stream_routes`].
#[derive(Default)]
pub struct ExportApi;

/// A `Write` that sends full chunks down the body channel, waiting while the client is behind.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn bad(msg: String) -> Response<AnyBody> {
    whole(ApiError::bad_data(msg).into_response())
}

fn plain(status: StatusCode, text: &'static str) -> Response<AnyBody> {
    whole(text_response(status, "text/plain; charset=utf-8", text))
}

impl StreamRoutes for ExportApi {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<Response<AnyBody>> {
        if req.path != PATH {
            return None;
        }
        if *req.method != Method::GET {
            return Some(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed\n",
            ));
        }
        if !state.is_ready() {
            return Some(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            ));
        }
        let p = req.params;
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Some(bad("no match[] parameter provided".into()));
        }
        let sets = match params::parse_match_sets(&matches) {
            Ok(s) => s,
            Err(e) => return Some(bad(format!("invalid parameter \"match[]\": {e}"))),
        };
        let start = match params::parse_time_param(p, "start", MIN_TIME_MS) {
            Ok(t) => t,
            Err(e) => return Some(bad(e.to_string())),
        };
        let end = match params::parse_time_param(p, "end", MAX_TIME_MS) {
            Ok(t) => t,
            Err(e) => return Some(bad(e.to_string())),
        };
        if end < start {
            return Some(bad(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        let Some(format) = Format::parse(p.get("format")) else {
            return Some(bad(format!(
                "invalid parameter \"format\": {:?} is not one of csv, json, openmetrics",
                p.get("format")
            )));
        };
        let (tx, body) = channel_body(CHANNEL_CHUNKS);
        let db = state.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK_BYTES),
            };
            let result = match clamp_range(&db, start, end) {
                Some((a, b)) => write_export(db.as_ref(), &sets, a, b, format, &mut w),
                None => write_export(db.as_ref(), &[], 0, 0, format, &mut w),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "export ended early");
            }
        });
        let mut r = Response::new(AnyBody::Channel(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        Some(r)
    }
}

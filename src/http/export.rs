//! `GET /api/v1/export?match[]=<selector>&start=<t>&end=<t>&format=csv|json|openmetrics`: the
//! export streamed with chunked transfer encoding. The writer runs on a thread of its own (not
//! the small work pool: it spends most of its life waiting for the client) at the work pool's
//! lowered priority, so a client that reads as fast as it is written cannot take the cores from
//! `/metrics` and the polls. It hands 64 KiB chunks through a bounded channel, so at most a few
//! chunks wait for a slow client, and a client that hangs up stops the export at its next chunk.
//! An export holds one of the stream slots (`--web.max-streams`) for its life; what parsing its
//! selectors takes, and then the label sets it selected, are charged to the memory budget
//! (`--query.max-memory`) until it ends, so an export of every series gets 422 rather than the
//! process more memory.

use std::io::Write;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::params::{self, MAX_TIME_MS, MIN_TIME_MS};
use super::stream::{channel_body, stream_slot, whole, AnyBody, StreamReply, StreamRoutes};
use super::{text_response, ApiError, AppState, RouteRequest};
use crate::export::{clamp_range, select_series, write_series, Format};
use crate::promql::limits::{labels_bytes, parse_cost};
use crate::promql::Reservation;

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

/// 422 for an export over `--query.max-memory`, saying what it would have held.
fn over_budget(msg: String) -> Response<AnyBody> {
    whole(ApiError::new(super::ErrorType::Execution, format!("export: {msg}")).into_response())
}

fn plain(status: StatusCode, text: &'static str) -> Response<AnyBody> {
    whole(text_response(status, "text/plain; charset=utf-8", text))
}

impl StreamRoutes for ExportApi {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<StreamReply> {
        if req.path != PATH {
            return None;
        }
        Some(match self.checked(state, req) {
            Ok(e) => StreamReply::Later(e.start(state)),
            Err(r) => StreamReply::Now(r),
        })
    }
}

/// An export whose parameters passed the quick checks: its selectors are parsed on the export's
/// own blocking thread (parsing compiles their regular expressions).
struct Export {
    matches: Vec<String>,
    start: i64,
    end: i64,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
    parsing: Reservation,
}

impl ExportApi {
    #[allow(clippy::result_large_err)]
    fn checked(
        &self,
        state: &AppState,
        req: &RouteRequest<'_>,
    ) -> Result<Export, Response<AnyBody>> {
        if *req.method != Method::GET {
            return Err(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed\n",
            ));
        }
        if !state.is_ready() {
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            ));
        }
        let p = req.params;
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(bad("no match[] parameter provided".into()));
        }
        let start =
            params::parse_time_param(p, "start", MIN_TIME_MS).map_err(|e| bad(e.to_string()))?;
        let end =
            params::parse_time_param(p, "end", MAX_TIME_MS).map_err(|e| bad(e.to_string()))?;
        if end < start {
            return Err(bad(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        let Some(format) = Format::parse(p.get("format")) else {
            return Err(bad(format!(
                "invalid parameter \"format\": {:?} is not one of csv, json, openmetrics",
                p.get("format")
            )));
        };
        let mut parsing = state.memory.reservation();
        let cost = matches.iter().map(|m| parse_cost(m)).sum::<usize>();
        parsing
            .grow(cost)
            .map_err(|e| over_budget(format!("parsing match[]: {e}")))?;
        let slot = stream_slot(state)?;
        Ok(Export {
            matches: matches.into_iter().map(str::to_string).collect(),
            start,
            end,
            format,
            slot,
            parsing,
        })
    }
}

impl Export {
    /// Parses the selectors and writes the export on a thread of its own; the receiver gets the
    /// response (an error, or the stream) as soon as the series are selected.
    fn start(self, state: &AppState) -> tokio::sync::oneshot::Receiver<Response<AnyBody>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let db = state.db.clone();
        // The thread's end is not awaited: the body's channel tells the client. Without a
        // thread, the reply's sender is dropped and the client gets the server's 500.
        let spawned = std::thread::Builder::new()
            .name("export".into())
            .spawn(move || {
                super::work::lower_priority();
                self.run(db, reply)
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "starting an export thread failed");
        }
        rx
    }

    fn run(
        self,
        db: std::sync::Arc<crate::tsdb::Db>,
        reply: tokio::sync::oneshot::Sender<Response<AnyBody>>,
    ) {
        let Export {
            matches,
            start,
            end,
            format,
            slot: _slot,
            parsing: mut charge,
        } = self;
        let refs: Vec<&str> = matches.iter().map(String::as_str).collect();
        let sets = match params::parse_match_sets(&refs) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(bad(format!("invalid parameter \"match[]\": {e}")));
                return;
            }
        };
        let range = clamp_range(&db, start, end);
        let series = match range {
            Some((a, b)) => select_series(db.as_ref(), &sets, a, b),
            None => Vec::new(),
        };
        drop(sets);
        // The selectors' parse cost is given back for what the selected label sets hold.
        let held = series.iter().map(labels_bytes).sum::<usize>();
        if let Err(e) = charge.resize(held) {
            let _ = reply.send(over_budget(format!(
                "the {} series match[] selects: {e}; export fewer series at once (a narrower match[]) or raise --query.max-memory",
                series.len()
            )));
            return;
        }
        let (tx, body) = channel_body(CHANNEL_CHUNKS);
        let mut r = Response::new(AnyBody::Channel(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        if reply.send(r).is_err() {
            return;
        }
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        };
        let (a, b) = range.unwrap_or((0, 0));
        if let Err(e) = write_series(db.as_ref(), &series, a, b, format, &mut w) {
            tracing::debug!(error = %e, "export ended early");
        }
    }
}

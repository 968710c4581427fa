//! The hyper plumbing: bind a listener, accept HTTP/1.1 connections with keep-alive, hand each
//! request to [`super::handle`], and on shutdown stop accepting, let every connection finish the
//! request it is serving, then return.
//!
//! Limits that protect the process: hyper's header count and size caps, a header read timeout
//! (which is also the idle timeout of a keep-alive connection, as Go's `ReadHeaderTimeout`) and
//! a body read timeout against slow clients, the body limit in `handle`, and the connection
//! table of [`super::conns`] (`--web.max-connections`), which closes the connection that has
//! waited longest for a request when a new client needs its place and keeps a reserve for
//! `/metrics` and the health checks. With a [`WebConfig`] it also speaks TLS (the handshake has
//! [`TLS_HANDSHAKE_TIMEOUT`]; plain HTTP on the TLS port gets a plain 400, as Go's server
//! answers) and checks basic auth on every request before routing, running bcrypt on the work
//! pool one verification at a time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::conns::{Admission, BusyGuard, ConnHandle, Connections};
use super::stream::AnyBody;
use super::webconfig::{AuthStep, WebConfig};
use super::AppState;

/// Most request headers hyper accepts before answering 431.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request line plus headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client has this long to send its request headers, and a keep-alive connection may wait
/// this long for its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for a connection let in from the reserve.
pub const RESERVED_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A client has this long to send a request body once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client has this long to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--web.max-connections`: room for hundreds of idle or slow clients besides the
/// real ones (a waiting connection costs a socket and a few KiB).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// bcrypt verifications at once (each takes a core for tens of milliseconds at cost 10).
pub const AUTH_CONCURRENCY: usize = 1;
/// Longest a request waits for a bcrypt verification before it gets 503.
const AUTH_WAIT: Duration = Duration::from_secs(10);
/// Go's answer to plain HTTP on a TLS port.
const HTTP_ON_TLS_PORT: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The I/O error is part of the message and not a `source`: printed as a chain (`{:#}`) it
/// would otherwise appear twice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("serving on {addr}: {error}")]
    Serve {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A bound server. Bind first (port 0 picks a free port), read the address, then serve.
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    web: Option<Arc<WebConfig>>,
    max_connections: usize,
    body_read_timeout: Duration,
}

/// What every connection's task shares.
struct Shared {
    state: Arc<AppState>,
    web: Option<Arc<WebConfig>>,
    body_timeout: Duration,
    auth_slots: Arc<tokio::sync::Semaphore>,
    body_readers: Arc<tokio::sync::Semaphore>,
}

impl Server {
    /// Binds the listening socket. Synchronous, so it needs no runtime and fails early.
    pub fn bind(addr: SocketAddr, state: Arc<AppState>) -> Result<Server, Error> {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|error| Error::Bind { addr, error })?;
        listener
            .set_nonblocking(true)
            .map_err(|error| Error::Bind { addr, error })?;
        let addr = listener
            .local_addr()
            .map_err(|error| Error::Bind { addr, error })?;
        widen_backlog(&listener);
        Ok(Server {
            listener,
            addr,
            state,
            web: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_read_timeout: BODY_READ_TIMEOUT,
        })
    }

    /// Serves with TLS and/or basic auth and extra headers, as the web config says.
    pub fn with_web_config(mut self, web: Option<Arc<WebConfig>>) -> Server {
        self.web = web;
        self
    }

    /// How long a client may take to send a request body (default [`BODY_READ_TIMEOUT`]).
    pub fn with_body_read_timeout(mut self, t: Duration) -> Server {
        self.body_read_timeout = t;
        self
    }

    /// At most `n` connections open at once besides the reserve (0: no limit).
    pub fn with_max_connections(mut self, n: usize) -> Server {
        self.max_connections = n;
        self
    }

    /// The address actually bound (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each open connection finish
    /// its in-flight request and returns once all are closed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let addr = self.addr;
        let listener =
            TcpListener::from_std(self.listener).map_err(|error| Error::Serve { addr, error })?;
        let tls = self
            .web
            .as_ref()
            .and_then(|w| w.tls())
            .map(tokio_rustls::TlsAcceptor::from);
        let max = raise_open_files_limit(self.max_connections);
        tracing::info!(%addr, tls = tls.is_some(), max_connections = max, "serving HTTP");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        let conns = Connections::new(max);
        super::limit_metrics::register(&self.state, &conns);
        let shared = Arc::new(Shared {
            state: self.state.clone(),
            web: self.web.clone(),
            body_timeout: self.body_read_timeout,
            auth_slots: Arc::new(tokio::sync::Semaphore::new(AUTH_CONCURRENCY)),
            body_readers: Arc::new(tokio::sync::Semaphore::new(BODY_READERS)),
        });
        loop {
            // Room first, then accept: with none, clients wait in the accept queue. Room also
            // appears when a waiting connection has waited long enough to be closed for a
            // newcomer, hence the periodic look.
            while !conns.has_room(std::time::Instant::now()) {
                tokio::select! {
                    _ = &mut shutdown => return finish(listener, stop_tx, stop_rx).await,
                    _ = conns.freed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, %addr, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (handle, reserved) = match conns.admit(std::time::Instant::now()) {
                Admission::Normal(h) => (h, false),
                Admission::Reserved(h) => (h, true),
                // Taken between the look and the accept: this client is turned away.
                Admission::Full => continue,
            };
            let conn = Conn {
                shared: shared.clone(),
                handle: Arc::new(handle),
                reserved,
                peer,
            };
            let stop = stop_rx.clone();
            let _ = stream.set_nodelay(true);
            match tls.clone() {
                None => {
                    tokio::spawn(async move { conn.serve(stream, stop).await });
                }
                Some(acceptor) => {
                    tokio::spawn(async move {
                        let handshake = async {
                            if !looks_like_tls(&stream).await {
                                let mut stream = stream;
                                let _ = stream.write_all(HTTP_ON_TLS_PORT).await;
                                let _ = stream.shutdown().await;
                                return None;
                            }
                            acceptor.accept(stream).await.ok()
                        };
                        let done = tokio::select! {
                            r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake) => r,
                            _ = conn.handle.evicted() => return,
                        };
                        match done {
                            Ok(Some(tls)) => conn.serve(tls, stop).await,
                            Ok(None) => tracing::debug!(peer = %conn.peer, "TLS handshake failed"),
                            Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
        finish(listener, stop_tx, stop_rx).await
    }
}

/// Connections the kernel queues for `accept`. The standard library listens with 128: a crowd
/// of clients reconnecting at once fills that while the accept loop is busy, and a connection
/// beyond is dropped until its client resends its SYN, a second later. Linux caps the value at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Listens again with [`LISTEN_BACKLOG`] (Linux lets a listening socket change its backlog).
fn widen_backlog(listener: &std::net::TcpListener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: listen on a socket this listener owns; on failure the old backlog stays.
        unsafe {
            libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG);
        }
    }
}

/// Stops accepting, tells every connection to finish, then waits until each has dropped its
/// receiver.
async fn finish(
    listener: TcpListener,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> Result<(), Error> {
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Whether the first byte a client sent is a TLS handshake record (0x16); false for anything
/// else, such as the `G` of a plain `GET`.
async fn looks_like_tls(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Raises the soft limit of open files to the hard one, as Go's runtime does at start, so that
/// `max_connections` sockets fit beside the storage's files; returns the connection limit that
/// fits (`max_connections`, or less when the hard limit is lower).
fn raise_open_files_limit(max_connections: usize) -> usize {
    // Files the process keeps besides connections: storage, logs, node clients, the reserve.
    const OTHER_FILES: u64 = 128 + super::conns::RESERVED_CONNECTIONS as u64;
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct passed; a failure leaves
        // the limits as they were.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return max_connections;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        let room = lim.rlim_cur.saturating_sub(OTHER_FILES).max(16);
        if max_connections == 0 || max_connections as u64 > room {
            if max_connections != 0 {
                tracing::warn!(
                    max_connections,
                    open_files_limit = lim.rlim_cur,
                    "--web.max-connections lowered to what the open files limit allows"
                );
            }
            return room as usize;
        }
    }
    max_connections
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the usual `shutdown` argument of [`Server::serve`]
/// for the binary. If a handler cannot be installed, only the other signal ends the wait.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// One accepted connection.
struct Conn {
    shared: Arc<Shared>,
    handle: Arc<ConnHandle>,
    /// Let in from the reserve: `/metrics` and health checks only.
    reserved: bool,
    peer: SocketAddr,
}

impl Conn {
    async fn serve<S>(self, stream: S, mut stop: watch::Receiver<bool>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (shared, handle, reserved) = (self.shared.clone(), self.handle.clone(), self.reserved);
        let svc = service_fn(move |req| {
            let (shared, handle) = (shared.clone(), handle.clone());
            async move {
                let busy = handle.busy();
                let resp = guarded(&shared, reserved, req).await;
                Ok::<_, Infallible>(resp.map(|b| TrackedBody {
                    inner: b,
                    _busy: busy,
                }))
            }
        });
        let header_timeout = if reserved {
            RESERVED_HEADER_READ_TIMEOUT
        } else {
            HEADER_READ_TIMEOUT
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(!reserved)
            .header_read_timeout(header_timeout)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEADER_BYTES.max(8192))
            .serve_connection(TokioIo::new(stream), svc);
        let mut conn = std::pin::pin!(conn);
        if *stop.borrow() {
            conn.as_mut().graceful_shutdown();
        }
        let peer = self.peer;
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            // Closed for a newcomer while it waited for a request: drop it.
            _ = self.handle.evicted() => return,
            _ = stop.changed() => {}
        }
        conn.as_mut().graceful_shutdown();
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection ended with an error during shutdown");
        }
    }
}

/// A response body that keeps its connection marked busy until it has been sent.
struct TrackedBody {
    inner: AnyBody,
    _busy: BusyGuard,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Paths a reserved connection may ask for.
fn is_priority(path: &str) -> bool {
    matches!(path, "/metrics" | "/-/healthy" | "/-/ready")
}

fn plain(status: hyper::StatusCode, text: String) -> hyper::Response<AnyBody> {
    super::stream::whole(super::text_response(
        status,
        "text/plain; charset=utf-8",
        text,
    ))
}

/// Basic auth before anything else (a 401 reads no body), the body within the body timeout,
/// then [`super::handle`]; the web config's headers on every answer.
async fn guarded(
    shared: &Shared,
    reserved: bool,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<AnyBody> {
    use http_body_util::BodyExt;
    let state = &shared.state;
    let web = shared.web.as_deref();
    let handler = super::handler_label(req.uri().path());
    if reserved && !is_priority(req.uri().path()) {
        state
            .metrics
            .requests
            .with_label_values(&[handler, "503"])
            .inc();
        let mut r = plain(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "too many connections: this one serves /metrics and health checks only\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return r;
    }
    let mut resp = match authenticate(shared, web, &req).await {
        Some(denied) => {
            state
                .metrics
                .requests
                .with_label_values(&[handler, denied.status().as_str()])
                .inc();
            denied
        }
        None => {
            let (parts, body) = req.into_parts();
            let (_memory, reader) = match admit_body(shared, &parts.headers).await {
                Ok(a) => a,
                Err(refused) => return refused,
            };
            // One byte over the limit is enough for `handle` to answer 413.
            let limited = http_body_util::Limited::new(body, super::MAX_BODY_BYTES + 1);
            let read = tokio::time::timeout(shared.body_timeout, limited.collect()).await;
            drop(reader);
            match read {
                Ok(Ok(b)) => {
                    let req =
                        hyper::Request::from_parts(parts, http_body_util::Full::new(b.to_bytes()));
                    // Streaming routes (export, events) first, then the ordinary ones.
                    super::stream::handle_any(state, req).await
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => plain(
                    hyper::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {} bytes\n", super::MAX_BODY_BYTES),
                ),
                Ok(Err(e)) => plain(
                    hyper::StatusCode::BAD_REQUEST,
                    format!("error reading request body: {e}\n"),
                ),
                Err(_) => plain(
                    hyper::StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {}s\n",
                        shared.body_timeout.as_secs()
                    ),
                ),
            }
        }
    };
    if let Some(w) = web {
        w.apply_headers(resp.headers_mut());
    }
    resp
}

/// Bodies up to this size are read at once; longer ones wait for one of [`BODY_READERS`].
const SMALL_BODY_BYTES: u64 = 64 << 10;
/// Long request bodies read at once. Reading a megabyte is cheap for one request, but a crowd
/// sending them in a loop keeps both async workers copying bytes while `/metrics` waits behind
/// them in the run queue; the others wait (their clients held back by TCP) instead.
pub const BODY_READERS: usize = 4;

/// A request's body admitted to be read: its charge against the memory budget (the body, and
/// the form decoded from it, live until the answer) and, for a long one, a reader's place (given
/// back once the body is in).
type AdmittedBody = (
    crate::promql::Reservation,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// Charges the body a request declares (three times: the bytes, the decoded form and its
/// copies) before reading it, and waits for a reader's place for a long one. Refused: 503,
/// without reading what the client sends.
async fn admit_body(
    shared: &Shared,
    headers: &hyper::HeaderMap,
) -> Result<AdmittedBody, hyper::Response<AnyBody>> {
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = headers.contains_key(hyper::header::TRANSFER_ENCODING);
    // Chunked bodies say nothing of their length: count the most they may be.
    let expected = match (declared, chunked) {
        (Some(n), false) => n.min(super::MAX_BODY_BYTES as u64 + 1),
        (_, true) => super::MAX_BODY_BYTES as u64,
        (None, false) => 0,
    };
    let refused = |why: &str| {
        let mut r = plain(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}; retry later\n"),
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        r
    };
    let mut memory = shared.state.memory.reservation();
    if memory.grow(expected as usize * 3).is_err() {
        return Err(refused(
            "too much request data waiting to be served (--query.max-memory)",
        ));
    }
    let reader = if expected > SMALL_BODY_BYTES {
        let wait = shared.body_readers.clone().acquire_owned();
        match tokio::time::timeout(shared.body_timeout, wait).await {
            Ok(Ok(p)) => Some(p),
            _ => return Err(refused("too many long request bodies arriving")),
        }
    } else {
        None
    };
    Ok((memory, reader))
}

/// `None` when basic auth lets the request through, else the answer. bcrypt runs on the work
/// pool, [`AUTH_CONCURRENCY`] at a time: a flood of wrong passwords costs at most that many
/// cores' worth at low priority, and waits (at most [`AUTH_WAIT`]) instead.
async fn authenticate<B>(
    shared: &Shared,
    web: Option<&WebConfig>,
    req: &hyper::Request<B>,
) -> Option<hyper::Response<AnyBody>> {
    let web = web?;
    let pending = match web.begin_basic_auth(req.headers()) {
        AuthStep::Allowed => return None,
        AuthStep::Denied => return Some(super::stream::whole(web.denied())),
        AuthStep::Verify(p) => p,
    };
    let busy = || {
        plain(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "too many password checks waiting; retry later\n".into(),
        )
    };
    let slot =
        match tokio::time::timeout(AUTH_WAIT, shared.auth_slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Some(busy()),
        };
    let verifier = shared.web.clone()?;
    let ok = shared
        .state
        .pool
        .spawn(move || {
            let _slot = slot;
            verifier.verify(pending)
        })
        .await;
    match ok {
        Ok(Ok(true)) => None,
        Ok(Ok(false)) => Some(super::stream::whole(web.denied())),
        _ => Some(busy()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<AppState> {
        Arc::new(AppState::new(
            Arc::new(crate::tsdb::Db::in_memory()),
            crate::promql::Engine::default(),
            prometheus::Registry::new(),
            Arc::new(crate::clock::ManualClock::new(0)),
        ))
    }

    #[test]
    fn binding_a_taken_port_names_the_address() {
        let first = Server::bind("127.0.0.1:0".parse().unwrap(), state()).unwrap();
        let addr = first.local_addr();
        assert_ne!(addr.port(), 0);
        let err = Server::bind(addr, state())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with(&format!("listening on {addr}: ")), "{err}");
    }

    #[tokio::test]
    async fn serve_returns_when_shutdown_completes() {
        let s = Server::bind("127.0.0.1:0".parse().unwrap(), state()).unwrap();
        let addr = s.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(s.serve(async {
            let _ = rx.await;
        }));
        // An idle keep-alive connection must not hold the shutdown up.
        let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(());
        let res = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(res, Ok(Ok(Ok(())))), "{res:?}");
        drop(idle);
    }

    /// A self-signed certificate for `localhost` and 127.0.0.1, written beside a web config with
    /// basic auth for alice; returns the directory.
    fn tls_web_config(name: &str, extra: &str) -> (tempfile::TempDir, Arc<WebConfig>) {
        let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let text = format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  alice: '{hash}'\n{extra}"
        );
        std::fs::write(dir.path().join("web.yml"), text).unwrap();
        let web = super::super::webconfig::load_file(&dir.path().join("web.yml")).unwrap();
        (dir, Arc::new(web))
    }

    fn curl(args: &[&str]) -> Option<(String, String)> {
        if std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: curl is not installed");
            return None;
        }
        let out = std::process::Command::new("curl")
            .args(["-s", "-D", "-", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Some((head.to_string(), body.to_string()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_and_basic_auth_guard_every_request() {
        let (dir, web) = tls_web_config(
            "orcha-tls",
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        );
        let st = state();
        st.set_ready(true);
        let s = Server::bind("127.0.0.1:0".parse().unwrap(), st)
            .unwrap()
            .with_web_config(Some(web));
        let addr = s.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(s.serve(async {
            let _ = rx.await;
        }));
        let ca = dir.path().join("cert.pem");
        let ca = ca.to_str().unwrap().to_string();
        let url = format!("https://localhost:{}/metrics", addr.port());
        let resolve = format!("localhost:{}:127.0.0.1", addr.port());
        let run = |extra: Vec<String>| {
            let mut a: Vec<String> = vec!["--resolve".into(), resolve.clone()];
            a.extend(extra);
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
                curl(&refs)
            })
        };
        // The right password over verified TLS: the metrics, with the configured header.
        let Some((head, body)) = run(vec![
            "--cacert".into(),
            ca.clone(),
            "-u".into(),
            "alice:s3cret".into(),
            url.clone(),
        ])
        .await
        .unwrap() else {
            return;
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("x-frame-options: deny"),
            "{head}"
        );
        assert!(
            body.contains("depin_orcha_http_requests_total")
                || body.is_empty()
                || body.contains('#'),
            "{body}"
        );
        // A wrong password and no password: 401 asking for Basic.
        for creds in [vec!["-u".to_string(), "alice:nope".to_string()], vec![]] {
            let mut a = vec!["--cacert".to_string(), ca.clone()];
            a.extend(creds);
            a.push(url.clone());
            let (head, _) = run(a).await.unwrap().unwrap();
            assert!(head.starts_with("HTTP/1.1 401"), "{head}");
            assert!(
                head.contains("WWW-Authenticate: Basic")
                    || head.contains("www-authenticate: Basic"),
                "{head}"
            );
        }
        // Without the CA the certificate is refused; plain HTTP to the TLS port gets a plain
        // 400, as Go's server answers it.
        let (head, _) = run(vec!["-u".into(), "alice:s3cret".into(), url.clone()])
            .await
            .unwrap()
            .unwrap();
        assert!(
            head.is_empty(),
            "an unverified certificate was accepted: {head}"
        );
        let (head, body) = run(vec![format!("http://localhost:{}/metrics", addr.port())])
            .await
            .unwrap()
            .unwrap();
        assert!(head.starts_with("HTTP/1.0 400"), "{head}");
        assert_eq!(body, "Client sent an HTTP request to an HTTPS server.\n");
        let _ = tx.send(());
        let res = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(res, Ok(Ok(Ok(())))), "{res:?}");
    }

    /// One request on a new connection; the raw answer (empty when none came in `wait`).
    async fn ask(addr: SocketAddr, path: &str, wait: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(wait, c.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_limit_the_longest_waiting_connection_makes_room() {
        let st = state();
        st.set_ready(true);
        let s = Server::bind("127.0.0.1:0".parse().unwrap(), st)
            .unwrap()
            .with_max_connections(2);
        let addr = s.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(s.serve(async {
            let _ = rx.await;
        }));
        use tokio::io::AsyncReadExt;
        // Two connections that never send a request hold both places (slowloris).
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Before they have waited a second: the reserve serves health checks, nothing else.
        let t = std::time::Instant::now();
        let health = ask(addr, "/-/healthy", Duration::from_secs(5)).await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let api = ask(addr, "/api/v1/query?query=1", Duration::from_secs(5)).await;
        assert!(api.starts_with("HTTP/1.1 503"), "{api}");
        // Once they have waited longer, a newcomer takes the place of the oldest.
        tokio::time::sleep(MIN_WAIT).await;
        let api = ask(addr, "/api/v1/query?query=1", Duration::from_secs(5)).await;
        assert!(api.starts_with("HTTP/1.1 200"), "{api}");
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), a.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        drop(b);
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    const MIN_WAIT: Duration = super::super::conns::MIN_WAIT_BEFORE_EVICT;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_never_arrives_gets_408_after_the_body_timeout() {
        let st = state();
        st.set_ready(true);
        let s = Server::bind("127.0.0.1:0".parse().unwrap(), st)
            .unwrap()
            .with_body_read_timeout(Duration::from_millis(300));
        let addr = s.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(s.serve(async {
            let _ = rx.await;
        }));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // 100 bytes declared, 7 sent, the connection kept open: a slow-loris body.
        c.write_all(b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nquery=1").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        let n = match n {
            Ok(Ok(n)) => n,
            other => panic!("no answer to a stalled body: {other:?}"),
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

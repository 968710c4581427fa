//! The hyper plumbing: bind a listener, accept HTTP/1.1 connections with keep-alive, hand each
//! request to [`super::handle`], and on shutdown stop accepting, let every connection finish the
//! request it is serving, then return.
//!
//! Limits that protect the process: hyper's header count and size caps, a header read timeout
//! and a body read timeout against slow clients, the body limit in `handle`, and at most
//! `max_connections` open connections (more wait in the kernel's accept queue, as Prometheus'
//! `--web.max-connections` does). With a [`WebConfig`] it also speaks TLS (the handshake has
//! [`TLS_HANDSHAKE_TIMEOUT`]) and checks basic auth on every request before routing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::webconfig::WebConfig;
use super::AppState;

/// Most request headers hyper accepts before answering 431.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request line plus headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client has this long to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client has this long to send a request body once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A client has this long to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--web.max-connections` (Prometheus' is 512 too).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

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

    /// At most `n` connections open at once (0: no limit).
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
        tracing::info!(%addr, tls = tls.is_some(), "serving HTTP");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        let slots = Arc::new(tokio::sync::Semaphore::new(if self.max_connections == 0 {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            self.max_connections
        }));
        loop {
            // A slot first, then accept: beyond the limit, clients wait in the accept queue.
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and the like: back off instead of spinning.
                            tracing::warn!(error = %e, %addr, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let (state, web, stop) = (self.state.clone(), self.web.clone(), stop_rx.clone());
                    let body_timeout = self.body_read_timeout;
                    match tls.clone() {
                        None => {
                            tokio::spawn(async move {
                                let _ = stream.set_nodelay(true);
                                serve_connection(stream, peer, state, web, body_timeout, stop).await;
                                drop(permit);
                            });
                        }
                        Some(acceptor) => {
                            tokio::spawn(async move {
                                let _ = stream.set_nodelay(true);
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => serve_connection(tls, peer, state, web, body_timeout, stop).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                                drop(permit);
                            });
                        }
                    }
                }
            }
        }
        drop(listener);
        drop(stop_rx);
        // Tell every connection to finish, then wait until each has dropped its receiver.
        let _ = stop_tx.send(true);
        stop_tx.closed().await;
        Ok(())
    }
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

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    state: Arc<AppState>,
    web: Option<Arc<WebConfig>>,
    body_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        let web = web.clone();
        async move { Ok::<_, Infallible>(guarded(&state, web.as_deref(), body_timeout, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, %peer, "connection ended with an error during shutdown");
    }
}

/// Basic auth before anything else (a 401 reads no body), the body within
/// [`BODY_READ_TIMEOUT`], then [`super::handle`]; the web config's headers on every answer.
async fn guarded(
    state: &AppState,
    web: Option<&WebConfig>,
    body_timeout: Duration,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<super::stream::AnyBody> {
    use http_body_util::BodyExt;
    let whole = super::stream::whole;
    let mut resp = match web.and_then(|w| w.check_basic_auth(req.headers())) {
        Some(denied) => {
            let handler = super::handler_label(req.uri().path());
            state
                .metrics
                .requests
                .with_label_values(&[handler, "401"])
                .inc();
            whole(denied)
        }
        None => {
            let (parts, body) = req.into_parts();
            // One byte over the limit is enough for `handle` to answer 413.
            let limited = http_body_util::Limited::new(body, super::MAX_BODY_BYTES + 1);
            match tokio::time::timeout(body_timeout, limited.collect()).await {
                Ok(Ok(b)) => {
                    let req =
                        hyper::Request::from_parts(parts, http_body_util::Full::new(b.to_bytes()));
                    // Streaming routes (export, events) first, then the ordinary ones.
                    super::stream::handle_any(state, req).await
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    whole(super::text_response(
                        hyper::StatusCode::PAYLOAD_TOO_LARGE,
                        "text/plain; charset=utf-8",
                        format!("request body larger than {} bytes\n", super::MAX_BODY_BYTES),
                    ))
                }
                Ok(Err(e)) => whole(super::text_response(
                    hyper::StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    format!("error reading request body: {e}\n"),
                )),
                Err(_) => whole(super::text_response(
                    hyper::StatusCode::REQUEST_TIMEOUT,
                    "text/plain; charset=utf-8",
                    format!(
                        "request body not received within {}s\n",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )),
            }
        }
    };
    if let Some(w) = web {
        w.apply_headers(resp.headers_mut());
    }
    resp
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
        // Without the CA the certificate is refused; plain HTTP to the TLS port gets no answer.
        let (head, _) = run(vec!["-u".into(), "alice:s3cret".into(), url.clone()])
            .await
            .unwrap()
            .unwrap();
        assert!(
            head.is_empty(),
            "an unverified certificate was accepted: {head}"
        );
        let (head, _) = run(vec![format!("http://localhost:{}/metrics", addr.port())])
            .await
            .unwrap()
            .unwrap();
        assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
        let _ = tx.send(());
        let res = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(res, Ok(Ok(Ok(())))), "{res:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_limit_wait_to_be_accepted() {
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
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Two idle connections hold both slots.
        let a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let early = tokio::time::timeout(Duration::from_millis(300), c.read_to_end(&mut buf)).await;
        assert!(
            early.is_err(),
            "a third connection was served while two held the limit: {buf:?}"
        );
        drop(a);
        let late = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        assert!(matches!(late, Ok(Ok(_))), "{late:?}");
        assert!(
            String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "{buf:?}"
        );
        drop(b);
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

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

//! The hyper plumbing: bind a listener, accept HTTP/1.1 connections with keep-alive, hand each
//! request to [`super::handle`], and on shutdown stop accepting, let every connection finish the
//! request it is serving, then return.
//!
//! Limits that protect the process: hyper's header count and size caps, a header read timeout
//! against slow clients, and the body limit in `handle`.

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

use super::AppState;

/// Most request headers hyper accepts before answering 431.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request line plus headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client has this long to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound server. Bind first (port 0 picks a free port), read the address, then serve.
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl Server {
    /// Binds the listening socket. Synchronous, so it needs no runtime and fails early.
    pub fn bind(addr: SocketAddr, state: Arc<AppState>) -> Result<Server, Error> {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Server {
            listener,
            addr,
            state,
        })
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
            TcpListener::from_std(self.listener).map_err(|source| Error::Serve { addr, source })?;
        tracing::info!(%addr, "serving HTTP");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
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
                    tokio::spawn(serve_connection(stream, peer, self.state.clone(), stop_rx.clone()));
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

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(super::stream::handle_any(&state, req).await) }
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
}

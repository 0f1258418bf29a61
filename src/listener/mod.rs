//! The HTTP(S) listener: accepts connections (TLS when configured), serves each with hyper's
//! HTTP/1.1 under connection limits, and shuts down without dropping a request:
//!
//! 1. On the shutdown signal it stops completing new handshakes, accepts every connection
//!    already completed or under way (closing the listener would reset them, losing requests
//!    their clients had already sent), then closes the listening socket (see `close.rs`).
//! 2. Every response from then on carries `Connection: close` (the `draining` flag, read by the
//!    HTTP middleware), so clients close their connections after their next answer.
//! 3. Connections still open after `idle_close` are told to shut down gracefully: hyper finishes
//!    a request in progress and closes an idle connection. Up to `grace` in total is allowed.
//!
//! A connection costs little until its client sends something: its task waits for the first
//! byte (under the header timeout) before the TLS handshake or hyper's connection state and read
//! buffer exist, so thousands of idle connections hold a task and a socket each.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

mod close;
mod incoming;

pub use incoming::incoming;

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; beyond it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also reclaims idle keep-alive
    /// connections): for the first request counted from the accept, TLS handshake included.
    pub header_timeout: Duration,
}

/// How shutdown proceeds (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub idle_close: Duration,
    pub grace: Duration,
}

/// TLS from PEM files.
#[derive(Clone)]
pub struct Tls(TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads a PEM certificate chain and its private key.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing certificates in {}", cert.display()))?;
        anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
        let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
            .with_context(|| format!("parsing the private key in {}", key.display()))?
            .with_context(|| format!("no private key in {}", key.display()))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the certificate does not match the key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(TlsAcceptor::from(Arc::new(config))))
    }
}

/// Open connections, and the signal that tells them to finish.
struct Tracker {
    open: AtomicUsize,
    changed: Notify,
    stop: watch::Sender<bool>,
}

struct Open(Arc<Tracker>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Tracker {
    fn enter(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(self.clone())
    }

    /// Waits until no connection is open or `until` passes; true if none is open.
    async fn wait_closed(&self, until: Instant) -> bool {
        loop {
            let notified = self.changed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(until.into(), notified)
                .await
                .is_err()
            {
                return self.open.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module docs).
/// `draining` is set when shutdown begins. Returns whether every connection finished in time.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    limits: ConnectionLimits,
    draining: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Drain,
) -> bool {
    let (stop, _) = watch::channel(false);
    let tracker = Arc::new(Tracker {
        open: AtomicUsize::new(0),
        changed: Notify::new(),
        stop,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let conn = Connections {
        tls,
        app,
        limits,
        tracker: tracker.clone(),
    };
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => conn.spawn(stream, peer, permit),
                Err(e) => accept_error(e).await,
            },
        }
    }
    draining.store(true, Ordering::SeqCst);
    let started = Instant::now();
    // Connections the kernel completed (or is completing) but nobody accepted yet: take them
    // rather than reset them.
    let settle = close::HANDSHAKE_SETTLE.min(drain.idle_close);
    close::close(listener, settle, |stream, peer| {
        let permit = permits.clone().try_acquire_owned().ok();
        conn.spawn_unbounded(stream, peer, permit);
    })
    .await;
    if !tracker.wait_closed(started + drain.idle_close).await {
        let _ = tracker.stop.send(true);
    }
    tracker.wait_closed(started + drain.grace).await
}

/// Transient accept errors (out of file descriptors, a connection reset before accept) must
/// not end the server; back off briefly.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

struct Connections {
    tls: Option<Tls>,
    app: Router,
    limits: ConnectionLimits,
    tracker: Arc<Tracker>,
}

impl Connections {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        self.spawn_unbounded(stream, peer, Some(permit));
    }

    fn spawn_unbounded(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let _ = stream.set_nodelay(true);
        let open = self.tracker.enter();
        let mut stop = self.tracker.stop.subscribe();
        let (tls, app, limits) = (self.tls.clone(), self.app.clone(), self.limits);
        tokio::spawn(async move {
            let _held = (open, permit);
            let head = FirstHead::new(limits.header_timeout);
            if !first_byte(&stream, head.deadline, &mut stop).await {
                return;
            }
            match tls {
                None => serve_connection(stream, peer, app, head, stop).await,
                Some(Tls(acceptor)) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout_at(head.deadline, handshake).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, head, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Waits until the client has sent something (true), or until `deadline` or shutdown (false:
/// the connection is closed). Until its first byte a connection holds no read buffer and no
/// HTTP state, only its task and socket: thousands of idle connections cost little memory, and
/// one that never sends costs no HTTP set-up.
async fn first_byte(
    stream: &TcpStream,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        ready = tokio::time::timeout_at(deadline, stream.readable()) => matches!(ready, Ok(Ok(()))),
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

/// The header timeout of one connection and the deadline of its first request head: the whole
/// timeout counts from the accept (waiting for the first byte, the TLS handshake, the head), so
/// a slow client gets no more time than the bound. Later requests on the connection get the
/// same timeout from hyper, counted from the end of the previous answer.
#[derive(Debug, Clone, Copy)]
struct FirstHead {
    timeout: Duration,
    deadline: tokio::time::Instant,
}

impl FirstHead {
    fn new(bound: Duration) -> FirstHead {
        let timeout = jittered(bound);
        FirstHead {
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
        }
    }
}

/// Most bytes a connection buffers while reading (hyper's default is about 400 KB): the largest
/// request head accepted (a longer one is answered 431 and the connection closed) and the read
/// buffer a fast body upload grows to. Bounds memory per connection at `--max-connections`.
pub const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    head: FirstHead,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head_seen = Arc::new(AtomicBool::new(false));
    let seen = head_seen.clone();
    let service = app.map_request(move |mut request: axum::extract::Request<_>| {
        seen.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head.timeout)
        .max_buf_size(CONNECTION_BUFFER_BYTES)
        // The buffer bound alone is soft for a head read in one go (the buffer's capacity can
        // exceed it); this makes the head bound exact.
        .max_header_size(CONNECTION_BUFFER_BYTES)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    // hyper starts its header timer when it starts reading; the first head must also be in by
    // the deadline counted from the accept.
    let first_head_late = async {
        tokio::time::sleep_until(head.deadline).await;
        if head_seen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let stopping = async {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        result = connection.as_mut() => return log_end(peer, result),
        _ = first_head_late => {
            tracing::debug!(%peer, "no complete request head within the header timeout");
            return;
        }
        _ = stopping => connection.as_mut().graceful_shutdown(),
    }
    log_end(peer, connection.await);
}

/// The header timeout of one connection: between 3/4 of `timeout` and `timeout`, at random.
/// Connections a client opened together (thousands of idle ones, say) then do not all time out
/// in the same instant, closed and reopened in one burst that holds up the requests of everyone
/// else; none waits longer than the configured bound.
fn jittered(timeout: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState is randomly keyed per thread and moved on per call: cheap, and
    // unpredictable enough to spread expiries (this is not a security boundary).
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    timeout.mul_f64(1.0 - 0.25 * fraction)
}

fn log_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Client-side ends (resets, timeouts, malformed requests) are expected; not errors.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_timeouts_are_spread_over_the_last_quarter_and_never_exceed_the_bound() {
        let bound = Duration::from_secs(10);
        let got: Vec<Duration> = (0..1000).map(|_| jittered(bound)).collect();
        assert!(got.iter().all(|t| *t <= bound && *t >= bound.mul_f64(0.75)));
        let (lo, hi) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        // 1000 draws over 2.5 s: spread, not one instant.
        assert!(*hi - *lo > Duration::from_secs(2), "{lo:?}..{hi:?}");
    }
}

//! The listeners: plain HTTP or TLS (rustls), HTTP/1.1 and HTTP/2, bounds on how long
//! headers may take, how long a connection may idle and how many may be open, and a
//! graceful drain on shutdown. The client and admin listeners share this machinery.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

/// Per-connection facts handed to the request handler.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Load a rustls server config from PEM files, offering h2 and http/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("server.tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "server.tls_cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("server.tls_cert: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "server.tls_key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("server.tls_cert/server.tls_key: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How a listener bounds its connections.
#[derive(Clone)]
pub struct Options {
    /// Names the listener in logs ("client", "admin").
    pub name: &'static str,
    pub tls: Option<TlsAcceptor>,
    /// How long request headers may take, and how long a new connection may go
    /// without starting a request.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in flight before it is closed
    /// (HTTP/2: GOAWAY). Pings do not count: they keep a dead peer from lingering, not
    /// an idle one from being closed.
    pub idle_timeout: Duration,
    /// How long a write may make no progress (the client stopped reading).
    pub write_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub grace: Duration,
    /// Connections held at once; further ones are accepted and closed at once, so that
    /// this listener cannot take every descriptor the process has.
    pub max_connections: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub h2_max_concurrent_streams: u32,
}

/// Serve `handler` on `listener` until `shutdown` resolves, then stop accepting and give
/// in-flight requests up to `grace` to finish.
pub async fn serve<H, F>(
    listener: TcpListener,
    options: Options,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, Connection) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.h2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let name = options.name;
    let mut last_refusal_logged: Option<Instant> = None;
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: the descriptor comes back now, and the client learns at
            // once rather than waiting in the backlog.
            drop(stream);
            if last_refusal_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(
                    listener = name,
                    max = options.max_connections,
                    "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, options.write_timeout);
        let conn = Connection {
            peer,
            tls: options.tls.is_some(),
        };
        let tracker = Arc::new(Tracker::new());
        let service = hyper::service::service_fn({
            let handler = handler.clone();
            let tracker = tracker.clone();
            move |req: Request<Incoming>| {
                let in_flight = tracker.begin();
                let fut = handler(req, conn);
                async move {
                    let resp = fut.await;
                    // In flight until the response body is sent or dropped.
                    Ok::<Response<Body>, Infallible>(resp.map(|b| {
                        Body::new(Tracked {
                            inner: b,
                            _in_flight: in_flight,
                        })
                    }))
                }
            }
        });
        let builder = builder.clone();
        let tls = options.tls.clone();
        let bounds = Bounds {
            first_request: options.header_read_timeout,
            idle: options.idle_timeout,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = match tls {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    drive(conn, &tracker, bounds).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    drive(conn, &tracker, bounds).await
                }
            };
            match outcome {
                Ended::Done(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "connection ended with an error")
                }
                Ended::Done(Ok(())) => {}
                Ended::NoRequest => {
                    tracing::debug!(%peer, "no request within the header timeout; closed")
                }
                Ended::Idle => tracing::debug!(%peer, "idle connection closed"),
            }
        });
    }

    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(grace = ?options.grace, listener = name, "no longer accepting connections; draining in-flight requests");
    // Every connection holds a slot until it ends: all slots back means all drained.
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "shutdown grace period ended with requests still in flight"
        );
    }
}

/// When a connection is closed for reasons of its own.
struct Bounds {
    first_request: Duration,
    idle: Duration,
    stop: watch::Receiver<bool>,
}

/// Why a connection ended.
enum Ended<E> {
    Done(Result<(), E>),
    NoRequest,
    Idle,
}

/// Drive a connection until it ends, closing it if no request starts within
/// `first_request` of being accepted, gracefully once it has had no request in flight
/// for `idle`, and gracefully when the server stops.
///
/// hyper's HTTP/1 header timeout only runs once its parser does: before that, protocol
/// detection waits for the 24 bytes that might be an HTTP/2 preface, with no limit. An
/// HTTP/2 connection may never open a stream, and hyper's keep-alive pings keep an idle
/// one open forever. Without this, idle clients would hold connections indefinitely.
async fn drive<C: GracefulConnection>(
    conn: C,
    tracker: &Tracker,
    mut bounds: Bounds,
) -> Ended<C::Error> {
    tokio::pin!(conn);
    let mut check = tokio::time::Instant::now() + bounds.first_request;
    let idle = loop {
        tokio::select! {
            out = conn.as_mut() => return Ended::Done(out),
            _ = bounds.stop.wait_for(|s| *s) => break false,
            _ = tokio::time::sleep_until(check) => {
                let Some(idle_since) = tracker.idle_since() else {
                    check = tokio::time::Instant::now() + bounds.idle;
                    continue;
                };
                let Some(idle_since) = idle_since else {
                    return Ended::NoRequest;
                };
                if idle_since + bounds.idle <= tokio::time::Instant::now() {
                    break true;
                }
                check = idle_since + bounds.idle;
            }
        }
    };
    conn.as_mut().graceful_shutdown();
    if idle {
        // Nothing is in flight: a peer that does not let go is cut.
        match tokio::time::timeout(bounds.first_request, conn).await {
            Ok(Ok(())) | Err(_) => Ended::Idle,
            Ok(Err(e)) => Ended::Done(Err(e)),
        }
    } else {
        // The server's drain bounds this wait.
        Ended::Done(conn.await)
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Tracker {
    origin: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` when the last request finished; `u64::MAX` until a
    /// request has started.
    idle_since_ms: AtomicU64,
}

impl Tracker {
    fn new() -> Self {
        Tracker {
            origin: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Marks the connection as having started a request.
        let _ =
            self.idle_since_ms
                .compare_exchange(u64::MAX, 0, Ordering::AcqRel, Ordering::Acquire);
        InFlight(self.clone())
    }

    /// `None` while a request is in flight; `Some(None)` if none ever started;
    /// otherwise when the last one finished.
    fn idle_since(&self) -> Option<Option<tokio::time::Instant>> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.idle_since_ms.load(Ordering::Acquire) {
            u64::MAX => Some(None),
            ms => Some(Some(self.origin + Duration::from_millis(ms))),
        }
    }
}

/// One request in flight; finished when dropped.
struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.origin.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection whose writes make no progress for `limit` fails with `TimedOut`.
///
/// A client that stops reading a response would otherwise hold its connection, and the
/// upstream connection feeding it, forever: once the socket buffer is full nothing is
/// polled, so no body timer can fire. Here the wait itself is timed.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    /// Armed when a write first returns `Pending`; cleared by any write that progresses.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// Called when the inner write is pending: wait, unless it has been pending too long.
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<R>(
        &mut self,
        r: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progressed(r, cx)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

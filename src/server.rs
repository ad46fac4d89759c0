//! The listeners: plain HTTP or TLS (rustls), HTTP/1.1 and HTTP/2, bounds on how long
//! headers may take, how long a connection may idle and how many may be open, and a
//! graceful drain on shutdown. The client and admin listeners share this machinery.

mod lifetime;
mod write_deadline;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use self::lifetime::{drive, Bounds, Ended, Tracked, Tracker};
use self::write_deadline::WriteDeadline;

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

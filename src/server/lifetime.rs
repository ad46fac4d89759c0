//! How long a connection lives: closed if no request starts soon after it is
//! accepted, closed gracefully once it has idled too long or the server stops.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

/// When a connection is closed for reasons of its own.
pub(super) struct Bounds {
    pub first_request: Duration,
    pub idle: Duration,
    pub stop: watch::Receiver<bool>,
}

/// Why a connection ended.
pub(super) enum Ended<E> {
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
pub(super) async fn drive<C: GracefulConnection>(
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
pub(super) struct Tracker {
    origin: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` when the last request finished; `u64::MAX` until a
    /// request has started.
    idle_since_ms: AtomicU64,
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            origin: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(u64::MAX),
        }
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
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
pub(super) struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.origin.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub(super) struct Tracked {
    pub inner: Body,
    /// Held for its drop.
    pub _in_flight: InFlight,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_from_when_its_last_request_finished() {
        let tracker = Arc::new(Tracker::new());
        assert_eq!(tracker.idle_since(), Some(None), "no request yet");
        let first = tracker.begin();
        let second = tracker.begin();
        assert_eq!(tracker.idle_since(), None, "two in flight");
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(first);
        assert_eq!(tracker.idle_since(), None, "one still in flight");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(second);
        let since = tracker.idle_since().flatten().expect("idle");
        assert_eq!(since.duration_since(tracker.origin), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_response_body_keeps_its_request_in_flight_until_dropped() {
        use http_body_util::BodyExt;
        let tracker = Arc::new(Tracker::new());
        let body = Tracked {
            inner: Body::from("hello"),
            _in_flight: tracker.begin(),
        };
        assert_eq!(tracker.idle_since(), None);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert!(
            tracker.idle_since().flatten().is_some(),
            "done once dropped"
        );
    }
}

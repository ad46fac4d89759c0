//! Streaming bodies between client and upstream: counted, watched for stalls, never
//! collected in memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The last moment either side of an exchange moved a byte, shared between the request
/// body and the wait for the response so a long but moving upload never times out.
#[derive(Clone)]
pub struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// The body stalled for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Stalled(pub Duration);

/// Wraps a body: counts bytes into a metrics counter, records activity, and fails the
/// stream if no frame arrives within `idle`.
///
/// The timer is not reset on every frame (that would cost a timer-wheel update per
/// frame on the hot path); it is re-armed from the last frame's time when it fires.
pub struct Metered<B> {
    inner: B,
    counter: metrics::Counter,
    activity: Option<Activity>,
    idle: Duration,
    last_frame: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Metered<B> {
    pub fn new(
        inner: B,
        counter: metrics::Counter,
        idle: Duration,
        activity: Option<Activity>,
    ) -> Self {
        Metered {
            inner,
            counter,
            activity,
            idle,
            last_frame: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.increment(data.len() as u64);
                }
                if let Some(a) = &this.activity {
                    a.touch();
                }
                this.last_frame = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(a) = &this.activity {
                    a.touch();
                }
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                ready!(this.sleep.as_mut().poll(cx));
                let deadline = this.last_frame + this.idle;
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(Box::new(Stalled(this.idle)))));
                }
                // Frames arrived since the timer was set: wait out the rest.
                this.sleep.as_mut().reset(deadline);
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn passes_bytes_through_and_keeps_the_size() {
        let body = Metered::new(
            Full::new(Bytes::from_static(b"hello")),
            metrics::Counter::noop(),
            Duration::from_secs(1),
            None,
        );
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_moving_never_times_out() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
        });
        let body = Metered::new(
            StreamBody::new(tokio_stream_from(rx)),
            metrics::Counter::noop(),
            Duration::from_secs(1),
            None,
        );
        assert_eq!(
            body.collect().await.unwrap().to_bytes().len(),
            10,
            "9 s in all, never 1 s idle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_timeout() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = StreamBody::new(tokio_stream_from(rx));
        let body = Metered::new(
            stream,
            metrics::Counter::noop(),
            Duration::from_secs(2),
            None,
        );
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("no data"), "{err}");
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}

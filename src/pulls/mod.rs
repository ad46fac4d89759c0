//! The pull log: every manifest `GET` and `HEAD` the client listener answered, with the
//! digest it served and who asked. The ledger says what a tag named; this says what
//! was actually pulled, and when.
//!
//! Recording never slows or fails a pull: the gateway hands each record to a bounded
//! queue with `try_send` ([`PullLog`]), and a background task ([`writer`]) writes them
//! in batches through its own small pool. A full queue or an unreachable database drops
//! records, counted in `tagwarden_pulls_dropped_total`.

pub mod query;
pub mod store;
pub mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::response::Response;
use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{header, HeaderMap, Method};
use tokio::sync::mpsc;

use crate::enforce::identity::{clip, identity_from_authorization};
use crate::oci::Route;
use crate::proxy::Client;
use crate::telemetry::Metrics;

pub use query::{Pull, PullFilter};

/// One manifest read, as answered.
#[derive(Debug, Clone)]
pub struct PullRecord {
    pub at: DateTime<Utc>,
    pub repository: String,
    pub reference: String,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub method: &'static str,
    pub status: u16,
    pub identity: Option<String>,
    pub remote_addr: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// What is known of a manifest read before it is forwarded; completed from the answer.
pub struct PendingPull(PullRecord);

/// The request path's handle on the pull log. Cheap to clone; disabled when built with
/// [`PullLog::disabled`].
#[derive(Clone)]
pub struct PullLog {
    tx: Option<mpsc::Sender<PullRecord>>,
    metrics: Metrics,
    warned: Arc<WarnEvery>,
}

impl PullLog {
    pub fn disabled(metrics: Metrics) -> Self {
        PullLog {
            tx: None,
            metrics,
            warned: Arc::new(WarnEvery::minute()),
        }
    }

    /// A log whose records go to `tx` (see [`writer::spawn`]).
    pub fn new(tx: mpsc::Sender<PullRecord>, metrics: Metrics, warned: Arc<WarnEvery>) -> Self {
        PullLog {
            tx: Some(tx),
            metrics,
            warned,
        }
    }

    /// Start a record if this request is a manifest read; `None` otherwise or when
    /// the log is off. Reads the headers now, since the request is consumed by the
    /// forwarder.
    pub fn begin(&self, route: &Route, parts: &Parts, client: &Client) -> Option<PendingPull> {
        self.tx.as_ref()?;
        let Route::Manifest { name, reference } = route else {
            return None;
        };
        let method = match parts.method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            _ => return None,
        };
        Some(PendingPull(PullRecord {
            at: Utc::now(),
            repository: name.to_string(),
            reference: reference.to_string(),
            digest: None,
            media_type: None,
            method,
            status: 0,
            identity: header_str(&parts.headers, header::AUTHORIZATION)
                .and_then(identity_from_authorization),
            remote_addr: client.peer.ip().to_string(),
            user_agent: header_str(&parts.headers, header::USER_AGENT).map(|s| clip(s, 512)),
            request_id: client.request_id.clone(),
        }))
    }

    /// Complete the record from the response and queue it, without waiting.
    pub fn finish(&self, pending: PendingPull, resp: &Response) {
        let Some(tx) = &self.tx else { return };
        let mut record = pending.0;
        record.status = resp.status().as_u16();
        record.digest = header_str(resp.headers(), "docker-content-digest").map(|s| clip(s, 200));
        record.media_type = header_str(resp.headers(), header::CONTENT_TYPE).map(|s| clip(s, 200));
        if tx.try_send(record).is_err() {
            self.metrics.pulls_dropped(1);
            self.warned
                .warn("pull log: the queue is full; records are being dropped");
        }
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Logs a warning at most once a minute, however often it is asked to.
pub struct WarnEvery {
    every_secs: u64,
    last: AtomicU64,
}

impl WarnEvery {
    pub fn minute() -> Self {
        WarnEvery {
            every_secs: 60,
            last: AtomicU64::new(0),
        }
    }

    pub fn warn(&self, message: &str) {
        if self.due(Utc::now().timestamp().max(0) as u64) {
            tracing::warn!("{message}");
        }
    }

    fn due(&self, now: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + self.every_secs)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_a_minute() {
        let w = WarnEvery::minute();
        assert!(w.due(1000));
        assert!(!w.due(1001));
        assert!(!w.due(1059));
        assert!(w.due(1060));
        assert!(!w.due(1060));
    }
}

//! Leaving a server that turned read-only (a failover) within seconds.
//!
//! sqlx connects to one host and keeps its connections: after a failover, pooled ones
//! may still reach the old primary, now a read-only standby, and every write on them
//! fails with 25006. The first such failure is noted here; every connection opened
//! before it is closed when next acquired instead of being handed out, and a new
//! connection is only used if its server accepts writes. The writes in between fail
//! closed (503), as for any unavailable ledger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds after [`epoch`] of the last read-only failure; 0 for none.
static SEEN: AtomicU64 = AtomicU64::new(0);

pub(super) fn read_only_seen() {
    let now = epoch().elapsed().as_nanos().max(1) as u64;
    if SEEN.swap(now, Ordering::Relaxed) < now.saturating_sub(1_000_000_000) {
        tracing::warn!("the ledger database refused a write as read-only (a failover?); replacing the pooled connections");
    }
}

/// Whether a connection opened `age` ago predates the last read-only failure.
pub(super) fn predates_read_only(age: Duration) -> bool {
    let seen = SEEN.load(Ordering::Relaxed);
    if seen == 0 {
        return false;
    }
    let since = epoch().elapsed().saturating_sub(Duration::from_nanos(seen));
    age > since
}

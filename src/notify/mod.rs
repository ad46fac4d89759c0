//! Webhook notifications for ledger events.
//!
//! **Outbox.** Migration 0008 adds a trigger that writes one `notify_outbox` row per
//! `tag_events` row, in the same transaction, with that transaction's id (`xid8`). A
//! rolled-back write leaves no row; a committed one always has one. Each webhook keeps a
//! cursor, a `(txid, event_id)` position in `notify_cursor`.
//!
//! **Order under concurrency.** Event ids are assigned at insert, but transactions commit
//! in any order: a reader can see id 11 before id 10 commits. So senders do not follow
//! ids. They read, in `(txid, event_id)` order, only rows whose txid is below the oldest
//! transaction still running (`pg_snapshot_xmin`, taken in a statement before the read).
//! Every transaction below that horizon has ended, so no row can later appear behind the
//! cursor. Events of one tag keep their order (writers serialise on the tag's lock);
//! events of unrelated tags written concurrently may arrive in txid rather than id
//! order. The cost: a long-running writing transaction anywhere on the Postgres server
//! delays delivery until it ends.
//!
//! **Delivery.** One sender per webhook ([`sender`]), each with its own two-connection
//! pool; a session advisory lock makes one tagwarden process the sender when several
//! share the database. Events are posted one at a time, in order, as CloudEvents
//! ([`event`]), signed ([`sign`]); the cursor advances only after a 2xx. A failure is
//! retried with backoff and holds back that webhook's later events, never another's.
//! Unselected actions are stepped over. Guarantee: at least once, in order; exactly once
//! from a receiver that dedupes on the CloudEvent `id`, since a crash between the
//! receiver's 2xx and the cursor update resends that one event.

pub mod event;
pub mod sender;
pub mod sign;
pub mod store;

use crate::config::Config;
use crate::telemetry::Metrics;

/// Start one sender per configured webhook; none when there are none.
pub fn start(config: &Config, metrics: &Metrics) -> anyhow::Result<()> {
    for webhook in &config.notify.webhooks {
        let sender = sender::Sender::new(config, webhook, metrics.clone())?;
        tokio::spawn(sender.run());
    }
    Ok(())
}

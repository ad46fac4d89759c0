//! Pending writes (migration 0016): what lets a write of a new immutable tag skip the
//! upstream existence probe without trusting a crash never happened.
//!
//! The probe asks the registry what it holds under a tag the ledger has never seen,
//! because the registry can be ahead of the ledger: a tag pushed before tagwarden,
//! behind it, or forwarded by a write whose commit then failed (a crash, a lost
//! connection between the upstream's answer and the commit). The first two are ruled
//! out only by the operator (`[enforce] ledger_complete`: everything was imported, and
//! nothing writes around tagwarden; reconciliation's drift findings withdraw it per
//! repository). The third is ruled out here: a write announces its tags in a committed
//! row *before* it forwards anything, and the row goes away only in the transaction
//! that binds the tag, or once the upstream is known not to have stored the manifest.
//! A row left behind means "the registry may hold this tag unrecorded": the next write
//! of the tag probes, as it always did.
//!
//! The table is unlogged (migration 0019), so an announcement's commit does not wait for
//! the disk. Postgres empties an unlogged table after a crash, and a promoted standby or
//! a physical backup has it empty: announcements lost with it may belong to writes that
//! reached the registry. A marker row (empty repository and tag) goes with them, and
//! while it is missing no write skips the probe. `tagwarden import` puts it back
//! ([`Ledger::begin_pending_recovery`]).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::{Binding, Ledger, LedgerError};

const FORGET: &str = include_str!("sql/forget.sql");
const TRACKED: &str = include_str!("sql/pending_tracked.sql");
const RECOVERY_BEGIN: &str = include_str!("sql/pending_recovery_begin.sql");
const RECOVERY_END: &str = include_str!("sql/pending_recovery_end.sql");

/// What tagwarden says when it finds the pending writes lost.
pub const PENDING_WRITES_LOST: &str = "the ledger's pending writes were lost (a crash, a failover or a restore of Postgres): every new immutable tag is probed until `tagwarden import` has recorded the registry again";

/// One committed announcement of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub id: i64,
    pub tag: String,
    /// When it was made. With the id it names the row: a crash can have the id
    /// sequence hand out an id again (migration 0019), never at the same time.
    pub at: DateTime<Utc>,
}

impl Ledger {
    /// Withdraw announcements whose write is known not to have stored anything in the
    /// registry (refused, failed before forwarding, or refused by the upstream).
    pub async fn forget(&self, announced: &[Announcement]) -> Result<(), LedgerError> {
        if announced.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = announced.iter().map(|a| a.id).collect();
        let ats: Vec<DateTime<Utc>> = announced.iter().map(|a| a.at).collect();
        sqlx::query(FORGET)
            .bind(ids)
            .bind(ats)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether the pending writes are intact: the marker row that Postgres' crash
    /// recovery, a failover or a restore removes with every announcement is there.
    pub async fn pending_writes_tracked(&self) -> Result<bool, LedgerError> {
        Ok(sqlx::query_scalar(TRACKED).fetch_one(self.pool()).await?)
    }

    /// Start putting back the marker of intact pending writes, if it is missing: a
    /// token row, lost like the rest if the table is emptied again before
    /// [`Ledger::end_pending_recovery`]. `None` when the marker is there.
    ///
    /// Between the two, the caller waits until no write announced before the loss can
    /// still reach the registry, then records every tag the registry holds.
    pub async fn begin_pending_recovery(&self) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(RECOVERY_BEGIN)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Put the marker back, if the token of [`Ledger::begin_pending_recovery`] is still
    /// there (the table was not emptied again meanwhile); whether it was.
    pub async fn end_pending_recovery(&self, token: i64) -> Result<bool, LedgerError> {
        Ok(sqlx::query_scalar(RECOVERY_END)
            .bind(token)
            .fetch_one(self.pool())
            .await?)
    }
}

/// A tag's binding, and what the ledger knows of writes of it that may have reached
/// the registry unrecorded.
#[derive(Debug, Clone)]
pub struct Unseen {
    pub binding: Option<Binding>,
    /// The tag's pending writes the statement saw: in flight, or left behind by one
    /// whose commit did not happen. This write's own are among them only if its
    /// announcement had committed when the statement started.
    pending: Vec<i64>,
    /// Reconciliation once found the repository drifted.
    drifted: bool,
    /// The pending writes are intact: no crash, failover or restore emptied them since
    /// they were last known complete (migration 0019).
    tracked: bool,
}

impl Unseen {
    /// Whether the ledger proves the registry holds nothing under the tag: the pending
    /// writes are intact, no write of it other than `own` (this write's announcements)
    /// is pending, and the repository never drifted. Meaningful only when `binding` is
    /// `None` and this write announced the tag (a read of a tag it did not announce
    /// proves nothing).
    ///
    /// It does not matter whether this write's announcement was visible to the read:
    /// the read ran under the tag's lock, and a write that reached the registry did so
    /// holding that lock, after its announcement committed; so every other write that
    /// can have stored the tag unrecorded left a row the read saw.
    pub fn no_unrecorded_write(&self, own: &[i64]) -> bool {
        self.tracked && !self.drifted && self.pending.iter().all(|id| own.contains(id))
    }

    /// Whether the pending writes are intact (see [`Ledger::pending_writes_tracked`]).
    pub fn tracked(&self) -> bool {
        self.tracked
    }
}

impl Unseen {
    /// A row of `binding_unseen` (migration 0019), as `Ledger::begin_write` reads it
    /// once the write's locks are held.
    pub(super) fn from_row(row: &PgRow) -> Result<Unseen, sqlx::Error> {
        let binding = match row.try_get::<Option<String>, _>("repository")? {
            Some(_) => Some(Binding::from_row(row)?),
            None => None,
        };
        Ok(Unseen {
            binding,
            pending: row.try_get("pending")?,
            drifted: row.try_get("drifted")?,
            tracked: row.try_get("tracked")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unseen(pending: &[i64], drifted: bool) -> Unseen {
        Unseen {
            binding: None,
            pending: pending.to_vec(),
            drifted,
            tracked: true,
        }
    }

    #[test]
    fn only_this_writes_own_pending_rows_leave_the_probe_unnecessary() {
        // Nothing pending, or only this write's own (visible or not yet).
        assert!(unseen(&[], false).no_unrecorded_write(&[7]));
        assert!(unseen(&[7], false).no_unrecorded_write(&[7]));
        assert!(unseen(&[7], false).no_unrecorded_write(&[3, 7]));
        // Another write's row: it may have stored the tag and died before its commit.
        assert!(!unseen(&[5], false).no_unrecorded_write(&[7]));
        assert!(!unseen(&[5, 7], false).no_unrecorded_write(&[7]));
        assert!(!unseen(&[5], false).no_unrecorded_write(&[]));
        // A drifted repository is probed whatever is pending.
        assert!(!unseen(&[], true).no_unrecorded_write(&[7]));
        // Pending writes lost (a crash, a failover, a restore): nothing is proven.
        let lost = Unseen {
            tracked: false,
            ..unseen(&[], false)
        };
        assert!(!lost.no_unrecorded_write(&[7]));
        assert!(!lost.no_unrecorded_write(&[]));
    }
}

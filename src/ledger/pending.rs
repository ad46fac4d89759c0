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

use sqlx::{FromRow, Row};

use super::{Binding, Ledger};
use super::{LedgerError, LedgerTx};

const ANNOUNCE: &str = include_str!("sql/announce.sql");
const FORGET: &str = include_str!("sql/forget.sql");
const BINDING_UNSEEN: &str = include_str!("sql/binding_unseen.sql");

impl Ledger {
    /// Announce, in a committed row per tag, that a write of `tags` is about to reach
    /// the registry; `(id, tag)` of each, for [`Ledger::forget`]. On connections of
    /// its own, so that a write may announce while it opens its transaction: the row
    /// must be committed before anything is forwarded, not before the locks are held
    /// (a write that reads under the lock before this one forwards has nothing of it
    /// to see).
    pub async fn announce(
        &self,
        repository: &str,
        tags: &[&str],
    ) -> Result<Vec<(i64, String)>, LedgerError> {
        Ok(sqlx::query_as(ANNOUNCE)
            .bind(repository)
            .bind(tags)
            .fetch_all(self.announcements())
            .await?)
    }

    /// Withdraw announcements whose write is known not to have stored anything in the
    /// registry (refused, failed before forwarding, or refused by the upstream).
    pub async fn forget(&self, ids: &[i64]) -> Result<(), LedgerError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(FORGET)
            .bind(ids)
            .execute(self.announcements())
            .await?;
        Ok(())
    }
}

/// A tag's binding, and whether the ledger proves the registry holds nothing under it.
#[derive(Debug, Clone)]
pub struct Unseen {
    pub binding: Option<Binding>,
    /// No other write of the tag is pending (in flight, or left behind by one whose
    /// commit did not happen), and reconciliation never found the repository drifted.
    /// Meaningful only when `binding` is `None` and this write announced the tag.
    pub no_unrecorded_write: bool,
}

impl LedgerTx {
    /// [`LedgerTx::binding`], and in the same statement whether any write of the tag
    /// other than `own` (this write's announcements) is pending, or the repository ever
    /// drifted. Call after [`LedgerTx::lock`], in a statement of its own: a statement
    /// reads the snapshot taken when it starts, so one that took the lock too would not
    /// see what the lock's previous holder committed.
    pub async fn binding_unseen(
        &mut self,
        repository: &str,
        tag: &str,
        own: &[i64],
    ) -> Result<Unseen, LedgerError> {
        let row = sqlx::query(BINDING_UNSEEN)
            .bind(repository)
            .bind(tag)
            .bind(own)
            .fetch_one(&mut *self.tx)
            .await?;
        let binding = match row.try_get::<Option<String>, _>("repository")? {
            Some(_) => Some(Binding::from_row(&row)?),
            None => None,
        };
        Ok(Unseen {
            binding,
            no_unrecorded_write: row.try_get("no_unrecorded_write")?,
        })
    }
}

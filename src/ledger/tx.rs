//! A write transaction, and the statements that read and write bindings and events
//! under its tag locks.

use sqlx::pool::PoolConnection;
use sqlx::{Executor as _, Postgres};

use super::chain;
use super::failover;
use super::{Actor, Binding, LedgerError, NewBinding, NewEvent};

const LOCK: &str = include_str!("sql/lock.sql");
const BINDINGS_FOR_DIGEST: &str = include_str!("sql/bindings_for_digest.sql");
const RELEASE_TAGS: &str = include_str!("sql/release_tags.sql");
/// The binding's upsert, with the end of the tag's pending writes (see `super::pending`).
const BIND: &str = concat!(
    include_str!("sql/clear_pending.part.sql"),
    include_str!("sql/upsert_binding.sql")
);
const MARK_DELETED: &str = include_str!("sql/mark_deleted.sql");
const APPEND: &str = include_str!("sql/append.sql");
const TAGS_WITH_PREFIX: &str = include_str!("sql/tags_with_prefix.sql");

/// A ledger transaction. Locks taken with [`LedgerTx::lock`] last until commit or
/// rollback, and are released by the database if tagwarden dies, so a crash can never
/// leave a tag blocked.
///
/// The transaction is opened by hand on a pooled connection (see `Ledger::open`)
/// rather than by sqlx, whose opening statement's rows are discarded: a write reads in
/// the round trip that opens its transaction. One dropped before it committed or
/// rolled back (an error, a cancelled request) closes its connection, which ends the
/// transaction and its locks on the server; it never goes back to the pool open.
pub struct LedgerTx {
    pub(super) tx: PoolConnection<Postgres>,
    /// Whether the server may still hold this transaction open.
    open: bool,
}

impl Drop for LedgerTx {
    fn drop(&mut self) {
        if self.open {
            self.tx.close_on_drop();
        }
    }
}

/// The advisory-lock key of a `(repository, tag-or-digest)` pair.
pub(super) fn lock_key(repository: &str, item: &str) -> i64 {
    use sha2::{Digest as _, Sha256};
    let h = Sha256::new()
        .chain_update(repository.as_bytes())
        .chain_update([0u8])
        .chain_update(item.as_bytes())
        .finalize();
    i64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// The keys of the exclusive locks on `items` of a repository, in the one order every
/// transaction takes them in, so that concurrent requests cannot deadlock.
pub(super) fn exclusive_keys(repository: &str, items: &[&str]) -> Vec<i64> {
    let mut keys: Vec<i64> = items.iter().map(|i| lock_key(repository, i)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl LedgerTx {
    /// Take exclusive transaction-scoped locks on the given tags and digests of a
    /// repository, in a fixed order so that concurrent requests cannot deadlock.
    pub async fn lock(&mut self, repository: &str, items: &[&str]) -> Result<(), LedgerError> {
        let keys = exclusive_keys(repository, items);
        // One round trip; the locks are taken one after the other in the array's order.
        // It also asks whether this transaction may write: every write path locks
        // before it forwards anything, so a server that turned read-only (a failover)
        // is found before the registry stores what the ledger could not record.
        let read_only: Vec<String> = sqlx::query_scalar(LOCK)
            .bind(&keys)
            .fetch_all(&mut *self.tx)
            .await?;
        if read_only.iter().any(|r| r == "on") {
            failover::read_only_seen();
            return Err(LedgerError::Unavailable(
                "the ledger database server is read-only (a standby, or an old primary after a failover)".into(),
            ));
        }
        Ok(())
    }

    pub async fn binding(
        &mut self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Binding>, LedgerError> {
        super::queries::binding(&mut *self.tx, repository, tag).await
    }

    /// Live (not deleted) bindings of a repository that name `digest`.
    pub async fn bindings_for_digest(
        &mut self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Binding>, LedgerError> {
        Ok(sqlx::query_as::<_, Binding>(BINDINGS_FOR_DIGEST)
            .bind(repository)
            .bind(digest)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Live immutable tags of a repository bound to `digest`: the releases it is.
    pub async fn release_tags(
        &mut self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(RELEASE_TAGS)
            .bind(repository)
            .bind(digest)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Insert or replace a tag's binding. `first_bound_at` and `bound_by` are kept when
    /// the digest does not change (an identical re-push or a re-created tag). The tag's
    /// pending writes end with it (see [`super::pending`]).
    pub async fn bind(&mut self, b: &NewBinding<'_>) -> Result<(), LedgerError> {
        sqlx::query(BIND)
            .bind(b.repository)
            .bind(b.tag)
            .bind(b.digest)
            .bind(b.class.as_str())
            .bind(b.rule)
            .bind(b.bound_by)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Mark a tag as removed from the registry; its row stays for history and, for an
    /// immutable tag, as the reservation of its digest.
    pub async fn mark_deleted(&mut self, repository: &str, tag: &str) -> Result<(), LedgerError> {
        sqlx::query(MARK_DELETED)
            .bind(repository)
            .bind(tag)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Append an event to the history; its id, for the client's receipt. Only an
    /// insert: no row is locked, so writes to one repository do not wait on each other.
    /// The transparency log's integrator gives the event its place in the log once the
    /// transaction has committed (see `crate::tlog`).
    pub async fn append(&mut self, e: &NewEvent<'_>, actor: &Actor) -> Result<i64, LedgerError> {
        Ok(bind_event(sqlx::query_scalar(APPEND), e, actor)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// A transaction on `conn`, which the statement about to be sent opens: until
    /// [`LedgerTx::commit`] or [`LedgerTx::rollback`] succeed, dropping it closes the
    /// connection.
    pub(super) fn opening(conn: PoolConnection<Postgres>) -> Self {
        LedgerTx {
            tx: conn,
            open: true,
        }
    }

    pub async fn commit(mut self) -> Result<(), LedgerError> {
        (&mut *self.tx).execute(sqlx::raw_sql("COMMIT")).await?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), LedgerError> {
        (&mut *self.tx).execute(sqlx::raw_sql("ROLLBACK")).await?;
        self.open = false;
        Ok(())
    }

    /// Up to `limit` tag names of a repository that start with `prefix`, live or
    /// deleted, of any class: names a refusal must not suggest as free.
    pub async fn tags_with_prefix(
        &mut self,
        repository: &str,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(TAGS_WITH_PREFIX)
            .bind(repository)
            .bind(prefix)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
    }
}

/// A statement that inserts an event and returns its id.
pub(super) type EventQuery<'q> =
    sqlx::query::QueryScalar<'q, Postgres, i64, sqlx::postgres::PgArguments>;

/// Bind an event's sixteen columns, in the order of `append.sql` (`$1`..`$16`), to the
/// next parameters of `q`: [`LedgerTx::append`] and the accepted write's one statement
/// (`super::accept`) insert the same row.
pub(super) fn bind_event<'q>(
    q: EventQuery<'q>,
    e: &'q NewEvent<'_>,
    actor: &'q Actor,
) -> EventQuery<'q> {
    q.bind(chain::truncate_to_micros(chrono::Utc::now()))
        .bind(e.action.as_str())
        .bind(e.repository)
        .bind(e.tag)
        .bind(e.digest)
        .bind(e.previous_digest)
        .bind(e.class.map(|c| c.as_str()))
        .bind(e.rule)
        .bind(e.reason)
        .bind(actor.identity.as_deref())
        .bind(actor.verified)
        .bind(actor.remote_addr.as_deref())
        .bind(actor.user_agent.as_deref())
        .bind(actor.request_id.as_deref())
        .bind(e.detail.as_ref())
        .bind(e.policy_hash)
}

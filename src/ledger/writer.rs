//! The ledger as the write path sees it: the only type that opens write transactions.

use std::ops::Deref;
use std::time::Duration;

use sqlx::PgPool;

use super::error::connection_lost;
use super::pool::{self, StatementBounds};
use super::references::shared_reference_keys;
use super::tx::exclusive_keys;
use super::{Binding, LedgerError, LedgerReader, LedgerTx};

const BEGIN_LOCKED: &str = include_str!("sql/begin_locked.sql");

/// A pool of connections to the ledger database that may write. It derefs to a
/// [`LedgerReader`] over the same connections, for the reads of the write path; the
/// writes themselves happen in a [`LedgerTx`] from [`Ledger::begin`].
#[derive(Clone)]
pub struct Ledger {
    reader: LedgerReader,
    /// The pending writes' own connections (see `super::pending`): a write announces
    /// while it waits for its transaction's connection and locks, and one holding a
    /// connection must never wait for a second from the same pool.
    announcements: PgPool,
}

impl Ledger {
    /// A pool that connects lazily, so tagwarden starts (and serves pulls) while the
    /// database is down; writes fail closed until it returns.
    pub fn connect_lazy(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, LedgerError> {
        Self::connect_lazy_bounded(url, max_connections, acquire_timeout, None)
    }

    /// [`Ledger::connect_lazy`], with Postgres `lock_timeout` and `statement_timeout`
    /// on every connection when `bounds` is given: the service's write pool, where a
    /// request waiting on another's tag lock, or a stuck statement, must give its
    /// connection back in seconds. Migrations need a pool without them.
    pub fn connect_lazy_bounded(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        bounds: Option<StatementBounds>,
    ) -> Result<Self, LedgerError> {
        let pool = pool::connect_lazy(url, max_connections, acquire_timeout, bounds)?;
        // A quarter as many: an announcement is one short statement (a write's
        // transaction lasts as long as the registry takes to store the manifest), and
        // only writes of immutable tags under `[enforce] ledger_complete` make one.
        // Lazy like the write pool, so without that setting it opens no connection.
        let announcements =
            pool::connect_lazy(url, max_connections.div_ceil(4), acquire_timeout, bounds)?;
        Ok(Ledger {
            reader: LedgerReader::from_pool(pool),
            announcements,
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.reader.pool()
    }

    /// The connections of the pending writes' announcements and withdrawals.
    pub(super) fn announcements(&self) -> &PgPool {
        &self.announcements
    }

    /// The same connections, for what may only read.
    pub fn reader(&self) -> &LedgerReader {
        &self.reader
    }

    /// Apply pending migrations. Concurrent callers are serialised by sqlx's lock.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::migrate!("./migrations")
            .run(self.pool())
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => LedgerError::from(inner),
                other => LedgerError::Query(other.to_string()),
            })
    }

    /// Open a write transaction (see `begin_with`).
    pub async fn begin(&self) -> Result<LedgerTx, LedgerError> {
        self.begin_with("BEGIN").await
    }

    /// [`Ledger::begin`] and [`LedgerTx::lock`] on `items`, with the shared locks of
    /// [`LedgerTx::lock_references_shared`] on `shared_references`, in one round trip
    /// instead of three, for every write that knows its locks before its first read
    /// (a push of a new release pays for each round trip). A write that must read to
    /// learn what to lock uses `begin` and `lock`.
    ///
    /// A server that only reads fails it before any lock is taken (`SELECT ... FOR
    /// UPDATE` is refused in a read-only transaction), as `lock` finds it.
    pub async fn begin_locked(
        &self,
        repository: &str,
        items: &[&str],
        shared_references: &[&str],
    ) -> Result<LedgerTx, LedgerError> {
        let exclusive = exclusive_keys(repository, items)
            .into_iter()
            .map(|k| format!("pg_advisory_xact_lock({k})"));
        let shared = shared_reference_keys(repository, shared_references)
            .into_iter()
            .map(|k| format!("pg_advisory_xact_lock_shared({k})"));
        let locks: Vec<String> = exclusive.chain(shared).collect();
        let statement = BEGIN_LOCKED.replace("LOCK_CALLS", &locks.join(", "));
        self.begin_with(&statement).await
    }

    /// `statement` opens the transaction: `BEGIN`, or more that ends with it. A pooled
    /// connection the database closed while it sat idle (a restart, a failover) fails
    /// on it, before anything was done: that connection is discarded and another one
    /// tried, up to once per pooled connection.
    async fn begin_with(&self, statement: &str) -> Result<LedgerTx, LedgerError> {
        let attempts = self.pool().options().get_max_connections() + 1;
        let mut attempt = 1;
        loop {
            match self.pool().begin_with(statement.to_owned()).await {
                Ok(tx) => return Ok(LedgerTx { tx }),
                Err(e) if attempt < attempts && connection_lost(&e) => {
                    tracing::debug!(error = %e, attempt, "a pooled ledger connection was closed; trying another");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The current binding of a tag, read in a transaction of its own so that a pooled
    /// connection closed while idle is replaced (see [`Ledger::begin`]).
    pub async fn binding(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Binding>, LedgerError> {
        let mut tx = self.begin().await?;
        let b = tx.binding(repository, tag).await?;
        tx.rollback().await?;
        Ok(b)
    }
}

impl Deref for Ledger {
    type Target = LedgerReader;

    fn deref(&self) -> &LedgerReader {
        &self.reader
    }
}

impl From<Ledger> for LedgerReader {
    fn from(ledger: Ledger) -> LedgerReader {
        ledger.reader
    }
}

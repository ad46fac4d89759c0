//! The ledger as the write path sees it: the only type that opens write transactions.

use std::ops::Deref;
use std::time::Duration;

use sqlx::PgPool;

use super::pool::{self, StatementBounds};
use super::{Binding, LedgerError, LedgerReader, LedgerTx};

/// A pool of connections to the ledger database that may write. It derefs to a
/// [`LedgerReader`] over the same connections, for the reads of the write path; the
/// writes themselves happen in a [`LedgerTx`] from [`Ledger::begin`].
#[derive(Clone)]
pub struct Ledger {
    reader: LedgerReader,
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
        Ok(Ledger {
            reader: LedgerReader::from_pool(pool),
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.reader.pool()
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

    /// Open a write transaction (see `Ledger::open`). A write that knows its locks
    /// before its first read takes them as it opens (`Ledger::begin_locked`,
    /// `Ledger::begin_write`); one that must read to learn them uses `begin` and
    /// `LedgerTx::lock`.
    pub async fn begin(&self) -> Result<LedgerTx, LedgerError> {
        self.open("BEGIN")
            .await
            .map(|(tx, _)| tx)
            .map_err(|(e, _)| e)
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

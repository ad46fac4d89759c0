//! The ledger as audits see it: a pool with read methods only.

use std::time::Duration;

use sqlx::PgPool;

use super::{pool, LedgerError};

const PING: &str = include_str!("sql/ping.sql");

/// Connections to the ledger database that can only be read through: no method of
/// this type writes, so the audit API, the pages, the audit commands and the chain
/// check, which are given only a reader, cannot change the ledger. Reads live in
/// `queries`, `verify`, `policies` and `retire`; the writer ([`super::Ledger`]) derefs
/// to its own reader for the reads of the write path.
#[derive(Clone)]
pub struct LedgerReader {
    pool: PgPool,
}

impl LedgerReader {
    /// The audits' pool: every transaction is read-only and every statement is
    /// cancelled after `statement_timeout`. Connects lazily.
    pub fn connect_read_only(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<LedgerReader, LedgerError> {
        let pool =
            pool::connect_read_only(url, max_connections, acquire_timeout, statement_timeout)?;
        Ok(LedgerReader { pool })
    }

    /// A pool like [`super::Ledger::connect_lazy`]'s, without a statement timeout: for
    /// command-line reads that may run long (checking every chain) or from a standby.
    pub fn connect_lazy(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<LedgerReader, LedgerError> {
        let pool = pool::connect_lazy(url, max_connections, acquire_timeout, None)?;
        Ok(LedgerReader { pool })
    }

    pub(super) fn from_pool(pool: PgPool) -> LedgerReader {
        LedgerReader { pool }
    }

    /// The connections, for reads this module does not hold (the pull log, the
    /// transparency log) and for tests. A pool from [`Self::connect_read_only`] is
    /// also read-only in the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query(PING).execute(&self.pool).await?;
        Ok(())
    }
}

//! What can go wrong with the ledger database, sorted into "not now" and "wrong".

use super::failover;

/// The database could not be reached or refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the tag ledger (Postgres) is unavailable: {0}")]
    Unavailable(String),
    #[error("ledger query failed: {0}")]
    Query(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some(READ_ONLY_SQL_TRANSACTION) {
                failover::read_only_seen();
            }
        }
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => LedgerError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| busy_or_gone(&c)) => {
                LedgerError::Unavailable(e.to_string())
            }
            other => LedgerError::Query(other.to_string()),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "this statement is wrong": class 57
/// (operator intervention: shutdown, and 57014, a statement timeout), class 08
/// (connection), 55P03 (lock timeout), 40001 and 40P01 (serialisation failure,
/// deadlock) and 25006 (a read-only server, as after a failover).
fn busy_or_gone(code: &str) -> bool {
    code.starts_with("57")
        || code.starts_with("08")
        || matches!(code, "55P03" | "40001" | "40P01" | "25006")
}

/// SQLSTATE of a write on a read-only server: a standby, or a demoted old primary.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// Whether an error says that the connection it came from is gone (a dropped socket, or
/// the server's own notice that it is closing the session), as opposed to the database
/// being unreachable or refusing the statement.
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

//! What can go wrong with the ledger database, sorted into "not now" and "wrong".

use super::failover;

/// Why a ledger operation failed: "not now" (the database is unavailable, a 503 to
/// retry) or "wrong" (a statement or its decoding failed, a fault of tagwarden's, a 500).
/// A database error is kept whole as the source, to be logged with its chain where the
/// failure is answered.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The pool timed out or is closed, the connection was refused, dropped or is
    /// shutting down, or the server is too busy or read-only (as after a failover).
    #[error("the tag ledger (Postgres) is unavailable")]
    Unavailable(#[source] Outage),
    /// A statement, or the decoding of what it returned, failed.
    #[error("ledger query failed")]
    Statement(#[source] sqlx::Error),
    /// Wrong, as tagwarden found without a database error behind it: a row it cannot
    /// read, a setting it cannot use.
    #[error("ledger query failed: {0}")]
    Query(String),
}

/// What made the ledger unavailable.
#[derive(Debug, thiserror::Error)]
pub enum Outage {
    /// What the database driver reported.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// What tagwarden found itself, such as a server that turned read-only.
    #[error("{0}")]
    Found(String),
}

impl From<&str> for Outage {
    fn from(found: &str) -> Self {
        Outage::Found(found.to_owned())
    }
}

impl From<String> for Outage {
    fn from(found: String) -> Self {
        Outage::Found(found)
    }
}

impl LedgerError {
    /// Whether a retry later may succeed: the database, not the statement, failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LedgerError::Unavailable(_))
    }
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
            | sqlx::Error::WorkerCrashed => LedgerError::Unavailable(e.into()),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| busy_or_gone(&c)) => {
                LedgerError::Unavailable(e.into())
            }
            other => LedgerError::Statement(other),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_cannot_serve_is_unavailable_and_a_failed_statement_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for down in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(refused),
            sqlx::Error::WorkerCrashed,
        ] {
            let e = LedgerError::from(down);
            assert!(
                matches!(e, LedgerError::Unavailable(Outage::Database(_))),
                "{e:?}"
            );
            assert!(e.is_unavailable());
        }
        for bug in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            let e = LedgerError::from(bug);
            assert!(matches!(e, LedgerError::Statement(_)), "{e:?}");
            assert!(!e.is_unavailable());
        }
    }

    #[test]
    fn the_database_error_is_kept_whole_as_the_source() {
        use std::error::Error as _;
        let down = LedgerError::from(sqlx::Error::PoolTimedOut);
        let outage = down.source().and_then(|s| s.downcast_ref::<Outage>());
        assert!(matches!(
            outage,
            Some(Outage::Database(sqlx::Error::PoolTimedOut))
        ));
        assert_eq!(
            crate::oci::error::chain(&down),
            format!(
                "the tag ledger (Postgres) is unavailable: {}",
                sqlx::Error::PoolTimedOut
            )
        );
        let bug = LedgerError::from(sqlx::Error::RowNotFound);
        let source = bug.source().and_then(|s| s.downcast_ref::<sqlx::Error>());
        assert!(matches!(source, Some(sqlx::Error::RowNotFound)));
    }
}

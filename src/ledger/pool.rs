//! How the ledger's connection pools are built: the write pool (and the plain pools of
//! migrations and the command line), and the read-only pool of the audits.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use super::{failover, LedgerError};

/// How long one statement of the write pool may wait for a lock, and run.
#[derive(Debug, Clone, Copy)]
pub struct StatementBounds {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

/// A pool that connects lazily, with Postgres `lock_timeout` and `statement_timeout`
/// on every connection when `bounds` is given. A pool with bounds is one that writes:
/// it also leaves a server that turned read-only (see [`failover`]).
pub(super) fn connect_lazy(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    bounds: Option<StatementBounds>,
) -> Result<PgPool, LedgerError> {
    let mut settings = vec![("idle_in_transaction_session_timeout", "60000".to_owned())];
    if let Some(b) = bounds {
        settings.push(("lock_timeout", b.lock_timeout.as_millis().to_string()));
        settings.push((
            "statement_timeout",
            b.statement_timeout.as_millis().to_string(),
        ));
    }
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(|e| LedgerError::Query(format!("database.url: {e}")))?
        // Statement logging would put binding values in the logs at info level.
        .disable_statement_logging()
        // A transaction left open by a stuck request must not hold tag locks forever.
        .options(settings);
    let writes = bounds.is_some();
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        // No ping before every write: sqlx already pings a connection when it goes
        // back to the pool, and `begin` replaces one that died while idle.
        .test_before_acquire(false)
        // After a read-only failure (a failover), connections older than it are
        // closed instead of reused, and a new one must reach a writable server.
        // Only for the pools that write: an auditor may verify or explain from a
        // standby.
        .before_acquire(move |_conn, meta| {
            Box::pin(async move { Ok(!(writes && failover::predates_read_only(meta.age))) })
        })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if !writes {
                    return Ok(());
                }
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(&mut *conn)
                    .await?;
                if read_only == "on" {
                    return Err(sqlx::Error::Protocol(
                        "the ledger database server is read-only (a standby, or an old primary after a failover)".into(),
                    ));
                }
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// A pool for audit reads only: every transaction is read-only and every statement
/// is cancelled after `statement_timeout`. Connects lazily.
pub(super) fn connect_read_only(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Duration,
) -> Result<PgPool, LedgerError> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(|e| LedgerError::Query(format!("database url: {e}")))?
        .disable_statement_logging()
        .application_name("tagwarden-audit")
        .options([
            ("default_transaction_read_only", "on".to_string()),
            // Plan each statement with its parameters: the feed's optional filters
            // then fold away and the fitting index is used (see events_page).
            ("plan_cache_mode", "force_custom_plan".to_string()),
            (
                "statement_timeout",
                statement_timeout.as_millis().max(1).to_string(),
            ),
        ]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(true)
        .connect_lazy_with(options))
}

//! The pull log's writes: batched inserts and day partitions. Every statement is a
//! file in `sql/` with bind parameters; the partition DDL lives in plpgsql functions
//! (`migrations/0007_pull_log.sql`), since DDL cannot take parameters.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use super::PullRecord;

/// The writer's own pool: a couple of connections, so a slow or dead database never
/// takes the ledger's write pool away from manifest pushes.
pub fn writer_pool(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .disable_statement_logging()
        .application_name("tagwarden-pulls")
        .options([("statement_timeout", "10000")]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options))
}

/// The batch insert, in a file of its own so that `bench/pulls-ledger.sh` times the very
/// statement the writer sends.
const INSERT_SQL: &str = include_str!("sql/insert.sql");
const ENSURE_PARTITION: &str = include_str!("sql/ensure_partition.sql");
const DROP_BEFORE: &str = include_str!("sql/drop_before.sql");

/// Insert a batch in one statement (one array per column). `verified` is per record.
pub async fn insert(
    pool: &PgPool,
    records: &[PullRecord],
    verified: &[bool],
) -> Result<(), sqlx::Error> {
    let col = |f: fn(&PullRecord) -> Option<String>| records.iter().map(f).collect::<Vec<_>>();
    sqlx::query(INSERT_SQL)
        .bind(records.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(col(|r| Some(r.repository.clone())))
        .bind(col(|r| Some(r.reference.clone())))
        .bind(col(|r| r.digest.clone()))
        .bind(col(|r| r.media_type.clone()))
        .bind(col(|r| Some(r.method.to_owned())))
        .bind(
            records
                .iter()
                .map(|r| i16::try_from(r.status).unwrap_or(i16::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(col(|r| r.identity.clone()))
        .bind(verified.to_vec())
        .bind(col(|r| Some(r.remote_addr.clone())))
        .bind(col(|r| r.user_agent.clone()))
        .bind(col(|r| Some(r.request_id.clone())))
        .execute(pool)
        .await?;
    Ok(())
}

/// Create the partition of `day` (UTC) if it does not exist.
pub async fn ensure_partition(pool: &PgPool, day: NaiveDate) -> Result<(), sqlx::Error> {
    sqlx::query(ENSURE_PARTITION)
        .bind(day)
        .execute(pool)
        .await?;
    Ok(())
}

/// Drop the partitions of the days before `day`; returns how many were dropped.
pub async fn drop_before(pool: &PgPool, day: NaiveDate) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(DROP_BEFORE)
        .bind(day)
        .fetch_one(pool)
        .await
}

/// The retention step: partitions for today and tomorrow exist, and every day older
/// than `retention` (counted in whole days back from `now`'s day) is gone.
pub async fn maintain(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<i32, sqlx::Error> {
    let today = now.date_naive();
    ensure_partition(pool, today).await?;
    if let Some(tomorrow) = today.succ_opt() {
        ensure_partition(pool, tomorrow).await?;
    }
    let days = i64::try_from(retention.as_secs() / 86_400).unwrap_or(i64::MAX);
    match today.checked_sub_days(chrono::Days::new(days.max(1) as u64)) {
        Some(oldest_kept) => drop_before(pool, oldest_kept).await,
        None => Ok(0),
    }
}

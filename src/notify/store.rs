//! The notification queries, each a file in `sql/`: cursors, the delivery horizon, and
//! batches past a cursor.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::config::StartFrom;
use crate::ledger::outbox;
use crate::ledger::StoredEvent;

const TRY_LOCK: &str = include_str!("sql/try_lock.sql");
const CREATE_CURSOR_AT_START: &str = include_str!("sql/create_cursor_at_start.sql");
const CREATE_CURSOR_AT_END: &str = include_str!("sql/create_cursor_at_end.sql");
const CURSOR: &str = include_str!("sql/cursor.sql");
const ADVANCE: &str = include_str!("sql/advance.sql");
const BACKLOG: &str = include_str!("sql/backlog.sql");

/// A position in delivery order. `txid` is a Postgres `xid8`, carried as `i64`
/// (they stay far below 2^63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct Position {
    pub txid: i64,
    pub event_id: i64,
}

/// An outbox row joined with its event.
#[derive(Debug, Clone)]
pub struct Queued {
    pub position: Position,
    pub event: StoredEvent,
}

/// Only one process sends for a webhook: held for the connection's life.
pub async fn try_lock(conn: &mut PgConnection, webhook: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(TRY_LOCK)
        .bind(webhook)
        .fetch_one(conn)
        .await
}

/// The webhook's cursor, created at the end of the log (or the start) the first time.
pub async fn cursor(
    conn: &mut PgConnection,
    webhook: &str,
    from: StartFrom,
) -> sqlx::Result<Position> {
    // The end is the newest txid and the newest id: past every row that exists now.
    let insert = match from {
        StartFrom::Start => sqlx::query(CREATE_CURSOR_AT_START),
        StartFrom::End => sqlx::query(CREATE_CURSOR_AT_END),
    };
    insert.bind(webhook).execute(&mut *conn).await?;
    sqlx::query_as(CURSOR).bind(webhook).fetch_one(conn).await
}

pub async fn advance(conn: &mut PgConnection, webhook: &str, to: Position) -> sqlx::Result<()> {
    sqlx::query(ADVANCE)
        .bind(webhook)
        .bind(to.txid.to_string())
        .bind(to.event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `limit` events past `after`, in delivery order, every action included (the
/// caller steps over unselected ones). Only rows of transactions that ended before this
/// call began (see [`outbox::after`]).
pub async fn batch(
    conn: &mut PgConnection,
    after: Position,
    limit: u32,
) -> sqlx::Result<Vec<Queued>> {
    let rows = outbox::after(conn, (after.txid, after.event_id), i64::from(limit)).await?;
    Ok(rows
        .into_iter()
        .map(|r| Queued {
            position: Position {
                txid: r.txid,
                event_id: r.event.id,
            },
            event: r.event,
        })
        .collect())
}

/// Selected events past the cursor (counted up to `cap`) and the time of the oldest.
pub async fn backlog(
    conn: &mut PgConnection,
    after: Position,
    actions: &[String],
    cap: i64,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as(BACKLOG)
        .bind(after.txid.to_string())
        .bind(after.event_id)
        .bind(actions)
        .bind(cap)
        .fetch_one(conn)
        .await
}

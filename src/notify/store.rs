//! The notification queries: cursors, the delivery horizon, and batches past a cursor.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::config::StartFrom;
use crate::ledger::queries::stored_event;
use crate::ledger::StoredEvent;

/// A position in delivery order. `txid` is a Postgres `xid8`, carried as `i64`
/// (they stay far below 2^63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtextextended('tagwarden-notify:' || $1, 0))",
    )
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
        StartFrom::Start => sqlx::query(
            "INSERT INTO notify_cursor (webhook, last_txid, last_event_id) \
             VALUES ($1, '0'::xid8, 0) ON CONFLICT (webhook) DO NOTHING",
        ),
        StartFrom::End => sqlx::query(
            "INSERT INTO notify_cursor (webhook, last_txid, last_event_id) \
             SELECT $1, coalesce(max(txid), '0'::xid8), coalesce(max(event_id), 0) \
             FROM notify_outbox ON CONFLICT (webhook) DO NOTHING",
        ),
    };
    insert.bind(webhook).execute(&mut *conn).await?;
    let row = sqlx::query(
        "SELECT last_txid::text::bigint AS txid, last_event_id FROM notify_cursor WHERE webhook = $1",
    )
    .bind(webhook)
    .fetch_one(conn)
    .await?;
    Ok(Position {
        txid: row.get("txid"),
        event_id: row.get("last_event_id"),
    })
}

pub async fn advance(conn: &mut PgConnection, webhook: &str, to: Position) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notify_cursor SET last_txid = $2::text::xid8, last_event_id = $3, updated_at = now() \
         WHERE webhook = $1",
    )
    .bind(webhook)
    .bind(to.txid.to_string())
    .bind(to.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` events past `after`, in delivery order, every action included (the
/// caller steps over unselected ones). Only rows of transactions that ended before this
/// call began: the horizon is read in a statement of its own, before the rows, so every
/// transaction below it is visible to the second statement.
pub async fn batch(
    conn: &mut PgConnection,
    after: Position,
    limit: u32,
) -> sqlx::Result<Vec<Queued>> {
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query(
        "SELECT o.txid::text::bigint AS txid, e.id, e.at, e.action, e.repository, e.tag, e.digest, \
                e.previous_digest, e.class, e.rule, e.reason, e.identity, e.identity_verified, \
                e.remote_addr, e.user_agent, e.request_id, e.detail, e.policy_hash \
         FROM notify_outbox o JOIN tag_events e ON e.id = o.event_id \
         WHERE (o.txid, o.event_id) > ($1::text::xid8, $2) AND o.txid < $3::xid8 \
         ORDER BY o.txid, o.event_id LIMIT $4",
    )
    .bind(after.txid.to_string())
    .bind(after.event_id)
    .bind(horizon)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Queued {
                position: Position {
                    txid: r.get("txid"),
                    event_id: r.get("id"),
                },
                event: stored_event(r).map_err(|e| sqlx::Error::Decode(e.into()))?,
            })
        })
        .collect()
}

/// Selected events past the cursor (counted up to `cap`) and the time of the oldest.
pub async fn backlog(
    conn: &mut PgConnection,
    after: Position,
    actions: &[String],
    cap: i64,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    let row = sqlx::query(
        "SELECT count(*) AS n, min(at) AS oldest FROM ( \
             SELECT e.at FROM notify_outbox o JOIN tag_events e ON e.id = o.event_id \
             WHERE (o.txid, o.event_id) > ($1::text::xid8, $2) AND e.action = ANY($3) \
             ORDER BY o.txid, o.event_id LIMIT $4) q",
    )
    .bind(after.txid.to_string())
    .bind(after.event_id)
    .bind(actions)
    .bind(cap)
    .fetch_one(conn)
    .await?;
    Ok((row.get("n"), row.get("oldest")))
}

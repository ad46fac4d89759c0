//! The outbox (migration 0008): a row per event, in the order its transaction
//! committed. The transparency log and the webhooks both follow it, with this one read.

use sqlx::PgConnection;

use super::StoredEvent;

const OUTBOX_HORIZON: &str = include_str!("sql/outbox_horizon.sql");
const OUTBOX_AFTER: &str = include_str!("sql/outbox_after.sql");

/// An event with the transaction that recorded it (a Postgres `xid8`, carried as `i64`:
/// they stay far below 2^63).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outboxed {
    pub txid: i64,
    #[sqlx(flatten)]
    pub event: StoredEvent,
}

/// Up to `limit` committed events after `(txid, event_id)`, in that order, and only of
/// transactions that ended before this call: the horizon is read in a statement of its
/// own first, so every transaction below it is visible to the second statement, and no
/// event can commit later with a smaller position.
pub async fn after(
    conn: &mut PgConnection,
    (txid, event_id): (i64, i64),
    limit: i64,
) -> sqlx::Result<Vec<Outboxed>> {
    let horizon: String = sqlx::query_scalar(OUTBOX_HORIZON)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query_as(OUTBOX_AFTER)
        .bind(txid.to_string())
        .bind(event_id)
        .bind(horizon)
        .bind(limit)
        .fetch_all(conn)
        .await
}

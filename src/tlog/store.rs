//! Every SQL statement of the transparency log. Each function runs on the connection
//! it is given: the integrator's own (which holds its election lock), or a reader's.

use sqlx::{PgConnection, Row};
use tlog_tiles::{Hash, Tile};

use super::tree::Hashes;
use crate::ledger::queries::stored_event;
use crate::ledger::StoredEvent;

/// A position in integration order: `(txid, event_id)` of `notify_outbox`.
pub type Position = (i64, i64);

/// An event waiting for its leaf index.
#[derive(Debug)]
pub struct Pending {
    pub txid: i64,
    pub event: StoredEvent,
}

/// One leaf as stored.
#[derive(Debug)]
pub struct StoredLeaf {
    pub index: u64,
    pub event_id: i64,
    pub hash: Hash,
}

fn hash_of(bytes: &[u8]) -> Result<Hash, sqlx::Error> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Leaves in the log.
pub async fn tree_size(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT coalesce(max(leaf_index) + 1, 0) FROM log_leaves")
        .fetch_one(conn)
        .await?;
    Ok(u64_of(n))
}

/// Where the last integrated event is in integration order.
pub async fn last_position(conn: &mut PgConnection) -> sqlx::Result<Option<Position>> {
    let row = sqlx::query(
        "SELECT txid::text::bigint AS txid, event_id FROM log_leaves ORDER BY leaf_index DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.get("txid"), r.get("event_id"))))
}

/// Up to `limit` committed events after `after`, in `(txid, id)` order, and only of
/// transactions that ended before this call: the horizon is read in a statement of its
/// own first, so every transaction below it is visible to the second statement, and no
/// event can commit later with a smaller position.
pub async fn pending(
    conn: &mut PgConnection,
    after: Position,
    limit: i64,
) -> sqlx::Result<Vec<Pending>> {
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
    .bind(after.0.to_string())
    .bind(after.1)
    .bind(horizon)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                txid: r.get("txid"),
                event: stored_event(r).map_err(|e| sqlx::Error::Decode(e.into()))?,
            })
        })
        .collect()
}

/// Load the stored hashes `cache` last found missing. False if some do not exist.
pub async fn fill(conn: &mut PgConnection, cache: &mut Hashes) -> sqlx::Result<bool> {
    let missing = cache.take_missing();
    if missing.is_empty() {
        return Ok(false);
    }
    let want: Vec<i64> = missing.iter().map(|&i| i as i64).collect();
    let rows = sqlx::query("SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)")
        .bind(&want)
        .fetch_all(conn)
        .await?;
    let found = rows.len() == want.len();
    for r in rows {
        let idx: i64 = r.get("idx");
        let hash: Vec<u8> = r.get("hash");
        cache.insert(u64_of(idx), hash_of(&hash)?);
    }
    Ok(found)
}

/// Store a batch of leaves, starting at the tree's current size, with their new stored
/// hashes and the tiles they changed. One transaction: a crash stores all or nothing.
pub async fn append(
    conn: &mut PgConnection,
    first: u64,
    leaves: &[(i64, i64, Hash)],
    hashes: &[(u64, Hash)],
    tiles: &[(Tile, Vec<u8>)],
) -> sqlx::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let indexes: Vec<i64> = (0..leaves.len() as i64).map(|i| first as i64 + i).collect();
    let events: Vec<i64> = leaves.iter().map(|l| l.0).collect();
    let txids: Vec<String> = leaves.iter().map(|l| l.1.to_string()).collect();
    let leaf_hashes: Vec<Vec<u8>> = leaves.iter().map(|l| l.2 .0.to_vec()).collect();
    sqlx::query(
        "INSERT INTO log_leaves (leaf_index, event_id, txid, hash) \
         SELECT i, e, t::xid8, h FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[]) AS u(i, e, t, h)",
    )
    .bind(&indexes)
    .bind(&events)
    .bind(&txids)
    .bind(&leaf_hashes)
    .execute(&mut *tx)
    .await?;
    let idx: Vec<i64> = hashes.iter().map(|h| h.0 as i64).collect();
    let hs: Vec<Vec<u8>> = hashes.iter().map(|h| h.1 .0.to_vec()).collect();
    sqlx::query(
        "INSERT INTO log_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
    )
    .bind(&idx)
    .bind(&hs)
    .execute(&mut *tx)
    .await?;
    let levels: Vec<i16> = tiles.iter().map(|t| i16::from(t.0.level())).collect();
    let ns: Vec<i64> = tiles.iter().map(|t| t.0.level_index() as i64).collect();
    let widths: Vec<i32> = tiles.iter().map(|t| t.0.width() as i32).collect();
    let data: Vec<Vec<u8>> = tiles.iter().map(|t| t.1.clone()).collect();
    sqlx::query(
        "INSERT INTO log_tiles (level, n, width, data) \
         SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::int[], $4::bytea[]) \
         ON CONFLICT (level, n) DO UPDATE SET width = EXCLUDED.width, data = EXCLUDED.data \
         WHERE log_tiles.width < EXCLUDED.width",
    )
    .bind(&levels)
    .bind(&ns)
    .bind(&widths)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The newest signed checkpoint: `(size, note)`, with the witnesses' cosignature
/// lines appended to its signatures.
pub async fn latest_checkpoint(conn: &mut PgConnection) -> sqlx::Result<Option<(u64, String)>> {
    let row = sqlx::query(
        "SELECT c.size, c.note || coalesce((SELECT string_agg(s.line || E'\\n', '' ORDER BY s.witness) \
         FROM log_cosignatures s WHERE s.size = c.size), '') AS note \
         FROM log_checkpoints c ORDER BY c.size DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (u64_of(r.get("size")), r.get("note"))))
}

pub async fn store_checkpoint(
    conn: &mut PgConnection,
    size: u64,
    root: Hash,
    note: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO log_checkpoints (size, root, note) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING",
    )
    .bind(size as i64)
    .bind(root.0.to_vec())
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored hash tile: `(width, data)` of the widest version.
pub async fn tile(
    conn: &mut PgConnection,
    level: u8,
    n: u64,
) -> sqlx::Result<Option<(u32, Vec<u8>)>> {
    let row = sqlx::query("SELECT width, data FROM log_tiles WHERE level = $1 AND n = $2")
        .bind(i16::from(level))
        .bind(n as i64)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| {
        (
            u32::try_from(r.get::<i32, _>("width")).unwrap_or(0),
            r.get("data"),
        )
    }))
}

/// The leaf of an event, if it is integrated.
pub async fn leaf_of_event(
    conn: &mut PgConnection,
    event_id: i64,
) -> sqlx::Result<Option<StoredLeaf>> {
    let row = sqlx::query("SELECT leaf_index, event_id, hash FROM log_leaves WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(StoredLeaf {
            index: u64_of(r.get("leaf_index")),
            event_id: r.get("event_id"),
            hash: hash_of(&r.get::<Vec<u8>, _>("hash"))?,
        })
    })
    .transpose()
}

/// One event with its policy hash.
pub async fn event(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Pending>> {
    let row = sqlx::query(
        "SELECT o.txid::text::bigint AS txid, e.id, e.at, e.action, e.repository, e.tag, e.digest, \
                e.previous_digest, e.class, e.rule, e.reason, e.identity, e.identity_verified, \
                e.remote_addr, e.user_agent, e.request_id, e.detail, e.policy_hash \
         FROM tag_events e JOIN notify_outbox o ON o.event_id = e.id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Pending {
            txid: r.get("txid"),
            event: stored_event(&r).map_err(|e| sqlx::Error::Decode(e.into()))?,
        })
    })
    .transpose()
}

/// The event that gave `repository:tag` its binding as of `at` (the newest create,
/// move, warn, adopt, repush, repair or delete no later than it).
pub async fn binding_event_at(
    conn: &mut PgConnection,
    repository: &str,
    tag: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM tag_events WHERE repository = $1 AND tag = $2 AND at <= $3 \
           AND action IN ('create', 'move', 'warn', 'adopt', 'repush', 'repair', 'delete') \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(repository)
    .bind(tag)
    .bind(at)
    .fetch_optional(conn)
    .await
}

/// Every leaf with its event, in leaf order, for replay: `(leaf, event)`; the event is
/// missing when its row is gone.
pub async fn all_leaves(
    conn: &mut PgConnection,
) -> sqlx::Result<Vec<(StoredLeaf, Option<Pending>)>> {
    let rows = sqlx::query(
        "SELECT l.leaf_index, l.event_id, l.hash, l.txid::text::bigint AS txid, e.id, e.at, e.action, \
                e.repository, e.tag, e.digest, e.previous_digest, e.class, e.rule, e.reason, e.identity, \
                coalesce(e.identity_verified, false) AS identity_verified, e.remote_addr, e.user_agent, \
                e.request_id, e.detail, e.policy_hash \
         FROM log_leaves l LEFT JOIN tag_events e ON e.id = l.event_id ORDER BY l.leaf_index",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let leaf = StoredLeaf {
                index: u64_of(r.get("leaf_index")),
                event_id: r.get("event_id"),
                hash: hash_of(&r.get::<Vec<u8>, _>("hash"))?,
            };
            let event = match r.get::<Option<i64>, _>("id") {
                Some(_) => Some(Pending {
                    txid: r.get("txid"),
                    event: stored_event(r).map_err(|e| sqlx::Error::Decode(e.into()))?,
                }),
                None => None,
            };
            Ok((leaf, event))
        })
        .collect()
}

/// Events not (yet) in the log, in integration order.
pub async fn unintegrated(conn: &mut PgConnection) -> sqlx::Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT e.id, e.at, e.action, e.repository, e.tag, e.digest, e.previous_digest, e.class, \
                e.rule, e.reason, e.identity, e.identity_verified, e.remote_addr, e.user_agent, \
                e.request_id, e.detail, e.policy_hash \
         FROM tag_events e LEFT JOIN notify_outbox o ON o.event_id = e.id \
         WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.event_id = e.id) \
         ORDER BY o.txid, e.id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| stored_event(r).map_err(|e| sqlx::Error::Decode(e.into())))
        .collect()
}

/// Every stored hash, in index order.
pub async fn all_hashes(conn: &mut PgConnection) -> sqlx::Result<Vec<(u64, Hash)>> {
    let rows = sqlx::query("SELECT idx, hash FROM log_hashes ORDER BY idx")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((u64_of(r.get("idx")), hash_of(&r.get::<Vec<u8>, _>("hash"))?)))
        .collect()
}

/// Every stored tile: `(level, n, width, data)`.
pub async fn all_tiles(conn: &mut PgConnection) -> sqlx::Result<Vec<(u8, u64, u32, Vec<u8>)>> {
    let rows = sqlx::query("SELECT level, n, width, data FROM log_tiles ORDER BY level, n")
        .fetch_all(conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                u8::try_from(r.get::<i16, _>("level")).unwrap_or(u8::MAX),
                u64_of(r.get("n")),
                u32::try_from(r.get::<i32, _>("width")).unwrap_or(0),
                r.get("data"),
            )
        })
        .collect())
}

/// Every current binding: `(repository, tag, digest, deleted)`.
pub async fn all_bindings(
    conn: &mut PgConnection,
) -> sqlx::Result<Vec<(String, String, String, bool)>> {
    let rows = sqlx::query(
        "SELECT repository, tag, digest, deleted_at IS NOT NULL AS deleted FROM tag_bindings ORDER BY repository, tag",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get("repository"),
                r.get("tag"),
                r.get("digest"),
                r.get("deleted"),
            )
        })
        .collect())
}

/// Take the integrator's election lock on this connection (session-scoped: it goes
/// when the connection does).
pub async fn try_lead(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtextextended('tagwarden-tlog-integrator', 0))",
    )
    .fetch_one(conn)
    .await
}

/// Replace the note of a stored checkpoint (to add witness cosignatures).
pub async fn update_checkpoint_note(
    conn: &mut PgConnection,
    size: u64,
    note: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE log_checkpoints SET note = $2 WHERE size = $1")
        .bind(size as i64)
        .bind(note)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keep a witness's verified cosignature line of the checkpoint of `size`.
pub async fn store_cosignature(
    conn: &mut PgConnection,
    size: u64,
    witness: &str,
    time: u64,
    line: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO log_cosignatures (size, witness, cosigned_at, line) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (size, witness) DO NOTHING",
    )
    .bind(size as i64)
    .bind(witness)
    .bind(i64::try_from(time).unwrap_or(i64::MAX))
    .bind(line.trim_end())
    .execute(conn)
    .await?;
    Ok(())
}

/// The largest checkpoint a witness has cosigned, as far as this database knows.
pub async fn last_cosigned(conn: &mut PgConnection, witness: &str) -> sqlx::Result<Option<u64>> {
    let size: Option<i64> =
        sqlx::query_scalar("SELECT max(size) FROM log_cosignatures WHERE witness = $1")
            .bind(witness)
            .fetch_one(conn)
            .await?;
    Ok(size.map(u64_of))
}

//! Every SQL statement of the transparency log, each a file in `sql/`. Each function
//! runs on the connection it is given: the integrator's own (which holds its election
//! lock), or a reader's.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use tlog_tiles::{Hash, Tile};

use super::tree::Hashes;
use crate::ledger::outbox::{self, Outboxed};
use crate::ledger::StoredEvent;

const TREE_SIZE: &str = include_str!("sql/tree_size.sql");
const LAST_POSITION: &str = include_str!("sql/last_position.sql");
const HASHES: &str = include_str!("sql/hashes.sql");
const APPEND_LEAVES: &str = include_str!("sql/append_leaves.sql");
const APPEND_HASHES: &str = include_str!("sql/append_hashes.sql");
const APPEND_TILES: &str = include_str!("sql/append_tiles.sql");
const LATEST_CHECKPOINT: &str = include_str!("sql/latest_checkpoint.sql");
const STORE_CHECKPOINT: &str = include_str!("sql/store_checkpoint.sql");
const TILE: &str = include_str!("sql/tile.sql");
const LEAF_OF_EVENT: &str = include_str!("sql/leaf_of_event.sql");
const EVENT: &str = include_str!("sql/event.sql");
const BINDING_EVENT_AT: &str = include_str!("sql/binding_event_at.sql");
const ALL_LEAVES: &str = include_str!("sql/all_leaves.sql");
const UNINTEGRATED: &str = include_str!("sql/unintegrated.sql");
const ALL_HASHES: &str = include_str!("sql/all_hashes.sql");
const ALL_TILES: &str = include_str!("sql/all_tiles.sql");
const ALL_BINDINGS: &str = include_str!("sql/all_bindings.sql");
const TRY_LEAD: &str = include_str!("sql/try_lead.sql");
const UPDATE_CHECKPOINT_NOTE: &str = include_str!("sql/update_checkpoint_note.sql");
const STORE_COSIGNATURE: &str = include_str!("sql/store_cosignature.sql");
const LAST_COSIGNED: &str = include_str!("sql/last_cosigned.sql");

/// A position in integration order: `(txid, event_id)` of `notify_outbox`.
pub type Position = (i64, i64);

/// An event waiting for its leaf index.
pub type Pending = Outboxed;

/// One leaf as stored.
#[derive(Debug)]
pub struct StoredLeaf {
    pub index: u64,
    pub event_id: i64,
    pub hash: Hash,
}

/// A row of `log_leaves` as Postgres types: [`StoredLeaf`] checks the hash's length.
#[derive(FromRow)]
struct LeafRow {
    leaf_index: i64,
    event_id: i64,
    hash: Vec<u8>,
}

impl TryFrom<LeafRow> for StoredLeaf {
    type Error = sqlx::Error;

    fn try_from(r: LeafRow) -> sqlx::Result<Self> {
        Ok(StoredLeaf {
            index: u64_of(r.leaf_index),
            event_id: r.event_id,
            hash: hash_of(&r.hash)?,
        })
    }
}

/// A stored hash tile: `(width, data)`, or with `(level, n)` for a replay.
#[derive(FromRow)]
struct TileRow {
    #[sqlx(default)]
    level: i16,
    #[sqlx(default)]
    n: i64,
    width: i32,
    data: Vec<u8>,
}

fn hash_of(bytes: &[u8]) -> Result<Hash, sqlx::Error> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// `(idx, hash)` rows of `log_hashes`.
fn stored_hashes(rows: Vec<(i64, Vec<u8>)>) -> sqlx::Result<Vec<(u64, Hash)>> {
    rows.into_iter()
        .map(|(idx, hash)| Ok((u64_of(idx), hash_of(&hash)?)))
        .collect()
}

/// Leaves in the log.
pub async fn tree_size(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar(TREE_SIZE).fetch_one(conn).await?;
    Ok(u64_of(n))
}

/// Where the last integrated event is in integration order.
pub async fn last_position(conn: &mut PgConnection) -> sqlx::Result<Option<Position>> {
    sqlx::query_as(LAST_POSITION).fetch_optional(conn).await
}

/// Up to `limit` committed events after `after`, in `(txid, id)` order, and only of
/// transactions that ended before this call (see [`outbox::after`]).
pub async fn pending(
    conn: &mut PgConnection,
    after: Position,
    limit: i64,
) -> sqlx::Result<Vec<Pending>> {
    outbox::after(conn, after, limit).await
}

/// Load the stored hashes `cache` last found missing. False if some do not exist.
pub async fn fill(conn: &mut PgConnection, cache: &mut Hashes) -> sqlx::Result<bool> {
    let missing = cache.take_missing();
    if missing.is_empty() {
        return Ok(false);
    }
    let want: Vec<i64> = missing.iter().map(|&i| i as i64).collect();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(HASHES).bind(&want).fetch_all(conn).await?;
    let found = rows.len() == want.len();
    for (idx, hash) in stored_hashes(rows)? {
        cache.insert(idx, hash);
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
    sqlx::query(APPEND_LEAVES)
        .bind(&indexes)
        .bind(&events)
        .bind(&txids)
        .bind(&leaf_hashes)
        .execute(&mut *tx)
        .await?;
    let idx: Vec<i64> = hashes.iter().map(|h| h.0 as i64).collect();
    let hs: Vec<Vec<u8>> = hashes.iter().map(|h| h.1 .0.to_vec()).collect();
    sqlx::query(APPEND_HASHES)
        .bind(&idx)
        .bind(&hs)
        .execute(&mut *tx)
        .await?;
    let levels: Vec<i16> = tiles.iter().map(|t| i16::from(t.0.level())).collect();
    let ns: Vec<i64> = tiles.iter().map(|t| t.0.level_index() as i64).collect();
    let widths: Vec<i32> = tiles.iter().map(|t| t.0.width() as i32).collect();
    let data: Vec<Vec<u8>> = tiles.iter().map(|t| t.1.clone()).collect();
    sqlx::query(APPEND_TILES)
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
    let row: Option<(i64, String)> = sqlx::query_as(LATEST_CHECKPOINT)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(size, note)| (u64_of(size), note)))
}

pub async fn store_checkpoint(
    conn: &mut PgConnection,
    size: u64,
    root: Hash,
    note: &str,
) -> sqlx::Result<()> {
    sqlx::query(STORE_CHECKPOINT)
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
    let row: Option<TileRow> = sqlx::query_as(TILE)
        .bind(i16::from(level))
        .bind(n as i64)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| (u32_of(r.width), r.data)))
}

/// The leaf of an event, if it is integrated.
pub async fn leaf_of_event(
    conn: &mut PgConnection,
    event_id: i64,
) -> sqlx::Result<Option<StoredLeaf>> {
    let row: Option<LeafRow> = sqlx::query_as(LEAF_OF_EVENT)
        .bind(event_id)
        .fetch_optional(conn)
        .await?;
    row.map(StoredLeaf::try_from).transpose()
}

/// One event with its policy hash.
pub async fn event(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Pending>> {
    sqlx::query_as(EVENT).bind(id).fetch_optional(conn).await
}

/// The event that gave `repository:tag` its binding as of `at` (the newest create,
/// move, warn, adopt, repush, repair or delete no later than it).
pub async fn binding_event_at(
    conn: &mut PgConnection,
    repository: &str,
    tag: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(BINDING_EVENT_AT)
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
    let rows = sqlx::query(ALL_LEAVES).fetch_all(conn).await?;
    rows.iter()
        .map(|r: &PgRow| {
            let leaf = StoredLeaf::try_from(LeafRow::from_row(r)?)?;
            let event = match r.try_get::<Option<i64>, _>("id")? {
                Some(_) => Some(Pending::from_row(r)?),
                None => None,
            };
            Ok((leaf, event))
        })
        .collect()
}

/// Events not (yet) in the log, in integration order.
pub async fn unintegrated(conn: &mut PgConnection) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(UNINTEGRATED).fetch_all(conn).await
}

/// Every stored hash, in index order.
pub async fn all_hashes(conn: &mut PgConnection) -> sqlx::Result<Vec<(u64, Hash)>> {
    stored_hashes(sqlx::query_as(ALL_HASHES).fetch_all(conn).await?)
}

/// Every stored tile: `(level, n, width, data)`.
pub async fn all_tiles(conn: &mut PgConnection) -> sqlx::Result<Vec<(u8, u64, u32, Vec<u8>)>> {
    let rows: Vec<TileRow> = sqlx::query_as(ALL_TILES).fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                u8::try_from(r.level).unwrap_or(u8::MAX),
                u64_of(r.n),
                u32_of(r.width),
                r.data,
            )
        })
        .collect())
}

/// Every current binding: `(repository, tag, digest, deleted)`.
pub async fn all_bindings(
    conn: &mut PgConnection,
) -> sqlx::Result<Vec<(String, String, String, bool)>> {
    sqlx::query_as(ALL_BINDINGS).fetch_all(conn).await
}

/// Take the integrator's election lock on this connection (session-scoped: it goes
/// when the connection does).
pub async fn try_lead(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(TRY_LEAD).fetch_one(conn).await
}

/// Replace the note of a stored checkpoint (to add witness cosignatures).
pub async fn update_checkpoint_note(
    conn: &mut PgConnection,
    size: u64,
    note: &str,
) -> sqlx::Result<()> {
    sqlx::query(UPDATE_CHECKPOINT_NOTE)
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
    sqlx::query(STORE_COSIGNATURE)
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
    let size: Option<i64> = sqlx::query_scalar(LAST_COSIGNED)
        .bind(witness)
        .fetch_one(conn)
        .await?;
    Ok(size.map(u64_of))
}

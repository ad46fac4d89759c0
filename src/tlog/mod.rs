//! The transparency log: one append-only Merkle tree over every ledger event, with
//! checkpoints signed by a key that never enters the database.
//!
//! - [`leaf`]: the canonical, versioned encoding of an event.
//! - [`tree`] and [`note`]: RFC 6962 hashing, tiles and proofs (`tlog_tiles`), keys and
//!   signed checkpoints (`signed_note`), in the C2SP formats.
//! - [`integrator`]: the one process (elected through Postgres) that gives committed
//!   events their leaf indices and signs checkpoints; writers only insert events.
//! - [`anchor`]: the last signed checkpoint kept outside the database, and the refusal
//!   of manifest writes when the database's log no longer extends it.
//! - [`witness`], [`witness_client`] and [`cosignature`]: witnesses that cosign each
//!   checkpoint (C2SP tlog-witness, tlog-cosignature), and checking their cosignatures.
//! - [`proof`] and [`verify`]: inclusion proofs for receipts, and the full replay an
//!   auditor runs. [`store`] holds every SQL statement.

pub mod anchor;
pub mod cosignature;
pub mod integrator;
pub mod leaf;
pub mod note;
pub mod proof;
pub mod store;
pub mod tree;
pub mod verify;
pub mod witness;
pub mod witness_client;

use sqlx::PgConnection;
use tlog_tiles::Hash;

use self::tree::Hashes;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the log's stored hashes are incomplete: {0}")]
    Incomplete(String),
    #[error("{0}")]
    Refused(String),
}

/// Run a `tlog_tiles` computation over stored hashes, loading from the database the
/// ones it asks for that `cache` lacks, until it has them all.
pub async fn with_hashes<T>(
    conn: &mut PgConnection,
    cache: &mut Hashes,
    f: impl Fn(&Hashes) -> Result<T, tlog_tiles::Error>,
) -> Result<T, LogError> {
    // Each round loads every hash the computation asked for at once; tlog_tiles asks
    // in at most a few rounds (a proof, then the tiles it spans).
    for _ in 0..16 {
        match f(cache) {
            Ok(v) => return Ok(v),
            Err(tlog_tiles::Error::IndexesNotInTree) => {
                if !store::fill(conn, cache).await? {
                    return Err(LogError::Incomplete(
                        "a stored hash the tree needs is missing".into(),
                    ));
                }
            }
            Err(e) => return Err(LogError::Incomplete(e.to_string())),
        }
    }
    Err(LogError::Incomplete("too many rounds of hash reads".into()))
}

/// The root hash of the database's tree at `size`.
pub async fn root_at(conn: &mut PgConnection, size: u64) -> Result<Hash, LogError> {
    let mut cache = Hashes::default();
    with_hashes(conn, &mut cache, |c| tlog_tiles::tree_hash(size, c)).await
}

/// Hex of a hash, for messages.
pub fn hex_hash(h: &Hash) -> String {
    hex::encode(h.0)
}

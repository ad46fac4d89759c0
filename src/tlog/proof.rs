//! Inclusion proofs bundled with the checkpoint they are proved against: the receipt a
//! CI job keeps next to the digest it deployed. A bundle checks offline, with only the
//! verifier key.
//!
//! Format (JSON, `format` = `tagwarden-log-proof-v1`): `event_id`, `leaf_index`, `leaf`
//! (the leaf's text, see [`super::leaf`]), `checkpoint` (the signed note) and
//! `inclusion` (the RFC 6962 audit path, hex hashes, leaf to root).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tlog_tiles::Hash;

use super::tree::Hashes;
use super::{leaf, note, store, with_hashes, LogError};

pub const FORMAT: &str = "tagwarden-log-proof-v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub event_id: i64,
    pub leaf_index: u64,
    pub leaf: String,
    pub checkpoint: String,
    pub inclusion: Vec<String>,
}

/// The proof of an event against the newest signed checkpoint.
pub async fn prove(conn: &mut PgConnection, event_id: i64) -> Result<Bundle, LogError> {
    let refused = |m: String| LogError::Refused(m);
    let Some(leaf) = store::leaf_of_event(conn, event_id).await? else {
        return Err(refused(format!(
            "event {event_id} is not in the log yet (or does not exist); retry in a second"
        )));
    };
    let Some((size, checkpoint)) = store::latest_checkpoint(conn).await? else {
        return Err(refused("the log has no signed checkpoint yet".into()));
    };
    if leaf.index >= size {
        return Err(refused(format!(
            "event {event_id} is leaf {} but the newest signed checkpoint has {size} leaves; retry in a second",
            leaf.index
        )));
    }
    let event = store::event(conn, event_id)
        .await?
        .ok_or_else(|| refused(format!("event {event_id} is gone from the database")))?;
    let text = leaf::encode(&event.event);
    if tlog_tiles::record_hash(&text) != leaf.hash {
        return Err(refused(format!(
            "event {event_id} no longer matches its leaf {}: the database was altered",
            leaf.index
        )));
    }
    let mut cache = Hashes::default();
    let path = with_hashes(conn, &mut cache, |c| {
        tlog_tiles::prove_record(size, leaf.index, c)
    })
    .await?;
    Ok(Bundle {
        format: FORMAT.into(),
        event_id,
        leaf_index: leaf.index,
        leaf: String::from_utf8(text).map_err(|e| refused(e.to_string()))?,
        checkpoint,
        inclusion: path.iter().map(|h| hex::encode(h.0)).collect(),
    })
}

/// What a verified bundle proves.
#[derive(Debug)]
pub struct Proved {
    pub checkpoint: note::Signed,
    pub fields: Vec<(&'static str, Option<String>)>,
}

/// Check a bundle: the checkpoint's signature, the leaf's form, and its inclusion.
pub fn check(b: &Bundle, verifier_key: &str) -> Result<Proved, String> {
    if b.format != FORMAT {
        return Err(format!("not a {FORMAT} proof (format {:?})", b.format));
    }
    let checkpoint = note::verify(&b.checkpoint, verifier_key)?;
    let fields = leaf::decode(b.leaf.as_bytes())?;
    if fields[0].1.as_deref() != Some(b.event_id.to_string().as_str()) {
        return Err(format!("the leaf is not event {}", b.event_id));
    }
    let path = b
        .inclusion
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .map(Hash)
                .ok_or_else(|| format!("{h:?} is not a hash"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = tlog_tiles::record_hash(b.leaf.as_bytes());
    tlog_tiles::check_record(
        &path,
        checkpoint.size,
        checkpoint.root,
        b.leaf_index,
        record,
    )
    .map_err(|_| {
        format!(
            "the proof does not show leaf {} in the checkpoint of {} leaves",
            b.leaf_index, checkpoint.size
        )
    })?;
    Ok(Proved { checkpoint, fields })
}

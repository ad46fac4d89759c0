//! An accepted write of one tag in one statement: the binding, what the bound manifest
//! references, the event, and the end of the tag's pending writes, in a single round
//! trip instead of three or four.
//!
//! The parts of a data-modifying `WITH` run on one snapshot and do not see each other's
//! rows; none of them reads what another writes, so the result is the same as the
//! statements run one after the other (the tag's lock is held throughout).

use super::references::{ManifestRef, RefKind};
use super::tx::bind_event;
use super::{Actor, NewBinding, NewEvent};
use super::{LedgerError, LedgerTx};

/// The whole of an accepted write, in one statement: `$1`..`$6` the binding (as
/// `upsert_binding.sql`), `$7`..`$22` the event, `$23`/`$24` the references. The parts
/// after the binding are `sql/accept_after_binding.part.sql`: a `.part.sql` file is a
/// piece of a statement, joined here at compile time.
const ACCEPT: &str = concat!(
    "WITH bound AS (",
    include_str!("sql/upsert_binding.sql"),
    include_str!("sql/accept_after_binding.part.sql")
);

impl LedgerTx {
    /// [`LedgerTx::bind`], [`LedgerTx::record_references`] of the bound digest when
    /// `references` is given, and [`LedgerTx::append`], in one statement; the event's
    /// id. Pending writes of the tag are cleared: once it is bound, no write of it asks
    /// whether the registry holds it unrecorded (see [`super::pending`]).
    pub async fn bind_and_append(
        &mut self,
        b: &NewBinding<'_>,
        e: &NewEvent<'_>,
        actor: &Actor,
        references: Option<&[ManifestRef]>,
    ) -> Result<i64, LedgerError> {
        let (mut digests, mut kinds): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        if let Some(refs) = references {
            digests.push(b.digest);
            kinds.push(RefKind::Manifest.as_str());
            for r in refs {
                digests.push(&r.digest);
                kinds.push(r.kind.as_str());
            }
        }
        let q = sqlx::query_scalar(ACCEPT)
            .bind(b.repository)
            .bind(b.tag)
            .bind(b.digest)
            .bind(b.class.as_str())
            .bind(b.rule)
            .bind(b.bound_by);
        Ok(bind_event(q, e, actor)
            .bind(&digests)
            .bind(&kinds)
            .fetch_one(&mut *self.tx)
            .await?)
    }
}

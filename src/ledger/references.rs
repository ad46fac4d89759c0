//! What bound manifests reference (migration 0005): the digests a release needs to stay
//! pullable, so that deleting one of them is refused with one indexed lookup.

use super::tx::lock_key;
use super::{LedgerError, LedgerTx};

const LOCK_REFERENCE: &str = include_str!("sql/lock_reference.sql");
const LOCK_REFERENCES_SHARED: &str = include_str!("sql/lock_references_shared.sql");
const RECORD_REFERENCES: &str = include_str!("sql/record_references.sql");
const RECORDED_REFERENCES: &str = include_str!("sql/recorded_references.sql");
const UNRECORDED_RELEASES: &str = include_str!("sql/unrecorded_releases.sql");
const RELEASES_REACHING: &str = include_str!("sql/releases_reaching.sql");

/// How a bound manifest reaches a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// The bound manifest itself; its row also marks the references as recorded.
    Manifest,
    /// A manifest an index lists (or one listed by such a child).
    Child,
    Config,
    Layer,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Manifest => "manifest",
            RefKind::Child => "child",
            RefKind::Config => "config",
            RefKind::Layer => "layer",
        }
    }

    /// The kind of a stored row (`manifest` for anything else, as the marker row).
    fn parse(s: &str) -> RefKind {
        match s {
            "child" => RefKind::Child,
            "config" => RefKind::Config,
            "layer" => RefKind::Layer,
            _ => RefKind::Manifest,
        }
    }
}

impl From<String> for RefKind {
    fn from(s: String) -> RefKind {
        RefKind::parse(&s)
    }
}

/// One digest a bound manifest references.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestRef {
    pub digest: String,
    pub kind: RefKind,
}

/// A live immutable binding that reaches a digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Reach {
    pub tag: String,
    pub rule: String,
    /// The manifest the tag names.
    pub manifest_digest: String,
    /// How that manifest reaches the digest.
    #[sqlx(try_from = "String")]
    pub kind: RefKind,
}

/// The advisory-lock key guarding deletes of `digest` in a repository against writes
/// that bind a release referencing it. Digests share 256 keys per repository, so that a
/// push of a large index takes a bounded number of locks (the server's lock table is
/// small) rather than one per blob.
fn reference_lock_key(repository: &str, digest: &str) -> i64 {
    let encoded = digest.split_once(':').map_or(digest, |(_, e)| e);
    let bucket = encoded.get(..2).unwrap_or(encoded);
    lock_key(repository, &format!("references/{bucket}"))
}

/// The keys of the shared locks a write takes on what its release references, in the
/// one order every transaction takes them in.
pub(super) fn shared_reference_keys(repository: &str, digests: &[&str]) -> Vec<i64> {
    let mut keys: Vec<i64> = digests
        .iter()
        .map(|d| reference_lock_key(repository, d))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl LedgerTx {
    /// Shared locks for a write that binds a release referencing `digests`: writes do not
    /// wait for each other, but a delete of any of those digests waits for the commit.
    pub async fn lock_references_shared(
        &mut self,
        repository: &str,
        digests: &[&str],
    ) -> Result<(), LedgerError> {
        sqlx::query(LOCK_REFERENCES_SHARED)
            .bind(shared_reference_keys(repository, digests))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The exclusive lock a delete of `digest` takes before checking what reaches it.
    pub async fn lock_reference(
        &mut self,
        repository: &str,
        digest: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(LOCK_REFERENCE)
            .bind(reference_lock_key(repository, digest))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Record what `manifest_digest` references, with the row that marks it recorded.
    /// Idempotent: an identical re-push or a second binding of the same manifest adds
    /// nothing.
    pub async fn record_references(
        &mut self,
        repository: &str,
        manifest_digest: &str,
        references: &[ManifestRef],
    ) -> Result<(), LedgerError> {
        let mut digests: Vec<&str> = vec![manifest_digest];
        let mut kinds: Vec<&str> = vec![RefKind::Manifest.as_str()];
        for r in references {
            digests.push(&r.digest);
            kinds.push(r.kind.as_str());
        }
        sqlx::query(RECORD_REFERENCES)
            .bind(repository)
            .bind(manifest_digest)
            .bind(&digests)
            .bind(&kinds)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The recorded references of `manifest_digest`, or `None` if they are not recorded.
    pub async fn recorded_references(
        &mut self,
        repository: &str,
        manifest_digest: &str,
    ) -> Result<Option<Vec<ManifestRef>>, LedgerError> {
        let rows: Vec<(String, String)> = sqlx::query_as(RECORDED_REFERENCES)
            .bind(repository)
            .bind(manifest_digest)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut recorded = false;
        let mut refs = Vec::with_capacity(rows.len());
        for (digest, kind) in rows {
            match RefKind::parse(&kind) {
                RefKind::Manifest => recorded = true,
                kind => refs.push(ManifestRef { digest, kind }),
            }
        }
        Ok(recorded.then_some(refs))
    }

    /// Digests named by live immutable bindings whose references are not recorded yet
    /// (bound before migration 0005), at most `limit`.
    pub async fn unrecorded_releases(
        &mut self,
        repository: &str,
        limit: i64,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(UNRECORDED_RELEASES)
            .bind(repository)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Live immutable bindings of a repository whose manifest reaches `digest` (the
    /// manifest itself included), one row per tag, at most `limit`.
    pub async fn releases_reaching(
        &mut self,
        repository: &str,
        digest: &str,
        limit: i64,
    ) -> Result<Vec<Reach>, LedgerError> {
        Ok(sqlx::query_as(RELEASES_REACHING)
            .bind(repository)
            .bind(digest)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_share_a_bounded_set_of_lock_keys_per_repository() {
        let a = format!("sha256:ab{}", "0".repeat(62));
        let b = format!("sha256:ab{}", "1".repeat(62));
        let c = format!("sha256:cd{}", "0".repeat(62));
        assert_eq!(reference_lock_key("r", &a), reference_lock_key("r", &b));
        assert_ne!(reference_lock_key("r", &a), reference_lock_key("r", &c));
        assert_ne!(reference_lock_key("r", &a), reference_lock_key("s", &a));
        assert_ne!(reference_lock_key("r", &a), lock_key("r", &a));
    }
}

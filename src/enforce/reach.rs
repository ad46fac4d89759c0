//! What a release needs to stay pullable: the config and layers of its manifest and,
//! for an index, every child manifest with the children's own config and layers.
//!
//! They are read once, when a release is bound, and kept in the ledger
//! (`manifest_references`), so that a delete of a blob or child manifest is checked with
//! one indexed lookup. Bindings made before those records existed are read from the
//! registry the first time something in their repository is deleted.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::Guard;
use crate::ledger::{LedgerTx, ManifestRef, Reach, RefKind};
use crate::oci::{Digest, ErrorCode, Name, OciError};
use crate::proxy::Client;

/// The most manifests read below one release (children of an index, and theirs).
pub const MAX_CHILDREN: usize = 1024;
/// The most descriptors (layers or child manifests) one manifest may list.
pub const MAX_DESCRIPTORS: usize = 4096;
/// How many older releases one delete reads from the registry per round, and the
/// rounds it spends before asking the client to retry.
const BACKFILL_BATCH: i64 = 64;
const BACKFILL_ROUNDS: usize = 4;
/// The most releases named in a refusal.
pub const MAX_REACHING: i64 = 100;

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// The fields of an image manifest or index that name other content.
#[derive(Deserialize)]
struct Listed {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// What one manifest lists directly: `(digest, kind)` of its config and layers, and
/// the digests of its child manifests.
fn listed(bytes: &[u8], what: &str) -> Result<(Vec<ManifestRef>, Vec<Digest>), OciError> {
    let m: Listed = serde_json::from_slice(bytes)
        .map_err(|e| invalid(&format!("{what} does not list its content readably: {e}")))?;
    if m.layers.len() > MAX_DESCRIPTORS || m.manifests.len() > MAX_DESCRIPTORS {
        return Err(invalid(&format!(
            "{what} lists more than {MAX_DESCRIPTORS} layers or manifests"
        )));
    }
    let parse = |d: &Descriptor| {
        Digest::parse(&d.digest).map_err(|_| invalid(&format!("{what} lists an invalid digest")))
    };
    let mut refs = Vec::with_capacity(m.layers.len() + 1);
    if let Some(c) = &m.config {
        refs.push(ManifestRef {
            digest: parse(c)?.as_str().to_owned(),
            kind: RefKind::Config,
        });
    }
    for l in &m.layers {
        refs.push(ManifestRef {
            digest: parse(l)?.as_str().to_owned(),
            kind: RefKind::Layer,
        });
    }
    let children = m.manifests.iter().map(parse).collect::<Result<_, _>>()?;
    Ok((refs, children))
}

/// What a pushed manifest that lists no child manifests references: exactly what its
/// bytes list, known before the write takes any lock. `None` for an index (its
/// children must be read) or bytes that do not parse (the push fails later, as before).
pub(super) fn own_references(bytes: &[u8]) -> Option<Vec<ManifestRef>> {
    let (refs, children) = listed(bytes, "the manifest").ok()?;
    let refs: BTreeSet<ManifestRef> = refs.into_iter().collect();
    children.is_empty().then(|| refs.into_iter().collect())
}

/// Everything the manifest `top` reaches. `fetch` reads a child manifest by digest
/// (`None`: the registry does not hold it); its bytes are checked against the digest.
/// A missing child is an error when `strict` (a push: the registry would refuse the
/// index anyway), and skipped otherwise (a release already stored: what is left of it
/// is still protected).
pub async fn collect<F, Fut>(
    top: &[u8],
    strict: bool,
    mut fetch: F,
) -> Result<Vec<ManifestRef>, OciError>
where
    F: FnMut(Digest) -> Fut,
    Fut: Future<Output = Result<Option<bytes::Bytes>, OciError>>,
{
    let (first, children) = listed(top, "the manifest")?;
    let mut refs: BTreeSet<ManifestRef> = first.into_iter().collect();
    let mut queue: VecDeque<Digest> = children.into();
    let mut read = 0usize;
    while let Some(child) = queue.pop_front() {
        let entry = ManifestRef {
            digest: child.as_str().to_owned(),
            kind: RefKind::Child,
        };
        if !refs.insert(entry) {
            continue;
        }
        read += 1;
        if read > MAX_CHILDREN {
            return Err(invalid(&format!(
                "the index reaches more than {MAX_CHILDREN} manifests"
            )));
        }
        let Some(bytes) = fetch(child.clone()).await? else {
            if strict {
                return Err(OciError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ManifestBlobUnknown,
                    format!("the index lists manifest {child}, which the registry does not hold; push it first"),
                ));
            }
            tracing::warn!(%child, "a release lists a manifest the registry does not hold");
            continue;
        };
        if Digest::of(child.algorithm(), &bytes) != child {
            return Err(crate::registry::cannot_check(&format!(
                "the registry served other bytes for {child}"
            )));
        }
        let (more, grandchildren) = listed(&bytes, &format!("manifest {child}"))?;
        refs.extend(more);
        queue.extend(grandchildren);
    }
    Ok(refs.into_iter().collect())
}

fn invalid(message: &str) -> OciError {
    OciError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
}

impl Guard {
    /// What the release `digest` references (from the ledger when recorded, else from
    /// `bytes` on a push or from the registry), locked (shared) so that deletes of any
    /// of it wait for this transaction. Call before the upstream stores the manifest;
    /// record the result with [`LedgerTx::record_references`] after the binding. A
    /// pushed manifest without children needs none of this: its references are
    /// [`own_references`], locked when its transaction began.
    pub(super) async fn release_references(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        digest: &Digest,
        bytes: Option<&[u8]>,
        headers: &HeaderMap,
        client: &Client,
    ) -> Result<Vec<ManifestRef>, OciError> {
        let recorded = tx
            .recorded_references(name.as_str(), digest.as_str())
            .await?;
        let refs = match recorded {
            Some(refs) => refs,
            None => {
                self.read_references(name, digest, bytes, headers, client)
                    .await?
            }
        };
        let mut locked: Vec<&str> = refs.iter().map(|r| r.digest.as_str()).collect();
        locked.push(digest.as_str());
        tx.lock_references_shared(name.as_str(), &locked).await?;
        Ok(refs)
    }

    /// Read what `digest` references: from `bytes` when given (children still come from
    /// the registry), else from the registry. A manifest the registry no longer holds
    /// references nothing tagwarden can protect.
    async fn read_references(
        &self,
        name: &Name,
        digest: &Digest,
        bytes: Option<&[u8]>,
        headers: &HeaderMap,
        client: &Client,
    ) -> Result<Vec<ManifestRef>, OciError> {
        let registry = self.registry.as_client(headers, client);
        let registry = &registry;
        let fetch = |d: Digest| async move {
            Ok::<_, OciError>(registry.manifest(name, &d).await?.map(|m| m.bytes))
        };
        match bytes {
            Some(b) => collect(b, true, fetch).await,
            None => match fetch(digest.clone()).await? {
                Some(b) => collect(&b, false, fetch).await,
                None => {
                    tracing::warn!(repository = name.as_str(), %digest, "a release's manifest is not in the registry");
                    Ok(Vec::new())
                }
            },
        }
    }

    /// Record the references of every live release of `name` bound before they were
    /// kept (migration 0005), in short transactions of their own; fail closed if the
    /// registry cannot be read.
    pub(super) async fn record_older_releases(
        &self,
        name: &Name,
        headers: &HeaderMap,
        client: &Client,
    ) -> Result<(), OciError> {
        let repo = name.as_str();
        for _ in 0..BACKFILL_ROUNDS {
            let mut tx = self.ledger.begin().await?;
            let pending = tx.unrecorded_releases(repo, BACKFILL_BATCH).await?;
            if pending.is_empty() {
                return Ok(());
            }
            for d in &pending {
                let digest = Digest::parse(d).map_err(|_| {
                    crate::registry::cannot_check(&format!(
                        "the ledger binds a release of {repo} to {d:?}, not a digest"
                    ))
                })?;
                let refs = self
                    .read_references(name, &digest, None, headers, client)
                    .await?;
                tx.record_references(repo, d, &refs).await?;
            }
            tx.commit().await?;
            tracing::info!(
                repository = repo,
                releases = pending.len(),
                "recorded what older releases reference"
            );
        }
        Err(OciError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("tagwarden is still recording what the older releases of {repo} reference, so deletes there wait; retry shortly"),
        )
        .with_retry_after(5))
    }

    /// Lock `digest` against writes binding a release that references it, then list
    /// the live releases that reach it. Call [`Guard::record_older_releases`] first.
    pub(super) async fn releases_reaching(
        &self,
        tx: &mut LedgerTx,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<Reach>, OciError> {
        tx.lock_reference(repo, digest.as_str()).await?;
        // A release bound since the references were recorded without them (an older
        // tagwarden sharing the database): do not guess.
        if !tx.unrecorded_releases(repo, 1).await?.is_empty() {
            return Err(OciError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("a release of {repo} was bound while this delete was checked; retry"),
            )
            .with_retry_after(1));
        }
        Ok(tx
            .releases_reaching(repo, digest.as_str(), MAX_REACHING)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest(config: &str, layers: &[String]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": { "digest": config },
            "layers": layers.iter().map(|l| serde_json::json!({ "digest": l })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn an_index_reaches_its_children_and_their_content() {
        let child = manifest(&d('c'), &[d('1'), d('2')]);
        let child_digest = Digest::of(crate::oci::reference::Algorithm::Sha256, &child);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{ "digest": child_digest.as_str() }, { "digest": child_digest.as_str() }],
        }))
        .unwrap();
        let mut fetched = 0;
        let refs = collect(&index, true, |want: Digest| {
            fetched += 1;
            let child = child.clone();
            let expected = child_digest.clone();
            async move {
                assert_eq!(want, expected);
                Ok(Some(bytes::Bytes::from(child)))
            }
        })
        .await
        .unwrap();
        assert_eq!(fetched, 1, "a child listed twice is read once");
        let kinds: Vec<(&str, RefKind)> =
            refs.iter().map(|r| (r.digest.as_str(), r.kind)).collect();
        assert!(kinds.contains(&(child_digest.as_str(), RefKind::Child)));
        assert!(kinds.contains(&(d('c').as_str(), RefKind::Config)));
        assert!(kinds.contains(&(d('2').as_str(), RefKind::Layer)));
        assert_eq!(refs.len(), 4);
    }

    #[tokio::test]
    async fn missing_or_forged_children_and_bad_descriptors_are_errors() {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "manifests": [{ "digest": d('a') }],
        }))
        .unwrap();
        let none = |_| async { Ok(None) };
        let e = collect(&index, true, none).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestBlobUnknown);
        let lenient = collect(&index, false, none).await.unwrap();
        assert_eq!(lenient.len(), 1, "the missing child itself stays protected");
        let forged = |_| async { Ok(Some(bytes::Bytes::from_static(b"{}"))) };
        assert_eq!(
            collect(&index, true, forged).await.unwrap_err().status,
            StatusCode::BAD_GATEWAY
        );
        let bad = br#"{"schemaVersion":2,"layers":[{"digest":"md5:abc"}]}"#;
        assert_eq!(
            collect(bad, true, none).await.unwrap_err().code,
            ErrorCode::ManifestInvalid
        );
        let many: Vec<String> = (0..=MAX_DESCRIPTORS).map(|_| d('1')).collect();
        assert!(collect(&manifest(&d('c'), &many), true, none)
            .await
            .is_err());
    }
}

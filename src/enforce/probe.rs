//! Asking the upstream what it holds, with the client's own credentials: what a tag
//! points to, and which tags a repository has. The requests are
//! [`crate::registry::RegistryClient`]'s.

use crate::ledger::LedgerTx;
use crate::oci::reference::Digest;
use crate::oci::{Name, OciError, Tag};
use crate::policy::{Policy, TagClass};
use crate::registry::{cannot_check, RegistryClient};

/// What the upstream says a tag points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Absent,
    Present(Digest),
}

/// The most tag-list pages followed when searching a repository.
const MAX_TAG_PAGES: usize = 1000;
/// The most unrecorded immutable tags resolved for one delete.
const MAX_RESOLVED_TAGS: usize = 4096;

/// What `name:tag` points to in the upstream, asked with the client's credentials (a
/// protected registry would look empty otherwise).
pub async fn resolve(registry: &RegistryClient, name: &Name, tag: &str) -> Result<Probe, OciError> {
    Ok(match registry.resolve(name, tag).await? {
        Some(d) => Probe::Present(d),
        None => Probe::Absent,
    })
}

/// Tags of `name` in the upstream that policy makes immutable, that the ledger has no
/// binding for, and that point at `digest`: a delete of that digest would remove them.
/// Each candidate is resolved, so an unrecorded release naming some other digest
/// neither refuses the delete nor is taken for one of the tags it removes.
pub async fn unrecorded_immutable_tags(
    registry: &RegistryClient,
    policy: &Policy,
    tx: &mut LedgerTx,
    name: &Name,
    digest: &Digest,
) -> Result<Vec<Tag>, OciError> {
    let mut found = Vec::new();
    let mut resolved = 0usize;
    let mut pages = registry.tags(name, None).at_most(MAX_TAG_PAGES);
    while let Some(page) = pages.next().await? {
        for t in page {
            let Ok(tag) = Tag::parse(&t) else { continue };
            if policy.classify(name.as_str(), tag.as_str()).class != TagClass::Immutable {
                continue;
            }
            if tx
                .binding(name.as_str(), tag.as_str())
                .await
                .map_err(|e| cannot_check(&e.to_string()))?
                .is_some()
            {
                continue;
            }
            resolved += 1;
            if resolved > MAX_RESOLVED_TAGS {
                return Err(cannot_check(&format!(
                    "{name} has more than {MAX_RESOLVED_TAGS} immutable tags the ledger has not recorded; run tagwarden import"
                )));
            }
            if resolve(registry, name, tag.as_str()).await? == Probe::Present(digest.clone()) {
                found.push(tag);
            }
        }
    }
    Ok(found)
}

//! Asking the upstream what it holds, with the client's own credentials: what a tag
//! points to, and which tags a repository has; an immutable tag the ledger never saw
//! but the registry holds is adopted. The requests are
//! [`crate::registry::RegistryClient`]'s.

use http::request::Parts;

use super::Guard;
use crate::ledger::{Action, Actor, Binding, LedgerTx, NewBinding, NewEvent};
use crate::oci::reference::Digest;
use crate::oci::{Name, OciError, Tag};
use crate::policy::{Decision, Policy, TagClass};
use crate::proxy::Client;
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

impl Guard {
    /// The tags of a write that it announces before it can reach the registry: its
    /// immutable ones, when the probe may be skipped at all (`[enforce]
    /// ledger_complete`).
    pub(super) fn to_announce<'t>(&self, name: &Name, tags: &'t [Tag]) -> Vec<&'t str> {
        if !self.ledger_complete {
            return Vec::new();
        }
        tags.iter()
            .map(Tag::as_str)
            .filter(|t| self.policy.classify(name.as_str(), t).class == TagClass::Immutable)
            .collect()
    }

    /// An immutable tag the ledger has never seen: skip the probe when the ledger proved
    /// the registry holds nothing under it (`proven_unwritten`, see
    /// `crate::ledger::pending`), else ask the registry and adopt what it holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn unseen_release(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        tag: &Tag,
        decision: &Decision,
        proven_unwritten: bool,
        parts: &Parts,
        client: &Client,
    ) -> Result<Option<Binding>, OciError> {
        if proven_unwritten {
            // The operator asserts the ledger is complete, no write of the tag can have
            // reached the registry uncommitted, and no drift was found: the registry
            // holds nothing under it.
            self.metrics.upstream_probe("skipped");
            return Ok(None);
        }
        // Ask the upstream before claiming the name.
        let adopted = self
            .adopt_existing(tx, name, tag, decision, parts, client)
            .await?;
        self.metrics.upstream_probe(if adopted.is_some() {
            "present"
        } else {
            "absent"
        });
        Ok(adopted)
    }

    /// Look up an immutable tag the ledger has never seen in the upstream. If it exists,
    /// record it as adopted and return its binding.
    pub(super) async fn adopt_existing(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        tag: &Tag,
        decision: &Decision,
        parts: &Parts,
        client: &Client,
    ) -> Result<Option<Binding>, OciError> {
        let existing = match resolve(
            &self.registry.as_client(&parts.headers, client),
            name,
            tag.as_str(),
        )
        .await?
        {
            Probe::Absent => return Ok(None),
            Probe::Present(d) => d,
        };
        let repo = name.as_str();
        let system = Actor {
            identity: None,
            verified: false,
            request_id: Some(client.request_id.clone()),
            ..Actor::default()
        };
        tx.bind(&NewBinding {
            repository: repo,
            tag: tag.as_str(),
            digest: existing.as_str(),
            class: decision.class,
            rule: &decision.rule,
            bound_by: None,
        })
        .await?;
        let refs = self
            .release_references(tx, name, &existing, None, &parts.headers, client)
            .await?;
        tx.record_references(repo, existing.as_str(), &refs).await?;
        tx.append(
            &NewEvent {
                tag: Some(tag.as_str()),
                digest: Some(existing.as_str()),
                class: Some(decision.class),
                rule: Some(&decision.rule),
                reason: Some("found-in-registry"),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(Action::Adopt, repo)
            },
            &system,
        )
        .await?;
        Ok(tx.binding(repo, tag.as_str()).await?)
    }
}

//! Retiring a release: the operator's way to remove an immutable release from the
//! registry without giving its name back (`POST /api/v1/retire`, and retention).
//!
//! The manifest is deleted by digest with tagwarden's own credentials (distribution 2.8
//! has no tag delete, and a delete by digest removes every tag naming it). So a digest
//! that any other live tag names, recorded or found in the registry, or that a live
//! release's index lists, is refused rather than deleted from under those tags. The
//! binding is kept, marked retired: it no longer protects its blobs, and its name stays
//! reserved for its digest (see [`super::plan`]).

use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{recorded_digest, Guard};
use crate::ledger::{Action, Actor, Binding, NewEvent, RefKind};
use crate::oci::{Digest, ErrorCode, Name, OciError, Tag};
use crate::policy::TagClass;
use crate::proxy::Client;

/// What a retirement did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retired {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    /// Whether the registry still held the manifest (and deleted it now); false when it
    /// no longer did, and the release is retired all the same.
    pub deleted_from_registry: bool,
}

impl Guard {
    /// Retire the release `name:tag`: delete its manifest from the registry and mark the
    /// binding retired, recorded with `reason` and `who`.
    pub async fn retire(
        &self,
        name: &Name,
        tag: &Tag,
        reason: &str,
        who: &str,
    ) -> Result<Retired, OciError> {
        let repo = name.as_str();
        let binding = self.ledger.binding(repo, tag.as_str()).await?;
        let binding = retirable(repo, tag.as_str(), binding)?;
        let digest = recorded_digest(&binding.digest)?;
        let (headers, client) = self.own_credentials();
        self.record_older_releases(name, &headers, &client).await?;
        let (mut tx, bound) = self.lock_digest_with_tags(repo, digest.as_str()).await?;
        // Under the locks: still the same live release?
        let binding = retirable(repo, tag.as_str(), tx.binding(repo, tag.as_str()).await?)?;
        if binding.digest != digest.as_str() {
            return Err(busy(repo, tag.as_str()));
        }
        let mut others: Vec<String> = bound
            .iter()
            .filter(|b| b.tag != tag.as_str())
            .map(|b| format!("{} ({})", b.tag, b.class.as_str()))
            .collect();
        if others.is_empty() {
            others = probe_unrecorded(self, &mut tx, name, &digest, &headers, &client).await?;
        }
        if !others.is_empty() {
            return Err(shared(repo, tag.as_str(), &digest, &others));
        }
        let listing: Vec<String> = self
            .releases_reaching(&mut tx, repo, &digest)
            .await?
            .into_iter()
            .filter(|r| r.kind != RefKind::Manifest && r.tag != tag.as_str())
            .map(|r| r.tag)
            .collect();
        if !listing.is_empty() {
            return Err(shared(repo, tag.as_str(), &digest, &listing));
        }

        let deleted_from_registry = self.delete_as_tagwarden(name, &digest).await?;
        let actor = Actor {
            identity: Some(who.to_owned()),
            verified: true,
            ..Actor::default()
        };
        tx.mark_retired(repo, tag.as_str(), reason, Some(who))
            .await?;
        let event = NewEvent {
            tag: Some(tag.as_str()),
            digest: Some(digest.as_str()),
            previous_digest: Some(digest.as_str()),
            class: Some(TagClass::Immutable),
            rule: Some(&binding.rule),
            reason: Some(reason),
            detail: Some(json!({ "deleted_from_registry": deleted_from_registry })),
            policy_hash: Some(self.policy.hash()),
            ..NewEvent::new(Action::Retire, repo)
        };
        tx.append(&event, &actor).await?;
        tx.commit().await?;
        self.metrics.decision("retired");
        tracing::info!(repository = repo, tag = %tag, %digest, who, deleted_from_registry, "retired a release");
        Ok(Retired {
            repository: repo.to_owned(),
            tag: tag.as_str().to_owned(),
            digest: digest.as_str().to_owned(),
            reason: reason.to_owned(),
            deleted_from_registry,
        })
    }

    /// The headers and client of a request tagwarden makes itself, with its own
    /// upstream credentials.
    fn own_credentials(&self) -> (HeaderMap, Client) {
        let mut headers = HeaderMap::new();
        if let Some(auth) = &self.own_authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let client = Client {
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            host: None,
            tls: false,
            trusted_peer: false,
            request_id: format!("retire-{}", uuid::Uuid::new_v4()),
        };
        (headers, client)
    }

    /// `DELETE /v2/<name>/manifests/<digest>` with tagwarden's credentials: true when
    /// deleted, false when the registry no longer held it.
    async fn delete_as_tagwarden(&self, name: &Name, digest: &Digest) -> Result<bool, OciError> {
        Ok(self.registry.delete_manifest(name, digest).await?)
    }
}

/// Immutable tags in the registry the ledger has not recorded that name `digest`.
async fn probe_unrecorded(
    guard: &Guard,
    tx: &mut crate::ledger::LedgerTx,
    name: &Name,
    digest: &Digest,
    headers: &HeaderMap,
    client: &Client,
) -> Result<Vec<String>, OciError> {
    let registry = guard.registry.as_client(headers, client);
    let tags =
        super::probe::unrecorded_immutable_tags(&registry, &guard.policy, tx, name, digest).await?;
    Ok(tags
        .iter()
        .map(|t| format!("{t} (immutable, not recorded)"))
        .collect())
}

/// The binding, if it is a live immutable release; else why it cannot be retired.
fn retirable(repo: &str, tag: &str, binding: Option<Binding>) -> Result<Binding, OciError> {
    let b = binding.ok_or_else(|| {
        OciError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ManifestUnknown,
            format!("{repo}:{tag} is not a release recorded in the ledger"),
        )
    })?;
    if let Some(r) = b.retirement() {
        return Err(OciError::new(
            StatusCode::CONFLICT,
            ErrorCode::Denied,
            format!(
                "{repo}:{tag} was already retired at {} (reason: {})",
                r.at.format("%Y-%m-%dT%H:%M:%SZ"),
                r.reason
            ),
        ));
    }
    if b.class != TagClass::Immutable || b.deleted_at.is_some() {
        return Err(OciError::new(
            StatusCode::CONFLICT,
            ErrorCode::Denied,
            format!(
                "{repo}:{tag} is not a live immutable release (it is {}{}): only releases are retired; other tags are deleted with a normal delete",
                b.class.as_str(),
                if b.deleted_at.is_some() { ", deleted" } else { "" }
            ),
        ));
    }
    Ok(b)
}

/// Other live tags need the manifest: the registry deletes by digest, so it stays.
fn shared(repo: &str, tag: &str, digest: &Digest, others: &[String]) -> OciError {
    OciError::new(
        StatusCode::CONFLICT,
        ErrorCode::Denied,
        format!(
            "{repo}:{tag} was not retired: its manifest {digest} is also needed by {} (the registry deletes a manifest by digest, with every tag naming it); retire, move or delete those first",
            others.join(", ")
        ),
    )
    .with_detail(json!({
        "repository": repo,
        "tag": tag,
        "digest": digest.as_str(),
        "needed_by": others,
    }))
}

fn busy(repo: &str, tag: &str) -> OciError {
    OciError::new(
        StatusCode::CONFLICT,
        ErrorCode::Denied,
        format!("{repo}:{tag} changed while it was being retired; nothing was retired; retry"),
    )
}

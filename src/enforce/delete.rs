//! A manifest delete (`DELETE /v2/<name>/manifests/<reference>`): refused while an
//! immutable tag names the manifest or a live release reaches it (an index listing it);
//! otherwise forwarded, and every tag it removed marked deleted.

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::StatusCode;

use super::{append, blob, identity, probe, refusal, Guard};
use crate::ledger::{Action, Actor, Binding, LedgerTx, NewEvent, RefKind};
use crate::oci::error::chain;
use crate::oci::{ErrorCode, Name, OciError, Reference};
use crate::policy::{Decision, Mode, TagClass};
use crate::proxy::body::Activity;
use crate::proxy::Client;

impl Guard {
    /// Record the refusal of a delete: one event per tag it would have removed (as
    /// far as the limiter admits), with the answer's detail; the answer is handed back.
    async fn record_delete_refusal(
        &self,
        tx: LedgerTx,
        repo: &str,
        tags: Vec<&Binding>,
        (class, reason): (TagClass, &str),
        error: OciError,
        actor: &Actor,
    ) -> OciError {
        let events = tags
            .into_iter()
            .filter(|b| self.admit_refusal(repo, &b.tag, actor))
            .map(|b| NewEvent {
                tag: Some(&b.tag),
                digest: Some(&b.digest),
                class: Some(class),
                rule: Some(&b.rule),
                reason: Some(reason),
                detail: error.detail.clone(),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(Action::Refuse, repo)
            })
            .collect();
        self.record_refusal(tx, events, actor).await;
        error
    }

    pub(super) async fn try_delete(
        &self,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        client: &Client,
    ) -> Result<Response, OciError> {
        if let Some(why) = self.log_gate.refusal() {
            return Err(super::write::unanchored(why));
        }
        let mut actor = identity::actor(&parts.headers, client);
        let repo = name.as_str();
        let (mut tx, digest_bindings) = match reference {
            Reference::Tag(tag) => {
                let tx = self.ledger.begin_locked(repo, &[tag.as_str()], &[]).await?;
                (tx, Vec::new())
            }
            Reference::Digest(digest) => {
                self.record_older_releases(name, &parts.headers, client)
                    .await?;
                self.lock_digest_with_tags(repo, digest.as_str()).await?
            }
        };

        // The tags this delete removes, with their decisions.
        let mut affected: Vec<(Binding, Decision)> = Vec::new();
        let mut refused: Vec<Binding> = Vec::new();
        // Append-only tags whose subject is a live release, with its release tags.
        let mut kept: Vec<(Binding, Vec<String>)> = Vec::new();
        match reference {
            Reference::Tag(tag) => {
                let decision = self.policy.classify(repo, tag.as_str());
                let binding = tx.binding(repo, tag.as_str()).await?;
                let live = binding.as_ref().filter(|b| b.deleted_at.is_none());
                if let Some(releases) = self
                    .subject_releases(&mut tx, repo, live, &decision)
                    .await?
                {
                    kept.push((live.cloned().expect("a live binding"), releases));
                } else if decision.class == TagClass::Immutable && decision.mode == Mode::Enforce {
                    let b = binding.unwrap_or_else(|| unbound(repo, tag.as_str(), &decision));
                    refused.push(b);
                } else if let Some(b) = binding.filter(|b| b.deleted_at.is_none()) {
                    affected.push((b, decision));
                }
            }
            Reference::Digest(digest) => {
                for b in digest_bindings {
                    let decision = self.policy.classify(repo, &b.tag);
                    if let Some(releases) = self
                        .subject_releases(&mut tx, repo, Some(&b), &decision)
                        .await?
                    {
                        kept.push((b, releases));
                    } else if decision.class == TagClass::Immutable
                        && decision.mode == Mode::Enforce
                    {
                        refused.push(b);
                    } else {
                        affected.push((b, decision));
                    }
                }
                // Immutable tags the ledger never saw may still name this digest.
                if refused.is_empty() {
                    for tag in probe::unrecorded_immutable_tags(
                        &self.registry.as_client(&parts.headers, client),
                        &self.policy,
                        &mut tx,
                        name,
                        digest,
                    )
                    .await?
                    {
                        let decision = self.policy.classify(repo, tag.as_str());
                        if let Some(b) = self
                            .adopt_existing(&mut tx, name, &tag, &decision, &parts, client)
                            .await?
                        {
                            if decision.mode == Mode::Enforce {
                                refused.push(b);
                            } else {
                                affected.push((b, decision));
                            }
                        }
                    }
                }
            }
        }

        // An immutable tag, or an append-only tag of a live release, is not deleted:
        // the tags, the answer, and how the refusal is recorded and logged.
        let refusing = if !refused.is_empty() {
            let tags: Vec<&Binding> = refused.iter().collect();
            let error = refusal::delete(repo, reference.as_str(), &tags);
            let how = (TagClass::Immutable, "immutable-tag-delete");
            Some((tags, error, how, "refused deleting an immutable tag"))
        } else if !kept.is_empty() {
            let listed: Vec<(&Binding, Vec<String>)> =
                kept.iter().map(|(b, r)| (b, r.clone())).collect();
            let error = refusal::append_only_delete(repo, reference.as_str(), &listed);
            let tags = kept.iter().map(|(b, _)| b).collect();
            let how = (TagClass::AppendOnly, "append-only-delete");
            Some((
                tags,
                error,
                how,
                "refused deleting an append-only tag of a live release",
            ))
        } else {
            None
        };
        if let Some((tags, error, how, what)) = refusing {
            if let Some(upstream_answer) = self
                .before_refusing(name, &parts, client, &mut actor)
                .await?
            {
                return Ok(upstream_answer);
            }
            let error = self
                .record_delete_refusal(tx, repo, tags, how, error, &actor)
                .await;
            tracing::info!(repository = repo, reference = reference.as_str(), "{what}");
            return Err(error);
        }

        // Releases that reach the digest without naming it: an index that lists it.
        let mut warned = Vec::new();
        if let Reference::Digest(digest) = reference {
            let reaching = self.releases_reaching(&mut tx, repo, digest).await?;
            let (enforced, allowed) = self.split_by_mode(
                repo,
                reaching
                    .into_iter()
                    .filter(|r| r.kind != RefKind::Manifest)
                    .collect(),
            );
            if !enforced.is_empty() {
                let refused = blob::Reached {
                    what: "manifest",
                    digest,
                    releases: &enforced,
                    reason: "release-manifest-delete",
                };
                return self
                    .refuse_reached(tx, name, &parts, client, &mut actor, refused)
                    .await;
            }
            warned = allowed;
        }

        let req = self
            .forwarder
            .upstream_request(parts, Body::empty(), client);
        let resp = self
            .forwarder
            .send(req, &Activity::new(), "manifest")
            .await?;
        if !resp.status().is_success() {
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %chain(&e), "could not roll back after the upstream refused a delete");
            }
            return Ok(self.forwarder.downstream_response(resp));
        }
        actor.verified = self.verified(&actor).await;
        for (b, decision) in &affected {
            let warned = decision.class == TagClass::Immutable;
            let event = NewEvent {
                tag: Some(&b.tag),
                digest: Some(&b.digest),
                previous_digest: Some(&b.digest),
                class: Some(decision.class),
                rule: Some(&decision.rule),
                reason: warned.then_some("immutable-tag-delete"),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(if warned { Action::Warn } else { Action::Delete }, repo)
            };
            tx.mark_deleted(repo, &b.tag).await?;
            tx.append(&event, &actor).await?;
        }
        tx.commit().await?;
        self.metrics.decision("deleted");
        let mut out = self.forwarder.downstream_response(resp);
        blob::warn_header(&mut out, repo, "manifest", reference.as_str(), &warned);
        Ok(out)
    }

    /// For a live append-only tag under an enforcing rule: the live release tags of its
    /// subject (the digest its name carries), when there are any.
    async fn subject_releases(
        &self,
        tx: &mut LedgerTx,
        repo: &str,
        binding: Option<&Binding>,
        decision: &Decision,
    ) -> Result<Option<Vec<String>>, OciError> {
        let Some(b) = binding.filter(|b| b.deleted_at.is_none()) else {
            return Ok(None);
        };
        if decision.class != TagClass::AppendOnly || decision.mode != Mode::Enforce {
            return Ok(None);
        }
        let Some(subject) = append::subject(&b.tag) else {
            return Ok(None);
        };
        let releases = tx.release_tags(repo, &subject).await?;
        Ok((!releases.is_empty()).then_some(releases))
    }

    /// Lock a digest together with every tag bound to it, in one sorted call, so that
    /// a concurrent push moving one of those tags elsewhere serialises with the delete
    /// (that push locks the tag, not this digest). If a tag was bound to the digest
    /// between the look and the lock, start over.
    pub(super) async fn lock_digest_with_tags(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<(LedgerTx, Vec<Binding>), OciError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut tx = self.ledger.begin().await?;
            let seen = tx.bindings_for_digest(repo, digest).await?;
            let mut items: Vec<&str> = seen.iter().map(|b| b.tag.as_str()).collect();
            items.push(digest);
            tx.lock(repo, &items).await?;
            let bound = tx.bindings_for_digest(repo, digest).await?;
            if bound.iter().all(|b| seen.iter().any(|s| s.tag == b.tag)) {
                return Ok((tx, bound));
            }
            let _ = tx.rollback().await;
        }
        Err(OciError::new(
            StatusCode::CONFLICT,
            ErrorCode::Unsupported,
            format!(
                "the tags of {repo}@{digest} kept changing while the delete was checked; retry"
            ),
        ))
    }
}

/// A stand-in binding for an immutable tag the ledger has not recorded, for messages.
fn unbound(repo: &str, tag: &str, decision: &Decision) -> Binding {
    let now = chrono::Utc::now();
    Binding {
        repository: repo.into(),
        tag: tag.into(),
        digest: "(not recorded)".into(),
        class: decision.class,
        rule: decision.rule.clone(),
        bound_by: None,
        first_bound_at: now,
        last_changed_at: now,
        deleted_at: None,
        retired_at: None,
        retired_reason: None,
        retired_by: None,
    }
}

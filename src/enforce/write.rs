//! A manifest write (`PUT /v2/<name>/manifests/<reference>[?tag=...]`).
//!
//! For a write that names tags:
//! 1. read and hash the manifest (bounded), parse every tag (path and `?tag=`);
//! 2. in one round trip (`Ledger::begin_write`): with `[enforce] ledger_complete`,
//!    announce its immutable tags as pending writes (`crate::ledger::pending`); open a
//!    ledger transaction holding advisory locks on the tags and the digest, so that
//!    every tagwarden process sharing the database serialises on them, and shared
//!    locks on what a manifest without children references; and read each tag's
//!    binding and pending writes once the locks are held;
//! 3. read the rest of what each tag's decision needs ([`super::facts`]): for an
//!    immutable tag the ledger has never seen, what the upstream holds under it (it may
//!    predate tagwarden, or a crash may have left the upstream ahead of the ledger),
//!    unless the ledger proves it holds nothing; for an advancing tag, the releases
//!    involved;
//! 4. decide, with no I/O ([`super::plan`]);
//! 5. refuse (recording the refusal), answer an identical re-push of a release without
//!    rewriting the registry ([`super::repush`]), or forward the manifest and commit
//!    the binding only once the upstream accepted it with the digest tagwarden
//!    computed (a write of the path's tag alone records it while the upstream stores).

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::plan::{self, Planned, Verdict};
use super::reach::own_references;
use super::tags::{applied_tags, tags_of};
use super::{check_stored_digest, identity, manifest, Guard};
use crate::ledger::{
    Action, Actor, Announcement, LedgerTx, ManifestRef, NewBinding, NewEvent, Unseen,
};
use crate::oci::error::chain;
use crate::oci::{Digest, ErrorCode, Name, OciError, Reference, Tag};
use crate::policy::TagClass;
use crate::proxy::Client;

/// What a manifest write that names tags carries into its transaction.
struct TaggedWrite<'a> {
    manifest: &'a manifest::Manifest,
    tags: &'a [Tag],
    /// This write's announcements (see `crate::ledger::pending`).
    pending: &'a [Announcement],
    /// What the transaction read of each tag once it held the locks.
    unseen: Vec<(&'a str, Unseen)>,
    /// What the manifest references when it lists no child manifests, read from its
    /// bytes and locked (shared) when the transaction began.
    references: Option<Vec<ManifestRef>>,
}

impl Guard {
    pub(super) async fn try_put(
        &self,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        body: Body,
        client: &Client,
    ) -> Result<Response, OciError> {
        if let Some(why) = self.log_gate.refusal() {
            return Err(unanchored(why));
        }
        let actor = identity::actor(&parts.headers, client);
        let tags = tags_of(reference, parts.uri.query())?;
        let expected = match reference {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        };
        let manifest = manifest::read(
            &parts.headers,
            body,
            expected,
            self.max_manifest_bytes,
            self.forwarder.upstream().idle_timeout(),
            &self.read_bounds,
        )
        .await?;
        let digest = &manifest.digest;

        if tags.is_empty() {
            // A push by digest binds no tag: nothing to decide, but the upstream must
            // still store exactly these bytes.
            let resp = self
                .send_manifest(parts, manifest.bytes.clone(), client)
                .await?;
            if resp.status().is_success() {
                check_stored_digest(&resp, digest)?;
            }
            return Ok(self.forwarder.downstream_response(resp));
        }

        let mut locked: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        locked.push(digest.as_str());
        let own_refs = own_references(&manifest.bytes);
        let mut shared: Vec<&str> = own_refs
            .iter()
            .flatten()
            .map(|r| r.digest.as_str())
            .collect();
        if own_refs.is_some() {
            shared.push(digest.as_str());
        }
        // One round trip before anything is forwarded: the announcement of the tags
        // that may skip the probe, the locks, and each tag's binding read under them
        // (see `Ledger::begin_write`).
        let announce = self.to_announce(name, &tags);
        let read: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        let (pending, opened) = match self
            .ledger
            .begin_write(name.as_str(), &locked, &shared, &announce, &read)
            .await
        {
            Ok(o) => {
                let unseen: Vec<(&str, Unseen)> = read.iter().copied().zip(o.read).collect();
                (o.announced, Ok((o.tx, unseen)))
            }
            // Announcements committed before the transaction failed are withdrawn below
            // (one whose answer was lost costs the tag's next write a probe).
            Err(u) => (u.announced, Err(u.error)),
        };
        let mut sent = false;
        let answer = match opened {
            Ok((tx, unseen)) => {
                let write = TaggedWrite {
                    manifest: &manifest,
                    tags: &tags,
                    pending: &pending,
                    unseen,
                    references: own_refs,
                };
                self.put_tagged(tx, name, reference, parts, write, client, actor, &mut sent)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        if !sent && !pending.is_empty() {
            // Nothing reached the registry (or it stored nothing): the announcements
            // are withdrawn. Left behind, they would only cost later writes a probe.
            if let Err(e) = self.ledger.forget(&pending).await {
                tracing::warn!(error = %chain(&e), repository = name.as_str(), "could not withdraw the pending writes of a write that stored nothing");
            }
        }
        answer
    }

    /// A manifest write that names tags (see the module's steps), in `tx`, which holds
    /// the locks of its tags and digest and, when `write.references` is given, the
    /// shared locks on them. `sent` is set while the registry may have stored the
    /// manifest.
    #[allow(clippy::too_many_arguments)]
    async fn put_tagged(
        &self,
        mut tx: LedgerTx,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        write: TaggedWrite<'_>,
        client: &Client,
        mut actor: Actor,
        sent: &mut bool,
    ) -> Result<Response, OciError> {
        let TaggedWrite {
            manifest,
            tags,
            pending,
            mut unseen,
            references: locked_references,
        } = write;
        let digest = &manifest.digest;
        let repo = name.as_str();

        let own: Vec<i64> = pending.iter().map(|a| a.id).collect();
        let mut facts = Vec::with_capacity(tags.len());
        for tag in tags {
            let read = unseen
                .iter()
                .position(|(t, _)| *t == tag.as_str())
                .map(|i| unseen.swap_remove(i).1);
            let announced = pending.iter().any(|a| a.tag == tag.as_str());
            let own = announced.then_some(&own[..]);
            facts.push(
                self.read_facts(&mut tx, name, tag, manifest, &parts, client, read, own)
                    .await?,
            );
        }
        let mut plan = plan::decide(repo, digest.as_str(), facts);

        if plan.iter().any(Planned::refuses) {
            return self
                .refuse(
                    tx,
                    name,
                    &plan,
                    (digest, &manifest.bytes),
                    &parts,
                    client,
                    &mut actor,
                )
                .await;
        }

        if let Some(resp) = self
            .answer_identical_repush(
                &mut tx, name, reference, &plan, digest, &parts, client, &mut actor,
            )
            .await?
        {
            tx.commit().await?;
            self.metrics.decision("accepted");
            return Ok(resp);
        }

        // Read and lock what a release references before the upstream stores it, so a
        // concurrent delete of one of its blobs waits for the binding (see `reach`).
        let binds_release = plan.iter().any(|p| {
            p.decision.class == TagClass::Immutable || matches!(p.verdict, Verdict::Restore)
        });
        let mut references = match locked_references {
            _ if !binds_release => None,
            Some(refs) => Some(refs),
            None => {
                let bytes = Some(&manifest.bytes[..]);
                Some(
                    self.release_references(&mut tx, name, digest, bytes, &parts.headers, client)
                        .await?,
                )
            }
        };
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        // Whether the upstream authenticates clients (so that its acceptance verifies
        // the identity) is known before it answers; it counts only once it accepted.
        actor.verified = self.verified(&actor).await;
        *sent = true;
        let send = self.send_manifest(parts, manifest.bytes.clone(), client);
        let (resp, recorded) = if names_only_path_tag(reference, tags) {
            // An upstream that stores the manifest applies the path's tag: record the
            // binding while it stores, in the transaction that commits only once it
            // accepted (a refusal rolls the record back). One round trip fewer waits.
            let record =
                self.record_accepted(&mut tx, repo, &plan, digest, &actor, references.take());
            let (resp, recorded) = tokio::join!(send, record);
            (resp, Some(recorded))
        } else {
            (send.await, None)
        };
        let resp = resp?;
        if !resp.status().is_success() {
            // The upstream said no (auth, missing blobs...): its answer is the client's;
            // nothing is bound, and nothing was stored.
            *sent = false;
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %chain(&e), "could not roll back after the upstream refused a manifest");
            }
            return Ok(self.forwarder.downstream_response(resp));
        }
        check_stored_digest(&resp, digest)?;

        let (warnings, events) = match recorded {
            Some(recorded) => recorded?,
            None => {
                // Every tag was checked, but only those the upstream says it applied
                // are bound: the path's tag, and `?tag=` parameters it confirms with
                // `OCI-Tag` (registries without that extension ignore the parameters).
                let applied = applied_tags(&resp, reference);
                plan.retain(|p| applied.iter().any(|t| t == p.tag.as_str()));
                self.record_accepted(&mut tx, repo, &plan, digest, &actor, references.take())
                    .await?
            }
        };
        // Should the commit fail, the upstream holds the manifest but the ledger does
        // not: the client sees a failure and retries; the retry adopts what the
        // upstream holds.
        tx.commit().await?;
        // New releases may advance the moving tags that follow them.
        if let Some(content_type) = &content_type {
            for p in plan.iter().filter(|p| {
                p.decision.class == TagClass::Immutable && matches!(p.verdict, Verdict::Create)
            }) {
                self.follow_release(name, &p.tag, digest, &manifest.bytes, content_type)
                    .await;
            }
        }
        self.metrics.decision(if warnings.is_empty() {
            "accepted"
        } else {
            "warned"
        });
        tracing::info!(repository = repo, tags = ?tags.iter().map(Tag::as_str).collect::<Vec<_>>(), %digest, "manifest accepted");

        let mut out = self.forwarder.downstream_response(resp);
        add_receipts(&mut out, &events);
        for w in warnings {
            if let Ok(v) =
                HeaderValue::from_str(&format!("299 tagwarden \"{}\"", w.replace('"', "'")))
            {
                out.headers_mut().append(header::WARNING, v);
            }
        }
        Ok(out)
    }

    /// Refuse a write one of whose tags an enforcing rule forbids, and record why.
    /// Only a client that may push to the repository learns anything, or gets a record:
    /// everyone else gets the upstream's own answer.
    #[allow(clippy::too_many_arguments)]
    async fn refuse(
        &self,
        tx: LedgerTx,
        name: &Name,
        plan: &[Planned],
        (digest, manifest): (&Digest, &[u8]),
        parts: &Parts,
        client: &Client,
        actor: &mut Actor,
    ) -> Result<Response, OciError> {
        if let Some(upstream_answer) = self.before_refusing(name, parts, client, actor).await? {
            return Ok(upstream_answer);
        }
        let repo = name.as_str();
        let mut first = None;
        let mut events = Vec::new();
        for p in plan.iter().filter(|p| p.refuses()) {
            let Verdict::Violation {
                error,
                reason,
                previous,
            } = &p.verdict
            else {
                continue;
            };
            first.get_or_insert((p.tag.as_str(), error));
            if self.is_format_retry(repo, p.tag.as_str(), manifest, actor)
                || !self.admit_refusal(repo, p.tag.as_str(), actor)
            {
                continue;
            }
            events.push(NewEvent {
                tag: Some(p.tag.as_str()),
                digest: Some(digest.as_str()),
                previous_digest: previous.as_deref(),
                class: Some(p.decision.class),
                rule: Some(&p.decision.rule),
                reason: Some(reason),
                detail: error.detail.clone(),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(Action::Refuse, repo)
            });
        }
        let Some((tag, error)) = first else {
            unreachable!("refuse is called for plans with a refusal")
        };
        let error = error.clone();
        self.record_refusal(tx, events, actor).await;
        tracing::info!(repository = repo, tag, attempted = %digest, reason = %error.message, "refused a manifest write");
        Err(error)
    }

    /// Bind and record each tag of an accepted write; the warnings of rules in warn
    /// mode, for the client, and the ids of the events recorded.
    ///
    /// `references`, what the manifest references, are recorded with the first binding
    /// of a release (an immutable tag, or a restored one); each binding and its event
    /// take one statement ([`LedgerTx::bind_and_append`]).
    async fn record_accepted(
        &self,
        tx: &mut LedgerTx,
        repo: &str,
        plan: &[Planned],
        digest: &Digest,
        actor: &Actor,
        mut references: Option<Vec<crate::ledger::ManifestRef>>,
    ) -> Result<(Vec<String>, Vec<i64>), OciError> {
        let mut warnings = Vec::new();
        let mut events = Vec::new();
        let releases = plan.iter().any(|p| {
            p.decision.class == TagClass::Immutable || matches!(p.verdict, Verdict::Restore)
        });
        if !releases {
            references = None;
        }
        for p in plan {
            let (action, previous, reason) = match &p.verdict {
                Verdict::Create => (Action::Create, None, None),
                Verdict::Repush => (Action::Repush, None, None),
                Verdict::Restore => (Action::Restore, None, Some("own-bytes-pushed-again")),
                Verdict::Move { previous } => (Action::Move, Some(previous.as_str()), None),
                Verdict::Violation {
                    error,
                    reason,
                    previous,
                } => {
                    warnings.push(format!(
                        "{} (rule {} is in warn mode, so the write was allowed)",
                        error.message, p.decision.rule
                    ));
                    (Action::Warn, previous.as_deref(), Some(*reason))
                }
            };
            let binding = NewBinding {
                repository: repo,
                tag: p.tag.as_str(),
                digest: digest.as_str(),
                class: p.decision.class,
                rule: &p.decision.rule,
                bound_by: actor.identity.as_deref(),
            };
            let event = NewEvent {
                tag: Some(p.tag.as_str()),
                digest: Some(digest.as_str()),
                previous_digest: previous,
                class: Some(p.decision.class),
                rule: Some(&p.decision.rule),
                reason,
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(action, repo)
            };
            if action == Action::Repush {
                tx.bind(&binding).await?;
                if self.first_repush(tx, repo, p, digest, actor).await? {
                    events.push(tx.append(&event, actor).await?);
                }
                continue;
            }
            let is_release =
                p.decision.class == TagClass::Immutable || matches!(p.verdict, Verdict::Restore);
            let refs = if is_release { references.take() } else { None };
            events.push(
                tx.bind_and_append(&binding, &event, actor, refs.as_deref())
                    .await?,
            );
        }
        if let Some(refs) = references {
            // Only re-pushes bound a release: record what it references on its own.
            tx.record_references(repo, digest.as_str(), &refs).await?;
        }
        Ok((warnings, events))
    }
}

/// Whether the write's only tag is the path's: the one tag an upstream that stores the
/// manifest is sure to apply.
fn names_only_path_tag(reference: &Reference, tags: &[Tag]) -> bool {
    matches!(reference, Reference::Tag(t) if tags.len() == 1 && tags[0] == *t)
}

/// A write refused because the transparency log no longer extends the checkpoint this
/// tagwarden signed: recording more would extend a forked history.
pub(super) fn unanchored(why: String) -> OciError {
    OciError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!("manifest writes and deletes are refused: {why}; an operator must check the ledger (tagwarden log verify)"),
    )
}

/// The receipt of an accepted write: one `Tagwarden-Event` header per event it
/// recorded, for `tagwarden log prove --event`.
pub(super) fn add_receipts(resp: &mut Response, events: &[i64]) {
    for id in events {
        resp.headers_mut()
            .append(RECEIPT_HEADER, HeaderValue::from(*id));
    }
}

/// The header naming the events an accepted manifest write recorded.
pub const RECEIPT_HEADER: &str = "tagwarden-event";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_write_of_the_path_s_tag_alone_is_recorded_before_the_upstream_answers() {
        let tag = |t: &str| Tag::parse(t).unwrap();
        let path = Reference::parse("1.0.0").unwrap();
        assert!(names_only_path_tag(&path, &[tag("1.0.0")]));
        // `?tag=` parameters are bound only if the upstream confirms them.
        assert!(!names_only_path_tag(&path, &[tag("1.0.0"), tag("latest")]));
        let digest = Reference::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        assert!(!names_only_path_tag(&digest, &[tag("1.0.0")]));
    }
}

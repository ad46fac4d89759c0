//! A manifest write (`PUT /v2/<name>/manifests/<reference>[?tag=...]`).
//!
//! For a write that names tags:
//! 1. read and hash the manifest (bounded), parse every tag (path and `?tag=`); with
//!    `[enforce] ledger_complete`, announce its immutable tags as pending writes
//!    (`crate::ledger::pending`);
//! 2. open a ledger transaction and take advisory locks on the tags and the digest, so
//!    that every tagwarden process sharing the database serialises on them;
//! 3. read what each tag's decision needs: its binding; for an immutable tag the ledger
//!    has never seen, what the upstream holds under it (it may predate tagwarden, or a
//!    crash may have left the upstream ahead of the ledger), unless the ledger proves it
//!    holds nothing; for an advancing tag, the releases involved;
//! 4. decide, with no I/O ([`super::plan`]);
//! 5. refuse (recording the refusal), or forward the manifest and bind only once the
//!    upstream accepted it with the digest tagwarden computed; then commit.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::access::Denied;
use super::plan::{self, Facts, Kept, Planned, Releases, Verdict};
use super::{append, check_stored_digest, gates, identity, manifest, probe, refusal, Guard, Probe};
use crate::ledger::{Action, Actor, Binding, LedgerTx, NewBinding, NewEvent};
use crate::oci::{Digest, ErrorCode, Name, OciError, Reference, Tag};
use crate::policy::{Decision, TagClass};
use crate::proxy::Client;

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

        let pending = self.announce(name, &tags).await?;
        let mut sent = false;
        let answer = self
            .put_tagged(
                name, reference, parts, &manifest, &tags, &pending, client, actor, &mut sent,
            )
            .await;
        if !sent && !pending.is_empty() {
            // Nothing reached the registry (or it stored nothing): the announcements
            // are withdrawn. Left behind, they would only cost later writes a probe.
            let ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
            if let Err(e) = self.ledger.forget(&ids).await {
                tracing::warn!(error = %e, repository = name.as_str(), "could not withdraw the pending writes of a write that stored nothing");
            }
        }
        answer
    }

    /// A manifest write that names tags (see the module's steps). `sent` is set while
    /// the registry may have stored the manifest.
    #[allow(clippy::too_many_arguments)]
    async fn put_tagged(
        &self,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        manifest: &manifest::Manifest,
        tags: &[Tag],
        pending: &[(i64, String)],
        client: &Client,
        mut actor: Actor,
        sent: &mut bool,
    ) -> Result<Response, OciError> {
        let digest = &manifest.digest;
        let repo = name.as_str();
        let mut tx = self.ledger.begin().await?;
        let mut lock_items: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        lock_items.push(digest.as_str());
        tx.lock(repo, &lock_items).await?;

        let own: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
        let mut facts = Vec::with_capacity(tags.len());
        for tag in tags {
            let announced = pending.iter().any(|(_, t)| t == tag.as_str());
            let own = if announced { Some(&own[..]) } else { None };
            facts.push(
                self.read_facts(&mut tx, name, tag, manifest, &parts, client, own)
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
        let mut references = if binds_release {
            let bytes = Some(&manifest.bytes[..]);
            Some(
                self.release_references(&mut tx, name, digest, bytes, &parts.headers, client)
                    .await?,
            )
        } else {
            None
        };
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        *sent = true;
        let resp = self
            .send_manifest(parts, manifest.bytes.clone(), client)
            .await?;
        if !resp.status().is_success() {
            // The upstream said no (auth, missing blobs...): its answer is the client's;
            // nothing is bound, and nothing was stored.
            *sent = false;
            drop(tx);
            return Ok(self.forwarder.downstream_response(resp));
        }
        check_stored_digest(&resp, digest)?;

        // Every tag was checked, but only those the upstream says it applied are bound:
        // the path's tag, and `?tag=` parameters it confirms with `OCI-Tag` (registries
        // without that extension ignore the parameters).
        let applied = applied_tags(&resp, reference);
        plan.retain(|p| applied.iter().any(|t| t == p.tag.as_str()));

        actor.verified = self.verified(&actor).await;
        let (warnings, events) = self
            .record_accepted(&mut tx, repo, &plan, digest, &actor, references.take())
            .await?;
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

    /// An identical re-push of a release that the registry already serves is answered
    /// here, as the registry would (201, `Location`, `Docker-Content-Digest`), without
    /// rewriting the registry: distribution 2.8 rewrites a tag's link files in place on
    /// every PUT, and pulls racing that rewrite fail with 500.
    ///
    /// Only for a write of one immutable tag by its path; the client must have push
    /// access (asked of the upstream), and the registry must serve the tag at this
    /// digest now. Otherwise the write is forwarded as usual.
    #[allow(clippy::too_many_arguments)]
    async fn answer_identical_repush(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        reference: &Reference,
        plan: &[Planned],
        digest: &Digest,
        parts: &Parts,
        client: &Client,
        actor: &mut Actor,
    ) -> Result<Option<Response>, OciError> {
        let [p] = plan else { return Ok(None) };
        if !matches!(reference, Reference::Tag(_))
            || !matches!(p.verdict, Verdict::Repush)
            || p.decision.class != TagClass::Immutable
        {
            return Ok(None);
        }
        match probe::resolve(
            &self.registry.as_client(&parts.headers, client),
            name,
            p.tag.as_str(),
        )
        .await?
        {
            Probe::Present(d) if d == *digest => {}
            _ => return Ok(None),
        }
        match self.check_access(name, parts, client).await {
            Ok(()) => {}
            Err(Denied::Upstream(resp)) => return Ok(Some(*resp)),
            // The registry will decide when it gets the write.
            Err(Denied::Unchecked(_)) => return Ok(None),
        }
        actor.verified = self.verified(actor).await;
        let repo = name.as_str();
        let mut events = Vec::new();
        if self.first_repush(tx, repo, p, digest, actor).await? {
            let event = NewEvent {
                tag: Some(p.tag.as_str()),
                digest: Some(digest.as_str()),
                class: Some(p.decision.class),
                rule: Some(&p.decision.rule),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(Action::Repush, repo)
            };
            events.push(tx.append(&event, actor).await?);
        }
        tracing::info!(repository = repo, tag = p.tag.as_str(), %digest, "identical re-push of a release answered without rewriting the registry");
        let mut resp = StatusCode::CREATED.into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/manifests/{digest}")) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(digest.as_str()) {
            h.insert("docker-content-digest", v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static(crate::oci::error::API_VERSION),
        );
        add_receipts(&mut resp, &events);
        Ok(Some(resp))
    }

    /// Count a re-push; true if it is the first of its tag, digest, identity and hour,
    /// the only one appended to the history.
    async fn first_repush(
        &self,
        tx: &mut LedgerTx,
        repo: &str,
        p: &Planned,
        digest: &Digest,
        actor: &Actor,
    ) -> Result<bool, OciError> {
        let count = tx
            .tally_repush(
                repo,
                p.tag.as_str(),
                digest.as_str(),
                actor.identity.as_deref(),
            )
            .await?;
        Ok(count == 1)
    }

    /// Everything the decision of one tag needs, read under the write's locks: its
    /// binding; for an immutable tag the ledger never saw, what the registry holds
    /// under it (adopted); for a tag that only moves forward, the releases of the
    /// digests it would move between.
    ///
    /// `own` is given when this write announced the tag (see `crate::ledger::pending`):
    /// the ledger may then prove the probe unnecessary.
    #[allow(clippy::too_many_arguments)]
    async fn read_facts(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        tag: &Tag,
        manifest: &manifest::Manifest,
        parts: &Parts,
        client: &Client,
        own: Option<&[i64]>,
    ) -> Result<Facts, OciError> {
        let digest = &manifest.digest;
        let repo = name.as_str();
        let decision = self.policy.classify(repo, tag.as_str());
        let (current, proven_unwritten) = match own {
            Some(own) if decision.class == TagClass::Immutable => {
                let unseen = tx.binding_unseen(repo, tag.as_str(), own).await?;
                (unseen.binding, unseen.no_unrecorded_write)
            }
            _ => (tx.binding(repo, tag.as_str()).await?, false),
        };
        let adopted = if decision.class == TagClass::Immutable && current.is_none() {
            self.unseen_release(tx, name, tag, &decision, proven_unwritten, parts, client)
                .await?
        } else {
            None
        };
        // Names a refusal must not suggest as the next version: read only when this
        // write would re-point a release.
        let bound = current.as_ref().or(adopted.as_ref());
        let taken = match bound {
            Some(b)
                if (decision.class == TagClass::Immutable || b.retired_at.is_some())
                    && b.digest != digest.as_str() =>
            {
                refusal::taken_in_series(tx, repo, tag.as_str()).await?
            }
            _ => None,
        };
        let releases = match decision.advance {
            Some(_) => {
                let live = current.as_ref().filter(|b| b.deleted_at.is_none());
                let of_current = match live {
                    Some(b) => tx.release_tags(repo, &b.digest).await?,
                    None => Vec::new(),
                };
                let of_target = tx.release_tags(repo, digest.as_str()).await?;
                Some(Releases {
                    of_current,
                    of_target,
                })
            }
            None => None,
        };
        let promotion = match &decision.promotion {
            Some(p) => Some(gates::read(tx, repo, p, digest.as_str()).await?),
            None => None,
        };
        let kept = match current.as_ref().filter(|b| b.deleted_at.is_none()) {
            Some(b) if decision.class == TagClass::AppendOnly && b.digest != digest.as_str() => {
                Some(self.kept(name, b, manifest, parts, client).await?)
            }
            _ => None,
        };
        Ok(Facts {
            tag: tag.clone(),
            decision,
            current,
            adopted,
            taken,
            releases,
            promotion,
            kept,
        })
    }

    /// What the manifest an append-only tag names now lists (read from the registry by
    /// its bound digest, so checked against it), and what the new one lists.
    async fn kept(
        &self,
        name: &Name,
        bound: &Binding,
        manifest: &manifest::Manifest,
        parts: &Parts,
        client: &Client,
    ) -> Result<Kept, OciError> {
        let next = append::listing(&manifest.bytes)?;
        let Ok(previous) = Digest::parse(&bound.digest) else {
            return Err(crate::registry::cannot_check(&format!(
                "the ledger binds {name}:{} to {:?}, not a digest",
                bound.tag, bound.digest
            )));
        };
        let held = self
            .registry
            .as_client(&parts.headers, client)
            .manifest(name, &previous)
            .await?;
        let previous = match held {
            Some(m) => Some(append::listing(&m.bytes)?),
            None => {
                tracing::warn!(repository = name.as_str(), tag = bound.tag, digest = bound.digest, "the manifest an append-only tag names is not in the registry; nothing of it is left to keep");
                None
            }
        };
        Ok(Kept { previous, next })
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
        let existing = match probe::resolve(
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
fn add_receipts(resp: &mut Response, events: &[i64]) {
    for id in events {
        resp.headers_mut()
            .append(RECEIPT_HEADER, HeaderValue::from(*id));
    }
}

/// The header naming the events an accepted manifest write recorded.
pub const RECEIPT_HEADER: &str = "tagwarden-event";

/// The most tags one manifest write may name (the path's and `?tag=` parameters). Each
/// tag costs a lock, a ledger lookup and possibly a request to the upstream, all inside
/// one transaction, so the number a single request can ask for is bounded.
pub const MAX_TAGS_PER_WRITE: usize = 64;

/// Every tag a write names: the path's, if it is a tag, and each `?tag=` parameter.
fn tags_of(reference: &Reference, query: Option<&str>) -> Result<Vec<Tag>, OciError> {
    let mut tags = Vec::new();
    if let Reference::Tag(t) = reference {
        tags.push(t.clone());
    }
    if let Some(q) = query {
        // Some servers split queries on ';' too; refuse rather than guess which reading
        // the upstream will use.
        if q.contains(';') {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                "';' is not allowed in the query of a manifest write",
            ));
        }
        for (key, value) in form_urlencoded::parse(q.as_bytes()) {
            if key == "tag" {
                if tags.len() >= MAX_TAGS_PER_WRITE {
                    return Err(OciError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::TagInvalid,
                        format!("a manifest write may name at most {MAX_TAGS_PER_WRITE} tags (the path's and ?tag= parameters together); split it into several writes"),
                    ));
                }
                let tag = Tag::parse(&value).map_err(|e| {
                    OciError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::TagInvalid,
                        e.to_string(),
                    )
                })?;
                tags.push(tag);
            }
        }
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// The tags the upstream applied: the path's own, plus each `OCI-Tag` it answered with.
fn applied_tags(
    resp: &hyper::Response<hyper::body::Incoming>,
    reference: &Reference,
) -> Vec<String> {
    let mut applied: Vec<String> = resp
        .headers()
        .get_all("oci-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .collect();
    if let Reference::Tag(t) = reference {
        applied.push(t.as_str().to_owned());
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_from_path_and_query() {
        let r = Reference::parse("1.4.0").unwrap();
        let tags = tags_of(&r, Some("tag=latest&tag=1.4&other=x&tag=latest")).unwrap();
        let names: Vec<_> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["1.4", "1.4.0", "latest"]);
    }

    #[test]
    fn encoded_tag_parameters_are_decoded_then_checked() {
        let d = Reference::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let tags = tags_of(&d, Some("t%61g=1%2E4%2E0")).unwrap();
        assert_eq!(tags[0].as_str(), "1.4.0");
        let many: Vec<String> = (0..MAX_TAGS_PER_WRITE)
            .map(|i| format!("tag=t{i}"))
            .collect();
        assert_eq!(
            tags_of(&d, Some(&many.join("&"))).unwrap().len(),
            MAX_TAGS_PER_WRITE
        );
        let one_more = format!("{}&tag=extra", many.join("&"));
        assert_eq!(
            tags_of(&d, Some(&one_more)).unwrap_err().code,
            ErrorCode::TagInvalid
        );
        let r = Reference::parse("latest").unwrap();
        assert!(
            tags_of(&r, Some(&many.join("&"))).is_err(),
            "the path's tag counts too"
        );
        for bad in [
            "tag=a/b",
            "tag=1.0%2Bbuild",
            "tag=",
            "tag=a+b",
            "tag=x;tag=y",
        ] {
            assert!(tags_of(&d, Some(bad)).is_err(), "{bad}");
        }
    }
}

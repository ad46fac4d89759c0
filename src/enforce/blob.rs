//! `DELETE /v2/<name>/blobs/<digest>`: a release must stay pullable.
//!
//! The registry unlinks a deleted blob from the repository at once and its garbage
//! collector frees the bytes later, so a deleted config or layer breaks every image that
//! lists it while its tag still resolves. A delete is refused when a live immutable
//! binding reaches the blob (see [`super::reach`]); anything else is forwarded.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue};
use serde_json::json;

use super::{identity, refusal, Guard};
use crate::ledger::{Action, Actor, LedgerTx, NewEvent, Reach};
use crate::oci::{Digest, Name, OciError};
use crate::policy::{Mode, TagClass};
use crate::proxy::body::Activity;
use crate::proxy::Client;

/// How many release tags a refusal names in its message (all are in `detail`).
const NAMED_IN_MESSAGE: usize = 5;

impl Guard {
    /// `DELETE /v2/<name>/blobs/<digest>`
    pub async fn delete_blob(
        &self,
        name: &Name,
        digest: &Digest,
        parts: Parts,
        client: &Client,
    ) -> Response {
        match self
            .pinned()
            .try_delete_blob(name, digest, parts, client)
            .await
        {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    async fn try_delete_blob(
        &self,
        name: &Name,
        digest: &Digest,
        mut parts: Parts,
        client: &Client,
    ) -> Result<Response, OciError> {
        let mut actor = identity::actor(&parts.headers, client);
        let repo = name.as_str();
        self.record_older_releases(name, &parts.headers, client)
            .await?;
        let mut tx = self.ledger.begin().await?;
        let reaching = self.releases_reaching(&mut tx, repo, digest).await?;
        let (enforced, warned) = self.split_by_mode(repo, reaching);

        if !enforced.is_empty() {
            let refused = Reached {
                what: "blob",
                digest,
                releases: &enforced,
                reason: "release-blob-delete",
            };
            return self
                .refuse_reached(tx, name, &parts, client, &mut actor, refused)
                .await;
        }

        // 2.8 reads an announced body after deleting; none is sent.
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
        let req = self
            .forwarder
            .upstream_request(parts, Body::empty(), client);
        let resp = self.forwarder.send(req, &Activity::new(), "blob").await?;
        // The lock is held until the upstream answered; nothing was written.
        let _ = tx.rollback().await;
        let mut out = self.forwarder.downstream_response(resp);
        if out.status().is_success() {
            warn_header(&mut out, repo, "blob", digest.as_str(), &warned);
        }
        Ok(out)
    }

    /// Refuse a delete of something live releases reach, and record it: only for a
    /// client the upstream lets read the repository (see [`Guard::before_refusing`]).
    pub(super) async fn refuse_reached(
        &self,
        tx: LedgerTx,
        name: &Name,
        parts: &Parts,
        client: &Client,
        actor: &mut Actor,
        refused: Reached<'_>,
    ) -> Result<Response, OciError> {
        if let Some(upstream_answer) = self.before_refusing(name, parts, client, actor).await? {
            return Ok(upstream_answer);
        }
        let repo = name.as_str();
        let error = refusal(
            repo,
            refused.what,
            refused.digest.as_str(),
            refused.releases,
        );
        // One event per refused delete, in the history of the first release it protects
        // (`detail` lists them all): a blob a hundred releases share must not cost a
        // hundred events, each carrying the whole list.
        let first = &refused.releases[0];
        let event = self
            .admit_refusal(repo, refused.digest.as_str(), actor)
            .then(|| NewEvent {
                tag: Some(&first.tag),
                digest: Some(refused.digest.as_str()),
                class: Some(TagClass::Immutable),
                rule: Some(&first.rule),
                reason: Some(refused.reason),
                detail: error.detail.clone(),
                policy_hash: Some(self.policy.hash()),
                ..NewEvent::new(Action::Refuse, repo)
            });
        self.record_refusal(tx, event.into_iter().collect(), actor)
            .await;
        tracing::info!(repository = repo, what = refused.what, digest = %refused.digest, "refused deleting what a release needs");
        Err(error)
    }

    /// Releases whose rule enforces (the delete is refused) and those in warn mode.
    pub(super) fn split_by_mode(
        &self,
        repo: &str,
        reaching: Vec<Reach>,
    ) -> (Vec<Reach>, Vec<Reach>) {
        reaching.into_iter().partition(|r| {
            let d = self.policy.classify(repo, &r.tag);
            !(d.class == TagClass::Immutable && d.mode == Mode::Warn)
        })
    }
}

/// A delete of a blob or manifest that releases reach. 405 `UNSUPPORTED`, as for the
/// delete of an immutable tag.
/// A delete of `digest` (a blob, or a manifest) that live releases reach.
pub(super) struct Reached<'a> {
    pub what: &'static str,
    pub digest: &'a Digest,
    pub releases: &'a [Reach],
    /// Recorded with each refusal event.
    pub reason: &'static str,
}

pub(super) fn refusal(repo: &str, what: &str, digest: &str, releases: &[Reach]) -> OciError {
    let mut names: Vec<String> = releases
        .iter()
        .take(NAMED_IN_MESSAGE)
        .map(|r| {
            format!(
                "{repo}:{} ({}, release manifest {})",
                r.tag,
                r.kind.as_str(),
                short(&r.manifest_digest)
            )
        })
        .collect();
    if releases.len() > NAMED_IN_MESSAGE {
        names.push(format!("{} more", releases.len() - NAMED_IN_MESSAGE));
    }
    let message = format!(
        "{what} {repo}@{digest} cannot be deleted: release(s) {} need it, and deleting it would make them unpullable for everyone who pinned them",
        names.join(", ")
    );
    refusal::undeletable(message).with_detail(json!({
        "repository": repo,
        "digest": digest,
        "immutable_tags": releases.iter().map(|r| r.tag.as_str()).collect::<Vec<_>>(),
        "releases": releases.iter().map(|r| json!({
            "tag": r.tag,
            "manifest_digest": r.manifest_digest,
            "kind": r.kind.as_str(),
            "rule": r.rule,
        })).collect::<Vec<_>>(),
    }))
}

/// A `Warning` for a delete allowed only because the releases' rules are in warn mode.
pub(super) fn warn_header(
    resp: &mut Response,
    repo: &str,
    what: &str,
    digest: &str,
    warned: &[Reach],
) {
    if warned.is_empty() {
        return;
    }
    let tags: Vec<&str> = warned.iter().map(|r| r.tag.as_str()).collect();
    tracing::warn!(repository = repo, %digest, tags = ?tags, "deleted content of releases whose rule is in warn mode");
    let text = format!(
        "299 tagwarden \"{what} {repo}@{digest} is needed by release(s) {} (their rule is in warn mode, so the delete was allowed)\"",
        tags.join(", ")
    );
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut().append(header::WARNING, v);
    }
}

/// `sha256:0123456789ab` for messages.
fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

//! An identical re-push of a release, answered without rewriting the registry, and
//! counted once per tag, digest, identity and hour.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::access::Denied;
use super::plan::{Planned, Verdict};
use super::write::add_receipts;
use super::{probe, Guard, Probe};
use crate::ledger::{Action, Actor, LedgerTx, NewEvent};
use crate::oci::{Digest, Name, OciError, Reference};
use crate::policy::TagClass;
use crate::proxy::Client;

impl Guard {
    /// An identical re-push of a release that the registry already serves is answered
    /// here, as the registry would (201, `Location`, `Docker-Content-Digest`), without
    /// rewriting the registry: distribution 2.8 rewrites a tag's link files in place on
    /// every PUT, and pulls racing that rewrite fail with 500.
    ///
    /// Only for a write of one immutable tag by its path; the client must have push
    /// access (asked of the upstream), and the registry must serve the tag at this
    /// digest now. Otherwise the write is forwarded as usual.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answer_identical_repush(
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
    pub(super) async fn first_repush(
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
}

//! Moving tags that only move forward, and the two ways tagwarden moves them itself:
//! following a new release (`follow = true`) and a deliberate rewind by an operator.
//! The rules themselves are in [`crate::policy::advance`].

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::plan::{self, Verdict};
use super::{gates, recorded_digest, Guard};
use crate::ledger::{Action, Actor, LedgerTx, NewBinding, NewEvent};
use crate::oci::error::chain;
use crate::oci::{Digest, ErrorCode, Name, OciError, Tag};
use crate::policy::advance as rules;
use crate::policy::{Decision, TagClass};

/// What an advancing tag would be pointed at.
pub(super) struct Target<'a> {
    pub digest: &'a str,
    /// Release tags created by the same request (`?tag=` with a registry that applies
    /// them): they are releases of this digest too.
    pub releases_in_request: &'a [&'a str],
}

/// A move tagwarden makes itself (follow, rewind), to record.
#[derive(Clone, Copy)]
struct OwnMove<'a> {
    repo: &'a str,
    tag: &'a Tag,
    decision: &'a Decision,
    digest: &'a Digest,
    previous: Option<&'a str>,
    reason: &'a str,
}

/// What a rewind did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Rewound {
    pub repository: String,
    pub tag: String,
    pub previous_digest: Option<String>,
    pub digest: String,
    pub release: String,
    /// The promotion gate the rewind was allowed to bypass (promote_from, soak,
    /// require_release), if one refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub bypassed_gate: Option<String>,
}

impl Guard {
    /// Check a move of an advancing tag; `Some(violation)` when it may not happen.
    pub(super) async fn check_advance(
        &self,
        tx: &mut LedgerTx,
        repo: &str,
        tag: &str,
        decision: &Decision,
        current: Option<&str>,
        target: &Target<'_>,
    ) -> Result<Option<Verdict>, OciError> {
        if decision.advance.is_none() {
            return Ok(None);
        }
        let current_releases = match current {
            Some(d) => tx.release_tags(repo, d).await?,
            None => Vec::new(),
        };
        let mut target_releases = tx.release_tags(repo, target.digest).await?;
        target_releases.extend(target.releases_in_request.iter().map(|t| (*t).to_owned()));
        Ok(plan::advance(
            repo,
            tag,
            decision,
            current,
            target.digest,
            &current_releases,
            &target_releases,
        ))
    }

    /// After a new release is bound, move the tags whose rules follow it (`1.4`, `1`,
    /// `latest` for `1.4.2`) — each only forward, each recorded. Failures are logged and
    /// recorded, never turned into a failure of the push that triggered them.
    pub(super) async fn follow_release(
        &self,
        name: &Name,
        release: &Tag,
        digest: &Digest,
        manifest: &Bytes,
        content_type: &HeaderValue,
    ) {
        for follower in rules::followers(release.as_str()) {
            let Ok(tag) = Tag::parse(&follower) else {
                continue;
            };
            let decision = self.policy.classify(name.as_str(), tag.as_str());
            if decision.class != TagClass::Moving || !decision.advance.is_some_and(|a| a.follow) {
                continue;
            }
            match self
                .follow_one(name, &tag, &decision, digest, manifest, content_type)
                .await
            {
                Ok(true) => {
                    tracing::info!(repository = %name, tag = %tag, release = %release, "advanced to the new release")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(repository = %name, tag = %tag, release = %release, error = %chain(&e), "could not advance to the new release")
                }
            }
        }
    }

    async fn follow_one(
        &self,
        name: &Name,
        tag: &Tag,
        decision: &Decision,
        digest: &Digest,
        manifest: &Bytes,
        content_type: &HeaderValue,
    ) -> Result<bool, OciError> {
        let repo = name.as_str();
        let mut tx = self
            .ledger
            .begin_locked(repo, &[tag.as_str(), digest.as_str()], &[])
            .await?;
        let current = tx
            .binding(repo, tag.as_str())
            .await?
            .filter(|b| b.deleted_at.is_none());
        if current
            .as_ref()
            .is_some_and(|b| b.digest == digest.as_str())
        {
            return Ok(false);
        }
        let target = Target {
            digest: digest.as_str(),
            releases_in_request: &[],
        };
        let current_digest = current.as_ref().map(|b| b.digest.as_str());
        if self
            .check_advance(
                &mut tx,
                repo,
                tag.as_str(),
                decision,
                current_digest,
                &target,
            )
            .await?
            .is_some()
        {
            // An older release arrived late: the tag stays where it is.
            return Ok(false);
        }
        if let Some(p) = &decision.promotion {
            let facts = gates::read(&mut tx, repo, p, digest.as_str()).await?;
            let gated = plan::gates(
                repo,
                tag.as_str(),
                decision,
                current_digest,
                digest.as_str(),
                Some(&facts),
                true,
            );
            if gated.is_some() {
                // Its gates do not let it follow yet.
                return Ok(false);
            }
        }
        self.put_as_tagwarden(name, tag, digest, manifest.clone(), content_type.clone())
            .await?;
        let actor = Actor {
            identity: Some("tagwarden".into()),
            verified: true,
            ..Actor::default()
        };
        let own = OwnMove {
            repo,
            tag,
            decision,
            digest,
            previous: current_digest,
            reason: "follow",
        };
        self.record_own_move(&mut tx, &own, &actor).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Move a moving tag back to an earlier release, deliberately: the operator's
    /// escape hatch for an incident. Uses tagwarden's own upstream credentials and is
    /// recorded with the reason and who asked. A promotion gate that refuses the
    /// release is bypassed only when `bypass_gates` says so; the bypass is recorded.
    pub async fn rewind(
        &self,
        name: &Name,
        tag: &Tag,
        to: &Tag,
        reason: &str,
        who: &str,
        bypass_gates: bool,
    ) -> Result<Rewound, OciError> {
        self.pinned()
            .try_rewind(name, tag, to, reason, who, bypass_gates)
            .await
    }

    async fn try_rewind(
        &self,
        name: &Name,
        tag: &Tag,
        to: &Tag,
        reason: &str,
        who: &str,
        bypass_gates: bool,
    ) -> Result<Rewound, OciError> {
        let repo = name.as_str();
        let decision = self.policy.classify(repo, tag.as_str());
        if decision.class != TagClass::Moving {
            return Err(OciError::new(
                StatusCode::CONFLICT,
                ErrorCode::Denied,
                format!(
                    "{repo}:{tag} is {} (rule {}): only moving tags can be rewound",
                    decision.class.as_str(),
                    decision.rule
                ),
            ));
        }
        let release = self
            .ledger
            .binding(repo, to.as_str())
            .await?
            .filter(|b| b.deleted_at.is_none() && b.class == TagClass::Immutable)
            .ok_or_else(|| {
                OciError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::ManifestUnknown,
                    format!("{repo}:{to} is not a release recorded in the ledger: rewind moves a tag to an existing immutable release"),
                )
            })?;
        let digest = recorded_digest(&release.digest)?;
        let (manifest, content_type) = self.get_as_tagwarden(name, &digest).await?;

        let mut tx = self
            .ledger
            .begin_locked(repo, &[tag.as_str(), digest.as_str()], &[])
            .await?;
        let previous = tx
            .binding(repo, tag.as_str())
            .await?
            .filter(|b| b.deleted_at.is_none())
            .map(|b| b.digest);
        let mut bypassed = None;
        if let Some(p) = &decision.promotion {
            let facts = gates::read(&mut tx, repo, p, digest.as_str()).await?;
            let gated = plan::gates(
                repo,
                tag.as_str(),
                &decision,
                previous.as_deref(),
                digest.as_str(),
                Some(&facts),
                false,
            );
            if let Some(Verdict::Violation {
                mut error, reason, ..
            }) = gated
            {
                if !bypass_gates {
                    error.message = format!(
                        "{}; to move it anyway an admin runs: tagwarden rewind {repo}:{tag} --to {to} --bypass-gates --reason \"...\"",
                        error.message
                    );
                    return Err(error);
                }
                bypassed = Some((p.clone(), reason));
            }
        }
        self.put_as_tagwarden(name, tag, &digest, manifest, content_type)
            .await?;
        let actor = Actor {
            identity: Some(who.to_owned()),
            verified: true,
            ..Actor::default()
        };
        let bypassed_gate = bypassed.as_ref().map(|(_, r)| {
            crate::policy::promote::Gate::ALL
                .into_iter()
                .find(|g| g.reason() == *r)
                .map_or("gate", |g| g.key())
                .to_owned()
        });
        let reason = match &bypassed_gate {
            Some(g) => format!("rewind to {to}, bypassing gate {g}: {reason}"),
            None => format!("rewind to {to}: {reason}"),
        };
        let own = OwnMove {
            repo,
            tag,
            decision: &decision,
            digest: &digest,
            previous: previous.as_deref(),
            reason: &reason,
        };
        self.record_own_move(&mut tx, &own, &actor).await?;
        tx.commit().await?;
        tracing::info!(repository = repo, tag = %tag, release = %to, who, "rewound a moving tag");
        Ok(Rewound {
            repository: repo.to_owned(),
            tag: tag.as_str().to_owned(),
            previous_digest: previous,
            digest: digest.as_str().to_owned(),
            release: to.as_str().to_owned(),
            bypassed_gate,
        })
    }

    async fn record_own_move(
        &self,
        tx: &mut LedgerTx,
        m: &OwnMove<'_>,
        actor: &Actor,
    ) -> Result<(), OciError> {
        let OwnMove {
            repo,
            tag,
            decision,
            digest,
            previous,
            reason,
        } = *m;
        let event = NewEvent {
            tag: Some(tag.as_str()),
            digest: Some(digest.as_str()),
            previous_digest: previous,
            class: Some(decision.class),
            rule: Some(&decision.rule),
            reason: Some(reason),
            policy_hash: Some(self.policy.hash()),
            ..NewEvent::new(
                if previous.is_some() {
                    Action::Move
                } else {
                    Action::Create
                },
                repo,
            )
        };
        tx.bind(&NewBinding {
            repository: repo,
            tag: tag.as_str(),
            digest: digest.as_str(),
            class: decision.class,
            rule: &decision.rule,
            bound_by: actor.identity.as_deref(),
        })
        .await?;
        tx.append(&event, actor).await?;
        Ok(())
    }

    /// Write a manifest under a tag with tagwarden's own credentials, never a client's.
    pub(crate) async fn put_as_tagwarden(
        &self,
        name: &Name,
        tag: &Tag,
        digest: &Digest,
        manifest: Bytes,
        content_type: HeaderValue,
    ) -> Result<(), OciError> {
        Ok(self
            .registry
            .put_manifest(name, tag, digest, manifest, content_type)
            .await?)
    }

    /// Read a manifest by digest with tagwarden's own credentials, checking its bytes.
    pub(crate) async fn get_as_tagwarden(
        &self,
        name: &Name,
        digest: &Digest,
    ) -> Result<(Bytes, HeaderValue), OciError> {
        let unavailable =
            |what: String| OciError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, what);
        let manifest =
            self.registry.manifest(name, digest).await?.ok_or_else(|| {
                unavailable(format!("the registry does not hold {name}@{digest}"))
            })?;
        let content_type = manifest.content_type.ok_or_else(|| {
            unavailable(format!(
                "the registry sent {name}@{digest} without a Content-Type"
            ))
        })?;
        Ok((manifest.bytes, content_type))
    }
}

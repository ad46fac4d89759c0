//! `tagwarden import`: record every tag already in the registry, so that release tags
//! pushed before tagwarden are protected from the first day.
//!
//! Walks `_catalog` and each repository's `tags/list`, asks what each tag points to,
//! and adopts into the ledger every tag it has no binding for. Existing bindings are
//! never changed; where the registry disagrees with one, it is reported.

use crate::config::Config;
use crate::ledger::{Action, Actor, Ledger, ManifestRef, NewBinding, NewEvent};
use crate::oci::{Digest, Name, OciError, Tag};
use crate::policy::{Policy, TagClass};
use crate::registry::RegistryClient;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub repositories: usize,
    pub adopted: usize,
    pub already_recorded: usize,
    /// `repository:tag` whose ledger binding differs from what the registry serves.
    pub conflicts: Vec<String>,
    /// `repository:tag` that could not be read (skipped, with the reason).
    pub skipped: Vec<String>,
    /// What became of lost pending writes (see `crate::ledger::pending`).
    pub pending_writes: PendingWrites,
}

/// Whether the ledger's pending writes were intact when an import began, and if not,
/// whether it put back their marker (so that `[enforce] ledger_complete` counts again).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum PendingWrites {
    /// The marker was there: nothing was lost.
    #[default]
    Intact,
    /// They had been lost; this import recorded the registry after the writes in
    /// flight at the loss had ended, and put the marker back.
    Restored,
    /// They had been lost, and still count as lost: why.
    StillLost(String),
}

/// What the release `name@digest` references, for the delete checks; a manifest the
/// registry no longer holds references nothing.
async fn references(
    registry: &RegistryClient,
    name: &Name,
    digest: &Digest,
) -> anyhow::Result<Vec<ManifestRef>> {
    let fetch = |d: Digest| async move {
        Ok::<_, OciError>(registry.manifest(name, &d).await?.map(|m| m.bytes))
    };
    let Some(top) = registry.manifest(name, digest).await? else {
        return Ok(Vec::new());
    };
    crate::enforce::collect_references(&top.bytes, false, fetch)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// Import every tag of every repository the upstream lists.
pub async fn run(config: &Config, ledger: &Ledger) -> anyhow::Result<Summary> {
    let policy = Policy::from_config(&config.policy)?;
    let registry = RegistryClient::from_config(config)?;
    let actor = Actor {
        identity: config
            .upstream
            .username
            .as_ref()
            .map(|u| format!("import:{u}"))
            .or(Some("import".into())),
        verified: true,
        ..Actor::default()
    };

    let mut summary = Summary::default();
    // Pending writes lost to a crash, a failover or a restore: a write announced before
    // the loss may still reach the registry until its upstream deadline has passed. Only
    // a walk that starts after that records every tag such a write can have stored.
    let recovery = ledger.begin_pending_recovery().await?;
    if recovery.is_some() {
        let wait = config.upstream.manifest_timeout;
        tracing::warn!(
            "the ledger's pending writes were lost (a crash, a failover or a restore of Postgres); waiting {} for writes in flight then to end before recording the registry",
            humantime::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
    }
    let mut unread = 0usize;
    for repo in registry.catalog(None).all().await? {
        let Ok(name) = Name::parse(&repo) else {
            summary
                .skipped
                .push(format!("{repo}: not a valid repository name"));
            continue;
        };
        summary.repositories += 1;
        for t in registry.tags(&name, None).all().await? {
            let Ok(tag) = Tag::parse(&t) else {
                summary.skipped.push(format!("{name}:{t}: not a valid tag"));
                continue;
            };
            let digest = match registry.resolve(&name, tag.as_str()).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    summary.skipped.push(format!("{name}:{tag}: {e}"));
                    unread += 1;
                    continue;
                }
            };
            let decision = policy.classify(name.as_str(), tag.as_str());
            let mut tx = ledger
                .begin_locked(name.as_str(), &[tag.as_str()], &[])
                .await?;
            match tx.binding(name.as_str(), tag.as_str()).await? {
                Some(b) if b.deleted_at.is_none() && b.digest == digest.as_str() => {
                    summary.already_recorded += 1
                }
                Some(b) if b.deleted_at.is_none() => {
                    summary.conflicts.push(format!(
                        "{name}:{tag}: ledger {} registry {digest}",
                        b.digest
                    ));
                }
                _ => {
                    tx.bind(&NewBinding {
                        repository: name.as_str(),
                        tag: tag.as_str(),
                        digest: digest.as_str(),
                        class: decision.class,
                        rule: &decision.rule,
                        bound_by: None,
                    })
                    .await?;
                    if decision.class == TagClass::Immutable {
                        // Unread references are read at the first delete instead.
                        match references(&registry, &name, &digest).await {
                            Ok(refs) => {
                                tx.record_references(name.as_str(), digest.as_str(), &refs)
                                    .await?
                            }
                            Err(e) => {
                                tracing::warn!(
                                    error = format!("{e:#}"),
                                    "{name}:{tag}: references not recorded"
                                )
                            }
                        }
                    }
                    tx.append(
                        &NewEvent {
                            tag: Some(tag.as_str()),
                            digest: Some(digest.as_str()),
                            class: Some(decision.class),
                            rule: Some(&decision.rule),
                            reason: Some("import"),
                            policy_hash: Some(policy.hash()),
                            ..NewEvent::new(Action::Adopt, name.as_str())
                        },
                        &actor,
                    )
                    .await?;
                    summary.adopted += 1;
                }
            }
            tx.commit().await?;
        }
    }
    if let Some(token) = recovery {
        summary.pending_writes = if unread > 0 {
            PendingWrites::StillLost(format!(
                "{unread} tag(s) could not be read; run import again"
            ))
        } else if ledger.end_pending_recovery(token).await? {
            PendingWrites::Restored
        } else {
            PendingWrites::StillLost(
                "they were lost again while the import ran; run it again".into(),
            )
        };
    }
    Ok(summary)
}

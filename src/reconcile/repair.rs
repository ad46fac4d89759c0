//! Putting an immutable tag back on its bound digest, when the bound manifest is still
//! in the registry.

use crate::enforce::Guard;
use crate::ledger::{Action, NewEvent};
use crate::oci::{Digest, Name, Tag};

use super::Finding;

/// Restore `tag` to the finding's ledger digest (read by digest, its bytes checked,
/// written under the tag with its media type, all with tagwarden's own credentials).
/// `Ok(false)` when the bound manifest is gone or the registry
/// refused: the drift stays recorded and is tried again next pass.
pub(super) async fn restore(
    guard: &Guard,
    name: &Name,
    tag: &Tag,
    finding: &Finding,
) -> anyhow::Result<bool> {
    let Some(bound) = finding.ledger_digest.as_deref() else {
        return Ok(false);
    };
    let digest = Digest::parse(bound)?;
    let outcome = match guard.get_as_tagwarden(name, &digest).await {
        Ok((manifest, content_type)) => {
            guard
                .put_as_tagwarden(name, tag, &digest, manifest, content_type)
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        tracing::warn!(repository = %name, tag = %tag, digest = %digest, error = %e.message, "drift: could not repair");
        return Ok(false);
    }
    tracing::info!(repository = %name, tag = %tag, digest = %digest, "drift: repaired");
    Ok(true)
}

/// The `repair` event: the tag names its bound digest again.
pub(super) fn event<'a>(f: &'a Finding, policy_hash: &'a str) -> NewEvent<'a> {
    NewEvent {
        tag: Some(&f.tag),
        digest: f.ledger_digest.as_deref(),
        previous_digest: f.registry_digest.as_deref(),
        class: Some(f.class),
        reason: Some(f.kind.as_str()),
        detail: Some(serde_json::json!({
            "registry_digest": f.registry_digest,
            "ledger_digest": f.ledger_digest,
        })),
        policy_hash: Some(policy_hash),
        ..NewEvent::new(Action::Repair, &f.repository)
    }
}

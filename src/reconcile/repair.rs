//! Putting an immutable tag back on its bound digest, when the bound manifest is still
//! in the registry.

use crate::enforce::Guard;
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

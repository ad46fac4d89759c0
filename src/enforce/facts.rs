//! What the decision of one tag of a write needs, read under the write's locks: the
//! ledger's binding, what the registry holds under a tag the ledger never saw, the
//! releases an advancing tag moves between, promotion gates, and what an append-only
//! tag's manifest lists.

use std::sync::atomic::{AtomicBool, Ordering};

use http::request::Parts;

use super::plan::{Facts, Kept, Releases};
use super::{append, gates, manifest, refusal, Guard};
use crate::ledger::{Binding, LedgerTx, Unseen};
use crate::oci::{Digest, Name, OciError, Tag};
use crate::policy::TagClass;
use crate::proxy::Client;

/// Say once, until they are tracked again, that lost pending writes make every new
/// release tag probed (see `crate::ledger::pending`); a process sees the loss only in
/// the writes it reads.
fn untracked_warning(tracked: bool) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if tracked {
        WARNED.store(false, Ordering::Relaxed);
    } else if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("{}", crate::ledger::PENDING_WRITES_LOST);
    }
}

impl Guard {
    /// Everything the decision of one tag needs, read under the write's locks: its
    /// binding; for an immutable tag the ledger never saw, what the registry holds
    /// under it (adopted); for a tag that only moves forward, the releases of the
    /// digests it would move between.
    ///
    /// `read` is the tag's binding and pending writes as read when the locks were
    /// taken (`Ledger::begin_write`); without it the binding is read here. `own` is
    /// given when this write announced the tag (see `crate::ledger::pending`): its
    /// announcements, with which the ledger may prove the probe unnecessary.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn read_facts(
        &self,
        tx: &mut LedgerTx,
        name: &Name,
        tag: &Tag,
        manifest: &manifest::Manifest,
        parts: &Parts,
        client: &Client,
        read: Option<Unseen>,
        own: Option<&[i64]>,
    ) -> Result<Facts, OciError> {
        let digest = &manifest.digest;
        let repo = name.as_str();
        let decision = self.policy.classify(repo, tag.as_str());
        // The binding as read with the locks, when it was; and whether the ledger
        // proves the registry holds nothing under the tag, when this write announced it.
        let (current, proven_unwritten) = match read {
            Some(unseen) => {
                if own.is_some() {
                    untracked_warning(unseen.tracked());
                }
                let proven = decision.class == TagClass::Immutable
                    && own.is_some_and(|own| unseen.no_unrecorded_write(own));
                (unseen.binding, proven)
            }
            None => (tx.binding(repo, tag.as_str()).await?, false),
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
}

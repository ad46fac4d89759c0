//! The decision of a manifest write, with no I/O: given each tag's class, its binding,
//! what the registry held for a tag the ledger never saw, the releases of the digests
//! an advancing tag would move between, the history of a gated tag's sources, and what
//! an append-only tag's manifests list, what happens to each tag.
//!
//! Everything this needs is read first (under the tags' locks) by the write handler in
//! `mod.rs`; everything it decides is carried out there. Keeping the matrix here makes
//! it testable row by row without a registry or a database.

use crate::ledger::Binding;
use crate::oci::{OciError, Tag};
use crate::policy::advance::{self as rules, Series};
use crate::policy::promote::Source;
use crate::policy::{Decision, Mode, TagClass};

use super::append::{self, Listing};
use super::refusal;

/// The decision for one tag of a write.
#[derive(Debug)]
pub(super) enum Verdict {
    Create,
    Repush,
    /// The own bytes of a retired release pushed again: live once more.
    Restore,
    Move {
        previous: String,
    },
    /// A write the policy forbids: refused when its rule enforces, allowed with a
    /// warning when the rule is in warn mode.
    Violation {
        error: OciError,
        /// Recorded with the event, e.g. `immutable-tag-rebind`.
        reason: &'static str,
        previous: Option<String>,
    },
}

/// One tag of a write, classified and decided.
#[derive(Debug)]
pub(super) struct Planned {
    pub tag: Tag,
    pub decision: Decision,
    pub verdict: Verdict,
}

impl Planned {
    /// A violation of a rule that enforces: the write must be refused.
    pub fn refuses(&self) -> bool {
        matches!(self.verdict, Verdict::Violation { .. }) && self.decision.mode == Mode::Enforce
    }
}

/// What was read about one tag before deciding.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub tag: Tag,
    pub decision: Decision,
    /// The ledger's binding, deleted or not.
    pub current: Option<Binding>,
    /// For an immutable tag the ledger had no binding for: what the registry held
    /// under it, now recorded as adopted.
    pub adopted: Option<Binding>,
    /// For a release this write would re-point: the tag names of its series already
    /// in the ledger, so that the refusal suggests a free version.
    pub taken: Option<Vec<String>>,
    /// For a tag that only moves forward: the releases of the digests it would move
    /// between.
    pub releases: Option<Releases>,
    /// For a tag with promotion gates: what its sources named, and when.
    pub promotion: Option<PromotionFacts>,
    /// For an append-only tag this write would re-point: what both manifests list.
    pub kept: Option<Kept>,
}

/// What the promotion gates of a tag are checked against.
#[derive(Debug, Clone)]
pub(super) struct PromotionFacts {
    pub now: chrono::DateTime<chrono::Utc>,
    pub sources: Vec<Source>,
    /// The digest of this write is bound to a live release tag.
    pub target_is_release: bool,
}

/// The listings an append-only rewrite is checked with.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// What the manifest the tag names now lists; `None` when the registry no longer
    /// holds it (nothing of it is left to keep).
    pub previous: Option<Listing>,
    pub next: Listing,
}

/// Live immutable tags of the repository bound to a digest.
#[derive(Debug, Clone, Default)]
pub(super) struct Releases {
    /// ... to the digest the tag names now.
    pub of_current: Vec<String>,
    /// ... to the digest of this write.
    pub of_target: Vec<String>,
}

/// Decide every tag of a write of `digest` to `repo`.
pub(super) fn decide(repo: &str, digest: &str, facts: Vec<Facts>) -> Vec<Planned> {
    // Release tags this very request creates count as releases of its digest.
    let in_request: Vec<String> = facts
        .iter()
        .filter(|f| f.decision.class == TagClass::Immutable)
        .map(|f| f.tag.as_str().to_owned())
        .collect();
    facts
        .into_iter()
        .map(|f| {
            let verdict = verdict(repo, digest, &f, &in_request);
            Planned {
                tag: f.tag,
                decision: f.decision,
                verdict,
            }
        })
        .collect()
}

fn verdict(repo: &str, digest: &str, f: &Facts, in_request: &[String]) -> Verdict {
    let tag = f.tag.as_str();
    let rebind = |bound: &Binding| Verdict::Violation {
        error: refusal::rebind(repo, tag, bound, digest, f.taken.as_deref()),
        reason: "immutable-tag-rebind",
        previous: Some(bound.digest.clone()),
    };
    let live = f.current.as_ref().filter(|b| b.deleted_at.is_none());
    let verdict = match (f.decision.class, &f.current) {
        // A retired name stays reserved for its digest whatever the policy says now.
        (_, Some(b)) if b.retired_at.is_some() && b.digest == digest => Verdict::Restore,
        (_, Some(b)) if b.retired_at.is_some() => Verdict::Violation {
            error: refusal::retired(repo, tag, b, digest, f.taken.as_deref()),
            reason: "retired-tag-rebind",
            previous: Some(b.digest.clone()),
        },
        // An immutable tag stays reserved for its digest, deleted or not.
        (TagClass::Immutable, Some(b)) if b.digest == digest => Verdict::Repush,
        (TagClass::Immutable, Some(b)) => rebind(b),
        (TagClass::Immutable, None) => match &f.adopted {
            Some(b) if b.digest != digest => rebind(b),
            _ => Verdict::Create,
        },
        (_, _) => match live {
            Some(b) if b.digest == digest => Verdict::Repush,
            Some(b) => Verdict::Move {
                previous: b.digest.clone(),
            },
            None => Verdict::Create,
        },
    };
    if !matches!(verdict, Verdict::Create | Verdict::Move { .. }) {
        return verdict;
    }
    if let (Verdict::Move { previous }, TagClass::AppendOnly) = (&verdict, f.decision.class) {
        return append_only(repo, tag, &f.decision, previous, digest, f.kept.as_ref())
            .unwrap_or(verdict);
    }
    let empty = Releases::default();
    let releases = f.releases.as_ref().unwrap_or(&empty);
    let mut of_target = releases.of_target.clone();
    of_target.extend(in_request.iter().cloned());
    advance(
        repo,
        tag,
        &f.decision,
        live.map(|b| b.digest.as_str()),
        digest,
        &releases.of_current,
        &of_target,
    )
    .or_else(|| {
        gates(
            repo,
            tag,
            &f.decision,
            live.map(|b| b.digest.as_str()),
            digest,
            f.promotion.as_ref(),
            !in_request.is_empty(),
        )
    })
    .unwrap_or(verdict)
}

/// Whether a gated tag may take `target`; `Some(violation)` when a gate refuses it.
/// Without the facts (never read) every gate fails closed. A release tag created by
/// the same request counts for `require_release`.
pub(super) fn gates(
    repo: &str,
    tag: &str,
    decision: &Decision,
    current: Option<&str>,
    target: &str,
    facts: Option<&PromotionFacts>,
    release_in_request: bool,
) -> Option<Verdict> {
    let promotion = decision.promotion.as_ref()?;
    let (now, sources, is_release) = match facts {
        Some(f) => (
            f.now,
            f.sources.as_slice(),
            f.target_is_release || release_in_request,
        ),
        None => (chrono::Utc::now(), &[][..], false),
    };
    let failure = promotion.check(now, sources, target, is_release).err()?;
    Some(Verdict::Violation {
        error: refusal::gate(
            repo,
            tag,
            &decision.rule,
            promotion,
            &failure,
            sources,
            target,
        ),
        reason: failure.gate.reason(),
        previous: current.map(str::to_owned),
    })
}

/// Whether an append-only tag may move from `current` to `target`: only if the new
/// manifest keeps every descriptor of the current one. Without the listings (never
/// read) the rewrite is refused.
fn append_only(
    repo: &str,
    tag: &str,
    decision: &Decision,
    current: &str,
    target: &str,
    kept: Option<&Kept>,
) -> Option<Verdict> {
    let missing = match kept {
        Some(Kept { previous: None, .. }) => return None,
        Some(Kept {
            previous: Some(previous),
            next,
        }) => append::dropped(previous, next),
        None => vec![append::Dropped {
            kind: "listing",
            digest: "(not read)".into(),
        }],
    };
    if missing.is_empty() {
        return None;
    }
    Some(Verdict::Violation {
        error: refusal::dropped(repo, tag, &decision.rule, current, target, &missing),
        reason: "append-only-descriptor-dropped",
        previous: Some(current.to_owned()),
    })
}

/// Whether a tag that only moves forward may move from `current` to `target`, given
/// the release tags of each; `Some(violation)` when it may not.
pub(super) fn advance(
    repo: &str,
    tag: &str,
    decision: &Decision,
    current: Option<&str>,
    target: &str,
    current_releases: &[String],
    target_releases: &[String],
) -> Option<Verdict> {
    let advance = decision.advance?;
    let series = Series::of(tag);
    let best_current = rules::best_release(
        current_releases.iter().map(String::as_str),
        series,
        advance.allow_prerelease,
    );
    let best_target = rules::best_release(
        target_releases.iter().map(String::as_str),
        series,
        advance.allow_prerelease,
    );
    let why = rules::check(series, best_current.as_ref(), best_target.as_ref()).err()?;
    Some(Verdict::Violation {
        reason: match why {
            rules::Refusal::Backwards { .. } => "moving-tag-backwards",
            rules::Refusal::NotARelease { .. } => "moving-tag-not-a-release",
        },
        error: refusal::not_forward(repo, tag, &why, current, target, &decision.rule),
        previous: current.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests;

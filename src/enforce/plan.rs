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
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::oci::ErrorCode;
    use crate::policy::{AdvanceKind, Policy, RuleConfig};
    use chrono::Utc;

    const REPO: &str = "team/app";
    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// The ledger's state of a tag before the write, in the matrix's words.
    #[derive(Clone, Copy, Debug)]
    enum Bound {
        None,
        Same,
        Other,
        DeletedSame,
        DeletedOther,
        RetiredSame,
        RetiredOther,
    }

    /// What a row expects.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Create,
        Repush,
        Restore,
        Move,
        Refuse(&'static str),
        Warn(&'static str),
    }

    fn binding(tag: &str, digest: &str, deleted: bool) -> Binding {
        let now = Utc::now();
        Binding {
            repository: REPO.into(),
            tag: tag.into(),
            digest: digest.into(),
            class: TagClass::Immutable,
            rule: "r".into(),
            bound_by: Some("alice".into()),
            first_bound_at: now,
            last_changed_at: now,
            deleted_at: deleted.then_some(now),
            retired_at: None,
            retired_reason: None,
            retired_by: None,
        }
    }

    fn retired(tag: &str, digest: &str) -> Binding {
        Binding {
            retired_at: Some(Utc::now()),
            retired_reason: Some("end of support".into()),
            retired_by: Some("token:ops".into()),
            ..binding(tag, digest, true)
        }
    }

    fn policy(warn: bool) -> Policy {
        let rule = RuleConfig::new;
        let config = PolicyConfig {
            include_defaults: false,
            rules: vec![
                RuleConfig {
                    mode: if warn { Mode::Warn } else { Mode::Enforce },
                    ..rule("releases", r"v?\d+\.\d+\.\d+", TagClass::Immutable)
                },
                RuleConfig {
                    advance: Some(AdvanceKind::Semver),
                    ..rule("minor", r"\d+\.\d+", TagClass::Moving)
                },
                rule("sigs", r"sha256-[0-9a-f]{64}(\.sig)?", TagClass::Exempt),
            ],
        };
        Policy::from_config(&config).expect("valid policy")
    }

    fn facts(policy: &Policy, tag: &str, bound: Bound, adopted: Option<&str>) -> Facts {
        let current = match bound {
            Bound::None => None,
            Bound::Same => Some(binding(tag, A, false)),
            Bound::Other => Some(binding(tag, B, false)),
            Bound::DeletedSame => Some(binding(tag, A, true)),
            Bound::DeletedOther => Some(binding(tag, B, true)),
            Bound::RetiredSame => Some(retired(tag, A)),
            Bound::RetiredOther => Some(retired(tag, B)),
        };
        Facts {
            tag: Tag::parse(tag).unwrap(),
            decision: policy.classify(REPO, tag),
            current,
            adopted: adopted.map(|d| binding(tag, d, false)),
            taken: None,
            releases: None,
            promotion: None,
            kept: None,
        }
    }

    fn outcome(p: &Planned) -> Expect {
        match &p.verdict {
            Verdict::Create => Expect::Create,
            Verdict::Repush => Expect::Repush,
            Verdict::Restore => Expect::Restore,
            Verdict::Move { .. } => Expect::Move,
            Verdict::Violation { reason, .. } if p.refuses() => Expect::Refuse(reason),
            Verdict::Violation { reason, .. } => Expect::Warn(reason),
        }
    }

    /// Class × current binding × mode, for a write of digest A.
    #[test]
    fn the_decision_matrix_for_one_tag() {
        use Bound::*;
        use Expect::*;
        const REBIND: &str = "immutable-tag-rebind";
        const RETIRED: &str = "retired-tag-rebind";
        #[rustfmt::skip]
        let rows: &[(&str, Bound, bool, Expect)] = &[
            // immutable, enforced
            ("1.4.0", None,         false, Create),
            ("1.4.0", Same,         false, Repush),
            ("1.4.0", Other,        false, Refuse(REBIND)),
            ("1.4.0", DeletedSame,  false, Repush),
            ("1.4.0", DeletedOther, false, Refuse(REBIND)),
            // retired: reserved for its digest; its own bytes restore it
            ("1.4.0", RetiredSame,  false, Restore),
            ("1.4.0", RetiredOther, false, Refuse(RETIRED)),
            // immutable, warn mode: the same violations, allowed
            ("1.4.0", None,         true,  Create),
            ("1.4.0", Same,         true,  Repush),
            ("1.4.0", Other,        true,  Warn(REBIND)),
            ("1.4.0", DeletedOther, true,  Warn(REBIND)),
            ("1.4.0", RetiredSame,  true,  Restore),
            ("1.4.0", RetiredOther, true,  Warn(RETIRED)),
            // moving (advancing, but these rows give it no releases to compare:
            // see the advance rows below)
            ("latest", None,         false, Create),
            ("latest", Same,         false, Repush),
            ("latest", Other,        false, Move),
            ("latest", DeletedSame,  false, Create),
            ("latest", DeletedOther, false, Create),
            // a retired name stays reserved even if the policy no longer makes it immutable
            ("latest", RetiredSame,  false, Restore),
            ("latest", RetiredOther, false, Refuse(RETIRED)),
            // exempt
            ("sha256-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sig", Other, false, Move),
            ("sha256-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sig", Same,  false, Repush),
        ];
        for (tag, bound, warn, expect) in rows {
            let p = policy(*warn);
            let plan = decide(REPO, A, vec![facts(&p, tag, *bound, Option::None)]);
            assert_eq!(&outcome(&plan[0]), expect, "{tag} {bound:?} warn={warn}");
        }
    }

    #[test]
    fn a_retired_name_refuses_other_bytes_saying_when_why_and_by_whom() {
        let p = policy(false);
        let plan = decide(REPO, A, vec![facts(&p, "1.4.0", Bound::RetiredOther, None)]);
        let Verdict::Violation { error, .. } = &plan[0].verdict else {
            panic!("not refused: {:?}", plan[0].verdict)
        };
        assert_eq!(error.status, http::StatusCode::CONFLICT);
        assert_eq!(error.code, ErrorCode::Denied);
        for part in [
            "team/app:1.4.0 was retired at",
            "by token:ops",
            "end of support",
            B,
        ] {
            assert!(error.message.contains(part), "{part}: {}", error.message);
        }
    }

    #[test]
    fn an_unrecorded_release_is_decided_by_what_the_registry_held() {
        let p = policy(false);
        for (held, expect) in [
            (None, Expect::Create),
            (Some(A), Expect::Create),
            (Some(B), Expect::Refuse("immutable-tag-rebind")),
        ] {
            let plan = decide(REPO, A, vec![facts(&p, "2.0.0", Bound::None, held)]);
            assert_eq!(outcome(&plan[0]), expect, "registry held {held:?}");
        }
    }

    #[test]
    fn advancing_tags_move_only_forward_over_releases() {
        let p = policy(false);
        let with = |current: &[&str], target: &[&str]| {
            let mut f = facts(&p, "1.4", Bound::Other, None);
            f.releases = Some(Releases {
                of_current: current.iter().map(|s| s.to_string()).collect(),
                of_target: target.iter().map(|s| s.to_string()).collect(),
            });
            outcome(&decide(REPO, A, vec![f])[0])
        };
        assert_eq!(with(&["1.4.0"], &["1.4.1"]), Expect::Move);
        assert_eq!(
            with(&["1.4.1"], &["1.4.0"]),
            Expect::Refuse("moving-tag-backwards")
        );
        assert_eq!(
            with(&["1.4.0"], &[]),
            Expect::Refuse("moving-tag-not-a-release")
        );
        assert_eq!(
            with(&["1.4.0"], &["1.5.0"]),
            Expect::Refuse("moving-tag-not-a-release"),
            "1.4 names only 1.4.x releases"
        );
    }

    #[test]
    fn a_release_created_by_the_same_request_counts_for_its_followers() {
        // PUT by digest ?tag=1.4.2&tag=1.4: 1.4.2 is not bound yet, but this write
        // makes it a release of the digest.
        let p = policy(false);
        let mut minor = facts(&p, "1.4", Bound::Other, None);
        minor.releases = Some(Releases {
            of_current: vec!["1.4.1".into()],
            of_target: vec![],
        });
        let plan = decide(REPO, A, vec![facts(&p, "1.4.2", Bound::None, None), minor]);
        let outcomes: Vec<Expect> = plan.iter().map(outcome).collect();
        assert_eq!(outcomes, [Expect::Create, Expect::Move]);
    }

    #[test]
    fn one_refused_tag_refuses_the_whole_write() {
        let p = policy(false);
        let plan = decide(
            REPO,
            A,
            vec![
                facts(&p, "1.4.0", Bound::Other, None),
                facts(&p, "latest", Bound::Other, None),
            ],
        );
        assert!(plan.iter().any(Planned::refuses));
        assert_eq!(plan.iter().filter(|p| p.refuses()).count(), 1);
    }

    fn gated_policy() -> Policy {
        let config = PolicyConfig {
            include_defaults: false,
            rules: vec![
                RuleConfig {
                    promote_from: vec!["staging".into()],
                    soak: Some(std::time::Duration::from_secs(3600)),
                    require_release: true,
                    ..RuleConfig::new("prod", "production", TagClass::Moving)
                },
                RuleConfig::new("releases", r"\d+\.\d+\.\d+", TagClass::Immutable),
                RuleConfig::new("sigs", r"sha256-[0-9a-f]{64}\.sig", TagClass::AppendOnly),
            ],
        };
        Policy::from_config(&config).expect("valid policy")
    }

    #[test]
    fn a_gated_tag_takes_only_what_its_source_soaked() {
        use crate::policy::promote::{spans, Change};
        let p = gated_policy();
        let now = Utc::now();
        let staging = |minutes_ago: i64, digest: &str| Source {
            tag: "staging".into(),
            spans: spans(&[Change {
                at: now - chrono::Duration::minutes(minutes_ago),
                names: Some(digest.into()),
            }]),
        };
        #[rustfmt::skip]
        let rows: &[(&str, Bound, Option<Source>, bool, Expect)] = &[
            ("soaked release",          Bound::Other, Some(staging(90, A)), true,  Expect::Move),
            ("first push, soaked",      Bound::None,  Some(staging(90, A)), true,  Expect::Create),
            ("staging names another",   Bound::Other, Some(staging(90, B)), true,  Expect::Refuse("promotion-not-from-source")),
            ("not soaked",              Bound::Other, Some(staging(5, A)),  true,  Expect::Refuse("promotion-not-soaked")),
            ("not a release",           Bound::Other, Some(staging(90, A)), false, Expect::Refuse("promotion-not-a-release")),
            ("identical re-push",       Bound::Same,  Some(staging(5, B)),  false, Expect::Repush),
        ];
        for (what, bound, source, release, expect) in rows {
            let mut f = facts(&p, "production", *bound, None);
            f.promotion = Some(PromotionFacts {
                now,
                sources: source.iter().cloned().collect(),
                target_is_release: *release,
            });
            assert_eq!(&outcome(&decide(REPO, A, vec![f])[0]), expect, "{what}");
        }
        // Facts never read: refused, not allowed.
        let unread = facts(&p, "production", Bound::Other, None);
        assert_eq!(
            outcome(&decide(REPO, A, vec![unread])[0]),
            Expect::Refuse("promotion-not-from-source")
        );
    }

    #[test]
    fn a_gate_refusal_says_which_gate_and_what_staging_names() {
        use crate::policy::promote::{spans, Change};
        let p = gated_policy();
        let now = Utc::now();
        let mut f = facts(&p, "production", Bound::Other, None);
        f.promotion = Some(PromotionFacts {
            now,
            sources: vec![Source {
                tag: "staging".into(),
                spans: spans(&[Change {
                    at: now - chrono::Duration::minutes(90),
                    names: Some(B.into()),
                }]),
            }],
            target_is_release: true,
        });
        let plan = decide(REPO, A, vec![f]);
        let Verdict::Violation { error, .. } = &plan[0].verdict else {
            panic!("refused")
        };
        assert_eq!(error.status, http::StatusCode::CONFLICT);
        assert!(
            error.message.contains("gate promote_from failed"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains(&format!("staging names {B} now")),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_append_only_tag_keeps_every_descriptor() {
        let p = gated_policy();
        let sig = format!("sha256-{}.sig", "c".repeat(64));
        let listing = |layers: &[&str]| Listing {
            layers: layers.iter().map(|s| s.to_string()).collect(),
            manifests: vec![],
        };
        #[rustfmt::skip]
        let rows: &[(&str, Bound, Option<Kept>, Expect)] = &[
            ("first signature",    Bound::None,  None, Expect::Create),
            ("same manifest",      Bound::Same,  None, Expect::Repush),
            ("a layer appended",   Bound::Other, Some(Kept { previous: Some(listing(&["s1"])), next: listing(&["s1", "s2"]) }), Expect::Move),
            ("a layer dropped",    Bound::Other, Some(Kept { previous: Some(listing(&["s1", "s2"])), next: listing(&["s2"]) }), Expect::Refuse("append-only-descriptor-dropped")),
            ("previous gone",      Bound::Other, Some(Kept { previous: None, next: listing(&["s9"]) }), Expect::Move),
            ("listings not read",  Bound::Other, None, Expect::Refuse("append-only-descriptor-dropped")),
            ("deleted, re-signed", Bound::DeletedOther, None, Expect::Create),
        ];
        for (what, bound, kept, expect) in rows {
            let mut f = facts(&p, &sig, *bound, None);
            f.kept = kept.clone();
            assert_eq!(&outcome(&decide(REPO, A, vec![f])[0]), expect, "{what}");
        }
    }
}

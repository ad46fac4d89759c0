//! The decisions of [`super::decide`], table-driven: each row a ledger state, a class
//! and a push, and what the plan must say of it.

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

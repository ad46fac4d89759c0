//! The words a developer sees when a write is refused. skopeo and docker show only the
//! `message`, so it must stand on its own: which tag, what it is bound to, since when,
//! by whom, and what to do instead. `detail` carries the same facts for tools.

use http::StatusCode;
use serde_json::json;

use semver::Version;

use crate::ledger::{Binding, LedgerError, LedgerTx};
use crate::oci::{ErrorCode, OciError};
use crate::policy::advance::Refusal;
use crate::policy::promote::{Failure, Gate, Promotion, Source};

use super::append::Dropped;

/// A push of other bytes under an immutable tag; `taken` as for [`advice`].
pub fn rebind(
    repository: &str,
    tag: &str,
    bound: &Binding,
    attempted: &str,
    taken: Option<&[String]>,
) -> OciError {
    let by = bound
        .bound_by
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    let message = format!(
        "tag {repository}:{tag} is immutable: bound to {digest} since {since}{by}; {advice}",
        digest = bound.digest,
        since = bound.first_bound_at.format("%Y-%m-%dT%H:%M:%SZ"),
        advice = advice(tag, taken),
    );
    OciError::new(StatusCode::CONFLICT, ErrorCode::Denied, message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "bound_digest": bound.digest,
        "bound_at": bound.first_bound_at,
        "bound_by": bound.bound_by,
        "attempted_digest": attempted,
        "rule": bound.rule,
    }))
}

/// A push of other bytes under a retired release: its name stays reserved for its
/// digest; `taken` as for [`advice`].
pub fn retired(
    repository: &str,
    tag: &str,
    bound: &Binding,
    attempted: &str,
    taken: Option<&[String]>,
) -> OciError {
    let (at, reason, by) = match bound.retirement() {
        Some(r) => (Some(r.at), r.reason, r.by),
        None => (bound.deleted_at, String::new(), None),
    };
    let when = at
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into());
    let by_text = by
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    let message = format!(
        "tag {repository}:{tag} was retired at {when}{by_text} (reason: {reason}); the name stays reserved for {digest}, so only those bytes can restore it; {advice}",
        digest = bound.digest,
        advice = advice(tag, taken),
    );
    OciError::new(StatusCode::CONFLICT, ErrorCode::Denied, message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "bound_digest": bound.digest,
        "retired_at": at,
        "retired_by": by,
        "retired_reason": reason,
        "attempted_digest": attempted,
        "rule": bound.rule,
    }))
}

/// A delete of an immutable tag, or of a digest that immutable tags name.
pub fn delete(repository: &str, reference: &str, tags: &[&Binding]) -> OciError {
    let names: Vec<&str> = tags.iter().map(|b| b.tag.as_str()).collect();
    let message = if names.len() == 1 && names[0] == reference {
        format!(
            "tag {repository}:{reference} is immutable and cannot be deleted: it stays bound to {} so that everyone who pinned it gets the same bytes",
            tags[0].digest
        )
    } else {
        format!(
            "manifest {repository}@{reference} cannot be deleted: immutable tag(s) {} name it; deleting it would break everyone who pinned them",
            names.join(", ")
        )
    };
    undeletable(message).with_detail(json!({
        "repository": repository,
        "reference": reference,
        "immutable_tags": names,
        "rules": tags.iter().map(|b| b.rule.as_str()).collect::<Vec<_>>(),
    }))
}

/// A move of an advancing tag that is not forward over a release.
pub fn not_forward(
    repository: &str,
    tag: &str,
    why: &Refusal,
    current: Option<&str>,
    attempted: &str,
    rule: &str,
) -> OciError {
    let message = match why {
        Refusal::Backwards { current: cur, attempted: att } => format!(
            "tag {repository}:{tag} only moves forward: it names release {cur} ({}), and this push would move it back to {att} ({attempted}); to move it back deliberately, an operator runs: tagwarden rewind {repository}:{tag} --to {att} --reason \"...\"",
            current.unwrap_or("-"),
        ),
        Refusal::NotARelease { series } => format!(
            "tag {repository}:{tag} only names releases ({}): {attempted} is not bound to such a release tag in {repository}; push the release tag (for example 1.4.2) first, then {tag}",
            series.describe(),
        ),
    };
    let (current_release, attempted_release) = match why {
        Refusal::Backwards { current, attempted } => {
            (Some(current.as_str()), Some(attempted.as_str()))
        }
        Refusal::NotARelease { .. } => (None, None),
    };
    OciError::new(StatusCode::CONFLICT, ErrorCode::Denied, message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "current_digest": current,
        "current_release": current_release,
        "attempted_digest": attempted,
        "attempted_release": attempted_release,
        "rule": rule,
    }))
}

/// A promotion a gate refused: which gate, and what the source tags name now.
pub fn gate(
    repository: &str,
    tag: &str,
    rule: &str,
    promotion: &Promotion,
    failure: &Failure,
    sources: &[Source],
    attempted: &str,
) -> OciError {
    let from = if promotion.from.is_empty() {
        "any tag".to_owned()
    } else {
        promotion.from.join(" or ")
    };
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let duration = |d: std::time::Duration| {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    };
    let why = match failure.gate {
        Gate::PromoteFrom => match promotion.window {
            Some(w) => format!(
                "{from} has not named {attempted} now or within the last {}",
                duration(w)
            ),
            None => format!("{from} does not name {attempted} now"),
        },
        Gate::Soak => format!(
            "{from} has named {attempted} for {} only, and the rule requires {}{}",
            duration(failure.soaked.unwrap_or_default()),
            duration(promotion.soak.unwrap_or_default()),
            failure
                .ready_at
                .map(|t| format!(" (it may be promoted from {})", time(t)))
                .unwrap_or_default(),
        ),
        Gate::RequireRelease => format!(
            "{attempted} is not bound to a release (immutable) tag in {repository}; push the release tag first"
        ),
    };
    let now: Vec<String> = sources
        .iter()
        .map(|s| match s.now() {
            Some(span) => format!(
                "{} names {} now (since {})",
                s.tag,
                span.digest,
                time(span.from)
            ),
            None => format!("{} names nothing now", s.tag),
        })
        .collect();
    let mut message = format!(
        "tag {repository}:{tag} is promoted through gates (rule {rule}): gate {} failed: {why}",
        failure.gate.key()
    );
    if !now.is_empty() {
        message += &format!("; {}", now.join("; "));
    }
    OciError::new(StatusCode::CONFLICT, ErrorCode::Denied, message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "rule": rule,
        "gate": failure.gate.key(),
        "attempted_digest": attempted,
        "promote_from": promotion.from,
        "soak_seconds": promotion.soak.map(|d| d.as_secs()),
        "soaked_seconds": failure.soaked.map(|d| d.as_secs()),
        "ready_at": failure.ready_at,
        "sources": sources.iter().map(|s| json!({
            "tag": s.tag,
            "digest": s.now().map(|n| n.digest.as_str()),
            "since": s.now().map(|n| n.from),
        })).collect::<Vec<_>>(),
    }))
}

/// A rewrite of an append-only tag whose manifest drops descriptors the current one
/// lists.
pub fn dropped(
    repository: &str,
    tag: &str,
    rule: &str,
    current: &str,
    attempted: &str,
    dropped: &[Dropped],
) -> OciError {
    let listed: Vec<String> = dropped
        .iter()
        .take(3)
        .map(|d| format!("{} {}", d.kind, d.digest))
        .collect();
    let more = dropped.len().saturating_sub(listed.len());
    let message = format!(
        "tag {repository}:{tag} is append-only (rule {rule}): the new manifest {attempted} drops {}{} that the current one ({current}) lists; a new signature or referrers manifest must keep every layer or manifest of the previous one and may only add to them",
        listed.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() },
    );
    OciError::new(StatusCode::CONFLICT, ErrorCode::Denied, message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "rule": rule,
        "current_digest": current,
        "attempted_digest": attempted,
        "dropped": dropped.iter().take(100).map(|d| json!({"kind": d.kind, "digest": d.digest})).collect::<Vec<_>>(),
    }))
}

/// A delete the policy forbids: 405 `UNSUPPORTED`, the spec's answer to a delete the
/// registry does not allow, which clients report instead of retrying.
pub(super) fn undeletable(message: String) -> OciError {
    OciError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        message,
    )
}

/// A delete of append-only tags whose subject is a live release.
pub fn append_only_delete(
    repository: &str,
    reference: &str,
    tags: &[(&Binding, Vec<String>)],
) -> OciError {
    let (first, releases) = &tags[0];
    let subject = super::append::subject(&first.tag).unwrap_or_default();
    let message = format!(
        "{repository}:{} is append-only and cannot be deleted while its subject {repository}@{subject} is release {}: deleting it would drop signatures or attestations of a live release",
        first.tag,
        releases.join(", "),
    );
    undeletable(message).with_detail(json!({
        "repository": repository,
        "reference": reference,
        "append_only_tags": tags.iter().map(|(b, _)| b.tag.as_str()).collect::<Vec<_>>(),
        "subject": subject,
        "releases": releases,
    }))
}

/// The most tag names of one series read to find a free version: past that, the
/// advice names no version rather than one that might be taken.
const MAX_SERIES_TAGS: i64 = 1000;

/// The tags of `repository` in the same minor series as `tag` (`v1.4.` for `v1.4.0`),
/// live or deleted, whatever their class: names a suggestion must avoid. `None` when
/// `tag` is not a version or the series is too long to read.
pub async fn taken_in_series(
    tx: &mut LedgerTx,
    repository: &str,
    tag: &str,
) -> Result<Option<Vec<String>>, LedgerError> {
    let Some(prefix) = series_prefix(tag) else {
        return Ok(None);
    };
    let names = tx
        .tags_with_prefix(repository, &prefix, MAX_SERIES_TAGS)
        .await?;
    Ok((names.len() < MAX_SERIES_TAGS as usize).then_some(names))
}

/// What to push instead of re-pointing `tag`, given the tag names already `taken` in
/// its series (`None`: unknown, so no version is named).
pub fn advice(tag: &str, taken: Option<&[String]>) -> String {
    match taken.and_then(|t| next_free_version(tag, t.iter().map(String::as_str))) {
        Some(next) => format!("publish a new version such as {next} instead"),
        None => "push the new build under a new tag instead".to_owned(),
    }
}

/// A tag read as a `v` prefix (or none) and a semver version.
fn parse(tag: &str) -> Option<(&str, Version)> {
    let (prefix, rest) = match tag.strip_prefix('v') {
        Some(r) => ("v", r),
        None => ("", tag),
    };
    let v = Version::parse(rest).ok()?;
    v.build.is_empty().then_some((prefix, v))
}

/// The name prefix shared by the tags of `tag`'s minor series: `v1.4.` for `v1.4.0-rc.1`.
fn series_prefix(tag: &str) -> Option<String> {
    let (prefix, v) = parse(tag)?;
    Some(format!("{prefix}{}.{}.", v.major, v.minor))
}

/// A version to publish instead of re-pointing `tag` that no name in `taken` uses: for a
/// release, the next patch after the highest release of its minor series (`1.4.0` with
/// `1.4.1` taken: `1.4.2`); for a prerelease ending in a number, the next free number
/// (`v2.4.1-rc.1` with `v2.4.1-rc.2` taken: `v2.4.1-rc.3`), or, once that version is
/// itself released, the first such prerelease of the next free patch. Only names with
/// the same `v` prefix count. `None` when `tag` is not such a version.
pub fn next_free_version<'a>(
    tag: &str,
    taken: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let (prefix, v) = parse(tag)?;
    let series: Vec<Version> = taken
        .into_iter()
        .filter_map(parse)
        .filter(|(p, t)| *p == prefix && (t.major, t.minor) == (v.major, v.minor))
        .map(|(_, t)| t)
        .chain(std::iter::once(v.clone()))
        .collect();
    let released = |patch: u64| series.iter().any(|t| t.patch == patch && t.pre.is_empty());
    let highest = series
        .iter()
        .filter(|t| t.pre.is_empty())
        .map(|t| t.patch)
        .max()
        .unwrap_or(v.patch);
    let next_patch = highest.checked_add(1)?;
    let core = |patch: u64| format!("{prefix}{}.{}.{patch}", v.major, v.minor);
    if v.pre.is_empty() {
        return Some(core(next_patch));
    }
    // 1.4.0-rc.1: the identifiers before a trailing number, and that number.
    let (head, number) = match v.pre.as_str().rsplit_once('.') {
        Some((head, last)) => (Some(head), last),
        None => (None, v.pre.as_str()),
    };
    number.parse::<u64>().ok()?;
    let patch = if released(v.patch) {
        next_patch
    } else {
        v.patch
    };
    let used = series
        .iter()
        .filter(|t| t.patch == patch)
        .filter_map(|t| match t.pre.as_str().rsplit_once('.') {
            Some((h, last)) if Some(h) == head => last.parse::<u64>().ok(),
            None if head.is_none() => t.pre.as_str().parse::<u64>().ok(),
            _ => None,
        })
        .max();
    let n = used.map_or(Some(1), |n| n.checked_add(1))?;
    Some(match head {
        Some(head) => format!("{}-{head}.{n}", core(patch)),
        None => format!("{}-{n}", core(patch)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(tag: &str, taken: &[&str]) -> Option<String> {
        next_free_version(tag, taken.iter().copied())
    }

    #[test]
    fn suggests_the_next_version_when_nothing_else_is_bound() {
        assert_eq!(next("1.4.0", &[]).as_deref(), Some("1.4.1"));
        assert_eq!(next("1.4.0", &["1.4.0"]).as_deref(), Some("1.4.1"));
        assert_eq!(next("v2.4.1", &[]).as_deref(), Some("v2.4.2"));
        assert_eq!(next("v2.4.1-rc.1", &[]).as_deref(), Some("v2.4.1-rc.2"));
        assert_eq!(next("1.0.0-7", &[]).as_deref(), Some("1.0.0-8"));
        assert_eq!(next("1.0.0-alpha", &[]), None);
        assert_eq!(next("git-9f3c2a1", &[]), None);
        assert_eq!(next("1.4", &[]), None);
        assert_eq!(next("01.4.0", &[]), None, "not semver: a leading zero");
        assert_eq!(next("1.4.18446744073709551615", &[]), None, "no next patch");
        assert_eq!(next("1.4.0-rc.18446744073709551615", &[]), None);
    }

    #[test]
    fn skips_versions_already_bound_in_the_series() {
        assert_eq!(next("1.4.0", &["1.4.0", "1.4.1"]).as_deref(), Some("1.4.2"));
        assert_eq!(
            next("1.4.1", &["1.4.0", "1.4.5", "1.4.1"]).as_deref(),
            Some("1.4.6"),
            "after the highest release, not the tag"
        );
        // Other series, other prefixes and prereleases do not count.
        assert_eq!(
            next(
                "1.4.0",
                &["1.5.0", "v1.4.3", "1.4.7-rc.1", "2.4.9", "latest"]
            )
            .as_deref(),
            Some("1.4.1")
        );
        assert_eq!(
            next("v1.4.0", &["v1.4.1", "1.4.2"]).as_deref(),
            Some("v1.4.2")
        );
    }

    #[test]
    fn a_prerelease_gets_the_next_free_number() {
        let taken = ["v2.4.1-rc.1", "v2.4.1-rc.2", "v2.4.1-rc.4", "v2.4.1-beta.9"];
        assert_eq!(next("v2.4.1-rc.1", &taken).as_deref(), Some("v2.4.1-rc.5"));
        assert_eq!(
            next("v2.4.1-beta.1", &taken).as_deref(),
            Some("v2.4.1-beta.10")
        );
        assert_eq!(
            next("v2.4.1-rc.1", &["2.4.1-rc.7"]).as_deref(),
            Some("v2.4.1-rc.2"),
            "another prefix"
        );
        // Once 2.4.1 is released, its prereleases are past: the next patch's first.
        assert_eq!(
            next("v2.4.1-rc.1", &["v2.4.1", "v2.4.2-rc.1"]).as_deref(),
            Some("v2.4.2-rc.2")
        );
        assert_eq!(
            next("v2.4.1-rc.1", &["v2.4.1"]).as_deref(),
            Some("v2.4.2-rc.1")
        );
    }

    #[test]
    fn the_advice_names_a_version_only_when_the_taken_names_are_known() {
        let taken = ["1.4.0".to_string(), "1.4.1".to_string()];
        assert_eq!(
            advice("1.4.0", Some(&taken)),
            "publish a new version such as 1.4.2 instead"
        );
        assert!(advice("1.4.0", None).contains("new tag"));
        assert!(advice("git-9f3c2a1", Some(&[])).contains("new tag"));
    }

    #[test]
    fn the_series_is_read_by_its_name_prefix() {
        assert_eq!(series_prefix("v1.4.0-rc.1").as_deref(), Some("v1.4."));
        assert_eq!(series_prefix("10.0.3").as_deref(), Some("10.0."));
        assert_eq!(series_prefix("latest"), None);
    }
}

//! The words a developer sees when a write is refused. skopeo and docker show only the
//! `message`, so it must stand on its own: which tag, what it is bound to, since when,
//! by whom, and what to do instead. `detail` carries the same facts for tools.

use http::StatusCode;
use serde_json::json;

use crate::ledger::Binding;
use crate::oci::OciError;
use crate::policy::advance::Refusal;

/// A push of other bytes under an immutable tag.
pub fn rebind(repository: &str, tag: &str, bound: &Binding, attempted: &str) -> OciError {
    let by = bound
        .bound_by
        .as_deref()
        .map(|b| format!(" by {b}"))
        .unwrap_or_default();
    let message = format!(
        "tag {repository}:{tag} is immutable: bound to {digest} since {since}{by}; {advice}",
        digest = bound.digest,
        since = bound.first_bound_at.format("%Y-%m-%dT%H:%M:%SZ"),
        advice = advice(tag),
    );
    OciError::new(StatusCode::CONFLICT, "DENIED", message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "bound_digest": bound.digest,
        "bound_at": bound.first_bound_at,
        "bound_by": bound.bound_by,
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
    OciError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message).with_detail(json!({
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
    OciError::new(StatusCode::CONFLICT, "DENIED", message).with_detail(json!({
        "repository": repository,
        "tag": tag,
        "current_digest": current,
        "current_release": current_release,
        "attempted_digest": attempted,
        "attempted_release": attempted_release,
        "rule": rule,
    }))
}

/// What to push instead of re-pointing `tag`.
pub fn advice(tag: &str) -> String {
    match next_version(tag) {
        Some(next) => format!("publish a new version such as {next} instead"),
        None => "push the new build under a new tag instead".to_owned(),
    }
}

/// The next patch (or prerelease) version after a semver-looking tag.
fn next_version(tag: &str) -> Option<String> {
    let (prefix, rest) = match tag.strip_prefix('v') {
        Some(r) => ("v", r),
        None => ("", tag),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let nums: Vec<u64> = core
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 3 {
        return None;
    }
    if let Some(pre) = pre {
        // 1.4.0-rc.1 -> 1.4.0-rc.2 when the last identifier is numeric.
        let (head, last) = pre.rsplit_once('.').unwrap_or(("", pre));
        let n: u64 = last.parse().ok()?;
        let head = if head.is_empty() {
            String::new()
        } else {
            format!("{head}.")
        };
        return Some(format!("{prefix}{core}-{head}{}", n + 1));
    }
    Some(format!("{prefix}{}.{}.{}", nums[0], nums[1], nums[2] + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_next_version() {
        assert_eq!(next_version("1.4.0").as_deref(), Some("1.4.1"));
        assert_eq!(next_version("v2.4.1").as_deref(), Some("v2.4.2"));
        assert_eq!(next_version("v2.4.1-rc.1").as_deref(), Some("v2.4.1-rc.2"));
        assert_eq!(next_version("1.0.0-alpha"), None);
        assert_eq!(next_version("git-9f3c2a1"), None);
        assert!(advice("git-9f3c2a1").contains("new tag"));
    }
}

//! The canonical encoding of an event as a log leaf.
//!
//! A leaf is the domain line `tagwarden-leaf-v1` followed by one line per field, in a
//! fixed order: `<byte length>:<bytes>` or `-` for an absent value. Every recorded
//! field is covered, the event id (so reordering changes the leaf) and the hash of the
//! policy in force. The encoding is text, so a proof file shows what it proves. A new
//! field means a new version line; old leaves keep theirs.

use crate::ledger::chain::field;
use crate::ledger::StoredEvent;

/// The first line of every version-1 leaf.
pub const DOMAIN: &str = "tagwarden-leaf-v1";

/// The field names of a version-1 leaf, in order.
pub const FIELDS: [&str; 17] = [
    "id",
    "at",
    "action",
    "repository",
    "tag",
    "digest",
    "previous_digest",
    "class",
    "rule",
    "reason",
    "identity",
    "identity_verified",
    "remote_addr",
    "user_agent",
    "request_id",
    "detail",
    "policy_hash",
];

/// The leaf of a stored event. Its `policy_hash` (the policy that decided it) is absent
/// for events recorded before migration 0010.
pub fn encode(e: &StoredEvent) -> Vec<u8> {
    let id = e.id.to_string();
    let at = e.at.timestamp_micros().to_string();
    // jsonb keeps keys sorted and serde_json's map is ordered: stable across storing.
    let detail = e.detail.as_ref().map(|d| d.to_string());
    let values: [Option<&str>; 17] = [
        Some(&id),
        Some(&at),
        Some(e.action.as_str()),
        Some(&e.repository),
        e.tag.as_deref(),
        e.digest.as_deref(),
        e.previous_digest.as_deref(),
        e.class.map(|c| c.as_str()),
        e.rule.as_deref(),
        e.reason.as_deref(),
        e.identity.as_deref(),
        Some(if e.identity_verified { "true" } else { "false" }),
        e.remote_addr.as_deref(),
        e.user_agent.as_deref(),
        e.request_id.as_deref(),
        detail.as_deref(),
        e.policy_hash.as_deref(),
    ];
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN.as_bytes());
    out.push(b'\n');
    for v in values {
        field(&mut out, v);
    }
    out
}

/// The fields of a version-1 leaf, by name, or why it is not one.
pub fn decode(leaf: &[u8]) -> Result<Vec<(&'static str, Option<String>)>, String> {
    let text = std::str::from_utf8(leaf).map_err(|_| "the leaf is not UTF-8".to_owned())?;
    let rest = text
        .strip_prefix(DOMAIN)
        .and_then(|r| r.strip_prefix('\n'))
        .ok_or_else(|| format!("the leaf does not start with {DOMAIN}"))?;
    let mut rest = rest;
    let mut out = Vec::with_capacity(FIELDS.len());
    for name in FIELDS {
        if let Some(r) = rest.strip_prefix("-\n") {
            out.push((name, None));
            rest = r;
            continue;
        }
        let (len, r) = rest
            .split_once(':')
            .ok_or_else(|| format!("field {name} is malformed"))?;
        let len: usize = len
            .parse()
            .map_err(|_| format!("field {name} has no length"))?;
        if r.len() < len + 1 || !r.is_char_boundary(len) || r.as_bytes()[len] != b'\n' {
            return Err(format!("field {name} is truncated"));
        }
        out.push((name, Some(r[..len].to_owned())));
        rest = &r[len + 1..];
    }
    if !rest.is_empty() {
        return Err("the leaf has bytes after its last field".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Action;

    fn event() -> StoredEvent {
        StoredEvent {
            id: 7,
            at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            action: Action::Create,
            repository: "team/app".into(),
            tag: Some("1.0\n-".into()),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            previous_digest: None,
            class: Some(crate::policy::TagClass::Immutable),
            rule: Some("semver".into()),
            reason: None,
            identity: Some("alice".into()),
            identity_verified: true,
            remote_addr: None,
            user_agent: Some("ü".into()),
            request_id: None,
            detail: Some(serde_json::json!({"b": 1, "a": [2]})),
            policy_hash: Some("ab12".into()),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let leaf = encode(&event());
        let fields = decode(&leaf).unwrap();
        assert_eq!(fields.len(), FIELDS.len());
        assert_eq!(fields[0], ("id", Some("7".into())));
        assert_eq!(fields[4], ("tag", Some("1.0\n-".into())));
        assert_eq!(fields[6], ("previous_digest", None));
        assert_eq!(fields[15], ("detail", Some(r#"{"a":[2],"b":1}"#.into())));
        assert_eq!(fields[16], ("policy_hash", Some("ab12".into())));
    }

    #[test]
    fn every_field_changes_the_leaf() {
        let base = encode(&event());
        let mut e = event();
        e.id = 8;
        assert_ne!(encode(&e), base);
        let mut e = event();
        e.identity_verified = false;
        assert_ne!(encode(&e), base);
        let mut e = event();
        e.previous_digest = Some(String::new());
        assert_ne!(encode(&e), base);
        let mut e = event();
        e.policy_hash = None;
        assert_ne!(encode(&e), base);
    }

    #[test]
    fn rejects_damaged_leaves() {
        let leaf = encode(&event());
        assert!(decode(&leaf[..leaf.len() - 1]).is_err());
        assert!(decode(&[&leaf[..], b"x"].concat()).is_err());
        assert!(decode(b"tagwarden-leaf-v2\n").is_err());
    }
}

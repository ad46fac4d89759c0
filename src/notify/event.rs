//! Ledger events as CloudEvents 1.0 in structured mode (`application/cloudevents+json`).

use chrono::SecondsFormat;
use serde_json::{json, Value};

use crate::ledger::StoredEvent;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// A ledger event as a CloudEvent. The client's address and user agent stay out of it.
pub trait CloudEvent {
    /// The CloudEvent `id`: stable across retries and restarts, so receivers can dedupe.
    fn cloud_id(&self) -> String;
    /// The request body, at most `max_bytes`.
    fn encode(&self, source: &str, max_bytes: usize) -> Vec<u8>;
}

impl CloudEvent for StoredEvent {
    fn cloud_id(&self) -> String {
        format!("tagwarden-event-{}", self.id)
    }

    /// An oversized `detail` is replaced by `{"truncated": true}` (the ledger keeps it
    /// whole). The other fields are short: names, tags and digests are bounded by their
    /// grammar.
    fn encode(&self, source: &str, max_bytes: usize) -> Vec<u8> {
        let body = cloud_event(self, source, self.detail.clone());
        let bytes = serde_json::to_vec(&body).expect("JSON values serialise");
        if bytes.len() <= max_bytes {
            return bytes;
        }
        let body = cloud_event(self, source, Some(json!({ "truncated": true })));
        serde_json::to_vec(&body).expect("JSON values serialise")
    }
}

fn cloud_event(e: &StoredEvent, source: &str, detail: Option<Value>) -> Value {
    let subject = match &e.tag {
        Some(tag) => format!("{}:{tag}", e.repository),
        None => e.repository.clone(),
    };
    json!({
        "specversion": "1.0",
        "id": e.cloud_id(),
        "source": source,
        "type": format!("dev.tagwarden.{}", e.action.as_str()),
        "time": e.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": {
            "event_id": e.id,
            "action": e.action.as_str(),
            "repository": e.repository,
            "tag": e.tag,
            "digest": e.digest,
            "previous_digest": e.previous_digest,
            "class": e.class,
            "rule": e.rule,
            "reason": e.reason,
            "identity": e.identity,
            "identity_verified": e.identity_verified,
            "request_id": e.request_id,
            "detail": detail,
            "policy_hash": e.policy_hash,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> StoredEvent {
        StoredEvent {
            id: 42,
            at: "2026-01-02T03:04:05.123456Z".parse().unwrap(),
            action: crate::ledger::Action::Refuse,
            repository: "team/app".into(),
            tag: Some("1.0.0".into()),
            digest: Some("sha256:bb".into()),
            previous_digest: Some("sha256:aa".into()),
            class: Some(crate::policy::TagClass::Immutable),
            rule: Some("semver-releases".into()),
            reason: Some("immutable-tag-rebind".into()),
            identity: Some("ci".into()),
            identity_verified: true,
            remote_addr: Some("10.0.0.9".into()),
            user_agent: Some("docker/20.10".into()),
            request_id: Some("r-1".into()),
            detail: Some(json!({"bound_digest": "sha256:aa", "attempted_digest": "sha256:bb"})),
            policy_hash: None,
        }
    }

    #[test]
    fn a_refusal_is_a_structured_cloud_event_with_its_detail() {
        let body: Value = serde_json::from_slice(&refusal().encode("/tw", 65536)).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "tagwarden-event-42");
        assert_eq!(body["source"], "/tw");
        assert_eq!(body["type"], "dev.tagwarden.refuse");
        assert_eq!(body["time"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(body["subject"], "team/app:1.0.0");
        let data = &body["data"];
        assert_eq!(data["digest"], "sha256:bb");
        assert_eq!(data["previous_digest"], "sha256:aa");
        assert_eq!(data["rule"], "semver-releases");
        assert_eq!(data["reason"], "immutable-tag-rebind");
        assert_eq!(data["identity"], "ci");
        assert_eq!(data["detail"]["bound_digest"], "sha256:aa");
        assert!(data.get("remote_addr").is_none() && data.get("user_agent").is_none());
    }

    #[test]
    fn an_oversized_detail_is_flagged_not_sent_and_a_tagless_subject_is_the_repository() {
        let mut e = refusal();
        e.tag = None;
        e.detail = Some(json!({ "blob": "x".repeat(10_000) }));
        let bytes = e.encode("/tw", 4096);
        assert!(bytes.len() <= 4096, "{}", bytes.len());
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["data"]["detail"], json!({ "truncated": true }));
        assert_eq!(body["subject"], "team/app");
    }
}

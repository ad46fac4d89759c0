//! Ledger events as CloudEvents 1.0 in structured mode (`application/cloudevents+json`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// One ledger event as read for delivery.
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub previous_digest: Option<String>,
    pub class: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub identity_verified: bool,
    pub request_id: Option<String>,
    pub detail: Option<Value>,
}

impl LedgerEvent {
    /// The CloudEvent `id`: stable across retries and restarts, so receivers can dedupe.
    pub fn cloud_id(&self) -> String {
        format!("tagwarden-event-{}", self.id)
    }

    /// The request body, at most `max_bytes`: an oversized `detail` is replaced by
    /// `{"truncated": true}` (the ledger keeps it whole). The other fields are short:
    /// names, tags and digests are bounded by their grammar.
    pub fn encode(&self, source: &str, max_bytes: usize) -> Vec<u8> {
        let body = self.cloud_event(source, self.detail.clone());
        let bytes = serde_json::to_vec(&body).expect("JSON values serialise");
        if bytes.len() <= max_bytes {
            return bytes;
        }
        let body = self.cloud_event(source, Some(json!({ "truncated": true })));
        serde_json::to_vec(&body).expect("JSON values serialise")
    }

    fn cloud_event(&self, source: &str, detail: Option<Value>) -> Value {
        let subject = match &self.tag {
            Some(tag) => format!("{}:{tag}", self.repository),
            None => self.repository.clone(),
        };
        json!({
            "specversion": "1.0",
            "id": self.cloud_id(),
            "source": source,
            "type": format!("dev.tagwarden.{}", self.action),
            "time": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": {
                "event_id": self.id,
                "action": self.action,
                "repository": self.repository,
                "tag": self.tag,
                "digest": self.digest,
                "previous_digest": self.previous_digest,
                "class": self.class,
                "rule": self.rule,
                "reason": self.reason,
                "identity": self.identity,
                "identity_verified": self.identity_verified,
                "request_id": self.request_id,
                "detail": detail,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> LedgerEvent {
        LedgerEvent {
            id: 42,
            at: "2026-01-02T03:04:05.123456Z".parse().unwrap(),
            action: "refuse".into(),
            repository: "team/app".into(),
            tag: Some("1.0.0".into()),
            digest: Some("sha256:bb".into()),
            previous_digest: Some("sha256:aa".into()),
            class: Some("immutable".into()),
            rule: Some("semver-releases".into()),
            reason: Some("immutable-tag-rebind".into()),
            identity: Some("ci".into()),
            identity_verified: true,
            request_id: Some("r-1".into()),
            detail: Some(json!({"bound_digest": "sha256:aa", "attempted_digest": "sha256:bb"})),
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

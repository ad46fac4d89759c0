//! Events as JSON lines and CSV, for SIEMs and spreadsheets.

use crate::ledger::StoredEvent;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 17] = [
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

/// The CSV header line, with its CRLF.
pub fn csv_header() -> String {
    let mut line = CSV_COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One event as a CSV record (RFC 4180), with its CRLF.
pub fn csv_record(e: &StoredEvent) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        e.id.to_string(),
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.action.as_str().to_owned(),
        e.repository.clone(),
        opt(&e.tag),
        opt(&e.digest),
        opt(&e.previous_digest),
        e.class.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        opt(&e.rule),
        opt(&e.reason),
        opt(&e.identity),
        e.identity_verified.to_string(),
        opt(&e.remote_addr),
        opt(&e.user_agent),
        opt(&e.request_id),
        e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        opt(&e.policy_hash),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// A CSV field, quoted when needed. Values a spreadsheet would run as a formula (user
/// agents and identities come from clients) get a leading `'`, as OWASP recommends.
fn csv_field(value: &str) -> String {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let value = if formula {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) || value.starts_with(' ') || value.ends_with(' ') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// One event as a line of JSON, with its newline.
pub fn json_line(e: &StoredEvent) -> String {
    let mut line = serde_json::to_string(e).expect("events serialise");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Action;
    use chrono::TimeZone;

    fn event() -> StoredEvent {
        StoredEvent {
            id: 7,
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap(),
            action: Action::Refuse,
            repository: "driftwood/web".into(),
            tag: Some("1.4.0".into()),
            digest: Some("sha256:aa".into()),
            previous_digest: Some("sha256:bb".into()),
            class: Some(crate::policy::TagClass::Immutable),
            rule: Some("semver-releases".into()),
            reason: Some("immutable-tag-rebind".into()),
            identity: Some("=HYPERLINK(\"x\")".into()),
            identity_verified: false,
            remote_addr: Some("127.0.0.1:5000".into()),
            user_agent: Some("skopeo/1.9, \"quoted\"".into()),
            request_id: None,
            detail: Some(serde_json::json!({"a": 1})),
            policy_hash: None,
        }
    }

    #[test]
    fn csv_quotes_escapes_and_defuses_formulas() {
        let line = csv_record(&event());
        assert_eq!(
            line,
            "7,2026-11-01T23:00:00.000000Z,refuse,driftwood/web,1.4.0,sha256:aa,sha256:bb,immutable,semver-releases,immutable-tag-rebind,\
             \"'=HYPERLINK(\"\"x\"\")\",false,127.0.0.1:5000,\"skopeo/1.9, \"\"quoted\"\"\",,\"{\"\"a\"\":1}\",\r\n"
        );
        assert_eq!(csv_header().trim_end().split(',').count(), 17);
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let line = json_line(&event());
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let back: StoredEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event());
    }
}

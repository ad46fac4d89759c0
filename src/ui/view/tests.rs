use super::*;
use crate::audit::Period;
use crate::audit::TagPeriods;

const HOSTILE: &str = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>";

fn event(id: i64, action: Action) -> StoredEvent {
    StoredEvent {
        id,
        at: DateTime::from_timestamp(1_800_000_000 + id, 0).unwrap(),
        action,
        repository: "driftwood/web".into(),
        tag: Some("1.4".into()),
        digest: Some(format!("sha256:{}", "b".repeat(64))),
        previous_digest: Some(format!("sha256:{}", "a".repeat(64))),
        class: Some(crate::policy::TagClass::Moving),
        rule: Some(HOSTILE.into()),
        reason: Some(HOSTILE.into()),
        identity: Some(HOSTILE.into()),
        identity_verified: false,
        remote_addr: Some("127.0.0.1".into()),
        user_agent: Some(HOSTILE.into()),
        request_id: None,
        detail: None,
        policy_hash: None,
    }
}

/// No markup from a value survives: no `<` of it reaches the page unescaped, and
/// no quote ends an attribute.
fn assert_escaped(page: &str) {
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;&lt;img"),
        "{page}"
    );
}

#[test]
fn a_drift_row_says_what_the_registry_serves_and_what_is_bound() {
    let row = event_row(&event(1, Action::Drift)).into_string();
    assert!(row.contains("DRIFT"), "{row}");
    assert!(row.contains("registry serves "), "{row}");
    assert!(row.contains("bound to "), "{row}");
    let row = event_row(&event(2, Action::Repair)).into_string();
    assert!(
        row.contains(">repair<") && !row.contains("registry serves"),
        "{row}"
    );
}

#[test]
fn retire_and_restore_rows_are_labelled() {
    let row = event_row(&event(1, Action::Retire)).into_string();
    assert!(
        row.contains("a-retire") && row.contains(">RETIRED<"),
        "{row}"
    );
    assert!(row.contains(r#"data-action="retire""#), "{row}");
    let row = event_row(&event(2, Action::Restore)).into_string();
    assert!(
        row.contains("a-restore") && row.contains(">restore<"),
        "{row}"
    );
}

#[test]
fn hostile_values_are_escaped_on_every_page() {
    let events = Page {
        items: vec![event(1, Action::Move), event(2, Action::Refuse)],
        next_cursor: Some(HOSTILE.into()),
    };
    let binding = TagBinding {
        repository: HOSTILE.into(),
        tag: HOSTILE.into(),
        digest: HOSTILE.into(),
        class: HOSTILE.into(),
        rule: HOSTILE.into(),
        since: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        bound_by: Some(HOSTILE.into()),
        last_changed_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        deleted_at: Some(DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
        retired_at: Some(DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
        retired_reason: Some(HOSTILE.into()),
        retired_by: Some(HOSTILE.into()),
    };
    let hostile_pulls = vec![crate::pulls::Pull {
        id: 1,
        at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        repository: HOSTILE.into(),
        reference: HOSTILE.into(),
        digest: Some(HOSTILE.into()),
        media_type: Some(HOSTILE.into()),
        method: HOSTILE.into(),
        status: 200,
        identity: Some(HOSTILE.into()),
        verified: true,
        remote_addr: Some(HOSTILE.into()),
        user_agent: Some(HOSTILE.into()),
        request_id: Some(HOSTILE.into()),
    }];
    let tag = super::tag(
        HOSTILE,
        &TagView {
            repository: HOSTILE,
            tag: HOSTILE,
            binding: Some(&binding),
            events: &events,
            newest_first: false,
            pulls: Some(&hostile_pulls),
        },
    )
    .into_string();
    assert_escaped(&tag);
    assert!(
        tag.contains(r#"class="event refused""#),
        "refusals are marked"
    );
    assert!(tag.contains("REFUSED"));

    let tags = Page {
        items: vec![binding.clone()],
        next_cursor: None,
    };
    let repo = repository(
        HOSTILE,
        &RepositoryView {
            repository: HOSTILE,
            tags: &tags,
            include_deleted: true,
        },
    )
    .into_string();
    assert_escaped(&repo);

    let usage = DigestUsage {
        digest: HOSTILE.into(),
        items: vec![TagPeriods {
            repository: HOSTILE.into(),
            tag: HOSTILE.into(),
            class: Some(HOSTILE.into()),
            periods: vec![Period {
                from: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                until: None,
                started_by: Action::Create,
                start_event: 1,
                bound_by: Some(HOSTILE.into()),
                ended_by: None,
                end_event: None,
                replaced_by: Some(HOSTILE.into()),
            }],
        }],
        next_cursor: None,
    };
    let page = digest(HOSTILE, &usage, Some(&hostile_pulls)).into_string();
    assert_escaped(&page);
    assert!(page.contains(r#"id="pulled""#));
    assert_escaped(&error(Some(HOSTILE), "Bad request", HOSTILE).into_string());
    assert_escaped(&login(Some(HOSTILE), Some(HOSTILE)).into_string());
}

#[test]
fn links_percent_encode_their_parameters() {
    assert_eq!(
        tag_url("a/b", "x&y=\"<z>\""),
        "/ui/tag?repository=a%2Fb&tag=x%26y%3D%22%3Cz%3E%22"
    );
    let link = digest_link("sha256:\"><script>").into_string();
    assert!(!link.contains("<script"), "{link}");
    assert_eq!(
        short_digest(&format!("sha256:{}", "0123456789abcdef".repeat(4))),
        "sha256:0123456789ab…"
    );
    assert_eq!(short_digest("weird"), "weird");
}

//! Tamper evidence: every history event is hash-chained, and `tagwarden verify-ledger`
//! finds an edit or a deletion made behind tagwarden's back by a database superuser.

mod support;

use std::process::Output;

use sqlx::{Connection, Executor, PgConnection};
use support::{skopeo, Image, OciLayout, Stack};

async fn verify(db_url: &str) -> (bool, String) {
    let url = db_url.to_string();
    let out: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
            .args(["verify-ledger", "--database-url", &url])
            .output()
            .expect("run verify-ledger")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Run statements as the superuser would: triggers switched off around them.
async fn as_superuser(db_url: &str, statements: &[&str]) {
    let mut conn = PgConnection::connect(db_url)
        .await
        .expect("connect as superuser");
    conn.execute("ALTER TABLE tag_events DISABLE TRIGGER ALL")
        .await
        .unwrap();
    for sql in statements {
        conn.execute(*sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for trigger in ["tag_events_no_update_or_delete", "tag_events_no_truncate"] {
        let sql = format!("ALTER TABLE tag_events ENABLE ALWAYS TRIGGER {trigger}");
        conn.execute(sql.as_str()).await.unwrap();
    }
}

async fn push_history(stack: &Stack) {
    let (a, b) = (Image::random(&[256]), Image::random(&[256]));
    for (image, tag, ok) in [
        (&a, "1.0.0", true),
        (&b, "1.0.0", false),
        (&a, "latest", true),
        (&b, "latest", true),
        (&b, "1.0.1", true),
    ] {
        let layout = OciLayout::with_image(image);
        let out = skopeo::copy(
            &layout.reference(),
            &stack.front.docker_ref(&format!("team/app:{tag}")),
        )
        .preserve_digests()
        .run()
        .await;
        assert_eq!(out.success(), ok, "{out:?}");
    }
    let layout = OciLayout::with_image(&a);
    skopeo::copy(
        &layout.reference(),
        &stack.front.docker_ref("other/app:2.0.0"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
}

#[tokio::test]
async fn verify_ledger_passes_on_an_untouched_ledger() {
    let stack = Stack::start().await;
    push_history(&stack).await;
    let db = stack.front.database().expect("tagwarden in front");
    let (ok, text) = verify(db.url()).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("ok      team/app: 5 events verified"),
        "{text}"
    );
    assert!(text.contains("all 2 repository chain(s) intact"), "{text}");
}

#[tokio::test]
async fn an_edited_event_is_found() {
    let stack = Stack::start().await;
    push_history(&stack).await;
    let db = stack.front.database().expect("tagwarden in front");
    let id = db.query_column(
        "SELECT min(id)::text FROM tag_events WHERE repository = 'team/app' AND action = 'refuse'",
    )[0]
    .clone()
    .unwrap();
    // Hide who was refused: rewrite the attempted digest of the refusal.
    as_superuser(
        db.url(),
        &[&format!(
            "UPDATE tag_events SET digest = 'sha256:{}' WHERE id = {id}",
            "0".repeat(64)
        )],
    )
    .await;
    let (ok, text) = verify(db.url()).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("BROKEN  team/app: event {id} was modified")),
        "{text}"
    );
    assert!(
        text.contains("ok      other/app"),
        "other repositories are unaffected: {text}"
    );
}

#[tokio::test]
async fn a_deleted_event_and_a_deleted_tail_are_found() {
    let stack = Stack::start().await;
    push_history(&stack).await;
    let db = stack.front.database().expect("tagwarden in front");
    let ids: Vec<String> = db
        .query_column("SELECT id::text FROM tag_events WHERE repository = 'team/app' ORDER BY id")
        .into_iter()
        .flatten()
        .collect();
    as_superuser(
        db.url(),
        &[&format!("DELETE FROM tag_events WHERE id = {}", ids[1])],
    )
    .await;
    let (ok, text) = verify(db.url()).await;
    assert!(!ok);
    assert!(
        text.contains(&format!(
            "event {} does not follow the previous event",
            ids[2]
        )),
        "{text}"
    );

    // Removing the last events entirely is caught by the recorded chain head.
    as_superuser(
        db.url(),
        &["DELETE FROM tag_events WHERE repository = 'other/app'"],
    )
    .await;
    let (ok, text) = verify(db.url()).await;
    assert!(!ok);
    assert!(
        text.contains("BROKEN  other/app: the chain is empty but its head records event"),
        "{text}"
    );
}

#[tokio::test]
async fn history_rows_cannot_be_changed_through_normal_sql() {
    let stack = Stack::start().await;
    push_history(&stack).await;
    let db = stack.front.database().expect("tagwarden in front");
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    for sql in [
        "UPDATE tag_events SET tag = 'x'",
        "DELETE FROM tag_events",
        "TRUNCATE tag_events",
    ] {
        let err = conn.execute(sql).await.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert!(verify(db.url()).await.0);
}

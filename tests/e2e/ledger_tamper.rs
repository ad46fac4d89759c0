//! Tamper evidence of databases written before the transparency log: their events are
//! hash-chained per repository, and `tagwarden verify-ledger` still finds an edit or a
//! deletion made behind tagwarden's back by a database superuser. Events written since
//! carry no chain hash; `tagwarden log verify` checks them (tests/e2e/tlog_e2e.rs).

use crate::support;

use std::process::Output;

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use support::{skopeo, Database, Image, OciLayout, Stack};
use tagwarden::ledger::chain::{self, HashedFields};
use tagwarden::ledger::{Action, Actor, Ledger, NewEvent};

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
    skopeo::push(&a, &stack.front.docker_ref("other/app:2.0.0"))
        .await
        .assert_success();
}

/// A database as an older tagwarden left it: hash-chained events of two repositories
/// (as before migration 0011), with their chain heads and the chains' end.
async fn old_database() -> Database {
    let db = Database::fresh();
    let ledger = Ledger::connect_lazy(db.url(), 2, Duration::from_secs(10)).unwrap();
    ledger.migrate().await.expect("migrate");
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let mut prev: std::collections::HashMap<&str, Vec<u8>> = Default::default();
    let base = chrono::DateTime::from_timestamp_micros(1_790_000_000_000_000).unwrap();
    let rows = [
        ("team/app", "create", "1.0.0"),
        ("team/app", "refuse", "1.0.0"),
        ("team/app", "create", "latest"),
        ("team/app", "move", "latest"),
        ("team/app", "create", "1.0.1"),
        ("other/app", "create", "2.0.0"),
    ];
    for (i, (repo, action, tag)) in rows.into_iter().enumerate() {
        let digest = format!("sha256:{}", format!("{i:x}").repeat(64));
        let fields = HashedFields {
            at: base + chrono::Duration::seconds(i as i64),
            action,
            repository: repo,
            tag: Some(tag),
            digest: Some(&digest),
            ..HashedFields::default()
        };
        let p = prev.get(repo).cloned().unwrap_or_default();
        let h = chain::hash(&p, &fields);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tag_events (at, action, repository, tag, digest, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(fields.at)
        .bind(action)
        .bind(repo)
        .bind(tag)
        .bind(&digest)
        .bind(&p)
        .bind(&h)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO chain_heads (repository, last_id, hash) VALUES ($1, $2, $3)
             ON CONFLICT (repository) DO UPDATE SET last_id = EXCLUDED.last_id, hash = EXCLUDED.hash",
        )
        .bind(repo)
        .bind(id)
        .bind(&h)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("UPDATE chain_end SET last_chained_id = $1")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        prev.insert(repo, h);
    }
    db
}

#[tokio::test]
async fn verify_ledger_passes_on_an_untouched_old_ledger_and_leaves_new_events_to_the_log() {
    let db = old_database().await;
    let (ok, text) = verify(db.url()).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("ok      team/app: 5 events verified"),
        "{text}"
    );
    assert!(text.contains("all 2 repository chain(s) intact"), "{text}");

    // An event written now carries no chain hash: it is the log's to check.
    let ledger = Ledger::connect_lazy(db.url(), 2, Duration::from_secs(10)).unwrap();
    let mut tx = ledger.begin().await.unwrap();
    tx.append(
        &NewEvent {
            tag: Some("1.0.2"),
            ..NewEvent::new(Action::Create, "team/app")
        },
        &Actor::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (ok, text) = verify(db.url()).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "ok      team/app: 5 events verified, 1 later events in the transparency log"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn an_edited_event_is_found() {
    let db = old_database().await;
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
    let db = old_database().await;
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

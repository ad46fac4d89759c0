//! The ledger against a real Postgres, a fresh database per test: migrations, the
//! append-only history, binding semantics, transactions that never commit, advisory
//! locks (blocking, independence, ordering, release when a connection dies) and failing
//! closed when the database cannot be reached.
//!
//! Postgres is required: without it every test fails (see `support::Database`).

use crate::support;

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, Row};
use tagwarden::ledger::{
    Action, Actor, Binding, Ledger, LedgerError, NewBinding, NewEvent, StatementBounds,
};
use tagwarden::policy::TagClass;
use tokio::time::timeout;

use support::Database;

const REPO: &str = "team/app";
const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DIGEST_C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// How long a lock call may run before we call it blocked. Generous enough that a
/// lock that is free is always taken well within it, even on a loaded machine.
const BLOCKED_FOR: Duration = Duration::from_millis(500);
/// How long something that should happen promptly may take.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A ledger handle (its own pool) on `db`, migrated.
async fn ledger(db: &Database) -> Ledger {
    let ledger = handle(db, 8);
    ledger.migrate().await.expect("migrate");
    ledger
}

/// A ledger handle on `db` without migrating.
fn handle(db: &Database, max_connections: u32) -> Ledger {
    Ledger::connect_lazy(db.url(), max_connections, Duration::from_secs(10)).expect("connect_lazy")
}

/// A plain superuser connection to `db`, bypassing tagwarden's code entirely.
async fn superuser(db: &Database) -> PgConnection {
    PgConnection::connect(db.url())
        .await
        .expect("connect as the superuser")
}

fn binding<'a>(tag: &'a str, digest: &'a str, bound_by: Option<&'a str>) -> NewBinding<'a> {
    NewBinding {
        repository: REPO,
        tag,
        digest,
        class: TagClass::Immutable,
        rule: "semver-releases",
        bound_by,
    }
}

/// Lock, bind and commit in one transaction, as a push would.
async fn bind_committed(ledger: &Ledger, b: &NewBinding<'_>) {
    let mut tx = ledger.begin().await.expect("begin");
    tx.lock(b.repository, &[b.tag, b.digest])
        .await
        .expect("lock");
    tx.bind(b).await.expect("bind");
    tx.commit().await.expect("commit");
}

async fn mark_deleted_committed(ledger: &Ledger, repository: &str, tag: &str) {
    let mut tx = ledger.begin().await.expect("begin");
    tx.lock(repository, &[tag]).await.expect("lock");
    tx.mark_deleted(repository, tag)
        .await
        .expect("mark_deleted");
    tx.commit().await.expect("commit");
}

async fn current(ledger: &Ledger, repository: &str, tag: &str) -> Option<Binding> {
    ledger.binding(repository, tag).await.expect("binding")
}

/// `now()` is the transaction's start time: let the clock move between transactions
/// so that a changed timestamp is visible as a change.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .expect("count")
        .get(0)
}

/// Polls `fut` for `BLOCKED_FOR` and asserts it did not finish. The future is not
/// dropped (dropping a lock call would leave its query running on the connection).
async fn assert_blocked<F: Future + Unpin>(fut: &mut F, what: &str) {
    assert!(
        timeout(BLOCKED_FOR, fut).await.is_err(),
        "{what} should have been blocked, but finished within {BLOCKED_FOR:?}"
    );
}

// ---------------------------------------------------------------------------------
// Migrations

#[tokio::test]
async fn migrations_apply_and_applying_again_is_harmless() {
    let db = Database::fresh();
    let a = handle(&db, 4);
    let b = handle(&db, 4);

    // Two processes starting at once against an empty database.
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("first concurrent migrate");
    rb.expect("second concurrent migrate");
    // And once more, as every restart does.
    a.migrate()
        .await
        .expect("migrate on an up-to-date database");
    handle(&db, 1)
        .migrate()
        .await
        .expect("migrate from a new handle");

    let mut conn = superuser(&db).await;
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("read _sqlx_migrations");
    let mut shipped: Vec<(i64, bool)> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .expect("migrations/")
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .split('_')
                    .next()?
                    .parse()
                    .ok()
            })
            .map(|version| (version, true))
            .collect();
    shipped.sort();
    assert!(shipped.len() >= 3, "{shipped:?}");
    assert_eq!(applied, shipped, "each migration is recorded once");
    for table in ["tag_bindings", "tag_events"] {
        assert_eq!(
            count(&mut conn, table).await,
            0,
            "{table} exists and is empty"
        );
    }
    a.ping().await.expect("ping");
}

#[tokio::test]
async fn connections_time_out_transactions_left_idle() {
    // A stuck request must not hold tag locks forever.
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let setting: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(ledger.pool())
        .await
        .expect("SHOW");
    assert_eq!(setting, "1min");
}

#[tokio::test]
async fn a_write_after_the_server_closed_idle_connections_succeeds() {
    // The pool does not ping before each write; `begin` must replace connections the
    // database closed while they sat idle (as a restart or a failover does).
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(ledger.pool().acquire().await.expect("acquire"));
    }
    let pids: Vec<i32> = {
        let mut pids = Vec::new();
        for c in &mut held {
            pids.push(
                sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut **c)
                    .await
                    .expect("pid"),
            );
        }
        pids
    };
    drop(held);
    // Let every connection go back to the pool (sqlx pings it on release).
    tick().await;
    let mut admin = superuser(&db).await;
    for pid in &pids {
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .expect("pg_terminate_backend");
        assert!(killed, "backend {pid}");
    }
    tick().await;
    for i in 0..4 {
        let tag = format!("1.0.{i}");
        bind_committed(&ledger, &binding(&tag, DIGEST_A, None)).await;
        assert!(current(&ledger, REPO, &tag).await.is_some(), "{tag}");
    }
}

// ---------------------------------------------------------------------------------
// History

#[tokio::test]
async fn history_is_recorded_in_order_with_its_actor() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let actor = Actor {
        identity: Some("alice".into()),
        verified: true,
        remote_addr: Some("192.0.2.7".into()),
        user_agent: Some("skopeo/1.13".into()),
        request_id: Some("req-1".into()),
    };

    let mut tx = ledger.begin().await.expect("begin");
    tx.lock(REPO, &["1.0.0"]).await.expect("lock");
    let mut create = NewEvent::new(Action::Create, REPO);
    create.tag = Some("1.0.0");
    create.digest = Some(DIGEST_A);
    create.class = Some(TagClass::Immutable);
    create.rule = Some("semver-releases");
    tx.append(&create, &actor).await.expect("append create");
    let mut refuse = NewEvent::new(Action::Refuse, REPO);
    refuse.tag = Some("1.0.0");
    refuse.digest = Some(DIGEST_B);
    refuse.previous_digest = Some(DIGEST_A);
    refuse.class = Some(TagClass::Immutable);
    refuse.rule = Some("semver-releases");
    refuse.reason = Some("immutable-tag-rebind");
    refuse.detail =
        Some(serde_json::json!({"media_type": "application/vnd.oci.image.manifest.v1+json"}));
    tx.append(&refuse, &Actor::default())
        .await
        .expect("append refuse");
    // An event of another tag is not part of this tag's history.
    let mut other = NewEvent::new(Action::Create, REPO);
    other.tag = Some("2.0.0");
    tx.append(&other, &actor).await.expect("append other");
    tx.commit().await.expect("commit");

    let history = ledger.tag_history(REPO, "1.0.0").await.expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    let (first, second) = (&history[0], &history[1]);
    assert!(first.id < second.id && first.at <= second.at);
    assert_eq!(first.action.as_str(), "create");
    assert_eq!(first.digest.as_deref(), Some(DIGEST_A));
    assert_eq!(first.class, Some(TagClass::Immutable));
    assert_eq!(first.identity.as_deref(), Some("alice"));
    assert!(first.identity_verified);
    assert_eq!(first.remote_addr.as_deref(), Some("192.0.2.7"));
    assert_eq!(first.user_agent.as_deref(), Some("skopeo/1.13"));
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_eq!(second.action.as_str(), "refuse");
    assert_eq!(second.previous_digest.as_deref(), Some(DIGEST_A));
    assert_eq!(second.reason.as_deref(), Some("immutable-tag-rebind"));
    assert_eq!(second.identity, None);
    assert!(!second.identity_verified);
    assert_eq!(
        second.detail,
        Some(serde_json::json!({"media_type": "application/vnd.oci.image.manifest.v1+json"}))
    );
}

#[tokio::test]
async fn appends_to_one_repository_do_not_wait_for_each_other() {
    // The write path only inserts its event: a transaction that appended and has not
    // committed yet holds nothing another append to the same repository needs.
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let event = |tag: &'static str| NewEvent {
        tag: Some(tag),
        digest: Some(DIGEST_A),
        class: Some(TagClass::Immutable),
        ..NewEvent::new(Action::Create, REPO)
    };
    let mut first = ledger.begin().await.expect("begin");
    let a = first
        .append(&event("3.0.0"), &Actor::default())
        .await
        .expect("append");
    let mut second = ledger.begin().await.expect("begin");
    let b = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        second.append(&event("3.0.1"), &Actor::default()),
    )
    .await
    .expect("the second append must not wait for the first transaction")
    .expect("append");
    assert!(b > a, "ids are handed out in order: {a} {b}");
    second.commit().await.expect("commit");
    first.commit().await.expect("commit");

    // verify-ledger: these events are after the chains ended, left to the log.
    let reports = ledger.verify_chains().await.expect("verify");
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!((report.checked, report.logged), (0, 2), "{report:?}");
}

#[tokio::test]
async fn every_action_and_class_is_accepted_by_the_schema() {
    // The CHECK constraints and the Rust enums must agree.
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let actions = Action::ALL;
    let classes = [TagClass::Immutable, TagClass::Moving, TagClass::Exempt];
    let mut tx = ledger.begin().await.expect("begin");
    for action in actions {
        let mut e = NewEvent::new(action, REPO);
        e.tag = Some("t");
        tx.append(&e, &Actor::default())
            .await
            .unwrap_or_else(|err| panic!("append {action:?}: {err}"));
    }
    for (i, class) in classes.into_iter().enumerate() {
        let tag = format!("t{i}");
        let b = NewBinding {
            class,
            ..binding(&tag, DIGEST_A, None)
        };
        tx.bind(&b)
            .await
            .unwrap_or_else(|err| panic!("bind {class:?}: {err}"));
    }
    tx.commit().await.expect("commit");
    let recorded: Vec<String> = ledger
        .tag_history(REPO, "t")
        .await
        .expect("history")
        .into_iter()
        .map(|e| e.action.as_str().to_string())
        .collect();
    let expected: Vec<String> = actions.iter().map(|a| a.as_str().to_string()).collect();
    assert_eq!(recorded, expected);
    for (i, class) in classes.into_iter().enumerate() {
        let b = current(&ledger, REPO, &format!("t{i}"))
            .await
            .expect("bound");
        assert_eq!(b.class, class);
    }
}

#[tokio::test]
async fn history_is_append_only_even_for_the_superuser() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut tx = ledger.begin().await.expect("begin");
    for (action, digest) in [(Action::Create, DIGEST_A), (Action::Refuse, DIGEST_B)] {
        let mut e = NewEvent::new(action, REPO);
        e.tag = Some("1.0.0");
        e.digest = Some(digest);
        tx.append(&e, &Actor::default()).await.expect("append");
    }
    tx.commit().await.expect("commit");
    let before = serde_json::to_value(ledger.tag_history(REPO, "1.0.0").await.unwrap()).unwrap();
    assert_eq!(before.as_array().map(Vec::len), Some(2));

    let mut conn = superuser(&db).await;
    let is_superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .expect("rolsuper");
    assert!(is_superuser, "this test is only meaningful as a superuser");

    assert_statements_refused(&mut conn).await;
    // Also inside an explicit transaction.
    let mut tx = conn.begin().await.expect("begin");
    assert!(sqlx::query("DELETE FROM tag_events")
        .execute(&mut *tx)
        .await
        .is_err());
    drop(tx);
    // Ordinary triggers do not fire for a session in replica mode, which any superuser
    // may switch to; the history's triggers must fire all the same.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .expect("SET session_replication_role");
    assert_statements_refused(&mut conn).await;
    sqlx::query("RESET session_replication_role")
        .execute(&mut conn)
        .await
        .expect("RESET session_replication_role");

    let after = serde_json::to_value(ledger.tag_history(REPO, "1.0.0").await.unwrap()).unwrap();
    assert_eq!(before, after, "history changed");
    assert_eq!(count(&mut conn, "tag_events").await, 2);

    // Appending is still possible afterwards.
    let mut tx = ledger.begin().await.expect("begin");
    let mut e = NewEvent::new(Action::Delete, REPO);
    e.tag = Some("1.0.0");
    tx.append(&e, &Actor::default()).await.expect("append");
    tx.commit().await.expect("commit");
    assert_eq!(count(&mut conn, "tag_events").await, 3);
}

/// Every way of rewriting or removing history fails, with the trigger's error.
async fn assert_statements_refused(conn: &mut PgConnection) {
    for sql in [
        "UPDATE tag_events SET digest = 'sha256:0000' WHERE action = 'create'",
        "UPDATE tag_events SET action = 'create'",
        "DELETE FROM tag_events WHERE action = 'refuse'",
        "DELETE FROM tag_events",
        "TRUNCATE tag_events",
        "TRUNCATE tag_events RESTART IDENTITY CASCADE",
        "TRUNCATE tag_bindings, tag_events",
    ] {
        let err = sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql:?} succeeded on the append-only history"));
        let db_err = err
            .as_database_error()
            .unwrap_or_else(|| panic!("{sql:?} failed, but not in the database: {err}"));
        assert_eq!(db_err.code().as_deref(), Some("42501"), "{sql:?}: {db_err}");
        assert!(
            db_err.message().contains("append-only"),
            "{sql:?}: {db_err}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Bindings

#[tokio::test]
async fn bind_keeps_the_first_binding_of_a_digest_and_restarts_it_on_a_move() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;

    assert_eq!(current(&ledger, REPO, "1.0.0").await, None);

    // First bind.
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("alice"))).await;
    let first = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(first.repository, REPO);
    assert_eq!(first.tag, "1.0.0");
    assert_eq!(first.digest, DIGEST_A);
    assert_eq!(first.class, TagClass::Immutable);
    assert_eq!(first.rule, "semver-releases");
    assert_eq!(first.bound_by.as_deref(), Some("alice"));
    assert_eq!(first.first_bound_at, first.last_changed_at);
    assert_eq!(first.deleted_at, None);

    // Re-binding the same digest (an identical re-push by someone else) changes nothing.
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("bob"))).await;
    let repushed = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(repushed, first, "a re-push must not rewrite the binding");

    // A move: new digest, new binder, new first_bound_at.
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_B, Some("carol"))).await;
    let moved = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(moved.digest, DIGEST_B);
    assert_eq!(moved.bound_by.as_deref(), Some("carol"));
    assert!(moved.first_bound_at > first.first_bound_at, "{moved:?}");
    assert!(moved.last_changed_at > first.last_changed_at, "{moved:?}");
    assert_eq!(moved.deleted_at, None);

    // A move by an unknown identity does not inherit the previous binder.
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_C, None)).await;
    let anonymous = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(anonymous.digest, DIGEST_C);
    assert_eq!(anonymous.bound_by, None);
}

#[tokio::test]
async fn an_adopted_binding_learns_its_binder_from_the_first_known_push() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, None)).await;
    let adopted = current(&ledger, REPO, "1.0.0").await.expect("bound");
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("alice"))).await;
    let b = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(b.bound_by.as_deref(), Some("alice"));
    assert_eq!(b.first_bound_at, adopted.first_bound_at);
    assert_eq!(b.last_changed_at, adopted.last_changed_at);
}

#[tokio::test]
async fn mark_deleted_and_recreate() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("alice"))).await;
    let bound = current(&ledger, REPO, "1.0.0").await.expect("bound");

    tick().await;
    mark_deleted_committed(&ledger, REPO, "1.0.0").await;
    let deleted = current(&ledger, REPO, "1.0.0")
        .await
        .expect("the row stays after a delete");
    let deleted_at = deleted.deleted_at.expect("deleted_at is set");
    assert!(deleted_at > bound.last_changed_at);
    assert_eq!(deleted.last_changed_at, deleted_at);
    assert_eq!(
        (&deleted.digest, &deleted.bound_by, deleted.first_bound_at),
        (&bound.digest, &bound.bound_by, bound.first_bound_at),
        "a delete keeps what the tag named"
    );

    // Deleting again does not move the deletion time.
    tick().await;
    mark_deleted_committed(&ledger, REPO, "1.0.0").await;
    assert_eq!(current(&ledger, REPO, "1.0.0").await.unwrap(), deleted);

    // Re-creating with the same digest revives the binding as it was first made.
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("bob"))).await;
    let revived = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(revived.deleted_at, None);
    assert_eq!(revived.digest, DIGEST_A);
    assert_eq!(revived.first_bound_at, bound.first_bound_at);
    assert_eq!(revived.bound_by.as_deref(), Some("alice"));
    assert!(
        revived.last_changed_at > deleted_at,
        "re-creation is a change"
    );

    // Deleted, then re-created with other bytes: a new binding.
    tick().await;
    mark_deleted_committed(&ledger, REPO, "1.0.0").await;
    tick().await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_B, Some("carol"))).await;
    let replaced = current(&ledger, REPO, "1.0.0").await.expect("bound");
    assert_eq!(replaced.deleted_at, None);
    assert_eq!(replaced.digest, DIGEST_B);
    assert_eq!(replaced.bound_by.as_deref(), Some("carol"));
    assert!(replaced.first_bound_at > revived.last_changed_at);

    // Deleting a tag that was never bound records nothing.
    mark_deleted_committed(&ledger, REPO, "never").await;
    assert_eq!(current(&ledger, REPO, "never").await, None);
}

#[tokio::test]
async fn bindings_for_digest_lists_live_bindings_of_one_repository() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    for tag in ["1.0.0", "latest", "stable", "1.0"] {
        bind_committed(&ledger, &binding(tag, DIGEST_A, None)).await;
    }
    bind_committed(&ledger, &binding("2.0.0", DIGEST_B, None)).await;
    // The same digest in another repository, and in a repository whose name extends ours.
    for repo in ["team/other", "team/app/sub"] {
        bind_committed(
            &ledger,
            &NewBinding {
                repository: repo,
                ..binding("1.0.0", DIGEST_A, None)
            },
        )
        .await;
    }
    mark_deleted_committed(&ledger, REPO, "stable").await;

    let tags_of = |digest: &'static str| {
        let ledger = ledger.clone();
        async move {
            let mut tx = ledger.begin().await.expect("begin");
            let found = tx
                .bindings_for_digest(REPO, digest)
                .await
                .expect("bindings_for_digest");
            tx.rollback().await.expect("rollback");
            for b in &found {
                assert_eq!(b.repository, REPO);
                assert_eq!(b.digest, digest);
                assert_eq!(b.deleted_at, None);
            }
            found.into_iter().map(|b| b.tag).collect::<Vec<_>>()
        }
    };
    assert_eq!(tags_of(DIGEST_A).await, ["1.0", "1.0.0", "latest"]);
    assert_eq!(tags_of(DIGEST_B).await, ["2.0.0"]);
    assert!(tags_of(DIGEST_C).await.is_empty());

    // A move takes the tag off the old digest's list and onto the new one's.
    bind_committed(&ledger, &binding("latest", DIGEST_B, None)).await;
    // Re-creating the deleted tag puts it back.
    bind_committed(&ledger, &binding("stable", DIGEST_A, None)).await;
    assert_eq!(tags_of(DIGEST_A).await, ["1.0", "1.0.0", "stable"]);
    assert_eq!(tags_of(DIGEST_B).await, ["2.0.0", "latest"]);
}

#[tokio::test]
async fn uncommitted_writes_are_visible_only_inside_their_transaction() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut tx = ledger.begin().await.expect("begin");
    tx.lock(REPO, &["1.0.0"]).await.expect("lock");
    tx.bind(&binding("1.0.0", DIGEST_A, None))
        .await
        .expect("bind");
    assert!(tx.binding(REPO, "1.0.0").await.unwrap().is_some());
    assert_eq!(
        tx.bindings_for_digest(REPO, DIGEST_A).await.unwrap().len(),
        1
    );
    assert_eq!(current(&ledger, REPO, "1.0.0").await, None);
    tx.commit().await.expect("commit");
    assert!(current(&ledger, REPO, "1.0.0").await.is_some());
}

// ---------------------------------------------------------------------------------
// Transactions that never commit

/// What a push does before the upstream answers: claim the tag and record it.
async fn claim(ledger: &Ledger) -> tagwarden::ledger::LedgerTx {
    let mut tx = ledger.begin().await.expect("begin");
    tx.lock(REPO, &["1.0.0", DIGEST_A]).await.expect("lock");
    assert_eq!(tx.binding(REPO, "1.0.0").await.unwrap(), None);
    tx.bind(&binding("1.0.0", DIGEST_A, Some("alice")))
        .await
        .expect("bind");
    let mut e = NewEvent::new(Action::Create, REPO);
    e.tag = Some("1.0.0");
    e.digest = Some(DIGEST_A);
    tx.append(&e, &Actor::default()).await.expect("append");
    tx
}

async fn assert_nothing_recorded(db: &Database, ledger: &Ledger) {
    assert_eq!(current(ledger, REPO, "1.0.0").await, None);
    assert!(ledger.tag_history(REPO, "1.0.0").await.unwrap().is_empty());
    let mut conn = superuser(db).await;
    assert_eq!(count(&mut conn, "tag_bindings").await, 0);
    assert_eq!(count(&mut conn, "tag_events").await, 0);
}

/// The tag can be claimed again, promptly (its lock was released).
async fn assert_claimable(ledger: &Ledger) {
    let tx = timeout(PROMPTLY, claim(ledger))
        .await
        .expect("the lock of an abandoned transaction was not released");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_rolled_back_claim_leaves_nothing() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    claim(&ledger).await.rollback().await.expect("rollback");
    assert_nothing_recorded(&db, &ledger).await;
    assert_claimable(&ledger).await;
}

#[tokio::test]
async fn a_claim_dropped_without_commit_leaves_nothing() {
    // As when a request is cancelled (client gone, task aborted) mid-push.
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    drop(claim(&ledger).await);
    assert_claimable(&ledger).await;
    assert_nothing_recorded(&db, &ledger).await;
}

#[tokio::test]
async fn a_claim_dropped_with_its_pool_leaves_nothing() {
    // As when the whole process stops between claiming and the upstream's answer.
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let crashing = handle(&db, 1);
    let tx = claim(&crashing).await;
    drop(tx);
    crashing.pool().close().await;
    drop(crashing);
    assert_claimable(&ledger).await;
    assert_nothing_recorded(&db, &ledger).await;
}

// ---------------------------------------------------------------------------------
// Locks

#[tokio::test]
async fn locks_on_the_same_tag_serialise_across_processes() {
    let db = Database::fresh();
    // Two handles with their own pools, as two tagwarden replicas would have.
    let first = ledger(&db).await;
    let second = handle(&db, 4);

    let mut t1 = first.begin().await.expect("begin");
    t1.lock(REPO, &["1.0.0", DIGEST_A]).await.expect("lock");
    t1.bind(&binding("1.0.0", DIGEST_A, Some("alice")))
        .await
        .expect("bind");

    let mut t2 = second.begin().await.expect("begin");
    {
        let waiting = t2.lock(REPO, &["1.0.0", DIGEST_B]);
        tokio::pin!(waiting);
        assert_blocked(
            &mut waiting,
            "a lock on a tag locked by another transaction",
        )
        .await;

        // Other tags, the same tag in other repositories, and other digests are free.
        let mut t3 = second.begin().await.expect("begin");
        for (repo, items) in [
            (REPO, &["1.0.1"][..]),
            (REPO, &[DIGEST_B][..]),
            ("team/other", &["1.0.0"][..]),
            ("team", &["app/1.0.0"][..]),
            ("team/app/1.0.0", &[""][..]),
        ] {
            timeout(PROMPTLY, t3.lock(repo, items))
                .await
                .unwrap_or_else(|_| panic!("lock of {repo} {items:?} blocked"))
                .expect("lock");
        }
        t3.commit().await.expect("commit");

        // Still blocked; then the holder commits and the waiter proceeds.
        assert_blocked(&mut waiting, "the waiting lock").await;
        t1.commit().await.expect("commit");
        timeout(PROMPTLY, waiting)
            .await
            .expect("the waiting lock was not granted after the holder committed")
            .expect("lock");
    }
    // The waiter sees what the holder committed: the check after the lock is reliable.
    let seen = t2.binding(REPO, "1.0.0").await.unwrap().expect("bound");
    assert_eq!(seen.digest, DIGEST_A);
    t2.rollback().await.expect("rollback");
}

/// `begin_locked` holds exactly the locks `begin` + `lock` would, plus shared locks on
/// references (a reference lock is what a blob delete takes exclusively), and a write
/// inside it sees what the previous holder committed.
#[tokio::test]
async fn a_transaction_begun_with_its_locks_holds_them_until_it_ends() {
    let db = Database::fresh();
    let first = ledger(&db).await;
    let second = handle(&db, 4);

    let mut t1 = first
        .begin_locked(REPO, &["1.0.0", DIGEST_A], &[DIGEST_C])
        .await
        .expect("begin_locked");
    t1.bind(&binding("1.0.0", DIGEST_A, Some("alice")))
        .await
        .expect("bind");

    let mut other = second.begin().await.expect("begin");
    {
        let waiting = other.lock(REPO, &["1.0.0"]);
        tokio::pin!(waiting);
        assert_blocked(&mut waiting, "a lock on a tag begun locked elsewhere").await;
        // Another write referencing the same blob shares the lock.
        let sharer = timeout(PROMPTLY, second.begin_locked(REPO, &["1.0.1"], &[DIGEST_C]))
            .await
            .expect("a shared reference lock blocked")
            .expect("begin_locked");
        sharer.rollback().await.expect("rollback");
        let mut delete = second.begin().await.expect("begin");
        {
            let blob = delete.lock_reference(REPO, DIGEST_C);
            tokio::pin!(blob);
            assert_blocked(&mut blob, "a delete of a referenced blob").await;
            t1.commit().await.expect("commit");
            timeout(PROMPTLY, blob)
                .await
                .expect("the blob delete was not let through after the commit")
                .expect("lock_reference");
        }
        delete.rollback().await.expect("rollback");
        timeout(PROMPTLY, waiting)
            .await
            .expect("the tag lock was not granted after the commit")
            .expect("lock");
    }
    let seen = other.binding(REPO, "1.0.0").await.unwrap().expect("bound");
    assert_eq!(seen.digest, DIGEST_A);
    other.rollback().await.expect("rollback");
}

/// A `begin_locked` that fails (here a lock timeout) leaves its pooled connection
/// outside any transaction: the next write on it works. A failure after a `BEGIN` in the
/// same statement would leave the connection in an aborted transaction, failing every
/// later statement on it.
#[tokio::test]
async fn a_transaction_that_could_not_take_its_locks_leaves_its_connection_usable() {
    let db = Database::fresh();
    let holder = ledger(&db).await;
    let bounded = Ledger::connect_lazy_bounded(
        db.url(),
        1,
        Duration::from_secs(10),
        Some(tagwarden::ledger::StatementBounds {
            lock_timeout: Duration::from_millis(200),
            statement_timeout: Duration::from_secs(10),
        }),
    )
    .expect("connect");
    let mut held = holder.begin().await.expect("begin");
    held.lock(REPO, &["1.0.0"]).await.expect("lock");
    match bounded.begin_locked(REPO, &["1.0.0"], &[]).await {
        Err(e) => assert!(e.is_unavailable(), "a lock timeout is not an outage: {e:?}"),
        Ok(_) => panic!("begin_locked took a lock another transaction holds"),
    }
    held.rollback().await.expect("rollback");
    // The pool's only connection is the one that failed.
    bind_committed(&bounded, &binding("1.0.1", DIGEST_B, None)).await;
    assert_eq!(
        current(&bounded, REPO, "1.0.1").await.unwrap().digest,
        DIGEST_B
    );
}

/// A server that only reads (a standby, a demoted primary) fails `begin_locked` before
/// it takes any lock, as an outage.
#[tokio::test]
async fn a_read_only_server_refuses_a_transaction_begun_with_its_locks() {
    let db = Database::fresh();
    ledger(&db).await;
    let url = format!(
        "{}?options=-c%20default_transaction_read_only%3Don",
        db.url()
    );
    let read_only = Ledger::connect_lazy(&url, 1, Duration::from_secs(10)).expect("connect");
    match read_only.begin_locked(REPO, &["1.0.0"], &[DIGEST_C]).await {
        Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        Ok(_) => panic!("a read-only server opened a write transaction"),
    }
}

#[tokio::test]
async fn a_rollback_releases_locks() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut t1 = ledger.begin().await.expect("begin");
    t1.lock(REPO, &["latest"]).await.expect("lock");
    let mut t2 = ledger.begin().await.expect("begin");
    {
        let waiting = t2.lock(REPO, &["latest", "1.0.0"]);
        tokio::pin!(waiting);
        assert_blocked(&mut waiting, "a lock on a locked tag").await;
        t1.rollback().await.expect("rollback");
        timeout(PROMPTLY, waiting)
            .await
            .expect("the lock was not released by the rollback")
            .expect("lock");
    }
    t2.commit().await.expect("commit");
}

#[tokio::test]
async fn a_transaction_may_lock_the_same_item_twice() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut tx = ledger.begin().await.expect("begin");
    timeout(PROMPTLY, async {
        tx.lock(REPO, &["1.0.0", "1.0.0", DIGEST_A]).await.unwrap();
        // Re-entrant within the transaction, as a second call in the same request is.
        tx.lock(REPO, &[DIGEST_A, "1.0.0"]).await.unwrap();
    })
    .await
    .expect("a transaction blocked on its own lock");
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_the_same_items_in_different_orders_does_not_deadlock() {
    let db = Database::fresh();
    let ledger = Ledger::connect_lazy(db.url(), 12, Duration::from_secs(20)).expect("pool");
    ledger.migrate().await.expect("migrate");
    let items = ["1.0.0", "latest", "stable", DIGEST_A, DIGEST_B];

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..10usize {
        let ledger = ledger.clone();
        tasks.spawn(async move {
            for round in 0..15usize {
                let mut order = items.to_vec();
                order.rotate_left((worker + round) % items.len());
                if (worker + round) % 2 == 1 {
                    order.reverse();
                }
                let mut tx = ledger.begin().await?;
                tx.lock(REPO, &order).await?;
                // Hold the locks a moment so that the others queue up behind them.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let mut e = NewEvent::new(Action::Move, REPO);
                e.tag = Some("latest");
                tx.append(&e, &Actor::default()).await?;
                tx.commit().await?;
            }
            Ok::<_, LedgerError>(())
        });
    }
    let all = timeout(Duration::from_secs(60), async {
        let mut results = Vec::new();
        while let Some(r) = tasks.join_next().await {
            results.push(r.expect("worker panicked"));
        }
        results
    })
    .await
    .expect("workers did not finish: deadlocked or starved");
    for r in all {
        // Postgres reports a deadlock as error 40P01 to one of the parties.
        r.expect("a worker failed (deadlock detected?)");
    }
    assert_eq!(
        ledger.tag_history(REPO, "latest").await.unwrap().len(),
        10 * 15
    );
}

#[tokio::test]
async fn a_lock_held_by_a_dead_connection_is_released() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    // The holder has a pool of its own with a single connection.
    let holder = handle(&db, 1);
    let mut t1 = holder.begin().await.expect("begin");
    t1.lock(REPO, &["1.0.0"]).await.expect("lock");
    t1.bind(&binding("1.0.0", DIGEST_A, Some("alice")))
        .await
        .expect("bind");

    let mut admin = superuser(&db).await;
    let holders: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .expect("pg_locks");
    assert_eq!(
        holders.len(),
        1,
        "exactly one advisory lock is held: {holders:?}"
    );

    let mut t2 = ledger.begin().await.expect("begin");
    {
        let waiting = t2.lock(REPO, &["1.0.0"]);
        tokio::pin!(waiting);
        assert_blocked(&mut waiting, "a lock held by a live connection").await;

        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(holders[0])
            .fetch_one(&mut admin)
            .await
            .expect("pg_terminate_backend");
        assert!(terminated);
        let started = Instant::now();
        timeout(PROMPTLY, waiting)
            .await
            .expect("the lock of a dead connection was not released")
            .expect("lock");
        assert!(started.elapsed() < PROMPTLY);
    }
    // Nothing the dead transaction wrote survives.
    assert_eq!(t2.binding(REPO, "1.0.0").await.unwrap(), None);
    t2.rollback().await.expect("rollback");

    // The holder learns that its transaction is gone, as an outage, and recovers.
    match t1.commit().await {
        Err(LedgerError::Unavailable(_)) => {}
        other => panic!("commit on a terminated connection: {other:?}"),
    }
    timeout(PROMPTLY, holder.ping())
        .await
        .expect("ping hung")
        .expect("the holder's pool did not reconnect");
}

// ---------------------------------------------------------------------------------
// Failing closed

/// Each way of reaching the ledger fails as `Unavailable`, within the acquire timeout.
async fn assert_unavailable_promptly(url: &str, label: &str) {
    let acquire_timeout = Duration::from_millis(700);
    let ledger = Ledger::connect_lazy(url, 2, acquire_timeout)
        .expect("connect_lazy does not connect, so it succeeds");
    let limit = acquire_timeout + Duration::from_secs(2);

    let started = Instant::now();
    let begun = timeout(limit, ledger.begin())
        .await
        .unwrap_or_else(|_| panic!("{label}: begin() hung"));
    assert!(
        matches!(begun, Err(LedgerError::Unavailable(_))),
        "{label}: begin() gave {:?}",
        begun.err()
    );
    assert!(started.elapsed() < limit, "{label}: begin() was slow");

    let started = Instant::now();
    let pinged = timeout(limit, ledger.ping())
        .await
        .unwrap_or_else(|_| panic!("{label}: ping() hung"));
    assert!(
        matches!(pinged, Err(LedgerError::Unavailable(_))),
        "{label}: ping() gave {pinged:?}"
    );
    assert!(started.elapsed() < limit, "{label}: ping() was slow");

    let migrated = timeout(limit, ledger.migrate())
        .await
        .unwrap_or_else(|_| panic!("{label}: migrate() hung"));
    assert!(
        matches!(migrated, Err(LedgerError::Unavailable(_))),
        "{label}: migrate() gave {migrated:?}"
    );
    let read = timeout(limit, ledger.binding(REPO, "1.0.0"))
        .await
        .unwrap_or_else(|_| panic!("{label}: binding() hung"));
    assert!(
        matches!(read, Err(LedgerError::Unavailable(_))),
        "{label}: binding() gave {read:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_closed_without_hanging() {
    // A closed port: connections are refused.
    let port = support::free_port();
    assert_unavailable_promptly(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "closed port",
    )
    .await;
}

#[tokio::test]
async fn a_database_that_never_answers_fails_closed_without_hanging() {
    // Accepts connections and then says nothing, like a hung server or a black hole.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    assert_unavailable_promptly(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "silent server",
    )
    .await;
    silent.abort();
}

#[tokio::test]
async fn a_database_that_hangs_up_fails_closed() {
    // Accepts connections and closes them at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    let rude = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    assert_unavailable_promptly(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "server hanging up",
    )
    .await;
    rude.abort();
}

#[test]
fn a_malformed_url_is_a_configuration_error() {
    match Ledger::connect_lazy("postgres://127.0.0.1:99999/db", 1, Duration::from_secs(1)) {
        Err(LedgerError::Query(msg)) => assert!(msg.contains("database.url"), "{msg}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a URL with an impossible port was accepted"),
    }
}

// ---------------------------------------------------------------------------------------
// Opening a write (Ledger::begin_write, one simple query)

/// Whether a connection of the pool runs its statements outside any transaction and
/// holds no advisory lock. In a simple query outside a transaction, `now()` (the
/// transaction's start) is the statement's start; in one opened earlier it is before.
async fn outside_a_transaction(ledger: &Ledger) -> bool {
    let mut conn = ledger.pool().acquire().await.expect("acquire");
    let row = sqlx::raw_sql(
        "SELECT now() = statement_timestamp() AND NOT EXISTS (
             SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("query");
    row.get::<bool, _>(0)
}

#[tokio::test]
async fn a_write_transaction_dropped_before_it_ends_releases_its_locks_and_its_connection() {
    let db = Database::fresh();
    let other = ledger(&db).await;
    let one = handle(&db, 1);

    let tx = one
        .begin_locked(REPO, &["1.0.0"], &[])
        .await
        .expect("begin");
    drop(tx);
    let mut t2 = other.begin().await.expect("begin");
    timeout(PROMPTLY, t2.lock(REPO, &["1.0.0"]))
        .await
        .expect("the dropped transaction still holds its lock")
        .expect("lock");
    t2.commit().await.expect("commit");
    // The pool's one connection slot serves again, and never inside the dropped
    // transaction.
    assert!(timeout(PROMPTLY, outside_a_transaction(&one))
        .await
        .expect("acquire"));

    // One that ended goes back to the pool as it is.
    one.begin_locked(REPO, &["1.0.0"], &[])
        .await
        .expect("begin")
        .rollback()
        .await
        .expect("rollback");
    assert!(outside_a_transaction(&one).await);
}

#[tokio::test]
async fn a_write_opens_with_its_announcement_committed_and_its_reads_under_its_locks() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    bind_committed(&ledger, &binding("1.0.0", DIGEST_A, Some("alice"))).await;
    let mut db_conn = superuser(&db).await;

    let opened = ledger
        .begin_write(
            REPO,
            &["1.0.0", "1.0.1", DIGEST_B],
            &[],
            &["1.0.1"],
            &["1.0.0", "1.0.1"],
        )
        .await
        .unwrap_or_else(|u| panic!("{:?}", u.error));
    let own: Vec<i64> = opened.announced.iter().map(|a| a.id).collect();
    assert_eq!(
        opened
            .announced
            .iter()
            .map(|a| a.tag.as_str())
            .collect::<Vec<_>>(),
        ["1.0.1"]
    );
    // Committed while the write's transaction is still open.
    let visible: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM pending_writes WHERE repository <> ''")
            .fetch_all(&mut db_conn)
            .await
            .unwrap();
    assert_eq!(visible, own);
    // One read per tag asked, in that order, taken after the announcement committed.
    let [bound, new] = &opened.read[..] else {
        panic!("{:?}", opened.read)
    };
    assert_eq!(
        bound.binding.as_ref().map(|b| b.digest.as_str()),
        Some(DIGEST_A)
    );
    assert_eq!(
        bound.binding.as_ref().and_then(|b| b.bound_by.as_deref()),
        Some("alice")
    );
    assert!(new.binding.is_none());
    assert!(new.no_unrecorded_write(&own));
    assert!(
        !new.no_unrecorded_write(&[]),
        "the read saw the write's own announcement"
    );

    // The locks are held: another write of the tag waits for them.
    let second = handle(&db, 2);
    {
        let waiting = second.begin_write(REPO, &["1.0.1"], &[], &[], &["1.0.1"]);
        tokio::pin!(waiting);
        assert_blocked(&mut waiting, "a write of a tag another write holds").await;
        opened.tx.commit().await.expect("commit");
        let after = timeout(PROMPTLY, waiting)
            .await
            .expect("the lock was released")
            .unwrap_or_else(|u| panic!("{:?}", u.error));
        // What it reads is what was committed before it held the lock.
        assert!(!after.read[0].no_unrecorded_write(&[]));
        after.tx.rollback().await.expect("rollback");
    }
    ledger.forget(&opened.announced).await.expect("forget");
}

#[tokio::test]
async fn a_write_that_cannot_take_its_locks_returns_the_announcements_it_committed() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let bounded = Ledger::connect_lazy_bounded(
        db.url(),
        2,
        Duration::from_secs(10),
        Some(StatementBounds {
            lock_timeout: Duration::from_millis(200),
            statement_timeout: Duration::from_secs(10),
        }),
    )
    .expect("connect_lazy");
    let holder = ledger
        .begin_locked(REPO, &["1.0.2"], &[])
        .await
        .expect("begin");

    let unopened = match bounded
        .begin_write(REPO, &["1.0.2"], &[], &["1.0.2"], &["1.0.2"])
        .await
    {
        Ok(_) => panic!("the lock held elsewhere was taken"),
        Err(u) => u,
    };
    let ids: Vec<i64> = unopened.announced.iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), 1, "{:?}", unopened.announced);
    let mut db_conn = superuser(&db).await;
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM pending_writes WHERE repository <> ''")
        .fetch_all(&mut db_conn)
        .await
        .unwrap();
    assert_eq!(
        left, ids,
        "the announcement committed before the lock was refused"
    );
    bounded.forget(&unopened.announced).await.expect("forget");
    holder.rollback().await.expect("rollback");
    assert!(outside_a_transaction(&bounded).await);
}

#[tokio::test]
async fn a_write_naming_what_is_not_an_oci_name_sends_nothing() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    for (repo, tag) in [
        (REPO, "1.0'); DROP TABLE tag_events; --"),
        ("team/app' --", "1.0.0"),
    ] {
        match ledger.begin_write(repo, &[tag], &[], &[tag], &[tag]).await {
            Ok(_) => panic!("{repo}:{tag} was written into a statement"),
            Err(u) => assert!(
                matches!(u.error, LedgerError::Query(_)) && u.announced.is_empty(),
                "{:?}",
                u.error
            ),
        }
    }
    let mut db_conn = superuser(&db).await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pending_writes WHERE repository <> ''")
            .fetch_one(&mut db_conn)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

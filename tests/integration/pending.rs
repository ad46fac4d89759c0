//! The pending writes' table against a real Postgres (migration 0019): unlogged, with
//! a logged id sequence and the marker that says nothing was lost; what a write reads
//! once the marker is gone; and putting it back only if nothing was lost meanwhile.
//! (`writepath_e2e` empties the table the real way, by crashing a Postgres.)

use crate::support;

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tagwarden::ledger::Ledger;

use support::Database;

const REPO: &str = "team/app";

async fn ledger(db: &Database) -> Ledger {
    let ledger = Ledger::connect_lazy(db.url(), 4, Duration::from_secs(10)).expect("connect");
    ledger.migrate().await.expect("migrate");
    ledger
}

async fn superuser(db: &Database) -> PgConnection {
    PgConnection::connect(db.url()).await.expect("connect")
}

/// What a write of `tag` that announced it reads, and whether that proves the probe
/// unnecessary; the write's transaction is rolled back.
async fn proven(ledger: &Ledger, tag: &str) -> (bool, bool) {
    let opened = ledger
        .begin_write(REPO, &[tag], &[], &[tag], &[tag])
        .await
        .unwrap_or_else(|u| panic!("{:?}", u.error));
    let own: Vec<i64> = opened.announced.iter().map(|a| a.id).collect();
    let read = &opened.read[0];
    let answer = (read.tracked(), read.no_unrecorded_write(&own));
    opened.tx.rollback().await.expect("rollback");
    ledger.forget(&opened.announced).await.expect("forget");
    answer
}

#[tokio::test]
async fn the_table_is_unlogged_its_ids_are_not_and_a_fresh_ledger_is_tracked() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut conn = superuser(&db).await;
    let persistence: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, relpersistence::text FROM pg_class
         WHERE relname IN ('pending_writes', 'pending_writes_id_seq') ORDER BY relname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        persistence,
        [
            ("pending_writes".to_owned(), "u".to_owned()),
            ("pending_writes_id_seq".to_owned(), "p".to_owned())
        ]
    );
    assert!(ledger.pending_writes_tracked().await.unwrap());
    assert_eq!(proven(&ledger, "1.0.0").await, (true, true));
    assert_eq!(ledger.begin_pending_recovery().await.unwrap(), None);
}

#[tokio::test]
async fn once_the_marker_is_lost_nothing_is_proven_until_a_recovery_puts_it_back() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let mut conn = superuser(&db).await;
    // What crash recovery leaves: an empty table.
    sqlx::query("TRUNCATE pending_writes")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(!ledger.pending_writes_tracked().await.unwrap());
    assert_eq!(proven(&ledger, "1.0.0").await, (false, false));

    // Emptied again while a recovery runs: its token goes too, and it cannot finish.
    let token = ledger
        .begin_pending_recovery()
        .await
        .unwrap()
        .expect("a token");
    sqlx::query("TRUNCATE pending_writes")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(!ledger.end_pending_recovery(token).await.unwrap());
    assert!(!ledger.pending_writes_tracked().await.unwrap());

    // Undisturbed, it puts the marker back, once.
    let token = ledger
        .begin_pending_recovery()
        .await
        .unwrap()
        .expect("a token");
    let other = ledger
        .begin_pending_recovery()
        .await
        .unwrap()
        .expect("a token");
    assert!(ledger.end_pending_recovery(token).await.unwrap());
    assert!(ledger.end_pending_recovery(other).await.unwrap());
    assert!(!ledger.end_pending_recovery(token).await.unwrap(), "spent");
    let markers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pending_writes WHERE repository = '' AND tag = ''",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(markers, 1);
    assert_eq!(proven(&ledger, "1.0.0").await, (true, true));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_writes WHERE tag <> ''")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "no token or announcement left behind");
}

#[tokio::test]
async fn an_announcement_is_withdrawn_only_by_its_id_and_time_together() {
    let db = Database::fresh();
    let ledger = ledger(&db).await;
    let opened = ledger
        .begin_write(REPO, &["1.0.0"], &[], &["1.0.0"], &[])
        .await
        .unwrap_or_else(|u| panic!("{:?}", u.error));
    opened.tx.rollback().await.expect("rollback");
    let [mine] = &opened.announced[..] else {
        panic!("{:?}", opened.announced)
    };
    let ids = || async {
        let mut conn = superuser(&db).await;
        sqlx::query_scalar::<_, i64>("SELECT id FROM pending_writes WHERE repository <> ''")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    // The same id handed out again after a crash, to a write made at another time.
    let reissued = tagwarden::ledger::Announcement {
        at: mine.at - chrono::Duration::microseconds(1),
        ..mine.clone()
    };
    ledger.forget(&[reissued]).await.expect("forget");
    assert_eq!(ids().await, [mine.id]);
    ledger.forget(&opened.announced).await.expect("forget");
    assert!(ids().await.is_empty());
}

/// A server that only reads refuses a write's announcement, before the write takes any
/// lock (such a write sends no separate read-only check: the insert is it).
#[tokio::test]
async fn a_read_only_server_refuses_the_announcement_before_any_lock() {
    let db = Database::fresh();
    let writable = ledger(&db).await;
    let url = format!(
        "{}?options=-c%20default_transaction_read_only%3Don",
        db.url()
    );
    let read_only = Ledger::connect_lazy(&url, 1, Duration::from_secs(10)).expect("connect");
    match read_only
        .begin_write(REPO, &["1.0.0"], &[], &["1.0.0"], &["1.0.0"])
        .await
    {
        Err(u) => {
            assert!(u.error.is_unavailable(), "{:?}", u.error);
            assert!(u.announced.is_empty(), "{:?}", u.announced);
        }
        Ok(_) => panic!("a read-only server opened a write transaction"),
    }
    // Nothing of it is held: a write of the same tag opens at once.
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        writable.begin_write(REPO, &["1.0.0"], &[], &["1.0.0"], &["1.0.0"]),
    )
    .await
    .expect("the tag's lock was held")
    .unwrap_or_else(|u| panic!("{:?}", u.error));
    opened.tx.rollback().await.expect("rollback");
}

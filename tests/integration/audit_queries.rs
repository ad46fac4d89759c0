//! The audit queries against Postgres: what they answer on a history with known times,
//! and that they answer from indexes once the ledger is big enough for the planner to
//! prefer them over reading the table.

use crate::plans::{nodes, statement};
use crate::support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt as _;
use serde_json::Value;
use support::Database;
use tagwarden::audit::{Audit, PageRequest};
use tagwarden::ledger::{Action, EventFilter, Ledger, LedgerReader, Order};

async fn migrated(db: &Database) -> Ledger {
    let ledger = Ledger::connect_lazy(db.url(), 2, Duration::from_secs(10)).unwrap();
    ledger.migrate().await.unwrap();
    ledger
}

fn t(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, hour, minute, 0).unwrap()
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// Append one event with a chosen time.
#[allow(clippy::too_many_arguments)]
async fn event(
    ledger: &Ledger,
    at: DateTime<Utc>,
    action: &str,
    tag: &str,
    digest: &str,
    previous: Option<&str>,
    identity: &str,
    reason: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO tag_events (at, action, repository, tag, digest, previous_digest, class, rule, identity, reason)
         VALUES ($1, $2, 'driftwood/web', $3, $4, $5, 'moving', 'default', $6, $7)",
    )
    .bind(at)
    .bind(action)
    .bind(tag)
    .bind(digest)
    .bind(previous)
    .bind(identity)
    .bind(reason)
    .execute(ledger.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn resolve_history_digest_periods_and_the_feed_follow_the_recorded_times() {
    let db = Database::fresh();
    let ledger = migrated(&db).await;
    let (a, b, c) = (digest(0xa1), digest(0xb2), digest(0xc3));
    // driftwood/web:1.4 — created on a, re-pushed, a refused write (it is not a move),
    // moved to b, moved back to a, deleted, created again on c.
    event(&ledger, t(10, 0), "create", "1.4", &a, None, "alice", None).await;
    event(&ledger, t(11, 0), "repush", "1.4", &a, None, "ci", None).await;
    event(
        &ledger,
        t(12, 0),
        "refuse",
        "1.4",
        &b,
        Some(&a),
        "mallory",
        Some("x"),
    )
    .await;
    event(&ledger, t(13, 0), "move", "1.4", &b, Some(&a), "bob", None).await;
    event(&ledger, t(14, 0), "move", "1.4", &a, Some(&b), "bob", None).await;
    event(
        &ledger,
        t(15, 0),
        "delete",
        "1.4",
        &a,
        Some(&a),
        "carol",
        None,
    )
    .await;
    event(&ledger, t(16, 0), "create", "1.4", &c, None, "alice", None).await;
    // Another tag on a, still bound.
    event(
        &ledger,
        t(10, 30),
        "create",
        "1.4.0",
        &a,
        None,
        "alice",
        None,
    )
    .await;

    let audit = Audit::new(ledger.reader().clone());
    let resolve = |at| {
        let audit = audit.clone();
        async move {
            audit
                .resolve("driftwood/web", "1.4", at)
                .await
                .unwrap()
                .digest
        }
    };
    assert_eq!(resolve(t(9, 59)).await, None, "before the create");
    assert_eq!(
        resolve(t(10, 0)).await,
        Some(a.clone()),
        "at the create itself"
    );
    assert_eq!(
        resolve(t(12, 30)).await,
        Some(a.clone()),
        "a refusal changes nothing"
    );
    assert_eq!(
        resolve(t(13, 30)).await,
        Some(b.clone()),
        "between two moves"
    );
    assert_eq!(resolve(t(14, 30)).await, Some(a.clone()));
    let gone = audit
        .resolve("driftwood/web", "1.4", t(15, 30))
        .await
        .unwrap();
    assert!(!gone.exists && gone.digest.is_none(), "after the delete");
    assert_eq!(gone.event.unwrap().action, Action::Delete);
    assert_eq!(resolve(t(16, 30)).await, Some(c.clone()));
    assert_eq!(
        audit
            .resolve("driftwood/web", "never", t(16, 30))
            .await
            .unwrap()
            .event,
        None
    );

    // History: every event, both orders, paged with cursors.
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = audit
            .history("driftwood/web", "1.4", Order::Asc, &page)
            .await
            .unwrap();
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|e| e.action));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    use Action::*;
    assert_eq!(seen, [Create, Repush, Refuse, Move, Move, Delete, Create]);
    let newest = audit
        .history("driftwood/web", "1.4", Order::Desc, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        newest.items.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Create, Delete]
    );

    // Every tag that ever named a: 1.4 twice (until the move, then until the delete),
    // 1.4.0 still.
    let usage = audit.digest(&a, &PageRequest::default()).await.unwrap();
    let spans: Vec<_> = usage
        .items
        .iter()
        .flat_map(|tp| {
            tp.periods
                .iter()
                .map(move |p| (tp.tag.clone(), p.from, p.until, p.ended_by))
        })
        .collect();
    assert_eq!(
        spans,
        [
            ("1.4".to_string(), t(10, 0), Some(t(13, 0)), Some(Move)),
            ("1.4".to_string(), t(14, 0), Some(t(15, 0)), Some(Delete)),
            ("1.4.0".to_string(), t(10, 30), None, None),
        ]
    );
    assert_eq!(
        usage.items[0].periods[0].replaced_by.as_deref(),
        Some(b.as_str())
    );
    // One tag per page: the cursor walks the tags.
    let first = audit.digest(&a, &PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let second = audit
        .digest(
            &a,
            &PageRequest {
                limit: Some(1),
                cursor: first.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items[0].tag, "1.4.0");
    assert_eq!(second.next_cursor, None);

    // The feed: refusals only, a time range, an identity.
    let filter = EventFilter {
        actions: vec![Refuse],
        ..EventFilter::default()
    };
    let refusals = audit
        .events(&filter, Order::Asc, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(refusals.items.len(), 1);
    assert_eq!(refusals.items[0].identity.as_deref(), Some("mallory"));
    let filter = EventFilter {
        since: Some(t(13, 0)),
        until: Some(t(15, 0)),
        identity: Some("bob".into()),
        ..EventFilter::default()
    };
    let moves = audit
        .events(&filter, Order::Desc, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        moves.items.iter().map(|e| e.at).collect::<Vec<_>>(),
        [t(14, 0), t(13, 0)]
    );

    // The export pages through everything, after a given event, up to a limit.
    let batches: Vec<_> = audit
        .export(EventFilter::default(), None, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<i64> = batches.iter().flatten().map(|e| e.id).collect();
    assert_eq!(ids.len(), 8);
    let rest: Vec<_> = audit
        .export(EventFilter::default(), Some(ids[2]), Some(4))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        rest.iter().flatten().map(|e| e.id).collect::<Vec<_>>(),
        ids[3..7]
    );

    // Bad input is refused before any query.
    for (repo, tag) in [("Driftwood/web", "1.4"), ("driftwood/web", "a/b")] {
        assert!(audit.resolve(repo, tag, t(12, 0)).await.is_err());
    }
    assert!(audit
        .digest("sha256:nothex", &PageRequest::default())
        .await
        .is_err());
    let wrong_kind = audit
        .history(
            "driftwood/web",
            "1.4",
            Order::Asc,
            &PageRequest {
                limit: None,
                cursor: second_cursor_of_other_kind(),
            },
        )
        .await;
    assert!(wrong_kind.is_err(), "a tag cursor is not an event cursor");
}

fn second_cursor_of_other_kind() -> Option<String> {
    Some(
        tagwarden::audit::Cursor::Tag {
            repository: "driftwood/web".into(),
            tag: "1.4".into(),
        }
        .encode(),
    )
}

#[track_caller]
fn assert_uses(what: &str, plan: &Value, index: &str) {
    let nodes = nodes(plan);
    assert!(
        !nodes.iter().any(|n| n.starts_with("Seq Scan")),
        "{what} reads a whole table: {nodes:?}"
    );
    assert!(
        nodes.iter().any(|n| n.ends_with(index)),
        "{what} does not use {index}: {nodes:?}"
    );
}

#[tokio::test]
async fn audit_queries_are_answered_from_indexes_on_a_large_ledger() {
    let db = Database::fresh();
    let ledger = migrated(&db).await;
    // 40,000 events over 200 repositories x 20 tags, and 20,000 bindings: enough that
    // reading a table costs the planner more than an index would.
    sqlx::query(
        "INSERT INTO tag_events (at, action, repository, tag, digest, previous_digest, class, rule, identity)
         SELECT timestamptz '2026-01-01' + g * interval '1 minute',
                (ARRAY['create','move','repush','refuse','move','move','repush','adopt','delete','warn'])[g % 10 + 1],
                'team/repo' || (g % 200), 'tag' || ((g / 200) % 20),
                'sha256:' || lpad(to_hex(g % 9000), 64, '0'),
                'sha256:' || lpad(to_hex((g + 1) % 9000), 64, '0'),
                'moving', 'default', 'user' || (g % 37)
         FROM generate_series(1, 40000) g",
    )
    .execute(ledger.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tag_bindings (repository, tag, digest, class, rule)
         SELECT 'team/repo' || (g / 20), 'tag' || (g % 20), 'sha256:' || lpad(to_hex(g), 64, '0'), 'moving', 'default'
         FROM generate_series(0, 19999) g",
    )
    .execute(ledger.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE tag_events")
        .execute(ledger.pool())
        .await
        .unwrap();
    sqlx::query("ANALYZE tag_bindings")
        .execute(ledger.pool())
        .await
        .unwrap();

    // Plans as the audit API gets them: through a reader pool.
    let reader = LedgerReader::connect_read_only(
        db.url(),
        1,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .unwrap();
    // The feed's optional filters fold away only in plans made with the parameters;
    // a reused generic plan would keep them all and fall back to the primary key.
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(reader.pool())
        .await
        .unwrap();
    assert_eq!(mode, "force_custom_plan");
    let explain = |name: &str| format!("EXPLAIN (FORMAT JSON) {}", statement(name));
    let at = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();

    let plan: Value = sqlx::query_scalar(&explain("resolve"))
        .bind("team/repo7")
        .bind("tag3")
        .bind(at)
        .fetch_one(reader.pool())
        .await
        .unwrap();
    assert_uses("resolve", &plan, "tag_events_binding_changes");

    for (what, q, from) in [
        ("history, oldest first", "history_asc", 0_i64),
        ("history, newest first", "history_desc", i64::MAX),
    ] {
        let plan: Value = sqlx::query_scalar(&explain(q))
            .bind("team/repo7")
            .bind("tag3")
            .bind(from)
            .bind(101_i64)
            .fetch_one(reader.pool())
            .await
            .unwrap();
        assert_uses(what, &plan, "tag_events_by_tag");
    }

    let plan: Value = sqlx::query_scalar(&explain("digest_bindings"))
        .bind(format!("sha256:{:0>64}", "2a"))
        .bind("")
        .bind("")
        .bind(101_i64)
        .fetch_one(reader.pool())
        .await
        .unwrap();
    assert_uses("digest lookup", &plan, "tag_events_bindings_by_digest");
    assert_uses(
        "the end of each digest period",
        &plan,
        "tag_events_binding_changes",
    );

    let plan: Value = sqlx::query_scalar(&explain("bindings"))
        .bind("team/repo7")
        .bind("")
        .bind(true)
        .bind(101_i64)
        .fetch_one(reader.pool())
        .await
        .unwrap();
    assert_uses("tags of a repository", &plan, "tag_bindings_pkey");

    let plan: Value = sqlx::query_scalar(&explain("repositories"))
        .bind("")
        .bind(101_i64)
        .fetch_one(reader.pool())
        .await
        .unwrap();
    assert_uses("repositories", &plan, "tag_bindings_pkey");

    let feeds = [
        (
            "feed by repository",
            EventFilter {
                repository: Some("team/repo7".into()),
                ..EventFilter::default()
            },
            "tag_events_by_repository",
        ),
        (
            "feed of one tag",
            EventFilter {
                repository: Some("team/repo7".into()),
                tag: Some("tag3".into()),
                ..EventFilter::default()
            },
            "tag_events_by_tag",
        ),
        (
            "feed by identity",
            EventFilter {
                identity: Some("user5".into()),
                ..EventFilter::default()
            },
            "",
        ),
        (
            "feed of refusals",
            EventFilter {
                actions: vec![Action::Refuse],
                ..EventFilter::default()
            },
            "",
        ),
        (
            "feed of refusals and warnings",
            EventFilter {
                actions: vec![Action::Refuse, Action::Warn],
                ..EventFilter::default()
            },
            "",
        ),
        (
            "feed of a day",
            EventFilter {
                since: Some(at),
                until: Some(at + chrono::Duration::days(1)),
                ..EventFilter::default()
            },
            "",
        ),
        ("whole feed", EventFilter::default(), "tag_events_pkey"),
    ];
    for (what, filter, index) in feeds {
        for (order, q) in [(Order::Asc, "events_asc"), (Order::Desc, "events_desc")] {
            let actions: Option<Vec<&str>> = (!filter.actions.is_empty())
                .then(|| filter.actions.iter().map(|a| a.as_str()).collect());
            let plan: Value = sqlx::query_scalar(&explain(q))
                .bind(filter.since)
                .bind(filter.until)
                .bind(filter.repository.as_deref())
                .bind(filter.tag.as_deref())
                .bind(actions)
                .bind(filter.identity.as_deref())
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(101_i64)
                .fetch_one(reader.pool())
                .await
                .unwrap();
            assert_uses(&format!("{what} ({order:?})"), &plan, index);
        }
    }
}

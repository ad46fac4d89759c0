//! The write path's reads of `tag_bindings` against Postgres: each is answered by the
//! index that names all of its equality columns, on a ledger the planner has no
//! statistics for (a new deployment, a server without autovacuum) as on a grown one,
//! in a plan made with the parameters as in the generic plan a pooled connection keeps.

use crate::plans::{scans_of, statement};
use crate::support;

use std::time::Duration;

use serde_json::Value;
use sqlx::PgConnection;
use support::Database;
use tagwarden::ledger::Ledger;

/// `(statement, parameter types, arguments, index, columns its condition must name)`;
/// `binding_unseen` is the statement of the function of that name.
const READS: [(&str, &str, &str, &str, &[&str]); 4] = [
    (
        "binding",
        "text, text",
        "'team/app', '1.0.7'",
        "tag_bindings_pkey",
        &["repository", "tag"],
    ),
    (
        "binding_unseen",
        "text, text, boolean",
        "'team/app', '1.0.7', true",
        "tag_bindings_pkey",
        &["repository", "tag"],
    ),
    (
        "release_tags",
        "text, text",
        "'team/app', 'sha256:00'",
        "tag_bindings_by_digest",
        &["digest", "repository"],
    ),
    (
        "bindings_for_digest",
        "text, text",
        "'team/app', 'sha256:00'",
        "tag_bindings_by_digest",
        &["digest", "repository"],
    ),
];

/// The statement of the PL/pgSQL function `name(p_repository, p_tag, p_announced)`
/// (migration 0019), with its arguments as `$1`, `$2` and `$3`: what the function prepares, as it is in
/// the database.
async fn function_query(conn: &mut PgConnection, name: &str) -> String {
    let body: String = sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let start = body.find("RETURN QUERY").expect("RETURN QUERY") + "RETURN QUERY".len();
    let end = body.rfind(';').expect("the statement's end");
    body[start..end]
        .replace("p_repository", "$1")
        .replace("p_tag", "$2")
        .replace("p_announced", "$3")
}

async fn check_reads(conn: &mut PgConnection, state: &str) {
    for (name, _, args, index, columns) in READS {
        let plan: Value =
            sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name}({args})"))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        let scans = scans_of(&plan, "tag_bindings");
        assert_eq!(scans.len(), 1, "{name} ({state}): {scans:?}");
        let (node, used, cond, filter) = &scans[0];
        assert!(
            node.starts_with("Index") && used == index,
            "{name} ({state}) reads tag_bindings by {node} {used}, not {index}: {plan}"
        );
        for column in columns {
            assert!(
                cond.contains(&format!("{column} = ")),
                "{name} ({state}): {column} is not in the index condition {cond:?} (filter {filter:?})"
            );
        }
    }
}

#[tokio::test]
async fn the_write_paths_binding_reads_use_the_index_of_their_columns_before_any_analyze() {
    let db = Database::fresh();
    let ledger = Ledger::connect_lazy(db.url(), 2, Duration::from_secs(10)).unwrap();
    ledger.migrate().await.unwrap();
    for mode in ["auto", "force_generic_plan"] {
        let mut conn = ledger.pool().acquire().await.unwrap();
        sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        for (name, types, ..) in READS {
            let sql = match name {
                "binding_unseen" => function_query(&mut conn, name).await,
                _ => statement(name),
            };
            sqlx::raw_sql(&format!("PREPARE {name}({types}) AS {sql}"))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        check_reads(&mut conn, &format!("{mode}, empty")).await;
        // The plans the connection made on the empty table, and the statistics still
        // unknown, after one repository grew: what a pooled connection runs.
        sqlx::query(
            "INSERT INTO tag_bindings (repository, tag, digest, class, rule)
             SELECT 'team/app', '1.' || g || '.0', 'sha256:' || lpad(to_hex(g), 64, '0'), 'immutable', 'default'
             FROM generate_series(1, 2000) g",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        check_reads(&mut conn, &format!("{mode}, 2000 bindings, not analyzed")).await;
        sqlx::raw_sql("DEALLOCATE ALL; TRUNCATE tag_bindings")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

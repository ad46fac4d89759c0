//! Checks that the ledger and the registry tell the same story, for tests that put both
//! through faults, hostile input or a long run.

use super::api::{resolve, tags};
use super::database::Database;

/// The live bindings of `repo`: `(tag, digest)`, sorted by tag.
pub fn live_bindings(db: &Database, repo: &str) -> Vec<(String, String)> {
    db.query_column(&format!(
        "SELECT tag || ' ' || digest FROM tag_bindings
         WHERE repository = '{repo}' AND deleted_at IS NULL ORDER BY tag"
    ))
    .into_iter()
    .flatten()
    .map(|row| {
        let (t, d) = row.split_once(' ').expect("tag and digest");
        (t.to_string(), d.to_string())
    })
    .collect()
}

/// For every repository named: each tag the registry serves is bound in the ledger to
/// the digest the registry serves, and the ledger has no live binding the registry
/// does not serve.
pub async fn assert_ledger_matches_registry(db: &Database, registry: &str, repos: &[&str]) {
    for repo in repos {
        let mut served = Vec::new();
        for tag in tags(registry, repo).await {
            let digest = resolve(registry, repo, &tag)
                .await
                .unwrap_or_else(|| panic!("{repo}:{tag} is listed but does not resolve"));
            served.push((tag, digest));
        }
        assert_live_bindings_are(db, repo, served, "the registry");
    }
}

/// Asserts that `repo`'s live bindings in the ledger are `served`, the (tag, digest)
/// pairs that `upstream` serves, sorted by tag.
pub fn assert_live_bindings_are(
    db: &Database,
    repo: &str,
    served: Vec<(String, String)>,
    upstream: &str,
) {
    assert_eq!(
        live_bindings(db, repo),
        served,
        "{repo}: the ledger's live bindings (left) differ from what {upstream} serves (right)"
    );
}

/// No immutable tag was ever recorded with two digests, and none ever moved.
pub fn assert_no_immutable_tag_had_two_digests(db: &Database) {
    let offenders = db.query_column(
        "SELECT repository || ':' || tag || ' -> ' || string_agg(DISTINCT digest, ', ')
         FROM tag_events
         WHERE class = 'immutable' AND action IN ('create', 'adopt', 'repush', 'move')
         GROUP BY repository, tag
         HAVING count(DISTINCT digest) > 1 OR bool_or(action = 'move')",
    );
    assert!(
        offenders.is_empty(),
        "immutable tags bound to more than one digest: {offenders:?}"
    );
}

/// Every live binding is explained by the last binding event of its tag: nothing was
/// bound without its event, and no event was recorded without its binding. A `repair`
/// binds its tag again to the same digest, as a `restore` does a retired release; a
/// `drift` changes no binding.
pub fn assert_bindings_explained_by_history(db: &Database) {
    let unexplained = db.query_column(
        "SELECT b.repository || ':' || b.tag || ' bound to ' || b.digest
                || ', last event ' || coalesce(e.action || ' ' || e.digest, 'none')
         FROM tag_bindings b
         LEFT JOIN LATERAL (
             SELECT action, digest FROM tag_events e
             WHERE e.repository = b.repository AND e.tag = b.tag
               AND e.action IN ('create', 'move', 'repush', 'adopt', 'warn', 'repair', 'restore')
             ORDER BY e.id DESC LIMIT 1
         ) e ON true
         WHERE b.deleted_at IS NULL AND e.digest IS DISTINCT FROM b.digest",
    );
    assert!(
        unexplained.is_empty(),
        "bindings without a matching event: {unexplained:?}"
    );
}

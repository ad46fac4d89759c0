//! The reconciler's reads of the ledger, each a file in `sql/`.

use sqlx::PgPool;

use crate::ledger::LedgerError;

const BINDINGS: &str = include_str!("sql/bindings.sql");
const REPOSITORIES: &str = include_str!("sql/repositories.sql");
const LAST_FINDING: &str = include_str!("sql/last_finding.sql");

/// A repository's bindings, live or deleted: `(tag, digest, class, live)`.
pub async fn bindings(
    pool: &PgPool,
    repository: &str,
) -> Result<Vec<(String, String, String, bool)>, LedgerError> {
    Ok(sqlx::query_as(BINDINGS)
        .bind(repository)
        .fetch_all(pool)
        .await?)
}

/// Repositories with at least one live binding, so that a repository the registry lost
/// entirely is still checked.
pub async fn repositories(pool: &PgPool) -> Result<Vec<String>, LedgerError> {
    Ok(sqlx::query_scalar(REPOSITORIES).fetch_all(pool).await?)
}

/// Whether the tag's latest event other than a refusal is a drift with this reason and
/// registry digest: the finding is then already recorded. Any binding event or repair
/// since makes the same drift new again. Read while the caller holds the tag's lock,
/// so a concurrent pass cannot record the same finding.
pub async fn already_recorded(
    pool: &PgPool,
    repository: &str,
    tag: &str,
    reason: &str,
    registry_digest: Option<&str>,
) -> Result<bool, LedgerError> {
    let last: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(LAST_FINDING)
        .bind(repository)
        .bind(tag)
        .fetch_optional(pool)
        .await?;
    Ok(matches!(last, Some((a, r, d))
        if a == "drift" && r.as_deref() == Some(reason) && d.as_deref() == registry_digest))
}

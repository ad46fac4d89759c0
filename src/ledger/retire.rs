//! Retired releases (migration 0012), and what retention needs to know about a
//! repository: its live bindings and when each digest was last pulled.

use chrono::{DateTime, Utc};

use super::store::{LedgerError, LedgerTx};
use super::Ledger;

/// The most live bindings of one repository that retention reads: past that it
/// refuses to plan rather than decide on part of a repository.
pub const MAX_INVENTORY: i64 = 20_000;

/// One live binding of a repository, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBinding {
    pub tag: String,
    pub digest: String,
    pub class: String,
    pub first_bound_at: DateTime<Utc>,
}

impl LedgerTx {
    /// Mark a live binding retired (and deleted). False if it was not live.
    pub async fn mark_retired(
        &mut self,
        repository: &str,
        tag: &str,
        reason: &str,
        by: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(
            "UPDATE tag_bindings SET deleted_at = now(), last_changed_at = now(),
                    retired_at = now(), retired_reason = $3, retired_by = $4
             WHERE repository = $1 AND tag = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(tag)
        .bind(reason)
        .bind(by)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Ledger {
    /// Repositories with at least one live release.
    pub async fn repositories_with_releases(&self) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT repository FROM tag_bindings
             WHERE class = 'immutable' AND deleted_at IS NULL ORDER BY repository",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Every live binding of a repository, of any class, at most [`MAX_INVENTORY`].
    pub async fn live_bindings(&self, repository: &str) -> Result<Vec<LiveBinding>, LedgerError> {
        let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT tag, digest, class, first_bound_at FROM tag_bindings
             WHERE repository = $1 AND deleted_at IS NULL ORDER BY tag LIMIT $2",
        )
        .bind(repository)
        .bind(MAX_INVENTORY + 1)
        .fetch_all(self.pool())
        .await?;
        if rows.len() as i64 > MAX_INVENTORY {
            return Err(LedgerError::Query(format!(
                "{repository} has more than {MAX_INVENTORY} live tags: retention does not plan it"
            )));
        }
        Ok(rows
            .into_iter()
            .map(|(tag, digest, class, first_bound_at)| LiveBinding {
                tag,
                digest,
                class,
                first_bound_at,
            })
            .collect())
    }

    /// When each of `digests` was last served to a pull (a 2xx manifest GET or HEAD) in
    /// `repository`, from the pull log; a digest never pulled (or pulled before the log's
    /// retention) is absent. One index lookup per digest.
    pub async fn last_pulls(
        &self,
        repository: &str,
        digests: &[String],
    ) -> Result<Vec<(String, DateTime<Utc>)>, LedgerError> {
        let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT d, (SELECT p.at FROM pull_log p
                        WHERE p.digest = d AND p.repository = $1 AND p.status BETWEEN 200 AND 299
                        ORDER BY p.at DESC LIMIT 1)
             FROM unnest($2::text[]) AS u(d)",
        )
        .bind(repository)
        .bind(digests)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(d, at)| at.map(|at| (d, at)))
            .collect())
    }
}

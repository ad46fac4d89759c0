//! Retired releases (migration 0012), and what retention needs to know about a
//! repository: its live bindings and when each digest was last pulled.

use chrono::{DateTime, Utc};

use super::LedgerReader;
use super::{LedgerError, LedgerTx};

const MARK_RETIRED: &str = include_str!("sql/mark_retired.sql");
const REPOSITORIES_WITH_RELEASES: &str = include_str!("sql/repositories_with_releases.sql");
const LIVE_BINDINGS: &str = include_str!("sql/live_bindings.sql");
const LAST_PULLS: &str = include_str!("sql/last_pulls.sql");

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
        let done = sqlx::query(MARK_RETIRED)
            .bind(repository)
            .bind(tag)
            .bind(reason)
            .bind(by)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl LedgerReader {
    /// Repositories with at least one live release.
    pub async fn repositories_with_releases(&self) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(REPOSITORIES_WITH_RELEASES)
            .fetch_all(self.pool())
            .await?)
    }

    /// Every live binding of a repository, of any class, at most [`MAX_INVENTORY`].
    pub async fn live_bindings(&self, repository: &str) -> Result<Vec<LiveBinding>, LedgerError> {
        let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(LIVE_BINDINGS)
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
        let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(LAST_PULLS)
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

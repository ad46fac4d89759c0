//! Coalescing identical re-pushes (see `migrations/0006_repush_tally.sql`).

use super::{LedgerError, LedgerTx};

const TALLY_REPUSH: &str = include_str!("sql/tally_repush.sql");

impl LedgerTx {
    /// Count a re-push of `digest` under `tag` by `identity` in the current hour and
    /// return how many there were this hour, this one included: only the first is
    /// appended to the history.
    pub async fn tally_repush(
        &mut self,
        repository: &str,
        tag: &str,
        digest: &str,
        identity: Option<&str>,
    ) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(TALLY_REPUSH)
            .bind(repository)
            .bind(tag)
            .bind(digest)
            .bind(identity.unwrap_or(""))
            .fetch_one(&mut *self.tx)
            .await?)
    }
}

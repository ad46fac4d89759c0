//! Storage of the policy history: the effective rules of every policy put in force,
//! keyed by hash, and when each was loaded.

use chrono::{DateTime, Utc};

use super::{Ledger, LedgerError, LedgerReader};
use crate::policy::{Policy, RuleConfig};

const REMEMBER_POLICY: &str = include_str!("sql/remember_policy.sql");
const RECORD_POLICY_LOAD: &str = include_str!("sql/record_policy_load.sql");
const POLICY_LOADED_AT: &str = include_str!("sql/policy_loaded_at.sql");
const POLICY_LAST_DECIDED: &str = include_str!("sql/policy_last_decided.sql");
const POLICY_BY_HASH: &str = include_str!("sql/policy_by_hash.sql");

/// A policy from the history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredPolicy {
    pub hash: String,
    #[sqlx(json)]
    pub rules: Vec<RuleConfig>,
    pub first_loaded_at: DateTime<Utc>,
    pub last_loaded_at: DateTime<Utc>,
    /// When the load that put it in force before the instant asked about happened.
    pub loaded_at: DateTime<Utc>,
    /// Set when an event between that load and the instant was decided by this policy
    /// rather than by the one loaded (another tagwarden process on the same ledger).
    #[sqlx(skip)]
    pub decided_event_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// Record that `policy` was put in force now.
    pub async fn remember_policy(&self, policy: &Policy) -> Result<(), LedgerError> {
        // The rules are stored as given, so the stored policy rebuilds to the same hash.
        let rules = serde_json::to_value(policy.effective_rules())
            .map_err(|e| LedgerError::Query(format!("policy rules: {e}")))?;
        let mut tx = self.pool().begin().await?;
        sqlx::query(REMEMBER_POLICY)
            .bind(policy.hash())
            .bind(rules)
            .execute(&mut *tx)
            .await?;
        sqlx::query(RECORD_POLICY_LOAD)
            .bind(policy.hash())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl LedgerReader {
    /// The policy last loaded at or before `at`.
    pub async fn policy_loaded_at(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<StoredPolicy>, LedgerError> {
        Ok(sqlx::query_as(POLICY_LOADED_AT)
            .bind(at)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The policy in force at `at`: the last one loaded at or before it, unless the
    /// last event decided after that load and before `at` names another policy of the
    /// history, which then wins: events record what actually decided.
    pub async fn policy_in_force(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<StoredPolicy>, LedgerError> {
        let loaded = self.policy_loaded_at(at).await?;
        let since = loaded.as_ref().map(|p| p.loaded_at);
        // `(policy_hash, at)` of the last event decided since the load.
        let decided: Option<(String, DateTime<Utc>)> = sqlx::query_as(POLICY_LAST_DECIDED)
            .bind(at)
            .bind(since)
            .fetch_optional(self.pool())
            .await?;
        match (loaded, decided) {
            (Some(l), Some((hash, _))) if hash == l.hash => Ok(Some(l)),
            (_, Some((hash, decided_at))) => {
                Ok(self.policy_by_hash(&hash).await?.map(|p| StoredPolicy {
                    decided_event_at: Some(decided_at),
                    ..p
                }))
            }
            (l, None) => Ok(l),
        }
    }

    /// A policy of the history by its hash, with its first load as `loaded_at`.
    pub async fn policy_by_hash(&self, hash: &str) -> Result<Option<StoredPolicy>, LedgerError> {
        Ok(sqlx::query_as(POLICY_BY_HASH)
            .bind(hash)
            .fetch_optional(self.pool())
            .await?)
    }
}

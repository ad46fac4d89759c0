//! Storage of the policy history: the effective rules of every policy put in force,
//! keyed by hash, and when each was loaded.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::store::{Ledger, LedgerError};
use crate::policy::{Policy, RuleConfig};

/// A policy from the history.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub hash: String,
    pub rules: Vec<RuleConfig>,
    pub first_loaded_at: DateTime<Utc>,
    pub last_loaded_at: DateTime<Utc>,
    /// When the load that put it in force before the instant asked about happened.
    pub loaded_at: DateTime<Utc>,
    /// Set when an event between that load and the instant was decided by this policy
    /// rather than by the one loaded (another tagwarden process on the same ledger).
    pub decided_event_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// Record that `policy` was put in force now.
    pub async fn remember_policy(&self, policy: &Policy) -> Result<(), LedgerError> {
        // The rules are stored as given, so the stored policy rebuilds to the same hash.
        let rules = serde_json::to_value(policy.effective_rules())
            .map_err(|e| LedgerError::Query(format!("policy rules: {e}")))?;
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO policy_versions (hash, rules) VALUES ($1, $2)
             ON CONFLICT (hash) DO UPDATE SET last_loaded_at = clock_timestamp()",
        )
        .bind(policy.hash())
        .bind(rules)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO policy_loads (hash) VALUES ($1)")
            .bind(policy.hash())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The policy last loaded at or before `at`.
    pub async fn policy_loaded_at(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<StoredPolicy>, LedgerError> {
        let row = sqlx::query(
            "SELECT v.hash, v.rules, v.first_loaded_at, v.last_loaded_at, l.loaded_at
             FROM policy_loads l JOIN policy_versions v ON v.hash = l.hash
             WHERE l.loaded_at <= $1
             ORDER BY l.loaded_at DESC, l.id DESC LIMIT 1",
        )
        .bind(at)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| stored(&r)).transpose()
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
        let decided = sqlx::query(
            "SELECT e.policy_hash, e.at FROM tag_events e
             JOIN policy_versions v ON v.hash = e.policy_hash
             WHERE e.at <= $1 AND ($2::timestamptz IS NULL OR e.at >= $2)
             ORDER BY e.at DESC, e.id DESC LIMIT 1",
        )
        .bind(at)
        .bind(since)
        .fetch_optional(self.pool())
        .await?;
        match (loaded, decided) {
            (Some(l), Some(e)) if e.get::<String, _>("policy_hash") == l.hash => Ok(Some(l)),
            (_, Some(e)) => {
                let hash: String = e.get("policy_hash");
                Ok(self.policy_by_hash(&hash).await?.map(|p| StoredPolicy {
                    decided_event_at: Some(e.get("at")),
                    ..p
                }))
            }
            (l, None) => Ok(l),
        }
    }

    /// A policy of the history by its hash, with its first load as `loaded_at`.
    pub async fn policy_by_hash(&self, hash: &str) -> Result<Option<StoredPolicy>, LedgerError> {
        let row = sqlx::query(
            "SELECT hash, rules, first_loaded_at, last_loaded_at, first_loaded_at AS loaded_at
             FROM policy_versions WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| stored(&r)).transpose()
    }
}

fn stored(r: &sqlx::postgres::PgRow) -> Result<StoredPolicy, LedgerError> {
    let rules: serde_json::Value = r.get("rules");
    Ok(StoredPolicy {
        hash: r.get("hash"),
        rules: serde_json::from_value(rules)
            .map_err(|e| LedgerError::Query(format!("stored policy rules: {e}")))?,
        first_loaded_at: r.get("first_loaded_at"),
        last_loaded_at: r.get("last_loaded_at"),
        loaded_at: r.get("loaded_at"),
        decided_event_at: None,
    })
}

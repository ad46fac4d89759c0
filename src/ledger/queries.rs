//! Reads for audits: bindings, a tag's history, what a tag named at an instant, every
//! tag that ever named a digest, and the event feed.
//!
//! Every statement is a file in `sql/` with bind parameters, answered from an index (see
//! `migrations/0004_audit_indexes.sql`). Actions are spelled out in the statements, not
//! bound, so that the planner can match the partial indexes. `tests/integration/audit_queries.rs`
//! and `bench/ledger.sh` read the same files by path, so their plans are those of
//! exactly what runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Action, Binding, LedgerError, LedgerReader};
use crate::policy::TagClass;

const REPOSITORIES: &str = include_str!("sql/repositories.sql");
const BINDINGS: &str = include_str!("sql/bindings.sql");
const HISTORY_ASC: &str = include_str!("sql/history_asc.sql");
const HISTORY_DESC: &str = include_str!("sql/history_desc.sql");
const RESOLVE: &str = include_str!("sql/resolve.sql");
const DIGEST_BINDINGS: &str = include_str!("sql/digest_bindings.sql");
const EVENTS_ASC: &str = include_str!("sql/events_asc.sql");
const EVENTS_DESC: &str = include_str!("sql/events_desc.sql");
const LAST_EVENT_ID: &str = include_str!("sql/last_event_id.sql");
const BINDING: &str = include_str!("sql/binding.sql");
const RELEASES: &str = include_str!("sql/releases.sql");
const TAG_HISTORY: &str = include_str!("sql/tag_history.sql");

/// Which end of a history comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// A history event as an audit reads it: a row of `tag_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct StoredEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: Action,
    pub repository: String,
    pub tag: Option<String>,
    /// The digest written, or attempted for a refusal.
    pub digest: Option<String>,
    /// The digest before a move, or the bound digest of a refusal.
    pub previous_digest: Option<String>,
    pub class: Option<TagClass>,
    pub rule: Option<String>,
    #[schema(example = "immutable-tag-rebind")]
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub identity_verified: bool,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Structured facts of a refusal.
    pub detail: Option<serde_json::Value>,
    /// Hex sha256 of the effective policy rules that decided the event; null for events
    /// recorded before policy hashes were kept.
    pub policy_hash: Option<String>,
}

/// An event that may have changed what a tag names (everything but a refusal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BindingChange {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: Action,
    pub digest: Option<String>,
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub class: Option<String>,
}

/// An event that bound `repository:tag` to the digest looked up, and the next event that
/// may have changed the tag after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestBinding {
    pub repository: String,
    pub tag: String,
    pub change: BindingChange,
    pub next: Option<BindingChange>,
}

/// A row of `digest_bindings.sql`: the change, and its successor's columns prefixed
/// `next_`, all null when there is none.
#[derive(sqlx::FromRow)]
struct DigestBindingRow {
    repository: String,
    tag: String,
    #[sqlx(flatten)]
    change: BindingChange,
    next_id: Option<i64>,
    next_at: Option<DateTime<Utc>>,
    next_action: Option<Action>,
    next_digest: Option<String>,
    next_reason: Option<String>,
    next_identity: Option<String>,
    next_class: Option<String>,
}

impl From<DigestBindingRow> for DigestBinding {
    fn from(r: DigestBindingRow) -> Self {
        let next = match (r.next_id, r.next_at, r.next_action) {
            (Some(id), Some(at), Some(action)) => Some(BindingChange {
                id,
                at,
                action,
                digest: r.next_digest,
                reason: r.next_reason,
                identity: r.next_identity,
                class: r.next_class,
            }),
            _ => None,
        };
        DigestBinding {
            repository: r.repository,
            tag: r.tag,
            change: r.change,
            next,
        }
    }
}

/// A repository and how many tags the ledger holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RepositorySummary {
    pub repository: String,
    /// Tags ever bound, deleted ones included.
    pub tags: i64,
    /// Tags currently in the registry.
    pub live_tags: i64,
    pub last_changed_at: DateTime<Utc>,
}

/// Which events the feed returns. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// At or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant.
    pub until: Option<DateTime<Utc>>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// Any of these actions (none: every action).
    pub actions: Vec<Action>,
    pub identity: Option<String>,
}

impl LedgerReader {
    /// Repositories in name order, after `after`.
    pub async fn repositories(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RepositorySummary>, LedgerError> {
        Ok(sqlx::query_as(REPOSITORIES)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The current binding of a tag.
    pub async fn binding(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Binding>, LedgerError> {
        binding(self.pool(), repository, tag).await
    }

    /// A repository's bindings in tag order, after `after`.
    pub async fn bindings(
        &self,
        repository: &str,
        include_deleted: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Binding>, LedgerError> {
        Ok(sqlx::query_as(BINDINGS)
            .bind(repository)
            .bind(after.unwrap_or(""))
            .bind(include_deleted)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// A page of one tag's events, starting after the event `after` in `order`.
    pub async fn history_page(
        &self,
        repository: &str,
        tag: &str,
        order: Order,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        let (query, from) = match order {
            Order::Asc => (sqlx::query_as(HISTORY_ASC), after.unwrap_or(0)),
            Order::Desc => (sqlx::query_as(HISTORY_DESC), after.unwrap_or(i64::MAX)),
        };
        Ok(query
            .bind(repository)
            .bind(tag)
            .bind(from)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The latest event at or before `at` that could have changed what the tag names.
    pub async fn binding_change_at(
        &self,
        repository: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<BindingChange>, LedgerError> {
        // The latest event that could change what the tag names, at or before `at`.
        Ok(sqlx::query_as(RESOLVE)
            .bind(repository)
            .bind(tag)
            .bind(at)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The events that bound a tag to `digest`, with each one's successor, for at most
    /// `limit` tags after `after` (repository, tag), in (repository, tag, time) order.
    pub async fn digest_bindings(
        &self,
        digest: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<DigestBinding>, LedgerError> {
        let (after_repo, after_tag) = after.unwrap_or(("", ""));
        // Tags (after $2, $3) that an event bound to digest $1, at most $4 of them; each
        // such event, and the next one that could change its tag.
        let rows: Vec<DigestBindingRow> = sqlx::query_as(DIGEST_BINDINGS)
            .bind(digest)
            .bind(after_repo)
            .bind(after_tag)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(DigestBinding::from).collect())
    }

    /// A page of the event feed in `order` of recording, after the event `after`, and
    /// never past the event `up_to` (so that an export does not chase new events).
    pub async fn events_page(
        &self,
        filter: &EventFilter,
        order: Order,
        after: Option<i64>,
        up_to: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        // `$1` since, `$2` until, `$3` repository, `$4` tag, `$5` actions, `$6` identity,
        // `$7` after this id, `$8` up to this id, `$9` limit; a NULL does not filter.
        // The reader pool plans every statement with its parameters
        // (`plan_cache_mode = force_custom_plan`), so the filters left out fold away and
        // the planner picks the index that fits the ones given. One action folds to
        // `action = 'x'`, so that tag_events_by_action (action, id) yields the page in id
        // order; `action = ANY('{x}')` would not, and a rare action then meant walking
        // the feed by id and filtering, or sorting every event with that action.
        let query = match order {
            Order::Asc => sqlx::query_as(EVENTS_ASC),
            Order::Desc => sqlx::query_as(EVENTS_DESC),
        };
        let actions: Option<Vec<&str>> = (!filter.actions.is_empty())
            .then(|| filter.actions.iter().map(|a| a.as_str()).collect());
        Ok(query
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.repository.as_deref())
            .bind(filter.tag.as_deref())
            .bind(actions)
            .bind(filter.identity.as_deref())
            .bind(after)
            .bind(up_to)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The id of the newest event, if any.
    pub async fn last_event_id(&self) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(LAST_EVENT_ID)
            .fetch_one(self.pool())
            .await?)
    }

    /// A repository's live immutable bindings as `(tag, digest)`: its releases.
    pub async fn releases(&self, repository: &str) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(sqlx::query_as(RELEASES)
            .bind(repository)
            .fetch_all(self.pool())
            .await?)
    }

    /// Every history event of a tag, oldest first.
    pub async fn tag_history(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        Ok(sqlx::query_as(TAG_HISTORY)
            .bind(repository)
            .bind(tag)
            .fetch_all(self.pool())
            .await?)
    }
}

/// The current binding of a tag, read through the reader's pool or inside a write
/// transaction (after its lock).
pub(super) async fn binding<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    repository: &str,
    tag: &str,
) -> Result<Option<Binding>, LedgerError> {
    Ok(sqlx::query_as(BINDING)
        .bind(repository)
        .bind(tag)
        .fetch_optional(executor)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(next: bool) -> DigestBindingRow {
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        DigestBindingRow {
            repository: "team/app".into(),
            tag: "1.0".into(),
            change: BindingChange {
                id: 1,
                at,
                action: Action::Create,
                digest: Some("sha256:ab".into()),
                reason: None,
                identity: Some("ci".into()),
                class: Some("immutable".into()),
            },
            next_id: next.then_some(2),
            next_at: next.then_some(at),
            next_action: next.then_some(Action::Delete),
            next_digest: None,
            next_reason: next.then(|| "gone".into()),
            next_identity: None,
            next_class: None,
        }
    }

    #[test]
    fn a_digest_binding_has_a_successor_only_when_its_columns_are_there() {
        let alone = DigestBinding::from(row(false));
        assert_eq!(alone.change.id, 1);
        assert_eq!(alone.next, None);
        let followed = DigestBinding::from(row(true));
        let next = followed.next.expect("a successor");
        assert_eq!((next.id, next.action), (2, Action::Delete));
        assert_eq!(next.reason.as_deref(), Some("gone"));
    }
}

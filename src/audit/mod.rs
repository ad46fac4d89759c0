//! Audits of the ledger: the questions the API and the command line answer.
//!
//! [`Audit`] holds the rules (validation, paging, what a tag named at an instant, the
//! periods of a digest); [`crate::ledger::queries`] holds the SQL. Both the HTTP layer
//! ([`crate::api`]) and `tagwarden history|resolve|events|digest` call this.

pub mod cursor;
pub mod export;
pub mod filter;
mod page;
pub mod timeline;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::ledger::{
    Binding, BindingChange, EventFilter, LedgerError, LedgerReader, Order, RepositorySummary,
    StoredEvent,
};
use crate::oci::{Digest, Name, Tag};

pub use cursor::{Cursor, InvalidCursor};
pub use page::{Page, PageRequest, DEFAULT_LIMIT, MAX_LIMIT};
pub use timeline::{Effect, Period, TagPeriods};

/// Events per database round trip while exporting.
const EXPORT_BATCH: i64 = 1000;
/// Events per round trip while walking back to the start of a binding.
const PERIOD_BATCH: u32 = 1000;

/// Why a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The question itself is wrong: a bad name, tag, digest, time, limit or cursor.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<InvalidCursor> for AuditError {
    fn from(e: InvalidCursor) -> Self {
        AuditError::Invalid(e.to_string())
    }
}

/// A tag's binding as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TagBinding {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    #[schema(value_type = crate::api::schemas::TagClass)]
    pub class: String,
    pub rule: String,
    /// Since when the tag names this digest.
    pub since: DateTime<Utc>,
    #[schema(required = true)]
    pub bound_by: Option<String>,
    pub last_changed_at: DateTime<Utc>,
    /// When the tag was removed from the registry. An immutable tag stays reserved for
    /// its digest after that.
    #[schema(required = true)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// When a release was retired (it is then deleted too), why and by whom: its name
    /// stays reserved for its digest.
    #[schema(required = true)]
    pub retired_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub retired_reason: Option<String>,
    /// The admin token that retired it, as `token:<name>`.
    #[schema(required = true)]
    pub retired_by: Option<String>,
}

impl From<Binding> for TagBinding {
    fn from(b: Binding) -> Self {
        TagBinding {
            repository: b.repository,
            tag: b.tag,
            digest: b.digest,
            class: b.class.as_str().to_owned(),
            rule: b.rule,
            since: b.first_bound_at,
            bound_by: b.bound_by,
            last_changed_at: b.last_changed_at,
            deleted_at: b.deleted_at,
            retired_at: b.retired_at,
            retired_reason: b.retired_reason,
            retired_by: b.retired_by,
        }
    }
}

/// What a tag named at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    pub repository: String,
    pub tag: String,
    pub at: DateTime<Utc>,
    /// Whether the tag named anything then.
    pub exists: bool,
    #[schema(required = true)]
    pub digest: Option<String>,
    /// The event that started the binding in force at `at` (a create, move, adopt,
    /// warned rebind, or re-push after a delete; never an identical re-push within
    /// the binding), or the delete that removed the tag. None: the tag did not exist yet.
    #[schema(required = true, value_type = Option<crate::api::schemas::BindingChange>)]
    pub event: Option<BindingChange>,
}

/// Every tag that ever named a digest, one page of tags at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestUsage {
    pub digest: String,
    pub items: Vec<TagPeriods>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The audit questions, answered from the ledger. It holds a reader: audits cannot
/// write.
#[derive(Clone)]
pub struct Audit {
    ledger: LedgerReader,
}

impl Audit {
    /// `ledger` should be a read-only pool ([`LedgerReader::connect_read_only`]).
    pub fn new(ledger: LedgerReader) -> Self {
        Audit { ledger }
    }

    /// The reader, for the pull log's questions ([`crate::pulls::query`]).
    pub fn ledger(&self) -> &LedgerReader {
        &self.ledger
    }

    /// Every repository the ledger knows, in name order.
    pub async fn repositories(
        &self,
        page: &PageRequest,
    ) -> Result<Page<RepositorySummary>, AuditError> {
        let limit = page.limit()?;
        let after = page.cursor()?.map(Cursor::name).transpose()?;
        let rows = self
            .ledger
            .repositories(after.as_deref(), i64::from(limit) + 1)
            .await?;
        Ok(Page::from_rows(rows, limit, |r| {
            Cursor::Name(r.repository.clone())
        }))
    }

    /// The bindings of a repository's tags, in tag order; deleted ones only if asked.
    pub async fn tags(
        &self,
        repository: &str,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<TagBinding>, AuditError> {
        let repository = name(repository)?;
        let limit = page.limit()?;
        let after = page.cursor()?.map(Cursor::name).transpose()?;
        let rows = self
            .ledger
            .bindings(
                repository.as_str(),
                include_deleted,
                after.as_deref(),
                i64::from(limit) + 1,
            )
            .await?;
        let rows = rows.into_iter().map(TagBinding::from).collect();
        Ok(Page::from_rows(rows, limit, |b: &TagBinding| {
            Cursor::Name(b.tag.clone())
        }))
    }

    /// One tag's binding as it stands, deleted or not; `None` if the ledger never bound
    /// the tag.
    pub async fn binding(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<TagBinding>, AuditError> {
        let (repository, tag) = (name(repository)?, tag_name(tag)?);
        let binding = self
            .ledger
            .binding(repository.as_str(), tag.as_str())
            .await?;
        Ok(binding.map(TagBinding::from))
    }

    /// Every event of one tag: creates, moves, re-pushes, deletes, refusals, ...
    pub async fn history(
        &self,
        repository: &str,
        tag: &str,
        order: Order,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        let (repository, tag) = (name(repository)?, tag_name(tag)?);
        let limit = page.limit()?;
        let after = page.cursor()?.map(Cursor::event).transpose()?;
        let rows = self
            .ledger
            .history_page(
                repository.as_str(),
                tag.as_str(),
                order,
                after,
                i64::from(limit) + 1,
            )
            .await?;
        Ok(Page::from_rows(rows, limit, |e| Cursor::Event(e.id)))
    }

    /// The digest the tag named at `at`, and the event that bound it (or the delete
    /// that removed it), or that it did not exist then.
    pub async fn resolve(
        &self,
        repository: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> Result<Resolution, AuditError> {
        let (repository, tag) = (name(repository)?, tag_name(tag)?);
        let mut event = self
            .ledger
            .binding_change_at(repository.as_str(), tag.as_str(), at)
            .await?;
        let digest = match event.as_ref().map(BindingChange::effect) {
            Some(Effect::Bind(d)) => Some(d.to_owned()),
            _ => None,
        };
        if let (Some(d), Some(latest)) = (&digest, event.as_ref()) {
            event = Some(
                self.period_start(repository.as_str(), tag.as_str(), d, latest.clone())
                    .await?,
            );
        }
        Ok(Resolution {
            repository: repository.as_str().to_owned(),
            tag: tag.as_str().to_owned(),
            at,
            exists: digest.is_some(),
            digest,
            event,
        })
    }

    /// The event that began the binding to `digest` that `latest` continues: walks the
    /// tag's history back, one page at a time, past identical re-pushes and refusals.
    async fn period_start(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        latest: BindingChange,
    ) -> Result<BindingChange, AuditError> {
        let mut start = latest;
        let mut before = start.id;
        loop {
            let older = self
                .ledger
                .history_page(
                    repository,
                    tag,
                    Order::Desc,
                    Some(before),
                    i64::from(PERIOD_BATCH),
                )
                .await?;
            let effects: Vec<Effect<'_>> = older
                .iter()
                .map(|e| timeline::effect(e.action, e.reason.as_deref(), e.digest.as_deref()))
                .collect();
            let (earliest, begins_here) = timeline::period_start(digest, &effects);
            if let Some(i) = earliest {
                start = binding_change(&older[i]);
            }
            match older.last() {
                Some(last) if !begins_here && older.len() == PERIOD_BATCH as usize => {
                    before = last.id
                }
                _ => return Ok(start),
            }
        }
    }

    /// Every tag of every repository that ever named `digest`, with the periods.
    pub async fn digest(
        &self,
        digest: &str,
        page: &PageRequest,
    ) -> Result<DigestUsage, AuditError> {
        let digest = Digest::parse(digest).map_err(|e| AuditError::Invalid(e.to_string()))?;
        let limit = page.limit()?;
        let after = page.cursor()?.map(Cursor::tag).transpose()?;
        let rows = self
            .ledger
            .digest_bindings(
                digest.as_str(),
                after.as_ref().map(|(r, t)| (r.as_str(), t.as_str())),
                i64::from(limit) + 1,
            )
            .await?;
        let tags = timeline::periods(digest.as_str(), &rows);
        let page = Page::from_rows(tags, limit, |t: &TagPeriods| Cursor::Tag {
            repository: t.repository.clone(),
            tag: t.tag.clone(),
        });
        Ok(DigestUsage {
            digest: digest.as_str().to_owned(),
            items: page.items,
            next_cursor: page.next_cursor,
        })
    }

    /// The event feed, filtered, in the order events were recorded (or the reverse).
    pub async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        check_filter(filter)?;
        let limit = page.limit()?;
        let after = page.cursor()?.map(Cursor::event).transpose()?;
        let rows = self
            .ledger
            .events_page(filter, order, after, None, i64::from(limit) + 1)
            .await?;
        Ok(Page::from_rows(rows, limit, |e| Cursor::Event(e.id)))
    }

    /// Every event matching `filter`, oldest first, after the event `after_id`, in
    /// batches, up to the newest event when the export started. `limit` caps the count.
    pub async fn export(
        &self,
        filter: EventFilter,
        after_id: Option<i64>,
        limit: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Vec<StoredEvent>, AuditError>> + Send + 'static, AuditError>
    {
        check_filter(&filter)?;
        let after = after_id;
        let up_to = self.ledger.last_event_id().await?;
        let ledger = self.ledger.clone();
        let state = (after, limit.unwrap_or(u64::MAX), false);
        Ok(futures_util::stream::try_unfold(
            state,
            move |(after, left, done)| {
                let (ledger, filter) = (ledger.clone(), filter.clone());
                async move {
                    if done || left == 0 || up_to.is_none() {
                        return Ok(None);
                    }
                    let batch = EXPORT_BATCH.min(i64::try_from(left).unwrap_or(i64::MAX));
                    let rows = ledger
                        .events_page(&filter, Order::Asc, after, up_to, batch)
                        .await?;
                    let done = (rows.len() as i64) < batch;
                    let after = rows.last().map(|e| e.id).or(after);
                    let left = left - rows.len() as u64;
                    if rows.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some((rows, (after, left, done))))
                }
            },
        ))
    }
}

/// The fields of an event that say what it did to its tag's binding.
fn binding_change(e: &StoredEvent) -> BindingChange {
    BindingChange {
        id: e.id,
        at: e.at,
        action: e.action,
        digest: e.digest.clone(),
        reason: e.reason.clone(),
        identity: e.identity.clone(),
        class: e.class.map(|c| c.as_str().to_owned()),
    }
}

fn name(s: &str) -> Result<Name, AuditError> {
    Name::parse(s).map_err(|e| AuditError::Invalid(e.to_string()))
}

fn tag_name(s: &str) -> Result<Tag, AuditError> {
    Tag::parse(s).map_err(|e| AuditError::Invalid(e.to_string()))
}

fn check_filter(f: &EventFilter) -> Result<(), AuditError> {
    if let Some(r) = &f.repository {
        name(r)?;
    }
    if let Some(t) = &f.tag {
        tag_name(t)?;
    }
    if let (Some(since), Some(until)) = (f.since, f.until) {
        if since > until {
            return Err(AuditError::Invalid(format!(
                "since ({}) is after until ({})",
                since.to_rfc3339(),
                until.to_rfc3339()
            )));
        }
    }
    Ok(())
}

//! Where the audit questions are answered: the ledger itself or a tagwarden's audit
//! API, behind one trait so each command is written once for both.

use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat, Utc};

use super::api::ApiClient;
use super::SourceArgs;
use crate::audit::{Audit, DigestUsage, Page, PageRequest, Resolution, TagPeriods};
use crate::ledger::{EventFilter, LedgerReader, Order, StoredEvent};

/// The audit questions. Implemented by the ledger ([`Audit`]) and by the API
/// ([`ApiClient`]); [`Source`] picks one of them once, when the command starts.
#[allow(async_fn_in_trait)] // used within this crate only, never as `dyn`
pub(in crate::cli) trait AuditSource {
    async fn history(
        &self,
        repo: &str,
        tag: &str,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>>;
    async fn resolve(&self, repo: &str, tag: &str, at: DateTime<Utc>)
        -> anyhow::Result<Resolution>;
    async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>>;
    async fn digest(&self, digest: &str, page: PageRequest) -> anyhow::Result<Page<TagPeriods>>;
}

impl SourceArgs {
    pub(in crate::cli) fn open(self) -> anyhow::Result<Source> {
        if let Some(url) = self.api {
            let token = self
                .token
                .ok_or_else(|| anyhow!("--api needs a token: --token or TAGWARDEN_API_TOKEN"))?;
            return Ok(Source::Api(ApiClient::new(&url, token)?));
        }
        let url = self.database_url.ok_or_else(|| {
            anyhow!("say where the ledger is: --database-url (or TAGWARDEN_DATABASE_URL), or --api URL with a token")
        })?;
        let ledger = LedgerReader::connect_read_only(
            &url,
            2,
            Duration::from_secs(10),
            Duration::from_secs(120),
        )?;
        Ok(Source::Ledger(Audit::new(ledger)))
    }
}

/// The ledger itself, or a tagwarden's audit API.
pub(in crate::cli) enum Source {
    Ledger(Audit),
    Api(ApiClient),
}

/// Run `$body` with `$s` bound to whichever source `$source` is.
macro_rules! with_source {
    ($source:expr, $s:ident => $body:expr) => {
        match $source {
            Source::Ledger($s) => $body,
            Source::Api($s) => $body,
        }
    };
}

impl AuditSource for Source {
    async fn history(
        &self,
        repo: &str,
        tag: &str,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        with_source!(self, s => AuditSource::history(s, repo, tag, order, page).await)
    }

    async fn resolve(
        &self,
        repo: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Resolution> {
        with_source!(self, s => AuditSource::resolve(s, repo, tag, at).await)
    }

    async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        with_source!(self, s => AuditSource::events(s, filter, order, page).await)
    }

    async fn digest(&self, digest: &str, page: PageRequest) -> anyhow::Result<Page<TagPeriods>> {
        with_source!(self, s => AuditSource::digest(s, digest, page).await)
    }
}

impl AuditSource for Audit {
    async fn history(
        &self,
        repo: &str,
        tag: &str,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        Ok(Audit::history(self, repo, tag, order, &page).await?)
    }

    async fn resolve(
        &self,
        repo: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Resolution> {
        Ok(Audit::resolve(self, repo, tag, at).await?)
    }

    async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        Ok(Audit::events(self, filter, order, &page).await?)
    }

    async fn digest(&self, digest: &str, page: PageRequest) -> anyhow::Result<Page<TagPeriods>> {
        let usage = Audit::digest(self, digest, &page).await?;
        Ok(Page {
            items: usage.items,
            next_cursor: usage.next_cursor,
        })
    }
}

impl AuditSource for ApiClient {
    async fn history(
        &self,
        repo: &str,
        tag: &str,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        let mut q = vec![
            ("repository", repo.to_owned()),
            ("tag", tag.to_owned()),
            ("order", order_param(order)),
        ];
        page_params(&mut q, &page);
        self.get("history", &q).await
    }

    async fn resolve(
        &self,
        repo: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Resolution> {
        let q = [
            ("repository", repo.to_owned()),
            ("tag", tag.to_owned()),
            ("at", rfc3339(at)),
        ];
        self.get("resolve", &q).await
    }

    async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        let mut q = vec![("order", order_param(order))];
        if let Some(t) = filter.since {
            q.push(("since", rfc3339(t)));
        }
        if let Some(t) = filter.until {
            q.push(("until", rfc3339(t)));
        }
        if let Some(r) = &filter.repository {
            q.push(("repository", r.clone()));
        }
        if let Some(t) = &filter.tag {
            q.push(("tag", t.clone()));
        }
        if !filter.actions.is_empty() {
            let names: Vec<&str> = filter.actions.iter().map(|a| a.as_str()).collect();
            q.push(("action", names.join(",")));
        }
        if let Some(i) = &filter.identity {
            q.push(("identity", i.clone()));
        }
        page_params(&mut q, &page);
        self.get("events", &q).await
    }

    async fn digest(&self, digest: &str, page: PageRequest) -> anyhow::Result<Page<TagPeriods>> {
        let mut q = vec![("digest", digest.to_owned())];
        page_params(&mut q, &page);
        let usage: DigestUsage = self.get("digest", &q).await?;
        Ok(Page {
            items: usage.items,
            next_cursor: usage.next_cursor,
        })
    }
}

fn order_param(order: Order) -> String {
    match order {
        Order::Asc => "asc".into(),
        Order::Desc => "desc".into(),
    }
}

pub(in crate::cli) fn page_params(q: &mut Vec<(&'static str, String)>, page: &PageRequest) {
    if let Some(limit) = page.limit {
        q.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &page.cursor {
        q.push(("cursor", cursor.clone()));
    }
}

pub(in crate::cli) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

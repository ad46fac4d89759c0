//! The audit API's endpoints: read the query, ask [`Audit`], answer JSON. No rules
//! here.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures_util::StreamExt as _;
use http::request::Parts;
use http::{header, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::ApiState;
use crate::audit::filter::{parse_actions, parse_instant};
use crate::audit::{export, DigestUsage, Page, PageRequest, Resolution, TagBinding};
use crate::ledger::{EventFilter, Order, RepositorySummary, StoredEvent};

/// Query parameters, strictly: an unknown or malformed parameter is a 400 in the API's
/// error format.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| Params(v))
            .map_err(|e| ApiError::Invalid(e.body_text()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The page a listing asks for: every listing takes the same `limit` and `cursor`.
fn page_request(limit: Option<u32>, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

pub async fn repositories(
    State(s): State<ApiState>,
    Params(p): Params<PageParams>,
) -> Result<Json<Page<RepositorySummary>>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.repositories(&page).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsParams {
    repository: String,
    #[serde(default)]
    include_deleted: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn tags(
    State(s): State<ApiState>,
    Params(p): Params<TagsParams>,
) -> Result<Json<Page<TagBinding>>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(
        s.audit
            .tags(&p.repository, p.include_deleted, &page)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    repository: String,
    tag: String,
    #[serde(default)]
    order: OrderParam,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `asc`/`oldest` (default) or `desc`/`newest`.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum OrderParam {
    #[default]
    #[serde(alias = "oldest")]
    Asc,
    #[serde(alias = "newest")]
    Desc,
}

impl From<OrderParam> for Order {
    fn from(o: OrderParam) -> Self {
        match o {
            OrderParam::Asc => Order::Asc,
            OrderParam::Desc => Order::Desc,
        }
    }
}

pub async fn history(
    State(s): State<ApiState>,
    Params(p): Params<HistoryParams>,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(
        s.audit
            .history(&p.repository, &p.tag, p.order.into(), &page)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveParams {
    repository: String,
    tag: String,
    /// RFC 3339 or a duration ago; now if absent.
    at: Option<String>,
}

pub async fn resolve(
    State(s): State<ApiState>,
    Params(p): Params<ResolveParams>,
) -> Result<Json<Resolution>, ApiError> {
    let now = Utc::now();
    let at = match p.at.as_deref() {
        None => now,
        Some(at) => parse_instant(at, now).map_err(|e| ApiError::Invalid(format!("at: {e}")))?,
    };
    Ok(Json(s.audit.resolve(&p.repository, &p.tag, at).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestParams {
    digest: String,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn digest(
    State(s): State<ApiState>,
    Params(p): Params<DigestParams>,
) -> Result<Json<DigestUsage>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.digest(&p.digest, &page).await?))
}

/// The filters of the event feed and its export.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    since: Option<String>,
    until: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    /// Comma-separated; `refused` is accepted for `refuse`.
    action: Option<String>,
    identity: Option<String>,
    #[serde(default)]
    order: OrderParam,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl EventsParams {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        let now = Utc::now();
        let instant = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    parse_instant(s, now).map_err(|e| ApiError::Invalid(format!("{name}: {e}")))
                })
                .transpose()
        };
        Ok(EventFilter {
            since: instant("since", &self.since)?,
            until: instant("until", &self.until)?,
            repository: self.repository.clone().filter(|s| !s.is_empty()),
            tag: self.tag.clone().filter(|s| !s.is_empty()),
            actions: match &self.action {
                Some(a) => {
                    parse_actions(a).map_err(|e| ApiError::Invalid(format!("action: {e}")))?
                }
                None => Vec::new(),
            },
            identity: self.identity.clone().filter(|s| !s.is_empty()),
        })
    }
}

pub async fn events(
    State(s): State<ApiState>,
    Params(p): Params<EventsParams>,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let filter = p.filter()?;
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.events(&filter, p.order.into(), &page).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    format: ExportFormat,
    since: Option<String>,
    until: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    action: Option<String>,
    identity: Option<String>,
    /// At most this many events; all if absent.
    limit: Option<u64>,
    /// Only events after this one: the `id` of the last event already exported.
    after_id: Option<i64>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    #[serde(alias = "ndjson", alias = "json-lines")]
    Jsonl,
    Csv,
}

/// Every matching event, oldest first, streamed as JSON lines or CSV.
pub async fn export(
    State(s): State<ApiState>,
    Params(p): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let filter = EventsParams {
        since: p.since,
        until: p.until,
        repository: p.repository,
        tag: p.tag,
        action: p.action,
        identity: p.identity,
        order: OrderParam::Asc,
        limit: None,
        cursor: None,
    }
    .filter()?;
    let batches = s.audit.export(filter, p.after_id, p.limit).await?;
    let format = p.format;
    let header_line = match format {
        ExportFormat::Csv => Some(Ok(Bytes::from(export::csv_header()))),
        ExportFormat::Jsonl => None,
    };
    let body = futures_util::stream::iter(header_line).chain(batches.map(move |batch| {
        let events = batch.map_err(|e| {
            tracing::error!(error = %e, "audit API: export cut short");
            std::io::Error::other(e.to_string())
        })?;
        let mut out = String::new();
        for e in &events {
            out.push_str(&match format {
                ExportFormat::Csv => export::csv_record(e),
                ExportFormat::Jsonl => export::json_line(e),
            });
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    }));
    let (content_type, file) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "tagwarden-events.csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "tagwarden-events.jsonl"),
    };
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")).expect("static name"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

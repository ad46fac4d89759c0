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
use utoipa::IntoParams;

use super::error::ApiError;
use super::ApiState;
use crate::audit::filter::{parse_actions, parse_instant};
use crate::audit::{export, DigestUsage, Page, PageRequest, Resolution, TagBinding};
use crate::ledger::{EventFilter, Order, RepositorySummary, StoredEvent};
use crate::oci::error::chain;

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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The page a listing asks for: every listing takes the same `limit` and `cursor`.
fn page_request(limit: Option<u32>, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

#[utoipa::path(get, path = "/api/v1/repositories", operation_id = "listRepositories",
    summary = "Repositories",
    description = "Every repository the ledger holds bindings for, in name order.",
    params(PageParams),
    responses((status = 200, description = "A page of repositories.", body = super::schemas::RepositoryPage)))]
pub async fn repositories(
    State(s): State<ApiState>,
    Params(p): Params<PageParams>,
) -> Result<Json<Page<RepositorySummary>>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.repositories(&page).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TagsParams {
    #[param(example = "driftwood/web")]
    repository: String,
    /// Also list tags removed from the registry (with `deleted_at`).
    #[serde(default)]
    #[param(default = false)]
    include_deleted: bool,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tags", operation_id = "listTags",
    summary = "Current tag bindings of a repository",
    description = "Each tag's digest, class and since when it names that digest, in tag order. Tags removed from the registry are included with `include_deleted=true`; an immutable tag stays reserved for its digest after a delete.",
    params(TagsParams),
    responses((status = 200, description = "A page of bindings.", body = super::schemas::TagBindingPage)))]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    #[param(example = "driftwood/web")]
    repository: String,
    #[param(example = "1.4")]
    tag: String,
    /// `asc`/`oldest`: oldest first; `desc`/`newest`: newest first.
    #[serde(default)]
    #[param(value_type = super::schemas::OrderValue, inline, default = "asc")]
    order: OrderParam,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The schema of `format`: the aliases are accepted, not advertised.
fn format_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["jsonl", "csv"]))
        .default(Some("jsonl".into()))
        .build()
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

#[utoipa::path(get, path = "/api/v1/history", operation_id = "tagHistory",
    summary = "History of one tag",
    description = "Every event of the tag: create, move, repush, delete, refuse, adopt, warn, drift, repair, retire and restore, oldest first (default) or newest first.",
    params(HistoryParams),
    responses((status = 200, description = "A page of events.", body = super::schemas::EventPage)))]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResolveParams {
    #[param(example = "driftwood/web")]
    repository: String,
    #[param(example = "1.4")]
    tag: String,
    /// RFC 3339 time, or a duration ago (`2h`); now if absent.
    #[param(example = "2026-11-01T23:00:00Z")]
    at: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/resolve", operation_id = "resolveTag",
    summary = "What a tag named at an instant",
    description = "The digest the tag named at `at`: the latest event at or before `at` that set its binding decides. `exists` is false if the tag had not been bound yet or had been deleted then.",
    params(ResolveParams),
    responses((status = 200, description = "The answer; `exists: false` means the tag did not exist then.", body = Resolution)))]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DigestParams {
    #[param(pattern = "^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$")]
    digest: String,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/digest", operation_id = "digestUsage",
    summary = "Every tag that ever named a digest",
    description = "Reverse lookup across every repository, with the periods during which each tag named the digest. Deleted manifests stay answerable: the periods come from the history.",
    params(DigestParams),
    responses((status = 200, description = "A page of tags with their periods.", body = DigestUsage)))]
pub async fn digest(
    State(s): State<ApiState>,
    Params(p): Params<DigestParams>,
) -> Result<Json<DigestUsage>, ApiError> {
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.digest(&p.digest, &page).await?))
}

/// The filters of the event feed and its export.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Events at or after this time: RFC 3339, or a duration ago (`24h`).
    since: Option<String>,
    /// Events before this time: RFC 3339, or a duration ago.
    until: Option<String>,
    /// Only events of this repository.
    repository: Option<String>,
    /// Only events of this tag.
    tag: Option<String>,
    /// Comma-separated actions; past tenses such as `refused` are accepted.
    #[param(example = "refused")]
    action: Option<String>,
    /// Only events by this client identity (Basic user or bearer `sub`).
    identity: Option<String>,
    /// `asc`/`oldest`: oldest first; `desc`/`newest`: newest first.
    #[serde(default)]
    #[param(value_type = super::schemas::OrderValue, inline, default = "asc")]
    order: OrderParam,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
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

#[utoipa::path(get, path = "/api/v1/events", operation_id = "listEvents",
    summary = "Event feed",
    description = "Events in the order they were recorded (or the reverse), filtered by time range, repository, tag, action and identity.",
    params(EventsParams),
    responses((status = 200, description = "A page of events.", body = super::schemas::EventPage)))]
pub async fn events(
    State(s): State<ApiState>,
    Params(p): Params<EventsParams>,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let filter = p.filter()?;
    let page = page_request(p.limit, p.cursor);
    Ok(Json(s.audit.events(&filter, p.order.into(), &page).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    #[param(schema_with = format_schema)]
    format: ExportFormat,
    /// Events at or after this time: RFC 3339, or a duration ago (`24h`).
    since: Option<String>,
    /// Events before this time: RFC 3339, or a duration ago.
    until: Option<String>,
    /// Only events of this repository.
    repository: Option<String>,
    /// Only events of this tag.
    tag: Option<String>,
    /// Comma-separated actions; past tenses such as `refused` are accepted.
    #[param(example = "refused")]
    action: Option<String>,
    /// Only events by this client identity (Basic user or bearer `sub`).
    identity: Option<String>,
    /// At most this many events; all if absent.
    #[param(minimum = 0)]
    limit: Option<u64>,
    /// Only events recorded after the event with this id.
    #[param(minimum = 0)]
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
#[utoipa::path(get, path = "/api/v1/events/export", operation_id = "exportEvents",
    summary = "Export events as JSON lines or CSV",
    description = "Streams every matching event, oldest first, up to the newest event when the export started. To continue an earlier export, pass the `id` of the last event already exported as `after_id`. CSV cells that a spreadsheet would run as a formula are prefixed with `'`.",
    params(ExportParams),
    responses((status = 200, description = "The events.", content(
        (super::schemas::Event = "application/x-ndjson"),
        (String = "text/csv"),
    ))))]
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
            tracing::error!(error = %chain(&e), "audit API: export cut short");
            std::io::Error::other(e)
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

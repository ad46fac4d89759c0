//! `GET /api/v1/pulls`: the pull log, newest first. Only translation between HTTP and
//! [`crate::pulls::query`].

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::handlers::Params;
use super::ApiState;
use crate::audit::filter::parse_instant;
use crate::audit::{Page, PageRequest};
use crate::pulls::{query, Pull, PullFilter};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PullsParams {
    /// Only events of this repository.
    repository: Option<String>,
    /// The tag or digest the client asked for; needs repository.
    reference: Option<String>,
    /// Events at or after this time: RFC 3339, or a duration ago (`24h`).
    since: Option<String>,
    /// Events before this time: RFC 3339, or a duration ago.
    until: Option<String>,
    /// Only events by this client identity (Basic user or bearer `sub`).
    identity: Option<String>,
    /// The digest served (Docker-Content-Digest of the answer).
    digest: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/pulls", operation_id = "listPulls",
    summary = "Pull log",
    description = "Manifest reads (GET and HEAD) tagwarden answered, newest first: who pulled a tag or digest in a window and the digest served, what an identity pulled, the last pulls of a digest. Records are written asynchronously (within about a second) and may be dropped under overload (tagwarden_pulls_dropped_total); days past [pulls] retention are gone.",
    params(PullsParams),
    responses((status = 200, description = "A page of pulls, newest first.", body = super::schemas::PullPage)))]

pub async fn pulls(
    State(s): State<ApiState>,
    Params(p): Params<PullsParams>,
) -> Result<Json<Page<Pull>>, ApiError> {
    let now = Utc::now();
    let instant = |name: &str, v: Option<&str>| {
        v.map(|s| parse_instant(s, now).map_err(|e| ApiError::Invalid(format!("{name}: {e}"))))
            .transpose()
    };
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = PullFilter {
        since: instant("since", p.since.as_deref())?,
        until: instant("until", p.until.as_deref())?,
        repository: given(p.repository),
        reference: given(p.reference),
        identity: given(p.identity),
        digest: given(p.digest),
    };
    let page = PageRequest {
        limit: p.limit,
        cursor: p.cursor,
    };
    Ok(Json(query::pulls(s.audit.ledger(), &filter, &page).await?))
}

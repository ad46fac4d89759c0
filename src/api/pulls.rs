//! `GET /api/v1/pulls`: the pull log, newest first. Only translation between HTTP and
//! [`crate::pulls::query`].

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::error::ApiError;
use super::handlers::Params;
use super::ApiState;
use crate::audit::filter::parse_instant;
use crate::audit::{Page, PageRequest};
use crate::pulls::{query, Pull, PullFilter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsParams {
    repository: Option<String>,
    reference: Option<String>,
    since: Option<String>,
    until: Option<String>,
    identity: Option<String>,
    digest: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

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

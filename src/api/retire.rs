//! `POST /api/v1/retire`: remove an immutable release from the registry, keeping its
//! name reserved. Admin tokens only; recorded with the reason and the token's name.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, ApiState};
use crate::enforce::Retired;
use crate::oci::{Name, Tag};

/// The longest reason recorded.
pub const MAX_REASON: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    #[schema(example = "driftwood/web")]
    pub repository: String,
    #[schema(example = "1.2.0")]
    pub tag: String,
    /// Why: shown in the tag's history and in every refusal of its name.
    #[schema(example = "end of support for 1.2")]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/retire", operation_id = "retireRelease",
    summary = "Retire an immutable release (admin tokens only)",
    description = "Deletes the release's manifest from the registry by digest, with tagwarden's own upstream credentials, and marks its binding retired with the reason and the token's name (a `retire` event). The name stays reserved for its digest: a push of other bytes is refused with 409, a push of the same bytes restores it (a `restore` event). Refused with 409 when another live tag names the digest or a live release's index lists it, since the registry deletes a manifest with every tag naming it.",
    request_body = RetireRequest,
    responses(
        (status = 200, description = "The release was retired.", body = super::schemas::Retired),
        (status = 404, description = "The tag is not a release recorded in the ledger.", body = super::schemas::Errors),
        (status = 409, description = "Not a live immutable release, already retired, or its manifest is needed by another live tag.", body = super::schemas::Errors),
        (status = 502, description = "The registry refused or failed the delete (deletes disabled, credentials); nothing was retired.", body = super::schemas::Errors),
    ))]

pub async fn retire(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<RetireRequest>, JsonRejection>,
) -> Result<Json<Retired>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::Invalid(format!(
            "expected a JSON body {{repository, tag, reason}}: {e}"
        ))
    })?;
    let invalid = |e: crate::oci::reference::ReferenceError| ApiError::Invalid(e.to_string());
    let name = Name::parse(&req.repository).map_err(invalid)?;
    let tag = Tag::parse(&req.tag).map_err(invalid)?;
    let reason = checked_reason(&req.reason)?;
    let who = format!("token:{}", caller.name);
    Ok(Json(state.guard.retire(&name, &tag, reason, &who).await?))
}

/// A reason fit for the history: 1 to [`MAX_REASON`] characters, no control characters.
pub fn checked_reason(reason: &str) -> Result<&str, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "reason must be 1 to {MAX_REASON} characters of text: it is recorded in the tag's history"
        )));
    }
    Ok(reason)
}

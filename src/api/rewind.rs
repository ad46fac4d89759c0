//! `POST /api/v1/rewind`: move a moving tag back to an earlier release, deliberately.
//! Admin tokens only; recorded in the history with the reason and the token's name. A
//! promotion gate is bypassed only on request (`bypass_gates`), and the bypass is
//! recorded in the event's reason.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, ApiState};
use crate::enforce::Rewound;
use crate::oci::{Name, Tag};

/// The longest reason recorded.
const MAX_REASON: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindRequest {
    #[schema(example = "driftwood/web")]
    pub repository: String,
    #[schema(example = "latest")]
    pub tag: String,
    /// The release tag to move back to, e.g. `1.4.0`.
    #[schema(example = "1.4.0")]
    pub to: String,
    /// Why: shown in the tag's history.
    #[schema(example = "1.4.1 breaks logins; INC-2041")]
    pub reason: String,
    /// Move the tag even if one of its promotion gates refuses the release; the bypassed
    /// gate is recorded in the event's reason.
    #[serde(default)]
    #[schema(default = false)]
    pub bypass_gates: bool,
}

#[utoipa::path(post, path = "/api/v1/rewind", operation_id = "rewindTag",
    summary = "Move a moving tag back to an earlier release (admin tokens only)",
    description = "The deliberate way back for an incident: moves a moving tag in the registry to an existing immutable release, with tagwarden's own upstream credentials, and records the move with the reason and the token's name. Tags under `advance = \"semver\"` rules can only go backwards this way.",
    request_body = RewindRequest,
    responses(
        (status = 200, description = "The tag was moved.", body = super::schemas::Rewound),
        (status = 404, description = "`to` is not a release recorded in the ledger.", body = super::schemas::Errors),
        (status = 409, description = "The tag is not a moving tag.", body = super::schemas::Errors),
    ))]

pub async fn rewind(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<RewindRequest>, JsonRejection>,
) -> Result<Json<Rewound>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::Invalid(format!(
            "expected a JSON body {{repository, tag, to, reason}}: {e}"
        ))
    })?;
    let invalid = |e: crate::oci::reference::ReferenceError| ApiError::Invalid(e.to_string());
    let name = Name::parse(&req.repository).map_err(invalid)?;
    let tag = Tag::parse(&req.tag).map_err(invalid)?;
    let to = Tag::parse(&req.to).map_err(invalid)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "reason must be 1 to {MAX_REASON} characters of text: it is recorded in the tag's history"
        )));
    }
    let who = format!("token:{}", caller.name);
    Ok(Json(
        state
            .guard
            .rewind(&name, &tag, &to, reason, &who, req.bypass_gates)
            .await?,
    ))
}

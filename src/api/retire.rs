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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    pub repository: String,
    pub tag: String,
    /// Why: shown in the tag's history and in every refusal of its name.
    pub reason: String,
}

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

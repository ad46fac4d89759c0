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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewindRequest {
    pub repository: String,
    pub tag: String,
    /// The release tag to move back to, e.g. `1.4.0`.
    pub to: String,
    /// Why: shown in the tag's history.
    pub reason: String,
    /// Move the tag even if a promotion gate refuses the release; recorded.
    #[serde(default)]
    pub bypass_gates: bool,
}

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

//! `POST /api/v1/retention`: what the retention rules select, and why the rest stays;
//! with `dry_run = false`, retire it. Admin tokens only (a dry run too: it lists every
//! release of every repository a rule matches).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, ApiState};
use crate::retention::Planned;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// List only; retire nothing.
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionPlan {
    pub dry_run: bool,
    /// Every live release of every repository a retention rule matches.
    #[schema(value_type = Vec<super::schemas::PlannedRelease>)]
    pub releases: Vec<Planned>,
}

#[utoipa::path(post, path = "/api/v1/retention", operation_id = "runRetention",
    summary = "Plan or run the retention rules (admin tokens only)",
    description = "Decides every live release of every repository a `[[retention.rules]]` entry matches: retired when its rule lets it go (older than keep_younger_than, past the newest keep_newest_per_minor of its minor series, not pulled within keep_pulled_within) and no other live tag names its manifest. With `dry_run = false` each selected release is retired as by `/api/v1/retire`, with the rule and its why as the reason.",
    request_body = RetentionRequest,
    responses((status = 200, description = "The plan, with each retirement's outcome when not a dry run.", body = RetentionPlan)))]

pub async fn retention(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<RetentionRequest>, JsonRejection>,
) -> Result<Json<RetentionPlan>, ApiError> {
    let Json(req) =
        body.map_err(|e| ApiError::Invalid(format!("expected a JSON body {{dry_run}}: {e}")))?;
    let now = chrono::Utc::now();
    let releases = if req.dry_run {
        state.retention.plan(now).await?
    } else {
        let who = format!("token:{}", caller.name);
        state.retention.apply(now, &who).await?
    };
    Ok(Json(RetentionPlan {
        dry_run: req.dry_run,
        releases,
    }))
}

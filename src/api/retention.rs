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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// List only; retire nothing.
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RetentionPlan {
    pub dry_run: bool,
    /// Every release of every repository a rule matches.
    pub releases: Vec<Planned>,
}

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

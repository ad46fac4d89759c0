//! The audit API: read-only JSON under `/api/v1/` on the admin listener.
//!
//! Every endpoint but the OpenAPI document needs `Authorization: Bearer <token>` with a
//! token from `[[admin.tokens]]` ([`auth`]). Handlers ([`handlers`]) only translate
//! between HTTP and [`crate::audit::Audit`]; errors are rendered in [`error`].

pub mod auth;
pub mod error;
pub mod handlers;
pub mod log;
pub mod openapi;
pub mod pulls;
pub mod retention;
pub mod retire;
pub mod rewind;
pub mod schemas;

use std::sync::Arc;

use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Router};

use crate::audit::Audit;
pub use auth::Tokens;
pub use error::ApiError;

/// The path prefix of every endpoint.
pub const PREFIX: &str = "/api/v1";

#[derive(Clone)]
pub struct ApiState {
    pub audit: Audit,
    pub tokens: Arc<Tokens>,
    /// For the writes: a deliberate rewind, a retirement.
    pub guard: crate::enforce::Guard,
    /// Retires what the retention rules select.
    pub retention: crate::retention::Retention,
}

/// `(path under PREFIX, handler)` of every authenticated endpoint.
fn endpoints() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        ("/repositories", get(handlers::repositories)),
        ("/tags", get(handlers::tags)),
        ("/history", get(handlers::history)),
        ("/resolve", get(handlers::resolve)),
        ("/digest", get(handlers::digest)),
        ("/events", get(handlers::events)),
        ("/events/export", get(handlers::export)),
        ("/pulls", get(pulls::pulls)),
    ]
}

/// The paths the router serves, for checking the OpenAPI document against.
pub fn paths() -> Vec<String> {
    endpoints()
        .into_iter()
        .map(|(p, _)| format!("{PREFIX}{p}"))
        .chain([
            format!("{PREFIX}/openapi.json"),
            format!("{PREFIX}/rewind"),
            format!("{PREFIX}/retire"),
            format!("{PREFIX}/retention"),
        ])
        .collect()
}

pub fn router(state: ApiState) -> Router {
    if state.tokens.is_empty() {
        tracing::warn!(
            "no [[admin.tokens]] configured: the audit API under {PREFIX}/ refuses every request"
        );
    }
    let mut api = Router::new();
    for (path, handler) in endpoints() {
        api = api.route(path, handler.fallback(method_not_allowed));
    }
    let api = api
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.tokens.clone(),
            auth::require_reader,
        ));
    // The writes, for admins: they move or remove tags in the registry.
    let writes = Router::new()
        .route("/rewind", post(rewind::rewind).fallback(method_not_allowed))
        .route("/retire", post(retire::retire).fallback(method_not_allowed))
        .route(
            "/retention",
            post(retention::retention).fallback(method_not_allowed),
        )
        .layer(middleware::from_fn_with_state(
            state.tokens.clone(),
            auth::require_admin,
        ));
    let api = writes.merge(api).with_state(state);
    Router::new()
        .route(
            &format!("{PREFIX}/openapi.json"),
            get(openapi::document).fallback(method_not_allowed),
        )
        .nest(PREFIX, api)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

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

/// `(path under PREFIX, handler)` of the writes, for admins: they move or remove tags
/// in the registry.
fn writes() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        ("/rewind", post(rewind::rewind)),
        ("/retire", post(retire::retire)),
        ("/retention", post(retention::retention)),
    ]
}

/// The path of the OpenAPI document, served without a token.
fn document_path() -> String {
    format!("{PREFIX}/openapi.json")
}

/// The paths the router serves, for checking the OpenAPI document against: the router
/// is built from the same lists.
pub fn paths() -> Vec<String> {
    endpoints()
        .into_iter()
        .chain(writes())
        .map(|(p, _)| format!("{PREFIX}{p}"))
        .chain([document_path()])
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
    let mut admin = Router::new();
    for (path, handler) in writes() {
        admin = admin.route(path, handler.fallback(method_not_allowed));
    }
    let writes = admin.layer(middleware::from_fn_with_state(
        state.tokens.clone(),
        auth::require_admin,
    ));
    let api = writes.merge(api).with_state(state);
    Router::new()
        .route(
            &document_path(),
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

//! Read-only HTML pages for auditors under `/ui/` on the admin listener: search a
//! repository, a tag or a digest, and follow a tag's timeline of bindings and
//! refusals between tags and digests.
//!
//! The pages show ledger data, so they need the same auditor token as the API: sent as
//! `Authorization: Bearer <token>` by scripts, or entered once in the sign-in form,
//! which sets a session cookie ([`session`]). Without either, every page answers with
//! the sign-in form and nothing from the ledger. Every value is escaped by the
//! templates ([`view`]), and every response forbids scripts, framing and sniffing.
//! Handlers ([`pages`]) only translate between HTTP and [`crate::audit::Audit`].

pub mod pages;
pub mod pulled;
pub mod session;
pub mod view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use chrono::Utc;
use http::{header, HeaderValue, StatusCode};

use crate::api::auth::{run_as, Caller};
use crate::api::ApiError;
use crate::audit::Audit;
pub use session::Sessions;

/// The path prefix of every page.
pub const PREFIX: &str = "/ui";

/// What every page answer carries: no scripts, no external anything, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
pub struct UiState {
    pub audit: Audit,
    pub sessions: Arc<Sessions>,
}

pub fn router(state: UiState) -> Router {
    let not_allowed = pages::method_not_allowed;
    let pages = Router::new()
        .route("/ui/", get(pages::index).fallback(not_allowed))
        .route("/ui/search", get(pages::search).fallback(not_allowed))
        .route("/ui/tag", get(pages::tag).fallback(not_allowed))
        .route("/ui/digest", get(pages::digest).fallback(not_allowed))
        .route(
            "/ui/repository",
            get(pages::repository).fallback(not_allowed),
        )
        .route("/ui/{*rest}", any(pages::not_found))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_reader,
        ));
    Router::new()
        .route(
            "/ui",
            get(|| async { Redirect::to("/ui/") }).fallback(not_allowed),
        )
        .route(
            "/ui/login",
            get(pages::login_form)
                .post(pages::login)
                .fallback(not_allowed),
        )
        .route("/ui/logout", post(pages::logout).fallback(not_allowed))
        .merge(pages)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Why a request gets the sign-in page instead of what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No cookie and no `Authorization` header.
    NoCredentials,
    /// A session cookie that expired, was signed out, or that this process did not
    /// issue.
    SessionEnded,
    /// An `Authorization` header that is not `Bearer <token>`.
    MalformedToken,
    /// A token that is not configured.
    WrongToken,
}

/// Middleware: only auditors get through; everyone else gets the sign-in page.
async fn require_reader(State(s): State<UiState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let found: Result<Caller, Refusal> = if headers.contains_key(header::AUTHORIZATION) {
        match s.sessions.tokens().caller(headers) {
            Ok(c) if c.role.can_read() => Ok(c.clone()),
            Ok(_) | Err(ApiError::Forbidden) => Err(Refusal::WrongToken),
            Err(_) => Err(Refusal::MalformedToken),
        }
    } else {
        match s.sessions.from_headers(headers) {
            None => Err(Refusal::NoCredentials),
            Some(value) => match s.sessions.check(value, Utc::now()) {
                Some(c) if c.role.can_read() => Ok(c.clone()),
                _ => Err(Refusal::SessionEnded),
            },
        }
    };
    let caller = match found {
        Ok(c) => c,
        Err(refusal) => {
            if refusal != Refusal::NoCredentials {
                tracing::warn!(
                    path = req.uri().path(),
                    ?refusal,
                    "audit page: request refused"
                );
            }
            let next = req.uri().path_and_query().map(|p| p.as_str().to_owned());
            return pages::sign_in_required(refusal, next.as_deref());
        }
    };
    run_as(caller, req, next, "audit page").await
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// An HTML answer.
pub fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response()
}

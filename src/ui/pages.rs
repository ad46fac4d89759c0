//! The pages' handlers: read the query, ask [`crate::audit::Audit`], render
//! [`super::view`]. Signing in and out lives here too.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{html, session, view, Refusal, UiState};
use crate::api::auth::Caller;
use crate::audit::{AuditError, PageRequest};
use crate::ledger::Order;
use crate::oci::error::chain;
use crate::pulls::PullFilter;

/// Events per page of a tag's timeline.
pub const TIMELINE_PAGE: u32 = 200;
/// Tags per page of a repository or a digest, and repositories per page of the index.
pub const LIST_PAGE: u32 = 200;

/// Query parameters; a malformed query gets an error page.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| Params(v))
            .map_err(|e| {
                let caller = parts.extensions.get::<Caller>().map(|c| c.name.as_str());
                html(
                    StatusCode::BAD_REQUEST,
                    view::error(caller, "Bad request", &e.body_text()),
                )
            })
    }
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest {
        limit: Some(limit),
        cursor: cursor.filter(|c| !c.is_empty()),
    }
}

/// An error of the audit service, as a page.
fn failed(caller: &Caller, e: AuditError) -> Response {
    let name = Some(caller.name.as_str());
    match e {
        AuditError::Invalid(message) => html(
            StatusCode::BAD_REQUEST,
            view::error(name, "Bad request", &message),
        ),
        AuditError::Ledger(e) if e.is_unavailable() => {
            tracing::warn!(error = %chain(&e), "audit page: ledger unavailable");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                view::error(
                    name,
                    "Ledger unavailable",
                    "The tag ledger is unavailable; try again shortly.",
                ),
            )
        }
        AuditError::Ledger(e) => {
            tracing::error!(error = %chain(&e), "audit page: ledger query failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                view::error(name, "Internal error", "The ledger query failed."),
            )
        }
    }
}

#[derive(Deserialize)]
pub struct IndexParams {
    cursor: Option<String>,
}

pub async fn index(
    State(s): State<UiState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<IndexParams>,
) -> Response {
    let paged = p.cursor.as_deref().is_some_and(|c| !c.is_empty());
    match s.audit.repositories(&page(LIST_PAGE, p.cursor)).await {
        Ok(repos) => html(StatusCode::OK, view::index(&caller.name, &repos, paged)),
        Err(e) => failed(&caller, e),
    }
}

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    digest: String,
}

/// Where the search form leads: a digest's page, a tag's, or a repository's. Also takes
/// `repository:tag` and `repository@digest` in the repository field, and a bare hex
/// SHA-256 as a digest.
pub async fn search(Params(p): Params<SearchParams>) -> Response {
    Redirect::to(&search_target(&p.repository, &p.tag, &p.digest)).into_response()
}

fn search_target(repository: &str, tag: &str, digest: &str) -> String {
    let (mut repository, mut tag, mut digest) = (repository.trim(), tag.trim(), digest.trim());
    if digest.is_empty() && tag.is_empty() {
        if let Some((r, d)) = repository.split_once('@') {
            (repository, digest) = (r, d);
        } else if let Some((r, t)) = repository.rsplit_once(':') {
            (repository, tag) = (r, t);
        }
    }
    if !digest.is_empty() {
        let bare_sha256 = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        return if bare_sha256 {
            view::digest_url(&format!("sha256:{}", digest.to_ascii_lowercase()))
        } else {
            view::digest_url(digest)
        };
    }
    match (repository.is_empty(), tag.is_empty()) {
        (true, _) => "/ui/".to_owned(),
        (false, true) => view::repository_url(repository),
        (false, false) => view::tag_url(repository, tag),
    }
}

#[derive(Deserialize)]
pub struct TagParams {
    repository: String,
    tag: String,
    #[serde(default)]
    order: Option<String>,
    cursor: Option<String>,
}

pub async fn tag(
    State(s): State<UiState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<TagParams>,
) -> Response {
    let newest_first = matches!(p.order.as_deref(), Some("desc" | "newest"));
    let order = if newest_first {
        Order::Desc
    } else {
        Order::Asc
    };
    let binding = match s.audit.binding(&p.repository, &p.tag).await {
        Ok(b) => b,
        Err(e) => return failed(&caller, e),
    };
    let events = match s
        .audit
        .history(&p.repository, &p.tag, order, &page(TIMELINE_PAGE, p.cursor))
        .await
    {
        Ok(events) => events,
        Err(e) => return failed(&caller, e),
    };
    let pulls = last_pulls(
        &s,
        PullFilter {
            repository: Some(p.repository.clone()),
            reference: Some(p.tag.clone()),
            ..PullFilter::default()
        },
    )
    .await;
    let v = view::TagView {
        repository: &p.repository,
        tag: &p.tag,
        binding: binding.as_ref(),
        events: &events,
        newest_first,
        pulls: pulls.as_deref(),
    };
    html(StatusCode::OK, view::tag(&caller.name, &v))
}

#[derive(Deserialize)]
pub struct DigestParams {
    digest: String,
    cursor: Option<String>,
}

pub async fn digest(
    State(s): State<UiState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<DigestParams>,
) -> Response {
    let usage = match s.audit.digest(&p.digest, &page(LIST_PAGE, p.cursor)).await {
        Ok(usage) => usage,
        Err(e) => return failed(&caller, e),
    };
    let pulls = last_pulls(
        &s,
        PullFilter {
            digest: Some(p.digest.clone()),
            ..PullFilter::default()
        },
    )
    .await;
    html(
        StatusCode::OK,
        view::digest(&caller.name, &usage, pulls.as_deref()),
    )
}

/// The last pulls for a page's "Pulled" section; `None` if the log cannot be read,
/// which leaves the rest of the page intact.
async fn last_pulls(s: &UiState, filter: PullFilter) -> Option<Vec<crate::pulls::Pull>> {
    let page = PageRequest::first(super::pulled::SHOWN);
    match crate::pulls::query::pulls(s.audit.ledger(), &filter, &page).await {
        Ok(p) => Some(p.items),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "audit pages: cannot read the pull log");
            None
        }
    }
}

#[derive(Deserialize)]
pub struct RepositoryParams {
    repository: String,
    #[serde(default)]
    include_deleted: bool,
    cursor: Option<String>,
}

pub async fn repository(
    State(s): State<UiState>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<RepositoryParams>,
) -> Response {
    let tags = s
        .audit
        .tags(&p.repository, p.include_deleted, &page(LIST_PAGE, p.cursor))
        .await;
    match tags {
        Ok(tags) => {
            let v = view::RepositoryView {
                repository: &p.repository,
                tags: &tags,
                include_deleted: p.include_deleted,
            };
            html(StatusCode::OK, view::repository(&caller.name, &v))
        }
        Err(e) => failed(&caller, e),
    }
}

pub async fn not_found(Extension(caller): Extension<Caller>) -> Response {
    html(
        StatusCode::NOT_FOUND,
        view::error(Some(&caller.name), "Not found", "There is no such page."),
    )
}

pub async fn method_not_allowed() -> Response {
    html(
        StatusCode::METHOD_NOT_ALLOWED,
        view::error(
            None,
            "Method not allowed",
            "This page only answers GET (signing in and out: POST).",
        ),
    )
}

/// Where to go after signing in: a page under `/ui/` on this listener, nothing else.
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with("/ui/")
            && n.len() <= 2048
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
            && !n.starts_with("/ui/login")
            && !n.starts_with("/ui/logout")
    })
}

/// The sign-in page, in place of a page that needs a token; never any ledger data.
pub fn sign_in_required(refusal: Refusal, next: Option<&str>) -> Response {
    let (status, notice) = match refusal {
        Refusal::NoCredentials => (StatusCode::UNAUTHORIZED, None),
        Refusal::SessionEnded => (
            StatusCode::UNAUTHORIZED,
            Some("Your session has ended. Sign in again."),
        ),
        Refusal::MalformedToken => (
            StatusCode::UNAUTHORIZED,
            Some("The Authorization header must be `Bearer <token>`."),
        ),
        Refusal::WrongToken => (
            StatusCode::FORBIDDEN,
            Some("The token is not allowed to read the ledger."),
        ),
    };
    let mut resp = html(status, view::login(notice, safe_next(next)));
    let h = resp.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tagwarden\""),
        );
    }
    if refusal == Refusal::SessionEnded {
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&session::clear_cookie()).expect("static cookie"),
        );
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginPageParams {
    next: Option<String>,
}

pub async fn login_form(Params(p): Params<LoginPageParams>) -> Response {
    html(
        StatusCode::OK,
        view::login(None, safe_next(p.next.as_deref())),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// A form posted from another site: browsers say so in `Sec-Fetch-Site`.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

pub async fn login(
    State(s): State<UiState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        tracing::warn!("audit page: sign-in form posted from another site refused");
        return html(
            StatusCode::FORBIDDEN,
            view::login(Some("Sign in from this page, not from another site."), None),
        );
    }
    let Ok(Form(f)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            view::login(Some("Enter a token."), None),
        );
    };
    let next = safe_next(f.next.as_deref());
    match s.sessions.sign_in(f.token.trim(), Utc::now()) {
        Some((caller, value)) if caller.role.can_read() => {
            tracing::info!(token = caller.name, "audit page: signed in");
            let mut resp = Redirect::to(next.unwrap_or("/ui/")).into_response();
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&session::set_cookie(&value)).expect("cookie value"),
            );
            resp
        }
        _ => {
            tracing::warn!("audit page: sign-in with a token that is not configured");
            html(
                StatusCode::FORBIDDEN,
                view::login(Some("That token is not accepted."), next),
            )
        }
    }
}

/// Ends the session on the server, so that a copy of the cookie stops working too, and
/// clears the cookie. Without a live session there is nothing to end.
pub async fn logout(State(s): State<UiState>, headers: HeaderMap) -> Response {
    if let Some(caller) = s
        .sessions
        .from_headers(&headers)
        .and_then(|value| s.sessions.sign_out(value, Utc::now()))
    {
        tracing::info!(token = caller.name, "audit page: signed out");
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("static cookie"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_form_leads_to_the_right_page() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            search_target("driftwood/web", "1.4", ""),
            "/ui/tag?repository=driftwood%2Fweb&tag=1.4"
        );
        assert_eq!(
            search_target(" driftwood/web:1.4 ", "", ""),
            "/ui/tag?repository=driftwood%2Fweb&tag=1.4"
        );
        assert_eq!(
            search_target("driftwood/web", "", ""),
            "/ui/repository?repository=driftwood%2Fweb"
        );
        assert_eq!(
            search_target("", "", &d),
            "/ui/digest?digest=sha256%3Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(search_target("", "", &"A".repeat(64)), view::digest_url(&d));
        assert_eq!(
            search_target(&format!("driftwood/web@{d}"), "", ""),
            view::digest_url(&d)
        );
        assert_eq!(search_target("", "", ""), "/ui/");
        assert_eq!(search_target("", "1.4", ""), "/ui/");
    }

    #[test]
    fn only_pages_under_ui_are_places_to_go_after_signing_in() {
        for ok in ["/ui/", "/ui/tag?repository=a%2Fb&tag=1.0"] {
            assert_eq!(safe_next(Some(ok)), Some(ok));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui",
            "/api/v1/events",
            "/ui/\\evil",
            "/ui/ x",
            "/ui/login",
            "/ui/logout",
            "ui/",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_next(None), None);
    }
}

//! Whether a client may write to a repository, asked of the upstream before tagwarden
//! discloses or records anything about the repository's bindings.
//!
//! tagwarden does not authenticate clients; the upstream does. A refusal names the bound
//! digest, when and by whom, and it is recorded for good, so it must only happen for a
//! client that the upstream would have let write: everyone else gets the upstream's own
//! answer (its 401 challenge), exactly as without tagwarden. The same holds for an
//! identical re-push that tagwarden answers itself.
//!
//! For a write, the check starts a blob upload (`POST /v2/<name>/blobs/uploads/`, which
//! needs push access on every registry) with the client's credentials, and cancels it at
//! once. For a delete, it reads what is to be deleted (`HEAD` of the same path): a delete
//! refusal names only the release tags that reach the target, which a client that may
//! read the repository can list itself, and a delete-scoped token need not carry push.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{header, HeaderMap, Method, Request, StatusCode};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::oci::{ErrorCode, Name, OciError};
use crate::proxy::body::Activity;
use crate::proxy::{Client, Forwarder};

/// How long a detected answer to "does the upstream authenticate" is trusted.
const DETECTED_FOR: Duration = Duration::from_secs(60);

/// Whether the upstream authenticates clients: configured, or detected from an
/// anonymous `GET /v2/` (401 means it does, 200 that it is open).
#[derive(Clone)]
pub struct UpstreamAuth {
    configured: Option<bool>,
    detected: Arc<Mutex<Option<(bool, Instant)>>>,
}

impl UpstreamAuth {
    /// `configured`: `Some(true)` or `Some(false)` to state it, `None` to detect it.
    pub fn new(configured: Option<bool>) -> Self {
        UpstreamAuth {
            configured,
            detected: Arc::new(Mutex::new(None)),
        }
    }

    /// `Some(true)` if the upstream authenticates its clients, `Some(false)` if anyone
    /// may use it, `None` if that cannot be told right now (treated as "it does" for
    /// access checks, and as "unverified" for identities).
    pub async fn authenticates(&self, forwarder: &Forwarder) -> Option<bool> {
        if let Some(c) = self.configured {
            return Some(c);
        }
        let mut cached = self.detected.lock().await;
        if let Some((answer, at)) = *cached {
            if at.elapsed() < DETECTED_FOR {
                return Some(answer);
            }
        }
        let answer = detect(forwarder).await;
        if let Some(a) = answer {
            *cached = Some((a, Instant::now()));
        }
        answer
    }
}

async fn detect(forwarder: &Forwarder) -> Option<bool> {
    let req = Request::get(
        forwarder
            .upstream()
            .uri(&http::uri::PathAndQuery::from_static("/v2/")),
    )
    .body(Body::empty())
    .ok()?;
    match forwarder.send(req, &Activity::new(), "manifest").await {
        Ok(resp) => match resp.status() {
            StatusCode::OK => Some(false),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Some(true),
            other => {
                tracing::warn!(status = other.as_u16(), "the upstream's /v2/ answered neither 200 nor 401; cannot tell whether it authenticates");
                None
            }
        },
        Err(_) => None,
    }
}

/// Why a client may not be told about a repository's bindings.
pub enum Denied {
    /// The upstream's own answer (a 401 challenge, a 403): hand it to the client as is.
    Upstream(Box<Response>),
    /// The upstream could not be asked: fail closed.
    Unchecked(OciError),
}

/// Ask the upstream whether the client may push to `name`, with its own credentials.
pub async fn check_push(
    forwarder: &Forwarder,
    name: &Name,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<(), Denied> {
    let path = format!("/v2/{name}/blobs/uploads/");
    let resp = send(forwarder, Method::POST, &path, client_headers, client).await?;
    match resp.status() {
        StatusCode::ACCEPTED => {
            // Cancel the upload session the check opened; the registry forgets it
            // anyway, so a failure here is only logged.
            if let Some(location) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(upload_path)
            {
                match send(forwarder, Method::DELETE, &location, client_headers, client).await {
                    Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {}
                    Ok(r) => {
                        tracing::debug!(
                            status = r.status().as_u16(),
                            "cancelling the access-check upload failed"
                        )
                    }
                    Err(_) => tracing::debug!("cancelling the access-check upload failed"),
                }
            }
            Ok(())
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Denied::Upstream(Box::new(
            forwarder.downstream_response(resp),
        ))),
        other => Err(Denied::Unchecked(cannot_check(&format!(
            "starting an upload to check push access to {name} answered {other}"
        )))),
    }
}

/// Ask the upstream whether the client may read `path` (a manifest or blob it asks to
/// delete), with its own credentials.
pub async fn check_read(
    forwarder: &Forwarder,
    path: &str,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<(), Denied> {
    let resp = send(forwarder, Method::HEAD, path, client_headers, client).await?;
    match resp.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Denied::Upstream(Box::new(
            forwarder.downstream_response(resp),
        ))),
        s if s.is_server_error() => Err(Denied::Unchecked(cannot_check(&format!(
            "reading {path} to check access answered {s}"
        )))),
        _ => Ok(()),
    }
}

/// The path and query of an upload `Location`, relative or absolute.
fn upload_path(location: &str) -> Option<String> {
    let rest = match location.find("://") {
        Some(i) => {
            let after = &location[i + 3..];
            &after[after.find('/')?..]
        }
        None => location,
    };
    rest.starts_with("/v2/").then(|| rest.to_owned())
}

async fn send(
    forwarder: &Forwarder,
    method: Method,
    path_and_query: &str,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<hyper::Response<hyper::body::Incoming>, Denied> {
    let mut req = Request::new(Body::empty());
    *req.method_mut() = method;
    *req.uri_mut() = path_and_query
        .parse()
        .map_err(|_| Denied::Unchecked(cannot_check("building the upstream path")))?;
    if let Some(auth) = client_headers.get(header::AUTHORIZATION) {
        req.headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(0));
    // Registries answer a manifest read in a type the client does not accept with an
    // error; every type is accepted so that only access decides.
    req.headers_mut().insert(
        header::ACCEPT,
        http::HeaderValue::from_static(crate::oci::media::ACCEPT_ALL_MANIFESTS),
    );
    let (parts, body): (Parts, Body) = req.into_parts();
    let req = forwarder.upstream_request(parts, body, client);
    forwarder
        .send(req, &Activity::new(), "manifest")
        .await
        .map_err(|e| Denied::Unchecked(cannot_check(&e.to_string())))
}

fn cannot_check(what: &str) -> OciError {
    OciError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable,
        format!("tagwarden could not check your access with the upstream registry ({what}), so the write was refused; retry shortly"),
    )
    .with_retry_after(5)
}

#[cfg(test)]
mod tests {
    use super::upload_path;

    #[test]
    fn upload_locations_become_upstream_paths() {
        assert_eq!(
            upload_path("http://reg:5000/v2/a/b/blobs/uploads/u1?_state=x").as_deref(),
            Some("/v2/a/b/blobs/uploads/u1?_state=x")
        );
        assert_eq!(
            upload_path("/v2/a/blobs/uploads/u1").as_deref(),
            Some("/v2/a/blobs/uploads/u1")
        );
        assert_eq!(upload_path("http://reg:5000/elsewhere"), None);
        assert_eq!(upload_path("http://reg"), None);
    }
}

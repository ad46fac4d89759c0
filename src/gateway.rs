//! The client-facing request handler: every request is checked here before anything
//! reaches the upstream. Manifest writes and deletes, and blob deletes, go to the
//! [`Guard`]; everything else under `/v2/` streams through the [`Forwarder`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, Method, Request, StatusCode, Version};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::enforce::Guard;
use crate::oci::reference::ReferenceError;
use crate::oci::route::{self, RouteError};
use crate::oci::{ErrorCode, OciError, Route};
use crate::proxy::headers::is_plain_host;
use crate::proxy::{self, Client, Forwarder};
use crate::pulls::PullLog;
use crate::server::Connection;
use crate::telemetry::Metrics;

pub struct Gateway {
    pub forwarder: Forwarder,
    pub guard: Guard,
    pub metrics: Metrics,
    pub pulls: PullLog,
    pub server: ServerConfig,
}

impl Gateway {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Connection) -> Response {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.uri().path());
        async move {
            let started = Instant::now();
            let method = req.method().clone();
            let (kind, mut resp) = self.dispatch(req, conn, &request_id).await;
            let status = resp.status();
            self.metrics.request(kind, &method, status);
            proxy::set_request_id(&mut resp, &request_id);
            if status.is_server_error()
                || (kind == "manifest" && !matches!(method, Method::GET | Method::HEAD))
            {
                tracing::info!(
                    route = kind,
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request"
                );
            } else {
                tracing::debug!(
                    route = kind,
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request"
                );
            }
            resp
        }
        .instrument(span)
        .await
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        conn: Connection,
        request_id: &str,
    ) -> (&'static str, Response) {
        let (mut parts, body) = req.into_parts();
        let checked = check_request(&parts).and_then(|ok| {
            check_framing(&mut parts, &body)?;
            Ok(ok)
        });
        let (route, host) = match checked {
            Ok(ok) => ok,
            Err(e) => return ("rejected", e.into_response()),
        };
        let kind = route.kind();
        let client = Client {
            peer: conn.peer,
            host,
            tls: conn.tls,
            trusted_peer: self.server.is_trusted_proxy(conn.peer.ip()),
            request_id: request_id.to_owned(),
        };
        let body = Body::new(body);
        let resp = match (&route, &parts.method) {
            (Route::Manifest { name, reference }, &Method::PUT) => {
                self.guard
                    .put_manifest(name, reference, parts, body, &client)
                    .await
            }
            (Route::Manifest { name, reference }, &Method::DELETE) => {
                self.guard
                    .delete_manifest(name, reference, parts, &client)
                    .await
            }
            (Route::Blob { name, digest }, &Method::DELETE) => {
                self.guard.delete_blob(name, digest, parts, &client).await
            }
            (Route::Manifest { .. }, m) if m != Method::GET && m != Method::HEAD => {
                method_not_allowed(m, "manifests accept GET, HEAD, PUT and DELETE").into_response()
            }
            _ => {
                let pull = self.pulls.begin(&route, &parts, &client);
                let resp = self.forwarder.forward(parts, body, &client, kind).await;
                if let Some(pull) = pull {
                    self.pulls.finish(pull, &resp);
                }
                resp
            }
        };
        (kind, resp)
    }
}

/// Everything decided before a request may go anywhere: the request target form, the
/// method, the Host, and the path.
fn check_request(parts: &http::request::Parts) -> Result<(Route, Option<String>), OciError> {
    // HTTP/1 absolute-form (`PUT http://elsewhere/v2/...`) would make the registry build
    // URLs for another host; HTTP/2 always carries the authority, which is the Host.
    if parts.version < Version::HTTP_2 && parts.uri.authority().is_some() {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "absolute-form request targets are not accepted: tagwarden is not a forward proxy; send the path only",
        ));
    }
    if !matches!(
        parts.method,
        Method::GET
            | Method::HEAD
            | Method::PUT
            | Method::POST
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    ) {
        return Err(method_not_allowed(
            &parts.method,
            "the OCI distribution API uses GET, HEAD, PUT, POST, PATCH and DELETE",
        ));
    }
    let host = match parts.uri.authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => parts
            .headers
            .get(header::HOST)
            .map(|h| h.to_str().map(str::to_owned).unwrap_or_default()),
    };
    if let Some(h) = &host {
        if !is_plain_host(h) {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                "the Host header is not a plain host[:port]",
            ));
        }
    }
    let route = route::parse(parts.uri.path()).map_err(|e| route_error(e, &parts.method))?;
    Ok((route, host))
}

/// The API gives a DELETE no body. One that announces a body is refused: its framing
/// headers must never reach the upstream with a body tagwarden replaced (2.8 deletes,
/// then waits for the announced bytes while the ledger waits for its answer). A bodiless
/// DELETE loses any `Content-Length: 0` too, so nothing about framing is forwarded.
fn check_framing(parts: &mut http::request::Parts, body: &Incoming) -> Result<(), OciError> {
    use http_body::Body as _;
    if parts.method != Method::DELETE {
        return Ok(());
    }
    if !body.is_end_stream() {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "a DELETE carries no body: send it without Content-Length or Transfer-Encoding",
        ));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(())
}

/// A read of a manifest whose reference is outside the tag grammar answers 404
/// `MANIFEST_UNKNOWN`, as the registry does and as the spec allows (conformance lists only
/// 404 there); writes keep 400, so a pusher learns why. Only manifest paths carry tags,
/// so a tag error is always one. A malformed digest stays 400 `DIGEST_INVALID` on reads
/// too: the registry answers some of those with 500.
fn route_error(e: RouteError, method: &Method) -> OciError {
    let message = e.to_string();
    let (status, code) = match e {
        RouteError::Reference(ReferenceError::Tag(_))
            if matches!(*method, Method::GET | Method::HEAD) =>
        {
            (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown)
        }
        RouteError::NotDistributionApi | RouteError::UnknownEndpoint => {
            (StatusCode::NOT_FOUND, ErrorCode::Unsupported)
        }
        RouteError::NonCanonical(_) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid),
        RouteError::Reference(ReferenceError::Name(_)) => {
            (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid)
        }
        RouteError::Reference(ReferenceError::Tag(_)) => {
            (StatusCode::BAD_REQUEST, ErrorCode::TagInvalid)
        }
        RouteError::Reference(ReferenceError::Digest(_)) => {
            (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid)
        }
    };
    OciError::new(status, code, message)
}

fn method_not_allowed(method: &Method, why: &str) -> OciError {
    let shown: String = method.as_str().chars().take(32).collect();
    OciError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        format!("method {shown:?} is not allowed here: {why}"),
    )
}

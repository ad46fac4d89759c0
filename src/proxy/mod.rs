//! The forwarder: streams a request to the upstream registry and its answer back,
//! keeping the protocol intact (method, path and query byte for byte, auth headers and
//! challenges untouched) while fixing what a proxy must (hop-by-hop headers, forwarding
//! headers, `Location`s that name the upstream).

pub mod body;
pub mod headers;
pub mod upstream;

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, Request, Version};
use hyper::body::Incoming;

use self::body::{Activity, Metered};
use self::headers::ForwardedFor;
pub use self::upstream::{Upstream, UpstreamError};
use crate::oci::OciError;
use crate::telemetry::Metrics;

/// The route name of every request made for a manifest (see `Route::kind`).
pub const MANIFEST_ROUTE: &str = "manifest";

/// Who is on the other end of an inbound request, as tagwarden's listener saw it.
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: SocketAddr,
    /// The validated `host[:port]` the client addressed.
    pub host: Option<String>,
    pub tls: bool,
    pub trusted_peer: bool,
    pub request_id: String,
}

/// Streams requests to the upstream and responses back.
#[derive(Clone)]
pub struct Forwarder {
    upstream: Upstream,
    metrics: Metrics,
}

impl Forwarder {
    pub fn new(upstream: Upstream, metrics: Metrics) -> Self {
        Forwarder { upstream, metrics }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Forward a request whose body streams through untouched.
    pub async fn forward(
        &self,
        parts: Parts,
        body: Body,
        client: &Client,
        route: &'static str,
    ) -> Response {
        let activity = Activity::new();
        let body = Body::new(Metered::new(
            body,
            self.metrics.bytes_up.clone(),
            self.upstream.idle_timeout(),
            Some(activity.clone()),
        ));
        let req = self.upstream_request(parts, body, client);
        match self.send(req, &activity, route).await {
            Ok(resp) => self.downstream_response(resp),
            Err(e) => OciError::from(e).into_response(),
        }
    }

    /// Send an already-prepared upstream request, recording latency.
    ///
    /// A request for a manifest must be answered within the manifest deadline,
    /// however busy the exchange looks: the writes among them hold a ledger connection
    /// and tag locks until the upstream answers.
    pub async fn send(
        &self,
        req: Request<Body>,
        activity: &Activity,
        route: &'static str,
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let started = Instant::now();
        let result = if route == MANIFEST_ROUTE {
            let limit = self.upstream.manifest_timeout();
            tokio::time::timeout(limit, self.upstream.send(req, activity))
                .await
                .unwrap_or(Err(UpstreamError::Timeout(limit)))
        } else {
            self.upstream.send(req, activity).await
        };
        self.metrics.upstream_latency(route, started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(error = %e, "upstream request failed");
        }
        result
    }

    /// Build the upstream request: same method, path and query, end-to-end headers
    /// only, and forwarding headers from tagwarden's own view of the client.
    pub fn upstream_request(&self, parts: Parts, body: Body, client: &Client) -> Request<Body> {
        let Parts {
            method,
            uri,
            mut headers,
            ..
        } = parts;
        headers::strip_hop_by_hop(&mut headers);
        // The client addressed tagwarden; the upstream must see its own name.
        headers.remove(header::HOST);
        headers::set_forwarding(
            &mut headers,
            &ForwardedFor {
                peer: client.peer.ip(),
                host: client.host.as_deref(),
                proto: if client.tls { "https" } else { "http" },
                trusted_peer: client.trusted_peer,
            },
        );
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = self.upstream.uri(&path);
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        req
    }

    /// Turn the upstream's response into the client's: hop-by-hop headers dropped,
    /// `Location`s naming the upstream made relative, body streamed and counted.
    pub fn downstream_response(&self, resp: hyper::Response<Incoming>) -> Response {
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(loc) = parts.headers.get(header::LOCATION) {
            if let Some(rewritten) = headers::rewrite_location(loc, self.upstream.authority()) {
                parts.headers.insert(header::LOCATION, rewritten);
            }
        }
        let body = Body::new(Metered::new(
            body,
            self.metrics.bytes_down.clone(),
            self.upstream.idle_timeout(),
            None,
        ));
        Response::from_parts(parts, body)
    }
}

/// Set the request id on a response so clients and logs can be matched up.
pub fn set_request_id(resp: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
}

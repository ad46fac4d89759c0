//! The HTTP client to the upstream registry: pooled connections, connect and idle
//! timeouts, errors mapped to what a registry client should see.

use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::ConfigBuilderExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::Activity;
use crate::config::UpstreamConfig;
use crate::oci::error::chain;
use crate::oci::{ErrorCode, OciError};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A handle to the upstream registry. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, Body>,
    scheme: Scheme,
    authority: Authority,
    idle_timeout: Duration,
    manifest_timeout: Duration,
}

/// Why the upstream could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream registry is unreachable: {}", chain(.0))]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream registry did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the exchange with the upstream registry failed: {}", chain(.0))]
    Broken(#[source] hyper_util::client::legacy::Error),
}

/// The registry cannot answer now: 502 (504 for a timeout) with `Retry-After`. Logged
/// where the upstream request failed, so no source is attached.
impl From<&UpstreamError> for OciError {
    fn from(e: &UpstreamError) -> Self {
        let status = match e {
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Unreachable(_) | UpstreamError::Broken(_) => StatusCode::BAD_GATEWAY,
        };
        OciError::new(status, ErrorCode::Unavailable, e.to_string()).with_retry_after(5)
    }
}

impl From<UpstreamError> for OciError {
    fn from(e: UpstreamError) -> Self {
        OciError::from(&e)
    }
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let uri: Uri = config.url.parse()?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("upstream.url has no host"))?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()?
        .with_webpki_roots()
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(Upstream {
            client,
            scheme,
            authority,
            idle_timeout: config.idle_timeout,
            manifest_timeout: config.manifest_timeout,
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Longest a request made for a manifest may wait for the upstream's answer.
    pub fn manifest_timeout(&self) -> Duration {
        self.manifest_timeout
    }

    /// The upstream URI for a path and query taken byte for byte from the client.
    pub fn uri(&self, path_and_query: &PathAndQuery) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query.clone())
            .build()
            .expect("scheme, authority and path are each valid")
    }

    /// Send a request, waiting for the response head as long as the exchange keeps
    /// moving (`activity` is touched by the request body as it streams).
    pub async fn send(
        &self,
        req: Request<Body>,
        activity: &Activity,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let fut = self.client.request(req);
        tokio::pin!(fut);
        loop {
            let deadline = activity.last() + self.idle_timeout;
            tokio::select! {
                res = &mut fut => return res.map_err(classify),
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + self.idle_timeout <= tokio::time::Instant::now() {
                        return Err(UpstreamError::Timeout(self.idle_timeout));
                    }
                }
            }
        }
    }
}

fn classify(e: hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Unreachable(e)
    } else {
        UpstreamError::Broken(e)
    }
}

//! The one client tagwarden asks the upstream registry with, for itself: what a tag
//! points to, which tags and repositories there are (following `Link`), a manifest by
//! digest (its bytes checked against it), and its own writes and deletes of manifests.
//!
//! Used by enforcement (with the client's credentials, so a protected registry does not
//! look empty), by follow, rewind and repair (with tagwarden's own), and by import and
//! reconciliation (own, paced). Every answer body is bounded, every exchange is bounded
//! by `upstream.manifest_timeout`, and every failure is one [`RegistryError`].

mod error;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

pub use self::error::{cannot_check, ErrorKind, RegistryError};
use crate::config::Config;
use crate::oci::media::ACCEPT_ALL_MANIFESTS;
use crate::oci::reference::Algorithm;
use crate::oci::{Digest, Name, Tag};
use crate::proxy::body::Activity;
use crate::proxy::{Client, Forwarder, Upstream, MANIFEST_ROUTE};
use crate::reconcile::pace::Pacer;

/// The largest page of `_catalog` or `tags/list` read.
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// The most pages one listing follows, unless the caller asks for fewer.
pub const MAX_PAGES: usize = 10_000;

/// Whose credentials a request carries.
#[derive(Clone)]
enum Credentials {
    /// `upstream.username` / `upstream.password`.
    Own,
    /// The `Authorization` of the client whose request this check is for, forwarded
    /// with the forwarding headers of that client.
    Client {
        authorization: Option<HeaderValue>,
        client: Client,
    },
}

/// A manifest read by digest, its bytes checked.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub content_type: Option<HeaderValue>,
}

/// Asks the upstream registry. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    forwarder: Forwarder,
    own_authorization: Option<HeaderValue>,
    /// `limits.max_manifest_bytes`: a manifest read is bounded like a push.
    max_manifest_bytes: usize,
    pace: Option<Arc<Pacer>>,
    credentials: Credentials,
}

/// An answer whose body was read (2xx only; otherwise empty).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl RegistryClient {
    /// A client with tagwarden's own credentials.
    pub fn new(
        forwarder: Forwarder,
        own_authorization: Option<HeaderValue>,
        max_manifest_bytes: usize,
    ) -> Self {
        RegistryClient {
            forwarder,
            own_authorization,
            max_manifest_bytes,
            pace: None,
            credentials: Credentials::Own,
        }
    }

    /// A client with tagwarden's own credentials, for the command line.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let forwarder = Forwarder::new(
            Upstream::new(&config.upstream)?,
            crate::telemetry::Metrics::install(),
        );
        Ok(Self::new(
            forwarder,
            config.upstream.authorization(),
            config.limits.max_manifest_bytes,
        ))
    }

    /// Every request waits for a slot of `pacer` first.
    pub fn paced(mut self, pacer: Pacer) -> Self {
        self.pace = Some(Arc::new(pacer));
        self
    }

    /// The same client, asking with the credentials of the client that sent
    /// `headers` instead of tagwarden's own.
    pub fn as_client(&self, headers: &HeaderMap, client: &Client) -> RegistryClient {
        RegistryClient {
            credentials: Credentials::Client {
                authorization: headers.get(header::AUTHORIZATION).cloned(),
                client: client.clone(),
            },
            ..self.clone()
        }
    }

    fn error(&self, doing: String, kind: ErrorKind) -> RegistryError {
        RegistryError {
            doing,
            own_credentials: matches!(self.credentials, Credentials::Own),
            kind,
        }
    }

    /// What `name:tag` points to; `None` if the registry does not hold it. Without a
    /// `Docker-Content-Digest` on the HEAD, the digest is the hash of the manifest a
    /// GET answers with 200: anything else is an error, never a guess.
    pub async fn resolve(&self, name: &Name, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let path = format!("/v2/{name}/manifests/{tag}");
        let doing = || format!("checking what {name}:{tag} points to");
        let head = self
            .exchange(Method::HEAD, &path, Body::empty(), HeaderMap::new(), None)
            .await
            .map_err(|k| self.error(doing(), k))?;
        match head.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(self.error(doing(), refused(s, &head.headers))),
        }
        if let Some(d) = head
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s).ok())
        {
            return Ok(Some(d));
        }
        let doing = || format!("reading {name}:{tag}");
        let get = self
            .get(&path, self.max_manifest_bytes)
            .await
            .map_err(|k| self.error(doing(), k))?;
        if get.status != StatusCode::OK {
            return Err(self.error(doing(), refused(get.status, &get.headers)));
        }
        Ok(Some(Digest::of(Algorithm::Sha256, &get.body)))
    }

    /// The bytes of `name@digest`, checked against the digest; `None` if the registry
    /// does not hold it.
    pub async fn manifest(
        &self,
        name: &Name,
        digest: &Digest,
    ) -> Result<Option<Manifest>, RegistryError> {
        let doing = || format!("reading {name}@{digest}");
        let answer = self
            .get(
                &format!("/v2/{name}/manifests/{digest}"),
                self.max_manifest_bytes,
            )
            .await
            .map_err(|k| self.error(doing(), k))?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(self.error(doing(), refused(s, &answer.headers))),
        }
        let actual = Digest::of(digest.algorithm(), &answer.body);
        if actual != *digest {
            return Err(self.error(doing(), ErrorKind::DigestMismatch { actual }));
        }
        Ok(Some(Manifest {
            content_type: answer.headers.get(header::CONTENT_TYPE).cloned(),
            bytes: answer.body,
        }))
    }

    /// Write `bytes` under `name:tag`; succeeds only if the registry stored them as
    /// `digest`.
    pub async fn put_manifest(
        &self,
        name: &Name,
        tag: &Tag,
        digest: &Digest,
        bytes: Bytes,
        content_type: HeaderValue,
    ) -> Result<(), RegistryError> {
        let doing = || format!("writing {name}:{tag}");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        let answer = self
            .exchange(
                Method::PUT,
                &format!("/v2/{name}/manifests/{tag}"),
                Body::from(bytes),
                headers,
                None,
            )
            .await
            .map_err(|k| self.error(doing(), k))?;
        if !answer.status.is_success() {
            return Err(self.error(doing(), refused(answer.status, &answer.headers)));
        }
        match answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(stored) if stored != digest.as_str() => Err(self.error(
                doing(),
                ErrorKind::StoredAs {
                    stored: stored.to_owned(),
                    expected: digest.clone(),
                },
            )),
            _ => Ok(()),
        }
    }

    /// Delete the manifest `name@digest`; `false` if the registry did not hold it.
    pub async fn delete_manifest(
        &self,
        name: &Name,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let doing = || format!("deleting {name}@{digest}");
        let answer = self
            .exchange(
                Method::DELETE,
                &format!("/v2/{name}/manifests/{digest}"),
                Body::empty(),
                HeaderMap::new(),
                None,
            )
            .await
            .map_err(|k| self.error(doing(), k))?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.error(doing(), refused(s, &answer.headers))),
        }
    }

    /// The tags of `name`, page by page (`n` per page when given).
    pub fn tags(&self, name: &Name, n: Option<u32>) -> Pages<'_> {
        let path = match n {
            Some(n) => format!("/v2/{name}/tags/list?n={n}"),
            None => format!("/v2/{name}/tags/list"),
        };
        Pages::new(self, path, "tags", format!("listing the tags of {name}"))
    }

    /// The repositories of the registry, page by page (`n` per page when given).
    pub fn catalog(&self, n: Option<u32>) -> Pages<'_> {
        let path = match n {
            Some(n) => format!("/v2/_catalog?n={n}"),
            None => "/v2/_catalog".to_owned(),
        };
        Pages::new(self, path, "repositories", "listing the catalog".into())
    }

    /// A GET whose 2xx body is read up to `limit` bytes.
    async fn get(&self, path: &str, limit: usize) -> Result<Answer, ErrorKind> {
        self.exchange(
            Method::GET,
            path,
            Body::empty(),
            HeaderMap::new(),
            Some(limit),
        )
        .await
    }

    /// One request, bounded by the manifest deadline from its start to the end of its
    /// body. A 2xx body is read up to `limit` bytes (none for `None`); others are not.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Body,
        extra: HeaderMap,
        limit: Option<usize>,
    ) -> Result<Answer, ErrorKind> {
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
        let deadline = self.forwarder.upstream().manifest_timeout();
        let exchange = async {
            let req = self.request(method, path, body, extra)?;
            let resp = self
                .forwarder
                .send(req, &Activity::new(), MANIFEST_ROUTE)
                .await?;
            let (parts, body) = resp.into_parts();
            let body = match limit {
                Some(limit) if parts.status.is_success() => {
                    read_bounded(body, &parts.headers, limit).await?
                }
                _ => Bytes::new(),
            };
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or(Err(ErrorKind::Upstream(
                crate::proxy::UpstreamError::Timeout(deadline),
            )))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        mut headers: HeaderMap,
    ) -> Result<Request<Body>, ErrorKind> {
        let path: PathAndQuery = path
            .parse()
            .map_err(|_| ErrorKind::BadPath(path.to_owned()))?;
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(ACCEPT_ALL_MANIFESTS),
        );
        match &self.credentials {
            Credentials::Own => {
                if let Some(auth) = &self.own_authorization {
                    headers.insert(header::AUTHORIZATION, auth.clone());
                }
                let mut req = Request::new(body);
                *req.method_mut() = method;
                *req.uri_mut() = self.forwarder.upstream().uri(&path);
                *req.headers_mut() = headers;
                Ok(req)
            }
            Credentials::Client {
                authorization,
                client,
            } => {
                if let Some(auth) = authorization {
                    headers.insert(header::AUTHORIZATION, auth.clone());
                }
                let mut req = Request::new(body);
                *req.method_mut() = method;
                *req.uri_mut() = path.into();
                *req.headers_mut() = headers;
                let (parts, body) = req.into_parts();
                Ok(self.forwarder.upstream_request(parts, body, client))
            }
        }
    }
}

/// An answer a request cannot use: 401 and 403 keep the registry's challenges.
fn refused(status: StatusCode, headers: &HeaderMap) -> ErrorKind {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        ErrorKind::Denied {
            status,
            challenges: headers
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .cloned()
                .collect(),
        }
    } else {
        ErrorKind::Status(status)
    }
}

/// Read at most `limit` bytes: an announced length over it is refused before reading,
/// and a body that runs over it is cut off where it does.
async fn read_bounded<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ErrorKind>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(ErrorKind::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ErrorKind::TooLarge { limit })
        }
        Err(e) => Err(ErrorKind::Body(e)),
    }
}

/// A paginated listing (`_catalog` or `tags/list`), following `Link: <...>;
/// rel="next"` on the registry itself.
pub struct Pages<'a> {
    client: &'a RegistryClient,
    next: Option<String>,
    field: &'static str,
    doing: String,
    read: usize,
    max_pages: usize,
}

impl<'a> Pages<'a> {
    fn new(client: &'a RegistryClient, first: String, field: &'static str, doing: String) -> Self {
        Pages {
            client,
            next: Some(first),
            field,
            doing,
            read: 0,
            max_pages: MAX_PAGES,
        }
    }

    /// Follow at most `n` pages; a listing with more is an error.
    pub fn at_most(mut self, n: usize) -> Self {
        self.max_pages = n;
        self
    }

    /// The entries of the next page; `None` after the last (or if the registry does not
    /// know the repository).
    pub async fn next(&mut self) -> Result<Option<Vec<String>>, RegistryError> {
        let Some(path) = self.next.take() else {
            return Ok(None);
        };
        let (client, doing) = (self.client, self.doing.clone());
        let fail = move |kind| client.error(doing.clone(), kind);
        if self.read >= self.max_pages {
            return Err(fail(ErrorKind::TooManyPages(self.max_pages)));
        }
        self.read += 1;
        let answer = client.get(&path, MAX_PAGE_BYTES).await.map_err(&fail)?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(fail(refused(s, &answer.headers))),
        }
        let page: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| fail(ErrorKind::Invalid(e)))?;
        let entries = page
            .get(self.field)
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.next = crate::oci::link::next_page(&answer.headers);
        Ok(Some(entries))
    }

    /// Every entry of every page.
    pub async fn all(mut self) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        while let Some(page) = self.next().await? {
            out.extend(page);
        }
        Ok(out)
    }
}

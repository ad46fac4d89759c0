//! Asking the upstream what it holds, with the client's own credentials: what a tag
//! points to, and which tags a repository has.

use axum::body::Body;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::ledger::LedgerTx;
use crate::oci::media::ACCEPT_ALL_MANIFESTS;
use crate::oci::reference::Digest;
use crate::oci::{Name, OciError, Tag};
use crate::policy::{Policy, TagClass};
use crate::proxy::body::Activity;
use crate::proxy::{Client, Forwarder};

/// What the upstream says a tag points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Absent,
    Present(Digest),
}

/// The most tag-list pages followed when searching a repository.
const MAX_TAG_PAGES: usize = 1000;
/// The largest tag-list page read.
const MAX_TAG_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The most unrecorded immutable tags resolved for one delete.
const MAX_RESOLVED_TAGS: usize = 4096;

/// What `name:tag` points to in the upstream. All four manifest media types are
/// accepted (the registry answers 404 or 400 otherwise) and the client's
/// `Authorization` is sent, or a protected registry would look empty.
pub async fn resolve(
    forwarder: &Forwarder,
    name: &Name,
    tag: &str,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<Probe, OciError> {
    let path = format!("/v2/{name}/manifests/{tag}");
    let resp = request(forwarder, Method::HEAD, &path, client_headers, client).await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(Probe::Absent),
        s => {
            return Err(unexpected(
                s,
                &resp,
                &format!("checking what {name}:{tag} points to"),
            ))
        }
    }
    if let Some(d) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Digest::parse(s).ok())
    {
        return Ok(Probe::Present(d));
    }
    // No digest header: fetch the manifest and hash it ourselves.
    let resp = request(forwarder, Method::GET, &path, client_headers, client).await?;
    if resp.status() != StatusCode::OK {
        return Err(unexpected(
            resp.status(),
            &resp,
            &format!("reading {name}:{tag}"),
        ));
    }
    let bytes = Limited::new(resp.into_body(), MAX_TAG_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| cannot_check(&format!("reading {name}:{tag}: {e}")))?
        .to_bytes();
    Ok(Probe::Present(Digest::of(
        crate::oci::reference::Algorithm::Sha256,
        &bytes,
    )))
}

/// Tags of `name` in the upstream that policy makes immutable, that the ledger has no
/// binding for, and that point at `digest`: a delete of that digest would remove them.
/// Each candidate is resolved, so an unrecorded release naming some other digest
/// neither refuses the delete nor is taken for one of the tags it removes.
pub async fn unrecorded_immutable_tags(
    forwarder: &Forwarder,
    policy: &Policy,
    tx: &mut LedgerTx,
    name: &Name,
    digest: &Digest,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<Vec<Tag>, OciError> {
    let mut found = Vec::new();
    let mut resolved = 0usize;
    let mut path = format!("/v2/{name}/tags/list");
    for _ in 0..MAX_TAG_PAGES {
        let resp = request(forwarder, Method::GET, &path, client_headers, client).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(found);
        }
        if resp.status() != StatusCode::OK {
            return Err(unexpected(
                resp.status(),
                &resp,
                &format!("listing the tags of {name}"),
            ));
        }
        let next = crate::oci::link::next_page(resp.headers());
        let bytes = Limited::new(resp.into_body(), MAX_TAG_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| cannot_check(&format!("listing the tags of {name}: {e}")))?
            .to_bytes();
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList = serde_json::from_slice(&bytes)
            .map_err(|e| cannot_check(&format!("the tag list of {name} is not valid: {e}")))?;
        for t in list.tags.unwrap_or_default() {
            let Ok(tag) = Tag::parse(&t) else { continue };
            if policy.classify(name.as_str(), tag.as_str()).class != TagClass::Immutable {
                continue;
            }
            if tx
                .binding(name.as_str(), tag.as_str())
                .await
                .map_err(|e| cannot_check(&e.to_string()))?
                .is_some()
            {
                continue;
            }
            resolved += 1;
            if resolved > MAX_RESOLVED_TAGS {
                return Err(cannot_check(&format!(
                    "{name} has more than {MAX_RESOLVED_TAGS} immutable tags the ledger has not recorded; run tagwarden import"
                )));
            }
            if resolve(forwarder, name, tag.as_str(), client_headers, client).await?
                == Probe::Present(digest.clone())
            {
                found.push(tag);
            }
        }
        match next {
            Some(n) => path = n,
            None => return Ok(found),
        }
    }
    Err(cannot_check(&format!(
        "the tag list of {name} has more than {MAX_TAG_PAGES} pages"
    )))
}

/// The bytes of `name@digest` in the upstream, checked against the digest; `None` if the
/// registry does not hold it. Bounded by the manifest size limit.
pub async fn fetch_manifest(
    forwarder: &Forwarder,
    name: &Name,
    digest: &Digest,
    max_bytes: usize,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<Option<bytes::Bytes>, OciError> {
    let path = format!("/v2/{name}/manifests/{digest}");
    let doing = format!("reading {name}@{digest}");
    let resp = request(forwarder, Method::GET, &path, client_headers, client).await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(None),
        s => return Err(unexpected(s, &resp, &doing)),
    }
    let bytes = Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| cannot_check(&format!("{doing}: {e}")))?
        .to_bytes();
    if Digest::of(digest.algorithm(), &bytes) != *digest {
        return Err(cannot_check(&format!(
            "{doing}: the bytes served do not hash to the digest"
        )));
    }
    Ok(Some(bytes))
}

async fn request(
    forwarder: &Forwarder,
    method: Method,
    path: &str,
    client_headers: &HeaderMap,
    client: &Client,
) -> Result<hyper::Response<hyper::body::Incoming>, OciError> {
    let mut headers = HeaderMap::new();
    if let Some(auth) = client_headers.get(header::AUTHORIZATION) {
        headers.insert(header::AUTHORIZATION, auth.clone());
    }
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(ACCEPT_ALL_MANIFESTS),
    );
    let mut req = Request::new(Body::empty());
    *req.method_mut() = method;
    *req.uri_mut() = path
        .parse()
        .map_err(|_| cannot_check("building the upstream path"))?;
    *req.headers_mut() = headers;
    let (parts, body): (Parts, Body) = req.into_parts();
    let req = forwarder.upstream_request(parts, body, client);
    forwarder
        .send(req, &Activity::new(), "manifest")
        .await
        .map_err(|e| {
            let mut err = e.to_oci();
            err.message = format!("{}; the write was refused because tagwarden could not check what the registry holds", err.message);
            err
        })
}

/// An answer the probe cannot use. An auth challenge is passed to the client as is, so
/// it can authenticate and retry; anything else fails closed.
fn unexpected(
    status: StatusCode,
    resp: &hyper::Response<hyper::body::Incoming>,
    doing: &str,
) -> OciError {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let mut e = OciError::new(
            status,
            if status == StatusCode::UNAUTHORIZED { "UNAUTHORIZED" } else { "DENIED" },
            format!("the registry refused tagwarden's check with your credentials while {doing}; authenticate with pull access to this repository and retry"),
        );
        for v in resp.headers().get_all(header::WWW_AUTHENTICATE) {
            e = e.with_header(header::WWW_AUTHENTICATE, v.clone());
        }
        return e;
    }
    cannot_check(&format!("{doing}: the registry answered {status}"))
}

pub(super) fn cannot_check(what: &str) -> OciError {
    OciError::new(
        StatusCode::BAD_GATEWAY,
        "UNAVAILABLE",
        format!("tagwarden could not check the upstream registry ({what}), so the write was refused; retry shortly"),
    )
    .with_retry_after(5)
}

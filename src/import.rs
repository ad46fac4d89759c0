//! `tagwarden import`: record every tag already in the registry, so that release tags
//! pushed before tagwarden are protected from the first day.
//!
//! Walks `_catalog` and each repository's `tags/list`, asks what each tag points to,
//! and adopts into the ledger every tag it has no binding for. Existing bindings are
//! never changed; where the registry disagrees with one, it is reported.

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::config::Config;
use crate::ledger::{Action, Actor, Ledger, ManifestRef, NewBinding, NewEvent};
use crate::oci::media::ACCEPT_ALL_MANIFESTS;
use crate::oci::{Digest, Name, OciError, Tag};
use crate::policy::{Policy, TagClass};
use crate::proxy::body::Activity;
use crate::proxy::Upstream;

/// The most pages followed in one listing, and the largest page read.
const MAX_PAGES: usize = 10_000;
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub repositories: usize,
    pub adopted: usize,
    pub already_recorded: usize,
    /// `repository:tag` whose ledger binding differs from what the registry serves.
    pub conflicts: Vec<String>,
    /// `repository:tag` that could not be read (skipped, with the reason).
    pub skipped: Vec<String>,
}

/// Talks to the upstream with tagwarden's own credentials. Shared with
/// [`crate::reconcile`], which walks the registry the same way.
pub(crate) struct Registry {
    upstream: Upstream,
    authorization: Option<HeaderValue>,
    /// `limits.max_manifest_bytes`: a manifest read to hash it is bounded like a push.
    max_manifest_bytes: usize,
    /// Paces every request (reconciliation); an import runs unpaced.
    pace: Option<crate::reconcile::pace::Pacer>,
}

impl Registry {
    pub(crate) fn new(
        config: &Config,
        pace: Option<crate::reconcile::pace::Pacer>,
    ) -> anyhow::Result<Self> {
        Ok(Registry {
            upstream: Upstream::new(&config.upstream)?,
            authorization: config.upstream.authorization(),
            max_manifest_bytes: config.limits.max_manifest_bytes,
            pace,
        })
    }

    /// One request; the answer's body is read up to `limit` bytes (an error beyond).
    async fn get(
        &self,
        method: Method,
        path: &str,
        limit: usize,
    ) -> anyhow::Result<(StatusCode, http::HeaderMap, bytes::Bytes)> {
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
        let mut req = Request::new(Body::empty());
        *req.method_mut() = method;
        *req.uri_mut() = self.upstream.uri(&path.parse()?);
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static(ACCEPT_ALL_MANIFESTS),
        );
        if let Some(auth) = &self.authorization {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let resp = self.upstream.send(req, &Activity::new()).await?;
        let (parts, body) = resp.into_parts();
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading {path} (at most {limit} bytes): {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// Every entry of a paginated listing (`_catalog` or `tags/list`), following `Link`.
    pub(crate) async fn list(&self, first: &str, field: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut path = first.to_owned();
        for _ in 0..MAX_PAGES {
            let (status, headers, body) = self.get(Method::GET, &path, MAX_PAGE_BYTES).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(out);
            }
            if status != StatusCode::OK {
                anyhow::bail!("GET {path}: the registry answered {status}{}", hint(status));
            }
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            if let Some(items) = page.get(field).and_then(|v| v.as_array()) {
                out.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
            match crate::oci::link::next_page(&headers) {
                Some(next) => path = next,
                None => return Ok(out),
            }
        }
        anyhow::bail!("{first}: more than {MAX_PAGES} pages")
    }

    /// The digest `tag` names in the registry, `None` if it names nothing. Without a
    /// `Docker-Content-Digest` on the HEAD, the digest is the hash of the manifest a GET
    /// answers with 200: anything else (an error page, a body over the manifest limit)
    /// is an error, so that the tag is skipped rather than bound to the wrong bytes.
    pub(crate) async fn resolve(&self, name: &Name, tag: &Tag) -> anyhow::Result<Option<Digest>> {
        let path = format!("/v2/{name}/manifests/{tag}");
        let (status, headers, _) = self.get(Method::HEAD, &path, 0).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => anyhow::bail!("HEAD {path}: the registry answered {s}{}", hint(s)),
        }
        if let Some(d) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            return Ok(Some(Digest::parse(d)?));
        }
        let (status, _, body) = self
            .get(Method::GET, &path, self.max_manifest_bytes)
            .await?;
        if status != StatusCode::OK {
            anyhow::bail!(
                "HEAD {path} named no digest and GET answered {status}{}",
                hint(status)
            );
        }
        Ok(Some(Digest::of(
            crate::oci::reference::Algorithm::Sha256,
            &body,
        )))
    }
}

impl Registry {
    /// What the release `name@digest` references, for the delete checks; a manifest
    /// the registry no longer holds references nothing.
    async fn references(&self, name: &Name, digest: &Digest) -> anyhow::Result<Vec<ManifestRef>> {
        let fetch = |d: Digest| async move {
            let path = format!("/v2/{name}/manifests/{d}");
            match self.get(Method::GET, &path, self.max_manifest_bytes).await {
                Ok((StatusCode::OK, _, bytes)) => Ok(Some(bytes)),
                Ok((StatusCode::NOT_FOUND, _, _)) => Ok(None),
                Ok((s, _, _)) => Err(format!("GET {path}: the registry answered {s}")),
                Err(e) => Err(format!("GET {path}: {e}")),
            }
            .map_err(|m| OciError::new(StatusCode::BAD_GATEWAY, "UNAVAILABLE", m))
        };
        let top = match fetch(digest.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?
        {
            Some(top) if Digest::of(digest.algorithm(), &top) == *digest => top,
            Some(_) => anyhow::bail!("{name}@{digest}: the registry served other bytes"),
            None => return Ok(Vec::new()),
        };
        crate::enforce::collect_references(&top, false, fetch)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))
    }
}

fn hint(status: StatusCode) -> &'static str {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        " (set upstream.username and upstream.password to an account that can list the catalog)"
    } else {
        ""
    }
}

/// Import every tag of every repository the upstream lists.
pub async fn run(config: &Config, ledger: &Ledger) -> anyhow::Result<Summary> {
    let policy = Policy::from_config(&config.policy)?;
    let registry = Registry::new(config, None)?;
    let actor = Actor {
        identity: config
            .upstream
            .username
            .as_ref()
            .map(|u| format!("import:{u}"))
            .or(Some("import".into())),
        verified: true,
        ..Actor::default()
    };

    let mut summary = Summary::default();
    for repo in registry.list("/v2/_catalog", "repositories").await? {
        let Ok(name) = Name::parse(&repo) else {
            summary
                .skipped
                .push(format!("{repo}: not a valid repository name"));
            continue;
        };
        summary.repositories += 1;
        for t in registry
            .list(&format!("/v2/{name}/tags/list"), "tags")
            .await?
        {
            let Ok(tag) = Tag::parse(&t) else {
                summary.skipped.push(format!("{name}:{t}: not a valid tag"));
                continue;
            };
            let digest = match registry.resolve(&name, &tag).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    summary.skipped.push(format!("{name}:{tag}: {e}"));
                    continue;
                }
            };
            let decision = policy.classify(name.as_str(), tag.as_str());
            let mut tx = ledger.begin().await?;
            tx.lock(name.as_str(), &[tag.as_str()]).await?;
            match tx.binding(name.as_str(), tag.as_str()).await? {
                Some(b) if b.deleted_at.is_none() && b.digest == digest.as_str() => {
                    summary.already_recorded += 1
                }
                Some(b) if b.deleted_at.is_none() => {
                    summary.conflicts.push(format!(
                        "{name}:{tag}: ledger {} registry {digest}",
                        b.digest
                    ));
                }
                _ => {
                    tx.bind(&NewBinding {
                        repository: name.as_str(),
                        tag: tag.as_str(),
                        digest: digest.as_str(),
                        class: decision.class,
                        rule: &decision.rule,
                        bound_by: None,
                    })
                    .await?;
                    if decision.class == TagClass::Immutable {
                        // Unread references are read at the first delete instead.
                        match registry.references(&name, &digest).await {
                            Ok(refs) => {
                                tx.record_references(name.as_str(), digest.as_str(), &refs)
                                    .await?
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "{name}:{tag}: references not recorded")
                            }
                        }
                    }
                    tx.append(
                        &NewEvent {
                            tag: Some(tag.as_str()),
                            digest: Some(digest.as_str()),
                            class: Some(decision.class),
                            rule: Some(&decision.rule),
                            reason: Some("import"),
                            policy_hash: Some(policy.hash()),
                            ..NewEvent::new(Action::Adopt, name.as_str())
                        },
                        &actor,
                    )
                    .await?;
                    summary.adopted += 1;
                }
            }
            tx.commit().await?;
        }
    }
    Ok(summary)
}

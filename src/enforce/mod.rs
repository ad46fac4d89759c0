//! Enforcement of tag policy on every manifest write and delete, and blob delete.
//!
//! [`write`] decides and carries out a manifest write: read, lock, fetch the facts,
//! [`plan`] (pure), then refuse or forward, bind and commit. [`delete`] and [`blob`] do
//! the same for deletes, [`advance`] for the moves tagwarden makes itself (follow,
//! rewind). Before any refusal discloses or records a binding, [`access`] asks the
//! upstream whether the client may push at all.
//!
//! If tagwarden dies anywhere in between, the database drops the locks and the
//! uncommitted transaction; the next attempt reconciles with the upstream. If the
//! ledger cannot be reached, writes are refused with 503: fail closed.

mod access;
mod advance;
mod append;
mod blob;
mod delete;
mod facts;
mod gates;
pub(crate) mod identity;
mod limiter;
mod manifest;
mod plan;
mod probe;
mod reach;
mod refusal;
mod repush;
mod retire;
mod retries;
mod tags;
mod write;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use crate::ledger::{Actor, Ledger, LedgerError, LedgerTx, NewEvent};
use crate::oci::error::chain;
use crate::oci::{Digest, ErrorCode, Name, OciError, Reference};
use crate::policy::live::LivePolicy;
use crate::policy::Policy;
use crate::proxy::body::Activity;
use crate::proxy::{Client, Forwarder};
use crate::registry::RegistryClient;
use crate::telemetry::Metrics;

pub use access::UpstreamAuth;
pub use advance::Rewound;
pub use gates::outlook as promotion_outlook;
pub use manifest::ReadBounds;
pub use probe::Probe;
pub use reach::collect as collect_references;
pub use retire::Retired;

use self::access::Denied;
use self::limiter::{Admit, RefusalLimiter};
use self::retries::FormatRetries;

/// Decides and records manifest writes and deletes.
#[derive(Clone)]
pub struct Guard {
    /// The policy in force; each request pins a snapshot of it in `policy`.
    live: LivePolicy,
    /// The snapshot this request decides with (see [`Guard::pinned`]).
    policy: Arc<Policy>,
    ledger: Ledger,
    forwarder: Forwarder,
    metrics: Metrics,
    max_manifest_bytes: usize,
    read_bounds: ReadBounds,
    /// Asks the upstream: with tagwarden's own credentials for the writes it makes
    /// itself, with a client's (`as_client`) for the checks of its requests.
    registry: RegistryClient,
    /// tagwarden's own upstream credentials, for the checks a retirement makes with them.
    own_authorization: Option<HeaderValue>,
    /// Whether the upstream authenticates clients: decides whether an identity counts
    /// as verified and whether push access must be checked before a refusal.
    auth: UpstreamAuth,
    refusals: Arc<RefusalLimiter>,
    /// Closed when the transparency log is not anchored (see `crate::tlog::anchor`).
    log_gate: crate::tlog::anchor::Gate,
    retries: Arc<FormatRetries>,
    /// `[enforce] ledger_complete`: a new immutable tag may skip the existence probe
    /// when the ledger proves it unnecessary (see `crate::ledger::pending`).
    ledger_complete: bool,
}

impl Guard {
    pub fn new(
        policy: LivePolicy,
        ledger: Ledger,
        forwarder: Forwarder,
        metrics: Metrics,
        max_manifest_bytes: usize,
        read_bounds: ReadBounds,
        own_authorization: Option<HeaderValue>,
    ) -> Self {
        let registry = RegistryClient::new(
            forwarder.clone(),
            own_authorization.clone(),
            max_manifest_bytes,
        );
        Guard {
            policy: policy.current(),
            live: policy,
            ledger,
            forwarder,
            metrics,
            max_manifest_bytes,
            read_bounds,
            registry,
            own_authorization,
            auth: UpstreamAuth::new(None),
            refusals: Arc::default(),
            log_gate: crate::tlog::anchor::Gate::default(),
            retries: Arc::default(),
            ledger_complete: false,
        }
    }

    /// The policy handle that reloads replace.
    pub fn live_policy(&self) -> &LivePolicy {
        &self.live
    }

    /// A copy of this guard that decides with the policy in force now, from the start of
    /// a request to its end, whatever reloads happen meanwhile.
    fn pinned(&self) -> Guard {
        Guard {
            policy: self.live.current(),
            ..self.clone()
        }
    }

    /// Refuse manifest writes whenever `gate` is closed.
    pub fn with_log_gate(mut self, gate: crate::tlog::anchor::Gate) -> Self {
        self.log_gate = gate;
        self
    }

    /// Trust the operator's `[enforce] ledger_complete` assertion.
    pub fn with_ledger_complete(mut self, complete: bool) -> Self {
        self.ledger_complete = complete;
        self
    }

    /// State whether the upstream authenticates (`upstream.authenticates`), instead of
    /// detecting it.
    pub fn with_upstream_auth(mut self, auth: UpstreamAuth) -> Self {
        self.auth = auth;
        self
    }

    /// `PUT /v2/<name>/manifests/<reference>[?tag=...]`
    pub async fn put_manifest(
        &self,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        body: Body,
        client: &Client,
    ) -> Response {
        let (guard, name, reference, client) = (
            self.pinned(),
            name.clone(),
            reference.clone(),
            client.clone(),
        );
        detached(async move { guard.try_put(&name, &reference, parts, body, &client).await }).await
    }

    /// `DELETE /v2/<name>/manifests/<reference>`
    pub async fn delete_manifest(
        &self,
        name: &Name,
        reference: &Reference,
        parts: Parts,
        client: &Client,
    ) -> Response {
        let (guard, name, reference, client) = (
            self.pinned(),
            name.clone(),
            reference.clone(),
            client.clone(),
        );
        detached(async move { guard.try_delete(&name, &reference, parts, &client).await }).await
    }

    /// Whether the identity of a request the upstream accepted counts as verified: only
    /// when the upstream is known to authenticate. An open registry accepts any
    /// `-u alice:wrong`, so there the name is only what the client claimed.
    async fn verified(&self, actor: &Actor) -> bool {
        actor.identity.is_some() && self.auth.authenticates(&self.forwarder).await == Some(true)
    }

    /// Before a refusal names bindings or is recorded: `Some(answer)` when the client may
    /// not push to the repository (a write) or read what it deletes (a delete), the
    /// upstream's own answer to hand on instead. A client the upstream accepted counts as
    /// verified where the upstream authenticates.
    pub(super) async fn before_refusing(
        &self,
        name: &Name,
        parts: &Parts,
        client: &Client,
        actor: &mut Actor,
    ) -> Result<Option<Response>, OciError> {
        match self.check_access(name, parts, client).await {
            Ok(()) => {
                actor.verified = self.verified(actor).await;
                Ok(None)
            }
            Err(Denied::Upstream(resp)) => Ok(Some(*resp)),
            Err(Denied::Unchecked(e)) => Err(e),
        }
    }

    /// Before anything about a repository's bindings is disclosed or recorded: may this
    /// client push to it (a write), or read what it deletes (a delete)? Open upstreams
    /// let everyone do both.
    async fn check_access(
        &self,
        name: &Name,
        parts: &Parts,
        client: &Client,
    ) -> Result<(), Denied> {
        if self.auth.authenticates(&self.forwarder).await == Some(false) {
            return Ok(());
        }
        if parts.method == http::Method::DELETE {
            return access::check_read(&self.forwarder, parts.uri.path(), &parts.headers, client)
                .await;
        }
        access::check_push(&self.forwarder, name, &parts.headers, client).await
    }

    /// Whether to record a refusal of `tag` for this client, or only count it.
    fn admit_refusal(&self, repo: &str, tag: &str, actor: &Actor) -> bool {
        let who = client_key(actor);
        match self.refusals.admit(repo, tag, who) {
            Admit::Record => true,
            Admit::Skip { first } => {
                self.metrics.refusal_unrecorded();
                if first {
                    tracing::warn!(repository = repo, tag, client = who, "refusals of this tag for this client exceed {} a minute; further ones this minute are answered but not recorded", limiter::PER_WINDOW);
                }
                false
            }
        }
    }

    /// Whether a refused manifest write is a client's retry, in another format, of one
    /// just refused and recorded (see [`retries`]): answered, but not recorded again.
    fn is_format_retry(&self, repo: &str, tag: &str, manifest: &[u8], actor: &Actor) -> bool {
        let retry = self
            .retries
            .is_retry(repo, tag, client_key(actor), manifest);
        if retry {
            self.metrics.refusal_coalesced();
            tracing::info!(
                repository = repo,
                tag,
                "the same push in another format, refused again; recorded once"
            );
        }
        retry
    }

    /// Send the manifest bytes upstream in place of the client's (already consumed) body.
    ///
    /// The upstream gets the `Content-Type` tagwarden checked and the length of the bytes
    /// it hashed, even if the client listed those headers in `Connection` (which makes
    /// the proxy drop them as hop-by-hop): without a type, the registry would parse the
    /// body as some other kind of manifest than the one that was checked.
    async fn send_manifest(
        &self,
        mut parts: Parts,
        bytes: bytes::Bytes,
        client: &Client,
    ) -> Result<hyper::Response<hyper::body::Incoming>, OciError> {
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        parts.headers.remove(header::TRANSFER_ENCODING);
        let length = HeaderValue::from(bytes.len());
        let mut req = self
            .forwarder
            .upstream_request(parts, Body::from(bytes), client);
        req.headers_mut().insert(header::CONTENT_LENGTH, length);
        if let Some(ct) = content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        self.forwarder
            .send(req, &Activity::new(), "manifest")
            .await
            .map_err(OciError::from)
    }

    /// Record refusals and commit. A refusal is decided whatever happens to its record:
    /// failing to record it is logged, not turned into an error the developer would
    /// misread as a reason to retry.
    async fn record_refusal(&self, mut tx: LedgerTx, events: Vec<NewEvent<'_>>, actor: &Actor) {
        self.metrics.decision("refused");
        for event in &events {
            if let Err(e) = tx.append(event, actor).await {
                tracing::error!(error = %chain(&e), "could not record a refusal in the ledger");
                return;
            }
        }
        if let Err(e) = tx.commit().await {
            tracing::error!(error = %chain(&e), "could not record a refusal in the ledger");
        }
    }
}

/// Run an enforcement future to its end even if the client goes away.
///
/// Once a write is forwarded, "upstream answer → bind → record → commit" must not be
/// stopped halfway: a client that resets its stream or connection drops the request
/// future, and with it the commit, while the registry keeps what it stored. A spawned
/// task is not dropped with the request; every step in it is bounded by its own
/// timeouts (upstream, ledger statements).
async fn detached(
    fut: impl Future<Output = Result<Response, OciError>> + Send + 'static,
) -> Response {
    match tokio::spawn(fut).await {
        Ok(answer) => answer.unwrap_or_else(IntoResponse::into_response),
        Err(e) => OciError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "tagwarden failed while handling this manifest request; nothing was bound; retry",
        )
        .with_source(e)
        .into_response(),
    }
}

/// A digest the ledger recorded. The ledger only records digests that parsed, so one
/// that does not is a fault of tagwarden's: a 500, not the client's 400.
fn recorded_digest(digest: &str) -> Result<Digest, OciError> {
    Digest::parse(digest).map_err(|e| {
        OciError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            e.to_string(),
        )
    })
}

/// A binding is only confirmed when the upstream stored the digest tagwarden computed.
fn check_stored_digest(
    resp: &hyper::Response<hyper::body::Incoming>,
    digest: &Digest,
) -> Result<(), OciError> {
    match resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
        Some(stored) if stored != digest.as_str() => Err(OciError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!("the upstream registry stored the manifest as {stored}, not as {digest}; no tag was bound"),
        )),
        _ => Ok(()),
    }
}

/// A ledger failure as the client sees it. The database being unreachable, shutting
/// down, or too busy (a lock or statement timeout, a read-only server after a failover)
/// is a 503 to retry; anything else is a fault of tagwarden's, a 500 that says so rather
/// than inviting the client to retry into the same bug. The ledger's error is kept as the
/// source, logged once when the answer is made.
impl From<LedgerError> for OciError {
    fn from(e: LedgerError) -> Self {
        let answer = if e.is_unavailable() {
            OciError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the tag ledger is unavailable, so manifest writes are refused until it is back (pulls are unaffected); retry shortly",
            )
            .with_retry_after(5)
        } else {
            OciError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                "tagwarden could not record this write in its ledger (an internal error, logged); nothing was bound",
            )
        };
        answer.with_source(e)
    }
}

/// Who a refusal is counted against: the identity, else the client's address.
fn client_key(actor: &Actor) -> &str {
    actor
        .identity
        .as_deref()
        .or(actor.remote_addr.as_deref())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_ledger_is_a_503_to_retry_and_a_failed_statement_a_500() {
        let down = OciError::from(LedgerError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (down.status, down.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        );
        assert!(down
            .headers
            .iter()
            .any(|(n, v)| n == http::header::RETRY_AFTER && v == "5"));
        let bug = OciError::from(LedgerError::from(sqlx::Error::ColumnNotFound(
            "secret_column".into(),
        )));
        assert_eq!(
            (bug.status, bug.code),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown)
        );
        assert!(bug.headers.is_empty(), "no Retry-After into the same bug");
        assert!(
            !bug.message.contains("secret_column"),
            "the statement's error is logged, not shown: {}",
            bug.message
        );
    }

    #[test]
    fn the_ledger_error_stays_the_source_of_the_answer() {
        let bug = OciError::from(LedgerError::from(sqlx::Error::ColumnNotFound(
            "secret_column".into(),
        )));
        let source = std::error::Error::source(&bug).expect("the ledger's error");
        let ledger = source.downcast_ref::<LedgerError>().expect("a LedgerError");
        assert!(matches!(
            ledger,
            LedgerError::Statement(sqlx::Error::ColumnNotFound(_))
        ));
        let line = crate::oci::error::chain(source);
        assert!(line.starts_with("ledger query failed: "), "{line}");
        assert!(line.contains("secret_column"), "{line}");
    }
}

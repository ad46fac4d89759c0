//! Why a request of the registry client failed, and the one place it becomes an answer
//! to a client.

use http::{header, HeaderValue, StatusCode};

use crate::oci::{Digest, ErrorCode, OciError};
use crate::proxy::UpstreamError;

/// A failed request of [`super::RegistryClient`]: what it was doing, with whose
/// credentials, and why it failed (kept as the source).
#[derive(Debug)]
pub struct RegistryError {
    /// What the request was for, e.g. "listing the tags of app".
    pub doing: String,
    /// Made with tagwarden's own credentials (`upstream.username`), not a client's.
    pub own_credentials: bool,
    pub kind: ErrorKind,
}

/// The ways a registry request fails.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// Unreachable, timed out, or the exchange broke.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// 401 or 403, with the registry's challenges to hand on.
    #[error("the registry answered {status}")]
    Denied {
        status: StatusCode,
        challenges: Vec<HeaderValue>,
    },
    /// Any other answer the request cannot use.
    #[error("the registry answered {0}")]
    Status(StatusCode),
    #[error("the answer is larger than tagwarden reads (at most {limit} bytes)")]
    TooLarge { limit: usize },
    #[error("the answer could not be read: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the bytes served do not hash to the digest (they hash to {actual})")]
    DigestMismatch { actual: Digest },
    #[error("the registry stored the manifest as {stored}, not as {expected}")]
    StoredAs { stored: String, expected: Digest },
    #[error("the listing is not valid: {0}")]
    Invalid(#[source] serde_json::Error),
    #[error("the request path {0:?} is not valid")]
    BadPath(String),
    #[error("the listing has more than {0} pages")]
    TooManyPages(usize),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.doing, self.kind)?;
        if self.own_credentials && matches!(self.kind, ErrorKind::Denied { .. }) {
            f.write_str(" (check upstream.username and upstream.password)")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// The answer a client gets when tagwarden could not ask the registry what it needed.
/// With the client's own credentials a 401 or 403 is handed on with its challenges, so
/// the client can authenticate and retry; everything else fails closed with 502 (504
/// for a timeout) and `Retry-After`.
impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> Self {
        match &e.kind {
            ErrorKind::Upstream(u) => {
                let mut err = OciError::from(u);
                if !e.own_credentials {
                    err.message = format!("{}; the write was refused because tagwarden could not check what the registry holds", err.message);
                }
                err
            }
            ErrorKind::Denied { status, challenges } if !e.own_credentials => {
                let code = if *status == StatusCode::UNAUTHORIZED {
                    ErrorCode::Unauthorized
                } else {
                    ErrorCode::Denied
                };
                let mut err = OciError::new(
                    *status,
                    code,
                    format!("the registry refused tagwarden's check with your credentials while {}; authenticate with pull access to this repository and retry", e.doing),
                );
                for v in challenges {
                    err = err.with_header(header::WWW_AUTHENTICATE, v.clone());
                }
                err
            }
            _ if e.own_credentials => OciError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::Unavailable,
                e.to_string(),
            )
            .with_retry_after(5),
            _ => cannot_check(&e.to_string()),
        }
    }
}

/// Refuse a write whose facts could not be read from the registry: fail closed.
pub fn cannot_check(what: &str) -> OciError {
    OciError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable,
        format!("tagwarden could not check the upstream registry ({what}), so the write was refused; retry shortly"),
    )
    .with_retry_after(5)
}

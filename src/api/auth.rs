//! Bearer tokens for the audit API. Tokens come from `[[admin.tokens]]`; only their
//! SHA-256 hashes are kept, and a presented token is compared with every one of them in
//! constant time. No token configured: every request is refused.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::error::ApiError;
use crate::config::{ApiToken, Role};

/// Who made an API request: the name of the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

struct Entry {
    hash: [u8; 32],
    caller: Caller,
}

/// The configured tokens.
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    pub fn new(config: &[ApiToken]) -> Self {
        Tokens {
            entries: config
                .iter()
                .map(|t| Entry {
                    hash: hash(t.token.expose()),
                    caller: Caller {
                        name: t.name.clone(),
                        role: t.role,
                    },
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a token belongs to. Every configured token is compared, each in
    /// constant time, whatever matches: timing tells nothing about how close a guess
    /// came or which entry matched.
    pub fn authenticate(&self, presented: &str) -> Option<&Caller> {
        let presented = hash(presented);
        self.find(|token_hash| token_hash.ct_eq(&presented))
    }

    /// The caller whose token's SHA-256 hash `is_theirs` accepts. Like
    /// [`Tokens::authenticate`], every entry is asked, whatever matches; `is_theirs`
    /// should compare in constant time.
    pub fn find(&self, is_theirs: impl Fn(&[u8; 32]) -> Choice) -> Option<&Caller> {
        let mut found = None;
        for entry in &self.entries {
            if bool::from(is_theirs(&entry.hash)) {
                found = Some(&entry.caller);
            }
        }
        found
    }

    /// The caller of a request, from its `Authorization: Bearer <token>` header.
    pub fn caller(&self, headers: &HeaderMap) -> Result<&Caller, ApiError> {
        let token = bearer_token(headers)?;
        self.authenticate(token).ok_or(ApiError::Forbidden)
    }
}

/// The SHA-256 hash of a token: what is kept of it.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 section 2.1).
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(ApiError::MissingToken)?;
    if values.next().is_some() {
        return Err(ApiError::MalformedToken);
    }
    let value = value.to_str().map_err(|_| ApiError::MalformedToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MalformedToken)?;
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.chars().all(b64token) {
        return Err(ApiError::MalformedToken);
    }
    Ok(token)
}

/// Middleware: only callers whose role may read the ledger get through.
pub async fn require_reader(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    authorize(&tokens, req, next, Role::can_read).await
}

/// Middleware: only callers whose role may move tags (admins) get through.
pub async fn require_admin(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    authorize(&tokens, req, next, Role::can_rewind).await
}

async fn authorize(
    tokens: &Tokens,
    req: Request,
    next: Next,
    allowed: fn(Role) -> bool,
) -> Response {
    let caller = match tokens.caller(req.headers()) {
        Ok(c) if allowed(c.role) => c.clone(),
        Ok(c) => {
            tracing::warn!(
                path = req.uri().path(),
                token = c.name,
                role = c.role.as_str(),
                "audit API: role not allowed"
            );
            return ApiError::Forbidden.into_response();
        }
        Err(e) => {
            tracing::warn!(path = req.uri().path(), reason = %e, "audit API: request refused");
            return e.into_response();
        }
    };
    run_as(caller, req, next, "audit API").await
}

/// Hands the request on with its caller attached and logs who asked what: the API's and
/// the audit pages' middlewares end alike once they know the caller.
pub(crate) async fn run_as(
    caller: Caller,
    mut req: Request,
    next: Next,
    surface: &'static str,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    tracing::info!(
        token = caller.name,
        role = caller.role.as_str(),
        %method,
        path,
        status = resp.status().as_u16(),
        "{surface} request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use http::HeaderValue;

    fn tokens() -> Tokens {
        Tokens::new(&[
            ApiToken {
                name: "siem".into(),
                token: Secret::new("s1em-token-0123456789"),
                role: Role::Auditor,
            },
            ApiToken {
                name: "alice".into(),
                token: Secret::new("alice-token-abcdefghij"),
                role: Role::Auditor,
            },
        ])
    }

    fn with_auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_configured_token_names_its_holder() {
        let t = tokens();
        let c = t
            .caller(&with_auth(&["Bearer alice-token-abcdefghij"]))
            .unwrap();
        assert_eq!(c.name, "alice");
        let c = t
            .caller(&with_auth(&["bearer s1em-token-0123456789"]))
            .unwrap();
        assert_eq!(c.name, "siem", "the scheme is case-insensitive");
    }

    #[test]
    fn missing_malformed_and_wrong_tokens_are_told_apart() {
        let t = tokens();
        assert!(matches!(
            t.caller(&HeaderMap::new()),
            Err(ApiError::MissingToken)
        ));
        for bad in [
            "alice-token-abcdefghij",
            "Basic YWxpY2U6cHc=",
            "Bearer",
            "Bearer ",
            "Bearer  alice-token-abcdefghij",
            "Bearer alice-token abcdefghij",
            "Bearer alice-token-abcdefghij\t",
        ] {
            assert!(
                matches!(t.caller(&with_auth(&[bad])), Err(ApiError::MalformedToken)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            t.caller(&with_auth(&[
                "Bearer alice-token-abcdefghij",
                "Bearer alice-token-abcdefghij"
            ])),
            Err(ApiError::MalformedToken)
        ));
        for wrong in [
            "Bearer alice-token-abcdefghiJ",
            "Bearer alice-token-abcdefghij0",
            "Bearer alice-token-abcdefghi",
        ] {
            assert!(
                matches!(t.caller(&with_auth(&[wrong])), Err(ApiError::Forbidden)),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn with_no_tokens_configured_nothing_gets_in() {
        let t = Tokens::new(&[]);
        assert!(t.is_empty());
        assert!(t.authenticate("").is_none());
        assert!(matches!(
            t.caller(&with_auth(&["Bearer anything-at-all-123456"])),
            Err(ApiError::Forbidden)
        ));
    }
}

//! Errors of the audit API, rendered in one place as
//! `{"errors":[{"code": "...", "message": "..."}]}`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::audit::AuditError;
use crate::ledger::LedgerError;

/// The challenge sent with every 401 (RFC 6750).
const REALM: &str = "Bearer realm=\"tagwarden\"";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization` header.
    #[error("a bearer token is required: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedToken,
    /// A well-formed token that is not configured, or whose role may not do this.
    #[error("the token is not allowed to read the ledger")]
    Forbidden,
    /// A bad parameter, cursor or limit.
    #[error("{0}")]
    Invalid(String),
    #[error("no such endpoint; see /api/v1/openapi.json")]
    NotFound,
    #[error("method not supported here; see /api/v1/openapi.json")]
    MethodNotAllowed,
    #[error("the tag ledger is unavailable; try again shortly")]
    Unavailable,
    /// A tag operation the policy or the registry refused; carries its own status.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Anything else: logged, never shown.
    #[error("internal error")]
    Internal,
}

impl From<crate::oci::OciError> for ApiError {
    fn from(e: crate::oci::OciError) -> Self {
        ApiError::Refused {
            status: e.status,
            code: e.code,
            message: e.message,
        }
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MissingToken | ApiError::MalformedToken => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "DENIED"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ApiError::Refused { status, code, .. } => (*status, *code),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid(message) => ApiError::Invalid(message),
            AuditError::Ledger(e) => e.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            // Includes queries cancelled after admin.query_timeout (SQLSTATE 57014).
            LedgerError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "audit API: ledger unavailable");
                ApiError::Unavailable
            }
            LedgerError::Query(detail) => {
                tracing::error!(error = %detail, "audit API: ledger query failed");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "errors": [{ "code": code, "message": self.to_string() }] });
        let mut resp = (status, Json(body)).into_response();
        let challenge = match self {
            ApiError::MissingToken => Some(REALM.to_owned()),
            ApiError::MalformedToken => Some(format!("{REALM}, error=\"invalid_request\"")),
            _ => None,
        };
        if let Some(c) = challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&c).expect("static challenge"),
            );
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

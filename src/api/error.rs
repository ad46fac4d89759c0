//! Errors of the audit API, rendered in one place as
//! `{"errors":[{"code": "...", "message": "..."}]}`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::audit::AuditError;
use crate::ledger::LedgerError;
use crate::oci::error::chain;
use crate::oci::ErrorCode;

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
    /// A tag operation the policy or the registry refused; carries its own status.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: ErrorCode,
        message: String,
    },
    /// The ledger failed: unavailable (503), or a fault of tagwarden's (500). The
    /// ledger's error is logged with its chain when the answer is made, never shown.
    #[error("{}", if .0.is_unavailable() { UNAVAILABLE } else { "internal error" })]
    Ledger(#[source] LedgerError),
}

const UNAVAILABLE: &str = "the tag ledger is unavailable; try again shortly";

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
    fn status_and_code(&self) -> (StatusCode, ApiCode) {
        use ApiCode::Oci;
        match self {
            ApiError::MissingToken | ApiError::MalformedToken => {
                (StatusCode::UNAUTHORIZED, Oci(ErrorCode::Unauthorized))
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, Oci(ErrorCode::Denied)),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, ApiCode::InvalidParameter),
            ApiError::NotFound => (StatusCode::NOT_FOUND, ApiCode::NotFound),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, Oci(ErrorCode::Unsupported))
            }
            ApiError::Refused { status, code, .. } => (*status, Oci(*code)),
            ApiError::Ledger(e) if e.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, Oci(ErrorCode::Unavailable))
            }
            ApiError::Ledger(_) => (StatusCode::INTERNAL_SERVER_ERROR, ApiCode::Internal),
        }
    }
}

/// The `code` of an API error: an OCI code, or one of the three the API has of its own
/// (the distribution spec has no code for a bad query parameter, an unknown endpoint or
/// an internal fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCode {
    Oci(ErrorCode),
    InvalidParameter,
    NotFound,
    Internal,
}

impl ApiCode {
    /// The API's own codes, after the OCI ones in [`ApiCode::all`].
    const OWN: [ApiCode; 3] = [
        ApiCode::InvalidParameter,
        ApiCode::NotFound,
        ApiCode::Internal,
    ];

    /// Every code an answer of the API can carry.
    pub fn all() -> impl Iterator<Item = ApiCode> {
        ErrorCode::ALL
            .into_iter()
            .map(ApiCode::Oci)
            .chain(Self::OWN)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::Oci(code) => code.as_str(),
            ApiCode::InvalidParameter => "INVALID_PARAMETER",
            ApiCode::NotFound => "NOT_FOUND",
            ApiCode::Internal => "INTERNAL",
        }
    }
}

impl serde::Serialize for ApiCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Described by hand because it is one flat string enum on the wire, which the derive
/// would render as a `oneOf` of the nested OCI enum and the API's own.
impl utoipa::PartialSchema for ApiCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "The API's own codes; a write that enforcement or the registry refuses passes on the OCI distribution code of the refusal (`DENIED`, `MANIFEST_UNKNOWN`, ...).",
            ))
            .enum_values(Some(ApiCode::all().map(ApiCode::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for ApiCode {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
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
        ApiError::Ledger(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Ledger(e) = &self {
            // Includes queries cancelled after admin.query_timeout (SQLSTATE 57014).
            if e.is_unavailable() {
                tracing::warn!(error = %chain(e), "audit API: ledger unavailable");
            } else {
                tracing::error!(error = %chain(e), "audit API: ledger query failed");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn an_unavailable_ledger_is_a_503_and_a_failed_query_a_500_that_shows_nothing() {
        let down = ApiError::from(LedgerError::from(sqlx::Error::PoolTimedOut));
        let (status, body) = answer(down).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        assert_eq!(body["errors"][0]["message"], UNAVAILABLE);

        let bug = ApiError::from(LedgerError::from(sqlx::Error::ColumnNotFound(
            "secret_column".into(),
        )));
        let (status, body) = answer(bug).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["errors"][0]["code"], "INTERNAL");
        assert_eq!(body["errors"][0]["message"], "internal error");
    }

    #[tokio::test]
    async fn a_refusal_passes_on_its_oci_code() {
        let refused = crate::oci::OciError::new(
            StatusCode::CONFLICT,
            ErrorCode::Denied,
            "tag a:1 is immutable",
        );
        let (status, body) = answer(refused.into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["errors"][0]["code"], "DENIED");
    }

    #[test]
    fn the_api_codes_are_the_oci_codes_and_its_own_three() {
        let all: Vec<&str> = ApiCode::all().map(ApiCode::as_str).collect();
        assert_eq!(all.len(), ErrorCode::ALL.len() + 3);
        assert_eq!(
            &all[ErrorCode::ALL.len()..],
            ["INVALID_PARAMETER", "NOT_FOUND", "INTERNAL"]
        );
        for code in ApiCode::all() {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
    }
}

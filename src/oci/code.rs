//! The error codes of an OCI error body, as one enum so a typo cannot reach the wire.

use serde::Serialize;
use utoipa::ToSchema;

/// The `code` of an OCI error: the distribution spec's codes, and the three of Docker's
/// registry API that tagwarden sends where the spec has none (`UNAVAILABLE`,
/// `TAG_INVALID`, `UNKNOWN`). Clients match on these strings, so each is fixed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// Not in the spec: a dependency (the ledger, the registry) cannot answer now.
    Unavailable,
    /// Not in the spec: a tag outside the tag grammar.
    TagInvalid,
    /// Not in the spec: a fault of tagwarden's own.
    Unknown,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
        ErrorCode::Unavailable,
        ErrorCode::TagInvalid,
        ErrorCode::Unknown,
    ];

    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings clients match on, written out once more by hand: a renamed variant
    /// or a changed serde attribute fails here.
    #[test]
    fn every_code_keeps_its_wire_string() {
        use ErrorCode::*;
        let wire = [
            (BlobUnknown, "BLOB_UNKNOWN"),
            (BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
            (BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
            (DigestInvalid, "DIGEST_INVALID"),
            (ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
            (ManifestInvalid, "MANIFEST_INVALID"),
            (ManifestUnknown, "MANIFEST_UNKNOWN"),
            (NameInvalid, "NAME_INVALID"),
            (NameUnknown, "NAME_UNKNOWN"),
            (SizeInvalid, "SIZE_INVALID"),
            (Unauthorized, "UNAUTHORIZED"),
            (Denied, "DENIED"),
            (Unsupported, "UNSUPPORTED"),
            (TooManyRequests, "TOOMANYREQUESTS"),
            (Unavailable, "UNAVAILABLE"),
            (TagInvalid, "TAG_INVALID"),
            (Unknown, "UNKNOWN"),
        ];
        assert_eq!(wire.map(|(code, _)| code), ErrorCode::ALL);
        for (code, expected) in wire {
            assert_eq!(code.as_str(), expected);
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(expected)
            );
            assert_eq!(code.to_string(), expected);
        }
    }
}

//! Reading a pushed manifest: bounded in size and time, checked for form, hashed from
//! the exact bytes the upstream will store.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::oci::media;
use crate::oci::reference::{Algorithm, Digest};
use crate::oci::OciError;
use crate::proxy::body::Metered;

/// A manifest body that passed the checks, with the digest of its bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: Digest,
}

/// Read and check the body of `PUT /v2/<name>/manifests/<reference>`.
///
/// `expected` is the digest from the path, when the reference is one; the body must hash
/// to it. Otherwise the digest is sha256 of the bytes.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    expected: Option<&Digest>,
    max_bytes: usize,
    idle: Duration,
) -> Result<Manifest, OciError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.trim().is_empty() {
        return Err(invalid("the request has no Content-Type: send the manifest's media type, e.g. application/vnd.oci.image.manifest.v1+json"));
    }
    if media::is_schema1(content_type) {
        return Err(invalid("schema1 manifests are not accepted: their digest is not the hash of their bytes, so their tags cannot be verified; push an OCI or Docker schema2 manifest instead"));
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("Content-Length is not a number"))?;
        if len > max_bytes as u64 {
            return Err(too_large(max_bytes));
        }
    }

    let body = Metered::new(body, metrics::Counter::noop(), idle, None);
    let bytes = match Limited::new(body, max_bytes).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(max_bytes)),
        Err(e) => {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("the manifest body could not be read: {e}"),
            ))
        }
    };

    check_form(&bytes)?;
    let digest = Digest::of(
        expected.map_or(Algorithm::Sha256, Digest::algorithm),
        &bytes,
    );
    if let Some(expected) = expected {
        if *expected != digest {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!(
                    "the manifest's bytes hash to {digest}, not to {expected} named in the path"
                ),
            )
            .with_detail(
                serde_json::json!({ "expected": expected.as_str(), "actual": digest.as_str() }),
            ));
        }
    }
    Ok(Manifest { bytes, digest })
}

/// A manifest must be a JSON object with `schemaVersion: 2`.
fn check_form(bytes: &[u8]) -> Result<(), OciError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(&format!("the manifest is not valid JSON: {e}")))?;
    match value.get("schemaVersion").and_then(|v| v.as_u64()) {
        Some(2) => Ok(()),
        Some(1) => Err(invalid(
            "schema1 manifests are not accepted; push an OCI or Docker schema2 manifest instead",
        )),
        _ => Err(invalid("the manifest has no schemaVersion 2")),
    }
}

fn invalid(message: &str) -> OciError {
    OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
}

fn too_large(max: usize) -> OciError {
    OciError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        format!("the manifest is larger than the {max}-byte limit"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    const OK: &[u8] =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

    async fn read_with(
        ct: &str,
        body: &'static [u8],
        expected: Option<&Digest>,
    ) -> Result<Manifest, OciError> {
        read(
            &headers(ct),
            Body::from(body),
            expected,
            4 << 20,
            Duration::from_secs(5),
        )
        .await
    }

    #[tokio::test]
    async fn digest_is_of_the_exact_bytes() {
        let m = read_with(media::OCI_MANIFEST, OK, None).await.unwrap();
        assert_eq!(m.digest, Digest::of(Algorithm::Sha256, OK));
        let same = read_with(media::OCI_MANIFEST, OK, Some(&m.digest))
            .await
            .unwrap();
        assert_eq!(same.bytes, OK);
    }

    #[tokio::test]
    async fn a_body_that_does_not_hash_to_the_path_digest_is_refused() {
        let other = Digest::of(Algorithm::Sha256, b"other");
        let e = read_with(media::OCI_MANIFEST, OK, Some(&other))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
        );
    }

    #[tokio::test]
    async fn schema1_missing_type_and_bad_json_are_refused() {
        for (ct, body) in [
            (
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                OK,
            ),
            ("", OK),
            (media::OCI_MANIFEST, &b"not json"[..]),
            (media::OCI_MANIFEST, &br#"{"schemaVersion":1}"#[..]),
            (media::OCI_MANIFEST, &b"[]"[..]),
        ] {
            let e = read_with(ct, body, None).await.unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
                "{ct} {body:?}"
            );
        }
    }

    #[tokio::test]
    async fn oversized_manifests_get_413() {
        let big = vec![b' '; 100];
        let e = read(
            &headers(media::OCI_MANIFEST),
            Body::from(big),
            None,
            50,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut h = headers(media::OCI_MANIFEST);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static("999999999"),
        );
        let e = read(&h, Body::empty(), None, 50, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

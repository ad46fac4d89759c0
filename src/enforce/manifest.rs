//! Reading a pushed manifest: bounded in size, in time and in the memory all pushes
//! may hold at once; checked for form and media type; hashed from the exact bytes the
//! upstream will store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;

use crate::oci::media;
use crate::oci::reference::{Algorithm, Digest};
use crate::oci::{ErrorCode, OciError};
use crate::proxy::body::Metered;

/// A manifest body that passed the checks, with the digest of its bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: Digest,
    /// The share of the buffer budget these bytes hold, given back when the last
    /// clone is dropped (the bytes live as long as the request that sends them on).
    _held: Arc<Reservation>,
}

/// Bounds shared by every manifest read: a total deadline for the body, and one budget
/// for the bytes all manifest pushes buffer at once.
///
/// Each push buffers up to `limits.max_manifest_bytes`; without a global bound, many
/// slow or stalled pushes (HTTP/1.1 connections or HTTP/2 streams) would together hold
/// any amount of memory.
#[derive(Debug, Clone)]
pub struct ReadBounds {
    deadline: Duration,
    budget: Arc<Budget>,
}

impl ReadBounds {
    pub fn new(deadline: Duration, budget_bytes: usize) -> Self {
        ReadBounds {
            deadline,
            budget: Arc::new(Budget {
                limit: budget_bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }
}

/// Bytes that may be buffered at once, and how many are.
#[derive(Debug)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// Take `n` bytes of the budget, or none if that would exceed it. Never waits: a
    /// push that cannot be buffered is told to retry.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes taken from the budget for one push; returned on drop.
#[derive(Debug)]
struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    fn take(budget: &Arc<Budget>, bytes: usize) -> Result<Self, OciError> {
        if !budget.take(bytes) {
            return Err(busy());
        }
        Ok(Reservation {
            budget: budget.clone(),
            bytes,
        })
    }

    fn grow(&mut self, more: usize) -> Result<(), OciError> {
        if !self.budget.take(more) {
            return Err(busy());
        }
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Read and check the body of `PUT /v2/<name>/manifests/<reference>`.
///
/// `expected` is the digest from the path, when the reference is one; the body must hash
/// to it. Otherwise the digest is sha256 of the bytes. Everything is checked before
/// anything is forwarded.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    expected: Option<&Digest>,
    max_bytes: usize,
    idle: Duration,
    bounds: &ReadBounds,
) -> Result<Manifest, OciError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = media_type_of(content_type)?;
    let announced = match headers.get(header::CONTENT_LENGTH) {
        Some(len) => {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("Content-Length is not a number"))?;
            if len > max_bytes as u64 {
                return Err(too_large(max_bytes));
            }
            Some(len as usize)
        }
        None => None,
    };

    let body = Metered::new(body, metrics::Counter::noop(), idle, None);
    let collect = collect(body, announced, max_bytes, &bounds.budget);
    let (bytes, held) = match tokio::time::timeout(bounds.deadline, collect).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(OciError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::ManifestInvalid,
                format!(
                    "the manifest body did not arrive within {}s; send it in one go",
                    bounds.deadline.as_secs()
                ),
            ))
        }
    };

    check_form(&bytes, media_type)?;
    let digest = Digest::of(
        expected.map_or(Algorithm::Sha256, Digest::algorithm),
        &bytes,
    );
    if let Some(expected) = expected {
        if *expected != digest {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::DigestInvalid,
                format!(
                    "the manifest's bytes hash to {digest}, not to {expected} named in the path"
                ),
            )
            .with_detail(
                serde_json::json!({ "expected": expected.as_str(), "actual": digest.as_str() }),
            ));
        }
    }
    Ok(Manifest {
        bytes,
        digest,
        _held: Arc::new(held),
    })
}

/// The canonical manifest type a `Content-Type` names, or why it is refused.
fn media_type_of(content_type: &str) -> Result<&'static str, OciError> {
    if let Some(t) = media::manifest_type(content_type) {
        return Ok(t);
    }
    let essence = media::essence(content_type);
    // Client-controlled: shown bounded.
    let shown: String = essence.chars().take(100).collect();
    Err(if essence.is_empty() {
        invalid_with_type("the request has no Content-Type: send the manifest's media type, e.g. application/vnd.oci.image.manifest.v1+json".into())
    } else if media::is_schema1(content_type) {
        invalid_with_type("schema1 manifests are not accepted: their digest is not the hash of their bytes, so their tags cannot be verified; push an OCI or Docker schema2 manifest instead".into())
    } else {
        invalid_with_type(format!(
            "Content-Type {shown} is not a manifest type tagwarden accepts; send one of {}",
            media::MANIFEST_TYPES.join(", ")
        ))
    })
}

/// Collect the body into one buffer whose every byte was first taken from the budget.
///
/// The budget is taken as bytes arrive, in doubling steps, so a client that announces
/// a large body and sends nothing holds little of it. With a `Content-Length` the
/// buffer is allocated once at that size; its pages only become resident as they are
/// written, so what is resident stays within what was taken.
async fn collect<B>(
    mut body: B,
    announced: Option<usize>,
    max_bytes: usize,
    budget: &Arc<Budget>,
) -> Result<(Bytes, Reservation), OciError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    const FIRST_STEP: usize = 16 * 1024;
    let ceiling = announced.unwrap_or(max_bytes);
    let mut held = Reservation::take(budget, FIRST_STEP.min(ceiling))?;
    let mut buf: Vec<u8> = Vec::new();
    buf.reserve_exact(announced.unwrap_or(held.bytes));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| invalid(&format!("the manifest body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let needed = buf.len() + data.len();
        if needed > max_bytes {
            return Err(too_large(max_bytes));
        }
        if needed > held.bytes {
            let target = needed.max(held.bytes * 2).min(ceiling.max(needed));
            held.grow(target - held.bytes)?;
            if buf.capacity() < target {
                buf.reserve_exact(target - buf.len());
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), held))
}

/// A manifest must be a JSON object with `schemaVersion: 2`, and a `mediaType` it
/// declares must be the one it was sent as: the registry stores it under the
/// `Content-Type`, and clients read it by the field.
fn check_form(bytes: &[u8], media_type: &str) -> Result<(), OciError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(&format!("the manifest is not valid JSON: {e}")))?;
    match value.get("schemaVersion").and_then(|v| v.as_u64()) {
        Some(2) => {}
        Some(1) => return Err(invalid(
            "schema1 manifests are not accepted; push an OCI or Docker schema2 manifest instead",
        )),
        _ => return Err(invalid("the manifest has no schemaVersion 2")),
    }
    match value.get("mediaType") {
        None => Ok(()),
        Some(serde_json::Value::String(declared)) if declared == media_type => Ok(()),
        Some(serde_json::Value::String(declared)) => Err(invalid(&format!(
            "the manifest declares mediaType {declared} but was sent as {media_type}; send it with Content-Type {declared}"
        ))),
        Some(_) => Err(invalid("the manifest's mediaType is not a string")),
    }
}

fn invalid(message: &str) -> OciError {
    OciError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
}

fn invalid_with_type(message: String) -> OciError {
    OciError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
        .with_detail(serde_json::json!({ "accepted": media::MANIFEST_TYPES }))
}

/// The buffer budget is spent: a retry soon will likely find room.
fn busy() -> OciError {
    OciError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TooManyRequests,
        "too many manifest pushes are in progress at once; retry in a few seconds",
    )
    .with_retry_after(2)
}

fn too_large(max: usize) -> OciError {
    OciError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        format!("the manifest is larger than the {max}-byte limit"),
    )
}

#[cfg(test)]
mod tests;

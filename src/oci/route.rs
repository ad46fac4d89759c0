//! Decide what an incoming request path means, exactly once and strictly.
//!
//! The upstream registry percent-decodes, cleans and re-routes paths (see the design notes,
//! section 4), so a path that tagwarden reads one way could be read another way upstream.
//! To close that gap tagwarden only forwards paths that are already in canonical form:
//! plain ASCII, no percent-encoding, no empty or dot segments, and matching one of the
//! OCI distribution endpoints with a valid name and reference. The registry then has
//! nothing left to reinterpret.

use super::reference::{Digest, Name, Reference, ReferenceError};

/// The longest request path considered. A valid name (255) plus the longest endpoint
/// suffix fits comfortably.
const MAX_PATH_LEN: usize = 2048;
/// Upload session ids as the distribution router accepts them.
const MAX_SESSION_LEN: usize = 512;

/// One OCI distribution endpoint, with its parts validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check (also where auth challenges start).
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    TagsList { name: Name },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: Name, reference: Reference },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: Name, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: Name },
    /// `/v2/<name>/blobs/uploads/<session>`
    Upload { name: Name },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: Name, digest: Digest },
}

impl Route {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::TagsList { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        }
    }
}

/// Why a path was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("only the OCI distribution API under /v2/ is served here")]
    NotDistributionApi,
    #[error("the request path is not in canonical form ({0}); send the plain path without percent-encoding, empty segments or dot segments")]
    NonCanonical(&'static str),
    #[error("the path does not name an OCI distribution endpoint")]
    UnknownEndpoint,
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

/// Parse a raw request path (as received, before any decoding).
pub fn parse(path: &str) -> Result<Route, RouteError> {
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        p => p
            .strip_prefix("/v2/")
            .ok_or(RouteError::NotDistributionApi)?,
    };
    check_canonical(path)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    // Every endpoint has at least a one-component name and two more segments.
    if segs.len() < 3 {
        return Err(RouteError::UnknownEndpoint);
    }
    let n = segs.len();
    let name_of = |count: usize| -> Result<Name, RouteError> {
        // An empty segment anywhere in the name was already rejected as non-canonical;
        // the only empty segment allowed is the trailing one of `blobs/uploads/`.
        Ok(Name::parse(&segs[..count].join("/"))?)
    };
    // The endpoints are told apart by their last segments, which is how the registry's
    // router reads them too: a name may itself contain `manifests` or `blobs`.
    match (segs[n - 3], segs[n - 2], segs[n - 1]) {
        (_, "tags", "list") => Ok(Route::TagsList {
            name: name_of(n - 2)?,
        }),
        (_, "manifests", reference) => Ok(Route::Manifest {
            name: name_of(n - 2)?,
            reference: Reference::parse(reference)?,
        }),
        ("blobs", "uploads", "") if n >= 4 => Ok(Route::UploadStart {
            name: name_of(n - 3)?,
        }),
        ("blobs", "uploads", session) if n >= 4 && is_session_id(session) => Ok(Route::Upload {
            name: name_of(n - 3)?,
        }),
        (_, "blobs", "uploads") => Ok(Route::UploadStart {
            name: name_of(n - 2)?,
        }),
        (_, "blobs", digest) => Ok(Route::Blob {
            name: name_of(n - 2)?,
            digest: Digest::parse(digest)?,
        }),
        (_, "referrers", digest) => Ok(Route::Referrers {
            name: name_of(n - 2)?,
            digest: Digest::parse(digest)?,
        }),
        _ => Err(RouteError::UnknownEndpoint),
    }
}

/// Reject every path form the registry would decode, clean or redirect.
fn check_canonical(path: &str) -> Result<(), RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(RouteError::NonCanonical("path too long"));
    }
    if let Some(b) = path.bytes().find(|b| !b.is_ascii_graphic()) {
        let _ = b;
        return Err(RouteError::NonCanonical(
            "non-printable or non-ASCII character",
        ));
    }
    if path.contains('%') {
        return Err(RouteError::NonCanonical("percent-encoding"));
    }
    if path.contains('\\') {
        return Err(RouteError::NonCanonical("backslash"));
    }
    // The only empty segment allowed is the trailing one of `.../blobs/uploads/`.
    let body = path.strip_suffix("/blobs/uploads/").unwrap_or(path);
    for seg in body.split('/').skip(1) {
        match seg {
            "" => return Err(RouteError::NonCanonical("empty segment or trailing slash")),
            "." | ".." => return Err(RouteError::NonCanonical("dot segment")),
            _ => {}
        }
    }
    Ok(())
}

fn is_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SESSION_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn canonical_endpoints_parse() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert!(
            matches!(parse("/v2/a/b/tags/list").unwrap(), Route::TagsList { name } if name.as_str() == "a/b")
        );
        assert!(matches!(parse("/v2/a/manifests/1.4.0").unwrap(),
            Route::Manifest { name, reference: Reference::Tag(t) } if name.as_str() == "a" && t.as_str() == "1.4.0"));
        assert!(matches!(
            parse(&format!("/v2/a/manifests/{}", digest())).unwrap(),
            Route::Manifest {
                reference: Reference::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&format!("/v2/a/blobs/{}", digest())).unwrap(),
            Route::Blob { .. }
        ));
        assert!(
            matches!(parse("/v2/a/blobs/uploads/").unwrap(), Route::UploadStart { name } if name.as_str() == "a")
        );
        assert!(matches!(
            parse("/v2/a/blobs/uploads").unwrap(),
            Route::UploadStart { .. }
        ));
        assert!(
            matches!(parse("/v2/a/blobs/uploads/0f1e-2d3c_x.y=").unwrap(), Route::Upload { name } if name.as_str() == "a")
        );
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{}", digest())).unwrap(),
            Route::Referrers { .. }
        ));
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        match parse("/v2/foo/manifests/bar/manifests/v1").unwrap() {
            Route::Manifest { name, reference } => {
                assert_eq!(name.as_str(), "foo/manifests/bar");
                assert_eq!(reference.as_str(), "v1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("/v2/blobs/uploads/tags/list").unwrap(),
            Route::TagsList { name } if name.as_str() == "blobs/uploads"));
        assert!(
            matches!(parse("/v2/x/blobs/uploads/blobs/uploads/").unwrap(),
            Route::UploadStart { name } if name.as_str() == "x/blobs/uploads")
        );
    }

    #[test]
    fn design_note_tricks_are_refused() {
        let bad = [
            "/v2/exp%2Fapp/manifests/v2",
            "/v2/exp/app/manifests/%76%32",
            "/v2/a/manifests/sha256%3Aabc",
            "/v2//a/manifests/v1",
            "/v2/a//manifests/v1",
            "/v2/./a/manifests/v1",
            "/v2/x/../a/manifests/v1",
            "/v2/a/%2e%2e/manifests/v1",
            "/v2/a/manifests/v1/",
            "/v2/Exp/app/manifests/v1",
            "/v2/a/manifests/1.0+build",
            "/v2/a/manifests/v1\\",
            "/v1/a/manifests/v1",
            "/v2a/manifests/v1",
            "/",
            "/v2/a/manifests",
            "/v2/a/unknown/v1",
            "/v2/a/blobs/uploads/x/y",
        ];
        for p in bad {
            assert!(parse(p).is_err(), "{p} was accepted as {:?}", parse(p));
        }
        let loose = format!("/v2/a/manifests/sha256:{}", "A".repeat(64));
        assert!(parse(&loose).is_err());
        let md5 = format!("/v2/a/manifests/md5:{}", "a".repeat(32));
        assert!(parse(&md5).is_err());
    }
}

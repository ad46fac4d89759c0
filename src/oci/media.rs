//! Manifest media types.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Schema1 manifests are signed JWS whose digest is not the hash of the body, so a
/// binding to them could not be checked. They are refused.
pub const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header for asking the upstream what a tag points to. The registry
/// answers 404 or 400 for a manifest whose type is not listed, so all four are sent.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a `Content-Type` names a schema1 manifest (parameters ignored).
pub fn is_schema1(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    SCHEMA1.iter().any(|t| t.eq_ignore_ascii_case(essence))
}

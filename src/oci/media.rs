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

/// The manifest types tagwarden understands: the only ones it lets through on a push.
/// The registry reads anything else (`application/json`, no type, an unregistered one)
/// as schema1, whose tags could not be verified.
pub const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A `Content-Type` without its parameters, trimmed.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The manifest type a `Content-Type` names (case-insensitive, parameters ignored), in
/// its canonical spelling; `None` for any other type.
pub fn manifest_type(content_type: &str) -> Option<&'static str> {
    let essence = essence(content_type);
    MANIFEST_TYPES
        .iter()
        .copied()
        .find(|t| t.eq_ignore_ascii_case(essence))
}

/// Whether a `Content-Type` names a schema1 manifest (parameters ignored).
pub fn is_schema1(content_type: &str) -> bool {
    let essence = essence(content_type);
    SCHEMA1.iter().any(|t| t.eq_ignore_ascii_case(essence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_types_are_known_whatever_the_case_and_parameters() {
        assert_eq!(
            manifest_type("Application/VND.oci.image.manifest.v1+json; charset=utf-8"),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            manifest_type(DOCKER_MANIFEST_LIST),
            Some(DOCKER_MANIFEST_LIST)
        );
        for other in [
            "",
            ";charset=utf-8",
            "application/json",
            "text/plain",
            "application/vnd.oci.image.config.v1+json",
            SCHEMA1[1],
            "application/vnd.oci.image.manifest.v1+jsonx",
        ] {
            assert_eq!(manifest_type(other), None, "{other}");
        }
    }
}

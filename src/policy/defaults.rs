//! The built-in rules, evaluated after a team's own. `config/tagwarden.toml` documents
//! the same list; keep the two in step.

use super::{RuleConfig, TagClass};

/// Referrers-API fallback tags and cosign's signature, attestation and SBOM tags are
/// rewritten each time an artifact is attached: they stay writable, but only by a
/// manifest that keeps everything the previous one listed (append-only).
pub const SIGNATURES: &str =
    r"sha256-[0-9a-f]{64}(\.(sig|att|sbom))?|sha512-[0-9a-f]{128}(\.(sig|att|sbom))?";
/// Semantic-version releases, optionally `v`-prefixed, prereleases included. A tag cannot
/// carry `+build` metadata (the tag grammar has no `+`).
pub const SEMVER: &str =
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?";
/// Builds named after a commit: `git-<sha>`, `sha-<sha>` or a bare abbreviated sha.
pub const GIT_SHA: &str = r"(git-|sha-)?[0-9a-f]{7,40}";

pub fn rules() -> Vec<RuleConfig> {
    vec![
        RuleConfig::new("signatures-and-referrers", SIGNATURES, TagClass::AppendOnly),
        RuleConfig::new("semver-releases", SEMVER, TagClass::Immutable),
        RuleConfig::new("git-commits", GIT_SHA, TagClass::Immutable),
    ]
}

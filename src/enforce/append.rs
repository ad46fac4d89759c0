//! The append-only class (signature and referrer tags), with no I/O: what a manifest
//! lists, what a rewrite dropped, and which release a tag's name is about.
//!
//! cosign appends a layer to `sha256-<hex>.sig` for each new signature; the referrers
//! fallback index `sha256-<hex>` appends a manifest for each new artifact. A rewrite that
//! drops one of them removes a signature or attestation, so it is refused.

use http::StatusCode;
use serde::Deserialize;

use super::reach::MAX_DESCRIPTORS;
use crate::oci::{ErrorCode, OciError};

/// The descriptors a manifest lists that an append-only tag must keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// `layers` of an image manifest (cosign's signatures, attestations).
    pub layers: Vec<String>,
    /// `manifests` of an index (the referrers fallback).
    pub manifests: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// What `bytes` lists, bounded like every manifest tagwarden reads.
pub fn listing(bytes: &[u8]) -> Result<Listing, OciError> {
    let invalid = |m: String| OciError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, m);
    let m: Listed = serde_json::from_slice(bytes).map_err(|e| {
        invalid(format!(
            "the manifest does not list its content readably: {e}"
        ))
    })?;
    if m.layers.len() > MAX_DESCRIPTORS || m.manifests.len() > MAX_DESCRIPTORS {
        return Err(invalid(format!(
            "the manifest lists more than {MAX_DESCRIPTORS} layers or manifests"
        )));
    }
    let digests = |v: Vec<Descriptor>| v.into_iter().map(|d| d.digest).collect();
    Ok(Listing {
        layers: digests(m.layers),
        manifests: digests(m.manifests),
    })
}

/// A descriptor the previous manifest listed and the new one does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `layer` or `manifest`.
    pub kind: &'static str,
    pub digest: String,
}

/// Every descriptor of `previous` missing from `next`, layers among layers and
/// manifests among manifests. Order and additions do not matter.
pub fn dropped(previous: &Listing, next: &Listing) -> Vec<Dropped> {
    let missing = |kind: &'static str, old: &[String], new: &[String]| {
        old.iter()
            .filter(|d| !new.contains(d))
            .map(|d| Dropped {
                kind,
                digest: d.clone(),
            })
            .collect::<Vec<_>>()
    };
    let mut out = missing("layer", &previous.layers, &next.layers);
    out.extend(missing("manifest", &previous.manifests, &next.manifests));
    out.dedup();
    out
}

/// The digest a signature or referrer tag is about: `sha256-<hex>[.sig|.att|.sbom]`
/// names `sha256:<hex>`.
pub fn subject(tag: &str) -> Option<String> {
    let stem = tag.split_once('.').map_or(tag, |(s, _)| s);
    let (algorithm, hex) = stem.split_once('-')?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("{algorithm}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(layers: &[&str], manifests: &[&str]) -> Listing {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Listing {
            layers: v(layers),
            manifests: v(manifests),
        }
    }

    /// (what, previous, next, dropped as (kind, digest))
    type Row = (
        &'static str,
        Listing,
        Listing,
        &'static [(&'static str, &'static str)],
    );

    #[test]
    fn a_rewrite_must_keep_every_descriptor() {
        #[rustfmt::skip]
        let rows: &[Row] = &[
            ("a layer appended",        l(&["s1"], &[]),       l(&["s1", "s2"], &[]), &[]),
            ("reordered",               l(&["s1", "s2"], &[]), l(&["s2", "s1"], &[]), &[]),
            ("identical",               l(&["s1"], &[]),       l(&["s1"], &[]),       &[]),
            ("a layer dropped",         l(&["s1", "s2"], &[]), l(&["s2", "s3"], &[]), &[("layer", "s1")]),
            ("replaced entirely",       l(&["s1"], &[]),       l(&["s9"], &[]),       &[("layer", "s1")]),
            ("a manifest appended",     l(&[], &["m1"]),       l(&[], &["m1", "m2"]), &[]),
            ("a manifest dropped",      l(&[], &["m1", "m2"]), l(&[], &["m2"]),       &[("manifest", "m1")]),
            ("a layer is no manifest",  l(&["x"], &[]),        l(&[], &["x"]),        &[("layer", "x")]),
            ("nothing before",          l(&[], &[]),           l(&[], &[]),           &[]),
        ];
        for (what, previous, next, expect) in rows {
            let got: Vec<(&str, String)> = dropped(previous, next)
                .into_iter()
                .map(|d| (d.kind, d.digest))
                .collect();
            let want: Vec<(&str, String)> =
                expect.iter().map(|(k, d)| (*k, d.to_string())).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn listings_are_read_from_manifests_and_indexes() {
        let m = br#"{"schemaVersion":2,"config":{"digest":"c"},"layers":[{"digest":"a"},{"digest":"b"}]}"#;
        assert_eq!(listing(m).unwrap(), l(&["a", "b"], &[]));
        let i = br#"{"schemaVersion":2,"manifests":[{"digest":"m"}]}"#;
        assert_eq!(listing(i).unwrap(), l(&[], &["m"]));
        assert_eq!(
            listing(b"not json").unwrap_err().code,
            ErrorCode::ManifestInvalid
        );
    }

    #[test]
    fn the_subject_is_the_digest_in_the_tag_name() {
        let hex = "0123456789abcdef".repeat(4);
        for suffix in ["", ".sig", ".att", ".sbom"] {
            assert_eq!(
                subject(&format!("sha256-{hex}{suffix}")),
                Some(format!("sha256:{hex}"))
            );
        }
        assert_eq!(subject("sha256-abc.sig"), None);
        assert_eq!(subject("latest"), None);
        assert_eq!(subject(&format!("md5-{hex}")), None);
        assert_eq!(subject(&format!("sha256-{}", hex.to_uppercase())), None);
    }
}

//! Repository names, tags and digests, parsed strictly to the OCI distribution grammar.
//!
//! The upstream registry is looser than the spec (it accepts upper-case hex and unknown
//! algorithms, then misroutes them), so everything tagwarden forwards must first pass
//! through these types: a string is a valid name, tag or digest, or it is rejected.

use std::fmt;

/// The longest repository name accepted. The spec suggests clients keep name plus
/// registry host under 255 characters; registries reject longer ones anyway.
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag the grammar allows (one leading character plus 127).
pub const MAX_TAG_LEN: usize = 128;

/// Why a string is not a valid name, tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name {0:?} is not valid: components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/', at most 255 characters")]
    Name(String),
    #[error("tag {0:?} is not valid: up to 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    Tag(String),
    #[error("digest {0:?} is not valid: expected sha256 with 64 or sha512 with 128 lower-case hex characters")]
    Digest(String),
}

/// A repository name such as `library/nginx`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(is_name_component) {
            return Err(ReferenceError::Name(truncate_for_message(s)));
        }
        Ok(Name(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_name_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        // A separator must be followed by an alphanumeric (also rules out "._" etc).
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A tag such as `1.4.0` or `latest`. Tags are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(ReferenceError::Tag(truncate_for_message(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The hash algorithms tagwarden can verify. Others are refused rather than passed on
/// unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest such as `sha256:<64 lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = || ReferenceError::Digest(truncate_for_message(s));
        let (alg, hex) = s.split_once(':').ok_or_else(err)?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err()),
        };
        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if hex.len() != alg.hex_len() || !hex.bytes().all(lower_hex) {
            return Err(err());
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes` under `alg`.
    pub fn of(alg: Algorithm, bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hex = match alg {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        };
        Digest(format!("{}:{hex}", alg.name()))
    }

    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` looks like an attempt at a digest (has an algorithm prefix), as
    /// opposed to a tag. Used to give a better error for malformed digests.
    pub fn looks_like_digest(s: &str) -> bool {
        s.contains(':')
    }
}

/// The `<reference>` of a manifest path: a tag or a digest, never anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if Digest::looks_like_digest(s) {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Name, Tag, Digest, Reference);

/// Error messages quote the offending input; keep hostile input from flooding them.
fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "a",
            "library/nginx",
            "a.b_c__d---e/f0",
            "foo/manifests/bar",
            "0",
        ] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "Exp/app", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a._b", "a b",
            "a/./b", "a/../b", "a%2fb", "é",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
        assert!(Name::parse(&"a".repeat(255)).is_ok());
        assert!(Name::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "1.4.0", "v2.4.1-rc.1", "_x", "V1", "git-9f3c2a1"] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "1.0+build", "a/b", "a:b", "%76%32", "tag\0"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn digests_are_strict() {
        let hex = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{hex}")).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("md5:{}", "a".repeat(32)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{hex}"),
            format!("SHA256:{hex}"),
            "sha256:".to_owned(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reference_is_a_tag_or_a_digest() {
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        // A loose digest is refused outright, never treated as a tag.
        assert!(Reference::parse(&format!("sha256:{}", "B".repeat(64))).is_err());
    }

    #[test]
    fn digest_of_bytes_matches_known_value() {
        assert_eq!(
            Digest::of(Algorithm::Sha256, b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

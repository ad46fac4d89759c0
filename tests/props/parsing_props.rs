//! Property tests for what tagwarden parses before anything reaches the registry or the
//! ledger: request paths, repository names, tags, digests and references, and the
//! classification of tags by the built-in policy.
//!
//! Where a grammar is simple enough to state as a regular expression, the parser is
//! checked against that expression as an oracle on both generated valid input and
//! near-miss input.

use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::string::{string_regex, RegexGeneratorStrategy};
use regex::Regex;
use tagwarden::oci::reference::{Algorithm, Digest, Name, Reference, Tag, MAX_NAME_LEN};
use tagwarden::oci::route::{parse, Route};
use tagwarden::policy::{Mode, Policy, TagClass, FALLBACK_RULE};

// ---------------------------------------------------------------------------------
// Oracles: the grammars of the OCI distribution spec, as regular expressions.

const COMPONENT: &str = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";

static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{COMPONENT}(?:/{COMPONENT})*$")).unwrap());
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap());
static DIGEST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$").unwrap());

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::defaults);

// ---------------------------------------------------------------------------------
// Generators

/// A strategy for strings matching `pattern`, compiled once (a bare `&str` strategy
/// compiles its pattern again for every case, which dominates the run time).
fn re(pattern: &str) -> RegexGeneratorStrategy<String> {
    string_regex(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
}

/// Strings of `len` characters from `alphabet`; cheaper than a regex for long runs.
fn chars_of(alphabet: &str, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(select(alphabet.chars().collect::<Vec<_>>()), len).prop_map(String::from_iter)
}

/// `len` lower-case hex characters.
fn lower_hex(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    chars_of("0123456789abcdef", len)
}

const TAG_TAIL: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

/// One name component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => re(r"[a-z0-9]{1,10}((\.|_|__|-{1,3})[a-z0-9]{1,10}){0,3}"),
        // Words that are also endpoint segments are valid components.
        1 => select(vec!["manifests", "blobs", "uploads", "tags", "list", "referrers", "v2"])
            .prop_map(String::from),
    ]
}

/// A grammatical name of any length (possibly over the 255-character limit).
fn grammatical_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(component(), 1..6),
        1 => vec(component(), 10..40),
    ]
    .prop_map(|c| c.join("/"))
}

/// A valid repository name.
fn valid_name() -> impl Strategy<Value = String> {
    vec(component(), 1..6)
        .prop_map(|c| c.join("/"))
        .prop_filter("at most 255 characters", |n| n.len() <= MAX_NAME_LEN)
}

fn valid_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => re(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"),
        1 => (re("[a-zA-Z0-9_]"), chars_of(TAG_TAIL, 100..128)).prop_map(|(a, b)| a + &b),
    ]
}

fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn sha256_digest() -> impl Strategy<Value = String> {
    lower_hex(64..65).prop_map(|h| format!("sha256:{h}"))
}

fn sha512_digest() -> impl Strategy<Value = String> {
    lower_hex(128..129).prop_map(|h| format!("sha512:{h}"))
}

fn valid_digest() -> impl Strategy<Value = String> {
    prop_oneof![3 => sha256_digest(), 1 => sha512_digest()]
}

/// Strings that are digests or nearly so.
fn digest_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        valid_digest(),
        (
            re("(sha256|sha512|SHA256|md5|sha384|sha256\\+b64)?:?"),
            chars_of("0123456789abcdefABCDEF", 0..131)
        )
            .prop_map(|(a, b)| a + &b),
        (sha256_digest(), 7usize..71, re("[A-FG-Z:]")).prop_map(|(d, i, c)| replace_at(&d, i, &c)),
    ]
}

fn session_id() -> impl Strategy<Value = String> {
    re("[a-zA-Z0-9._=-]{1,64}").prop_filter("not a dot segment", |s| s != "." && s != "..")
}

/// `s` with the character at byte index `i` (clamped) replaced by `with`.
fn replace_at(s: &str, i: usize, with: &str) -> String {
    let i = i.min(s.len() - 1);
    format!("{}{}{}", &s[..i], with, &s[i + 1..])
}

/// `s` with `what` inserted at byte index `i` (clamped; `s` is ASCII).
fn insert_at(s: &str, i: usize, what: &str) -> String {
    let i = i.min(s.len());
    format!("{}{}{}", &s[..i], what, &s[i..])
}

/// Segments that no canonical path contains, or that only fit in some places.
const HOSTILE: &[&str] = &[
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "%2F",
    "%",
    "%00",
    "A",
    "Latest",
    "a b",
    "é",
    "\u{0}",
    "\t",
    "x\\y",
    "?",
    "#",
    ";",
    "+",
    "~",
    "sha256:",
    "md5:abc",
    "a..b",
    "-a",
    "a-",
    "v2",
    "_catalog",
    "manifests",
    "blobs",
    "uploads",
    "tags",
    "list",
    "referrers",
];

/// A path segment: mostly meaningful, sometimes hostile.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => component(),
        4 => select(HOSTILE).prop_map(String::from),
        2 => valid_tag(),
        2 => digest_ish(),
        1 => session_id(),
    ]
}

/// Strings shaped like request paths, from loosely combined segments.
fn path_like() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            6 => Just("/v2/"),
            1 => select(vec!["/v2", "/", "", "//v2/", "/V2/", "/v2//", "/v2/./", "v2/", "/v2\\"]),
        ],
        vec(segment(), 0..8),
        prop_oneof![4 => Just(""), 1 => Just("/"), 1 => Just("/."), 1 => Just("?x")],
    )
        .prop_map(|(prefix, segs, suffix)| format!("{prefix}{}{suffix}", segs.join("/")))
}

/// The segments after the name of each endpoint, with near misses in their variable
/// parts.
fn endpoint_tail() -> impl Strategy<Value = Vec<String>> {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let session = prop_oneof![
        4 => session_id(),
        1 => select(vec![".", "..", "", "a/b", "a%2Fb", "a+b"]).prop_map(String::from),
    ];
    let reference = prop_oneof![
        valid_tag(),
        digest_ish(),
        select(HOSTILE).prop_map(String::from)
    ];
    prop_oneof![
        reference.prop_map(move |r| vec!["manifests".to_string(), r]),
        digest_ish().prop_map(|d| vec!["blobs".to_string(), d]),
        digest_ish().prop_map(|d| vec!["referrers".to_string(), d]),
        session.prop_map(move |s| vec!["blobs".to_string(), "uploads".to_string(), s]),
        Just(owned(&["blobs", "uploads", ""])),
        Just(owned(&["blobs", "uploads"])),
        Just(owned(&["tags", "list"])),
    ]
}

/// Paths built like real requests (a name, then an endpoint), then perhaps spoiled by
/// replacing or inserting a few segments: about half of them are accepted.
fn structured_path() -> impl Strategy<Value = String> {
    (
        vec(component(), 1..4),
        endpoint_tail(),
        vec(
            (any::<prop::sample::Index>(), segment(), any::<bool>()),
            0..3,
        ),
    )
        .prop_map(|(name, tail, spoilers)| {
            let mut segs: Vec<String> = name.into_iter().chain(tail).collect();
            for (at, seg, insert) in spoilers {
                if insert {
                    segs.insert(at.index(segs.len() + 1), seg);
                } else {
                    let i = at.index(segs.len());
                    segs[i] = seg;
                }
            }
            format!("/v2/{}", segs.join("/"))
        })
}

/// Arbitrary input as a server might receive it: any bytes, decoded lossily.
fn lossy_bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(any::<u8>(), len).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------------------------
// Routes

/// The canonical path of the routes that carry everything needed to rebuild it.
fn render(route: &Route) -> Option<String> {
    match route {
        Route::TagsList { name } => Some(format!("/v2/{name}/tags/list")),
        Route::Manifest { name, reference } => Some(format!("/v2/{name}/manifests/{reference}")),
        Route::Blob { name, digest } => Some(format!("/v2/{name}/blobs/{digest}")),
        Route::Referrers { name, digest } => Some(format!("/v2/{name}/referrers/{digest}")),
        Route::Base | Route::Catalog | Route::UploadStart { .. } | Route::Upload { .. } => None,
    }
}

/// Everything that must hold of a path that `parse` accepted.
fn check_accepted(path: &str, route: &Route) -> Result<(), TestCaseError> {
    prop_assert!(
        path.bytes().all(|b| b.is_ascii_graphic()),
        "accepted a non-graphic character: {path:?} as {route:?}"
    );
    prop_assert!(!path.contains('%'), "accepted percent-encoding: {path:?}");
    prop_assert!(!path.contains('\\'), "accepted a backslash: {path:?}");
    prop_assert!(!path.contains("//"), "accepted an empty segment: {path:?}");
    prop_assert!(
        path.split('/').all(|s| s != "." && s != ".."),
        "accepted a dot segment: {path:?}"
    );
    prop_assert!(
        path.len() <= 2048,
        "accepted a path of {} bytes",
        path.len()
    );
    match route {
        Route::Base => prop_assert!(path == "/v2" || path == "/v2/", "{path:?}"),
        Route::Catalog => prop_assert_eq!(path, "/v2/_catalog"),
        Route::UploadStart { name } => {
            let canonical = format!("/v2/{name}/blobs/uploads/");
            prop_assert!(
                path == canonical || path == canonical.trim_end_matches('/'),
                "{path:?} read as an upload start for {name}"
            );
        }
        Route::Upload { name } => {
            let session = path.strip_prefix(&format!("/v2/{name}/blobs/uploads/"));
            prop_assert!(
                session.is_some_and(|s| !s.is_empty()
                    && s.len() <= 512
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))),
                "{path:?} read as an upload of {name}"
            );
        }
        other => {
            let rendered = render(other);
            prop_assert_eq!(rendered.as_deref(), Some(path));
        }
    }
    Ok(())
}

/// `parse` must not panic; whatever it accepts must be canonical.
fn check_path(path: &str) -> Result<(), TestCaseError> {
    if let Ok(route) = parse(path) {
        check_accepted(path, &route)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn route_parse_is_total_on_arbitrary_strings(path in any::<String>()) {
        check_path(&path)?;
        check_path(&format!("/v2/{path}"))?;
    }

    #[test]
    fn route_parse_is_total_on_arbitrary_bytes(path in lossy_bytes(0..300)) {
        check_path(&path)?;
        check_path(&format!("/v2/{path}"))?;
    }

    #[test]
    fn route_parse_accepts_only_canonical_paths(path in prop_oneof![path_like(), structured_path()]) {
        check_path(&path)?;
    }

    #[test]
    fn manifest_paths_round_trip(name in valid_name(), reference in prop_oneof![valid_tag(), valid_digest()]) {
        let path = format!("/v2/{name}/manifests/{reference}");
        let route = parse(&path).map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
        match &route {
            Route::Manifest { name: n, reference: r } => {
                prop_assert_eq!(n.as_str(), name.as_str());
                prop_assert_eq!(r.as_str(), reference.as_str());
                prop_assert_eq!(matches!(r, Reference::Digest(_)), reference.contains(':'));
            }
            other => prop_assert!(false, "{path:?} read as {other:?}"),
        }
        prop_assert_eq!(render(&route), Some(path.clone()));
        check_accepted(&path, &route)?;
    }

    #[test]
    fn blob_and_referrers_paths_round_trip(name in valid_name(), digest in valid_digest()) {
        for (endpoint, path) in [
            ("blobs", format!("/v2/{name}/blobs/{digest}")),
            ("referrers", format!("/v2/{name}/referrers/{digest}")),
        ] {
            let route = parse(&path).map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
            match (&route, endpoint) {
                (Route::Blob { name: n, digest: d }, "blobs")
                | (Route::Referrers { name: n, digest: d }, "referrers") => {
                    prop_assert_eq!(n.as_str(), name.as_str());
                    prop_assert_eq!(d.as_str(), digest.as_str());
                }
                (other, _) => prop_assert!(false, "{path:?} read as {other:?}"),
            }
            prop_assert_eq!(render(&route), Some(path.clone()));
        }
    }

    #[test]
    fn tags_list_paths_round_trip(name in valid_name()) {
        let path = format!("/v2/{name}/tags/list");
        let route = parse(&path).map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
        prop_assert!(matches!(&route, Route::TagsList { name: n } if n.as_str() == name), "{route:?}");
        prop_assert_eq!(render(&route), Some(path));
    }

    #[test]
    fn upload_paths_parse(name in valid_name(), session in session_id()) {
        for path in [format!("/v2/{name}/blobs/uploads/"), format!("/v2/{name}/blobs/uploads")] {
            let route = parse(&path).map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
            prop_assert!(matches!(&route, Route::UploadStart { name: n } if n.as_str() == name), "{path:?}: {route:?}");
        }
        let path = format!("/v2/{name}/blobs/uploads/{session}");
        let route = parse(&path).map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
        prop_assert!(matches!(&route, Route::Upload { name: n } if n.as_str() == name), "{path:?}: {route:?}");
    }

    #[test]
    fn valid_paths_with_a_flaw_are_refused(
        name in valid_name(),
        tag in valid_tag(),
        flaw in select(vec!["%2F", "%2f", "%", "//", "/./", "/../", "\\", " ", "\u{0}", "é", "\u{7f}"]),
        at in any::<prop::sample::Index>(),
    ) {
        let path = format!("/v2/{name}/manifests/{tag}");
        // Somewhere after "/v2/", so that the flaw is inside what would be forwarded.
        let at = 4 + at.index(path.len() - 4);
        let flawed = insert_at(&path, at, flaw);
        prop_assert!(parse(&flawed).is_err(), "{flawed:?} accepted as {:?}", parse(&flawed));
        let trailing = format!("{path}/");
        prop_assert!(parse(&trailing).is_err(), "{trailing:?} accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn route_parse_is_total_on_very_long_input(
        bytes in lossy_bytes(1500..5000),
        repeat in 1usize..3000,
        seg in segment(),
    ) {
        check_path(&bytes)?;
        check_path(&format!("/v2/{bytes}/manifests/latest"))?;
        let long = format!("/v2/{}/manifests/latest", vec![seg.as_str(); repeat].join("/"));
        check_path(&long)?;
        // A name of `repeat` characters is accepted exactly up to the limit.
        let name = "a".repeat(repeat);
        let path = format!("/v2/{name}/manifests/latest");
        prop_assert_eq!(parse(&path).is_ok(), repeat <= MAX_NAME_LEN, "name of {} characters", repeat);
    }
}

// ---------------------------------------------------------------------------------
// Names

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn grammatical_names_parse_up_to_the_limit(name in grammatical_name()) {
        let parsed = Name::parse(&name);
        prop_assert_eq!(parsed.is_ok(), name.len() <= MAX_NAME_LEN, "{:?} ({} chars): {:?}", name, name.len(), parsed);
        if let Ok(n) = parsed {
            prop_assert_eq!(n.as_str(), name.as_str());
        }
    }

    #[test]
    fn names_with_an_upper_case_letter_never_parse(
        name in valid_name(),
        upper in re("[A-Z]"),
        at in any::<prop::sample::Index>(),
    ) {
        let bad = insert_at(&name, at.index(name.len() + 1), &upper);
        prop_assert!(Name::parse(&bad).is_err(), "{bad:?}");
        prop_assert!(Name::parse(&name.to_uppercase()).is_err() || !name.bytes().any(|b| b.is_ascii_lowercase()));
    }

    #[test]
    fn names_with_an_empty_component_never_parse(
        components in vec(component(), 1..6),
        at in any::<prop::sample::Index>(),
    ) {
        let mut components = components;
        components.insert(at.index(components.len() + 1), String::new());
        let bad = components.join("/");
        prop_assert!(Name::parse(&bad).is_err(), "{bad:?}");
    }

    #[test]
    fn names_with_a_leading_or_trailing_separator_never_parse(
        components in vec(component(), 1..6),
        which in any::<prop::sample::Index>(),
        separator in select(vec![".", "_", "__", "-", "---", "/"]),
        leading in any::<bool>(),
    ) {
        let mut components = components;
        let i = which.index(components.len());
        components[i] = if leading {
            format!("{separator}{}", components[i])
        } else {
            format!("{}{separator}", components[i])
        };
        let bad = components.join("/");
        prop_assert!(Name::parse(&bad).is_err(), "{bad:?}");
    }

    #[test]
    fn name_parse_agrees_with_the_grammar(
        s in prop_oneof![
            3 => re("[a-z0-9._/-]{0,30}"),
            1 => re("[a-zA-Z0-9._/ -]{0,30}"),
            1 => any::<String>(),
            1 => grammatical_name(),
        ]
    ) {
        let expected = NAME_RE.is_match(&s) && s.len() <= MAX_NAME_LEN;
        prop_assert_eq!(Name::parse(&s).is_ok(), expected, "{:?}", s);
    }
}

// ---------------------------------------------------------------------------------
// Tags and references

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn valid_tags_parse(tag in valid_tag()) {
        let parsed = Tag::parse(&tag).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.as_str(), tag.as_str());
        prop_assert!(matches!(Reference::parse(&tag), Ok(Reference::Tag(t)) if t.as_str() == tag));
    }

    #[test]
    fn tags_with_another_character_never_parse(
        tag in valid_tag(),
        c in any::<char>().prop_filter("not a tag character", |c| !tag_char(*c)),
        at in any::<prop::sample::Index>(),
    ) {
        let bad = insert_at(&tag, at.index(tag.len() + 1), &c.to_string());
        prop_assert!(Tag::parse(&bad).is_err(), "{bad:?}");
        prop_assert!(!matches!(Reference::parse(&bad), Ok(Reference::Tag(_))), "{bad:?}");
    }

    #[test]
    fn tags_over_128_characters_never_parse(
        tag in (re("[a-zA-Z0-9_]"), chars_of(TAG_TAIL, 128..300)).prop_map(|(a, b)| a + &b),
    ) {
        prop_assert!(Tag::parse(&tag).is_err(), "{} characters", tag.len());
    }

    #[test]
    fn tags_starting_with_a_dot_or_dash_never_parse(
        tag in (re("[.-]"), chars_of(TAG_TAIL, 0..128)).prop_map(|(a, b)| a + &b),
    ) {
        prop_assert!(Tag::parse(&tag).is_err(), "{tag:?}");
    }

    #[test]
    fn tag_parse_agrees_with_the_grammar(
        s in prop_oneof![
            3 => re("[a-zA-Z0-9._+:/-]{0,20}"),
            1 => chars_of(TAG_TAIL, 120..136),
            1 => any::<String>(),
        ]
    ) {
        prop_assert_eq!(Tag::parse(&s).is_ok(), TAG_RE.is_match(&s), "{:?}", s);
    }

    #[test]
    fn a_reference_with_a_colon_is_never_a_tag(
        before in prop_oneof![Just("sha256".to_string()), re("[a-zA-Z0-9._-]{0,10}"), any::<String>()],
        after in prop_oneof![digest_ish(), valid_tag(), any::<String>()],
    ) {
        let s = format!("{before}:{after}");
        match Reference::parse(&s) {
            Ok(Reference::Tag(t)) => prop_assert!(false, "{s:?} parsed as the tag {t}"),
            Ok(Reference::Digest(d)) => {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert!(DIGEST_RE.is_match(&s));
            }
            Err(_) => prop_assert!(!DIGEST_RE.is_match(&s), "{s:?} is a valid digest"),
        }
    }

    #[test]
    fn reference_parse_is_a_tag_or_a_digest_and_nothing_else(s in prop_oneof![
        valid_tag(), digest_ish(), any::<String>(), re("[a-zA-Z0-9._:-]{0,20}"),
    ]) {
        match Reference::parse(&s) {
            Ok(Reference::Tag(t)) => {
                prop_assert_eq!(t.as_str(), s.as_str());
                prop_assert!(TAG_RE.is_match(&s) && !s.contains(':'));
            }
            Ok(Reference::Digest(d)) => {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert!(DIGEST_RE.is_match(&s));
            }
            Err(_) => prop_assert!(!TAG_RE.is_match(&s) && !DIGEST_RE.is_match(&s), "{s:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------
// Digests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn valid_digests_parse(d in valid_digest()) {
        let parsed = Digest::parse(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.as_str(), d.as_str());
        let expected = if d.starts_with("sha512:") { Algorithm::Sha512 } else { Algorithm::Sha256 };
        prop_assert_eq!(parsed.algorithm(), expected);
        prop_assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
    }

    #[test]
    fn digests_with_upper_case_hex_never_parse(
        d in valid_digest(),
        upper in re("[A-F]"),
        at in any::<prop::sample::Index>(),
    ) {
        let hex_start = d.find(':').unwrap() + 1;
        let i = hex_start + at.index(d.len() - hex_start);
        let bad = replace_at(&d, i, &upper);
        prop_assert!(Digest::parse(&bad).is_err(), "{bad:?}");
        prop_assert!(Reference::parse(&bad).is_err(), "{bad:?}");
        prop_assert!(Digest::parse(&d.to_uppercase()).is_err());
    }

    #[test]
    fn digests_of_the_wrong_length_never_parse(
        alg in select(vec!["sha256", "sha512"]),
        hex in prop_oneof![lower_hex(0..64), lower_hex(65..128), lower_hex(129..201)],
    ) {
        let d = format!("{alg}:{hex}");
        prop_assert!(Digest::parse(&d).is_err(), "{d:?}");
        prop_assert!(Reference::parse(&d).is_err(), "{d:?}");
    }

    #[test]
    fn digests_of_unknown_algorithms_never_parse(
        alg in re("[a-zA-Z0-9+._-]{0,12}").prop_filter("unknown", |a| a != "sha256" && a != "sha512"),
        hex in prop_oneof![lower_hex(64..65), lower_hex(128..129)],
    ) {
        let d = format!("{alg}:{hex}");
        prop_assert!(Digest::parse(&d).is_err(), "{d:?}");
        prop_assert!(Reference::parse(&d).is_err(), "{d:?}");
    }

    #[test]
    fn digest_parse_agrees_with_the_grammar(s in prop_oneof![digest_ish(), any::<String>()]) {
        prop_assert_eq!(Digest::parse(&s).is_ok(), DIGEST_RE.is_match(&s), "{:?}", s);
    }
}

// ---------------------------------------------------------------------------------
// Policy

/// A semver number: no leading zeros.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![1 => Just("0".to_string()), 4 => re("[1-9][0-9]{0,8}")]
}

fn prerelease() -> impl Strategy<Value = String> {
    vec(re("[0-9A-Za-z-]{1,8}"), 1..4).prop_map(|ids| format!("-{}", ids.join(".")))
}

fn semver() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        number(),
        number(),
        number(),
        prop::option::of(prerelease()),
    )
        .prop_map(|(v, major, minor, patch, pre)| {
            format!(
                "{}{major}.{minor}.{patch}{}",
                if v { "v" } else { "" },
                pre.unwrap_or_default()
            )
        })
}

fn assert_class(tag: &str, class: TagClass, rule: &str) -> Result<(), TestCaseError> {
    let d = POLICY.classify("team/app", tag);
    prop_assert_eq!(
        (d.class, d.mode, d.rule.as_str()),
        (class, Mode::Enforce, rule),
        "{:?}",
        tag
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn classify_is_total(repo in any::<String>(), tag in prop_oneof![any::<String>(), lossy_bytes(0..200), valid_tag()]) {
        let d = POLICY.classify(&repo, &tag);
        if d.rule == FALLBACK_RULE {
            prop_assert_eq!(d.class, TagClass::Moving);
        }
    }

    #[test]
    fn semver_releases_are_immutable(tag in semver(), repo in valid_name()) {
        prop_assert!(Tag::parse(&tag).is_ok(), "{tag:?} is not even a tag");
        assert_class(&tag, TagClass::Immutable, "semver-releases")?;
        // The repository does not matter to the built-in rules.
        prop_assert_eq!(POLICY.classify(&repo, &tag).class, TagClass::Immutable);
    }

    #[test]
    fn commit_builds_are_immutable(prefix in select(vec!["git-", "sha-"]), sha in lower_hex(7..41)) {
        assert_class(&format!("{prefix}{sha}"), TagClass::Immutable, "git-commits")?;
    }

    #[test]
    fn signature_and_referrer_tags_are_append_only(
        hex in lower_hex(64..65),
        suffix in select(vec!["", ".sig", ".att", ".sbom"]),
    ) {
        assert_class(&format!("sha256-{hex}{suffix}"), TagClass::AppendOnly, "signatures-and-referrers")?;
    }

    #[test]
    fn partial_versions_and_names_move(
        tag in prop_oneof![
            // MAJOR.MINOR
            (any::<bool>(), number(), number())
                .prop_map(|(v, a, b)| format!("{}{a}.{b}", if v { "v" } else { "" })),
            // MAJOR. Six digits at most: seven or more digits are also an abbreviated
            // commit sha to the git-commits rule.
            (any::<bool>(), prop_oneof![Just("0".to_string()), re("[1-9][0-9]{0,5}")])
                .prop_map(|(v, a)| format!("{}{a}", if v { "v" } else { "" })),
            re("v[1-9][0-9]{6,20}"),
            select(vec!["latest", "main", "stable", "edge", "nightly", "dev", "release"])
                .prop_map(String::from),
        ]
    ) {
        assert_class(&tag, TagClass::Moving, FALLBACK_RULE)?;
    }

    #[test]
    fn versions_with_leading_zeros_or_four_parts_move(
        a in number(), b in number(), c in number(),
        which in 0usize..4,
        zeros in re("0[0-9]{1,3}"),
    ) {
        let mut parts = [a, b, c];
        let tag = if which < 3 {
            parts[which] = zeros;
            parts.join(".")
        } else {
            format!("{}.{}", parts.join("."), zeros)
        };
        assert_class(&tag, TagClass::Moving, FALLBACK_RULE)?;
    }
}

//! Property tests at scale for everything that reads untrusted strings: request paths,
//! names, tags, digests, tag classification and the header helpers.
//!
//! The parsers must be total (never panic, whatever the input), agree exactly with the
//! grammar of the distribution spec, and accept only paths that the registry reads the
//! same way: for every path tagwarden accepts, a model of the distribution 2.8 router
//! (its route regexes, in its order) must pick the same endpoint, name and reference.
//!
//! Each property runs 3 000 cases by default (about 15 s in a debug build); run longer with e.g.
//! `PROPTEST_CASES=1000000 cargo test --release --test props fuzz_parsing::`.

use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use regex::Regex;

use tagwarden::oci::reference::{Algorithm, Digest, Name, Reference, Tag};
use tagwarden::oci::route::{self, Route};
use tagwarden::policy::{Policy, TagClass};
use tagwarden::proxy::headers::{is_plain_host, rewrite_location, strip_hop_by_hop};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// --- Oracles: the grammar as regexes, written independently of the parsers ----------

/// The spec's name grammar.
static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    let comp = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
    Regex::new(&format!("^{comp}(?:/{comp})*$")).unwrap()
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap());
static DIGEST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$").unwrap());

/// What the distribution 2.8 router would make of a path: its route table
/// (`registry/api/v2/routes.go`, `descriptors.go`), tried in registration order, with
/// `reference.NameRegexp` (which allows a host-like first component), `TagRegexp` and
/// `digest.DigestRegexp`. Go's `\w` is ASCII-only, so it is spelled out.
#[derive(Debug, PartialEq, Eq)]
enum Upstream {
    Base,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String),
    Catalog,
}

static REGISTRY_ROUTES: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let alnum = "[a-z0-9]+";
    let sep = "(?:[._]|__|[-]*)";
    let comp = format!("{alnum}(?:{sep}{alnum})*");
    let dcomp = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain = format!(r"{dcomp}(?:\.{dcomp})*(?::[0-9]+)?");
    let name = format!("(?:{domain}/)?{comp}(?:/{comp})*");
    let tag = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
    let r = |s: String| Regex::new(&format!("^{s}$")).unwrap();
    vec![
        ("base", r("/v2/".into())),
        ("tags", r(format!("/v2/(?P<name>{name})/tags/list"))),
        (
            "manifest",
            r(format!(
                "/v2/(?P<name>{name})/manifests/(?P<reference>{tag}|{digest})"
            )),
        ),
        (
            "blob",
            r(format!("/v2/(?P<name>{name})/blobs/(?P<digest>{digest})")),
        ),
        ("upload", r(format!("/v2/(?P<name>{name})/blobs/uploads/"))),
        (
            "chunk",
            r(format!(
                "/v2/(?P<name>{name})/blobs/uploads/(?P<uuid>[a-zA-Z0-9-_.=]+)"
            )),
        ),
        ("catalog", r("/v2/_catalog".into())),
    ]
});

fn registry_route(path: &str) -> Option<Upstream> {
    for (kind, re) in REGISTRY_ROUTES.iter() {
        if let Some(c) = re.captures(path) {
            let get = |n: &str| c.name(n).map(|m| m.as_str().to_string()).unwrap();
            return Some(match *kind {
                "base" => Upstream::Base,
                "tags" => Upstream::Tags(get("name")),
                "manifest" => Upstream::Manifest(get("name"), get("reference")),
                "blob" => Upstream::Blob(get("name"), get("digest")),
                "upload" => Upstream::UploadStart(get("name")),
                "chunk" => Upstream::Upload(get("name")),
                _ => Upstream::Catalog,
            });
        }
    }
    None
}

/// The built-in rules, compiled once.
static POLICY: LazyLock<Policy> = LazyLock::new(Policy::defaults);

// --- Generators ----------------------------------------------------------------------

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Pieces that paths are made of, good and bad, so that random joins often come close
/// to a real endpoint.
fn path_token() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        "/",
        "/",
        "/",
        "/",
        "v2",
        "manifests",
        "manifests",
        "blobs",
        "uploads",
        "tags",
        "list",
        "_catalog",
        "referrers",
        "a",
        "b0",
        "foo",
        "x.y",
        "a_b",
        "a__b",
        "a___b",
        "a-b",
        "a--b",
        "-a",
        "a-",
        ".",
        "..",
        "%2F",
        "%2f",
        "%2e",
        "%",
        "%00",
        "sha256:",
        "sha512:",
        "SHA256:",
        "md5:",
        "1.0.0",
        "v1.4.0",
        "V1",
        "latest",
        ";",
        "?",
        "?tag=1.0.0",
        "#",
        "\\",
        " ",
        "\t",
        "\0",
        "\u{e9}",
        "A",
        "Exp",
        ":",
        ":5000",
        "+",
        "=",
        "_",
        "localhost",
        "\u{ff0f}",
    ];
    prop_oneof![
        6 => prop::sample::select(fixed).prop_map(str::to_string),
        1 => Just(HEX64.to_string()),
        1 => Just(HEX64.to_uppercase()),
        1 => Just(format!("{HEX64}{HEX64}")),
        2 => "[a-zA-Z0-9._:%/=-]{0,8}",
    ]
}

fn structured_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![8 => Just("/v2/"), 1 => Just("/v2"), 1 => Just("/"), 1 => Just("")],
        prop::collection::vec(path_token(), 0..14),
    )
        .prop_map(|(prefix, tokens)| format!("{prefix}{}", tokens.concat()))
}

/// Strings over the name/tag alphabet with a little noise, to probe grammar edges.
fn grammar_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9._/-]{0,40}",
        2 => "[a-zA-Z0-9._-]{0,140}",
        1 => "[a-z0-9]{250,260}",
        1 => "[a-zA-Z0-9._:/+%-]{0,20}",
        1 => any::<String>(),
    ]
}

/// A lossy string from arbitrary bytes.
fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..300)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn semver_tag() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        0u32..1000,
        0u32..1000,
        0u32..1000,
        prop::option::of("[0-9A-Za-z-]{1,8}(\\.[0-9A-Za-z-]{1,8}){0,2}"),
    )
        .prop_map(|(v, a, b, c, pre)| {
            let mut t = format!("{}{a}.{b}.{c}", if v { "v" } else { "" });
            if let Some(p) = pre {
                t.push('-');
                t.push_str(&p);
            }
            t
        })
}

// --- Properties ------------------------------------------------------------------------

/// A path tagwarden accepts is one the registry can neither decode nor clean.
fn assert_canonical(path: &str) {
    assert!(path.len() <= 2048, "{path:?}");
    assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path:?}");
    assert!(!path.contains('%') && !path.contains('\\'), "{path:?}");
    let body = path.strip_suffix("/blobs/uploads/").unwrap_or(path);
    for seg in body.split('/').skip(1) {
        assert!(
            !seg.is_empty() && seg != "." && seg != "..",
            "segment {seg:?} in {path:?}"
        );
    }
}

/// The registry must route an accepted path to the same endpoint, name and reference.
fn assert_registry_agrees(path: &str, route: &Route) {
    let upstream = registry_route(path);
    let expected = match route {
        // `/v2` is redirected to `/v2/` by the registry; nothing is written.
        Route::Base if path == "/v2" => return,
        Route::Base => Some(Upstream::Base),
        Route::Catalog => Some(Upstream::Catalog),
        Route::TagsList { name } => Some(Upstream::Tags(name.to_string())),
        Route::Manifest { name, reference } => Some(Upstream::Manifest(
            name.to_string(),
            reference.as_str().to_string(),
        )),
        Route::Blob { name, digest } => Some(Upstream::Blob(
            name.to_string(),
            digest.as_str().to_string(),
        )),
        Route::UploadStart { name } if path.ends_with('/') => {
            Some(Upstream::UploadStart(name.to_string()))
        }
        // `.../blobs/uploads` without the slash: the registry redirects (StrictSlash).
        Route::UploadStart { .. } => None,
        Route::Upload { name } => Some(Upstream::Upload(name.to_string())),
        // 2.8 has no referrers API: it answers 404 and writes nothing.
        Route::Referrers { .. } => None,
    };
    assert_eq!(
        upstream, expected,
        "tagwarden read {path:?} as {route:?}, the registry would read it as {upstream:?}"
    );
}

fn check_path(path: &str) {
    if let Ok(route) = route::parse(path) {
        if route != Route::Base {
            assert_canonical(path);
        }
        assert_registry_agrees(path, &route);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_parsing_is_total_canonical_and_agrees_with_the_registry(path in structured_path()) {
        check_path(&path);
    }

    #[test]
    fn route_parsing_survives_arbitrary_bytes(path in any_text()) {
        check_path(&path);
        check_path(&format!("/v2/{path}"));
    }

    #[test]
    fn manifest_routes_anchor_on_the_last_manifests_segment(
        name in "[a-z0-9]{1,6}(/(manifests|blobs|uploads|tags|[a-z0-9]{1,6})){0,5}",
        tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
    ) {
        let path = format!("/v2/{name}/manifests/{tag}");
        match route::parse(&path) {
            Ok(Route::Manifest { name: n, reference: Reference::Tag(t) }) => {
                prop_assert_eq!(n.as_str(), name.as_str());
                prop_assert_eq!(t.as_str(), tag.as_str());
            }
            other => prop_assert!(false, "{} parsed as {:?}", path, other),
        }
        assert_registry_agrees(&path, &route::parse(&path).unwrap());
    }

    #[test]
    fn names_tags_and_digests_follow_the_grammar_exactly(s in grammar_string()) {
        prop_assert_eq!(Name::parse(&s).is_ok(), s.len() <= 255 && NAME_RE.is_match(&s), "name {:?}", s);
        prop_assert_eq!(Tag::parse(&s).is_ok(), TAG_RE.is_match(&s), "tag {:?}", s);
        prop_assert_eq!(Digest::parse(&s).is_ok(), DIGEST_RE.is_match(&s), "digest {:?}", s);
        match Reference::parse(&s) {
            Ok(Reference::Tag(t)) => prop_assert!(TAG_RE.is_match(t.as_str())),
            Ok(Reference::Digest(d)) => prop_assert!(DIGEST_RE.is_match(d.as_str())),
            Err(_) => prop_assert!(!TAG_RE.is_match(&s) && !DIGEST_RE.is_match(&s), "{:?} refused", s),
        }
    }

    #[test]
    fn digests_of_any_bytes_parse_back(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let d = Digest::of(alg, &bytes);
            prop_assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
            prop_assert_eq!(d.algorithm(), alg);
            prop_assert!(matches!(Reference::parse(d.as_str()), Ok(Reference::Digest(_))));
            // Upper-case hex is refused, never read as a tag.
            prop_assert!(Reference::parse(&d.as_str().to_uppercase()).is_err());
        }
    }

    #[test]
    fn classification_is_total_and_deterministic(repo in any_text(), tag in any_text()) {
        let policy = &*POLICY;
        let first = policy.classify(&repo, &tag);
        prop_assert_eq!(&first, &policy.classify(&repo, &tag));
        let _ = policy.explain(&repo, &tag);
    }

    #[test]
    fn semantic_versions_are_immutable(repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", tag in semver_tag()) {
        prop_assume!(Tag::parse(&tag).is_ok());
        prop_assert_eq!(POLICY.classify(&repo, &tag).class, TagClass::Immutable, "{}", tag);
    }

    #[test]
    fn signature_and_referrer_tags_are_append_only(
        hex in "[0-9a-f]{64}",
        suffix in prop::sample::select(vec!["", ".sig", ".att", ".sbom"]),
    ) {
        let tag = format!("sha256-{hex}{suffix}");
        prop_assert_eq!(POLICY.classify("a/b", &tag).class, TagClass::AppendOnly);
    }

    #[test]
    fn words_and_short_versions_move(
        word in "[g-z][a-z_-]{0,20}",
        major in 0u32..100, minor in 0u32..100,
    ) {
        let policy = &*POLICY;
        prop_assert_eq!(policy.classify("a", &word).class, TagClass::Moving, "{}", word);
        let short = format!("{major}.{minor}");
        prop_assert_eq!(policy.classify("a", &short).class, TagClass::Moving, "{}", short);
    }

    #[test]
    fn host_checks_are_total_and_plain_hosts_are_safe(host in any_text()) {
        if is_plain_host(&host) {
            prop_assert!(HeaderValue::from_str(&host).is_ok());
            prop_assert!(!host.contains(['/', '@', '?', '#', ' ']));
        }
    }

    #[test]
    fn location_rewriting_is_total_and_only_yields_paths(loc in any_text()) {
        let upstream: http::uri::Authority = "registry:5000".parse().unwrap();
        for candidate in [loc.clone(), format!("http://registry:5000{loc}"), format!("https://REGISTRY:5000/{loc}")] {
            if let Ok(v) = HeaderValue::from_str(&candidate) {
                if let Some(out) = rewrite_location(&v, &upstream) {
                    prop_assert!(out.to_str().unwrap().starts_with('/'));
                }
            }
        }
    }

    #[test]
    fn headers_named_in_connection_are_removed(names in prop::collection::vec("[a-zA-Z-]{1,12}", 0..6), junk in any_text()) {
        let mut h = HeaderMap::new();
        for n in &names {
            if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                h.insert(name, HeaderValue::from_static("1"));
            }
        }
        let listed = format!("{}, {junk}", names.join(","));
        let listed = HeaderValue::from_str(&listed).ok();
        if let Some(v) = &listed {
            h.insert(http::header::CONNECTION, v.clone());
        }
        strip_hop_by_hop(&mut h);
        prop_assert!(!h.contains_key(http::header::CONNECTION));
        if listed.is_some() {
            for n in &names {
                prop_assert!(!h.contains_key(n.to_lowercase().as_str()), "{} survived", n);
            }
        }
    }
}

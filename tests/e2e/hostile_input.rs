//! A corpus of hostile requests sent through tagwarden to a real registry.
//!
//! Each request tries to get other bytes under an immutable tag (or to confuse the proxy
//! in some other way): path tricks the registry would decode or clean (design notes,
//! section 4), absolute-form targets, loose digests, overlong names and tags, invalid
//! UTF-8, NUL bytes, malformed and oversized manifests, odd content types, conflicting
//! framing headers, method case, HTTP/2. For every one the test asserts that the client
//! got a 4xx (with an OCI error body wherever tagwarden answered itself), never a 5xx, a
//! hang or a crash, and that the registry still serves the original digest under the
//! immutable tag. At the end the registry holds no repository or tag that nobody meant
//! to create, and the ledger matches the registry.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use sha2::Digest as _;

use support::api::{catalog, put_manifest, resolve, tags, upload_blob};
use support::consistency::{
    assert_bindings_explained_by_history, assert_ledger_matches_registry,
    assert_no_immutable_tag_had_two_digests,
};
use support::http::{client, get, parse_oci_error, MANIFEST_ACCEPT};
use support::oci::OCI_MANIFEST;
use support::raw::{self, RawAnswer};
use support::{Database, Image, Stack};

const REPO: &str = "corpus/app";
const RELEASE: &str = "1.0.0";
/// No single hostile request may take longer than this.
const PER_REQUEST: Duration = Duration::from_secs(15);

fn ledger(stack: &Stack) -> &Database {
    stack
        .front
        .database()
        .expect("these tests need tagwarden in front (not direct mode)")
}

/// What a case must get back. Every case must also leave the release tag alone.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, with an OCI error body carrying this code.
    Oci(u16, &'static str),
    /// Any 4xx with an OCI error body.
    OciClientError,
    /// Any 4xx; the HTTP layer may answer with an empty body (malformed requests that
    /// never become a request tagwarden could read).
    ClientError,
    /// One of these statuses (for shapes that are legitimate, such as a name that
    /// contains the word `manifests`).
    OneOf(&'static [u16]),
}

struct Corpus<'a> {
    stack: &'a Stack,
    release_digest: String,
    failures: Vec<String>,
    tried: usize,
}

impl Corpus<'_> {
    fn host(&self) -> String {
        self.stack.front.addr().to_string()
    }

    /// Send one raw request and check the answer and the release tag.
    async fn raw(&mut self, name: &str, request: Vec<u8>, expect: Expect) -> RawAnswer {
        let mut answer =
            raw::exchange_within(self.stack.front.addr(), request.clone(), PER_REQUEST).await;
        // An early answer (413, 431) can be lost to the reset that closing on unread
        // request bytes causes; the answer itself is what is judged, so ask again.
        for _ in 0..3 {
            if answer.status != 0 || !answer.reset {
                break;
            }
            answer =
                raw::exchange_within(self.stack.front.addr(), request.clone(), PER_REQUEST).await;
        }
        self.judge(name, answer.status, answer.body(), answer.closed, expect)
            .await;
        answer
    }

    /// A PUT of `body` to `target` with the given Content-Type and extra headers.
    async fn put(
        &mut self,
        name: &str,
        target: &str,
        content_type: &str,
        body: &[u8],
        expect: Expect,
    ) -> RawAnswer {
        let host = self.host();
        let req = raw::request(
            "PUT",
            target.as_bytes(),
            &host,
            &[("Content-Type", content_type.as_bytes())],
            body,
        );
        self.raw(name, req, expect).await
    }

    async fn judge(&mut self, name: &str, status: u16, body: &str, closed: bool, expect: Expect) {
        self.tried += 1;
        let shown: String = body.chars().take(300).collect();
        let mut problems = Vec::new();
        if status == 0 {
            problems.push(if closed {
                "no answer: the connection was closed".to_string()
            } else {
                format!("no answer within {PER_REQUEST:?} (hang)")
            });
        } else if (500..600).contains(&status) {
            problems.push(format!("server error {status}"));
        }
        let oci = || -> Result<(), String> {
            let json: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("body is not JSON ({e})"))?;
            let first = &json["errors"][0];
            match (first["code"].as_str(), first["message"].as_str()) {
                (Some(_), Some(m)) if !m.is_empty() => Ok(()),
                _ => Err("no OCI error with a code and a message".into()),
            }
        };
        if status != 0 {
            match expect {
                Expect::Oci(want, code) => {
                    if status != want {
                        problems.push(format!("status {status}, expected {want}"));
                    } else if let Err(e) = oci() {
                        problems.push(e);
                    } else {
                        let got = parse_oci_error(body, name).code;
                        if got != code {
                            problems.push(format!("code {got}, expected {code}"));
                        }
                    }
                }
                Expect::OciClientError => {
                    if !(400..500).contains(&status) {
                        problems.push(format!("status {status}, expected a 4xx"));
                    } else if let Err(e) = oci() {
                        problems.push(e);
                    }
                }
                Expect::ClientError => {
                    if !(400..500).contains(&status) {
                        problems.push(format!("status {status}, expected a 4xx"));
                    }
                }
                Expect::OneOf(allowed) => {
                    if !allowed.contains(&status) {
                        problems.push(format!("status {status}, expected one of {allowed:?}"));
                    }
                }
            }
        }
        let served = resolve(&self.stack.registry.url(), REPO, RELEASE).await;
        if served.as_deref() != Some(self.release_digest.as_str()) {
            problems.push(format!(
                "the registry now serves {served:?} under {REPO}:{RELEASE}"
            ));
        }
        // tagwarden is still up and serving.
        let alive = client()
            .get(format!("{}/v2/", self.stack.front.url()))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status());
        if !matches!(alive, Ok(StatusCode::OK)) {
            problems.push(format!("tagwarden no longer answers /v2/: {alive:?}"));
        }
        if !problems.is_empty() {
            self.failures
                .push(format!("{name}: {} (body: {shown:?})", problems.join("; ")));
        }
    }
}

#[tokio::test]
async fn hostile_requests_never_move_an_immutable_tag_and_get_clear_client_errors() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let registry = stack.registry.url();
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    for blob in a.blobs().chain(b.blobs()) {
        upload_blob(&base, REPO, blob).await;
    }
    for tag in [RELEASE, "latest"] {
        let r = put_manifest(&base, REPO, tag, &a.manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "set-up push of {tag}");
    }
    let mut c = Corpus {
        stack: &stack,
        release_digest: a.digest().to_string(),
        failures: Vec::new(),
        tried: 0,
    };
    let host = c.host();
    let bm = b.manifest.bytes.clone();
    let b_hex = b.digest().trim_start_matches("sha256:").to_string();
    let a_hex = a.digest().trim_start_matches("sha256:").to_string();
    let conflict = Expect::Oci(409, "DENIED");
    let bad_name = Expect::Oci(400, "NAME_INVALID");

    // --- Paths the registry would decode, clean or redirect (design notes §4) ---------
    for (target, expect) in [
        ("/v2/corpus%2Fapp/manifests/1.0.0", bad_name),
        ("/v2/corpus%2fapp/manifests/1.0.0", bad_name),
        ("/v2/%63orpus/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/app/manifests/%31.0.0", bad_name),
        ("/v2/corpus/app/manifests/1%2E0%2E0", bad_name),
        ("/v2/corpus/app/manifests/1.0.0%00", bad_name),
        ("/v2/corpus/app/manifests/1.0.0%2F", bad_name),
        ("/v2/corpus/app/manifests/1.0.0%3Flatest", bad_name),
        ("/v2/corpus/app/%2e%2e/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/app/%2E/manifests/1.0.0", bad_name),
        ("//v2/corpus/app/manifests/1.0.0", Expect::OciClientError),
        ("/v2//corpus/app/manifests/1.0.0", bad_name),
        ("/v2/corpus//app/manifests/1.0.0", bad_name),
        ("/v2/corpus/app//manifests/1.0.0", bad_name),
        ("/v2/corpus/app/manifests//1.0.0", bad_name),
        ("/v2/./corpus/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/./app/manifests/1.0.0", bad_name),
        ("/v2/x/../corpus/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/app/x/../manifests/1.0.0", bad_name),
        ("/v2/corpus/app/manifests/x/../1.0.0", bad_name),
        ("/v2/corpus/app/manifests/1.0.0/", bad_name),
        ("/v2/corpus/app/manifests/1.0.0/.", bad_name),
        ("/v2/corpus/app/manifests/1.0.0/..", bad_name),
        ("/v2/corpus/app/manifests/1.0.0\\", bad_name),
        ("/v2/corpus\\app/manifests/1.0.0", bad_name),
        (
            "/v2/corpus/app/manifests/1.0.0;v=1",
            Expect::Oci(400, "TAG_INVALID"),
        ),
        ("/v2/corpus;v=1/app/manifests/1.0.0", bad_name),
        // Upper case: the registry reads an upper-case first component as a host.
        ("/V2/corpus/app/manifests/1.0.0", Expect::OciClientError),
        ("/v2/Corpus/app/manifests/1.0.0", bad_name),
        ("/v2/CORPUS/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/APP/manifests/1.0.0", bad_name),
        ("/v2/localhost:5000/corpus/app/manifests/1.0.0", bad_name),
        ("/v2/corpus/app/MANIFESTS/1.0.0", Expect::OciClientError),
        // Harmless spellings of the same request still meet the policy.
        ("/v2/corpus/app/manifests/1.0.0?", conflict),
        ("/v2/corpus/app/manifests/1.0.0#latest", conflict),
        (
            "/v2/corpus/app/manifests/1.0.0?tag=",
            Expect::Oci(400, "TAG_INVALID"),
        ),
        ("/v2/corpus/app/manifests/latest?tag=1.0.0", conflict),
        ("/v2/corpus/app/manifests/latest?tag=%31.0.0", conflict),
        (
            "/v2/corpus/app/manifests/latest?tag=1.0.0;tag=x",
            Expect::OciClientError,
        ),
        (
            "/v2/corpus/app/manifests/latest?tag=%FF",
            Expect::Oci(400, "TAG_INVALID"),
        ),
        (
            "/v2/corpus/app/manifests/latest?tag=1.0.0%00",
            Expect::Oci(400, "TAG_INVALID"),
        ),
    ] {
        c.put(&format!("PUT {target}"), target, OCI_MANIFEST, &bm, expect)
            .await;
    }
    let target = format!("/v2/corpus/app/manifests/sha256%3A{b_hex}");
    c.put("PUT encoded digest", &target, OCI_MANIFEST, &bm, bad_name)
        .await;
    let target = format!("/v2/corpus/app/manifests/sha256:{b_hex}?tag=1.0.0");
    c.put(
        "PUT by digest with ?tag=",
        &target,
        OCI_MANIFEST,
        &bm,
        conflict,
    )
    .await;
    let target = format!("/v2/corpus/app/manifests/sha256:{b_hex}?t%61g=1%2E0%2E0");
    c.put("PUT encoded ?tag=", &target, OCI_MANIFEST, &bm, conflict)
        .await;

    // --- A name may contain endpoint words: both sides must read it the same way ------
    // Without blobs in that repository the registry refuses; never a 5xx.
    c.put(
        "PUT name ending in manifests/<tag>",
        "/v2/corpus/app/manifests/1.0.0/manifests/latest",
        OCI_MANIFEST,
        &bm,
        Expect::OciClientError,
    )
    .await;
    let odd = "corpus/app/manifests/x";
    for blob in b.blobs() {
        upload_blob(&base, odd, blob).await;
    }
    c.put(
        "PUT to a repository named .../manifests/x",
        "/v2/corpus/app/manifests/x/manifests/1.0.0",
        OCI_MANIFEST,
        &bm,
        Expect::OneOf(&[201]),
    )
    .await;
    c.put(
        "PUT other bytes to .../manifests/x:1.0.0",
        "/v2/corpus/app/manifests/x/manifests/1.0.0",
        OCI_MANIFEST,
        &a.manifest.bytes,
        conflict,
    )
    .await;
    assert_eq!(
        resolve(&registry, odd, "1.0.0").await.as_deref(),
        Some(b.digest()),
        "the registry put the tag where tagwarden recorded it"
    );

    // --- Absolute-form, authority-form and asterisk-form targets -----------------------
    for target in [
        format!("http://evil.example/v2/{REPO}/manifests/1.0.0"),
        format!("http://{host}/v2/{REPO}/manifests/1.0.0"),
        format!("https://{host}/v2/{REPO}/manifests/latest"),
        format!("HTTP://{host}/v2/{REPO}/manifests/1.0.0"),
    ] {
        c.put(
            &format!("absolute-form {target}"),
            &target,
            OCI_MANIFEST,
            &bm,
            Expect::Oci(400, "UNSUPPORTED"),
        )
        .await;
    }
    let req = raw::request("CONNECT", b"evil.example:443", &host, &[], b"");
    c.raw("CONNECT authority-form", req, Expect::OciClientError)
        .await;
    let req = raw::request("OPTIONS", b"*", &host, &[], b"");
    c.raw("OPTIONS *", req, Expect::OciClientError).await;
    c.put(
        "relative target without a leading slash",
        "v2/corpus/app/manifests/1.0.0",
        OCI_MANIFEST,
        &bm,
        Expect::ClientError,
    )
    .await;

    // --- Digests: strict or refused -----------------------------------------------------
    let upper = b_hex.to_uppercase();
    for reference in [
        format!("sha256:{upper}"),
        format!("md5:{}", &b_hex[..32]),
        format!("sha256:{}", &b_hex[..63]),
        format!("sha256:{b_hex}0"),
        format!("SHA256:{b_hex}"),
        format!("sha384:{b_hex}{}", &b_hex[..32]),
        format!("sha512:{b_hex}"),
        format!("sha256+b64:{b_hex}"),
        format!("sha256:{b_hex}:"),
        format!(":{b_hex}"),
        "sha256:".to_string(),
    ] {
        let target = format!("/v2/{REPO}/manifests/{reference}");
        c.put(
            &format!("PUT digest {reference}"),
            &target,
            OCI_MANIFEST,
            &bm,
            Expect::Oci(400, "DIGEST_INVALID"),
        )
        .await;
    }
    // A body that does not hash to the digest in the path.
    let target = format!("/v2/{REPO}/manifests/{}", a.digest());
    c.put(
        "PUT other bytes by the release's digest",
        &target,
        OCI_MANIFEST,
        &bm,
        Expect::Oci(400, "DIGEST_INVALID"),
    )
    .await;
    // A valid sha512 digest of the exact bytes: the registry may refuse it, but it is
    // never tagwarden's 5xx.
    let b512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&bm)));
    let target = format!("/v2/{REPO}/manifests/{b512}");
    c.put(
        "PUT by a valid sha512 digest",
        &target,
        OCI_MANIFEST,
        &bm,
        Expect::OneOf(&[201, 400]),
    )
    .await;
    for (method, target) in [
        ("GET", format!("/v2/{REPO}/blobs/sha256:{upper}")),
        ("GET", format!("/v2/{REPO}/manifests/sha256:{upper}")),
        ("HEAD", format!("/v2/{REPO}/blobs/md5:{}", &b_hex[..32])),
        (
            "DELETE",
            format!("/v2/{REPO}/manifests/sha256:{}", a_hex.to_uppercase()),
        ),
    ] {
        let req = raw::request(method, target.as_bytes(), &host, &[], b"");
        let expect = if method == "HEAD" {
            Expect::ClientError
        } else {
            Expect::Oci(400, "DIGEST_INVALID")
        };
        c.raw(&format!("{method} {target}"), req, expect).await;
    }

    // --- Deletes in every spelling ------------------------------------------------------
    let not_allowed = Expect::Oci(405, "UNSUPPORTED");
    for (method, target, expect) in [
        ("DELETE", format!("/v2/{REPO}/manifests/1.0.0"), not_allowed),
        (
            "DELETE",
            format!("/v2/{REPO}/manifests/{}", a.digest()),
            not_allowed,
        ),
        ("DELETE", format!("/v2/{REPO}/manifests/%31.0.0"), bad_name),
        (
            "delete",
            format!("/v2/{REPO}/manifests/{}", a.digest()),
            not_allowed,
        ),
        ("Delete", format!("/v2/{REPO}/manifests/1.0.0"), not_allowed),
    ] {
        let req = raw::request(method, target.as_bytes(), &host, &[], b"");
        c.raw(&format!("{method} {target}"), req, expect).await;
    }
    // Deleting the manifest's bytes through the blob endpoint does not untag it.
    let target = format!("/v2/{REPO}/blobs/{}", a.digest());
    let req = raw::request("DELETE", target.as_bytes(), &host, &[], b"");
    c.raw(
        "DELETE the manifest through the blob endpoint",
        req,
        Expect::OneOf(&[202, 404, 405]),
    )
    .await;
    // The release's own blobs, in every spelling: refused, malformed, or with a body.
    let config = a.config.digest.clone();
    let config_hex = config.trim_start_matches("sha256:");
    let layer = a.layers[0].digest.clone();
    for (method, target, body, expect) in [
        (
            "DELETE",
            format!("/v2/{REPO}/blobs/{config}"),
            &b""[..],
            not_allowed,
        ),
        (
            "delete",
            format!("/v2/{REPO}/blobs/{layer}"),
            &b""[..],
            not_allowed,
        ),
        // A DELETE has no body: refused for its framing before the policy is asked.
        (
            "DELETE",
            format!("/v2/{REPO}/blobs/{layer}"),
            &b"0123456789"[..],
            Expect::Oci(400, "UNSUPPORTED"),
        ),
        (
            "DELETE",
            format!("/v2/{REPO}/blobs/sha256%3A{config_hex}"),
            &b""[..],
            bad_name,
        ),
        (
            "DELETE",
            format!("/v2/{REPO}/blobs/sha256:{}", config_hex.to_uppercase()),
            &b""[..],
            Expect::Oci(400, "DIGEST_INVALID"),
        ),
        (
            "DELETE",
            format!("/v2/corpus%2Fapp/blobs/{config}"),
            &b""[..],
            bad_name,
        ),
    ] {
        let req = raw::request(method, target.as_bytes(), &host, &[], body);
        c.raw(
            &format!("{method} {target} ({} body bytes)", body.len()),
            req,
            expect,
        )
        .await;
    }
    for blob in a.blobs() {
        assert_eq!(
            get(format!("{registry}/v2/{REPO}/blobs/{}", blob.digest))
                .await
                .status(),
            StatusCode::OK,
            "the release's blob {} is still in the registry",
            blob.digest
        );
    }

    // --- Method case and unknown methods -------------------------------------------------
    let release_target = format!("/v2/{REPO}/manifests/1.0.0");
    for method in ["put", "Put", "pUT", "PROPFIND", "TRACE", "PATCH", "POST"] {
        let req = raw::request(
            method,
            release_target.as_bytes(),
            &host,
            &[("Content-Type", OCI_MANIFEST.as_bytes())],
            &bm,
        );
        c.raw(&format!("{method} on the release tag"), req, not_allowed)
            .await;
    }
    let req = raw::request("OPTIONS", release_target.as_bytes(), &host, &[], b"");
    c.raw("OPTIONS on the release tag", req, not_allowed).await;

    // --- Overlong names, tags and paths ------------------------------------------------
    let long_name = "a".repeat(256);
    let many_components = vec!["a"; 130].join("/");
    for (what, target, expect) in [
        (
            "256-character name",
            format!("/v2/{long_name}/manifests/1.0.0"),
            bad_name,
        ),
        (
            "name over 255 in components",
            format!("/v2/{many_components}/manifests/1.0.0"),
            bad_name,
        ),
        (
            "129-character tag",
            format!("/v2/{REPO}/manifests/{}", "t".repeat(129)),
            Expect::Oci(400, "TAG_INVALID"),
        ),
        (
            "3000-character path",
            format!("/v2/{REPO}/manifests/{}", "x/".repeat(1500)),
            bad_name,
        ),
        (
            "70 KB path",
            format!("/v2/{REPO}/manifests/{}", "x".repeat(70_000)),
            Expect::ClientError,
        ),
    ] {
        c.put(what, &target, OCI_MANIFEST, &bm, expect).await;
    }
    let huge_header = vec![b'x'; 1024 * 1024];
    let req = raw::request(
        "PUT",
        release_target.as_bytes(),
        &host,
        &[
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("X-Pad", &huge_header),
        ],
        &bm,
    );
    c.raw("1 MiB header", req, Expect::ClientError).await;
    let names: Vec<String> = (0..200).map(|i| format!("X-H{i}")).collect();
    let mut many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"1"[..])).collect();
    many.push(("Content-Type", OCI_MANIFEST.as_bytes()));
    let req = raw::request("PUT", release_target.as_bytes(), &host, &many, &bm);
    c.raw("200 headers", req, Expect::ClientError).await;
    // Thousands of ?tag= parameters: one request must not fan out without bound.
    let query: Vec<String> = (0..4000).map(|i| format!("tag=7.7.{i}")).collect();
    let target = format!("/v2/{REPO}/manifests/{}?{}", b.digest(), query.join("&"));
    c.put(
        "4000 ?tag= parameters",
        &target,
        OCI_MANIFEST,
        &bm,
        Expect::OciClientError,
    )
    .await;

    // --- Invalid UTF-8, NUL and control bytes ---------------------------------------------
    for (what, target) in [
        (
            "invalid UTF-8 in the path",
            b"/v2/corpus/app/manifests/1.0.\xff".to_vec(),
        ),
        (
            "UTF-8 in the path",
            "/v2/corpus/app/manifests/1.0.\u{00e9}".as_bytes().to_vec(),
        ),
        (
            "NUL in the path",
            b"/v2/corpus/app/manifests/1.0.0\0".to_vec(),
        ),
        (
            "tab in the path",
            b"/v2/corpus/app/manifests/1.0\t.0".to_vec(),
        ),
        (
            "DEL in the path",
            b"/v2/corpus/app/manifests/1.0.0\x7f".to_vec(),
        ),
    ] {
        let req = raw::request(
            "PUT",
            &target,
            &host,
            &[("Content-Type", OCI_MANIFEST.as_bytes())],
            &bm,
        );
        c.raw(what, req, Expect::ClientError).await;
    }
    for (what, headers, expect) in [
        (
            "invalid UTF-8 in Content-Type",
            vec![(
                "Content-Type",
                &b"application/vnd.oci.image.manifest.v1+json\xff"[..],
            )],
            Expect::Oci(400, "MANIFEST_INVALID"),
        ),
        (
            "NUL in a header",
            vec![
                ("Content-Type", OCI_MANIFEST.as_bytes()),
                ("X-Note", &b"a\0b"[..]),
            ],
            Expect::ClientError,
        ),
        (
            "obsolete line folding",
            vec![
                ("Content-Type", OCI_MANIFEST.as_bytes()),
                ("X-Note", &b"a\r\n b"[..]),
            ],
            Expect::ClientError,
        ),
        (
            "space in a header name",
            vec![
                ("Content-Type", OCI_MANIFEST.as_bytes()),
                ("X Note", &b"a"[..]),
            ],
            Expect::ClientError,
        ),
    ] {
        let req = raw::request("PUT", release_target.as_bytes(), &host, &headers, &bm);
        c.raw(what, req, expect).await;
    }
    let req = raw::request(
        "PUT",
        release_target.as_bytes(),
        "127.0.0.1:\u{00e9}",
        &[("Content-Type", OCI_MANIFEST.as_bytes())],
        &bm,
    );
    c.raw("non-ASCII Host", req, Expect::ClientError).await;

    // --- Oversized and malformed manifests -------------------------------------------------
    let too_big = {
        let mut v = b"{\"schemaVersion\":2,\"pad\":\"".to_vec();
        v.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
        v.extend_from_slice(b"\"}");
        v
    };
    c.put(
        "5 MiB manifest",
        &release_target,
        OCI_MANIFEST,
        &too_big,
        Expect::Oci(413, "SIZE_INVALID"),
    )
    .await;
    let req = chunked_put(&release_target, &host, OCI_MANIFEST, &too_big, &[]);
    c.raw(
        "5 MiB manifest, chunked",
        req,
        Expect::Oci(413, "SIZE_INVALID"),
    )
    .await;
    let req = raw::request(
        "PUT",
        release_target.as_bytes(),
        &host,
        &[
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("Content-Length", b"5242880"),
        ],
        b"{}",
    );
    c.raw(
        "5 MiB announced, 2 bytes sent",
        req,
        Expect::Oci(413, "SIZE_INVALID"),
    )
    .await;
    let deep = {
        let mut v = b"{\"schemaVersion\":2,\"x\":".to_vec();
        v.extend(std::iter::repeat_n(b'[', 200_000));
        v.extend(std::iter::repeat_n(b']', 200_000));
        v.push(b'}');
        v
    };
    let mut dup_keys = b"{\"schemaVersion\":1,".to_vec();
    dup_keys.extend_from_slice(&bm[1..]);
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&bm);
    let mut trailing = bm.to_vec();
    trailing.extend_from_slice(b" {}");
    let invalid = Expect::Oci(400, "MANIFEST_INVALID");
    for (what, body, expect) in [
        ("not JSON", b"manifest".to_vec(), invalid),
        ("JSON array", b"[]".to_vec(), invalid),
        ("empty body", Vec::new(), invalid),
        (
            "schemaVersion 1",
            br#"{"schemaVersion":1}"#.to_vec(),
            invalid,
        ),
        (
            "schemaVersion as a string",
            br#"{"schemaVersion":"2"}"#.to_vec(),
            invalid,
        ),
        (
            "schemaVersion 2.0",
            br#"{"schemaVersion":2.0}"#.to_vec(),
            invalid,
        ),
        ("200 000 nested arrays", deep, invalid),
        ("byte order mark", bom, invalid),
        ("trailing data", trailing, invalid),
        (
            "invalid UTF-8 in JSON",
            b"{\"schemaVersion\":2,\"x\":\"\xff\"}".to_vec(),
            invalid,
        ),
        // Duplicate keys: the last one wins on both sides; other bytes anyway.
        ("duplicate keys", dup_keys, conflict),
    ] {
        c.put(what, &release_target, OCI_MANIFEST, &body, expect)
            .await;
    }

    // --- Content types ---------------------------------------------------------------------
    for (what, content_type) in [
        (
            "schema1 (signed)",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            "schema1",
            "application/vnd.docker.distribution.manifest.v1+json",
        ),
        (
            "schema1 in upper case with parameters",
            "APPLICATION/VND.DOCKER.DISTRIBUTION.MANIFEST.V1+JSON ; charset=utf-8",
        ),
        ("blank Content-Type", "  "),
    ] {
        c.put(what, &release_target, content_type, &bm, invalid)
            .await;
    }
    let req = raw::request("PUT", release_target.as_bytes(), &host, &[], &bm);
    c.raw("no Content-Type", req, invalid).await;
    // Types tagwarden does not understand are refused before anything else, on the
    // release tag and on moving tags alike: the registry would read them as schema1
    // (design notes §8). The final tag check shows none of them was stored.
    c.put(
        "text/plain on the release tag",
        &release_target,
        "text/plain",
        &bm,
        invalid,
    )
    .await;
    let mut artifact: serde_json::Value = serde_json::from_slice(&bm).expect("manifest JSON");
    artifact["artifactType"] = "application/vnd.example.sbom.v1+json".into();
    let artifact = serde_json::to_vec(&artifact).expect("artifact JSON");
    for (i, (content_type, body, expect)) in [
        ("text/plain", &bm, invalid),
        ("application/json", &bm, invalid),
        ("application/json; charset=utf-8", &bm, invalid),
        ("; charset=utf-8", &bm, invalid),
        ("application/vnd.example.manifest.v9+json", &bm, invalid),
        ("application/octet-stream", &bm, invalid),
        ("*/*", &bm, invalid),
        (
            ",application/vnd.docker.distribution.manifest.v1+prettyjws",
            &bm,
            invalid,
        ),
        // The body says it is an OCI image manifest: sent as anything else, refused.
        ("application/vnd.oci.image.index.v1+json", &bm, invalid),
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            &bm,
            invalid,
        ),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            &bm,
            invalid,
        ),
        // The four types are matched case-insensitively, parameters ignored; an OCI
        // artifact is an image manifest and is accepted.
        (
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
            &bm,
            Expect::OneOf(&[201]),
        ),
        (
            "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
            &bm,
            Expect::OneOf(&[201]),
        ),
        (
            "application/vnd.oci.image.manifest.v1+json",
            &artifact,
            Expect::OneOf(&[201]),
        ),
    ]
    .iter()
    .enumerate()
    {
        let target = format!("/v2/{REPO}/manifests/odd-type-{i}");
        c.put(
            &format!("Content-Type {content_type:?} on a moving tag"),
            &target,
            content_type,
            body,
            *expect,
        )
        .await;
    }
    let stored: Vec<String> = tags(&registry, REPO)
        .await
        .into_iter()
        .filter(|t| t.starts_with("odd-type-"))
        .collect();
    assert_eq!(
        stored,
        ["odd-type-11", "odd-type-12", "odd-type-13"],
        "only the accepted media types reached the registry"
    );
    let gz =
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00\x43\xbf\xa6\xa3\x02\x00\x00\x00";
    let req = raw::request(
        "PUT",
        release_target.as_bytes(),
        &host,
        &[
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("Content-Encoding", b"gzip"),
        ],
        gz,
    );
    c.raw("gzip-encoded manifest", req, invalid).await;
    // The registry must see the Content-Type tagwarden checked, even when the client
    // lists it in Connection (which would make a proxy drop it).
    let target = format!("/v2/{REPO}/manifests/conn-type");
    let req = raw::request(
        "PUT",
        target.as_bytes(),
        &host,
        &[
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("Connection", b"content-type, content-length"),
        ],
        &bm,
    );
    c.raw(
        "Connection naming Content-Type and Content-Length",
        req,
        Expect::OneOf(&[201]),
    )
    .await;

    // --- Framing: conflicting Content-Length and Transfer-Encoding, smuggling ------------
    let mut smuggled = chunked_body(&bm);
    smuggled.extend_from_slice(&raw::request(
        "PUT",
        release_target.as_bytes(),
        &host,
        &[("Content-Type", OCI_MANIFEST.as_bytes())],
        &bm,
    ));
    for (what, headers, body, expect) in [
        (
            "Content-Length and chunked, request smuggled behind",
            vec![
                ("Content-Length", &b"4"[..]),
                ("Transfer-Encoding", &b"chunked"[..]),
            ],
            smuggled.clone(),
            conflict,
        ),
        (
            "chunked, then Content-Length",
            vec![
                ("Transfer-Encoding", &b"chunked"[..]),
                ("Content-Length", &b"4"[..]),
            ],
            chunked_body(&bm),
            conflict,
        ),
        (
            "two different Content-Lengths",
            vec![("Content-Length", &b"4"[..]), ("Content-Length", &b"5"[..])],
            bm.to_vec(),
            Expect::ClientError,
        ),
        (
            "Content-Length list with different values",
            vec![(
                "Content-Length",
                format!("{}, 4", bm.len()).into_bytes().leak() as &[u8],
            )],
            bm.to_vec(),
            Expect::ClientError,
        ),
        (
            "signed Content-Length",
            vec![(
                "Content-Length",
                format!("+{}", bm.len()).into_bytes().leak() as &[u8],
            )],
            bm.to_vec(),
            Expect::ClientError,
        ),
        (
            "Transfer-Encoding not ending in chunked",
            vec![("Transfer-Encoding", &b"chunked, identity"[..])],
            chunked_body(&bm),
            Expect::ClientError,
        ),
        (
            "two Transfer-Encoding headers",
            vec![
                ("Transfer-Encoding", &b"chunked"[..]),
                ("Transfer-Encoding", &b"gzip"[..]),
            ],
            chunked_body(&bm),
            Expect::ClientError,
        ),
        (
            "Transfer-Encoding: xchunked",
            vec![("Transfer-Encoding", &b"xchunked"[..])],
            chunked_body(&bm),
            Expect::ClientError,
        ),
    ] {
        let mut all = headers;
        all.push(("Content-Type", OCI_MANIFEST.as_bytes()));
        let req = raw::request("PUT", release_target.as_bytes(), &host, &all, &body);
        c.raw(what, req, expect).await;
    }
    let req = format!(
        "PUT {release_target} HTTP/1.0\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut req = req.into_bytes();
    req.extend_from_slice(&chunked_body(&bm));
    c.raw("chunked in HTTP/1.0", req, Expect::ClientError).await;
    let req = format!(
        "PUT {release_target} HTTP/1.0\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        bm.len()
    );
    let mut req = req.into_bytes();
    req.extend_from_slice(&bm);
    c.raw("HTTP/1.0 without Host", req, conflict).await;
    let req = raw::request(
        "PUT",
        release_target.as_bytes(),
        &host,
        &[
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("Expect", b"100-continue"),
        ],
        &bm,
    );
    c.raw("Expect: 100-continue", req, conflict).await;
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/3", "HTCPCP/1.0"] {
        let req = format!(
            "PUT {release_target} {version}\r\nHost: {host}\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
            bm.len()
        );
        let mut req = req.into_bytes();
        req.extend_from_slice(&bm);
        c.raw(
            &format!("request line with {version}"),
            req,
            Expect::ClientError,
        )
        .await;
    }
    // Bare LF line endings parse; the policy still holds.
    let req = format!(
        "PUT {release_target} HTTP/1.1\nHost: {host}\nContent-Type: {OCI_MANIFEST}\nContent-Length: {}\nConnection: close\n\n",
        bm.len()
    );
    let mut req = req.into_bytes();
    req.extend_from_slice(&bm);
    c.raw("bare LF line endings", req, Expect::OneOf(&[400, 409]))
        .await;

    // --- A blob upload whose body is a whole request for the release tag -------------------
    let start = raw::request(
        "POST",
        format!("/v2/{REPO}/blobs/uploads/").as_bytes(),
        &host,
        &[],
        b"",
    );
    let started = c.raw("start an upload", start, Expect::OneOf(&[202])).await;
    if let Some(location) = started.header("location") {
        let path = location
            .split_once("://")
            .map(|(_, rest)| &rest[rest.find('/').unwrap_or(0)..])
            .unwrap_or(&location)
            .to_string();
        let inner = raw::request(
            "PUT",
            release_target.as_bytes(),
            &host,
            &[("Content-Type", OCI_MANIFEST.as_bytes())],
            &bm,
        );
        let req = raw::request(
            "PATCH",
            path.as_bytes(),
            &host,
            &[("Content-Type", b"application/octet-stream")],
            &inner,
        );
        c.raw("PATCH carrying a request", req, Expect::OneOf(&[202]))
            .await;
    }

    // --- Method overrides and rewrite headers the registry might honour -------------------
    let req = raw::request(
        "GET",
        release_target.as_bytes(),
        &host,
        &[
            ("Accept", MANIFEST_ACCEPT.as_bytes()),
            ("Content-Type", OCI_MANIFEST.as_bytes()),
            ("X-HTTP-Method-Override", b"PUT"),
            ("X-HTTP-Method", b"PUT"),
            ("X-Method-Override", b"PUT"),
            (
                "X-Original-URL",
                format!("/v2/{REPO}/manifests/latest").as_bytes(),
            ),
            (
                "X-Rewrite-URL",
                format!("/v2/{REPO}/manifests/latest").as_bytes(),
            ),
        ],
        &bm,
    );
    c.raw("GET with method overrides", req, Expect::OneOf(&[200]))
        .await;

    // --- HTTP/2 (prior knowledge) ------------------------------------------------------------
    for (what, path, authority, expect) in [
        (
            "h2: other bytes on the release tag",
            release_target.clone(),
            host.clone(),
            conflict,
        ),
        (
            "h2: encoded slash",
            "/v2/corpus%2Fapp/manifests/1.0.0".to_string(),
            host.clone(),
            bad_name,
        ),
        (
            "h2: dot segment",
            "/v2/corpus/app/x/../manifests/1.0.0".to_string(),
            host.clone(),
            bad_name,
        ),
        (
            "h2: another authority",
            release_target.clone(),
            "evil.example".to_string(),
            conflict,
        ),
    ] {
        let (status, body) = h2_put(c.stack.front.addr(), &authority, &path, &bm).await;
        c.judge(what, status, &body, true, expect).await;
    }

    // --- What the registry holds afterwards ----------------------------------------------------
    let failures = std::mem::take(&mut c.failures);
    let tried = c.tried;
    assert!(
        failures.is_empty(),
        "{} of {tried} hostile requests were mishandled:\n{}\n--- tagwarden log ---\n{}",
        failures.len(),
        failures.join("\n"),
        stack.front.logs()
    );
    assert_eq!(
        resolve(&registry, REPO, RELEASE).await.as_deref(),
        Some(a.digest())
    );
    let repos = catalog(&registry).await;
    assert!(
        repos.iter().any(|r| r == REPO),
        "the catalog lacks {REPO}: {repos:?}"
    );
    for repo in &repos {
        assert!(
            repo == REPO || repo == odd,
            "the registry holds an unexpected repository {repo:?}: {repos:?}"
        );
    }
    let release_like: Vec<String> = tags(&registry, REPO)
        .await
        .into_iter()
        .filter(|t| !t.starts_with("odd-type-") && t != "conn-type")
        .collect();
    assert_eq!(release_like, [RELEASE, "latest"], "tags of {REPO}");
    assert_ledger_matches_registry(ledger(&stack), &registry, &[REPO, odd]).await;
    assert_bindings_explained_by_history(ledger(&stack));
    assert_no_immutable_tag_had_two_digests(ledger(&stack));
    assert!(
        !stack.front.logs().contains("panicked"),
        "tagwarden panicked:\n{}",
        stack.front.logs()
    );
    println!("{tried} hostile requests, all refused or handled as specified");
}

#[tokio::test]
async fn forwarding_headers_from_clients_cannot_steer_the_urls_the_registry_builds() {
    let stack = Stack::start().await;
    let front = stack.front.url();
    let image = Image::random(&[256]);
    for blob in image.blobs() {
        upload_blob(&front, "steer/app", blob).await;
    }
    let spoofed: [(&str, &str); 9] = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-port", "6666"),
        ("x-forwarded-prefix", "/evil"),
        ("x-forwarded-server", "evil.example"),
        ("forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
        ("x-original-host", "evil.example"),
        ("x-host", "evil.example"),
        ("x-real-ip", "6.6.6.6"),
    ];
    let with_spoofing =
        |rb: reqwest::RequestBuilder| spoofed.iter().fold(rb, |rb, (k, v)| rb.header(*k, *v));
    let http = client();
    let started = with_spoofing(http.post(format!("{front}/v2/steer/app/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    let manifest = with_spoofing(http.put(format!("{front}/v2/steer/app/manifests/latest")))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.bytes.clone())
        .send()
        .await
        .unwrap();
    for (what, resp, status) in [
        ("upload start", started, StatusCode::ACCEPTED),
        ("manifest push", manifest, StatusCode::CREATED),
    ] {
        assert_eq!(resp.status(), status, "{what}");
        let location = support::http::header(&resp, "location").expect("a Location");
        for bad in ["evil", "gopher", "6666", "https:"] {
            assert!(
                !location.contains(bad),
                "{what}: the client steered the Location to {location}"
            );
        }
        assert!(
            location.starts_with('/') || location.starts_with(&format!("{front}/")),
            "{what}: Location {location} should lead back through tagwarden at {front}"
        );
    }
}

/// `body` as one chunk plus the terminating chunk.
fn chunked_body(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn chunked_put(
    target: &str,
    host: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Content-Type", content_type.as_bytes()),
        ("Transfer-Encoding", b"chunked"),
    ];
    headers.extend_from_slice(extra);
    raw::request(
        "PUT",
        target.as_bytes(),
        host,
        &headers,
        &chunked_body(body),
    )
}

/// A PUT over HTTP/2 with prior knowledge; the status and body.
async fn h2_put(addr: &str, authority: &str, path: &str, body: &[u8]) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("PUT")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", OCI_MANIFEST)
        .body(Full::new(bytes::Bytes::copy_from_slice(body)))
        .expect("h2 request");
    match tokio::time::timeout(PER_REQUEST, sender.send_request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => (0, String::new()),
    }
}

#[tokio::test]
async fn hostile_identities_and_user_agents_are_recorded_verbatim_or_not_at_all() {
    use base64::Engine as _;
    let stack = Stack::start().await;
    let base = stack.front.url();
    let sql = "x'); DROP TABLE tag_bindings; --";
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let cases: Vec<(String, Option<String>, &str)> = vec![
        (
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{sql}:pw"))
            ),
            Some(sql.to_string()),
            "1.0.0",
        ),
        (
            format!("Bearer e30.{}.sig", b64(br#"{"sub":"a\u0000b"}"#)),
            None,
            "1.0.1",
        ),
        (
            format!(
                "Bearer e30.{}.sig",
                b64(format!(r#"{{"sub":"{}"}}"#, "\u{1F980}".repeat(300)).as_bytes())
            ),
            Some("\u{1F980}".repeat(256)),
            "1.0.2",
        ),
        ("Bearer %%%.%%%.%%%".to_string(), None, "1.0.3"),
    ];
    for (authorization, identity, tag) in &cases {
        let image = Image::random(&[128]);
        for blob in image.blobs() {
            upload_blob(&base, "who/app", blob).await;
        }
        let resp = client()
            .put(format!("{base}/v2/who/app/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .header("authorization", authorization.as_str())
            .header("user-agent", sql)
            .body(image.manifest.bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{authorization}");
        let recorded = ledger(&stack).query_column(&format!(
            "SELECT identity FROM tag_events WHERE repository = 'who/app' AND tag = '{tag}'"
        ));
        assert_eq!(&recorded, std::slice::from_ref(identity), "{authorization}");
    }
    let agents = ledger(&stack)
        .query_column("SELECT DISTINCT user_agent FROM tag_events WHERE repository = 'who/app'");
    assert_eq!(agents, [Some(sql.to_string())]);
    assert_ledger_matches_registry(ledger(&stack), &stack.registry.url(), &["who/app"]).await;
}

/// Every query in the source is a literal with bind parameters: no SQL is ever built
/// from strings at run time.
#[test]
fn every_sql_statement_in_the_source_is_a_literal() {
    let call = regex::Regex::new(r"sqlx::query(?:_scalar|_as)?(?:::<[^>]*>)?\(\s*([^\s])").unwrap();
    let mut offenders = Vec::new();
    let mut checked = 0;
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for m in call.captures_iter(&text) {
                checked += 1;
                let first = m.get(1).unwrap();
                let rest = &text[first.start()..];
                // A constant counts when the same file binds it to a file read at
                // compile time (`const INSERT_SQL: &str = include_str!("sql/insert.sql");`)
                // or to `concat!` of such parts, which takes only literals.
                let constant = rest
                    .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .next()
                    .filter(|name| !name.is_empty())
                    .is_some_and(|name| {
                        text.contains(&format!("const {name}: &str = include_str!("))
                            || text.contains(&format!("const {name}: &str = concat!("))
                    });
                if !(constant
                    || rest.starts_with('"')
                    || rest.starts_with("r\"")
                    || rest.starts_with("r#\""))
                {
                    let line = text[..first.start()].lines().count();
                    offenders.push(format!("{}:{line}", path.display()));
                }
            }
            for (i, line) in text.lines().enumerate() {
                let l = line.trim_start();
                let built =
                    (l.contains(".execute(") || l.contains("raw_sql(")) && l.contains("format!");
                // Imported unqualified, a query would escape the pattern above.
                let hidden = l.starts_with("use sqlx") && l.contains("query");
                if built || hidden {
                    offenders.push(format!("{}:{}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(
        checked > 5,
        "found only {checked} queries: is the pattern stale?"
    );
    assert!(offenders.is_empty(), "SQL built at run time: {offenders:?}");
}

//! tagwarden as a transparent proxy: a real registry behind it, skopeo and plain HTTP
//! in front. Each test has its own registry, database and tagwarden.
//!
//! Delete tests use moving tags (`dev`, `latest`): release-looking tags are immutable
//! and their deletion is refused.

use crate::support;

use reqwest::StatusCode;
use serde_json::Value;

use support::api;
use support::http::{
    client, expect_oci_error, expect_oci_error_where, get, header, MANIFEST_ACCEPT,
};
use support::oci::{sha256_digest, OCI_MANIFEST};
use support::{
    free_port, skopeo, Blob, Database, Front, Image, Index, OciLayout, Stack, Tagwarden,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Pushes `image` to `name_and_tag` through the front, preserving every digest.
async fn push(stack: &Stack, image: &Image, name_and_tag: &str) {
    skopeo::push(image, &stack.front.docker_ref(name_and_tag))
        .await
        .assert_success();
}

/// Pulls `name_and_tag` from the front into a new layout, every digest preserved; an
/// index with every image in it (`--all` leaves a single image as it is).
async fn pull(stack: &Stack, name_and_tag: &str) -> OciLayout {
    let pulled = OciLayout::empty();
    skopeo::copy(&stack.front.docker_ref(name_and_tag), &pulled.reference())
        .all()
        .preserve_digests()
        .run()
        .await
        .assert_success();
    pulled
}

/// Asserts `blob` came back intact into `pulled`, comparing sha256 digests so that a
/// failure prints digests, not megabytes; `what` names the blob in the message.
fn assert_pulled_back(pulled: &OciLayout, blob: &Blob, what: &str) {
    assert_eq!(
        pulled.blob(&blob.digest).map(|bytes| sha256_digest(&bytes)),
        Some(blob.digest.clone()),
        "{what} {} pulled back intact",
        blob.digest
    );
}

/// Asserts the registry behind the front itself serves `name_and_tag` as `digest`.
async fn assert_registry_serves(stack: &Stack, name_and_tag: &str, digest: &str) {
    let at_registry = skopeo::inspect_digest(&stack.registry.docker_ref(name_and_tag))
        .await
        .unwrap_or_else(|e| panic!("the registry itself serves {name_and_tag}: {e:?}"));
    assert_eq!(
        at_registry, digest,
        "digest of {name_and_tag} stored in the registry"
    );
}

/// Absolute URL for a `Location` header given by the front. A relative Location is
/// resolved against the front; an absolute one must point at the front itself, never at
/// the registry behind it.
fn follow_location(front: &Front, location: &str) -> String {
    if location.starts_with('/') {
        return format!("{}{location}", front.url());
    }
    assert!(
        location.starts_with(&format!("{}/", front.url())),
        "absolute Location must point at tagwarden ({}), got {location}",
        front.url()
    );
    location.to_string()
}

fn location_of(resp: &reqwest::Response) -> String {
    header(resp, "location").unwrap_or_else(|| panic!("no Location header on {resp:?}"))
}

#[tokio::test]
async fn multi_layer_image_pushed_and_pulled_back_unchanged() {
    let stack = Stack::start().await;
    let image = Image::random(&[2 * MIB, 300 * KIB, 1000]);

    push(&stack, &image, "team/app:1.0.0").await;

    let pulled = pull(&stack, "team/app:1.0.0").await;
    assert_eq!(
        pulled.manifest_digest(),
        image.digest(),
        "digest of the pulled manifest"
    );
    for blob in image.blobs() {
        assert_pulled_back(&pulled, blob, "blob");
    }

    assert_registry_serves(&stack, "team/app:1.0.0", image.digest()).await;
}

#[tokio::test]
async fn multi_arch_index_pushed_and_pulled_back_unchanged() {
    let stack = Stack::start().await;
    let index = Index::random_multi_arch(&[512 * KIB, 4 * KIB]);
    let source = OciLayout::with_index(&index);

    skopeo::copy(
        &source.reference(),
        &stack.front.docker_ref("team/multi:2.0.0"),
    )
    .all()
    .preserve_digests()
    .run()
    .await
    .assert_success();

    let pulled = pull(&stack, "team/multi:2.0.0").await;
    assert_eq!(
        pulled.manifest_digest(),
        index.digest(),
        "digest of the pulled index"
    );
    for image in &index.images {
        for blob in std::iter::once(&image.manifest).chain(image.blobs()) {
            assert_pulled_back(&pulled, blob, &format!("{} blob", image.architecture));
        }
    }

    assert_registry_serves(&stack, "team/multi:2.0.0", index.digest()).await;
}

#[tokio::test]
async fn copy_between_repositories_mounts_blobs() {
    let stack = Stack::start().await;
    let image = Image::random(&[256 * KIB, 8 * KIB]);
    push(&stack, &image, "team/a:1").await;

    skopeo::copy(
        &stack.front.docker_ref("team/a:1"),
        &stack.front.docker_ref("team/b:1"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();

    let http = client();
    for blob in image.blobs() {
        let resp = http
            .head(format!(
                "{}/v2/team/b/blobs/{}",
                stack.front.url(),
                blob.digest
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "HEAD blob {} in team/b",
            blob.digest
        );
        assert_eq!(
            header(&resp, "content-length").as_deref(),
            Some(blob.size().to_string().as_str()),
            "Content-Length of blob {} in team/b",
            blob.digest
        );
    }
    // skopeo asked the registry to mount the layers from team/a instead of uploading.
    let mount = format!(
        "POST /v2/team/b/blobs/uploads/?from=team%2Fa&mount={}",
        image.layers[0].digest.replace(':', "%3A")
    );
    assert!(
        stack.registry.logs().contains(&mount),
        "the registry saw no cross-repository mount request `{mount}`"
    );
    assert_registry_serves(&stack, "team/b:1", image.digest()).await;
}

#[tokio::test]
async fn delete_by_digest_of_a_moving_tag_removes_the_manifest() {
    let stack = Stack::start().await;
    let image = Image::random(&[64 * KIB]);
    push(&stack, &image, "team/app:dev").await;

    skopeo::delete(&stack.front.docker_ref("team/app:dev"))
        .await
        .assert_success();

    let http = client();
    for reference in [image.digest(), "dev"] {
        for base in [stack.front.url(), stack.registry.url()] {
            let resp = http
                .get(format!("{base}/v2/team/app/manifests/{reference}"))
                .header("accept", MANIFEST_ACCEPT)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::NOT_FOUND,
                "GET {base}/v2/team/app/manifests/{reference} after the delete"
            );
        }
    }
}

#[tokio::test]
async fn range_request_on_a_blob_gets_exactly_those_bytes() {
    let stack = Stack::start().await;
    let image = Image::random(&[4096]);
    push(&stack, &image, "team/app:latest").await;
    let layer = &image.layers[0];

    let resp = client()
        .get(format!(
            "{}/v2/team/app/blobs/{}",
            stack.front.url(),
            layer.digest
        ))
        .header("range", "bytes=10-99")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes 10-99/4096")
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(&body[..], &layer.bytes[10..100], "the bytes of the range");
}

#[tokio::test]
async fn chunked_upload_by_hand() {
    let stack = Stack::start().await;
    let front = &stack.front;
    let http = client();
    let content = support::oci::random_bytes(1_000_000);
    let digest = sha256_digest(&content);
    let (first, second) = content.split_at(700_000);

    let resp = http
        .post(format!("{}/v2/team/upload/blobs/uploads/", front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "start the upload");
    let mut location = follow_location(front, &location_of(&resp));

    for (start, chunk) in [(0, first), (first.len(), second)] {
        let end = start + chunk.len() - 1;
        let resp = http
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "PATCH bytes {start}-{end}"
        );
        assert_eq!(
            header(&resp, "range"),
            Some(format!("0-{end}")),
            "upload progress"
        );
        location = follow_location(front, &location_of(&resp));
    }

    let separator = if location.contains('?') { '&' } else { '?' };
    let resp = http
        .put(format!(
            "{location}{separator}digest={}",
            digest.replace(':', "%3A")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "complete the upload");
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    follow_location(front, &location_of(&resp));

    let resp = http
        .get(format!("{}/v2/team/upload/blobs/{digest}", front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET the uploaded blob");
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        sha256_digest(&body),
        digest,
        "the uploaded blob reads back intact"
    );
}

#[tokio::test]
async fn auth_challenge_of_the_registry_passes_through() {
    let stack = Stack::start_with_htpasswd("alice", "s3cret-pass").await;
    let http = client();

    let direct = http
        .get(format!("{}/v2/", stack.registry.url()))
        .send()
        .await
        .unwrap();
    let registry_challenge = header(&direct, "www-authenticate").expect("registry challenge");
    assert!(
        registry_challenge.starts_with("Basic realm="),
        "{registry_challenge}"
    );

    let resp = http
        .get(format!("{}/v2/", stack.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, "www-authenticate"),
        Some(registry_challenge),
        "the challenge reaches the client unchanged"
    );
}

#[tokio::test]
async fn push_and_pull_with_credentials_through_tagwarden() {
    let stack = Stack::start_with_htpasswd("alice", "s3cret-pass").await;
    let image = Image::random(&[128 * KIB, 2 * KIB]);
    let source = OciLayout::with_image(&image);

    skopeo::copy(
        &source.reference(),
        &stack.front.docker_ref("team/app:1.2.3"),
    )
    .preserve_digests()
    .dest_creds("alice:s3cret-pass")
    .run()
    .await
    .assert_success();

    let pulled = OciLayout::empty();
    skopeo::copy(
        &stack.front.docker_ref("team/app:1.2.3"),
        &pulled.reference(),
    )
    .preserve_digests()
    .src_creds("alice:s3cret-pass")
    .run()
    .await
    .assert_success();
    assert_eq!(pulled.manifest_digest(), image.digest());
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let stack = Stack::start_with_htpasswd("alice", "s3cret-pass").await;
    let image = Image::random(&[2 * KIB]);
    let source = OciLayout::with_image(&image);

    let stderr = skopeo::copy(
        &source.reference(),
        &stack.front.docker_ref("team/app:1.2.3"),
    )
    .preserve_digests()
    .dest_creds("alice:wrong-pass")
    .run()
    .await
    .assert_failure();
    let stderr = stderr.to_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "skopeo should report an authentication failure, got: {stderr}"
    );
}

#[tokio::test]
async fn unreachable_upstream_gives_an_oci_error_naming_the_upstream() {
    let database = Database::fresh();
    let nothing_listens = format!("http://127.0.0.1:{}", free_port());
    let tagwarden = Tagwarden::start(&nothing_listens, database.url()).await;

    let resp = get(format!("{}/v2/", tagwarden.url())).await;

    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0"),
        "tagwarden's own responses carry the API version header"
    );
    let (_, error) = expect_oci_error_where(
        resp,
        |s| s == StatusCode::BAD_GATEWAY || s == StatusCode::SERVICE_UNAVAILABLE,
        "GET /v2/ with the upstream down",
    )
    .await;
    assert!(
        error.message.to_lowercase().contains("upstream"),
        "the message should say the upstream is unreachable: {error:?}"
    );
}

#[tokio::test]
async fn non_canonical_paths_are_rejected_and_nothing_is_written() {
    let stack = Stack::start().await;
    let image = Image::random(&[4 * KIB]);
    push(&stack, &image, "exp/app:base").await;
    let http = client();

    for path in [
        "/v2/exp%2Fapp/manifests/v2",
        "/v2//exp/app/manifests/v1",
        "/v2/Exp/app/manifests/v1",
    ] {
        let resp = http
            .put(format!("{}{path}", stack.front.url()))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.bytes.clone())
            .send()
            .await
            .unwrap();
        let (status, error) =
            expect_oci_error_where(resp, |s| s.is_client_error(), &format!("PUT {path}")).await;
        println!("PUT {path} -> {status} {error:?}");
    }

    let registry = stack.registry.url();
    assert_eq!(
        api::tags(&registry, "exp/app").await,
        ["base"],
        "tags of exp/app"
    );
    // Not `api::catalog`: distribution 2.8 answers its `n=10000` with no repositories.
    let catalog: Value = http
        .get(format!("{registry}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["exp/app"]),
        "repositories in the registry"
    );
}

#[tokio::test]
async fn non_registry_paths_on_the_proxy_port_are_not_found() {
    let stack = Stack::start().await;
    let http = client();
    for path in ["/", "/admin", "/metrics"] {
        let resp = http
            .get(format!("{}{path}", stack.front.url()))
            .send()
            .await
            .unwrap();
        expect_oci_error(
            resp,
            StatusCode::NOT_FOUND,
            &format!("GET {path} on the proxy port"),
        )
        .await;
    }
}

/// Conformance (distribution-spec v1.1.1): a GET or HEAD of a manifest whose reference is
/// outside the grammar is simply unknown, as the registry itself answers; a write with
/// such a reference still gets 400 `TAG_INVALID`, which tells a pusher why.
#[tokio::test]
async fn reads_of_a_reference_outside_the_grammar_are_unknown_as_at_the_registry() {
    let stack = Stack::start().await;
    let image = Image::random(&[KIB]);
    push(&stack, &image, "conf/app:base").await;
    let http = client();

    for reference in [".INVALID_MANIFEST_NAME", "-leading-dash", &"t".repeat(129)] {
        let path = format!("/v2/conf/app/manifests/{reference}");
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let upstream = http
                .request(method.clone(), format!("{}{path}", stack.registry.url()))
                .header("accept", MANIFEST_ACCEPT)
                .send()
                .await
                .unwrap();
            assert_eq!(
                upstream.status(),
                StatusCode::NOT_FOUND,
                "the registry itself: {method} {path}"
            );
            let resp = http
                .request(method.clone(), format!("{}{path}", stack.front.url()))
                .header("accept", MANIFEST_ACCEPT)
                .send()
                .await
                .unwrap();
            if method == reqwest::Method::HEAD {
                assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {path}");
            } else {
                let error =
                    expect_oci_error(resp, StatusCode::NOT_FOUND, &format!("GET {path}")).await;
                assert_eq!(error.code, "MANIFEST_UNKNOWN", "GET {path}");
                assert!(error.message.contains("is not valid"), "{error:?}");
            }
        }
        let resp = http
            .put(format!("{}{path}", stack.front.url()))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.bytes.clone())
            .send()
            .await
            .unwrap();
        let error = expect_oci_error(resp, StatusCode::BAD_REQUEST, &format!("PUT {path}")).await;
        assert_eq!(error.code, "TAG_INVALID", "PUT {path}");
        let resp = http
            .delete(format!("{}{path}", stack.front.url()))
            .send()
            .await
            .unwrap();
        let error =
            expect_oci_error(resp, StatusCode::BAD_REQUEST, &format!("DELETE {path}")).await;
        assert_eq!(error.code, "TAG_INVALID", "DELETE {path}");
    }

    // A malformed digest stays a 400 on reads: the registry has no good answer for it.
    let path = format!("/v2/conf/app/manifests/sha256:{}", "A".repeat(64));
    let resp = http
        .get(format!("{}{path}", stack.front.url()))
        .send()
        .await
        .unwrap();
    let error = expect_oci_error(resp, StatusCode::BAD_REQUEST, &format!("GET {path}")).await;
    assert_eq!(error.code, "DIGEST_INVALID");
    assert_eq!(api::tags(&stack.registry.url(), "conf/app").await, ["base"]);
}

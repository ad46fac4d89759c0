//! The registry client against an in-process registry stand-in.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use wiremock::matchers::{header as has_header, headers, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::UpstreamConfig;
use crate::oci::{ErrorCode, OciError};

const MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

fn name() -> Name {
    Name::parse("team/app").unwrap()
}

fn sha(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

fn own_auth() -> HeaderValue {
    HeaderValue::from_static("Basic dGFnd2FyZGVuOnNlY3JldA==")
}

fn client_for(server: &MockServer, manifest_timeout: &str) -> RegistryClient {
    let config: UpstreamConfig = serde_json::from_value(serde_json::json!({
        "url": server.uri(),
        "manifest_timeout": manifest_timeout,
    }))
    .unwrap();
    let forwarder = Forwarder::new(
        Upstream::new(&config).unwrap(),
        crate::telemetry::Metrics::install(),
    );
    RegistryClient::new(forwarder, Some(own_auth()), 4 * 1024 * 1024)
}

fn as_a_client(registry: &RegistryClient) -> RegistryClient {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer client-token"),
    );
    let client = Client {
        peer: "127.0.0.1:40000".parse().unwrap(),
        host: None,
        tls: false,
        trusted_peer: false,
        request_id: "test".into(),
    };
    registry.as_client(&headers, &client)
}

#[tokio::test]
async fn listings_follow_link_to_the_last_page_and_stop_at_the_page_bound() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/team/app/tags/list"))
        .and(query_param("n", "2"))
        .and(query_param("last", "b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "team/app", "tags": ["c"],
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/team/app/tags/list"))
        .and(query_param("n", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\"")
                .set_body_json(serde_json::json!({ "name": "team/app", "tags": ["a", "b"] })),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "repositories": ["team/app", "team/other"],
        })))
        .mount(&server)
        .await;
    let registry = client_for(&server, "5s");

    let tags = registry.tags(&name(), Some(2)).all().await.unwrap();
    assert_eq!(tags, ["a", "b", "c"]);
    let repos = registry.catalog(None).all().await.unwrap();
    assert_eq!(repos, ["team/app", "team/other"]);

    let e = registry
        .tags(&name(), Some(2))
        .at_most(1)
        .all()
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooManyPages(1)), "{e}");

    // A repository the registry does not know lists nothing.
    let unknown = Name::parse("team/none").unwrap();
    assert!(registry
        .tags(&unknown, None)
        .all()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_manifest_is_returned_only_if_its_bytes_hash_to_the_digest() {
    let server = MockServer::start().await;
    let good = sha(MANIFEST);
    let forged = sha(b"what was asked for");
    for (digest, body) in [(&good, MANIFEST), (&forged, MANIFEST)] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/team/app/manifests/{digest}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .set_body_bytes(body),
            )
            .mount(&server)
            .await;
    }
    let registry = client_for(&server, "5s");

    let m = registry.manifest(&name(), &good).await.unwrap().unwrap();
    assert_eq!(m.bytes, Bytes::from_static(MANIFEST));
    assert_eq!(
        m.content_type.unwrap(),
        "application/vnd.oci.image.manifest.v1+json"
    );

    let e = registry.manifest(&name(), &forged).await.unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::DigestMismatch { actual } if *actual == good),
        "{e}"
    );
    let refused = OciError::from(
        as_a_client(&registry)
            .manifest(&name(), &forged)
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(
        refused.message.contains("do not hash"),
        "{}",
        refused.message
    );

    let absent = sha(b"not stored");
    assert!(registry.manifest(&name(), &absent).await.unwrap().is_none());
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_by_its_length_or_where_it_runs_over() {
    let server = MockServer::start().await;
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let digest = sha(&big);
    Mock::given(method("GET"))
        .and(path(format!("/v2/team/app/manifests/{digest}")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(big))
        .mount(&server)
        .await;
    let registry = client_for(&server, "5s");
    let e = registry.manifest(&name(), &digest).await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::TooLarge { limit } if limit == 4 * 1024 * 1024),
        "{e}"
    );
    assert!(e.to_string().contains("at most 4194304 bytes"), "{e}");

    // A body with no length that never ends: cut off at the limit, never buffered whole.
    let endless = futures_util::stream::repeat_with(|| {
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
    });
    let body = http_body_util::StreamBody::new(endless);
    let e = read_bounded(body, &HeaderMap::new(), 1024 * 1024)
        .await
        .unwrap_err();
    assert!(matches!(e, ErrorKind::TooLarge { limit: 1048576 }), "{e}");
}

#[tokio::test]
async fn resolve_takes_the_digest_header_or_hashes_the_manifest() {
    let server = MockServer::start().await;
    let stated = sha(b"stated");
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/stated"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("docker-content-digest", stated.as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/unstated"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/team/app/manifests/unstated"))
        .and(headers(
            "accept",
            crate::oci::media::ACCEPT_ALL_MANIFESTS
                .split(", ")
                .collect(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(MANIFEST))
        .mount(&server)
        .await;
    let registry = client_for(&server, "5s");
    assert_eq!(
        registry.resolve(&name(), "stated").await.unwrap(),
        Some(stated)
    );
    assert_eq!(
        registry.resolve(&name(), "unstated").await.unwrap(),
        Some(sha(MANIFEST))
    );
    assert_eq!(registry.resolve(&name(), "absent").await.unwrap(), None);
}

#[tokio::test]
async fn refusals_and_failures_map_to_one_answer_each() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/locked"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Bearer realm=\"https://auth\""),
        )
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/forbidden"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/broken"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let registry = client_for(&server, "5s");
    let client = as_a_client(&registry);

    // With the client's credentials, a challenge goes back to the client as is.
    let e = OciError::from(client.resolve(&name(), "locked").await.unwrap_err());
    assert_eq!(
        (e.status, e.code),
        (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
    );
    assert!(e
        .headers
        .iter()
        .any(|(n, v)| n == header::WWW_AUTHENTICATE && v == "Bearer realm=\"https://auth\""));
    let e = OciError::from(client.resolve(&name(), "forbidden").await.unwrap_err());
    assert_eq!(
        (e.status, e.code),
        (StatusCode::FORBIDDEN, ErrorCode::Denied)
    );

    // With tagwarden's own, it is a misconfiguration: 502 naming the settings.
    let own = registry.resolve(&name(), "locked").await.unwrap_err();
    assert!(own.to_string().contains("upstream.username"), "{own}");
    let e = OciError::from(own);
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable)
    );

    // Anything else fails closed, to retry.
    let e = OciError::from(client.resolve(&name(), "broken").await.unwrap_err());
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable)
    );
    assert!(e.message.contains("500"), "{}", e.message);
    assert!(e.headers.iter().any(|(n, _)| n == header::RETRY_AFTER));
}

#[tokio::test]
async fn a_registry_slower_than_the_manifest_deadline_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(MANIFEST)
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let registry = client_for(&server, "200ms");
    let started = std::time::Instant::now();
    let e = registry
        .manifest(&name(), &sha(MANIFEST))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            e.kind,
            ErrorKind::Upstream(crate::proxy::UpstreamError::Timeout(_))
        ),
        "{e}"
    );
    assert_eq!(OciError::from(e).status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn own_writes_carry_own_credentials_and_check_the_stored_digest() {
    let server = MockServer::start().await;
    let digest = sha(MANIFEST);
    Mock::given(method("PUT"))
        .and(path("/v2/team/app/manifests/good"))
        .and(has_header(
            "authorization",
            "Basic dGFnd2FyZGVuOnNlY3JldA==",
        ))
        .and(has_header(
            "content-type",
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .respond_with(
            ResponseTemplate::new(201).insert_header("docker-content-digest", digest.as_str()),
        )
        .mount(&server)
        .await;
    let other = sha(b"other");
    Mock::given(method("PUT"))
        .and(path("/v2/team/app/manifests/rewritten"))
        .respond_with(
            ResponseTemplate::new(201).insert_header("docker-content-digest", other.as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/team/app/manifests/{digest}")))
        .and(has_header(
            "authorization",
            "Basic dGFnd2FyZGVuOnNlY3JldA==",
        ))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let registry = client_for(&server, "5s");
    let ct = HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json");
    let put = |tag: &'static str| {
        let (registry, digest, ct) = (registry.clone(), digest.clone(), ct.clone());
        async move {
            registry
                .put_manifest(
                    &name(),
                    &Tag::parse(tag).unwrap(),
                    &digest,
                    Bytes::from_static(MANIFEST),
                    ct,
                )
                .await
        }
    };
    put("good").await.unwrap();
    let e = put("rewritten").await.unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::StoredAs { stored, .. } if *stored == other.as_str()),
        "{e}"
    );
    // No credentials matched: the registry's 404 is an error, not a success.
    let e = put("missing").await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Status(StatusCode::NOT_FOUND)),
        "{e}"
    );

    assert!(registry.delete_manifest(&name(), &digest).await.unwrap());
    assert!(!registry.delete_manifest(&name(), &other).await.unwrap());
}

//! Proxy edge cases against a scripted upstream (wiremock): Location rewriting,
//! redirects, timeouts, query strings and header hygiene.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use support::http::{client, expect_oci_error, get, get_as, header};
use support::raw::raw_exchange;
use support::Front;

/// Matches when the raw query string is exactly `query`, byte for byte.
struct RawQuery(&'static str);

impl Match for RawQuery {
    fn matches(&self, request: &Request) -> bool {
        request.url.query() == Some(self.0)
    }
}

/// The requests the upstream received on `path`.
async fn received_on(upstream: &MockServer, path: &str) -> Vec<Request> {
    upstream
        .received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

fn upstream_addr(upstream: &MockServer) -> String {
    upstream.address().to_string()
}

#[tokio::test]
async fn absolute_upload_location_of_the_upstream_is_not_leaked() {
    let upstream = MockServer::start().await;
    let state = "_state=eyJOYW1lIjoiYSJ9-_x%2By%3D%3D";
    Mock::given(method("POST"))
        .and(path("/v2/a/blobs/uploads/"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header(
                    "location",
                    format!(
                        "http://{}/v2/a/blobs/uploads/abc?{state}",
                        upstream_addr(&upstream)
                    )
                    .as_str(),
                )
                .insert_header("docker-upload-uuid", "abc")
                .insert_header("range", "0-0"),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v2/a/blobs/uploads/abc"))
        .and(RawQuery(state))
        .respond_with(ResponseTemplate::new(202).insert_header("range", "0-3"))
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;
    let http = client();

    let resp = http
        .post(format!("{}/v2/a/blobs/uploads/", front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location").expect("Location on 202");
    assert!(
        !location.contains(&upstream_addr(&upstream)),
        "Location leaks the upstream address: {location}"
    );
    let expected_path = format!("/v2/a/blobs/uploads/abc?{state}");
    assert!(
        location == expected_path || location == format!("{}{expected_path}", front.url()),
        "Location should be {expected_path} (relative or on tagwarden), got {location}"
    );

    // Following it reaches the upstream with the signed state intact.
    let resp = http
        .patch(format!("{}{expected_path}", front.url()))
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-3")
        .body("abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "PATCH with the _state kept"
    );
}

#[tokio::test]
async fn redirect_to_blob_storage_is_passed_on_not_followed() {
    let upstream = MockServer::start().await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let presigned = "https://s3.example/bucket/blobs/ab?X-Amz-Signature=a%2Fb&X-Amz-Expires=60";
    Mock::given(method("GET"))
        .and(path(format!("/v2/a/blobs/{digest}")))
        .respond_with(ResponseTemplate::new(307).insert_header("location", presigned))
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;

    let resp = get(format!("{}/v2/a/blobs/{digest}", front.url())).await;

    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&resp, "location").as_deref(), Some(presigned));
}

#[tokio::test]
async fn silent_upstream_times_out_with_504() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/a/manifests/latest"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(8)))
        .mount(&upstream)
        .await;
    let front = Front::builder(&upstream.uri())
        .env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "1s")
        .start()
        .await;

    let started = Instant::now();
    let resp = get(format!("{}/v2/a/manifests/latest", front.url())).await;
    let elapsed = started.elapsed();
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0"),
        "tagwarden's own responses carry the API version header"
    );

    let error = expect_oci_error(resp, StatusCode::GATEWAY_TIMEOUT, "silent upstream").await;
    assert!(
        error.message.to_lowercase().contains("upstream"),
        "the message should blame the upstream: {error:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the 1s idle timeout should cut the wait, took {elapsed:?}"
    );
}

#[tokio::test]
async fn query_string_is_forwarded_byte_for_byte() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/a/tags/list"))
        .and(RawQuery("n=10&last=a%2Fb"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "a", "tags": ["c"]
        })))
        .expect(1)
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;

    let resp = get(format!("{}/v2/a/tags/list?n=10&last=a%2Fb", front.url())).await;

    let received: Vec<_> = received_on(&upstream, "/v2/a/tags/list")
        .await
        .iter()
        .map(|r| r.url.query().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        received,
        ["n=10&last=a%2Fb"],
        "queries the upstream received"
    );
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn hop_by_hop_and_spoofed_forwarding_headers_do_not_reach_the_upstream() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/a/tags/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "a", "tags": []
        })))
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;

    let resp = client()
        .get(format!("{}/v2/a/tags/list", front.url()))
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let received = received_on(&upstream, "/v2/a/tags/list").await;
    assert_eq!(received.len(), 1, "one request reached the upstream");
    let headers = &received[0].headers;
    for name in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !headers.contains_key(name),
            "hop-by-hop header {name} reached the upstream: {headers:?}"
        );
    }
    for value in headers.get_all("connection") {
        assert!(
            !value
                .to_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("x-secret"),
            "the client's Connection header reached the upstream: {headers:?}"
        );
    }
    let forwarded_host: Vec<&str> = headers
        .get_all("x-forwarded-host")
        .iter()
        .map(|v| v.to_str().unwrap_or("<not ASCII>"))
        .collect();
    assert_eq!(
        forwarded_host,
        [front.addr()],
        "X-Forwarded-Host should be the Host the client used: {headers:?}"
    );
    for (name, value) in headers {
        assert!(
            !value.to_str().unwrap_or("").contains("evil"),
            "spoofed value reached the upstream in {name}: {headers:?}"
        );
    }
}

#[tokio::test]
async fn absolute_form_targets_and_lower_case_methods_never_reach_the_upstream() {
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(201))
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;
    let body = r#"{"schemaVersion":2}"#;
    let cases = [
        format!(
            "PUT http://evil.example/v2/a/manifests/v1 HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            front.addr(),
            body.len()
        ),
        format!(
            "put /v2/a/manifests/v1 HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            front.addr(),
            body.len()
        ),
        "GET /v2/ HTTP/1.1\r\nHost: evil.example/path\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for request in &cases {
        let (status, answer) = raw_exchange(front.addr(), request.as_bytes()).await;
        assert!(
            (400..500).contains(&status),
            "expected a 4xx for {request:?}, got {answer}"
        );
        assert!(answer.contains("\"errors\""), "an OCI error body: {answer}");
    }
    let received = upstream.received_requests().await.unwrap();
    assert!(
        received.is_empty(),
        "nothing reached the upstream: {received:?}"
    );
}

#[tokio::test]
async fn a_binding_is_not_confirmed_when_the_upstream_stores_another_digest() {
    let upstream = MockServer::start().await;
    let other = format!("sha256:{}", "e".repeat(64));
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&upstream)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/a/manifests/1.0.0"))
        .respond_with(
            ResponseTemplate::new(201).insert_header("docker-content-digest", other.as_str()),
        )
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;
    let resp = client()
        .put(format!("{}/v2/a/manifests/1.0.0", front.url()))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(r#"{"schemaVersion":2,"layers":[]}"#)
        .send()
        .await
        .unwrap();
    let err = expect_oci_error(resp, StatusCode::BAD_GATEWAY, "digest mismatch").await;
    assert!(
        err.message.contains(&other) && err.message.contains("no tag was bound"),
        "{}",
        err.message
    );
    let db = front.database().expect("tagwarden in front");
    assert_eq!(
        db.query_column("SELECT count(*)::text FROM tag_bindings"),
        [Some("0".to_string())]
    );
}

#[tokio::test]
async fn bearer_token_flow_passes_through_and_the_token_subject_is_the_identity() {
    use base64::Engine as _;
    let upstream = MockServer::start().await;
    let challenge = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push""#;
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"ci-bot","access":[]}"#);
    let token = format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln");
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {token}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", challenge))
        .mount(&upstream)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/1.0.0"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&upstream)
        .await;
    let body = r#"{"schemaVersion":2,"layers":[]}"#;
    let digest = support::oci::sha256_digest(body.as_bytes());
    Mock::given(method("PUT"))
        .and(path("/v2/team/app/manifests/1.0.0"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {token}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(201).insert_header("docker-content-digest", digest.as_str()),
        )
        .mount(&upstream)
        .await;
    let front = Front::in_front_of(&upstream.uri()).await;

    let resp = get(format!("{}/v2/", front.url())).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, "www-authenticate").as_deref(),
        Some(challenge),
        "the challenge is unchanged"
    );
    let resp = get_as(format!("{}/v2/", front.url()), &token).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the token reached the upstream"
    );

    let resp = client()
        .put(format!("{}/v2/team/app/manifests/1.0.0", front.url()))
        .bearer_auth(&token)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The existence check went upstream with the client's own token.
    let heads = received_on(&upstream, "/v2/team/app/manifests/1.0.0").await;
    let head = heads
        .iter()
        .find(|r| r.method.as_str() == "HEAD")
        .expect("a HEAD probe");
    assert_eq!(
        head.headers.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {token}")
    );
    let db = front.database().expect("tagwarden in front");
    assert_eq!(
        db.query_column("SELECT identity || ' ' || identity_verified::text FROM tag_events"),
        [Some("ci-bot true".to_string())]
    );
}

#[tokio::test]
async fn manifest_requests_the_upstream_never_answers_end_at_the_manifest_timeout() {
    use sha2::Digest as _;
    let upstream = MockServer::start().await;
    let never = ResponseTemplate::new(201).set_delay(Duration::from_secs(120));
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&upstream)
        .await;
    for (verb, p) in [
        ("PUT", "/v2/a/manifests/1.0.0"),
        ("DELETE", "/v2/a/manifests/latest"),
    ] {
        Mock::given(method(verb))
            .and(path(p))
            .respond_with(never.clone())
            .mount(&upstream)
            .await;
    }
    let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)));
    Mock::given(method("PUT"))
        .and(path("/v2/a/manifests/2.0.0"))
        .respond_with(
            ResponseTemplate::new(201).insert_header("docker-content-digest", digest.as_str()),
        )
        .mount(&upstream)
        .await;
    // One ledger connection: a write that kept it would block every other write.
    let front = Front::builder(&upstream.uri())
        .env("TAGWARDEN_UPSTREAM__MANIFEST_TIMEOUT", "1s")
        .env("TAGWARDEN_DATABASE__MAX_CONNECTIONS", "1")
        .start()
        .await;
    let put = |tag: &str| {
        client()
            .put(format!("{}/v2/a/manifests/{tag}", front.url()))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
    };
    for (what, request) in [
        ("PUT", put("1.0.0")),
        (
            "DELETE",
            client().delete(format!("{}/v2/a/manifests/latest", front.url())),
        ),
    ] {
        let started = Instant::now();
        let resp = request.send().await.unwrap();
        let elapsed = started.elapsed();
        let error = expect_oci_error(resp, StatusCode::GATEWAY_TIMEOUT, what).await;
        assert!(
            error.message.contains("did not answer"),
            "{what}: {error:?}"
        );
        assert!(
            elapsed < Duration::from_secs(4),
            "{what}: the 1 s manifest timeout should end the wait, took {elapsed:?}"
        );
    }
    let started = Instant::now();
    let resp = put("2.0.0").send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "the ledger connection came back"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

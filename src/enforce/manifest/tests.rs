use super::*;
use http::HeaderValue;

fn headers(ct: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !ct.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    }
    h
}

const OK: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

async fn read_with(
    ct: &str,
    body: &'static [u8],
    expected: Option<&Digest>,
) -> Result<Manifest, OciError> {
    read(
        &headers(ct),
        Body::from(body),
        expected,
        4 << 20,
        Duration::from_secs(5),
        &bounds(),
    )
    .await
}

fn bounds() -> ReadBounds {
    ReadBounds::new(Duration::from_secs(30), 64 << 20)
}

#[tokio::test]
async fn digest_is_of_the_exact_bytes() {
    let m = read_with(media::OCI_MANIFEST, OK, None).await.unwrap();
    assert_eq!(m.digest, Digest::of(Algorithm::Sha256, OK));
    let same = read_with(media::OCI_MANIFEST, OK, Some(&m.digest))
        .await
        .unwrap();
    assert_eq!(same.bytes, OK);
}

#[tokio::test]
async fn a_body_that_does_not_hash_to_the_path_digest_is_refused() {
    let other = Digest::of(Algorithm::Sha256, b"other");
    let e = read_with(media::OCI_MANIFEST, OK, Some(&other))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid)
    );
}

#[tokio::test]
async fn schema1_missing_type_and_bad_json_are_refused() {
    for (ct, body) in [
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            OK,
        ),
        ("", OK),
        (media::OCI_MANIFEST, &b"not json"[..]),
        (media::OCI_MANIFEST, &br#"{"schemaVersion":1}"#[..]),
        (media::OCI_MANIFEST, &b"[]"[..]),
    ] {
        let e = read_with(ct, body, None).await.unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid),
            "{ct} {body:?}"
        );
    }
}

#[tokio::test]
async fn oversized_manifests_get_413() {
    let big = vec![b' '; 100];
    let e = read(
        &headers(media::OCI_MANIFEST),
        Body::from(big),
        None,
        50,
        Duration::from_secs(5),
        &bounds(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut h = headers(media::OCI_MANIFEST);
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_static("999999999"),
    );
    let e = read(
        &h,
        Body::empty(),
        None,
        50,
        Duration::from_secs(5),
        &bounds(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn only_the_four_manifest_types_are_accepted() {
    for ct in [
        "application/json",
        "",
        "; charset=utf-8",
        "text/plain",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        let e = read_with(ct, OK, None).await.unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid),
            "{ct:?}"
        );
    }
    let m = read_with(
        "APPLICATION/vnd.oci.image.manifest.v1+JSON; charset=utf-8",
        OK,
        None,
    )
    .await
    .unwrap();
    assert_eq!(m.bytes, OK);
    for (ct, body) in [
        (media::DOCKER_MANIFEST, &br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#[..]),
        (media::DOCKER_MANIFEST_LIST, &br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#[..]),
        (media::OCI_INDEX, &br#"{"schemaVersion":2,"manifests":[]}"#[..]),
    ] {
        read_with(ct, body, None).await.unwrap();
    }
}

#[tokio::test]
async fn a_declared_media_type_must_match_the_content_type() {
    let e = read_with(media::DOCKER_MANIFEST, OK, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid)
    );
    assert!(e.message.contains("declares mediaType"), "{}", e.message);
    let e = read_with(
        media::OCI_MANIFEST,
        br#"{"schemaVersion":2,"mediaType":7}"#,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::ManifestInvalid);
}

#[tokio::test]
async fn artifacts_are_image_manifests_and_pass() {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    read_with(media::OCI_MANIFEST, body, None).await.unwrap();
}

#[tokio::test]
async fn pushes_beyond_the_buffer_budget_are_told_to_retry_and_the_budget_comes_back() {
    let bounds = ReadBounds::new(Duration::from_secs(30), 2 * OK.len());
    let mut h = headers(media::OCI_MANIFEST);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(OK.len()));
    let read_one = || {
        read(
            &h,
            Body::from(OK),
            None,
            4 << 20,
            Duration::from_secs(5),
            &bounds,
        )
    };
    let first = read_one().await.unwrap();
    let second = read_one().await.unwrap();
    let e = read_one().await.unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyRequests)
    );
    assert!(e.headers.iter().any(|(n, _)| n == header::RETRY_AFTER));
    drop(first);
    let third = read_one().await.unwrap();
    drop((second, third));
    assert_eq!(bounds.budget.used.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn a_body_without_length_takes_the_budget_as_it_grows() {
    let bounds = ReadBounds::new(Duration::from_secs(30), 40 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..8 {
            let chunk = Bytes::from(vec![b' '; 8 * 1024]);
            if tx.send(Ok(http_body::Frame::data(chunk))).await.is_err() {
                return;
            }
        }
    });
    let body = Body::new(http_body_util::StreamBody::new(stream_from(rx)));
    let e = read(
        &headers(media::OCI_MANIFEST),
        body,
        None,
        4 << 20,
        Duration::from_secs(5),
        &bounds,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::TooManyRequests,
        "64 KiB do not fit a 40 KiB budget"
    );
    assert_eq!(bounds.budget.used.load(Ordering::Acquire), 0);
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_is_cut_at_the_read_deadline() {
    let bounds = ReadBounds::new(Duration::from_secs(30), 64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        // One byte a second never trips the 5 s idle timeout.
        for _ in 0..3600 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx
                .send(Ok(http_body::Frame::data(Bytes::from_static(b" "))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let started = tokio::time::Instant::now();
    let body = Body::new(http_body_util::StreamBody::new(stream_from(rx)));
    let e = read(
        &headers(media::OCI_MANIFEST),
        body,
        None,
        4 << 20,
        Duration::from_secs(5),
        &bounds,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed().as_secs(), 30);
    assert_eq!(bounds.budget.used.load(Ordering::Acquire), 0);
}

fn stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Unpin + 'static
where
    T: Send + 'static,
{
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

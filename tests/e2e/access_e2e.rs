//! What tagwarden tells and records, and for whom, against the real registry, with and
//! without htpasswd auth: no refusal (with its bound digest, time and pusher) for a
//! client the registry would not let push, identities verified only where the registry
//! authenticates, identical re-pushes of a release answered without rewriting the
//! registry and coalesced in the history, refusals recorded at a bounded rate, a write
//! that the client abandons still recorded, and no DELETE with a body forwarded.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::StatusCode;
use support::api::{put_manifest, resolve, upload_blob};
use support::consistency::{assert_ledger_matches_registry, live_bindings};
use support::http::{client, expect_oci_error, get_text, header};
use support::raw::{exchange_within, request};
use support::relay::Relay;
use support::{skopeo, Database, Image, OciLayout, Registry, Stack, Tagwarden};

const USER: &str = "alice";
const PASSWORD: &str = "correct-horse-battery";

fn ledger(stack: &Stack) -> &Database {
    stack
        .front
        .database()
        .expect("these tests need tagwarden in front (not direct mode)")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn put_as(
    base: &str,
    repo: &str,
    reference: &str,
    image: &Image,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", &image.manifest.media_type)
        .body(image.manifest.bytes.clone());
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("PUT manifest")
}

async fn push(image: &Image, dest: &str, creds: Option<&str>) -> skopeo::SkopeoOutput {
    let layout = OciLayout::with_image(image);
    let mut copy = skopeo::copy(&layout.reference(), dest).preserve_digests();
    if let Some(c) = creds {
        copy = copy.dest_creds(c);
    }
    copy.run().await
}

#[tokio::test]
async fn clients_the_registry_would_not_let_push_get_its_challenge_not_a_refusal() {
    let stack = Stack::start_with_htpasswd(USER, PASSWORD).await;
    let repo = "locked/app";
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    push(
        &a,
        &stack.front.docker_ref(&format!("{repo}:1.0.0")),
        Some(&format!("{USER}:{PASSWORD}")),
    )
    .await
    .assert_success();
    let base = stack.front.url();
    let db = ledger(&stack);

    // Anonymous, and with a wrong password: the registry's own 401 challenge, nothing
    // about the binding, nothing recorded.
    for auth in [None, Some(basic(USER, "wrong"))] {
        let resp = put_as(&base, repo, "1.0.0", &b, auth.as_deref()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Basic"), "challenge: {challenge}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains(a.digest()) && !body.contains("immutable"),
            "nothing about the binding may be disclosed: {body}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*)::text FROM tag_events WHERE action = 'refuse'"),
        0
    );

    // The same push with valid credentials is refused, and that refusal is recorded
    // with a verified identity.
    let resp = put_as(&base, repo, "1.0.0", &b, Some(&basic(USER, PASSWORD))).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "authenticated re-point").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    assert_eq!(
        db.query_column(
            "SELECT identity || ':' || identity_verified FROM tag_events WHERE action = 'refuse'"
        ),
        [Some(format!("{USER}:true"))]
    );
    // The identity that pushed the release was verified by the registry too.
    assert_eq!(
        db.query_column("SELECT identity_verified::text FROM tag_events WHERE action = 'create'"),
        [Some("true".to_string())]
    );
}

#[tokio::test]
async fn an_identity_counts_as_verified_only_where_the_registry_authenticates() {
    // An open registry accepts any credentials: the name is recorded as claimed only.
    // (skopeo sends no credentials where no challenge asks for them, so by hand.)
    let stack = Stack::start().await;
    let image = Image::random(&[256]);
    for blob in image.blobs() {
        upload_blob(&stack.registry.url(), "open/app", blob).await;
    }
    let resp = put_as(
        &stack.front.url(),
        "open/app",
        "1.0.0",
        &image,
        Some(&basic("mallory", "anything")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        ledger(&stack).query_column(
            "SELECT identity || ':' || identity_verified FROM tag_events WHERE action = 'create'"
        ),
        [Some("mallory:false".to_string())]
    );
}

#[tokio::test]
async fn identical_repushes_of_a_release_leave_the_registry_untouched_and_are_coalesced() {
    let stack = Stack::start().await;
    let repo = "steady/app";
    let image = Image::random(&[1024]);
    push(
        &image,
        &stack.front.docker_ref(&format!("{repo}:1.0.0")),
        None,
    )
    .await
    .assert_success();
    let link = stack.registry.dir().join(format!(
        "storage/docker/registry/v2/repositories/{repo}/_manifests/tags/1.0.0/current/link"
    ));
    let modified = |p: &std::path::Path| -> SystemTime {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let before = modified(&link);
    tokio::time::sleep(Duration::from_millis(20)).await;

    const REPUSHES: usize = 20;
    for _ in 0..REPUSHES {
        let resp = put_manifest(&stack.front.url(), repo, "1.0.0", &image.manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(image.digest())
        );
        let location = header(&resp, "location").unwrap_or_default();
        assert!(
            location.ends_with(&format!("/v2/{repo}/manifests/{}", image.digest())),
            "{location}"
        );
    }
    assert_eq!(
        modified(&link),
        before,
        "the registry's tag link must not be rewritten by an identical re-push"
    );

    let db = ledger(&stack);
    // One per clock hour: the re-pushes may straddle the hour's turn.
    let hours = db.count("SELECT count(DISTINCT hour)::text FROM repush_tally WHERE tag = '1.0.0'");
    let mut expected = vec![Some("create".to_string())];
    expected.extend((0..hours).map(|_| Some("repush".to_string())));
    assert!(hours == 1 || hours == 2, "{hours} hours");
    assert_eq!(
        db.query_column("SELECT action FROM tag_events WHERE tag = '1.0.0' ORDER BY id"),
        expected,
        "one repush event per tag, digest, identity and hour"
    );
    assert_eq!(
        db.count("SELECT sum(count)::text FROM repush_tally"),
        REPUSHES as i64
    );

    // A re-push of a release the registry lost is forwarded, so the registry gets the
    // tag back.
    skopeo::delete(&stack.registry.docker_ref(&format!("{repo}:1.0.0")))
        .await
        .assert_success();
    assert_eq!(resolve(&stack.registry.url(), repo, "1.0.0").await, None);
    let resp = put_manifest(&stack.front.url(), repo, "1.0.0", &image.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resolve(&stack.registry.url(), repo, "1.0.0")
            .await
            .as_deref(),
        Some(image.digest())
    );
}

#[tokio::test]
async fn a_loop_of_refused_pushes_is_answered_every_time_but_recorded_at_a_bounded_rate() {
    let stack = Stack::start().await;
    let repo = "loop/app";
    let (a, b) = (Image::random(&[256]), Image::random(&[256]));
    push(&a, &stack.front.docker_ref(&format!("{repo}:1.0.0")), None)
        .await
        .assert_success();
    const TRIES: usize = 40;
    const RECORDED: usize = 30;
    for _ in 0..TRIES {
        let resp = put_manifest(&stack.front.url(), repo, "1.0.0", &b.manifest).await;
        assert_eq!(resp.status(), StatusCode::CONFLICT);
    }
    let recorded =
        ledger(&stack).count("SELECT count(*)::text FROM tag_events WHERE action = 'refuse'");
    assert_eq!(
        recorded, RECORDED as i64,
        "thirty refusals a minute per tag and client"
    );
    let metrics = get_text(format!(
        "{}/metrics",
        stack.front.tagwarden().unwrap().admin_url()
    ))
    .await;
    assert!(
        metrics.contains(&format!(
            "tagwarden_refusals_unrecorded_total {}",
            TRIES - RECORDED
        )),
        "{metrics}"
    );
}

/// How a client abandons a write it already sent.
#[derive(Clone, Copy, Debug)]
enum GoAway {
    /// HTTP/1.1: it closes its TCP connection.
    CloseConnection,
    /// HTTP/2: it resets the request's stream; the connection stays up.
    ResetStream,
}

#[tokio::test]
async fn a_write_the_client_abandons_after_it_was_forwarded_is_still_recorded() {
    for (i, how) in [GoAway::CloseConnection, GoAway::ResetStream]
        .into_iter()
        .enumerate()
    {
        abandon_a_forwarded_write(&format!("abandon{i}/app"), how).await;
    }
}

async fn abandon_a_forwarded_write(repo: &str, how: GoAway) {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    let tw = Tagwarden::start(&format!("http://127.0.0.1:{}", relay.port()), db.url()).await;
    let image = Image::random(&[128]);
    for blob in image.blobs() {
        upload_blob(&registry.url(), repo, blob).await;
    }

    // The registry stores the manifest; its answer is held while the client goes away.
    relay.hold_responses();
    let stream = tokio::net::TcpStream::connect(tw.addr()).await.unwrap();
    let mut h1 = None;
    let mut h2 = None;
    match how {
        GoAway::CloseConnection => {
            let mut stream = stream;
            let req = request(
                "PUT",
                format!("/v2/{repo}/manifests/1.0.0").as_bytes(),
                &tw.addr(),
                &[("Content-Type", image.manifest.media_type.as_bytes())],
                &image.manifest.bytes,
            );
            tokio::io::AsyncWriteExt::write_all(&mut stream, &req)
                .await
                .unwrap();
            h1 = Some(stream);
        }
        GoAway::ResetStream => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .expect("h2 handshake");
            let conn = tokio::spawn(conn);
            let req = http::Request::builder()
                .method("PUT")
                .uri(format!("http://{}/v2/{repo}/manifests/1.0.0", tw.addr()))
                .header("content-type", &image.manifest.media_type)
                .body(Full::new(bytes::Bytes::from(image.manifest.bytes.clone())))
                .unwrap();
            let pending = tokio::spawn(async move { sender.send_request(req).await.map(|_| ()) });
            h2 = Some((pending, conn));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while resolve(&registry.url(), repo, "1.0.0").await.as_deref() != Some(image.digest()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{how:?}: the write never reached the registry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Closing the socket, or dropping the response future (RST_STREAM; the connection
    // task keeps the connection open).
    drop(h1);
    let conn = h2.map(|(pending, conn)| {
        pending.abort();
        conn
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.restore();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bound = live_bindings(&db, repo);
        if !bound.is_empty() {
            assert_eq!(bound, [("1.0.0".to_string(), image.digest().to_string())]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{how:?}: the registry holds 1.0.0 but the ledger never recorded it:\n{}",
            tw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ledger_matches_registry(&db, &registry.url(), &[repo]).await;
    if let Some(conn) = conn {
        conn.abort();
    }
}

#[tokio::test]
async fn a_delete_that_announces_a_body_is_refused_before_anything_is_deleted() {
    let stack = Stack::start().await;
    let repo = "framing/app";
    let image = Image::random(&[256]);
    push(
        &image,
        &stack.front.docker_ref(&format!("{repo}:latest")),
        None,
    )
    .await
    .assert_success();
    let target = format!("/v2/{repo}/manifests/{}", image.digest());
    for framing in [
        ("Content-Length", &b"1"[..]),
        ("Transfer-Encoding", &b"chunked"[..]),
    ] {
        let answer = exchange_within(
            stack.front.addr(),
            request(
                "DELETE",
                target.as_bytes(),
                stack.front.addr(),
                &[framing],
                b"",
            ),
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(answer.status, 400, "{framing:?}: {}", answer.text);
        assert!(answer.body().contains("carries no body"), "{}", answer.text);
    }
    assert_eq!(
        resolve(&stack.registry.url(), repo, "latest")
            .await
            .as_deref(),
        Some(image.digest()),
        "the registry still serves the tag"
    );
    assert_eq!(
        live_bindings(ledger(&stack), repo),
        [("latest".to_string(), image.digest().to_string())]
    );

    // Without a body, the same delete goes through.
    let resp = client()
        .delete(format!("{}{target}", stack.front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(live_bindings(ledger(&stack), repo).is_empty());
}

#[tokio::test]
async fn pulls_of_a_release_never_fail_while_a_client_loops_identical_repushes() {
    let stack = Stack::start().await;
    let repo = "busy/app";
    let image = Image::random(&[512]);
    push(
        &image,
        &stack.front.docker_ref(&format!("{repo}:1.0.0")),
        None,
    )
    .await
    .assert_success();
    let base = stack.front.url();
    // A fixed number of re-pushes, with the pulls running until they are done: counts,
    // not a wall-clock window that a slow machine may fill with fewer of either.
    const REPUSHES: usize = 20;
    let repushing = Arc::new(AtomicBool::new(true));
    let pusher = {
        let (base, manifest, repushing) = (base.clone(), image.manifest.clone(), repushing.clone());
        tokio::spawn(async move {
            for _ in 0..REPUSHES {
                let resp = put_manifest(&base, repo, "1.0.0", &manifest).await;
                assert_eq!(resp.status(), StatusCode::CREATED);
            }
            repushing.store(false, Ordering::SeqCst);
        })
    };
    let mut pullers = Vec::new();
    for _ in 0..4 {
        let (base, repushing) = (base.clone(), repushing.clone());
        pullers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while repushing.load(Ordering::SeqCst) {
                let resp = client()
                    .get(format!("{base}/v2/{repo}/manifests/1.0.0"))
                    .header("accept", support::http::MANIFEST_ACCEPT)
                    .send()
                    .await
                    .expect("GET manifest");
                answers.push((resp.status(), header(&resp, "docker-content-digest")));
            }
            answers
        }));
    }
    pusher.await.unwrap();
    let mut pulls = 0;
    for p in pullers {
        let answers = p.await.unwrap();
        assert!(
            !answers.is_empty(),
            "each puller pulled during the re-pushes"
        );
        pulls += answers.len();
        let failed: Vec<_> = answers
            .iter()
            .filter(|(s, d)| *s != StatusCode::OK || d.as_deref() != Some(image.digest()))
            .collect();
        assert!(
            failed.is_empty(),
            "pulls failed during re-pushes: {failed:?}"
        );
    }
    eprintln!("{REPUSHES} re-pushes, {pulls} pulls");
}

#[tokio::test]
async fn deletes_refused_for_a_release_tell_only_clients_the_registry_lets_push() {
    let stack = Stack::start_with_htpasswd(USER, PASSWORD).await;
    let repo = "locked/app";
    let image = Image::random(&[512]);
    push(
        &image,
        &stack.front.docker_ref(&format!("{repo}:1.0.0")),
        Some(&format!("{USER}:{PASSWORD}")),
    )
    .await
    .assert_success();
    let base = stack.front.url();
    let layer = &image.layers[0].digest;
    let targets = [
        format!("{base}/v2/{repo}/manifests/{}", image.digest()),
        format!("{base}/v2/{repo}/blobs/{layer}"),
    ];
    for target in &targets {
        for auth in [None, Some(basic(USER, "wrong"))] {
            let mut req = client().delete(target);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{target} {auth:?}");
            let body = resp.text().await.unwrap();
            assert!(!body.contains("1.0.0"), "{target}: {body}");
        }
    }
    let db = ledger(&stack);
    assert_eq!(
        db.count("SELECT count(*)::text FROM tag_events WHERE action = 'refuse'"),
        0
    );
    for target in &targets {
        let resp = client()
            .delete(target)
            .header("authorization", basic(USER, PASSWORD))
            .send()
            .await
            .unwrap();
        let err = expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, target).await;
        assert!(err.message.contains("1.0.0"), "{}", err.message);
    }
    assert_eq!(
        db.count(
            "SELECT count(*)::text FROM tag_events WHERE action = 'refuse' AND identity_verified"
        ),
        2
    );
}

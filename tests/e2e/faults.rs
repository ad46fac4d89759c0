//! Faults under load: the ledger's database stopped under a stream of concurrent pushes,
//! tagwarden killed again and again between claiming a tag and hearing the registry's
//! answer, the registry stopped (also in the middle of a push) and restarted, and
//! clients that are slow or stall on purpose.
//!
//! After each, the ledger must match the registry, no binding may be half-written, no
//! immutable tag may have had two digests, and every client must have had a clear
//! answer.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::api::{put_manifest, resolve, upload_blob};
use support::consistency::{
    assert_bindings_explained_by_history, assert_ledger_matches_registry,
    assert_no_immutable_tag_had_two_digests,
};
use support::http::{client, expect_oci_error, get, parse_oci_error};
use support::postgres::PrivatePostgres;
use support::relay::Relay;
use support::{Database, Image, Registry, Tagwarden};

/// Images with their blobs already in `repo` on the registry, so that only manifest
/// writes go through tagwarden.
async fn images_in(registry: &Registry, repo: &str, n: usize) -> Vec<Image> {
    let images: Vec<Image> = (0..n).map(|_| Image::random(&[64])).collect();
    for image in &images {
        for blob in image.blobs() {
            upload_blob(&registry.url(), repo, blob).await;
        }
    }
    images
}

#[tokio::test]
async fn postgres_stopped_under_a_stream_of_concurrent_pushes_fails_closed_and_converges() {
    let _heavy = support::serial::fault().await;
    const PUSHERS: usize = 4;
    const STEPS: usize = 8;
    const REPO: &str = "stream/app";
    let pg = PrivatePostgres::start();
    let registry = Registry::start().await;
    let mut tw = Tagwarden::builder(&registry.url(), &pg.url())
        .env("TAGWARDEN_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .start()
        .await;
    let images = Arc::new(images_in(&registry, REPO, PUSHERS * STEPS * 2).await);
    let done = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));

    // Each pusher, step by step: a new release tag, the shared `latest`, then other bytes
    // for its release (refused). A 503 is retried, as CI would; anything else but the
    // expected answer fails the test.
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (base, images, done, unavailable) =
            (tw.url(), images.clone(), done.clone(), unavailable.clone());
        pushers.push(tokio::spawn(async move {
            let mut log = Vec::new();
            for s in 0..STEPS {
                let mine = &images[(p * STEPS + s) * 2];
                let other = &images[(p * STEPS + s) * 2 + 1];
                let release = format!("{}.{s}.0", p + 1);
                for (tag, image, want) in [
                    (release.as_str(), mine, StatusCode::CREATED),
                    ("latest", mine, StatusCode::CREATED),
                    (release.as_str(), other, StatusCode::CONFLICT),
                ] {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let resp = put_manifest(&base, REPO, tag, &image.manifest).await;
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        if status == StatusCode::SERVICE_UNAVAILABLE {
                            let e = parse_oci_error(&body, "503 during the outage");
                            assert!(e.message.contains("ledger is unavailable"), "{body}");
                            unavailable.fetch_add(1, Ordering::SeqCst);
                            assert!(Instant::now() < deadline, "{tag}: writes never resumed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        assert_eq!(status, want, "pusher {p}, {tag}: {body}");
                        log.push((tag.to_string(), image.digest().to_string(), status));
                        break;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            log
        }));
    }

    // Stop the database a little into the stream, for long enough that every pusher
    // meets the outage, then bring it back.
    while done.load(Ordering::SeqCst) < PUSHERS * 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.stop();
    // Answers to writes committed just before the stop may still be on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        stopped_at,
        "no write completed while the ledger was down"
    );
    pg.start_again();

    let mut accepted: BTreeMap<String, String> = BTreeMap::new();
    for p in pushers {
        for (tag, digest, status) in p.await.expect("pusher") {
            if status == StatusCode::CREATED && tag != "latest" {
                accepted.insert(tag, digest);
            }
        }
    }
    assert!(
        unavailable.load(Ordering::SeqCst) >= PUSHERS,
        "every pusher should have met the outage"
    );
    assert!(tw.exited().is_none(), "tagwarden kept running");

    let db = Database::attach(&pg.url());
    for (tag, digest) in &accepted {
        assert_eq!(
            resolve(&registry.url(), REPO, tag).await.as_deref(),
            Some(digest.as_str()),
            "{tag}"
        );
    }
    assert_ledger_matches_registry(&db, &registry.url(), &[REPO]).await;
    assert_bindings_explained_by_history(&db);
    assert_no_immutable_tag_had_two_digests(&db);
}

#[tokio::test]
async fn tagwarden_killed_between_claiming_a_tag_and_the_registry_answer_again_and_again() {
    let _heavy = support::serial::fault().await;
    const ROUNDS: usize = 4;
    const REPO: &str = "crash/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    let via_relay = format!("http://127.0.0.1:{}", relay.port());
    // `doomed` talks to the registry through the relay and is killed every round;
    // `steady` talks to it directly and keeps serving throughout.
    let mut doomed = Tagwarden::start(&via_relay, db.url()).await;
    let steady = Tagwarden::start(&registry.url(), db.url()).await;
    let images = images_in(&registry, REPO, ROUNDS * 6 + 2).await;
    let (old_release, other_for_old) = (&images[0], &images[1]);
    let r = put_manifest(&steady.url(), REPO, "0.0.1", &old_release.manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    for round in 0..ROUNDS {
        let set = &images[2 + round * 6..2 + round * 6 + 6];
        let (first, queued, contender, moving_a, moving_b) =
            (&set[0], &set[1], &set[2], &set[3], &set[4]);
        let release = format!("{}.0.0", round + 1);

        // The doomed process claims the release tag and `latest`; the registry stores
        // both manifests but its answers are held.
        relay.hold_responses();
        let push = |base: String, tag: String, image: &Image| {
            let manifest = image.manifest.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = client()
                    .put(format!("{base}/v2/{REPO}/manifests/{tag}"))
                    .header("content-type", &manifest.media_type)
                    .body(manifest.bytes.clone())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                match r {
                    Ok(resp) => {
                        let status = resp.status();
                        (
                            Some(status),
                            resp.text().await.unwrap_or_default(),
                            started.elapsed(),
                        )
                    }
                    Err(e) => (None, e.to_string(), started.elapsed()),
                }
            })
        };
        let doomed_release = push(doomed.url(), release.clone(), first);
        let doomed_latest = push(doomed.url(), "latest".into(), moving_a);
        // The held pushes reached the registry.
        let within = Duration::from_secs(10);
        registry
            .wait_until_serves(REPO, &release, first.digest(), within)
            .await;
        registry
            .wait_until_serves(REPO, "latest", moving_a.digest(), within)
            .await;
        // A second push through the doomed process queues behind its own claim, and
        // the steady process's pushes queue behind both.
        let doomed_queued = push(doomed.url(), release.clone(), queued);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let steady_release = push(steady.url(), release.clone(), contender);
        let steady_latest = push(steady.url(), "latest".into(), moving_b);
        let steady_old = push(steady.url(), "0.0.1".into(), other_for_old);
        tokio::time::sleep(Duration::from_millis(300)).await;

        doomed.kill();
        relay.restore();

        for (what, task) in [
            ("release", doomed_release),
            ("latest", doomed_latest),
            ("queued", doomed_queued),
        ] {
            let (status, body, _) = task.await.unwrap();
            assert!(
                !status.is_some_and(|s| s.is_success()),
                "round {round}: the killed process answered {what} with {status:?}: {body}"
            );
        }
        // The steady process is not blocked by the dead one's claims: the registry's
        // binding is adopted, other bytes are refused, the moving tag moves.
        let (status, body, took) = steady_release.await.unwrap();
        assert_eq!(status, Some(StatusCode::CONFLICT), "round {round}: {body}");
        assert!(
            body.contains(first.digest()),
            "refusal names the adopted digest: {body}"
        );
        assert!(
            took < Duration::from_secs(10),
            "round {round}: waited {took:?}"
        );
        let (status, body, _) = steady_latest.await.unwrap();
        assert_eq!(status, Some(StatusCode::CREATED), "round {round}: {body}");
        let (status, body, _) = steady_old.await.unwrap();
        assert_eq!(status, Some(StatusCode::CONFLICT), "round {round}: {body}");

        assert_eq!(
            resolve(&registry.url(), REPO, &release).await.as_deref(),
            Some(first.digest())
        );
        assert_eq!(
            resolve(&registry.url(), REPO, "latest").await.as_deref(),
            Some(moving_b.digest())
        );
        assert_eq!(
            resolve(&registry.url(), REPO, "0.0.1").await.as_deref(),
            Some(old_release.digest())
        );
        assert_ledger_matches_registry(&db, &registry.url(), &[REPO]).await;

        doomed = Tagwarden::start(&via_relay, db.url()).await;
    }

    // After all that, the restarted process sees every release as bound: identical
    // re-pushes pass, other bytes are refused at once.
    for round in 0..ROUNDS {
        let set = &images[2 + round * 6..2 + round * 6 + 6];
        let release = format!("{}.0.0", round + 1);
        let r = put_manifest(&doomed.url(), REPO, &release, &set[0].manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "re-push of {release}");
        let r = put_manifest(&doomed.url(), REPO, &release, &set[5].manifest).await;
        expect_oci_error(r, StatusCode::CONFLICT, &release).await;
    }
    assert_ledger_matches_registry(&db, &registry.url(), &[REPO]).await;
    assert_bindings_explained_by_history(&db);
    assert_no_immutable_tag_had_two_digests(&db);
    let adopted = db.count(&format!(
        "SELECT count(*)::text FROM tag_events WHERE repository = '{REPO}' AND action = 'adopt'"
    ));
    assert_eq!(
        adopted, ROUNDS as i64,
        "each round's orphaned release was adopted once"
    );
}

#[tokio::test]
async fn registry_stopped_and_restarted_clear_errors_and_nothing_recorded_it_never_accepted() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "up/app";
    let mut registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let via_relay = Tagwarden::start(&format!("http://127.0.0.1:{}", relay.port()), db.url()).await;
    let images = images_in(&registry, REPO, 4).await;
    let (a, b, c) = (&images[0], &images[1], &images[2]);
    for tag in ["1.0.0", "latest"] {
        let r = put_manifest(&tw.url(), REPO, tag, &a.manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // The registry dies after storing a manifest and before answering.
    relay.hold_responses();
    let held = tokio::spawn({
        let (base, manifest) = (via_relay.url(), c.manifest.clone());
        async move {
            let r = put_manifest(&base, REPO, "3.0.0", &manifest).await;
            let status = r.status();
            (status, r.text().await.unwrap_or_default())
        }
    });
    registry
        .wait_until_serves(REPO, "3.0.0", c.digest(), Duration::from_secs(10))
        .await;
    let events_before = db.count("SELECT count(*)::text FROM tag_events");
    registry.stop();
    // The held answer dies with the registry's connections.
    relay.cut();
    let (status, body) = held.await.unwrap();
    assert!(
        matches!(status.as_u16(), 502..=504),
        "a push cut off by the registry's death gets a gateway error, got {status}: {body}"
    );

    // While it is down: every kind of request gets a prompt gateway error.
    let http = client();
    let front = tw.url();
    let digest_b = b.digest().to_string();
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("GET /v2/", http.get(format!("{front}/v2/"))),
        (
            "pull by tag",
            http.get(format!("{front}/v2/{REPO}/manifests/1.0.0"))
                .header("accept", support::http::MANIFEST_ACCEPT),
        ),
        (
            "new release",
            http.put(format!("{front}/v2/{REPO}/manifests/2.0.0"))
                .header("content-type", &b.manifest.media_type)
                .body(b.manifest.bytes.clone()),
        ),
        (
            "move latest",
            http.put(format!("{front}/v2/{REPO}/manifests/latest"))
                .header("content-type", &b.manifest.media_type)
                .body(b.manifest.bytes.clone()),
        ),
        (
            "push by digest",
            http.put(format!("{front}/v2/{REPO}/manifests/{digest_b}"))
                .header("content-type", &b.manifest.media_type)
                .body(b.manifest.bytes.clone()),
        ),
        (
            "delete latest",
            http.delete(format!("{front}/v2/{REPO}/manifests/latest")),
        ),
        (
            "delete by digest",
            http.delete(format!("{front}/v2/{REPO}/manifests/{digest_b}")),
        ),
        (
            "start upload",
            http.post(format!("{front}/v2/{REPO}/blobs/uploads/")),
        ),
        ("tag list", http.get(format!("{front}/v2/{REPO}/tags/list"))),
    ];
    for (what, rb) in requests {
        let started = Instant::now();
        let resp = rb.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            matches!(status.as_u16(), 502..=504),
            "{what} with the registry down: {status} {body}"
        );
        let e = parse_oci_error(&body, what);
        assert!(
            e.message.contains("upstream") || e.message.contains("registry"),
            "{what}: the message should blame the registry: {}",
            e.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        db.count("SELECT count(*)::text FROM tag_events"),
        events_before,
        "nothing was recorded for writes the registry never accepted"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*)::text FROM tag_bindings WHERE repository = '{REPO}' AND tag IN ('2.0.0', '3.0.0')")),
        0
    );

    // Back up: the same process serves again at once.
    registry.start_again().await;
    let r = put_manifest(&tw.url(), REPO, "2.0.0", &b.manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the first write after the restart"
    );
    // The manifest the registry stored just before dying is adopted, not replaced.
    let r = put_manifest(&tw.url(), REPO, "3.0.0", &b.manifest).await;
    let e = expect_oci_error(r, StatusCode::CONFLICT, "other bytes for 3.0.0").await;
    assert!(e.message.contains(c.digest()), "{}", e.message);
    let r = put_manifest(&tw.url(), REPO, "3.0.0", &c.manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the cut-off push, retried");
    assert_eq!(
        resolve(&tw.url(), REPO, "latest").await.as_deref(),
        Some(a.digest())
    );
    assert_ledger_matches_registry(&db, &registry.url(), &[REPO]).await;
    assert_bindings_explained_by_history(&db);
    assert_no_immutable_tag_had_two_digests(&db);
}

/// Open a connection and send `prefix`, then nothing more.
async fn idle_connection(addr: &str, prefix: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    if !prefix.is_empty() {
        s.write_all(prefix).await.expect("write prefix");
    }
    s
}

/// Whether the server closes `s` within `within` (reading and discarding what it sends).
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_stalled_clients_are_cut_off_and_others_keep_being_served() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "slow/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env("TAGWARDEN_SERVER__HEADER_READ_TIMEOUT", "2s")
        .env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "6s")
        .start()
        .await;
    let addr = tw.addr();
    let images = images_in(&registry, REPO, 4).await;
    // Warm up, then measure.
    let r = put_manifest(&tw.url(), REPO, "warm", &images[3].manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (fds_before, rss_before) = (tw.open_fds(), tw.rss_kib());

    // Silent connections, half an HTTP/2 preface, and slowloris headers.
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(("silent", idle_connection(&addr, b"").await));
    }
    for _ in 0..25 {
        idle.push((
            "partial h2 preface",
            idle_connection(&addr, b"PRI * HTTP/2.0\r\n").await,
        ));
    }
    for _ in 0..25 {
        idle.push((
            "unfinished headers",
            idle_connection(&addr, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: a").await,
        ));
    }
    let opened = Instant::now();
    // A slowloris that keeps sending a header byte every 300 ms.
    let trickle = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut s = idle_connection(&addr, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if s.write_all(b"a").await.is_err() {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            started.elapsed()
        }
    });

    // A stalled manifest body: announced, never finished. It must not hold the tag.
    let mut stalled_manifest = idle_connection(
        &addr,
        format!(
            "PUT /v2/{REPO}/manifests/1.0.0 HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{{\"schemaVersion\"",
            images[0].manifest.media_type,
            images[0].manifest.bytes.len()
        )
        .as_bytes(),
    )
    .await;
    // A stalled blob upload: 64 KiB of an announced 8 MiB, then nothing.
    let location = {
        let r = client()
            .post(format!("{}/v2/{REPO}/blobs/uploads/", tw.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        support::http::header(&r, "location").unwrap()
    };
    let path = location
        .split_once("://")
        .map(|(_, rest)| rest[rest.find('/').unwrap()..].to_string())
        .unwrap_or(location);
    let mut stalled_upload = idle_connection(
        &addr,
        format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            8 << 20
        )
        .as_bytes(),
    )
    .await;
    stalled_upload
        .write_all(&vec![b'x'; 64 << 10])
        .await
        .unwrap();

    // Everyone else is served promptly meanwhile, including on the stalled tag: well
    // within the idle timeout, which a push waiting on the stalled body would take.
    for (i, tag) in ["1.0.0", "latest", "2.0.0"].iter().enumerate() {
        let started = Instant::now();
        let r = put_manifest(&tw.url(), REPO, tag, &images[i].manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{tag} while others stall");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{tag} took {:?}",
            started.elapsed()
        );
    }
    let r = get(format!("{}/v2/", tw.url())).await;
    assert_eq!(r.status(), StatusCode::OK);

    // The stalled bodies are given up within the idle timeout, with an answer.
    for (what, s) in [
        ("stalled manifest", &mut stalled_manifest),
        ("stalled upload", &mut stalled_upload),
    ] {
        let mut answer = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            (400..500).contains(&status) || (502..=504).contains(&status),
            "{what}: expected an error answer within the idle timeout, got {text:?}"
        );
    }

    // Connections that never send a whole request head are closed after the header
    // timeout, whatever stage they stalled in.
    let mut still_open = BTreeMap::new();
    for (what, s) in &mut idle {
        let left = Duration::from_secs(6).saturating_sub(opened.elapsed());
        if !closed_by_server(s, left + Duration::from_millis(100)).await {
            *still_open.entry(*what).or_insert(0) += 1;
        }
    }
    assert!(
        still_open.is_empty(),
        "connections left open after the header timeout: {still_open:?}"
    );
    let trickled = trickle.await.unwrap();
    assert!(
        trickled < Duration::from_secs(6),
        "a trickling client was kept for {trickled:?}"
    );
    drop(idle);

    // Resources come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_after, rss_after) = (tw.open_fds(), tw.rss_kib());
    assert!(
        fds_after <= fds_before + 10,
        "descriptors: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory: {rss_before} KiB before, {rss_after} KiB after"
    );
    // The stalled upload never completed in the registry.
    assert_eq!(
        resolve(&registry.url(), REPO, "1.0.0").await.as_deref(),
        Some(images[0].digest())
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_is_cut_off_and_frees_its_connections() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "reader/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "2s")
        .start()
        .await;
    let big = Image::random(&[32 << 20]);
    let layer = &big.layers[0];
    upload_blob(&registry.url(), REPO, layer).await;
    let fds_before = tw.open_fds();

    // Ask for 32 MiB and read none of it.
    let mut readers = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(tw.addr()).await.unwrap();
        s.write_all(
            format!(
                "GET /v2/{REPO}/blobs/{} HTTP/1.1\r\nHost: x\r\n\r\n",
                layer.digest
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        readers.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds_stalled = tw.open_fds();
    // Well past the idle timeout, the stalled downloads are given up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fds_after = tw.open_fds();
    assert!(
        fds_after <= fds_before + 4,
        "descriptors: {fds_before} before, {fds_stalled} while stalled, {fds_after} after the idle timeout"
    );
    // Others were served meanwhile, and a reader that reads gets every byte.
    let r = get(format!("{}/v2/{REPO}/blobs/{}", tw.url(), layer.digest)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), layer.size());
    drop(readers);
}

/// The status line of a raw HTTP/1.1 answer, e.g. `HTTP/1.1 409 tag a:1 is immutable`.
fn status_line(answer: &support::raw::RawAnswer) -> &str {
    answer.text.lines().next().unwrap_or("")
}

/// A raw HTTP/1.1 manifest PUT on its own connection.
async fn raw_put(addr: &str, repo: &str, tag: &str, image: &Image) -> support::raw::RawAnswer {
    let req = support::raw::request(
        "PUT",
        format!("/v2/{repo}/manifests/{tag}").as_bytes(),
        addr,
        &[("Content-Type", image.manifest.media_type.as_bytes())],
        &image.manifest.bytes,
    );
    support::raw::exchange_within(addr, req, Duration::from_secs(15)).await
}

#[tokio::test]
async fn refusals_and_a_ledger_outage_carry_their_message_in_the_status_line() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "phrase/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    // The ledger is reached through a relay, so that it can be cut.
    let mut db_url = reqwest::Url::parse(db.url()).expect("database URL");
    let target = format!(
        "{}:{}",
        db_url.host_str().expect("database host"),
        db_url.port().unwrap_or(5432)
    );
    let relay = Relay::start(&target).await;
    db_url.set_port(Some(relay.port())).expect("set port");
    let tw = Tagwarden::start(&registry.url(), db_url.as_str()).await;
    let images = images_in(&registry, REPO, 2).await;
    let addr = tw.addr();
    assert_eq!(raw_put(&addr, REPO, "1.0.0", &images[0]).await.status, 201);

    // ctr shows only this line: it must say what happened.
    let refused = raw_put(&addr, REPO, "1.0.0", &images[1]).await;
    let line = status_line(&refused);
    assert!(
        line.starts_with(&format!(
            "HTTP/1.1 409 tag {REPO}:1.0.0 is immutable: bound to sha256:"
        )),
        "{line:?}"
    );
    assert!(line.len() <= "HTTP/1.1 409 ".len() + 120, "{line:?}");
    assert_eq!(parse_oci_error(refused.body(), "refusal").code, "DENIED");

    // Every client drops the body of a 503; the status line still explains it.
    relay.cut();
    let down = raw_put(&addr, REPO, "2.0.0", &images[1]).await;
    let line = status_line(&down);
    assert!(
        line.starts_with("HTTP/1.1 503 the tag ledger is unavailable"),
        "{line:?}\n{}",
        down.text
    );
    assert_eq!(parse_oci_error(down.body(), "outage").code, "UNAVAILABLE");
    assert!(down.header("retry-after").is_some(), "{}", down.text);
    relay.restore();
}

#[tokio::test]
async fn manifest_writes_the_registry_never_answers_get_504_and_free_the_ledger() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "held/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    // Three ledger connections: two held writes, and one for a push that waits on a
    // tag lock a held write has.
    let tw = Tagwarden::builder(&format!("http://127.0.0.1:{}", relay.port()), db.url())
        .env("TAGWARDEN_UPSTREAM__MANIFEST_TIMEOUT", "2s")
        .env("TAGWARDEN_DATABASE__MAX_CONNECTIONS", "3")
        .env("TAGWARDEN_DATABASE__LOCK_TIMEOUT", "1s")
        .start()
        .await;
    let images = images_in(&registry, REPO, 3).await;

    // The registry stores each manifest, and its answer never comes.
    relay.hold_responses();
    let started = Instant::now();
    let held: Vec<_> = (0..2)
        .map(|i| {
            let (base, manifest) = (tw.url(), images[i].manifest.clone());
            tokio::spawn(async move {
                let r = put_manifest(&base, REPO, &format!("{i}.0.0"), &manifest).await;
                (
                    r.status(),
                    started.elapsed(),
                    r.text().await.unwrap_or_default(),
                )
            })
        })
        .collect();
    // Meanwhile a push of a tag a held write has locked waits at most the lock timeout.
    // A held write has its tag lock (and ledger connection) once the registry stored
    // its manifest, however slow the machine.
    for (i, image) in images.iter().take(2).enumerate() {
        let tag = format!("{i}.0.0");
        registry
            .wait_until_serves(REPO, &tag, image.digest(), Duration::from_secs(30))
            .await;
    }
    let waited = Instant::now();
    let r = put_manifest(&tw.url(), REPO, "0.0.0", &images[0].manifest).await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(
        waited.elapsed() < Duration::from_secs(3),
        "a push waiting on a held tag lock took {:?}: {status} {body}",
        waited.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for h in held {
        let (status, took, body) = h.await.unwrap();
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
        assert!(
            took < Duration::from_secs(6),
            "answered after {took:?}: {body}"
        );
        let e = parse_oci_error(&body, "held write");
        assert!(e.message.contains("did not answer"), "{}", e.message);
    }

    // The ledger is free again: other pushes go through at once.
    relay.restore();
    let pushed = Instant::now();
    let r = put_manifest(&tw.url(), REPO, "9.0.0", &images[2].manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "a push after the held ones"
    );
    assert!(
        pushed.elapsed() < Duration::from_secs(3),
        "{:?}",
        pushed.elapsed()
    );
    // The held writes reached the registry: retried, they are adopted and recorded.
    for (i, image) in images.iter().take(2).enumerate() {
        let r = put_manifest(&tw.url(), REPO, &format!("{i}.0.0"), &image.manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "retry of {i}.0.0");
    }
    assert_ledger_matches_registry(&db, &registry.url(), &[REPO]).await;
    assert_bindings_explained_by_history(&db);
    assert_no_immutable_tag_had_two_digests(&db);
}

/// Read what the server sends on `s` until it closes or `within` passes.
async fn answer_on(s: &mut TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn stalled_pushes_beyond_the_manifest_buffer_budget_get_503_and_trickles_are_cut() {
    let _heavy = support::serial::fault().await;
    const REPO: &str = "budget/app";
    const MAX: usize = 4 * 1024 * 1024;
    let registry = Registry::start().await;
    let db = Database::fresh();
    // Room for two largest manifests at once.
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env(
            "TAGWARDEN_LIMITS__MANIFEST_BUFFER_BUDGET",
            &(2 * MAX).to_string(),
        )
        .env("TAGWARDEN_LIMITS__MANIFEST_READ_TIMEOUT", "4s")
        .env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "3s")
        .start()
        .await;
    let addr = tw.addr();
    let images = images_in(&registry, REPO, 3).await;
    let rss_before = tw.rss_kib();

    // Two pushes send all but the last bytes of a 4 MiB manifest, then stall.
    let mut stalled = Vec::new();
    for i in 0..2 {
        let mut s = idle_connection(
            &addr,
            format!(
                "PUT /v2/{REPO}/manifests/big-{i} HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {MAX}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        s.write_all(&vec![b' '; MAX - 16]).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_stalled = tw.rss_kib();

    // The budget is spent: the next push is told to retry, at once.
    let started = Instant::now();
    let busy = raw_put(&addr, REPO, "1.0.0", &images[0]).await;
    assert_eq!(busy.status, 503, "{}", busy.text);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(parse_oci_error(busy.body(), "busy").code, "TOOMANYREQUESTS");
    assert!(busy.header("retry-after").is_some(), "{}", busy.text);
    assert!(
        status_line(&busy).contains("too many manifest pushes"),
        "{}",
        status_line(&busy)
    );

    // The stalled pushes are given up after the idle timeout; then pushes work again.
    for s in &mut stalled {
        let answer = answer_on(s, Duration::from_secs(8)).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 408"),
            "{answer:?}"
        );
    }
    drop(stalled);
    let r = put_manifest(&tw.url(), REPO, "1.0.0", &images[0].manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "a push once the budget is back"
    );

    // One byte every half second never trips the idle timeout, but the read deadline
    // ends it.
    let body = &images[1].manifest.bytes;
    let mut trickle = idle_connection(
        &addr,
        format!(
            "PUT /v2/{REPO}/manifests/2.0.0 HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            images[1].manifest.media_type,
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let started = Instant::now();
    let mut answer = String::new();
    for byte in body.iter().take(40) {
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
        answer = answer_on(&mut trickle, Duration::from_millis(500)).await;
        if !answer.is_empty() {
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(
        took < Duration::from_secs(7),
        "a trickling push was kept for {took:?}"
    );
    assert_eq!(resolve(&registry.url(), REPO, "2.0.0").await, None);
    println!("RSS: {rss_before} KiB idle, {rss_stalled} KiB with two stalled 4 MiB pushes");
}

#[tokio::test]
async fn one_http2_connection_gets_no_more_than_the_configured_streams() {
    let _heavy = support::serial::fault().await;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    type Chunk = Result<Frame<bytes::Bytes>, std::convert::Infallible>;
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Chunk>,
        StreamBody<impl futures_util::Stream<Item = Chunk> + Send + Unpin>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        let stream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        (tx, StreamBody::new(stream))
    }

    const REPO: &str = "streams/app";
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env("TAGWARDEN_SERVER__H2_MAX_CONCURRENT_STREAMS", "4")
        .env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "3s")
        .start()
        .await;
    let addr = tw.addr();
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);

    // Four manifest pushes whose bodies never come take every stream the connection has.
    let mut stalled = Vec::new();
    let mut keep = Vec::new();
    for i in 0..4 {
        let (tx, body) = channel_body();
        keep.push(tx);
        let req = http::Request::put(format!("http://{addr}/v2/{REPO}/manifests/s{i}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .expect("request");
        stalled.push(tokio::spawn(sender.send_request(req)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tx, body) = channel_body();
    drop(tx);
    let fifth = http::Request::get(format!("http://{addr}/v2/"))
        .body(body)
        .expect("request");
    let started = Instant::now();
    let fifth = tokio::spawn(sender.send_request(fifth));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth stream was served beside four open ones"
    );
    // Other connections are served meanwhile.
    let r = get(format!("{}/v2/", tw.url())).await;
    assert_eq!(r.status(), StatusCode::OK);

    // Once the stalled pushes give up (idle timeout), the fifth request is served.
    for s in stalled {
        let resp = s.await.unwrap().expect("an answer to the stalled push");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    let resp = fifth.await.unwrap().expect("the fifth answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    drop(keep);
}

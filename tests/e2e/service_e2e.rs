//! The service around the proxy: TLS on the listener, the admin endpoints, graceful
//! shutdown, and secrets that never reach the logs.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::http::{client, get, get_text};
use support::process::require_tool;
use support::{skopeo, wait, Database, Image, OciLayout, Registry, Tagwarden};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A self-signed certificate for 127.0.0.1, written into `dir`.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    require_tool("openssl", "version");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test]
async fn the_listener_speaks_tls_when_a_certificate_is_configured() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&format!(
            "[server]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
        ))
        .start()
        .await;

    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = https
        .get(format!("https://{}/v2/", tw.addr()))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(resp.status(), StatusCode::OK);
    // Plain HTTP on the TLS port does not get through.
    let plain = client()
        .get(format!("http://{}/v2/", tw.addr()))
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "plain HTTP was served on the TLS listener"
    );

    // A real client pushes and pulls over TLS.
    let image = Image::random(&[4096]);
    skopeo::push(&image, &tw.docker_ref("tls/app:1.0.0"))
        .await
        .assert_success();
    let served = skopeo::inspect_digest(&registry.docker_ref("tls/app:1.0.0"))
        .await
        .unwrap();
    assert_eq!(served, image.digest());
    // Upload Locations point back at tagwarden over https, not at the registry.
    let resp = https
        .post(format!("https://{}/v2/tls/app/blobs/uploads/", tw.addr()))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains(&registry.addr()), "{location}");
    assert!(
        location.starts_with('/') || location.starts_with(&format!("https://{}", tw.addr())),
        "{location}"
    );
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let admin = tw.admin_url();

    assert_eq!(
        get(format!("{admin}/healthz")).await.status(),
        StatusCode::OK
    );
    let ready = get(format!("{admin}/readyz")).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["upstream"]["ok"], true);
    assert_eq!(body["ledger"]["ok"], true);

    let image = Image::random(&[100_000]);
    skopeo::push(&image, &tw.docker_ref("m/app:latest"))
        .await
        .assert_success();
    let pulled = OciLayout::empty();
    skopeo::copy(&tw.docker_ref("m/app:latest"), &pulled.reference())
        .run()
        .await
        .assert_success();

    let metrics = get_text(format!("{admin}/metrics")).await;
    for needle in [
        "tagwarden_requests_total{route=\"manifest\",method=\"PUT\",status=\"201\"}",
        "tagwarden_bytes_total{direction=\"upload\"}",
        "tagwarden_bytes_total{direction=\"download\"}",
        "tagwarden_upstream_seconds_bucket{route=\"blob\"",
        "tagwarden_policy_decisions_total{outcome=\"accepted\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let downloaded: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tagwarden_bytes_total{direction=\"download\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        downloaded >= 100_000.0,
        "the 100 kB layer was counted: {downloaded}"
    );
}

#[tokio::test]
async fn readiness_fails_while_the_upstream_is_down() {
    let db = Database::fresh();
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let tw = Tagwarden::start(&closed, db.url()).await;
    let resp = get(format!("{}/readyz", tw.admin_url())).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["upstream"]["ok"], false);
    assert_eq!(body["ledger"]["ok"], true);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_stops_accepting() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v2/slow/blobs/sha256:[0-9a-f]{64}$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(vec![7u8; 1000])
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&upstream)
        .await;
    let db = Database::fresh();
    let mut tw = Tagwarden::start(&upstream.uri(), db.url()).await;
    let blob = format!("/v2/slow/blobs/sha256:{}", "c".repeat(64));
    let url = format!("{}{blob}", tw.url());
    let in_flight = tokio::spawn(async move { get(url).await.bytes().await.unwrap() });
    // The GET is in flight in tagwarden once the upstream has it (and delays its answer).
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            let received = upstream
                .received_requests()
                .await
                .expect("request recording is on");
            if received
                .iter()
                .any(|r| r.method == "GET" && r.url.path() == blob)
            {
                Ok(())
            } else {
                Err(format!("the GET never reached the upstream: {received:?}"))
            }
        },
    )
    .await;

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = tw.terminate(Duration::from_secs(10));
        (status, tw)
    });
    let body = in_flight.await.expect("the in-flight request completes");
    assert_eq!(body.len(), 1000);
    let (status, tw) = status.await.unwrap();
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.contains("exit status: 0")),
        "clean exit: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "drained promptly"
    );
    assert!(
        client()
            .get(format!("{}/v2/", tw.url()))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn credentials_never_appear_in_the_logs() {
    const PASSWORD: &str = "pa55-Zx9-never-log-me";
    const DB_PASSWORD: &str = "db-secret-Qq7";
    let registry = Registry::start_with_htpasswd("alice", PASSWORD).await;
    let db = Database::fresh();
    let mut db_url: reqwest::Url = db.url().parse().unwrap();
    db_url.set_password(Some(DB_PASSWORD)).unwrap(); // trust auth ignores it
    let tw = Tagwarden::builder(&registry.url(), db_url.as_str())
        .env("RUST_LOG", "debug")
        .arg("--log-format")
        .arg("json")
        .start()
        .await;

    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    let creds = format!("alice:{PASSWORD}");
    for (image, expect_ok) in [(&a, true), (&b, false)] {
        let layout = OciLayout::with_image(image);
        let out = skopeo::copy(&layout.reference(), &tw.docker_ref("sec/app:1.0.0"))
            .preserve_digests()
            .dest_creds(&creds)
            .run()
            .await;
        assert_eq!(out.success(), expect_ok, "{out:?}");
    }
    // A wrong password is refused by the registry, through tagwarden.
    let layout = OciLayout::with_image(&a);
    let out = skopeo::copy(&layout.reference(), &tw.docker_ref("sec/app:latest"))
        .dest_creds("alice:wrong-password-123")
        .run()
        .await;
    assert!(!out.success());

    let db_identity = db.query_column("SELECT identity FROM tag_events WHERE action = 'create'");
    assert_eq!(
        db_identity,
        [Some("alice".to_string())],
        "the Basic user is the identity"
    );

    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&creds);
    let logs = tw.logs();
    assert!(
        logs.contains("refused a manifest write"),
        "debug logs were written: {logs}"
    );
    for secret in [
        PASSWORD,
        encoded.as_str(),
        DB_PASSWORD,
        "wrong-password-123",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

/// Whether the server closes `s` within `within` (reading and discarding what it sends).
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
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

/// An HTTP/2 (prior knowledge) connection that makes one GET, then stays idle; resolves
/// with the time from the answer until the server closed it, or `None` after `within`.
async fn h2_idle_after_one_request(addr: &str, path: &str, within: Duration) -> Option<Duration> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(500))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 answer");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    drop(resp);
    let answered = Instant::now();
    match tokio::time::timeout(within, conn).await {
        Ok(_) => Some(answered.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_on_both_listeners() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env("TAGWARDEN_SERVER__HEADER_READ_TIMEOUT", "2s")
        .env("TAGWARDEN_SERVER__IDLE_TIMEOUT", "2s")
        .start()
        .await;
    let admin = tw.admin_url().trim_start_matches("http://").to_string();

    // A slowloris on the admin listener: a header byte every 300 ms.
    let slowloris = tokio::spawn({
        let admin = admin.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            let mut s = tokio::net::TcpStream::connect(&admin).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(12) {
                if s.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            started.elapsed()
        }
    });
    // A silent connection, and an HTTP/1.1 keep-alive connection after one request.
    for addr in [admin.as_str(), &tw.addr()] {
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(5)).await,
            "a silent connection to {addr} was kept open"
        );
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let path = if addr == admin { "/healthz" } else { "/v2/" };
            kept.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
        }
        assert!(
            closed_within(&mut kept, Duration::from_secs(6)).await,
            "an idle keep-alive connection to {addr} was kept open"
        );
    }
    let trickled = slowloris.await.unwrap();
    assert!(
        trickled < Duration::from_secs(5),
        "the admin listener kept a slowloris for {trickled:?}"
    );

    // Idle HTTP/2 connections, kept alive by pings, are closed after the idle timeout.
    for (addr, path) in [(tw.addr(), "/v2/"), (admin.clone(), "/healthz")] {
        let closed = h2_idle_after_one_request(&addr, path, Duration::from_secs(8)).await;
        assert!(
            closed.is_some_and(|d| d >= Duration::from_millis(1500)),
            "idle h2c connection to {addr}: closed after {closed:?}"
        );
    }
    // Both still serve.
    let r = get(format!("{}/v2/", tw.url())).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_one_listeners_cap_do_not_starve_the_other() {
    require_tool("prlimit", "--version");
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .env("TAGWARDEN_SERVER__MAX_CONNECTIONS", "40")
        .env("TAGWARDEN_ADMIN__MAX_OPEN_CONNECTIONS", "8")
        .start()
        .await;
    // A low descriptor limit, as a small container would have.
    let out = Command::new("prlimit")
        .args(["--pid", &tw.pid().to_string(), "--nofile=160:160"])
        .output()
        .expect("run prlimit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = tw.admin_url().trim_start_matches("http://").to_string();

    for (flooded, cap, other_url, other_path) in [
        (tw.addr(), 40, tw.admin_url(), "/healthz"),
        (admin.clone(), 8, tw.url(), "/v2/"),
    ] {
        // Far more silent connections than the cap (and than the descriptor limit).
        let mut held = Vec::new();
        for _ in 0..250 {
            match tokio::net::TcpStream::connect(&flooded).await {
                Ok(s) => held.push(s),
                Err(e) => panic!("connect to {flooded}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            tw.open_fds() < 140,
            "{} descriptors open with {flooded} flooded",
            tw.open_fds()
        );
        let r = client()
            .get(format!("{other_url}{other_path}"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        assert!(
            matches!(&r, Ok(r) if r.status() == StatusCode::OK),
            "{other_url} with {flooded} flooded: {r:?}"
        );
        // Those beyond the cap were closed at once.
        let mut closed = 0;
        for s in &mut held {
            if closed_within(s, Duration::from_millis(20)).await {
                closed += 1;
            }
        }
        assert!(
            closed >= 250 - cap,
            "{closed} of 250 connections to {flooded} closed (cap {cap})"
        );
        drop(held);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = get(format!("{}/v2/", tw.url())).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the client listener, flood over"
    );
}

//! Postgres failover on loopback: a primary with a synchronous streaming replica,
//! tagwarden reaching the ledger through a relay (standing in for a DNS name or a
//! virtual IP). While pushes run, the primary turns read-only, the relay moves to the
//! replica and the replica is promoted. Pushes fail closed during the switch, succeed
//! on the new primary within seconds, and the new primary's ledger has every binding
//! a client was told about.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::postgres::PrivatePostgres;
use support::relay::Relay;
use support::{api, wait, Database, Image, Registry, Tagwarden};

const REPO: &str = "failover/app";

/// One push: the tag, the digest, what tagwarden answered and when.
#[derive(Debug, Clone)]
struct Push {
    tag: String,
    digest: String,
    status: StatusCode,
    /// When the manifest PUT was sent.
    started: Instant,
    /// When the manifest PUT was answered.
    at: Instant,
    took: Duration,
}

/// Run a blocking call (psql, pg_ctl) off the test's runtime, which also runs the relay
/// and the pusher: blocking it would stall their traffic and inflate the pushes' times.
async fn off_runtime(f: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(f).await.unwrap();
}

/// Wait (up to 20 s) until at least `n` of the answered pushes match `matches`.
async fn wait_for_pushes(
    pushes: &Mutex<Vec<Push>>,
    n: usize,
    matches: impl Fn(&Push) -> bool,
    what: &str,
    tw: &Tagwarden,
) {
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let pushes = pushes.lock().unwrap();
            if pushes.iter().filter(|p| matches(p)).count() >= n {
                return Ok(());
            }
            Err(format!("{what}: {pushes:?}\n{}", tw.logs()))
        },
    )
    .await
}

#[tokio::test]
async fn writes_fail_closed_during_a_failover_and_resume_on_the_new_primary() {
    let _heavy = support::serial::fault().await;
    let primary = Arc::new(PrivatePostgres::start());
    let replica = Arc::new(primary.start_replica());
    primary.psql("CREATE DATABASE ledger");
    let relay = Relay::start(&primary.addr()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/ledger", relay.port());
    let registry = Registry::start().await;
    let tw = Tagwarden::builder(&registry.url(), &url)
        // Several pooled connections, all opened to the old primary before the switch.
        .env("TAGWARDEN_DATABASE__MAX_CONNECTIONS", "4")
        // A write waits at most this long for a connection to a writable server.
        .env("TAGWARDEN_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .start()
        .await;

    let pushes = Arc::new(Mutex::new(Vec::<Push>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = tokio::spawn({
        let (pushes, stop, base) = (pushes.clone(), stop.clone(), tw.url());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let image = Image::random(&[32]);
                for blob in image.blobs() {
                    api::upload_blob(&base, REPO, blob).await;
                }
                let tag = format!("1.0.{n}");
                let started = Instant::now();
                let status = api::put_manifest(&base, REPO, &tag, &image.manifest)
                    .await
                    .status();
                pushes.lock().unwrap().push(Push {
                    tag,
                    digest: image.digest().to_owned(),
                    status,
                    started,
                    at: Instant::now(),
                    took: started.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    wait_for_pushes(
        &pushes,
        3,
        |p| p.status == StatusCode::CREATED,
        "pushes succeed before the failover",
        &tw,
    )
    .await;

    // The old primary turns read-only: pooled connections stay open and reach it.
    let old = primary.clone();
    off_runtime(move || {
        old.psql("ALTER SYSTEM SET default_transaction_read_only = on");
        old.psql("SELECT pg_reload_conf()");
    })
    .await;
    // Pushes started half a second after the reload find every session read-only.
    let refused_from = Instant::now() + Duration::from_millis(500);
    // Writes are refused quickly (503) while no writable server is reachable, not held:
    // each takes about the acquire timeout, so wait for two to be answered.
    wait_for_pushes(
        &pushes,
        2,
        |p| p.started > refused_from,
        "writes are refused quickly (503) while no writable server is reachable, not held",
        &tw,
    )
    .await;
    // New connections go to the replica, which becomes the primary. A push answered
    // before this moment can only have written to the old primary.
    let retargeted = Instant::now();
    relay.retarget(&replica.addr());
    let new = replica.clone();
    off_runtime(move || new.promote()).await;
    let promoted = Instant::now();

    // Writes resume within seconds on the new primary.
    let deadline = promoted + Duration::from_secs(10);
    let resumed = loop {
        let first = pushes
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.at > promoted && p.status == StatusCode::CREATED)
            .map(|p| p.at);
        if let Some(at) = first {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no push succeeded within 10s of the promotion: {:?}\n{}",
            pushes
                .lock()
                .unwrap()
                .iter()
                .rev()
                .take(5)
                .collect::<Vec<_>>(),
            tw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    pusher.await.unwrap();
    let pushes = pushes.lock().unwrap().clone();
    eprintln!(
        "writes resumed {:?} after the promotion ({} pushes, {} accepted)",
        resumed - promoted,
        pushes.len(),
        pushes
            .iter()
            .filter(|p| p.status == StatusCode::CREATED)
            .count()
    );

    // A push started before the retarget but answered after it may have reached the new
    // primary: only those answered before it are writes on the old one.
    let during: Vec<&Push> = pushes
        .iter()
        .filter(|p| p.started > refused_from && p.at < retargeted)
        .collect();
    assert!(
        during.len() >= 2,
        "pushes ran during the switch: {pushes:?}\n{}",
        tw.logs()
    );
    for p in &pushes {
        assert!(
            p.status == StatusCode::CREATED || p.status == StatusCode::SERVICE_UNAVAILABLE,
            "every push is accepted or refused with 503 to retry: {p:?}\n{}",
            tw.logs()
        );
    }
    assert!(
        during
            .iter()
            .all(|p| p.status == StatusCode::SERVICE_UNAVAILABLE),
        "writes on the read-only old primary fail closed: {during:?}"
    );
    for p in pushes
        .iter()
        .filter(|p| p.status == StatusCode::SERVICE_UNAVAILABLE)
    {
        assert!(
            p.took < Duration::from_secs(3),
            "a refused write waited no longer than about the acquire timeout: {p:?}"
        );
        assert_eq!(
            api::resolve(&registry.url(), REPO, &p.tag).await,
            None,
            "a refused push never reached the registry: {p:?}"
        );
    }

    // The new primary's ledger has every binding a client was told about.
    let ledger = Database::attach(&format!("postgres://postgres@{}/ledger", replica.addr()));
    let bound: std::collections::BTreeMap<String, String> = ledger
        .query_column(&format!(
            "SELECT tag || ' ' || digest FROM tag_bindings WHERE repository = '{REPO}'"
        ))
        .into_iter()
        .flatten()
        .filter_map(|l| l.split_once(' ').map(|(t, d)| (t.to_owned(), d.to_owned())))
        .collect();
    for p in pushes.iter().filter(|p| p.status == StatusCode::CREATED) {
        assert_eq!(
            bound.get(&p.tag),
            Some(&p.digest),
            "an accepted binding is on the new primary: {p:?}"
        );
    }
    assert!(
        tw.logs().contains("read-only"),
        "the switch is logged:\n{}",
        tw.logs()
    );
}

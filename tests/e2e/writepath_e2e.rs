//! The existence probe of a new immutable tag, against a real registry and Postgres:
//! skipped only when the operator asserts a complete ledger (`[enforce]
//! ledger_complete`) and the ledger shows no write of the tag that may have reached the
//! registry uncommitted and no drift in the repository; asked otherwise, so that a tag
//! in the registry that the ledger never recorded is still adopted and protected.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use support::api::{put_manifest, upload_blob};
use support::http::{expect_oci_error, get_text};
use support::postgres::PrivatePostgres;
use support::relay::Relay;
use support::{skopeo, wait, Database, Image, Registry, Tagwarden};

const COMPLETE: &str = "[enforce]\nledger_complete = true\n";

async fn complete(upstream: &str, db: &Database) -> Tagwarden {
    Tagwarden::builder(upstream, db.url())
        .config(COMPLETE)
        .start()
        .await
}

/// `tagwarden_upstream_probes_total{outcome=…}`, 0 when never counted.
async fn probes(tw: &Tagwarden, outcome: &str) -> u64 {
    let text = get_text(format!("{}/metrics", tw.admin_url())).await;
    let series = format!("tagwarden_upstream_probes_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

fn actions(db: &Database, repo: &str, tag: &str) -> Vec<String> {
    db.query_column(&format!(
        "SELECT action FROM tag_events WHERE repository = '{repo}' AND tag = '{tag}' ORDER BY id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

fn pending(db: &Database) -> Vec<String> {
    db.query_column(
        "SELECT repository || ':' || tag FROM pending_writes WHERE repository <> '' ORDER BY id",
    )
    .into_iter()
    .flatten()
    .collect()
}

async fn images(registry: &Registry, repo: &str, n: usize) -> Vec<Image> {
    let images: Vec<Image> = (0..n).map(|_| Image::random(&[256])).collect();
    for image in &images {
        for blob in image.blobs() {
            upload_blob(&registry.url(), repo, blob).await;
        }
    }
    images
}

async fn created(base: &str, repo: &str, tag: &str, image: &Image) {
    let resp = put_manifest(base, repo, tag, &image.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{repo}:{tag}");
}

#[tokio::test]
async fn by_default_every_new_release_tag_is_probed_and_nothing_is_left_pending() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let [a, b] = <[Image; 2]>::try_from(images(&registry, "plain/app", 2).await).unwrap();

    created(&tw.url(), "plain/app", "1.0.0", &a).await;
    assert_eq!(
        (probes(&tw, "absent").await, probes(&tw, "skipped").await),
        (1, 0)
    );

    // Written behind tagwarden: found by the probe, adopted, other bytes refused.
    created(&registry.url(), "plain/app", "2.0.0", &a).await;
    let resp = put_manifest(&tw.url(), "plain/app", "2.0.0", &b.manifest).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "a tag written around tagwarden").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    assert_eq!(probes(&tw, "present").await, 1);
    assert_eq!(actions(&db, "plain/app", "2.0.0"), ["adopt", "refuse"]);
    assert!(pending(&db).is_empty(), "{:?}", pending(&db));
}

#[tokio::test]
async fn with_a_complete_ledger_the_probe_is_skipped_until_drift_is_found_in_the_repository() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = complete(&registry.url(), &db).await;
    let repo = "whole/app";
    let [a, b, c] = <[Image; 3]>::try_from(images(&registry, repo, 3).await).unwrap();

    created(&tw.url(), repo, "1.0.0", &a).await;
    created(&tw.url(), repo, "1.0.1", &b).await;
    assert_eq!(
        (probes(&tw, "skipped").await, probes(&tw, "absent").await),
        (2, 0)
    );
    assert_eq!(actions(&db, repo, "1.0.0"), ["create"]);
    assert!(
        pending(&db).is_empty(),
        "a committed binding ends its pending write: {:?}",
        pending(&db)
    );
    // The binding still protects the release, and what it references was recorded.
    let resp = put_manifest(&tw.url(), repo, "1.0.0", &c.manifest).await;
    expect_oci_error(resp, StatusCode::CONFLICT, "a bound release").await;
    let recorded = db.query_column(&format!(
        "SELECT count(*)::text FROM manifest_references WHERE repository = '{repo}' AND manifest_digest = '{}'",
        a.digest()
    ));
    assert_eq!(
        recorded,
        [Some("3".to_owned())],
        "manifest, config and layer"
    );

    // A write made around tagwarden breaks the operator's assertion; reconciliation
    // finds it, and from then on the repository's new tags are probed again, so the
    // next unrecorded one is adopted, not overwritten.
    created(&registry.url(), repo, "2.0.0", &a).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args([
            "reconcile",
            "--upstream",
            &registry.url(),
            "--database-url",
            db.url(),
        ])
        .env_remove("TAGWARDEN_CONFIG")
        .output()
        .unwrap();
    assert!(
        actions(&db, repo, "2.0.0").contains(&"drift".to_owned()),
        "{out:?}"
    );
    created(&registry.url(), repo, "3.0.0", &a).await;
    let resp = put_manifest(&tw.url(), repo, "3.0.0", &c.manifest).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "after drift, probed").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    assert_eq!(actions(&db, repo, "3.0.0"), ["adopt", "refuse"]);
    created(&tw.url(), repo, "4.0.0", &c).await;
    assert_eq!(
        (
            probes(&tw, "skipped").await,
            probes(&tw, "present").await,
            probes(&tw, "absent").await
        ),
        (2, 1, 1)
    );

    // Another repository, with no drift, still skips.
    let [d] = <[Image; 1]>::try_from(images(&registry, "other/app", 1).await).unwrap();
    created(&tw.url(), "other/app", "1.0.0", &d).await;
    assert_eq!(probes(&tw, "skipped").await, 3);
    assert!(pending(&db).is_empty(), "{:?}", pending(&db));
}

#[tokio::test]
async fn a_write_refused_by_the_upstream_leaves_nothing_pending() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = complete(&registry.url(), &db).await;
    // Its blobs were never uploaded: the registry refuses the manifest.
    let a = Image::random(&[256]);
    let resp = put_manifest(&tw.url(), "refused/app", "1.0.0", &a.manifest).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert!(pending(&db).is_empty(), "{:?}", pending(&db));
    // The binding was recorded while the registry decided, and rolled back.
    assert!(actions(&db, "refused/app", "1.0.0").is_empty());
    for table in ["tag_bindings", "manifest_references"] {
        let rows = db.query_column(&format!(
            "SELECT count(*)::text FROM {table} WHERE repository = 'refused/app'"
        ));
        assert_eq!(rows, [Some("0".to_string())], "{table}");
    }
    // Once the blobs are there, the same write is the tag's first.
    for blob in a.blobs() {
        upload_blob(&registry.url(), "refused/app", blob).await;
    }
    created(&tw.url(), "refused/app", "1.0.0", &a).await;
    assert_eq!(actions(&db, "refused/app", "1.0.0"), ["create"]);
}

#[tokio::test]
async fn with_a_complete_ledger_a_crash_between_the_registry_s_answer_and_the_commit_is_still_caught(
) {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    let via_relay = format!("http://127.0.0.1:{}", relay.port());
    let mut doomed = complete(&via_relay, &db).await;
    let [a, b] = <[Image; 2]>::try_from(images(&registry, "crash/app", 2).await).unwrap();

    // The registry stores the manifest, but tagwarden never hears back.
    relay.hold_responses();
    let push = tokio::spawn({
        let (base, manifest) = (doomed.url(), a.manifest.clone());
        async move {
            put_manifest(&base, "crash/app", "7.0.0", &manifest)
                .await
                .status()
        }
    });
    registry
        .wait_until_serves("crash/app", "7.0.0", a.digest(), Duration::from_secs(10))
        .await;
    // The binding is written (uncommitted) while the registry's answer is awaited: the
    // transaction has a transaction id, which reads and advisory locks alone never get.
    let writing = "SELECT count(*)::text FROM pg_stat_activity \
                   WHERE datname = current_database() AND backend_xid IS NOT NULL \
                   AND state = 'idle in transaction'";
    wait::until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            match db.query_column(writing) {
                n if n == [Some("1".to_string())] => Ok(()),
                n => Err(format!(
                    "no binding written while the registry answers: {n:?}"
                )),
            }
        },
    )
    .await;
    doomed.kill();
    let _ = push.await;
    relay.restore();
    assert_eq!(
        pending(&db),
        ["crash/app:7.0.0"],
        "the announcement outlived the write"
    );

    // The ledger never saw the tag, but cannot prove the registry holds nothing under
    // it: the next write probes, adopts what the registry holds, and refuses others.
    let tw = complete(&registry.url(), &db).await;
    let resp = put_manifest(&tw.url(), "crash/app", "7.0.0", &b.manifest).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "other bytes after the crash").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    assert_eq!(
        (probes(&tw, "present").await, probes(&tw, "skipped").await),
        (1, 0)
    );
    let served = skopeo::inspect_digest(&registry.docker_ref("crash/app:7.0.0"))
        .await
        .unwrap();
    assert_eq!(served, a.digest());
    created(&tw.url(), "crash/app", "7.0.0", &a).await;
    assert_eq!(
        actions(&db, "crash/app", "7.0.0"),
        ["adopt", "refuse", "repush"]
    );
    assert!(
        pending(&db).is_empty(),
        "the adoption ended it: {:?}",
        pending(&db)
    );
}

#[tokio::test]
async fn concurrent_new_releases_through_one_ledger_connection_each_announce_and_bind() {
    // A write announces on the connection of its own transaction, in the round trip
    // that opens it: were it to need a second connection of the pool, a write holding
    // the pool's one connection would wait for it until the acquire timeout (503), and
    // a refused write withdraws its announcements only after its transaction ended.
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = format!(
        "{COMPLETE}[database]\nurl = \"{}\"\nmax_connections = 1\nacquire_timeout = \"2s\"\n",
        db.url()
    );
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;
    let repo = "narrow/app";
    let images = images(&registry, repo, 8).await;
    let pushes = images.iter().enumerate().map(|(i, image)| {
        let (base, manifest) = (tw.url(), image.manifest.clone());
        async move {
            let tag = format!("1.0.{i}");
            (
                put_manifest(&base, repo, &tag, &manifest).await.status(),
                tag,
            )
        }
    });
    for (status, tag) in futures_util::future::join_all(pushes).await {
        assert_eq!(status, StatusCode::CREATED, "{repo}:{tag}");
        assert_eq!(actions(&db, repo, &tag), ["create"], "{tag}");
    }
    assert_eq!(probes(&tw, "skipped").await, 8);
    assert!(pending(&db).is_empty(), "{:?}", pending(&db));
}

/// A Postgres on the same host, reached over its Unix socket (README, "Database"): the
/// pushes' round trips go without TCP or TLS, and the ledger records and refuses as it
/// does over TCP.
#[tokio::test]
async fn a_ledger_on_the_same_host_is_reached_over_its_unix_socket() {
    let dir = std::env::var("TAGWARDEN_TEST_PG_SOCKET_DIR")
        .unwrap_or_else(|_| "/var/run/postgresql".to_string());
    assert!(
        std::path::Path::new(&dir).join(".s.PGSQL.5432").exists(),
        "no Postgres socket in {dir} (set TAGWARDEN_TEST_PG_SOCKET_DIR)\n{}",
        support::PROVISION_HINT
    );
    let registry = Registry::start().await;
    let db = Database::fresh();
    let url = format!("postgres://postgres@localhost/{}?host={dir}", db.name());
    let tw = complete(&registry.url(), &Database::attach(&url)).await;
    let repo = "local/app";
    let [a, b] = <[Image; 2]>::try_from(images(&registry, repo, 2).await).unwrap();

    created(&tw.url(), repo, "1.0.0", &a).await;
    let resp = put_manifest(&tw.url(), repo, "1.0.0", &b.manifest).await;
    expect_oci_error(resp, StatusCode::CONFLICT, "a re-pointed release").await;
    assert_eq!(actions(&db, repo, "1.0.0"), ["create", "refuse"]);
    // tagwarden's connections are the database's socket clients (no client address);
    // the query's own runs over TCP and is left out.
    let socket_clients = db.count(
        "SELECT count(*)::text FROM pg_stat_activity
         WHERE datname = current_database() AND backend_type = 'client backend'
           AND client_addr IS NULL AND pid <> pg_backend_pid()",
    );
    assert!(socket_clients >= 1, "no socket connection to {}", db.name());
    let tcp_clients = db.count(
        "SELECT count(*)::text FROM pg_stat_activity
         WHERE datname = current_database() AND client_addr IS NOT NULL AND pid <> pg_backend_pid()",
    );
    assert_eq!(tcp_clients, 0, "tagwarden connected over TCP");
}

#[tokio::test]
async fn pending_writes_lost_in_a_postgres_crash_make_every_new_release_tag_probed_until_import() {
    let _heavy = support::serial::fault().await;
    let pg = PrivatePostgres::start();
    let registry = Registry::start().await;
    let tw = Tagwarden::builder(&registry.url(), &pg.url())
        .config(COMPLETE)
        .start()
        .await;
    let repo = "crash/app";
    let [a, b, c, d] = <[Image; 4]>::try_from(images(&registry, repo, 4).await).unwrap();
    created(&tw.url(), repo, "1.0.0", &a).await;
    assert_eq!(probes(&tw, "skipped").await, 1);

    // A write that tagwarden forwarded and then could not commit: the registry holds
    // 2.0.0, and only its announcement tells the ledger so. Postgres then crashes:
    // recovery empties the unlogged table, announcement and marker alike.
    created(&registry.url(), repo, "2.0.0", &a).await;
    pg.psql(&format!(
        "INSERT INTO pending_writes (repository, tag) VALUES ('{repo}', '2.0.0')"
    ));
    pg.crash();
    pg.start_again();
    assert_eq!(
        pg.psql("SELECT count(*) FROM pending_writes"),
        "0",
        "crash recovery empties an unlogged table"
    );

    // Other bytes under 2.0.0: probed, so adopted and refused rather than overwritten.
    // (The first writes after the restart may meet connections the crash closed.)
    let resp = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let resp = put_manifest(&tw.url(), repo, "2.0.0", &b.manifest).await;
            match resp.status() {
                StatusCode::SERVICE_UNAVAILABLE => Err(format!("{resp:?}")),
                _ => Ok(resp),
            }
        },
    )
    .await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "a tag the crash hid").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    // A new tag is probed too, and the probe finds nothing.
    created(&tw.url(), repo, "3.0.0", &c).await;
    assert_eq!(probes(&tw, "skipped").await, 1, "nothing skipped the probe");
    assert!(probes(&tw, "present").await >= 1 && probes(&tw, "absent").await >= 1);
    assert!(
        tw.logs().contains("pending writes were lost"),
        "{}",
        tw.logs()
    );

    // `import` waits out the writes in flight at the loss, records the registry and
    // puts the marker back: new tags skip the probe again.
    let (upstream, url) = (registry.url(), pg.url());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
            .args(["import", "--upstream", &upstream, "--database-url", &url])
            .env_remove("TAGWARDEN_CONFIG")
            .env("TAGWARDEN_UPSTREAM__MANIFEST_TIMEOUT", "1s")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{out:?}");
    assert!(
        stdout.contains("pending writes: lost before this import, tracked again"),
        "{stdout}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM pending_writes WHERE repository = ''"),
        "1"
    );
    created(&tw.url(), repo, "4.0.0", &d).await;
    assert_eq!(probes(&tw, "skipped").await, 2);
}

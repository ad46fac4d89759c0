//! Tag immutability end to end: a real registry, real Postgres, skopeo, and tagwarden
//! in front. Release tags are bound once; moving tags move; every decision is in the
//! ledger; nothing (re-push, `?tag=`, delete, pre-existing tags, races, a database
//! outage) gets a second digest under an immutable tag.

use crate::support;

use support::skopeo::push;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::api::{put_manifest, upload_blob};
use support::http::{client, expect_oci_error, header};
use support::relay::Relay;
use support::{skopeo, wait, Database, Image, OciLayout, Registry, Served, Stack, Tagwarden};

fn ledger(stack: &Stack) -> &Database {
    stack
        .front
        .database()
        .expect("these tests need tagwarden in front (not direct mode)")
}

/// The actions recorded for one tag, oldest first.
fn actions(db: &Database, repo: &str, tag: &str) -> Vec<String> {
    db.query_column(&format!(
        "SELECT action FROM tag_events WHERE repository = '{repo}' AND tag = '{tag}' ORDER BY id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

fn bound_digest(db: &Database, repo: &str, tag: &str) -> Option<String> {
    db.query_column(&format!(
        "SELECT digest FROM tag_bindings WHERE repository = '{repo}' AND tag = '{tag}' AND deleted_at IS NULL"
    ))
    .into_iter()
    .flatten()
    .next()
}

#[tokio::test]
async fn a_release_tag_is_bound_once_and_other_bytes_are_refused_with_a_clear_message() {
    let stack = Stack::start().await;
    let (a, b) = (Image::random(&[2048, 4096]), Image::random(&[1024]));
    let dest = stack.front.docker_ref("driftwood/web:1.4.0");

    push(&a, &dest).await.assert_success();
    let stderr = push(&b, &dest).await.assert_failure();
    assert!(
        stderr.contains(&format!(
            "denied: tag driftwood/web:1.4.0 is immutable: bound to {} since",
            a.digest()
        )),
        "skopeo should show why: {stderr}"
    );
    assert!(
        stderr.contains("publish a new version such as 1.4.1 instead"),
        "{stderr}"
    );

    // The registry still serves the original bytes.
    let served = skopeo::inspect_digest(&stack.registry.docker_ref("driftwood/web:1.4.0"))
        .await
        .expect("inspect");
    assert_eq!(served, a.digest());

    // An identical re-push (CI retry) is fine.
    push(&a, &dest).await.assert_success();

    let db = ledger(&stack);
    assert_eq!(
        actions(db, "driftwood/web", "1.4.0"),
        ["create", "refuse", "repush"]
    );
    assert_eq!(
        bound_digest(db, "driftwood/web", "1.4.0").as_deref(),
        Some(a.digest())
    );
    let refused = db
        .query_column("SELECT detail->>'attempted_digest' FROM tag_events WHERE action = 'refuse'");
    assert_eq!(refused, [Some(b.digest().to_string())]);
}

#[tokio::test]
async fn moving_tags_move_and_each_move_records_the_previous_digest() {
    let stack = Stack::start().await;
    let (a, b) = (Image::random(&[1024]), Image::random(&[1024]));
    for tag in ["latest", "1.4"] {
        let dest = stack.front.docker_ref(&format!("driftwood/web:{tag}"));
        push(&a, &dest).await.assert_success();
        push(&b, &dest).await.assert_success();
        let served =
            skopeo::inspect_digest(&stack.registry.docker_ref(&format!("driftwood/web:{tag}")))
                .await
                .unwrap();
        assert_eq!(served, b.digest(), "{tag} moved in the registry");
        let db = ledger(&stack);
        assert_eq!(actions(db, "driftwood/web", tag), ["create", "move"]);
        assert_eq!(
            bound_digest(db, "driftwood/web", tag).as_deref(),
            Some(b.digest())
        );
        let previous = db.query_column(&format!(
            "SELECT previous_digest FROM tag_events WHERE tag = '{tag}' AND action = 'move'"
        ));
        assert_eq!(previous, [Some(a.digest().to_string())]);
    }
}

#[tokio::test]
async fn tag_query_parameters_are_checked_like_tags() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    push(&a, &stack.front.docker_ref("team/app:2.0.0"))
        .await
        .assert_success();
    for blob in b.blobs() {
        upload_blob(&base, "team/app", blob).await;
    }

    // Pushing other bytes by digest while naming the release tag in ?tag= is refused.
    let resp = put_manifest(
        &base,
        "team/app",
        &format!("{}?tag=dev&tag=2.0.0", b.digest()),
        &b.manifest,
    )
    .await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "?tag= naming an immutable tag").await;
    assert_eq!(err.code, "DENIED");
    assert!(
        err.message.contains("team/app:2.0.0 is immutable"),
        "{}",
        err.message
    );
    // Percent-encoding the parameter changes nothing.
    let resp = put_manifest(
        &base,
        "team/app",
        &format!("{}?t%61g=2%2E0%2E0", b.digest()),
        &b.manifest,
    )
    .await;
    expect_oci_error(resp, StatusCode::CONFLICT, "encoded ?tag=").await;
    // An invalid tag in the query is a client error.
    let resp = put_manifest(
        &base,
        "team/app",
        &format!("{}?tag=a/b", b.digest()),
        &b.manifest,
    )
    .await;
    assert_eq!(
        expect_oci_error(resp, StatusCode::BAD_REQUEST, "bad ?tag=")
            .await
            .code,
        "TAG_INVALID"
    );

    let served = skopeo::inspect_digest(&stack.registry.docker_ref("team/app:2.0.0"))
        .await
        .unwrap();
    assert_eq!(served, a.digest());

    // A plain push by digest with an allowed tag goes through; this registry ignores
    // ?tag= (no OCI-Tag answer), so the ledger binds nothing it did not apply.
    let resp = put_manifest(
        &base,
        "team/app",
        &format!("{}?tag=dev", b.digest()),
        &b.manifest,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(b.digest())
    );
    assert_eq!(bound_digest(ledger(&stack), "team/app", "dev"), None);
}

#[tokio::test]
async fn deleting_an_immutable_tag_or_its_digest_is_refused_and_moving_tags_can_be_deleted() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    push(&a, &stack.front.docker_ref("team/app:3.0.0"))
        .await
        .assert_success();
    push(&b, &stack.front.docker_ref("team/app:scratch"))
        .await
        .assert_success();

    // skopeo resolves the tag and deletes by digest.
    let stderr = skopeo::delete(&stack.front.docker_ref("team/app:3.0.0"))
        .await
        .assert_failure();
    assert!(
        stderr.contains("cannot be deleted") && stderr.contains("3.0.0"),
        "{stderr}"
    );
    let resp = client()
        .delete(format!("{base}/v2/team/app/manifests/3.0.0"))
        .send()
        .await
        .unwrap();
    let err = expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "delete by tag").await;
    assert_eq!(err.code, "UNSUPPORTED");
    let served = skopeo::inspect_digest(&stack.registry.docker_ref("team/app:3.0.0"))
        .await
        .unwrap();
    assert_eq!(served, a.digest());

    skopeo::delete(&stack.front.docker_ref("team/app:scratch"))
        .await
        .assert_success();
    let resp = client()
        .get(format!("{base}/v2/team/app/manifests/{}", b.digest()))
        .header("accept", support::http::MANIFEST_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the manifest is gone");

    let db = ledger(&stack);
    assert_eq!(
        actions(db, "team/app", "3.0.0"),
        ["create", "refuse", "refuse"]
    );
    assert_eq!(actions(db, "team/app", "scratch"), ["create", "delete"]);
    assert_eq!(
        bound_digest(db, "team/app", "scratch"),
        None,
        "the deleted binding is no longer live"
    );
    assert_eq!(
        bound_digest(db, "team/app", "3.0.0").as_deref(),
        Some(a.digest())
    );
}

#[tokio::test]
async fn a_release_tag_that_predates_tagwarden_is_adopted_not_overwritten() {
    let stack = Stack::start().await;
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    // Pushed straight to the registry, before tagwarden knew about it.
    push(&a, &stack.registry.docker_ref("legacy/app:5.0.0"))
        .await
        .assert_success();

    let stderr = push(&b, &stack.front.docker_ref("legacy/app:5.0.0"))
        .await
        .assert_failure();
    assert!(
        stderr.contains(&format!("bound to {}", a.digest())),
        "{stderr}"
    );
    let served = skopeo::inspect_digest(&stack.registry.docker_ref("legacy/app:5.0.0"))
        .await
        .unwrap();
    assert_eq!(served, a.digest());

    push(&a, &stack.front.docker_ref("legacy/app:5.0.0"))
        .await
        .assert_success();
    assert_eq!(
        actions(ledger(&stack), "legacy/app", "5.0.0"),
        ["adopt", "refuse", "repush"]
    );

    // A delete by digest also finds immutable tags the ledger never recorded.
    push(&b, &stack.registry.docker_ref("legacy/app:6.0.0"))
        .await
        .assert_success();
    let stderr = skopeo::delete(&stack.front.docker_ref("legacy/app:6.0.0"))
        .await
        .assert_failure();
    assert!(stderr.contains("6.0.0"), "{stderr}");
    assert_eq!(
        actions(ledger(&stack), "legacy/app", "6.0.0"),
        ["adopt", "refuse"]
    );
}

#[tokio::test]
async fn concurrent_pushes_of_one_new_release_tag_through_two_processes_have_one_winner() {
    const PUSHERS: usize = 24;
    let registry = Registry::start().await;
    let db = Database::fresh();
    let first = Tagwarden::start(&registry.url(), db.url()).await;
    let second = Tagwarden::start(&registry.url(), db.url()).await;

    // Every candidate's blobs are in place, so only the tag decides.
    let images: Vec<Image> = (0..PUSHERS).map(|_| Image::random(&[256])).collect();
    for image in &images {
        for blob in image.blobs() {
            upload_blob(&registry.url(), "race/app", blob).await;
        }
    }

    let mut tasks = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let base = if i % 2 == 0 {
            first.url()
        } else {
            second.url()
        };
        let manifest = image.manifest.clone();
        tasks.push(tokio::spawn(async move {
            let resp = put_manifest(&base, "race/app", "9.9.9", &manifest).await;
            (resp.status(), manifest.digest)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, digest) = t.await.expect("pusher task");
        match status {
            StatusCode::CREATED => winners.push(digest),
            StatusCode::CONFLICT => {}
            other => panic!(
                "unexpected status {other} for {digest}\n{}\n{}",
                first.logs(),
                second.logs()
            ),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one pusher wins: {winners:?}");
    let served = skopeo::inspect_digest(&registry.docker_ref("race/app:9.9.9"))
        .await
        .unwrap();
    assert_eq!(served, winners[0], "the registry holds the winner");
    assert_eq!(
        bound_digest(&db, "race/app", "9.9.9").as_deref(),
        Some(winners[0].as_str())
    );
    let acts = actions(&db, "race/app", "9.9.9");
    assert_eq!(acts.iter().filter(|a| *a == "create").count(), 1);
    assert_eq!(acts.iter().filter(|a| *a == "refuse").count(), PUSHERS - 1);
}

#[tokio::test]
async fn with_the_ledger_unreachable_writes_fail_closed_reads_flow_and_writes_recover() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let url: reqwest::Url = db.url().parse().unwrap();
    let relay = Relay::start(&format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    let mut via_relay = url.clone();
    via_relay.set_port(Some(relay.port())).unwrap();
    let tw = Tagwarden::builder(&registry.url(), via_relay.as_str())
        .env("TAGWARDEN_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .start()
        .await;
    let (a, b) = (Image::random(&[1024]), Image::random(&[1024]));
    push(&a, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    for blob in b.blobs() {
        upload_blob(&tw.url(), "team/app", blob).await;
    }

    relay.cut();
    let resp = put_manifest(&tw.url(), "team/app", "latest", &b.manifest).await;
    let err = expect_oci_error(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "write while the ledger is down",
    )
    .await;
    assert!(
        err.message.contains("ledger is unavailable"),
        "{}",
        err.message
    );
    let resp = put_manifest(&tw.url(), "team/app", "1.0.1", &b.manifest).await;
    expect_oci_error(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "release write while the ledger is down",
    )
    .await;
    // Nothing reached the registry.
    let resp = client()
        .head(format!("{}/v2/team/app/manifests/1.0.1", registry.url()))
        .header("accept", support::http::MANIFEST_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Pulls keep flowing.
    let pulled = OciLayout::empty();
    skopeo::copy(&tw.docker_ref("team/app:1.0.0"), &pulled.reference())
        .run()
        .await
        .assert_success();
    assert_eq!(pulled.manifest_digest(), a.digest());

    relay.restore();
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            match put_manifest(&tw.url(), "team/app", "1.0.1", &b.manifest)
                .await
                .status()
            {
                StatusCode::CREATED => Ok(()),
                s => Err(format!("writes did not recover: {s} {}", tw.logs())),
            }
        },
    )
    .await;
    assert_eq!(
        bound_digest(&db, "team/app", "1.0.1").as_deref(),
        Some(b.digest())
    );
    assert_eq!(
        actions(&db, "team/app", "1.0.1"),
        ["create"],
        "no refusal or half-written binding from the outage"
    );
}

#[tokio::test]
async fn a_rule_in_warn_mode_allows_the_write_records_it_and_answers_with_a_warning() {
    let Served { registry, db, tw } = Served::with_config(
        r#"
[[policy.rules]]
name = "nightlies"
tag = "nightly-[0-9]{8}"
class = "immutable"
mode = "warn"
"#,
    )
    .await;
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));
    push(&a, &tw.docker_ref("team/app:nightly-20261122"))
        .await
        .assert_success();
    for blob in b.blobs() {
        upload_blob(&tw.url(), "team/app", blob).await;
    }
    let resp = put_manifest(&tw.url(), "team/app", "nightly-20261122", &b.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let warning = header(&resp, "warning").expect("a Warning header");
    assert!(
        warning.starts_with("299 tagwarden \"")
            && warning.contains("warn mode")
            && warning.contains(a.digest()),
        "{warning}"
    );
    let served = skopeo::inspect_digest(&registry.docker_ref("team/app:nightly-20261122"))
        .await
        .unwrap();
    assert_eq!(served, b.digest(), "warn mode lets the write through");
    assert_eq!(
        actions(&db, "team/app", "nightly-20261122"),
        ["create", "warn"]
    );
    // Release tags are still enforced by the default rules.
    push(&a, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    push(&b, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_failure();
}

#[tokio::test]
async fn import_records_every_existing_tag_so_old_releases_are_protected() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let (a, b, c) = (
        Image::random(&[256]),
        Image::random(&[256]),
        Image::random(&[256]),
    );
    push(&a, &registry.docker_ref("one/app:1.0.0"))
        .await
        .assert_success();
    push(&b, &registry.docker_ref("one/app:latest"))
        .await
        .assert_success();
    push(&c, &registry.docker_ref("two/app:git-9f3c2a1"))
        .await
        .assert_success();

    let (upstream, database) = (registry.url(), db.url().to_string());
    let import = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
            .args([
                "import",
                "--upstream",
                &upstream,
                "--database-url",
                &database,
            ])
            .env_remove("TAGWARDEN_CONFIG")
            .output()
            .expect("run tagwarden import")
    };
    let out = tokio::task::spawn_blocking(import.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported 3 tag(s) from 2 repositories"),
        "{stdout}"
    );
    assert_eq!(
        bound_digest(&db, "one/app", "1.0.0").as_deref(),
        Some(a.digest())
    );
    assert_eq!(
        bound_digest(&db, "one/app", "latest").as_deref(),
        Some(b.digest())
    );
    assert_eq!(
        bound_digest(&db, "two/app", "git-9f3c2a1").as_deref(),
        Some(c.digest())
    );
    assert_eq!(actions(&db, "one/app", "1.0.0"), ["adopt"]);
    let recorded = db.query_column(&format!(
        "SELECT kind || ' ' || referenced_digest FROM manifest_references
         WHERE repository = 'one/app' AND manifest_digest = '{}' ORDER BY kind",
        a.digest()
    ));
    assert_eq!(
        recorded,
        [
            Some(format!("config {}", a.config.digest)),
            Some(format!("layer {}", a.layers[0].digest)),
            Some(format!("manifest {}", a.digest())),
        ],
        "import records what a release references"
    );

    // Importing again changes nothing.
    let out = tokio::task::spawn_blocking(import).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("imported 0 tag(s) from 2 repositories; 3 already recorded"));

    // Through tagwarden, the imported release cannot be re-pointed.
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let stderr = push(&b, &tw.docker_ref("one/app:1.0.0"))
        .await
        .assert_failure();
    assert!(
        stderr.contains(&format!("bound to {}", a.digest())),
        "{stderr}"
    );
}

#[tokio::test]
async fn postgres_stopped_mid_run_and_restarted_writes_fail_closed_then_resume() {
    let pg = support::postgres::PrivatePostgres::start();
    let registry = Registry::start().await;
    let tw = Tagwarden::builder(&registry.url(), &pg.url())
        .env("TAGWARDEN_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .start()
        .await;
    let images: Vec<Image> = (0..6).map(|_| Image::random(&[256])).collect();
    for image in &images {
        for blob in image.blobs() {
            upload_blob(&tw.url(), "outage/app", blob).await;
        }
    }
    // A stream of pushes: before, during and after the outage.
    let r = put_manifest(&tw.url(), "outage/app", "1.0.0", &images[0].manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    pg.stop();
    for (i, image) in images[1..3].iter().enumerate() {
        let r = put_manifest(
            &tw.url(),
            "outage/app",
            &format!("1.0.{}", i + 1),
            &image.manifest,
        )
        .await;
        let err =
            expect_oci_error(r, StatusCode::SERVICE_UNAVAILABLE, "push during the outage").await;
        assert!(
            err.message.contains("ledger is unavailable"),
            "{}",
            err.message
        );
    }
    let r = put_manifest(&tw.url(), "outage/app", "1.0.0", &images[3].manifest).await;
    expect_oci_error(
        r,
        StatusCode::SERVICE_UNAVAILABLE,
        "re-point during the outage",
    )
    .await;
    // Pulls keep flowing.
    let pulled = OciLayout::empty();
    skopeo::copy(&tw.docker_ref("outage/app:1.0.0"), &pulled.reference())
        .run()
        .await
        .assert_success();

    pg.start_again();
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            let r = put_manifest(&tw.url(), "outage/app", "1.0.4", &images[4].manifest).await;
            match r.status() {
                StatusCode::CREATED => Ok(()),
                s => Err(format!("writes did not resume: {s}\n{}", tw.logs())),
            }
        },
    )
    .await;
    // The re-point is still refused afterwards, and nothing from the outage was written.
    let r = put_manifest(&tw.url(), "outage/app", "1.0.0", &images[5].manifest).await;
    expect_oci_error(r, StatusCode::CONFLICT, "re-point after the outage").await;
    for tag in ["1.0.1", "1.0.2"] {
        let head = client()
            .head(format!("{}/v2/outage/app/manifests/{tag}", registry.url()))
            .header("accept", support::http::MANIFEST_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.status(),
            StatusCode::NOT_FOUND,
            "{tag} never reached the registry"
        );
    }
    let served = skopeo::inspect_digest(&registry.docker_ref("outage/app:1.0.0"))
        .await
        .unwrap();
    assert_eq!(served, images[0].digest());

    let ledger =
        tagwarden::ledger::Ledger::connect_lazy(&pg.url(), 1, Duration::from_secs(5)).unwrap();
    let tags: Vec<String> = sqlx::query_scalar("SELECT tag FROM tag_bindings ORDER BY tag")
        .fetch_all(ledger.pool())
        .await
        .unwrap();
    assert_eq!(tags, ["1.0.0", "1.0.4"], "the ledger matches the registry");
}

#[tokio::test]
async fn a_crash_after_the_registry_accepted_but_before_the_ledger_committed_neither_blocks_nor_lets_another_digest_in(
) {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = Relay::start(&registry.addr()).await;
    let via_relay = format!("http://127.0.0.1:{}", relay.port());
    let mut doomed = Tagwarden::start(&via_relay, db.url()).await;
    let (a, b) = (Image::random(&[256]), Image::random(&[256]));
    for blob in a.blobs().chain(b.blobs()) {
        upload_blob(&registry.url(), "crash/app", blob).await;
    }

    // The registry will store the manifest, but tagwarden never hears back.
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
    doomed.kill();
    let _ = push.await;
    relay.restore();
    assert_eq!(
        bound_digest(&db, "crash/app", "7.0.0"),
        None,
        "nothing was committed"
    );

    // A new process: other bytes are refused at once (no stuck lock), the registry's
    // binding is adopted, and the original push can be retried.
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let started = Instant::now();
    let resp = put_manifest(&tw.url(), "crash/app", "7.0.0", &b.manifest).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "other bytes after the crash").await;
    assert!(err.message.contains(a.digest()), "{}", err.message);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the tag was not blocked"
    );
    let resp = put_manifest(&tw.url(), "crash/app", "7.0.0", &a.manifest).await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "the client's retry succeeds"
    );
    assert_eq!(
        bound_digest(&db, "crash/app", "7.0.0").as_deref(),
        Some(a.digest())
    );
    assert_eq!(
        actions(&db, "crash/app", "7.0.0"),
        ["adopt", "refuse", "repush"]
    );
    let served = skopeo::inspect_digest(&registry.docker_ref("crash/app:7.0.0"))
        .await
        .unwrap();
    assert_eq!(served, a.digest());
}

#[tokio::test]
async fn a_delete_by_digest_waits_for_a_concurrent_move_of_one_of_its_tags() {
    use tagwarden::ledger::{Action, Actor, Ledger, NewBinding, NewEvent};
    use tagwarden::policy::TagClass;

    let stack = Stack::start().await;
    let (a, b) = (Image::random(&[256]), Image::random(&[256]));
    push(&a, &stack.front.docker_ref("team/app:latest"))
        .await
        .assert_success();
    push(&b, &stack.front.docker_ref("team/app:dev"))
        .await
        .assert_success();
    let db = ledger(&stack);

    // Another tagwarden process is in the middle of moving `latest` from A to B.
    let other = Ledger::connect_lazy(db.url(), 1, Duration::from_secs(5)).unwrap();
    let mut moving = other.begin().await.unwrap();
    moving
        .lock("team/app", &["latest", b.digest()])
        .await
        .unwrap();

    let delete = tokio::spawn({
        let url = format!("{}/v2/team/app/manifests/{}", stack.front.url(), a.digest());
        async move { client().delete(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !delete.is_finished(),
        "the delete waits for the tag it would remove"
    );

    let event = NewEvent {
        tag: Some("latest"),
        digest: Some(b.digest()),
        previous_digest: Some(a.digest()),
        class: Some(TagClass::Moving),
        rule: Some("test"),
        ..NewEvent::new(Action::Move, "team/app")
    };
    moving.append(&event, &Actor::default()).await.unwrap();
    moving
        .bind(&NewBinding {
            repository: "team/app",
            tag: "latest",
            digest: b.digest(),
            class: TagClass::Moving,
            rule: "test",
            bound_by: None,
        })
        .await
        .unwrap();
    moving.commit().await.unwrap();

    assert_eq!(delete.await.unwrap(), StatusCode::ACCEPTED);
    assert_eq!(
        bound_digest(db, "team/app", "latest").as_deref(),
        Some(b.digest()),
        "latest moved away before the delete and is still live"
    );
    assert_eq!(actions(db, "team/app", "latest"), ["create", "move"]);
}

/// `DELETE /v2/<repo>/blobs/<digest>` at `base`.
async fn delete_blob(base: &str, repo: &str, digest: &str) -> reqwest::Response {
    client()
        .delete(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .expect("DELETE blob")
}

/// The status of `GET /v2/<repo>/blobs/<digest>` at `base`.
async fn blob_status(base: &str, repo: &str, digest: &str) -> StatusCode {
    client()
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .expect("GET blob")
        .status()
}

/// Pull `reference` with every platform into a fresh layout; fails if any manifest or
/// blob is missing.
async fn pull_all(reference: &str) -> skopeo::SkopeoOutput {
    let layout = OciLayout::empty();
    skopeo::copy(reference, &layout.reference())
        .all()
        .preserve_digests()
        .run()
        .await
}

/// `(tag, digest, reason)` of every refusal in the ledger, oldest first.
fn refusals(db: &Database) -> Vec<String> {
    db.query_column(
        "SELECT tag || ' ' || digest || ' ' || reason FROM tag_events WHERE action = 'refuse' ORDER BY id",
    )
    .into_iter()
    .flatten()
    .collect()
}

#[tokio::test]
async fn deleting_a_release_s_config_or_layer_blob_is_refused_and_unreferenced_blobs_can_be() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let a = Image::random(&[512, 1024]);
    push(&a, &stack.front.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();

    for blob in [&a.config, &a.layers[1]] {
        let resp = delete_blob(&base, "team/app", &blob.digest).await;
        let err = expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "release blob").await;
        assert_eq!(err.code, "UNSUPPORTED");
        assert!(
            err.message
                .contains(&format!("blob team/app@{} cannot be deleted", blob.digest))
                && err.message.contains("team/app:1.0.0"),
            "{}",
            err.message
        );
        assert_eq!(
            blob_status(&stack.registry.url(), "team/app", &blob.digest).await,
            StatusCode::OK,
            "the registry still holds {}",
            blob.digest
        );
    }
    pull_all(&stack.front.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    let db = ledger(&stack);
    assert_eq!(
        refusals(db),
        [
            format!("1.0.0 {} release-blob-delete", a.config.digest),
            format!("1.0.0 {} release-blob-delete", a.layers[1].digest),
        ]
    );
    let protecting = db.query_column(
        "SELECT detail->'immutable_tags'->>0 FROM tag_events WHERE action = 'refuse' LIMIT 1",
    );
    assert_eq!(protecting, [Some("1.0.0".to_string())]);

    // A blob no release references is deleted as before.
    let loose = support::Blob::new(support::oci::OCI_LAYER_TAR, support::oci::random_bytes(300));
    upload_blob(&base, "team/app", &loose).await;
    let resp = delete_blob(&base, "team/app", &loose.digest).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        blob_status(&stack.registry.url(), "team/app", &loose.digest).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_multi_arch_release_keeps_its_platform_manifests_and_their_layers() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let index = support::Index::random_multi_arch(&[512]);
    let layout = OciLayout::with_index(&index);
    skopeo::copy(
        &layout.reference(),
        &stack.front.docker_ref("team/multi:2.0.0"),
    )
    .all()
    .preserve_digests()
    .run()
    .await
    .assert_success();
    let (amd64, arm64) = (&index.images[0], &index.images[1]);

    let resp = client()
        .delete(format!("{base}/v2/team/multi/manifests/{}", arm64.digest()))
        .send()
        .await
        .unwrap();
    let err = expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "child manifest").await;
    assert_eq!(err.code, "UNSUPPORTED");
    assert!(
        err.message.contains("team/multi:2.0.0")
            && err.message.contains(index.digest().get(..19).unwrap()),
        "{}",
        err.message
    );
    let resp = delete_blob(&base, "team/multi", &amd64.layers[0].digest).await;
    expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "child layer").await;
    let resp = delete_blob(&base, "team/multi", &arm64.config.digest).await;
    expect_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "child config").await;

    // Both platforms still pull, straight from the registry.
    for image in [amd64, arm64] {
        let served = skopeo::inspect_digest(
            &stack
                .registry
                .docker_ref(&format!("team/multi@{}", image.digest())),
        )
        .await
        .expect("the child manifest is still there");
        assert_eq!(served, image.digest());
    }
    pull_all(&stack.registry.docker_ref("team/multi:2.0.0"))
        .await
        .assert_success();
    // An identical re-push (CI retry) still works; its references are already recorded.
    skopeo::copy(
        &layout.reference(),
        &stack.front.docker_ref("team/multi:2.0.0"),
    )
    .all()
    .preserve_digests()
    .run()
    .await
    .assert_success();
    assert_eq!(
        actions(ledger(&stack), "team/multi", "2.0.0"),
        ["create", "refuse", "refuse", "refuse", "repush"]
    );
    assert_eq!(
        refusals(ledger(&stack)),
        [
            format!("2.0.0 {} release-manifest-delete", arm64.digest()),
            format!("2.0.0 {} release-blob-delete", amd64.layers[0].digest),
            format!("2.0.0 {} release-blob-delete", arm64.config.digest),
        ]
    );
}

#[tokio::test]
async fn blobs_only_a_moving_tag_references_can_be_deleted() {
    let stack = Stack::start().await;
    let a = Image::random(&[512]);
    push(&a, &stack.front.docker_ref("team/app:latest"))
        .await
        .assert_success();
    for blob in a.blobs() {
        let resp = delete_blob(&stack.front.url(), "team/app", &blob.digest).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{}", blob.digest);
        assert_eq!(
            blob_status(&stack.registry.url(), "team/app", &blob.digest).await,
            StatusCode::NOT_FOUND
        );
    }
    assert!(refusals(ledger(&stack)).is_empty());
}

#[tokio::test]
async fn releases_bound_before_references_were_recorded_still_protect_their_content() {
    let stack = Stack::start().await;
    let base = stack.front.url();
    let image = Image::random(&[256]);
    push(&image, &stack.front.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    let index = support::Index::random_multi_arch(&[256]);
    skopeo::copy(
        &OciLayout::with_index(&index).reference(),
        &stack.front.docker_ref("team/app:2.0.0"),
    )
    .all()
    .preserve_digests()
    .run()
    .await
    .assert_success();
    let db = ledger(&stack);
    let count = || db.query_column("SELECT count(*)::text FROM manifest_references");
    assert_ne!(count(), [Some("0".to_string())], "pushes record references");
    // A database from before migration 0005 has no rows at all.
    db.query_column("DELETE FROM manifest_references");
    assert_eq!(count(), [Some("0".to_string())]);

    let resp = delete_blob(&base, "team/app", &index.images[1].layers[0].digest).await;
    expect_oci_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        "child layer of an old release",
    )
    .await;
    let resp = delete_blob(&base, "team/app", &image.layers[0].digest).await;
    expect_oci_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        "layer of an old release",
    )
    .await;
    let resp = client()
        .delete(format!(
            "{base}/v2/team/app/manifests/{}",
            index.images[0].digest()
        ))
        .send()
        .await
        .unwrap();
    expect_oci_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        "child of an old release",
    )
    .await;
    let recorded =
        db.query_column("SELECT DISTINCT manifest_digest FROM manifest_references ORDER BY 1");
    let mut expected = vec![
        Some(image.digest().to_string()),
        Some(index.digest().to_string()),
    ];
    expected.sort();
    assert_eq!(
        recorded, expected,
        "both releases were read back from the registry"
    );
    pull_all(&stack.registry.docker_ref("team/app:2.0.0"))
        .await
        .assert_success();
}

/// Pushes `image` straight to the registry at `base` under its digest only.
async fn push_untagged(base: &str, repo: &str, image: &Image) {
    for blob in image.blobs() {
        upload_blob(base, repo, blob).await;
    }
    let resp = put_manifest(base, repo, image.digest(), &image.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_delete_by_digest_ignores_unrecorded_releases_that_name_other_digests() {
    let stack = Stack::start().await;
    let (a, b, c) = (
        Image::random(&[256]),
        Image::random(&[256]),
        Image::random(&[256]),
    );
    // Releases tagwarden never saw, and an untagged manifest.
    push(&a, &stack.registry.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    push(&b, &stack.registry.docker_ref("team/app:1.1.0"))
        .await
        .assert_success();
    push_untagged(&stack.registry.url(), "team/app", &c).await;

    let resp = client()
        .delete(format!(
            "{}/v2/team/app/manifests/{}",
            stack.front.url(),
            c.digest()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let db = ledger(&stack);
    for tag in ["1.0.0", "1.1.0"] {
        assert!(
            actions(db, "team/app", tag).is_empty(),
            "{tag} was not touched"
        );
    }

    // The release that does name a digest still refuses its delete.
    let resp = client()
        .delete(format!(
            "{}/v2/team/app/manifests/{}",
            stack.front.url(),
            a.digest()
        ))
        .send()
        .await
        .unwrap();
    expect_oci_error(
        resp,
        StatusCode::METHOD_NOT_ALLOWED,
        "an unrecorded release",
    )
    .await;
    assert_eq!(actions(db, "team/app", "1.0.0"), ["adopt", "refuse"]);
    assert!(actions(db, "team/app", "1.1.0").is_empty());
    for (tag, image) in [("1.0.0", &a), ("1.1.0", &b)] {
        assert_eq!(
            support::api::resolve(&stack.registry.url(), "team/app", tag)
                .await
                .as_deref(),
            Some(image.digest())
        );
    }
}

#[tokio::test]
async fn in_warn_mode_a_delete_by_digest_marks_deleted_only_the_tags_naming_it() {
    let Served { registry, db, tw } = Served::with_config(
        r#"
[[policy.rules]]
name = "nightlies"
tag = "nightly-[0-9]{8}"
class = "immutable"
mode = "warn"
"#,
    )
    .await;
    let (a, b, c) = (
        Image::random(&[256]),
        Image::random(&[256]),
        Image::random(&[256]),
    );
    push(&a, &registry.docker_ref("team/app:nightly-20261201"))
        .await
        .assert_success();
    push(&b, &registry.docker_ref("team/app:nightly-20261202"))
        .await
        .assert_success();
    push_untagged(&registry.url(), "team/app", &c).await;

    let delete = |digest: &str| {
        client()
            .delete(format!("{}/v2/team/app/manifests/{digest}", tw.url()))
            .send()
    };
    let resp = delete(c.digest()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "warning"), None);
    for tag in ["nightly-20261201", "nightly-20261202"] {
        assert!(actions(&db, "team/app", tag).is_empty(), "{tag} untouched");
    }

    let resp = delete(a.digest()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        actions(&db, "team/app", "nightly-20261201"),
        ["adopt", "warn"]
    );
    assert!(actions(&db, "team/app", "nightly-20261202").is_empty());
    assert_eq!(
        support::api::resolve(&registry.url(), "team/app", "nightly-20261202")
            .await
            .as_deref(),
        Some(b.digest())
    );
}

#[tokio::test]
async fn a_blob_delete_waits_for_a_concurrent_binding_of_a_release_that_references_it() {
    use tagwarden::ledger::{Ledger, ManifestRef, NewBinding, RefKind};
    use tagwarden::policy::TagClass;

    let stack = Stack::start().await;
    let a = Image::random(&[256]);
    // The blobs and manifest are in the registry, but no release names them yet.
    push_untagged(&stack.front.url(), "team/app", &a).await;
    let db = ledger(&stack);

    // Another tagwarden process is binding 1.0.0 to that manifest.
    let other = Ledger::connect_lazy(db.url(), 1, Duration::from_secs(5)).unwrap();
    let mut binding = other.begin().await.unwrap();
    let layer = a.layers[0].digest.as_str();
    binding
        .lock_references_shared("team/app", &[layer, &a.config.digest])
        .await
        .unwrap();

    let delete = tokio::spawn({
        let base = stack.front.url();
        let layer = layer.to_string();
        async move { delete_blob(&base, "team/app", &layer).await.status() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !delete.is_finished(),
        "the delete waits for the release being bound"
    );
    binding
        .bind(&NewBinding {
            repository: "team/app",
            tag: "1.0.0",
            digest: a.digest(),
            class: TagClass::Immutable,
            rule: "releases",
            bound_by: None,
        })
        .await
        .unwrap();
    let refs = [
        ManifestRef {
            digest: a.config.digest.clone(),
            kind: RefKind::Config,
        },
        ManifestRef {
            digest: layer.to_string(),
            kind: RefKind::Layer,
        },
    ];
    binding
        .record_references("team/app", a.digest(), &refs)
        .await
        .unwrap();
    binding.commit().await.unwrap();

    assert_eq!(delete.await.unwrap(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        blob_status(&stack.registry.url(), "team/app", layer).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_release_index_whose_children_are_not_in_the_registry_is_refused_before_it_is_forwarded()
{
    let stack = Stack::start().await;
    let index = support::Index::random_multi_arch(&[256]);
    let resp = put_manifest(&stack.front.url(), "team/multi", "4.0.0", &index.manifest).await;
    let err = expect_oci_error(resp, StatusCode::BAD_REQUEST, "index without children").await;
    assert_eq!(err.code, "MANIFEST_BLOB_UNKNOWN");
    assert!(
        err.message.contains(index.images[0].digest()),
        "{}",
        err.message
    );
    assert_eq!(bound_digest(ledger(&stack), "team/multi", "4.0.0"), None);
    assert_eq!(
        support::api::resolve(&stack.registry.url(), "team/multi", "4.0.0").await,
        None
    );
}

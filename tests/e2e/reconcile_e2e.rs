//! Reconciliation against a real registry and Postgres: writes and deletes made
//! straight to the registry, around tagwarden, are found, recorded once as `drift`,
//! repaired where asked, and found by the background pass too.

use crate::support;

use std::time::{Duration, Instant};

use support::consistency::assert_bindings_explained_by_history;
use support::http::get_text_as;
use support::{audit, skopeo, wait, Database, Image, Registry, Served, Tagwarden};

const REPO: &str = "drift/app";

async fn push(image: &Image, dest: &str) {
    skopeo::push(image, dest).await.assert_success();
}

fn drift_events(db: &Database) -> Vec<String> {
    db.query_column(&format!(
        "SELECT tag || ' ' || reason || ' ' || coalesce(digest, 'none') || ' ' || coalesce(previous_digest, 'none')
         FROM tag_events WHERE repository = '{REPO}' AND action = 'drift' ORDER BY tag, id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

fn events(db: &Database, action: &str) -> Vec<String> {
    db.query_column(&format!(
        "SELECT tag || ' ' || coalesce(digest, 'none') FROM tag_events
         WHERE repository = '{REPO}' AND action = '{action}' ORDER BY id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

/// `tagwarden ARGS --upstream … --database-url …`: (success, stdout, stderr).
async fn tagwarden(args: &[&str], registry: &Registry, db: &Database) -> (bool, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    let url = registry.url();
    all.extend(["--upstream", &url, "--database-url", db.url()]);
    run(&all).await
}

/// `tagwarden ARGS`: (success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"));
    command.args(args).env_remove("TAGWARDEN_CONFIG");
    let out = tokio::task::spawn_blocking(move || command.output().expect("run tagwarden"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Three releases and `latest` through tagwarden; then, straight to the registry, a
/// release re-pointed, `latest` moved, a tag added and a release deleted.
struct Drifted {
    registry: Registry,
    db: Database,
    tw: Tagwarden,
    release: Image,
    moved_to: Image,
    latest_to: Image,
    added: Image,
    deleted: Image,
}

async fn drifted() -> Drifted {
    let Served { registry, db, tw } = Served::with_config(&format!(
        "{}[reconcile]\nenabled = false\n",
        audit::config()
    ))
    .await;
    let [release, moved_to, latest, latest_to, added, deleted] =
        std::array::from_fn(|_| Image::random(&[256]));
    push(&release, &tw.docker_ref(&format!("{REPO}:1.0.0"))).await;
    push(&latest, &tw.docker_ref(&format!("{REPO}:latest"))).await;
    push(&deleted, &tw.docker_ref(&format!("{REPO}:2.0.0"))).await;

    push(&moved_to, &registry.docker_ref(&format!("{REPO}:1.0.0"))).await;
    push(&latest_to, &registry.docker_ref(&format!("{REPO}:latest"))).await;
    push(&added, &registry.docker_ref(&format!("{REPO}:hotfix"))).await;
    skopeo::delete(&registry.docker_ref(&format!("{REPO}:2.0.0")))
        .await
        .assert_success();
    Drifted {
        registry,
        db,
        tw,
        release,
        moved_to,
        latest_to,
        added,
        deleted,
    }
}

#[tokio::test]
async fn reconcile_records_each_drift_once_with_its_reason_and_reports_it() {
    let d = drifted().await;
    let (ok, stdout, stderr) = tagwarden(&["reconcile"], &d.registry, &d.db).await;
    assert!(!ok, "drift makes reconcile fail: {stdout}\n{stderr}");
    assert!(stdout.contains("4 finding(s), 4 new"), "{stdout}\n{stderr}");
    let expected = vec![
        format!(
            "1.0.0 registry-digest-differs {} {}",
            d.moved_to.digest(),
            d.release.digest()
        ),
        format!("2.0.0 registry-lost-tag none {}", d.deleted.digest()),
        format!("hotfix unrecorded-tag {} none", d.added.digest()),
        format!("latest moved-outside {} {}", d.latest_to.digest(), {
            let b = d.db.query_column(&format!(
                "SELECT digest FROM tag_bindings WHERE repository = '{REPO}' AND tag = 'latest'"
            ));
            b[0].clone().unwrap()
        }),
    ];
    assert_eq!(drift_events(&d.db), expected);
    assert_ne!(d.latest_to.digest(), d.release.digest());

    // The report lists the same four and records nothing; a second run records nothing.
    let (_, json, stderr) =
        tagwarden(&["reconcile", "--report", "--json"], &d.registry, &d.db).await;
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}\n{stderr}"));
    let mut kinds: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f["tag"].as_str().unwrap(),
                f["kind"].as_str().unwrap(),
                f["recorded"]
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "1.0.0 registry-digest-differs false",
            "2.0.0 registry-lost-tag false",
            "hotfix unrecorded-tag false",
            "latest moved-outside false"
        ]
    );
    let (_, stdout, _) = tagwarden(&["reconcile"], &d.registry, &d.db).await;
    assert!(stdout.contains("4 finding(s), 0 new"), "{stdout}");
    assert_eq!(drift_events(&d.db), expected, "nothing recorded twice");

    // The same drift to other bytes is a new finding.
    let again = Image::random(&[256]);
    push(&again, &d.registry.docker_ref(&format!("{REPO}:1.0.0"))).await;
    let (_, stdout, _) = tagwarden(&["reconcile"], &d.registry, &d.db).await;
    assert!(stdout.contains("4 finding(s), 1 new"), "{stdout}");

    // The history shows drift, through the CLI and the audit API.
    let (_, history, stderr) = run(&[
        "history",
        &format!("{REPO}:1.0.0"),
        "--json",
        "--api",
        &d.tw.admin_url(),
        "--token",
        audit::TOKEN,
    ])
    .await;
    let history: serde_json::Value =
        serde_json::from_str(&history).unwrap_or_else(|e| panic!("{e}: {history}\n{stderr}"));
    let actions: Vec<&str> = history
        .as_array()
        .expect("an array of events")
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "drift", "drift"]);
    assert_bindings_explained_by_history(&d.db);
}

#[tokio::test]
async fn repair_puts_the_release_back_on_its_bound_digest() {
    let d = drifted().await;
    let (_, stdout, stderr) = tagwarden(&["reconcile", "--repair"], &d.registry, &d.db).await;
    assert!(stdout.contains("[repaired]"), "{stdout}\n{stderr}");
    let served = skopeo::inspect_digest(&d.registry.docker_ref(&format!("{REPO}:1.0.0")))
        .await
        .unwrap_or_else(|o| panic!("{}", o.stderr));
    assert_eq!(
        served,
        d.release.digest(),
        "the registry serves the bound digest again"
    );
    assert_eq!(
        events(&d.db, "repair"),
        [format!("1.0.0 {}", d.release.digest())]
    );
    // 2.0.0's manifest was deleted by digest: nothing to restore it from. `latest` is
    // a moving tag: only reported.
    let latest = skopeo::inspect_digest(&d.registry.docker_ref(&format!("{REPO}:latest")))
        .await
        .unwrap_or_else(|o| panic!("{}", o.stderr));
    assert_eq!(latest, d.latest_to.digest());

    let (_, json, _) = tagwarden(&["reconcile", "--report", "--json"], &d.registry, &d.db).await;
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["tag"] != "1.0.0"),
        "the repaired release is no longer a finding: {json}"
    );
    // The audit page of the release shows both the drift and its repair.
    let page = get_text_as(
        format!("{}/ui/tag?repository={REPO}&tag=1.0.0", d.tw.admin_url()),
        audit::TOKEN,
    )
    .await;
    assert!(
        page.contains(r#"data-action="drift""#) && page.contains(r#"data-action="repair""#),
        "{page}"
    );
    assert_bindings_explained_by_history(&d.db);
}

/// A registry-lost release whose manifest is still in the registry by digest is restored.
#[tokio::test]
async fn repair_restores_a_lost_release_whose_manifest_remains() {
    let Served { registry, db, tw } = Served::with_config("[reconcile]\nenabled = false\n").await;
    let image = Image::random(&[256]);
    push(&image, &tw.docker_ref(&format!("{REPO}:3.0.0"))).await;
    // A delete by digest would remove the manifest too: remove only the tag's link,
    // straight from the registry's storage, as a tag delete on 3.x would.
    let link = registry.dir().join(format!(
        "storage/docker/registry/v2/repositories/{REPO}/_manifests/tags/3.0.0"
    ));
    std::fs::remove_dir_all(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    drop(tw);

    let (_, stdout, stderr) = tagwarden(&["reconcile", "--repair"], &registry, &db).await;
    assert!(
        stdout.contains("registry-lost-tag") && stdout.contains("[repaired]"),
        "{stdout}\n{stderr}"
    );
    let served = skopeo::inspect_digest(&registry.docker_ref(&format!("{REPO}:3.0.0")))
        .await
        .unwrap_or_else(|o| panic!("{}", o.stderr));
    assert_eq!(served, image.digest());
}

async fn metric(tw: &Tagwarden, line_start: &str) -> Option<f64> {
    let body = reqwest::get(format!("{}/metrics", tw.admin_url()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_for_metric(tw: &Tagwarden, line_start: &str, at_least: f64) {
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            match metric(tw, line_start).await {
                Some(v) if v >= at_least => Ok(()),
                v => Err(format!(
                    "{line_start} is {v:?}, not yet {at_least}; logs:\n{}",
                    tw.logs()
                )),
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_background_pass_finds_drift_and_survives_the_registry_going_down() {
    let mut registry = Registry::start().await;
    let db = Database::fresh();
    let mut tw = Tagwarden::builder(&registry.url(), db.url())
        .config("[reconcile]\ninterval = \"1s\"\n")
        .start()
        .await;
    let (release, other) = (Image::random(&[256]), Image::random(&[256]));
    push(&release, &tw.docker_ref(&format!("{REPO}:1.0.0"))).await;
    push(&other, &registry.docker_ref(&format!("{REPO}:1.0.0"))).await;
    wait_for_metric(
        &tw,
        "tagwarden_drift_findings{kind=\"registry-digest-differs\"}",
        1.0,
    )
    .await;
    assert_eq!(events(&db, "drift"), [format!("1.0.0 {}", other.digest())]);
    assert!(tw
        .logs()
        .contains("drift: the registry was changed around tagwarden"));

    registry.stop();
    wait_for_metric(
        &tw,
        "tagwarden_reconcile_passes_total{outcome=\"error\"}",
        1.0,
    )
    .await;
    assert_eq!(tw.exited(), None, "a failed pass does not end the process");
    registry.start_again().await;

    let added = Image::random(&[256]);
    push(&added, &registry.docker_ref(&format!("{REPO}:hotfix"))).await;
    wait_for_metric(
        &tw,
        "tagwarden_drift_findings{kind=\"unrecorded-tag\"}",
        1.0,
    )
    .await;
    assert_eq!(
        events(&db, "drift"),
        [
            format!("1.0.0 {}", other.digest()),
            format!("hotfix {}", added.digest())
        ],
        "the known drift is not recorded again"
    );
}

/// At 4 requests a second, a 1 s budget and two entries a page (the catalog's `Link`
/// followed), a pass over four repositories stops part way and says where to continue; continuing finds the rest, and no request came
/// faster than the pace allows.
#[tokio::test]
async fn a_pass_is_paced_and_stops_at_its_time_budget_then_continues() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let repos = ["budget/a", "budget/b", "budget/c", "budget/d"];
    for repo in repos {
        push(
            &Image::random(&[64]),
            &registry.docker_ref(&format!("{repo}:1.0.0")),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tagwarden.toml");
    std::fs::write(
        &config,
        "[reconcile]\nmax_requests_per_second = 4\ntime_budget = \"1s\"\npage_size = 2\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let started = Instant::now();
    let mut after: Option<String> = None;
    let mut found = Vec::new();
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(
            passes <= 8,
            "the passes never got through four repositories"
        );
        let mut args = vec!["reconcile", "--config", config, "--json"];
        if let Some(a) = &after {
            args.extend(["--after", a]);
        }
        let (_, json, stderr) = tagwarden(&args, &registry, &db).await;
        let report: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}\n{stderr}"));
        found.extend(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["repository"].as_str().unwrap().to_string()),
        );
        if report["partial"] == false {
            break;
        }
        after = Some(report["resume_after"].as_str().unwrap().to_string());
    }
    let elapsed = started.elapsed();
    eprintln!("{passes} passes, {elapsed:?} for four repositories at 4 requests/s");
    assert!(
        passes > 1,
        "a 1 s budget at 4 requests/s cannot cover 4 repositories in one pass"
    );
    assert_eq!(found, repos, "each repository checked once, in order");
    // At least, per repository: tags/list, a HEAD, and the HEAD of the re-check; per
    // pass, the catalog. The first request of each pass goes at once.
    let requests = 3 * repos.len() + passes;
    let floor = Duration::from_millis(250) * (requests - passes) as u32;
    assert!(
        elapsed >= floor,
        "{requests} requests in {elapsed:?}, under {floor:?}"
    );
}

#[tokio::test]
async fn the_background_pass_survives_the_database_going_down() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let relay = support::relay::Relay::start("127.0.0.1:5432").await;
    let url = db.url().replace(":5432/", &format!(":{}/", relay.port()));
    assert_ne!(url, db.url(), "the database URL goes through the relay");
    let mut tw = Tagwarden::builder(&registry.url(), &url)
        .config("[reconcile]\ninterval = \"1s\"\n")
        .start()
        .await;
    let (release, other) = (Image::random(&[256]), Image::random(&[256]));
    push(&release, &tw.docker_ref(&format!("{REPO}:1.0.0"))).await;
    relay.cut();
    push(&other, &registry.docker_ref(&format!("{REPO}:1.0.0"))).await;
    wait_for_metric(
        &tw,
        "tagwarden_reconcile_passes_total{outcome=\"error\"}",
        1.0,
    )
    .await;
    assert_eq!(tw.exited(), None, "a failed pass does not end the process");
    relay.restore();
    wait_for_metric(
        &tw,
        "tagwarden_drift_findings{kind=\"registry-digest-differs\"}",
        1.0,
    )
    .await;
    assert_eq!(events(&db, "drift"), [format!("1.0.0 {}", other.digest())]);
}

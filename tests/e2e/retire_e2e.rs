//! Retiring releases end to end with skopeo, the real registry and Postgres: a retired
//! release is gone from the registry, its name refuses other bytes and accepts its own
//! (restored, recorded), its unshared blobs become deletable while shared ones stay
//! protected, retention plans exactly what its rules select, and the scheduled pass
//! retires what they select and keeps what was pulled recently.

use crate::support;

use serde_json::{json, Value};
use support::http::get_text_as;
use support::oci::{Blob, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use support::{skopeo, Database, Image, OciLayout, Registry, Served, Tagwarden};

const REPO: &str = "driftwood/web";
const ADMIN_TOKEN: &str = "ops-admin-token-0123456789abcdef";
const AUDITOR_TOKEN: &str = "siem-auditor-token-0123456789ab";
const REASON: &str = "1.0 is out of support; INC-3100";

fn tokens() -> String {
    format!(
        "[[admin.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[admin.tokens]]\nname = \"siem\"\ntoken = \"{AUDITOR_TOKEN}\"\nrole = \"auditor\"\n"
    )
}

/// Fields drop in order: tagwarden stops before its database and registry go.
struct Setup {
    tw: Tagwarden,
    db: Database,
    registry: Registry,
}

async fn start(extra: &str) -> Setup {
    let Served { registry, db, tw } = Served::with_config(&format!("{}\n{extra}", tokens())).await;
    Setup { tw, db, registry }
}

/// An image whose layers are exactly `layers`.
fn image_of(layers: Vec<Blob>) -> Image {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "test.nonce": uuid::Uuid::new_v4().to_string() } },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    Image {
        manifest: Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()),
        config,
        layers,
        architecture: "amd64".into(),
    }
}

fn layer(n: usize) -> Blob {
    Blob::new(OCI_LAYER_TAR, support::oci::random_bytes(n))
}

impl Setup {
    async fn push(&self, image: &Image, tag: &str) -> skopeo::SkopeoOutput {
        skopeo::push(image, &self.tw.docker_ref(&format!("{REPO}:{tag}"))).await
    }

    /// What the registry itself serves for a tag, if anything.
    async fn served(&self, tag: &str) -> Option<String> {
        skopeo::inspect_digest(&self.registry.docker_ref(&format!("{REPO}:{tag}")))
            .await
            .ok()
    }

    fn tagwarden(&self, args: &[&str], token: &str) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
            .args(args)
            .args(["--api", &self.tw.admin_url(), "--token", token])
            .env_remove("TAGWARDEN_API_TOKEN")
            .output()
            .expect("run tagwarden");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn retire(&self, tag: &str, token: &str) -> (bool, String, String) {
        self.tagwarden(
            &["retire", &format!("{REPO}:{tag}"), "--reason", REASON],
            token,
        )
    }

    /// `DELETE /v2/<repo>/blobs/<digest>` through tagwarden: the status.
    async fn delete_blob(&self, digest: &str) -> u16 {
        reqwest::Client::new()
            .delete(format!("{}/v2/{REPO}/blobs/{digest}", self.tw.url()))
            .send()
            .await
            .expect("DELETE blob")
            .status()
            .as_u16()
    }

    fn events(&self, tag: &str) -> Vec<String> {
        self.db
            .query_column(&format!(
                "SELECT action || ' ' || coalesce(reason, '-') || ' ' || coalesce(identity, '-') FROM tag_events
                 WHERE repository = '{REPO}' AND tag = '{tag}' AND action <> 'refuse' ORDER BY id"
            ))
            .into_iter()
            .flatten()
            .collect()
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/{path_and_query}", self.tw.admin_url()))
            .bearer_auth(AUDITOR_TOKEN)
            .send()
            .await
            .expect("audit API");
        assert!(
            resp.status().is_success(),
            "{path_and_query}: {}",
            resp.status()
        );
        resp.json().await.expect("JSON")
    }
}

#[tokio::test]
async fn a_retired_release_leaves_the_registry_but_keeps_its_name() {
    let s = start("").await;
    let shared = layer(2048);
    let old_only = layer(1024);
    let old = image_of(vec![old_only.clone(), shared.clone()]);
    let live = image_of(vec![shared.clone(), layer(512)]);
    s.push(&old, "1.0.0").await.assert_success();
    s.push(&live, "1.1.0").await.assert_success();

    // While 1.0.0 is a live release, its layers are protected.
    assert_eq!(s.delete_blob(&old_only.digest).await, 405);

    // An auditor cannot retire; an admin can.
    let (ok, _, stderr) = s.retire("1.0.0", AUDITOR_TOKEN);
    assert!(!ok && stderr.contains("403"), "{stderr}");
    assert_eq!(s.served("1.0.0").await.as_deref(), Some(old.digest()));
    let (ok, stdout, stderr) = s.retire("1.0.0", ADMIN_TOKEN);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{REPO}:1.0.0 retired ({})", old.digest()))
            && stdout.contains("deleted from the registry"),
        "{stdout}"
    );
    assert_eq!(s.served("1.0.0").await, None, "gone from the registry");
    assert_eq!(s.served("1.1.0").await.as_deref(), Some(live.digest()));
    assert_eq!(
        s.events("1.0.0").last().map(String::as_str),
        Some(format!("retire {REASON} token:ops").as_str())
    );
    let (ok, _, stderr) = s.retire("1.0.0", ADMIN_TOKEN);
    assert!(!ok && stderr.contains("already retired"), "{stderr}");

    // The name refuses other bytes, saying it was retired, when and why.
    let refused = s.push(&live, "1.0.0").await.assert_failure();
    for part in [
        format!("{REPO}:1.0.0 was retired at"),
        "by token:ops".to_string(),
        REASON.to_string(),
        old.digest().to_string(),
    ] {
        assert!(refused.contains(&part), "{part} not in: {refused}");
    }
    assert_eq!(s.served("1.0.0").await, None);

    // Its unshared layer can go now; the layer 1.1.0 shares cannot.
    assert_eq!(s.delete_blob(&old_only.digest).await, 202);
    assert_eq!(s.delete_blob(&shared.digest).await, 405);
    assert_eq!(s.delete_blob(&old.config.digest).await, 202);

    // Its own bytes restore it, recorded.
    s.push(&old, "1.0.0").await.assert_success();
    assert_eq!(s.served("1.0.0").await.as_deref(), Some(old.digest()));
    let events = s.events("1.0.0");
    assert_eq!(
        events[events.len() - 2..],
        [
            format!("retire {REASON} token:ops"),
            "restore own-bytes-pushed-again -".to_string()
        ]
    );
    // ... and it protects its blobs again.
    assert_eq!(s.delete_blob(&old_only.digest).await, 405);

    // Every new event type is in the audit API, the CLI and the audit pages.
    let history = s.api(&format!("history?repository={REPO}&tag=1.0.0")).await;
    let actions: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| *a != "refuse")
        .collect();
    assert!(
        actions.ends_with(&["retire", "restore"]),
        "{actions:?}: {history}"
    );
    let (ok, stdout, stderr) = s.tagwarden(
        &[
            "events",
            "--repository",
            REPO,
            "--action",
            "retired,restored",
        ],
        AUDITOR_TOKEN,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("retire") && stdout.contains("restore") && stdout.contains(REASON),
        "{stdout}"
    );
    let page = get_text_as(
        format!("{}/ui/tag?repository={REPO}&tag=1.0.0", s.tw.admin_url()),
        AUDITOR_TOKEN,
    )
    .await;
    assert!(
        page.contains(r#"data-action="retire""#) && page.contains(r#"data-action="restore""#),
        "{page}"
    );
    support::consistency::assert_bindings_explained_by_history(&s.db);
}

#[tokio::test]
async fn a_release_whose_manifest_another_live_tag_needs_is_not_retired() {
    let s = start("").await;
    let image = Image::random(&[256]);
    s.push(&image, "2.0.0").await.assert_success();
    s.push(&image, "latest").await.assert_success();
    let (ok, _, stderr) = s.retire("2.0.0", ADMIN_TOKEN);
    assert!(
        !ok && stderr.contains("also needed by latest (moving)"),
        "{stderr}"
    );
    assert_eq!(s.served("2.0.0").await.as_deref(), Some(image.digest()));
    assert_eq!(s.served("latest").await.as_deref(), Some(image.digest()));
    assert!(!s.events("2.0.0").iter().any(|e| e.starts_with("retire")));

    // Only releases are retired.
    let (ok, _, stderr) = s.retire("latest", ADMIN_TOKEN);
    assert!(
        !ok && stderr.contains("not a live immutable release"),
        "{stderr}"
    );
    let (ok, _, stderr) = s.retire("9.9.9", ADMIN_TOKEN);
    assert!(!ok && stderr.contains("not a release recorded"), "{stderr}");
}

const RETENTION: &str = r#"
[[retention.rules]]
name = "web-releases"
repository = "driftwood/web"
keep_newest_per_minor = 2
keep_younger_than = "180d"
"#;

/// `(action, release)` of each line of a `tagwarden retention` table.
fn plan_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split_whitespace();
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .filter(|(_, release)| release.contains(':'))
        .collect()
}

#[tokio::test]
async fn retention_dry_run_lists_exactly_what_the_rules_select() {
    let s = start(RETENTION).await;
    let mut images = std::collections::HashMap::new();
    for tag in ["1.3.0", "1.4.0", "1.4.1", "1.4.2", "1.4.3", "1.5.0"] {
        let image = Image::random(&[128]);
        s.push(&image, tag).await.assert_success();
        images.insert(tag, image);
    }
    s.push(&images["1.5.0"], "latest").await.assert_success();
    // A repository no rule matches.
    let other = Image::random(&[128]);
    skopeo::copy(
        &OciLayout::with_image(&other).reference(),
        &s.tw.docker_ref("other/app:1.0.0"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
    // Everything but 1.4.3 was bound 400 days ago.
    s.db.query_column(
        "UPDATE tag_bindings SET first_bound_at = now() - interval '400 days'
         WHERE tag <> '1.4.3' RETURNING tag",
    );

    let (ok, stdout, stderr) = s.tagwarden(&["retention", "--dry-run"], ADMIN_TOKEN);
    assert!(ok, "{stdout}{stderr}");
    let mut lines = plan_lines(&stdout);
    lines.sort();
    let line = |a: &str, t: &str| (a.to_string(), format!("{REPO}:{t}"));
    assert_eq!(
        lines,
        [
            line("keep", "1.3.0"),
            line("keep", "1.4.2"),
            line("keep", "1.4.3"),
            line("keep", "1.5.0"),
            line("retire", "1.4.0"),
            line("retire", "1.4.1"),
        ],
        "{stdout}"
    );
    assert!(stdout.contains("moving tag latest names it"), "{stdout}");
    assert!(stdout.contains("younger than 180d"), "{stdout}");
    assert!(
        stdout.contains("among the newest 2 of series 1.4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 of 6 release(s) would be retired (dry run)"),
        "{stdout}"
    );
    assert!(!stdout.contains("other/app"), "{stdout}");
    assert_eq!(
        s.served("1.4.0").await.as_deref(),
        Some(images["1.4.0"].digest()),
        "a dry run retires nothing"
    );
    assert!(!s.events("1.4.0").iter().any(|e| e.starts_with("retire")));

    // An auditor may not even plan.
    let (ok, _, stderr) = s.tagwarden(&["retention", "--dry-run"], AUDITOR_TOKEN);
    assert!(!ok && stderr.contains("403"), "{stderr}");

    // Without --dry-run, exactly those are retired, each with its rule and why.
    let (ok, stdout, stderr) = s.tagwarden(&["retention"], ADMIN_TOKEN);
    assert!(ok, "{stdout}{stderr}");
    let retired: Vec<_> = plan_lines(&stdout)
        .into_iter()
        .filter(|(a, _)| a == "retired")
        .collect();
    assert_eq!(
        retired,
        [line("retired", "1.4.0"), line("retired", "1.4.1")],
        "{stdout}"
    );
    for tag in ["1.4.0", "1.4.1"] {
        assert_eq!(s.served(tag).await, None, "{tag} is gone");
        let last = s.events(tag).pop().unwrap();
        assert!(
            last.starts_with("retire retention rule web-releases: bound 400d ago")
                && last.ends_with("token:ops"),
            "{last}"
        );
    }
    for tag in ["1.3.0", "1.4.2", "1.4.3", "1.5.0", "latest"] {
        assert!(s.served(tag).await.is_some(), "{tag} stays");
    }
    // The next plan has nothing left to retire.
    let (ok, stdout, _) = s.tagwarden(&["retention", "--dry-run"], ADMIN_TOKEN);
    assert!(ok && stdout.contains("0 of 4 release(s)"), "{stdout}");
    assert_eq!(
        s.db.query_column(
            "SELECT count(*)::text FROM tag_events WHERE action IN ('retire', 'restore') AND policy_hash IS NULL"
        ),
        [Some("0".to_string())],
        "every retirement records the policy hash"
    );
}

#[tokio::test]
async fn the_scheduled_pass_retires_by_rule_and_keeps_a_recently_pulled_release() {
    // First without a schedule: three releases of one series, bound long ago, and a pull
    // of the oldest through tagwarden, recorded in the pull log.
    let s = start("").await;
    let mut images = std::collections::HashMap::new();
    for tag in ["1.0.0", "1.0.1", "1.0.2"] {
        let image = Image::random(&[128]);
        s.push(&image, tag).await.assert_success();
        images.insert(tag, image);
    }
    s.db.query_column(
        "UPDATE tag_bindings SET first_bound_at = now() - interval '400 days' RETURNING tag",
    );
    skopeo::inspect_raw(&s.tw.docker_ref(&format!("{REPO}:1.0.0")))
        .await
        .assert_success();
    let pulled = format!(
        "SELECT count(*)::text FROM pull_log WHERE repository = '{REPO}'
         AND digest = '{}' AND status BETWEEN 200 AND 299",
        images["1.0.0"].digest()
    );
    let mut recorded = false;
    for _ in 0..75 {
        if s.db.query_column(&pulled) != [Some("0".to_string())] {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(recorded, "the pull of 1.0.0 was never recorded");

    // Then tagwarden again, with the rules and a pass every second.
    let Setup { tw, db, registry } = s;
    drop(tw);
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&format!(
            "{}\n[retention]\ninterval = \"1s\"\n\n[[retention.rules]]\nname = \"web-nightly\"\n\
             repository = \"driftwood/web\"\nkeep_newest_per_minor = 1\n\
             keep_younger_than = \"180d\"\nkeep_pulled_within = \"1h\"\n",
            tokens()
        ))
        .start()
        .await;
    let s = Setup { tw, db, registry };
    let mut retired = Vec::new();
    for _ in 0..150 {
        retired = s.events("1.0.1");
        if retired.iter().any(|e| e.starts_with("retire")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let last = retired.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("retire retention rule web-nightly: ")
            && last.ends_with("tagwarden:retention"),
        "1.0.1 was not retired by the scheduled pass: {retired:?}\n{}",
        s.tw.logs()
    );
    assert_eq!(s.served("1.0.1").await, None, "1.0.1 is gone");
    // The same pass kept the newest of the series and the one pulled within the hour.
    for tag in ["1.0.0", "1.0.2"] {
        assert_eq!(
            s.served(tag).await.as_deref(),
            Some(images[tag].digest()),
            "{tag} stays"
        );
        assert!(
            !s.events(tag).iter().any(|e| e.starts_with("retire")),
            "{tag}: {:?}",
            s.events(tag)
        );
    }
    // And a plan now says why 1.0.0 stays.
    let (ok, stdout, stderr) = s.tagwarden(&["retention", "--dry-run"], ADMIN_TOKEN);
    assert!(ok, "{stdout}{stderr}");
    let kept = stdout
        .lines()
        .find(|l| l.contains(&format!("{REPO}:1.0.0")))
        .unwrap_or_default();
    assert!(
        kept.contains("keep") && kept.contains("pulled 0h ago, within 1h"),
        "{stdout}"
    );
}

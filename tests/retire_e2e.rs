//! Retiring releases end to end with skopeo, the real registry and Postgres: a retired
//! release is gone from the registry, its name refuses other bytes and accepts its own
//! (restored, recorded), its unshared blobs become deletable while shared ones stay
//! protected, and retention plans exactly what its rules select.

mod support;

use serde_json::{json, Value};
use support::oci::{Blob, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use support::{skopeo, Database, Image, OciLayout, Registry, Tagwarden};

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
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&format!("{}\n{extra}", tokens()))
        .start()
        .await;
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
        let layout = OciLayout::with_image(image);
        skopeo::copy(
            &layout.reference(),
            &self.tw.docker_ref(&format!("{REPO}:{tag}")),
        )
        .preserve_digests()
        .run()
        .await
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
    let page = reqwest::Client::new()
        .get(format!(
            "{}/ui/tag?repository={REPO}&tag=1.0.0",
            s.tw.admin_url()
        ))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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

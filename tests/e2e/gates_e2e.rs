//! Promotion gates (`promote_from`, `soak`, `require_release`) and append-only
//! signature tags, end to end with skopeo, the real registry and Postgres.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use support::api::{put_manifest, resolve, upload_blob};
use support::http::expect_oci_error;
use support::{audit, skopeo, Blob, Database, Image, Registry, Tagwarden};

const REPO: &str = "driftwood/web";
const ADMIN_TOKEN: &str = "oncall-admin-token-0123456789";

const GATED: &str = r#"
[[policy.rules]]
name = "production"
tag = "production"
class = "moving"
promote_from = ["staging"]
soak = "5s"
require_release = true
"#;

/// Comfortably longer than the rule's soak.
const SOAKED: Duration = Duration::from_millis(5500);

struct Setup {
    tw: Tagwarden,
    db: Database,
    registry: Registry,
}

async fn start() -> Setup {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = format!(
        "{GATED}\n{}\n[[admin.tokens]]\nname = \"oncall\"\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n",
        audit::config()
    );
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;
    Setup { tw, db, registry }
}

impl Setup {
    async fn push(&self, image: &Image, tag: &str) -> skopeo::SkopeoOutput {
        skopeo::push(image, &self.tw.docker_ref(&format!("{REPO}:{tag}"))).await
    }

    async fn served(&self, tag: &str) -> Option<String> {
        resolve(&self.registry.url(), REPO, tag).await
    }

    fn events(&self, tag: &str) -> Vec<String> {
        self.db
            .query_column(&format!(
                "SELECT action || ' ' || coalesce(reason, '-') FROM tag_events WHERE tag = '{tag}' ORDER BY id"
            ))
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The audit page of `tag`, as an auditor signed in to the admin listener sees it.
async fn tag_page(s: &Setup, tag: &str) -> String {
    let base = s.tw.admin_url();
    let http = support::http::client();
    let login = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("token", audit::TOKEN)
                .append_pair("next", "/ui/")
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let cookie = support::http::header(&login, "set-cookie").expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().trim().to_owned();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("repository", REPO)
        .append_pair("tag", tag)
        .finish();
    let page = http
        .get(format!("{base}/ui/tag?{query}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

fn tagwarden(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args(args)
        .env_remove("TAGWARDEN_CONFIG")
        .env_remove("TAGWARDEN_API_TOKEN")
        .env_remove("TAGWARDEN_DATABASE_URL")
        .output()
        .expect("run tagwarden");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn production_takes_only_what_staging_named_long_enough_and_released() {
    let s = start().await;
    let [release, never_staged, unreleased] = [0; 3].map(|_| Image::random(&[256]));
    s.push(&release, "1.0.0").await.assert_success();
    s.push(&release, "staging").await.assert_success();
    let staged = tokio::time::Instant::now();

    // The release staging names, but not yet for 5s: the very next request, and a bare
    // PUT (the blobs are there), so that even a slow machine judges it within the soak.
    let e = expect_oci_error(
        put_manifest(&s.tw.url(), REPO, "production", &release.manifest).await,
        StatusCode::CONFLICT,
        "a promotion not soaked",
    )
    .await;
    assert!(
        e.message.contains("gate soak failed") && e.message.contains("the rule requires 5s"),
        "{}",
        e.message
    );
    // A digest staging never named.
    let stderr = s.push(&never_staged, "production").await.assert_failure();
    assert!(
        stderr.contains("gate promote_from failed")
            && stderr.contains(&format!("staging does not name {}", never_staged.digest()))
            && stderr.contains(&format!("staging names {} now", release.digest())),
        "{stderr}"
    );
    assert_eq!(
        s.served("production").await,
        None,
        "nothing reached the registry"
    );

    tokio::time::sleep_until(staged + SOAKED).await;
    s.push(&release, "production").await.assert_success();
    assert_eq!(
        s.served("production").await.as_deref(),
        Some(release.digest())
    );

    // Soaked in staging, but no release tag names it.
    s.push(&unreleased, "staging").await.assert_success();
    tokio::time::sleep(SOAKED).await;
    let stderr = s.push(&unreleased, "production").await.assert_failure();
    assert!(
        stderr.contains("gate require_release failed")
            && stderr.contains(&format!("staging names {} now", unreleased.digest())),
        "{stderr}"
    );
    assert_eq!(
        s.events("production"),
        [
            "refuse promotion-not-soaked",
            "refuse promotion-not-from-source",
            "create -",
            "refuse promotion-not-a-release",
        ]
    );

    // The refusals show through the audit API and CLI with their reasons.
    let (ok, history, stderr) = tagwarden(&[
        "history",
        &format!("{REPO}:production"),
        "--json",
        "--api",
        &s.tw.admin_url(),
        "--token",
        audit::TOKEN,
    ]);
    assert!(ok, "{stderr}");
    let history: serde_json::Value = serde_json::from_str(&history).expect("json history");
    let reasons: Vec<&str> = history
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "promotion-not-soaked",
            "promotion-not-from-source",
            "promotion-not-a-release"
        ]
    );
    let page = tag_page(&s, "production").await;
    assert!(
        page.contains("promotion-not-soaked") && page.contains("promotion-not-a-release"),
        "{page}"
    );

    // explain shows the gates and judges what staging names now.
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), GATED).unwrap();
    let (ok, shown, stderr) = tagwarden(&[
        "explain",
        &format!("{REPO}:production"),
        "--config",
        policy.path().to_str().unwrap(),
        "--database-url",
        s.db.url(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        shown.contains("gates:   promote_from: only a digest staging names now")
            && shown.contains(&format!("staging: names {}", unreleased.digest()))
            && shown.contains("refused:")
            && shown.contains("gate require_release failed"),
        "{shown}"
    );

    // rewind to the release passes the gates only if staging still names it: it does
    // not, so an admin must bypass them, and the bypass is recorded.
    let second = Image::random(&[256]);
    s.push(&second, "1.1.0").await.assert_success();
    let rewind = |bypass: bool| {
        let mut args = vec![
            "rewind",
            "driftwood/web:production",
            "--to",
            "1.1.0",
            "--reason",
            "hotfix INC-7",
            "--api",
        ];
        let url = s.tw.admin_url();
        let mut owned: Vec<String> = args.drain(..).map(str::to_owned).collect();
        owned.extend([url, "--token".into(), ADMIN_TOKEN.into()]);
        if bypass {
            owned.push("--bypass-gates".into());
        }
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        tagwarden(&refs)
    };
    let (ok, _, stderr) = rewind(false);
    assert!(!ok);
    assert!(
        stderr.contains("gate promote_from failed") && stderr.contains("--bypass-gates"),
        "{stderr}"
    );
    assert_eq!(
        s.served("production").await.as_deref(),
        Some(release.digest())
    );
    let (ok, shown, stderr) = rewind(true);
    assert!(ok, "{stderr}");
    assert!(shown.contains("(gate promote_from bypassed)"), "{shown}");
    assert_eq!(
        s.served("production").await.as_deref(),
        Some(second.digest())
    );
    assert_eq!(
        s.events("production").last().map(String::as_str),
        Some("move rewind to 1.1.0, bypassing gate promote_from: hotfix INC-7")
    );
}

/// A cosign-style signature manifest: a small config and one layer per signature.
fn signature(config: &Blob, layers: &[&Blob]) -> Blob {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
    });
    Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap(),
    )
}

#[tokio::test]
async fn signature_tags_only_grow_and_stay_while_their_release_lives() {
    let s = start().await;
    let base = s.tw.url();
    let release = Image::random(&[256]);
    s.push(&release, "1.0.0").await.assert_success();
    let sig_tag = format!("sha256-{}.sig", &release.digest()["sha256:".len()..]);

    let config = Blob::new("application/vnd.oci.image.config.v1+json", b"{}".to_vec());
    let [s1, s2, s3] = [1, 2, 3].map(|n| {
        Blob::new(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            format!(
                "{{\"signature\":{n},\"nonce\":\"{}\"}}",
                uuid::Uuid::new_v4()
            )
            .into_bytes(),
        )
    });
    for b in [&config, &s1, &s2, &s3] {
        upload_blob(&base, REPO, b).await;
    }

    let one = signature(&config, &[&s1]);
    let two = signature(&config, &[&s1, &s2]);
    let dropped = signature(&config, &[&s2, &s3]);
    assert_eq!(
        put_manifest(&base, REPO, &sig_tag, &one).await.status(),
        StatusCode::CREATED
    );
    // cosign appends a signature: accepted.
    assert_eq!(
        put_manifest(&base, REPO, &sig_tag, &two).await.status(),
        StatusCode::CREATED
    );
    // A manifest that drops one: refused, naming it.
    let e = expect_oci_error(
        put_manifest(&base, REPO, &sig_tag, &dropped).await,
        StatusCode::CONFLICT,
        "a signature dropped",
    )
    .await;
    assert_eq!(e.code, "DENIED");
    assert!(
        e.message.contains("is append-only")
            && e.message.contains(&format!("drops layer {}", s1.digest))
            && e.message.contains(&two.digest),
        "{}",
        e.message
    );
    assert_eq!(
        s.served(&sig_tag).await.as_deref(),
        Some(two.digest.as_str())
    );

    // Deleting it while 1.0.0 is a live release: refused (skopeo deletes by digest).
    let stderr = skopeo::delete(&s.tw.docker_ref(&format!("{REPO}:{sig_tag}")))
        .await
        .assert_failure();
    assert!(
        stderr.contains("is append-only and cannot be deleted while its subject")
            && stderr.contains("is release 1.0.0"),
        "{stderr}"
    );
    assert_eq!(
        s.served(&sig_tag).await.as_deref(),
        Some(two.digest.as_str())
    );

    // A signature of a digest that is not a release may go.
    let other_tag = format!("sha256-{}.sig", "ab".repeat(32));
    let lone = signature(&config, &[&s3]);
    assert_eq!(
        put_manifest(&base, REPO, &other_tag, &lone).await.status(),
        StatusCode::CREATED
    );
    skopeo::delete(&s.tw.docker_ref(&format!("{REPO}:{other_tag}")))
        .await
        .assert_success();
    assert_eq!(s.served(&other_tag).await, None);

    assert_eq!(
        s.events(&sig_tag),
        [
            "create -",
            "move -",
            "refuse append-only-descriptor-dropped",
            "refuse append-only-delete",
        ]
    );
    assert_eq!(
        s.db.query_column(&format!(
            "SELECT class FROM tag_bindings WHERE tag = '{sig_tag}'"
        )),
        [Some("append_only".to_owned())]
    );

    // The referrers fallback index only grows too: manifests among manifests.
    let referrers_tag = format!("sha256-{}", &release.digest()["sha256:".len()..]);
    let [a1, a2] = [&s1, &s2].map(|l| signature(&config, &[l]));
    for a in [&a1, &a2] {
        let r = put_manifest(&base, REPO, &a.digest, a).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "push {} by digest",
            a.digest
        );
    }
    let index = |listed: &[&Blob]| {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": listed.iter().map(|m| m.descriptor()).collect::<Vec<_>>(),
        });
        Blob::new(
            "application/vnd.oci.image.index.v1+json",
            serde_json::to_vec(&index).unwrap(),
        )
    };
    for listed in [&[&a1][..], &[&a1, &a2][..]] {
        let r = put_manifest(&base, REPO, &referrers_tag, &index(listed)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "an artifact appended");
    }
    let e = expect_oci_error(
        put_manifest(&base, REPO, &referrers_tag, &index(&[&a2])).await,
        StatusCode::CONFLICT,
        "an artifact dropped",
    )
    .await;
    assert!(
        e.message.contains(&format!("drops manifest {}", a1.digest)),
        "{}",
        e.message
    );

    let page = tag_page(&s, &sig_tag).await;
    assert!(
        page.contains("append-only-descriptor-dropped") && page.contains("append-only-delete"),
        "{page}"
    );
}

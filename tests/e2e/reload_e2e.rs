//! Reloading the policy on SIGHUP, against a real registry and Postgres: a broken file
//! keeps the policy in force, a good one decides the next push, a request in flight
//! finishes under the policy it started with, and `explain --at` shows the old rule.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use support::http::client;
use support::{api, wait, Database, Image, Registry, Served, Tagwarden};

const REPO: &str = "reload/app";

/// `stable` moves; everything else follows the built-in rules.
const MOVING: &str = r#"
[[policy.rules]]
name = "stable-moves"
tag = "stable"
class = "moving"
"#;

/// `stable` is now a release tag: bound once.
const IMMUTABLE: &str = r#"
[[policy.rules]]
name = "stable-is-frozen"
tag = "stable"
class = "immutable"
"#;

/// Not a valid regex: the whole file is rejected.
const BROKEN: &str = r#"
[[policy.rules]]
name = "broken"
tag = "stable("
class = "immutable"
"#;

struct Setup {
    _registry: Registry,
    db: Database,
    tw: Tagwarden,
}

async fn setup() -> Setup {
    let Served { registry, db, tw } = Served::with_config(MOVING).await;
    Setup {
        _registry: registry,
        db,
        tw,
    }
}

impl Setup {
    fn rewrite(&self, toml: &str) {
        std::fs::write(self.tw.dir().join("tagwarden.toml"), toml).expect("rewrite config");
    }

    fn hangup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.tw.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -HUP tagwarden");
    }

    async fn policy_hash(&self) -> String {
        let body: serde_json::Value = client()
            .get(format!("{}/readyz", self.tw.admin_url()))
            .send()
            .await
            .expect("GET /readyz")
            .json()
            .await
            .expect("readyz JSON");
        body["policy"]["hash"]
            .as_str()
            .unwrap_or_else(|| panic!("readyz names no policy hash: {body}"))
            .to_owned()
    }

    async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.tw.admin_url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Wait until `/metrics` has a line starting with `line`.
    async fn wait_for_metric(&self, line: &str) {
        wait::until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async {
                let m = self.metrics().await;
                if m.lines().any(|l| l.starts_with(line)) {
                    Ok(())
                } else {
                    Err(format!("no metric line {line:?}:\n{m}"))
                }
            },
        )
        .await
    }

    async fn push(&self, image: &Image, tag: &str) -> StatusCode {
        for blob in image.blobs() {
            api::upload_blob(&self.tw.url(), REPO, blob).await;
        }
        api::put_manifest(&self.tw.url(), REPO, tag, &image.manifest)
            .await
            .status()
    }

    fn explain(&self, at: &str) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
            .args(["explain", &format!("{REPO}:stable"), "--at", at])
            .args(["--database-url", self.db.url()])
            .env_remove("TAGWARDEN_CONFIG")
            .output()
            .expect("run tagwarden explain");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "explain --at {at} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn a_broken_reload_keeps_the_policy_and_a_good_one_decides_the_next_push() {
    let s = setup().await;
    let first = s.policy_hash().await;
    assert_eq!(first.len(), 64, "a sha256 hex: {first}");
    s.wait_for_metric(&format!("tagwarden_policy_info{{hash=\"{first}\"}} 1"))
        .await;
    assert_eq!(
        s.push(&Image::random(&[64]), "stable").await,
        StatusCode::CREATED
    );
    assert_eq!(
        s.push(&Image::random(&[64]), "stable").await,
        StatusCode::CREATED,
        "stable moves"
    );

    s.rewrite(BROKEN);
    s.hangup();
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"rejected\"} 1")
        .await;
    assert_eq!(
        s.policy_hash().await,
        first,
        "a broken file changes nothing"
    );
    let logs = s.tw.logs();
    assert!(
        logs.contains("reload rejected") && logs.contains("policy.rules[0].tag"),
        "the rejection is logged with the key at fault:\n{logs}"
    );
    let last_moving = Image::random(&[64]);
    assert_eq!(
        s.push(&last_moving, "stable").await,
        StatusCode::CREATED,
        "the old policy still decides: stable still moves"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let while_moving = now();
    tokio::time::sleep(Duration::from_millis(50)).await;

    s.rewrite(IMMUTABLE);
    s.hangup();
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"applied\"} 1")
        .await;
    let second = s.policy_hash().await;
    assert_ne!(second, first, "readyz names the new policy");
    let m = s.metrics().await;
    assert!(
        m.contains(&format!("tagwarden_policy_info{{hash=\"{second}\"}} 1"))
            && m.contains(&format!("tagwarden_policy_info{{hash=\"{first}\"}} 0")),
        "the info metric follows the reload:\n{m}"
    );
    assert_eq!(
        s.push(&Image::random(&[64]), "stable").await,
        StatusCode::CONFLICT,
        "the next push is decided by the new policy: stable is frozen on its digest"
    );
    assert_eq!(
        s.push(&last_moving, "stable").await,
        StatusCode::CREATED,
        "its own digest may be pushed again"
    );
    assert!(s.tw.pid() > 0 && s.tw.logs().contains("configuration reloaded"));

    // Reloading the same file again changes nothing and says so.
    s.hangup();
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"unchanged\"} 1")
        .await;
    assert_eq!(s.policy_hash().await, second);

    let then = s.explain(&while_moving);
    assert!(
        then.contains(&first) && then.contains("stable-moves") && then.contains("class:   moving"),
        "explain --at shows the rule in force then:\n{then}"
    );
    let now = s.explain(&now());
    assert!(
        now.contains(&second)
            && now.contains("stable-is-frozen")
            && now.contains("class:   immutable"),
        "explain --at now shows the rule in force now:\n{now}"
    );
}

#[tokio::test]
async fn a_request_in_flight_during_a_reload_finishes_under_the_policy_it_started_with() {
    let s = setup().await;
    let old = s.policy_hash().await;
    let bound = Image::random(&[64]);
    assert_eq!(s.push(&bound, "stable").await, StatusCode::CREATED);
    let next = Image::random(&[64]);
    for blob in next.blobs() {
        api::upload_blob(&s.tw.url(), REPO, blob).await;
    }
    // The manifest body arrives over about two seconds; the reload lands in between.
    let bytes = next.manifest.bytes.clone();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes
        .chunks(bytes.len().div_ceil(4))
        .map(|c| Ok(c.to_vec()))
        .collect();
    let slow = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c
    });
    let put = tokio::spawn(
        client()
            .put(format!("{}/v2/{REPO}/manifests/stable", s.tw.url()))
            .header("content-type", &next.manifest.media_type)
            .header("content-length", bytes.len())
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.rewrite(IMMUTABLE);
    s.hangup();
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"applied\"} 1")
        .await;
    assert!(
        !put.is_finished(),
        "the PUT was still sending its body during the reload"
    );
    let resp = put
        .await
        .unwrap()
        .expect("the PUT in flight was not dropped");
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "decided by the policy in force when it started, under which stable moves"
    );
    assert_eq!(
        api::resolve(&s.tw.url(), REPO, "stable").await.as_deref(),
        Some(next.digest())
    );
    assert_eq!(
        s.push(&bound, "stable").await,
        StatusCode::CONFLICT,
        "the request after it is decided by the new policy"
    );
    let new = s.policy_hash().await;
    let decided_by = |action: &str| {
        s.db.query_column(&format!(
            "SELECT policy_hash FROM tag_events WHERE repository = '{REPO}' AND action = '{action}' ORDER BY id"
        ))
    };
    assert_eq!(
        decided_by("move"),
        [Some(old)],
        "the move records the policy it started with"
    );
    assert_eq!(
        decided_by("refuse"),
        [Some(new)],
        "the refusal records the new policy"
    );
}

#[tokio::test]
async fn with_the_watch_on_a_changed_file_is_reloaded_without_a_signal() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let watched = format!("[reload]\nwatch = true\nwatch_interval = \"200ms\"\n{MOVING}");
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&watched)
        .start()
        .await;
    let s = Setup {
        _registry: registry,
        db,
        tw,
    };
    let first = s.policy_hash().await;
    s.rewrite(&format!(
        "[reload]\nwatch = true\nwatch_interval = \"200ms\"\n{IMMUTABLE}"
    ));
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"applied\"} 1")
        .await;
    assert_ne!(s.policy_hash().await, first);
    assert!(
        s.tw.logs().contains("file-change"),
        "the reload names its trigger:\n{}",
        s.tw.logs()
    );
    // A setting outside the policy is named as needing a restart, and not applied.
    s.rewrite(&format!(
        "[reload]\nwatch = true\nwatch_interval = \"200ms\"\n[limits]\nmax_manifest_bytes = 8388608\n{IMMUTABLE}"
    ));
    s.wait_for_metric("tagwarden_policy_reloads_total{outcome=\"unchanged\"} 1")
        .await;
    let logs = s.tw.logs();
    assert!(
        logs.contains("limits.max_manifest_bytes") && logs.contains("only after a restart"),
        "the changed setting is named:\n{logs}"
    );
}

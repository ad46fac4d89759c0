//! The command line: `explain` and `check-config` tell an operator what tagwarden
//! will do, without a registry or database; `import` adopts only manifests the
//! registry really serves.

use crate::support;

use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};
use support::Database;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn tagwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args(args)
        .env_remove("TAGWARDEN_CONFIG")
        .output()
        .expect("run tagwarden")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn config_file(toml: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), toml).unwrap();
    f
}

#[test]
fn explain_shows_the_rule_class_and_effect() {
    let out = tagwarden(&["explain", "driftwood/web:1.4.0"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("rule:    semver-releases") && shown.contains("class:   immutable"),
        "{shown}"
    );
    assert!(shown.contains("refused"), "{shown}");

    let out = tagwarden(&["explain", "driftwood/web:latest"]);
    assert!(text(&out).contains("class:   moving"), "{}", text(&out));

    let sig = format!("driftwood/web:sha256-{}.sig", "ab".repeat(32));
    assert!(text(&tagwarden(&["explain", &sig])).contains("class:   append_only"));
}

#[test]
fn explain_uses_the_rules_of_a_config_file() {
    let f = config_file(
        "[[policy.rules]]\nname = \"sandbox\"\nrepository = \"sandbox/.*\"\ntag = \".*\"\nclass = \"moving\"\n",
    );
    let path = f.path().to_str().unwrap();
    let shown = text(&tagwarden(&[
        "explain",
        "sandbox/x:1.4.0",
        "--config",
        path,
    ]));
    assert!(
        shown.contains("rule:    sandbox") && shown.contains("class:   moving"),
        "{shown}"
    );
    let shown = text(&tagwarden(&["explain", "team/x:1.4.0", "--config", path]));
    assert!(shown.contains("class:   immutable"), "{shown}");
}

#[test]
fn explain_refuses_invalid_references() {
    for bad in ["no-tag", "Upper/case:1.0.0", "a:b/c", "a:"] {
        let out = tagwarden(&["explain", bad]);
        assert!(!out.status.success(), "{bad}: {}", text(&out));
    }
}

#[test]
fn check_config_accepts_the_shipped_files_and_names_the_bad_key() {
    for shipped in ["config/tagwarden.toml", "config/compose.toml"] {
        let path = format!("{}/{shipped}", env!("CARGO_MANIFEST_DIR"));
        let out = tagwarden(&["check-config", &path]);
        assert!(out.status.success(), "{shipped}: {}", text(&out));
    }
    let cases = [
        ("[upstream]\nurl = \"http://r:5000\"\nconect_timeout = \"1s\"\n[database]\nurl = \"postgres://x/y\"\n", "conect_timeout"),
        ("[upstream]\nurl = \"http://r:5000\"\n[database]\nurl = \"mysql://x/y\"\n", "database.url"),
        ("[upstream]\nurl = \"http://r:5000\"\n[database]\nurl = \"postgres://x/y\"\n[[policy.rules]]\nname = \"x\"\ntag = \"(\"\nclass = \"immutable\"\n", "policy.rules[0].tag"),
        ("[upstream]\nurl = \"http://r:5000\"\n[database]\nurl = \"postgres://x/y\"\n[server]\nheader_read_timeout = \"soon\"\n", "server.header_read_timeout"),
        ("[database]\nurl = \"postgres://x/y\"\n", "upstream"),
    ];
    for (toml, key) in cases {
        let f = config_file(toml);
        let out = tagwarden(&["check-config", f.path().to_str().unwrap()]);
        let shown = text(&out);
        assert!(!out.status.success(), "accepted:\n{toml}");
        assert!(shown.contains(key), "the error should name {key}: {shown}");
    }
}

/// A registry whose HEADs answer 200 without `Docker-Content-Digest`, so that import
/// must GET each manifest: 1.0.0 answers 500 with an error page, 1.0.1 a manifest,
/// 1.0.2 a body over the 4 MiB manifest limit. Only 1.0.1 may be adopted.
#[tokio::test]
async fn import_adopts_only_manifests_the_registry_answers_with_200() {
    let registry = MockServer::start().await;
    let json = |v: serde_json::Value| ResponseTemplate::new(200).set_body_json(v);
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(json(serde_json::json!({ "repositories": ["old/app"] })))
        .mount(&registry)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/old/app/tags/list"))
        .respond_with(json(
            serde_json::json!({ "name": "old/app", "tags": ["1.0.0", "1.0.1", "1.0.2"] }),
        ))
        .mount(&registry)
        .await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&registry)
        .await;
    let error_page = r#"{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}"#;
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let oversized = vec![b' '; 4 * 1024 * 1024 + 1];
    for (tag, status, body) in [
        ("1.0.0", 500, error_page.as_bytes().to_vec()),
        ("1.0.1", 200, manifest.to_vec()),
        ("1.0.2", 200, oversized),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/old/app/manifests/{tag}")))
            .respond_with(ResponseTemplate::new(status).set_body_bytes(body))
            .mount(&registry)
            .await;
    }

    let db = Database::fresh();
    let (upstream, database) = (registry.uri(), db.url().to_string());
    let out = tokio::task::spawn_blocking(move || {
        tagwarden(&[
            "import",
            "--upstream",
            &upstream,
            "--database-url",
            &database,
        ])
    })
    .await
    .unwrap();
    let shown = text(&out);
    assert!(
        !out.status.success(),
        "skipped tags make import fail: {shown}"
    );
    assert!(
        shown.contains("imported 1 tag(s) from 1 repositories"),
        "{shown}"
    );
    assert!(shown.contains("skipped: old/app:1.0.0"), "{shown}");
    assert!(shown.contains("500"), "the reason is shown: {shown}");
    assert!(shown.contains("skipped: old/app:1.0.2"), "{shown}");
    assert!(shown.contains("at most 4194304 bytes"), "{shown}");

    let bound = db.query_column(
        "SELECT tag || ' ' || digest FROM tag_bindings WHERE repository = 'old/app' ORDER BY tag",
    );
    let served = format!("sha256:{:x}", Sha256::digest(manifest));
    assert_eq!(bound, [Some(format!("1.0.1 {served}"))]);
    let error_digest = format!("sha256:{:x}", Sha256::digest(error_page));
    let events = db.query_column("SELECT digest FROM tag_events");
    assert!(
        !events.contains(&Some(error_digest)),
        "the error page was recorded: {events:?}"
    );
    assert_eq!(events.len(), 1, "{events:?}");
}

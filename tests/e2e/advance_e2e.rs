//! Moving tags that only move forward (`advance = "semver"`), and follow mode, end to
//! end with skopeo, the real registry and Postgres.

use crate::support;

use support::{skopeo, Database, Image, Registry, Tagwarden};

const ADVANCING: &str = r#"
[[policy.rules]]
name = "minor-series"
tag = "v?(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)"
class = "moving"
advance = "semver"
FOLLOW

[[policy.rules]]
name = "major-series"
tag = "v?(0|[1-9][0-9]{0,3})"
class = "moving"
advance = "semver"
FOLLOW

[[policy.rules]]
name = "latest-release"
tag = "latest"
class = "moving"
advance = "semver"
FOLLOW
"#;

struct Setup {
    registry: Registry,
    db: Database,
    tw: Tagwarden,
}

async fn start(follow: bool) -> Setup {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = ADVANCING.replace("FOLLOW", if follow { "follow = true" } else { "" });
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;
    Setup { registry, db, tw }
}

impl Setup {
    async fn push(&self, image: &Image, tag: &str) -> skopeo::SkopeoOutput {
        skopeo::push(image, &self.tw.docker_ref(&format!("driftwood/web:{tag}"))).await
    }

    /// What the registry itself serves for a tag, if anything.
    async fn served(&self, tag: &str) -> Option<String> {
        skopeo::inspect_digest(&self.registry.docker_ref(&format!("driftwood/web:{tag}")))
            .await
            .ok()
    }

    fn events(&self, tag: &str) -> Vec<String> {
        self.db
            .query_column(&format!(
                "SELECT action || ' ' || coalesce(reason, '-') || ' ' || coalesce(identity, '-') FROM tag_events WHERE tag = '{tag}' ORDER BY id"
            ))
            .into_iter()
            .flatten()
            .collect()
    }
}

#[tokio::test]
async fn moving_tags_only_move_forward_over_releases_of_their_series() {
    let s = start(false).await;
    let [v141, v142, v140, other, rc] = [0; 5].map(|_| Image::random(&[256]));
    s.push(&v141, "1.4.1").await.assert_success();
    s.push(&v142, "1.4.2").await.assert_success();
    s.push(&v140, "1.4.0").await.assert_success();
    s.push(&rc, "1.5.0-rc.1").await.assert_success();

    // Forward moves pass.
    for (image, tag) in [
        (&v141, "1.4"),
        (&v142, "1.4"),
        (&v140, "latest"),
        (&v142, "latest"),
        (&v142, "1"),
    ] {
        s.push(image, tag).await.assert_success();
    }
    assert_eq!(s.served("1.4").await.as_deref(), Some(v142.digest()));

    // Backward: refused, with a message that names both releases and the way out.
    let stderr = s.push(&v141, "1.4").await.assert_failure();
    assert!(
        stderr.contains("tag driftwood/web:1.4 only moves forward: it names release 1.4.2")
            && stderr.contains("move it back to 1.4.1")
            && stderr.contains("tagwarden rewind driftwood/web:1.4 --to 1.4.1"),
        "{stderr}"
    );
    let stderr = s.push(&v140, "latest").await.assert_failure();
    assert!(
        stderr.contains("it names release 1.4.2") && stderr.contains("back to 1.4.0"),
        "{stderr}"
    );
    assert_eq!(
        s.served("1.4").await.as_deref(),
        Some(v142.digest()),
        "the registry still has the newer release"
    );
    assert_eq!(s.served("latest").await.as_deref(), Some(v142.digest()));

    // Not a release at all, a release of another series, or a prerelease: refused.
    let stderr = s.push(&other, "latest").await.assert_failure();
    assert!(
        stderr.contains("only names releases (every release)") && stderr.contains(other.digest()),
        "{stderr}"
    );
    let stderr = s.push(&v142, "1.5").await.assert_failure();
    assert!(
        stderr.contains("only names releases (releases 1.5.x)"),
        "{stderr}"
    );
    let stderr = s.push(&rc, "1.5").await.assert_failure();
    assert!(
        stderr.contains("only names releases (releases 1.5.x)"),
        "prereleases do not advance a stable series: {stderr}"
    );

    assert_eq!(
        s.events("1.4"),
        ["create - -", "move - -", "refuse moving-tag-backwards -"]
    );
    assert_eq!(
        s.events("1.5"),
        [
            "refuse moving-tag-not-a-release -",
            "refuse moving-tag-not-a-release -"
        ]
    );
}

#[tokio::test]
async fn follow_mode_advances_the_whole_tag_set_and_never_regresses() {
    let s = start(true).await;
    let [v141, v142, v139, v200] = [0; 4].map(|_| Image::random(&[256]));

    s.push(&v141, "1.4.1").await.assert_success();
    for tag in ["1.4", "1", "latest"] {
        assert_eq!(
            s.served(tag).await.as_deref(),
            Some(v141.digest()),
            "{tag} follows 1.4.1"
        );
    }
    s.push(&v142, "1.4.2").await.assert_success();
    for tag in ["1.4", "1", "latest"] {
        assert_eq!(
            s.served(tag).await.as_deref(),
            Some(v142.digest()),
            "{tag} follows 1.4.2"
        );
    }
    // A late, older release starts its own series but moves nothing backwards.
    s.push(&v139, "1.3.9").await.assert_success();
    assert_eq!(s.served("1.3").await.as_deref(), Some(v139.digest()));
    for tag in ["1.4", "1", "latest"] {
        assert_eq!(
            s.served(tag).await.as_deref(),
            Some(v142.digest()),
            "{tag} did not regress"
        );
    }
    s.push(&v200, "2.0.0").await.assert_success();
    assert_eq!(s.served("2").await.as_deref(), Some(v200.digest()));
    assert_eq!(s.served("latest").await.as_deref(), Some(v200.digest()));
    assert_eq!(
        s.served("1").await.as_deref(),
        Some(v142.digest()),
        "1 stays on the 1.x line"
    );

    // Each move tagwarden made is recorded as its own.
    assert_eq!(
        s.events("1.4"),
        ["create follow tagwarden", "move follow tagwarden"]
    );
    assert_eq!(
        s.events("latest"),
        [
            "create follow tagwarden",
            "move follow tagwarden",
            "move follow tagwarden"
        ]
    );
}

const ADMIN_TOKEN: &str = "oncall-admin-token-0123456789";
const AUDITOR_TOKEN: &str = "siem-auditor-token-0123456789";

fn rewind(s: &Setup, reference: &str, to: &str, token: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args([
            "rewind",
            reference,
            "--to",
            to,
            "--reason",
            "1.4.1 breaks logins; INC-2041",
        ])
        .args(["--api", &s.tw.admin_url(), "--token", token])
        .env_remove("TAGWARDEN_API_TOKEN")
        .output()
        .expect("run tagwarden rewind")
}

#[tokio::test]
async fn an_admin_can_rewind_a_moving_tag_deliberately_and_it_is_recorded() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = format!(
        "{}\n[[admin.tokens]]\nname = \"oncall\"\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n[[admin.tokens]]\nname = \"siem\"\ntoken = \"{AUDITOR_TOKEN}\"\nrole = \"auditor\"\n",
        ADVANCING.replace("FOLLOW", "")
    );
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;
    let s = Setup { registry, db, tw };
    let [v140, v141] = [0; 2].map(|_| Image::random(&[256]));
    s.push(&v140, "1.4.0").await.assert_success();
    s.push(&v141, "1.4.1").await.assert_success();
    s.push(&v140, "latest").await.assert_success();
    s.push(&v141, "latest").await.assert_success();
    // A push cannot take it back...
    s.push(&v140, "latest").await.assert_failure();

    // ...an auditor token cannot either...
    let out = rewind(&s, "driftwood/web:latest", "1.4.0", AUDITOR_TOKEN);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.served("latest").await.as_deref(), Some(v141.digest()));

    // ...but an admin can, deliberately.
    let out = rewind(&s, "driftwood/web:latest", "1.4.0", ADMIN_TOKEN);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains(&format!(
            "driftwood/web:latest now names release 1.4.0 ({})",
            v140.digest()
        )),
        "{shown}"
    );
    assert_eq!(
        s.served("latest").await.as_deref(),
        Some(v140.digest()),
        "the registry moved"
    );
    assert_eq!(
        s.events("latest").last().map(String::as_str),
        Some("move rewind to 1.4.0: 1.4.1 breaks logins; INC-2041 token:oncall")
    );

    // Only moving tags, and only to recorded releases.
    let out = rewind(&s, "driftwood/web:1.4.1", "1.4.0", ADMIN_TOKEN);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only moving tags can be rewound"));
    let out = rewind(&s, "driftwood/web:latest", "9.9.9", ADMIN_TOKEN);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a release recorded in the ledger"));
    assert_eq!(s.served("1.4.1").await.as_deref(), Some(v141.digest()));

    // After the incident, moving forward again is a normal push.
    s.push(&v141, "latest").await.assert_success();
}

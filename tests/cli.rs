//! The command line: `explain` and `check-config` tell an operator what tagwarden
//! will do, without a registry or database.

use std::process::{Command, Output};

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
    assert!(text(&tagwarden(&["explain", &sig])).contains("class:   exempt"));
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

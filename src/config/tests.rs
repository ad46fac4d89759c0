use std::path::Path;
use std::time::Duration;

use super::*;

/// `Config::load` with the environment locked: tests that set `TAGWARDEN_*`
/// variables (inside `figment::Jail`) must not leak them into this one.
#[allow(clippy::result_large_err)] // figment::Jail's own error type
fn load_isolated(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut out = None;
    figment::Jail::expect_with(|_| {
        out = Some(Config::load(path, overrides));
        Ok(())
    });
    out.expect("the jail ran")
}

fn write(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const MINIMAL: &str =
    "[upstream]\nurl = \"http://registry:5000\"\n[database]\nurl = \"postgres://localhost/test\"\n";

#[test]
fn minimal_file_gets_defaults() {
    let f = write(MINIMAL);
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(c.limits.max_manifest_bytes, 4 * 1024 * 1024);
    assert_eq!(c.upstream.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.upstream.manifest_timeout, Duration::from_secs(15));
    assert_eq!(c.limits.manifest_buffer_budget, 64 * 1024 * 1024);
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.admin.max_open_connections, 64);
}

#[test]
fn bounds_are_checked() {
    let upstream = "[upstream]\nurl = \"http://r:5000\"\nmanifest_timeout = \"0s\"\n[database]\nurl = \"postgres://x/y\"\n";
    for (text, key) in [
        (
            format!("{MINIMAL}[limits]\nmanifest_buffer_budget = 1024\n"),
            "limits.manifest_buffer_budget",
        ),
        (upstream.to_owned(), "upstream.manifest_timeout"),
        (
            format!("{MINIMAL}[server]\nmax_connections = 0\n"),
            "server.max_connections",
        ),
    ] {
        let f = write(&text);
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{text} => {e}");
    }
}

#[test]
fn retention_rules_parse_and_bad_ones_name_the_key() {
    let rule = "[[retention.rules]]\nname = \"web\"\nrepository = \"driftwood/.*\"\n";
    let f = write(&format!(
        "{MINIMAL}{rule}keep_newest_per_minor = 3\nkeep_younger_than = \"180d\"\nkeep_pulled_within = \"30d\"\n"
    ));
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(c.retention.interval, None, "no scheduled pass by default");
    let r = &c.retention.rules[0];
    assert_eq!(r.keep_newest_per_minor, Some(3));
    assert_eq!(r.keep_younger_than, Some(Duration::from_secs(180 * 86_400)));
    assert_eq!(r.keep_pulled_within, Some(Duration::from_secs(30 * 86_400)));
    for (extra, key) in [
        ("", "retention.rules[0].keep_newest_per_minor"),
        (
            "keep_newest_per_minor = 0\n",
            "retention.rules[0].keep_newest_per_minor",
        ),
        (
            "keep_younger_than = \"1d\"\nkeep_pulled_within = \"1d\"\n[pulls]\nenabled = false\n",
            "retention.rules[0].keep_pulled_within",
        ),
    ] {
        let f = write(&format!("{MINIMAL}{rule}{extra}"));
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{extra} => {e}");
    }
    let bad = rule.replace("driftwood/.*", "driftwood/(");
    let f = write(&format!("{MINIMAL}{bad}keep_newest_per_minor = 1\n"));
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("retention.rules[0].repository"), "{e}");
}

#[test]
fn webhooks_default_to_policy_events_and_bad_entries_name_the_key() {
    let hook = "[[notify.webhooks]]\nurl = \"https://chat.example/hook?token=x\"\nsecret = \"0123456789abcdef\"\n";
    let f = write(&format!("{MINIMAL}{hook}"));
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    let w = &c.notify.webhooks[0];
    assert_eq!(w.events, ["refuse", "move", "delete", "warn"]);
    assert_eq!(w.from, StartFrom::End);
    assert_eq!(
        w.name(),
        "chat.example",
        "no path or query: they may hold tokens"
    );
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "secret logged"
    );

    for (bad, key) in [
        ("url = \"ftp://x/y\"", "notify.webhooks[0].url"),
        ("url = \"not a url\"", "notify.webhooks[0].url"),
        ("url = \"https://u:p@x/y\"", "notify.webhooks[0].url"),
        (
            "events = [\"refuse\", \"explode\"]",
            "notify.webhooks[0].events",
        ),
        ("secret = \"short\"", "notify.webhooks[0].secret"),
    ] {
        let (field, _) = bad.split_once(" = ").unwrap();
        let base: String = hook
            .lines()
            .filter(|l| !l.starts_with(field))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = write(&format!("{MINIMAL}{base}{bad}\n"));
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{bad}: {e}");
    }
    let f = write(&format!("{MINIMAL}{hook}{hook}"));
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("notify.webhooks[1].name"), "{e}");
}

#[test]
fn reconcile_defaults_and_limits() {
    let f = write(MINIMAL);
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert!(c.reconcile.enabled);
    assert!(!c.reconcile.repair);
    assert_eq!(c.reconcile.interval, Duration::from_secs(600));
    assert_eq!(c.reconcile.max_requests_per_second, 20);
    assert_eq!(c.reconcile.time_budget, Duration::from_secs(60));
    for (bad, key) in [
        ("interval = \"0s\"", "reconcile.interval"),
        (
            "max_requests_per_second = 0",
            "reconcile.max_requests_per_second",
        ),
        ("page_size = 0", "reconcile.page_size"),
        ("time_budget = \"0s\"", "reconcile.time_budget"),
    ] {
        let f = write(&format!("{MINIMAL}[reconcile]\n{bad}\n"));
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{bad}: {e}");
    }
}

#[test]
fn the_pull_log_is_on_by_default_and_its_limits_are_checked() {
    let f = write(MINIMAL);
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert!(c.pulls.enabled);
    assert_eq!(c.pulls.queue, 10_000);
    assert_eq!(c.pulls.retention, Duration::from_secs(30 * 86_400));

    let f = write(&format!(
        "{MINIMAL}[pulls]\nenabled = false\nretention = \"7d\"\n"
    ));
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert!(!c.pulls.enabled);
    assert_eq!(c.pulls.retention, Duration::from_secs(7 * 86_400));

    for (bad, key) in [
        ("retention = \"1h\"", "pulls.retention"),
        ("queue = 0", "pulls.queue"),
        ("batch = 0", "pulls.batch"),
        ("max_connections = 0", "pulls.max_connections"),
    ] {
        let f = write(&format!("{MINIMAL}[pulls]\n{bad}\n"));
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{bad}: {e}");
    }
}

#[test]
fn flags_override_the_file() {
    let f = write(MINIMAL);
    let o = Overrides {
        upstream: Some("http://other:5000".into()),
        ..Default::default()
    };
    let c = load_isolated(Some(f.path()), &o).unwrap();
    assert_eq!(c.upstream.url, "http://other:5000");
}

#[test]
fn errors_name_the_key() {
    let f = write(&format!(
        "{MINIMAL}[limits]\nmax_manifest_bytes = \"lots\"\n"
    ));
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("limits.max_manifest_bytes"), "{e}");

    let f = write(&format!("{MINIMAL}[server]\nlisten_addr = \"x\"\n"));
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen_addr"), "{e}");

    let f = write("[upstream]\nurl = \"ftp://x\"\n[database]\nurl = \"postgres://x/y\"\n");
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("upstream.url"), "{e}");
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
fn section_variables_override_and_flag_variables_are_left_to_the_flags() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("TAGWARDEN_UPSTREAM__IDLE_TIMEOUT", "7s");
        jail.set_env("TAGWARDEN_LISTEN", "0.0.0.0:6000");
        jail.set_env("TAGWARDEN_DATABASE_URL", "postgres://elsewhere/db");
        let f = write(MINIMAL);
        let c = Config::load(Some(f.path()), &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.upstream.idle_timeout, Duration::from_secs(7));
        assert_eq!(c.database.url.expose(), "postgres://localhost/test");
        Ok(())
    });
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let f = write(
        "[upstream]\nurl = \"http://r:5000\"\nusername = \"bot\"\npassword = \"hunter2\"\n[database]\nurl = \"postgres://u:pw-xyz@db/t\"\n"
    );
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("pw-xyz"),
        "{shown}"
    );
    assert_eq!(c.upstream.password.unwrap().expose(), "hunter2");
}

const TOKEN: &str = "0123456789abcdef-audit";

#[test]
fn api_tokens_are_read_validated_and_kept_out_of_debug_output() {
    let f = write(&format!(
        "{MINIMAL}[[admin.tokens]]\nname = \"siem\"\ntoken = \"{TOKEN}\"\nrole = \"auditor\"\n"
    ));
    let c = load_isolated(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(c.admin.tokens.len(), 1);
    assert_eq!(c.admin.tokens[0].name, "siem");
    assert_eq!(c.admin.tokens[0].role, Role::Auditor);
    assert_eq!(c.admin.tokens[0].token.expose(), TOKEN);
    assert!(!format!("{c:?}").contains(TOKEN));

    let entry = |name: &str, token: &str, role: &str| {
        format!("[[admin.tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nrole = \"{role}\"\n")
    };
    let cases = [
        (
            entry("siem", "short", "auditor"),
            "admin.tokens[0].token",
            "at least 16",
        ),
        (
            entry(" ", TOKEN, "auditor"),
            "admin.tokens[0].name",
            "empty",
        ),
        (
            entry("siem", "0123456789abcdef audit", "auditor"),
            "admin.tokens[0].token",
            "only letters",
        ),
        (
            format!(
                "{}{}",
                entry("a", TOKEN, "auditor"),
                entry("a", "another-token-0123456", "auditor")
            ),
            "admin.tokens[1].name",
            "same name",
        ),
        (
            format!(
                "{}{}",
                entry("a", TOKEN, "auditor"),
                entry("b", TOKEN, "auditor")
            ),
            "admin.tokens[1].token",
            "same value",
        ),
        (entry("siem", TOKEN, "superuser"), "role", "unknown variant"),
        (
            format!("{}colour = \"red\"\n", entry("siem", TOKEN, "auditor")),
            "colour",
            "unknown field",
        ),
    ];
    for (tokens, key, what) in cases {
        let f = write(&format!("{MINIMAL}{tokens}"));
        let e = load_isolated(Some(f.path()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(what), "{tokens}\n=> {e}");
        assert!(!e.contains(TOKEN), "no token in errors: {e}");
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
fn api_tokens_can_come_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "TAGWARDEN_ADMIN__TOKENS",
            format!("[{{name=\"ci\",token=\"{TOKEN}\",role=\"auditor\"}}]"),
        );
        let f = write(MINIMAL);
        let c = Config::load(Some(f.path()), &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.admin.tokens[0].name, "ci");
        assert_eq!(c.admin.tokens[0].token.expose(), TOKEN);
        Ok(())
    });
}

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tagwarden.toml");
    load_isolated(Some(&path), &Overrides::default()).unwrap();
}

#[test]
fn the_unchecked_witness_url_says_what_replaced_it() {
    let f = write(&format!(
        "{MINIMAL}[tlog]\nwitness_url = \"https://witness.example/add-checkpoint\"\n"
    ));
    let e = load_isolated(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("tlog.witness_url: was replaced by [[tlog.witnesses.witness]]"),
        "{e}"
    );
}

use super::*;

/// A rule's optional fields at their defaults.
fn rule() -> RuleConfig {
    RuleConfig {
        name: String::new(),
        tag: String::new(),
        repository: None,
        class: TagClass::Moving,
        mode: Mode::Enforce,
        advance: None,
        allow_prerelease: false,
        follow: false,
    }
}

fn class(p: &Policy, repo: &str, tag: &str) -> TagClass {
    p.classify(repo, tag).class
}

#[test]
fn defaults_classify_release_moving_and_signature_tags() {
    let p = Policy::defaults();
    for t in [
        "1.4.0",
        "v1.4.0",
        "1.4.0-rc.1",
        "v2.4.1-rc.1",
        "0.0.1",
        "git-9f3c2a1",
        "sha-9f3c2a1",
        "9f3c2a1",
        &"a".repeat(40),
    ] {
        assert_eq!(class(&p, "web", t), TagClass::Immutable, "{t}");
    }
    for t in [
        "latest",
        "1.4",
        "1",
        "main",
        "staging",
        "v1",
        "1.4.0.1",
        "01.4.0",
        "git-9f3c",
        "9F3C2A1",
        &"a".repeat(41),
    ] {
        assert_eq!(class(&p, "web", t), TagClass::Moving, "{t}");
    }
    let sha = "0123456789abcdef".repeat(4);
    for t in [
        format!("sha256-{sha}"),
        format!("sha256-{sha}.sig"),
        format!("sha256-{sha}.att"),
        format!("sha256-{sha}.sbom"),
    ] {
        assert_eq!(class(&p, "web", &t), TagClass::Exempt, "{t}");
    }
}

#[test]
fn team_rules_come_first_and_can_be_scoped() {
    let config = PolicyConfig {
        include_defaults: true,
        rules: vec![
            RuleConfig {
                name: "sandbox".into(),
                tag: ".*".into(),
                repository: Some("sandbox/.*".into()),
                class: TagClass::Moving,
                mode: Mode::Enforce,
                ..rule()
            },
            RuleConfig {
                name: "nightly".into(),
                tag: "nightly-.*".into(),
                repository: None,
                class: TagClass::Immutable,
                mode: Mode::Warn,
                ..rule()
            },
        ],
    };
    let p = Policy::from_config(&config).unwrap();
    assert_eq!(class(&p, "sandbox/x", "1.4.0"), TagClass::Moving);
    assert_eq!(
        class(&p, "sandboxes/x", "1.4.0"),
        TagClass::Immutable,
        "repository patterns are full-match"
    );
    let d = p.classify("web", "nightly-2026");
    assert_eq!(
        (d.class, d.mode, d.rule.as_str()),
        (TagClass::Immutable, Mode::Warn, "nightly")
    );
    assert_eq!(p.classify("web", "latest").rule, FALLBACK_RULE);
}

#[test]
fn patterns_are_full_match() {
    let config = PolicyConfig {
        include_defaults: false,
        rules: vec![RuleConfig {
            name: "r".into(),
            tag: "1|2".into(),
            repository: None,
            class: TagClass::Immutable,
            mode: Mode::Enforce,
            ..rule()
        }],
    };
    let p = Policy::from_config(&config).unwrap();
    assert_eq!(class(&p, "x", "1"), TagClass::Immutable);
    assert_eq!(
        class(&p, "x", "12"),
        TagClass::Moving,
        "alternation must not escape the anchors"
    );
    assert_eq!(
        class(&p, "x", "1.4.0"),
        TagClass::Moving,
        "defaults were switched off"
    );
}

#[test]
fn bad_patterns_name_the_key() {
    let config = PolicyConfig {
        include_defaults: true,
        rules: vec![
            RuleConfig {
                name: "ok".into(),
                tag: "x".into(),
                repository: None,
                class: TagClass::Moving,
                mode: Mode::Enforce,
                ..rule()
            },
            RuleConfig {
                name: "broken".into(),
                tag: "x".into(),
                repository: Some("(".into()),
                class: TagClass::Moving,
                mode: Mode::Enforce,
                ..rule()
            },
        ],
    };
    let e = Policy::from_config(&config).unwrap_err();
    assert_eq!(e.key(), "policy.rules[1].repository");
    assert!(e.to_string().contains("broken"));
}

#[test]
fn explain_names_rule_and_effect() {
    let text = Policy::defaults().explain("driftwood/web", "1.4.0");
    assert!(
        text.contains("semver-releases") && text.contains("immutable") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn advance_is_for_moving_tags_and_reaches_the_decision() {
    let advancing = RuleConfig {
        name: "series".into(),
        tag: "[0-9]+\\.[0-9]+".into(),
        advance: Some(AdvanceKind::Semver),
        follow: true,
        ..rule()
    };
    let p = Policy::from_config(&PolicyConfig {
        include_defaults: true,
        rules: vec![advancing.clone()],
    })
    .unwrap();
    let d = p.classify("web", "1.4");
    assert_eq!(
        d.advance,
        Some(Advance {
            allow_prerelease: false,
            follow: true
        })
    );
    assert_eq!(p.classify("web", "1.4.0").advance, None);
    assert!(
        p.explain("web", "1.4").contains("releases 1.4.x"),
        "{}",
        p.explain("web", "1.4")
    );

    let immutable = RuleConfig {
        class: TagClass::Immutable,
        ..advancing.clone()
    };
    let e = Policy::from_config(&PolicyConfig {
        include_defaults: true,
        rules: vec![immutable],
    })
    .unwrap_err();
    assert_eq!(e.key(), "policy.rules[0].advance");
    let follow_alone = RuleConfig {
        advance: None,
        ..advancing
    };
    assert!(Policy::from_config(&PolicyConfig {
        include_defaults: true,
        rules: vec![follow_alone]
    })
    .is_err());
}

#[test]
fn the_policy_hash_names_the_effective_rules() {
    let defaults = Policy::defaults();
    assert_eq!(defaults.hash().len(), 64);
    assert_eq!(
        defaults.hash(),
        Policy::defaults().hash(),
        "same rules, same hash"
    );

    let mut config = PolicyConfig::default();
    config.rules.push(RuleConfig {
        name: "env".into(),
        tag: "production".into(),
        class: TagClass::Immutable,
        ..rule()
    });
    let with_rule = Policy::from_config(&config).unwrap();
    assert_ne!(with_rule.hash(), defaults.hash());

    config.rules[0].mode = Mode::Warn;
    let warned = Policy::from_config(&config).unwrap();
    assert_ne!(
        warned.hash(),
        with_rule.hash(),
        "a mode change is a policy change"
    );

    config.include_defaults = false;
    let alone = Policy::from_config(&config).unwrap();
    assert_ne!(
        alone.hash(),
        warned.hash(),
        "the built-in rules are part of it"
    );
    let canonical: Vec<RuleConfig> = serde_json::from_slice(&alone.canonical()).unwrap();
    assert_eq!(canonical.len(), 1);
    assert_eq!(canonical[0].name, "env");
}

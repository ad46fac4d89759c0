//! Tag policy: which tags are immutable, which may move, and which are exempt.
//!
//! Rules are evaluated in order and the first whose patterns fully match decides. A
//! team's own rules come first; the built-in defaults (see [`defaults`]) follow unless
//! `policy.include_defaults = false`. A tag no rule matches is a moving tag.

pub mod advance;
mod defaults;
pub mod live;
pub mod promote;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::PolicyConfig;

/// A tag's class, as its rule sets it.
// Stored as text (`tag_bindings.class`, `tag_events.class`), read back typed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum TagClass {
    /// Bound once to a digest, never re-pointed, never deleted.
    Immutable,
    /// May be re-pointed; every move is recorded.
    Moving,
    /// Rewritten by tooling (signatures, referrers fallback); recorded, never refused.
    Exempt,
    /// May be rewritten only by a manifest that still lists every descriptor the
    /// previous one listed (cosign appends signature layers, the referrers fallback
    /// index appends manifests); not deleted while its subject is a live release.
    #[serde(rename = "append_only")]
    #[sqlx(rename = "append_only")]
    AppendOnly,
}

impl TagClass {
    pub fn as_str(self) -> &'static str {
        match self {
            TagClass::Immutable => "immutable",
            TagClass::Moving => "moving",
            TagClass::Exempt => "exempt",
            TagClass::AppendOnly => "append_only",
        }
    }
}

/// Whether a rule refuses violations or only reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Allow the write, record it as a would-be violation and answer with a
    /// `Warning: 299` header: for rolling a rule out safely.
    Warn,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
        }
    }
}

/// One rule as written in the configuration (`[[policy.rules]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in refusals and in the ledger.
    pub name: String,
    /// Regex the whole tag must match.
    pub tag: String,
    /// Regex the whole repository name must match; every repository when absent.
    #[serde(default)]
    pub repository: Option<String>,
    pub class: TagClass,
    #[serde(default)]
    pub mode: Mode,
    /// For moving tags: `"semver"` makes the tag only move forward over immutable
    /// releases of its series (see [`advance`]).
    #[serde(default)]
    pub advance: Option<AdvanceKind>,
    /// With `advance`: let prereleases (`1.4.0-rc.1`) advance the tag too.
    #[serde(default)]
    pub allow_prerelease: bool,
    /// With `advance`: when a release is pushed, tagwarden moves this tag to it itself.
    #[serde(default)]
    pub follow: bool,
    /// For moving tags: the tags a digest must come from (see [`promote`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promote_from: Vec<String>,
    /// With `promote_from`: how long after a source moved on its old digest may still
    /// be promoted; only what a source names now when absent.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub promote_window: Option<std::time::Duration>,
    /// With `promote_from`: how long a source must have named the digest.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub soak: Option<std::time::Duration>,
    /// For moving tags: the digest must be bound to a live immutable release tag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_release: bool,
}

impl RuleConfig {
    /// A rule with every optional key at its default.
    pub fn new(name: &str, tag: &str, class: TagClass) -> Self {
        RuleConfig {
            name: name.into(),
            tag: tag.into(),
            repository: None,
            class,
            mode: Mode::Enforce,
            advance: None,
            allow_prerelease: false,
            follow: false,
            promote_from: Vec::new(),
            promote_window: None,
            soak: None,
            require_release: false,
        }
    }
}

/// How an advancing tag orders what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvanceKind {
    Semver,
}

/// The advance attributes of the rule that decided a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub allow_prerelease: bool,
    pub follow: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    tag: Regex,
    repository: Option<Regex>,
    class: TagClass,
    mode: Mode,
    advance: Option<Advance>,
    promotion: Option<promote::Promotion>,
    tag_source: String,
    repository_source: Option<String>,
}

/// The outcome of classifying one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: TagClass,
    pub mode: Mode,
    /// Set when the tag may only move forward over releases.
    pub advance: Option<Advance>,
    /// Set when the tag may only be promoted through gates.
    pub promotion: Option<promote::Promotion>,
    /// The name of the rule that matched, or [`FALLBACK_RULE`].
    pub rule: String,
}

/// The rule name recorded when no rule matched and the tag is treated as moving.
pub const FALLBACK_RULE: &str = "unmatched-tags-move";

/// A compiled, ordered rule set.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// The effective rules (the team's, then the built-ins), as recorded for audits.
    effective: Vec<RuleConfig>,
    /// Hex sha256 of [`Policy::canonical`]: names this exact policy in the ledger.
    hash: String,
}

/// Bumped if the canonical encoding of a policy ever changes.
const POLICY_DOMAIN: &[u8] = b"tagwarden-policy-v1\n";

/// A rule that cannot be used; names the rule and the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rule {index} ({name:?}): {message}")]
pub struct PolicyError {
    pub index: usize,
    pub name: String,
    pub field: &'static str,
    pub message: String,
}

impl PolicyError {
    /// The configuration key at fault, e.g. `policy.rules[2].tag`.
    pub fn key(&self) -> String {
        format!("policy.rules[{}].{}", self.index, self.field)
    }
}

impl Policy {
    pub fn from_config(config: &PolicyConfig) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        let mut effective = Vec::new();
        for (index, rc) in config.rules.iter().enumerate() {
            rules.push(compile(index, rc)?);
            effective.push(rc.clone());
        }
        if config.include_defaults {
            for rc in defaults::rules() {
                rules.push(compile(usize::MAX, &rc).expect("built-in rules compile"));
                effective.push(rc);
            }
        }
        let mut hasher = Sha256::new();
        hasher.update(POLICY_DOMAIN);
        hasher.update(canonical_rules(&effective));
        let hash = hex::encode(hasher.finalize());
        Ok(Policy {
            rules,
            effective,
            hash,
        })
    }

    /// Hex sha256 of the effective rules in their canonical encoding. Every ledger event
    /// records it, so an audit can tell which policy decided a write; the built-in rules
    /// are part of it, so an upgrade that changes them changes the hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The effective rules as canonical JSON (what [`Policy::hash`] covers).
    pub fn canonical(&self) -> Vec<u8> {
        canonical_rules(&self.effective)
    }

    /// The rules in force, built-in ones included, in evaluation order: a policy that
    /// [`Policy::from_config`] rebuilds exactly (same hash) with `include_defaults = false`.
    pub fn effective_rules(&self) -> &[RuleConfig] {
        &self.effective
    }

    /// The built-in rules alone.
    pub fn defaults() -> Policy {
        Policy::from_config(&PolicyConfig::default()).expect("built-in rules compile")
    }

    pub fn classify(&self, repository: &str, tag: &str) -> Decision {
        self.matching_rule(repository, tag)
            .map(|r| Decision {
                class: r.class,
                mode: r.mode,
                advance: r.advance,
                promotion: r.promotion.clone(),
                rule: r.name.clone(),
            })
            .unwrap_or_else(|| Decision {
                class: TagClass::Moving,
                mode: Mode::Enforce,
                advance: None,
                promotion: None,
                rule: FALLBACK_RULE.into(),
            })
    }

    fn matching_rule(&self, repository: &str, tag: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.tag.is_match(tag)
                && r.repository
                    .as_ref()
                    .is_none_or(|re| re.is_match(repository))
        })
    }

    /// A human explanation of how `repository:tag` is treated, for `tagwarden explain`.
    pub fn explain(&self, repository: &str, tag: &str) -> String {
        let d = self.classify(repository, tag);
        let mut out = format!("{repository}:{tag}\n");
        match self.matching_rule(repository, tag) {
            Some(r) => {
                out += &format!("  rule:    {}\n", r.name);
                out += &format!("  tag:     /{}/\n", r.tag_source);
                if let Some(repo) = &r.repository_source {
                    out += &format!("  repo:    /{repo}/\n");
                }
            }
            None => out += &format!("  rule:    {FALLBACK_RULE} (no rule matched)\n"),
        }
        out += &format!("  class:   {}\n", d.class.as_str());
        out += &format!("  mode:    {}\n", d.mode.as_str());
        if let Some(a) = d.advance {
            let series = advance::Series::of(tag);
            out += &format!(
                "  advance: semver: may only name {}{}, never an older one than it names now{}\n",
                series.describe(),
                if a.allow_prerelease {
                    " (prereleases included)"
                } else {
                    " (stable releases only)"
                },
                if a.follow {
                    "; tagwarden moves it to each new release itself"
                } else {
                    ""
                },
            );
        }
        if let Some(p) = &d.promotion {
            out += &format!("  gates:   {}\n", p.describe());
        }
        let effect = match (d.class, d.mode) {
            (TagClass::Immutable, Mode::Enforce) => "the first push binds the tag to its digest; identical re-pushes are accepted; pushes of other bytes and deletes are refused",
            (TagClass::Immutable, Mode::Warn) => "the first push binds the tag; pushes of other bytes and deletes are allowed but recorded as violations and answered with a Warning header",
            (TagClass::Moving, _) if d.promotion.is_some() => "a push may move the tag only to a digest its gates accept; every move, refusal and delete is recorded",
            (TagClass::Moving, _) => "any push may move the tag; every move and delete is recorded with the previous digest",
            (TagClass::Exempt, _) => "tooling may rewrite it freely (signatures, referrers); every write is recorded",
            (TagClass::AppendOnly, Mode::Enforce) => "a new manifest must still list every layer (or, for an index, every manifest) the previous one listed; deleting it is refused while its subject is a live release",
            (TagClass::AppendOnly, Mode::Warn) => "a manifest that drops a descriptor is allowed but recorded as a violation and answered with a Warning header; deletes are allowed and recorded",
        };
        out += &format!("  effect:  {effect}\n");
        out += &format!("  policy:  {}\n", self.hash);
        out
    }
}

fn compile(index: usize, rc: &RuleConfig) -> Result<Rule, PolicyError> {
    let error = |field: &'static str, message: String| PolicyError {
        index,
        name: rc.name.clone(),
        field,
        message,
    };
    let full = |field: &'static str, pattern: &str| {
        // Anchor so that a rule matches the whole string, never a substring.
        Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            error(
                field,
                format!("{field} pattern {pattern:?} is not a valid regex: {e}"),
            )
        })
    };
    let advance = match rc.advance {
        Some(AdvanceKind::Semver) if rc.class != TagClass::Moving => {
            return Err(error(
                "advance",
                "advance applies to moving tags only (class = \"moving\")".into(),
            ))
        }
        Some(AdvanceKind::Semver) => Some(Advance {
            allow_prerelease: rc.allow_prerelease,
            follow: rc.follow,
        }),
        None if rc.follow || rc.allow_prerelease => {
            return Err(error(
                "advance",
                "follow and allow_prerelease need advance = \"semver\"".into(),
            ))
        }
        None => None,
    };
    let promotion = promotion(rc, &error)?;
    Ok(Rule {
        name: rc.name.clone(),
        tag: full("tag", &rc.tag)?,
        repository: rc
            .repository
            .as_deref()
            .map(|p| full("repository", p))
            .transpose()?,
        class: rc.class,
        mode: rc.mode,
        advance,
        promotion,
        tag_source: rc.tag.clone(),
        repository_source: rc.repository.clone(),
    })
}

/// The promotion gates of a rule, checked: only moving tags have them, and window and
/// soak qualify `promote_from`.
fn promotion(
    rc: &RuleConfig,
    error: &dyn Fn(&'static str, String) -> PolicyError,
) -> Result<Option<promote::Promotion>, PolicyError> {
    let gated = !rc.promote_from.is_empty() || rc.require_release;
    if !gated {
        if rc.promote_window.is_some() || rc.soak.is_some() {
            return Err(error(
                "promote_from",
                "promote_window and soak need promote_from".into(),
            ));
        }
        return Ok(None);
    }
    if rc.class != TagClass::Moving {
        return Err(error(
            "promote_from",
            "promotion gates apply to moving tags only (class = \"moving\")".into(),
        ));
    }
    if rc.promote_from.len() > promote::MAX_SOURCES {
        return Err(error(
            "promote_from",
            format!("at most {} source tags", promote::MAX_SOURCES),
        ));
    }
    for source in &rc.promote_from {
        crate::oci::Tag::parse(source).map_err(|e| {
            error(
                "promote_from",
                format!("{source:?} is not a valid tag: {e}"),
            )
        })?;
    }
    Ok(Some(promote::Promotion {
        from: rc.promote_from.clone(),
        window: rc.promote_window,
        soak: rc.soak,
        require_release: rc.require_release,
    }))
}

/// serde_json writes struct fields in declaration order and has no whitespace, so the
/// same rules always give the same bytes.
fn canonical_rules(rules: &[RuleConfig]) -> Vec<u8> {
    serde_json::to_vec(rules).expect("rules serialise")
}

#[cfg(test)]
mod tests;

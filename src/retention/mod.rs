//! Retention: retire old releases by rule, so that immutable tags and clean-up can run
//! together. A release is retired only when its rule lets it go and nothing keeps it: a
//! moving or other tag naming its manifest, its age, its rank in its minor series, a
//! recent pull.
//!
//! [`select`] decides with no I/O; [`Retention`] reads the ledger and the pull log,
//! and retires through [`crate::enforce::Guard::retire`], like an operator would.
//! `POST /api/v1/retention` runs it (dry run or not); `retention.interval` runs it on
//! a schedule.

mod background;
pub mod select;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::enforce::Guard;
use crate::ledger::{Ledger, LedgerError};
use crate::oci::{ErrorCode, Name, OciError, Tag};

pub use background::spawn;
pub use select::Verdict;

/// `[retention]`: the rules, and the schedule (off unless `interval` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Time between scheduled passes that retire what the rules select; none when
    /// absent (run `tagwarden retention` instead).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The first rule whose `repository` matches decides for a repository; releases of
    /// repositories no rule matches are never retired.
    pub rules: Vec<RetentionRule>,
}

/// One `[[retention.rules]]`. Every `keep_*` that is set keeps a release on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Recorded in each retirement's reason.
    pub name: String,
    /// Regex the whole repository name must match.
    pub repository: String,
    /// Keep the newest N releases of each minor series (`1.4.x`), by version.
    #[serde(default)]
    pub keep_newest_per_minor: Option<usize>,
    /// Keep every release bound more recently than this, e.g. "180d".
    #[serde(default, with = "humantime_serde")]
    pub keep_younger_than: Option<Duration>,
    /// Keep every release pulled more recently than this (needs the pull log).
    #[serde(default, with = "humantime_serde")]
    pub keep_pulled_within: Option<Duration>,
}

impl RetentionConfig {
    /// Rules that can be compiled and that keep something; a pull window needs the log.
    pub fn validate(&self, pulls_enabled: bool) -> Result<(), (String, String)> {
        // A pass reads every bound release of the matching repositories; more often than
        // once a second would only load the ledger, as the rules select the same releases.
        if self.interval.is_some_and(|i| i < Duration::from_secs(1)) {
            return Err(("retention.interval".into(), "must be at least 1s".into()));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("retention.rules[{i}].{k}");
            compile(&r.repository).map_err(|e| (key("repository"), e.to_string()))?;
            if r.keep_newest_per_minor.is_none() && r.keep_younger_than.is_none() {
                return Err((
                    key("keep_newest_per_minor"),
                    "a rule needs keep_newest_per_minor or keep_younger_than: without either it would retire every release".into(),
                ));
            }
            if r.keep_newest_per_minor == Some(0) {
                return Err((key("keep_newest_per_minor"), "must be at least 1".into()));
            }
            if r.keep_pulled_within.is_some() && !pulls_enabled {
                return Err((
                    key("keep_pulled_within"),
                    "needs pulls.enabled = true: without the pull log every release looks unpulled"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// One release a retention rule matches.
// Its verdict's fields stand beside the others, where a serde flatten would put them,
// so that the document describes one plain object (a flatten becomes an `allOf`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = PlannedRelease)]
pub struct Planned {
    pub repository: String,
    pub rule: String,
    pub tag: String,
    pub digest: String,
    /// Whether the rule selects it.
    pub retire: bool,
    /// Why it goes, or what keeps it.
    pub why: String,
    /// Not a dry run: "retired", or {"failed": message}.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl Planned {
    fn new(repository: &str, rule: &str, verdict: Verdict) -> Self {
        Planned {
            repository: repository.to_owned(),
            rule: rule.to_owned(),
            tag: verdict.tag,
            digest: verdict.digest,
            retire: verdict.retire,
            why: verdict.why,
            outcome: None,
        }
    }
}

/// Not a dry run: whether a selected release was retired, or why not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Retired,
    Failed(String),
}

/// The most releases one pass retires; the rest wait for the next.
pub const MAX_RETIRED_PER_PASS: usize = 500;

/// Plans and carries out retention.
#[derive(Clone)]
pub struct Retention {
    ledger: Ledger,
    guard: Guard,
    rules: Vec<(RetentionRule, Regex)>,
}

impl Retention {
    pub fn new(config: &RetentionConfig, ledger: Ledger, guard: Guard) -> anyhow::Result<Self> {
        let rules = config
            .rules
            .iter()
            .map(|r| Ok((r.clone(), compile(&r.repository)?)))
            .collect::<Result<_, regex::Error>>()?;
        Ok(Retention {
            ledger,
            guard,
            rules,
        })
    }

    fn rule_for(&self, repository: &str) -> Option<&RetentionRule> {
        self.rules
            .iter()
            .find(|(_, re)| re.is_match(repository))
            .map(|(r, _)| r)
    }

    /// Every release of every repository a rule matches, with its verdict.
    pub async fn plan(&self, now: DateTime<Utc>) -> Result<Vec<Planned>, LedgerError> {
        let mut out = Vec::new();
        for repository in self.ledger.repositories_with_releases().await? {
            let Some(rule) = self.rule_for(&repository) else {
                continue;
            };
            let bindings = self.ledger.live_bindings(&repository).await?;
            let last_pulled: HashMap<String, DateTime<Utc>> = match rule.keep_pulled_within {
                Some(_) => {
                    let mut digests: Vec<String> =
                        bindings.iter().map(|b| b.digest.clone()).collect();
                    digests.sort();
                    digests.dedup();
                    self.ledger
                        .last_pulls(&repository, &digests)
                        .await?
                        .into_iter()
                        .collect()
                }
                None => HashMap::new(),
            };
            for verdict in select::select(rule, &bindings, &last_pulled, now) {
                out.push(Planned::new(&repository, &rule.name, verdict));
            }
        }
        Ok(out)
    }

    /// Plan, then retire what the plan selects (at most [`MAX_RETIRED_PER_PASS`]),
    /// each recorded with the rule and its why, as `who`.
    pub async fn apply(&self, now: DateTime<Utc>, who: &str) -> Result<Vec<Planned>, LedgerError> {
        let mut plan = self.plan(now).await?;
        let mut retired = 0;
        for p in plan.iter_mut().filter(|p| p.retire) {
            if retired >= MAX_RETIRED_PER_PASS {
                p.outcome = Some(Outcome::Failed(format!(
                    "left for the next pass: one pass retires at most {MAX_RETIRED_PER_PASS}"
                )));
                continue;
            }
            let reason = format!("retention rule {}: {}", p.rule, p.why);
            let outcome = match self.retire_one(&p.repository, &p.tag, &reason, who).await {
                Ok(()) => {
                    retired += 1;
                    Outcome::Retired
                }
                Err(e) => {
                    tracing::warn!(repository = %p.repository, tag = %p.tag, error = %e.message, "retention: not retired");
                    Outcome::Failed(e.message)
                }
            };
            p.outcome = Some(outcome);
        }
        Ok(plan)
    }

    async fn retire_one(
        &self,
        repository: &str,
        tag: &str,
        reason: &str,
        who: &str,
    ) -> Result<(), OciError> {
        let bad = |e: crate::oci::reference::ReferenceError| {
            OciError::new(
                http::StatusCode::BAD_REQUEST,
                ErrorCode::NameInvalid,
                e.to_string(),
            )
        };
        let name = Name::parse(repository).map_err(bad)?;
        let tag = Tag::parse(tag).map_err(bad)?;
        // The reason is bounded like an operator's.
        let reason: String = reason
            .chars()
            .take(crate::api::retire::MAX_REASON)
            .collect();
        self.guard
            .retire(&name, &tag, &reason, who)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_release_is_one_flat_object_with_its_verdict() {
        let verdict = Verdict {
            tag: "1.0.0".into(),
            digest: "sha256:ab".into(),
            retire: true,
            why: "older than 30d".into(),
        };
        let mut p = Planned::new("team/app", "old", verdict);
        let fields = serde_json::json!({
            "repository": "team/app",
            "rule": "old",
            "tag": "1.0.0",
            "digest": "sha256:ab",
            "retire": true,
            "why": "older than 30d",
        });
        assert_eq!(serde_json::to_value(&p).unwrap(), fields);
        p.outcome = Some(Outcome::Failed("registry down".into()));
        let mut failed = fields.clone();
        failed["outcome"] = serde_json::json!({"failed": "registry down"});
        assert_eq!(serde_json::to_value(&p).unwrap(), failed);
        let back: Planned = serde_json::from_value(failed).unwrap();
        assert_eq!(back.tag, "1.0.0");
        assert!(matches!(back.outcome, Some(Outcome::Failed(m)) if m == "registry down"));
    }
}

//! How the ledger is run over time: the policy, the transparency log, reconciliation
//! against the registry, and reloading.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::policy::RuleConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Evaluate the built-in rules (see `config/tagwarden.toml`) after the ones below.
    pub include_defaults: bool,
    /// Ordered rules; the first whose patterns match a tag decides its class.
    pub rules: Vec<RuleConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            include_defaults: true,
            rules: Vec::new(),
        }
    }
}

/// The transparency log (`crate::tlog`). `[log]` is the logging section, so the log of
/// events is `[tlog]`. Without a signing key the log is off: events are recorded as
/// always but not sequenced or signed (a startup warning says so).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlogConfig {
    /// The Ed25519 signer key written by `tagwarden log keygen` (mode 0600).
    pub signing_key_file: Option<PathBuf>,
    /// The checkpoint origin line; defaults to the key's name.
    pub origin: Option<String>,
    /// How often a new checkpoint is signed (when the tree grew).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Where the last signed checkpoint is kept, outside the database; required with a
    /// key.
    pub state_file: Option<PathBuf>,
    /// Serve `/log/checkpoint` and `/log/tile/...` without a token.
    pub public: bool,
    /// Replaced by `[[tlog.witnesses.witness]]`; kept only to say so at startup.
    #[serde(skip_serializing)]
    pub witness_url: Option<String>,
    /// Witnesses that cosign each checkpoint (`[tlog.witnesses]`).
    pub witnesses: crate::tlog::witness::WitnessesConfig,
    /// Events integrated per transaction.
    pub batch: u32,
}

impl Default for TlogConfig {
    fn default() -> Self {
        TlogConfig {
            signing_key_file: None,
            origin: None,
            checkpoint_interval: Duration::from_secs(1),
            state_file: None,
            public: false,
            witness_url: None,
            witnesses: Default::default(),
            batch: 1000,
        }
    }
}

impl TlogConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        if self.signing_key_file.is_some() && self.state_file.is_none() {
            return Err(invalid(
                "tlog.state_file",
                "is required with tlog.signing_key_file: it anchors the log outside the database",
            ));
        }
        if self.checkpoint_interval < Duration::from_millis(50)
            || self.checkpoint_interval > Duration::from_secs(3600)
        {
            return Err(invalid(
                "tlog.checkpoint_interval",
                "must be between 50ms and 1h",
            ));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(invalid("tlog.batch", "must be between 1 and 10000"));
        }
        if self.witness_url.is_some() {
            return Err(invalid(
                "tlog.witness_url",
                "was replaced by [[tlog.witnesses.witness]] with url and key: a witness's cosignatures are now checked against its key before they are kept",
            ));
        }
        self.witnesses
            .validate()
            .map_err(|(key, message)| invalid(&key, &message))?;
        Ok(())
    }
}

/// Reconciliation: finding what was written to the registry around tagwarden.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// The background pass. On by default: it only reads, paced and bounded, and drift
    /// nobody looks for is drift nobody finds.
    pub enabled: bool,
    /// Time between the end of one pass and the start of the next (the first pass
    /// starts one interval after startup).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Put immutable tags back on their bound digest (off by default: a write).
    pub repair: bool,
    /// Registry requests per second, for the whole pass.
    pub max_requests_per_second: u32,
    /// `n` of `_catalog?n=` and `tags/list?n=`.
    pub page_size: u32,
    /// Wall time for one pass; the next pass resumes after the last repository checked.
    #[serde(with = "humantime_serde")]
    pub time_budget: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            enabled: true,
            interval: Duration::from_secs(600),
            repair: false,
            max_requests_per_second: 20,
            page_size: 100,
            time_budget: Duration::from_secs(60),
        }
    }
}

impl ReconcileConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        if self.interval < Duration::from_secs(1) {
            return Err(invalid("reconcile.interval", "must be at least 1s"));
        }
        if !(1..=10_000).contains(&self.max_requests_per_second) {
            return Err(invalid(
                "reconcile.max_requests_per_second",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err(invalid(
                "reconcile.page_size",
                "must be between 1 and 10000",
            ));
        }
        if self.time_budget < Duration::from_secs(1) {
            return Err(invalid("reconcile.time_budget", "must be at least 1s"));
        }
        Ok(())
    }
}

/// Reloading the policy while running: always on `SIGHUP`; on a file change too when
/// `watch` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Also reload when the configuration file's contents change (polled). Off by
    /// default: an editor's half-written save would be rejected and logged as an error.
    pub watch: bool,
    /// How often the watch reads the file.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: false,
            watch_interval: Duration::from_secs(2),
        }
    }
}

impl ReloadConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.watch_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "reload.watch_interval".into(),
                message: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }
}

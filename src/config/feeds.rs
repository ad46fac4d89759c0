//! What tagwarden records and sends beside the ledger: the pull log and webhooks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::Secret;

/// The pull log: who pulled which manifest, and the digest served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullsConfig {
    pub enabled: bool,
    /// Records waiting to be written; past this, new ones are dropped (and counted)
    /// rather than slowing a pull.
    pub queue: usize,
    /// Records per INSERT.
    pub batch: usize,
    /// Connections of the writer's own pool, apart from the ledger's.
    pub max_connections: u32,
    /// Whole days of records kept; older day partitions are dropped.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for PullsConfig {
    fn default() -> Self {
        PullsConfig {
            enabled: true,
            queue: 10_000,
            batch: 500,
            max_connections: 2,
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl PullsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(invalid("pulls.queue", "must be between 1 and 1000000"));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(invalid("pulls.batch", "must be between 1 and 10000"));
        }
        if self.max_connections == 0 {
            return Err(invalid("pulls.max_connections", "must be at least 1"));
        }
        if self.retention < Duration::from_secs(86_400) {
            return Err(invalid(
                "pulls.retention",
                "must be at least 1d: records are dropped a whole day at a time",
            ));
        }
        Ok(())
    }
}

/// Webhooks that receive ledger events (see `crate::notify`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// CloudEvents `source`: names this tagwarden to receivers.
    pub source: String,
    /// Events read per query, per webhook.
    pub batch: u32,
    /// Largest request body; an event's `detail` is dropped (and flagged) to fit.
    pub max_body_bytes: usize,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            source: "/tagwarden".into(),
            batch: 100,
            max_body_bytes: 64 * 1024,
            webhooks: Vec::new(),
        }
    }
}

/// One `[[notify.webhooks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook's cursor, logs and metrics; defaults to the URL's host[:port].
    pub name: Option<String>,
    pub url: String,
    /// HMAC key for `Tagwarden-Signature`. Never logged.
    pub secret: Secret,
    /// Ledger actions to send.
    #[serde(default = "default_webhook_events")]
    pub events: Vec<String>,
    /// Where a webhook seen for the first time starts: `end` (new events only) or `start`.
    #[serde(default)]
    pub from: StartFrom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Start,
    #[default]
    End,
}

fn default_webhook_events() -> Vec<String> {
    ["refuse", "move", "delete", "warn"]
        .map(String::from)
        .to_vec()
}

impl WebhookConfig {
    /// The configured name, or the URL's host and port: paths and queries often carry
    /// the receiver's token, and the name goes into logs and metrics labels.
    pub fn name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) => match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                _ => String::new(),
            },
            Err(_) => String::new(),
        }
    }
}

impl NotifyConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            key,
            message: message.into(),
        };
        if !(1..=1000).contains(&self.batch) {
            return Err(invalid("notify.batch".into(), "must be between 1 and 1000"));
        }
        if !(1024..=1024 * 1024).contains(&self.max_body_bytes) {
            return Err(invalid(
                "notify.max_body_bytes".into(),
                "must be between 1024 and 1048576",
            ));
        }
        if self.source.is_empty() {
            return Err(invalid("notify.source".into(), "must not be empty"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = |field: &str| format!("notify.webhooks[{i}].{field}");
            let url = reqwest::Url::parse(&w.url)
                .map_err(|e| invalid(key("url"), &format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(key("url"), "must be an http:// or https:// URL"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(invalid(
                    key("url"),
                    "must not carry credentials; receivers check the signature",
                ));
            }
            if w.secret.expose().len() < 16 {
                return Err(invalid(key("secret"), "must be at least 16 characters"));
            }
            if w.events.is_empty() {
                return Err(invalid(key("events"), "must name at least one action"));
            }
            if let Some(bad) = w
                .events
                .iter()
                .find(|e| crate::ledger::Action::parse(e).is_none())
            {
                let known: Vec<&str> = crate::ledger::Action::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect();
                return Err(invalid(
                    key("events"),
                    &format!("unknown action {bad:?}; known: {}", known.join(", ")),
                ));
            }
            let name = w.name();
            if name.is_empty() || name.len() > 200 {
                return Err(invalid(key("name"), "must be 1 to 200 characters"));
            }
            if !names.insert(name) {
                return Err(invalid(
                    key("name"),
                    "names another webhook already; give each a distinct `name`",
                ));
            }
        }
        Ok(())
    }
}

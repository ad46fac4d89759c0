//! Reloading the policy without a restart: on `SIGHUP`, and on a change of the
//! configuration file when `reload.watch` is set.
//!
//! The whole file is loaded and validated again, exactly as at startup. Only the policy
//! (`[policy]`) takes effect: a valid new policy is put in force for the requests that
//! start after it; an invalid file is rejected, logged, counted, and the policy in force
//! stays. Every other setting (listeners, upstream, database, limits, tokens…) is read
//! once at startup; a reload that changes one logs a warning naming it. Nothing is
//! closed or restarted, so no connection is dropped.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::config::{Config, Overrides};
use crate::policy::live::LivePolicy;
use crate::policy::Policy;
use crate::telemetry::Metrics;

/// Where the configuration came from, to read it again the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        Config::load(self.file.as_deref(), &self.overrides)
    }
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new policy is in force.
    Applied { previous: String, hash: String },
    /// The file's policy is the one already in force.
    Unchanged { hash: String },
    /// The file could not be loaded or is invalid; the policy in force stays.
    Rejected { error: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// Puts the configuration file's policy in force on request.
pub struct Reloader {
    source: ConfigSource,
    live: LivePolicy,
    /// The configuration the process started with: what a reload cannot change.
    running: Config,
    metrics: Metrics,
    history: Option<crate::ledger::Ledger>,
}

impl Reloader {
    pub fn new(
        source: ConfigSource,
        live: LivePolicy,
        running: Config,
        metrics: Metrics,
    ) -> Reloader {
        metrics.policy_loaded(None, live.current().hash());
        Reloader {
            source,
            live,
            running,
            metrics,
            history: None,
        }
    }

    /// Record each policy put in force in the ledger's policy history.
    pub fn with_history(mut self, ledger: crate::ledger::Ledger) -> Reloader {
        self.history = Some(ledger);
        self
    }

    /// The policy in force at startup, recorded in the history (best effort: the
    /// database may still be coming up; the next load records it again).
    pub async fn record_current(&self) {
        self.remember(&self.live.current()).await;
    }

    /// Read the configuration again and put its policy in force if it is valid.
    pub async fn reload(&self, trigger: &'static str) -> Outcome {
        let outcome = match self.source.load() {
            Err(e) => Outcome::Rejected {
                error: e.to_string(),
            },
            Ok(config) => self.apply(&config, trigger).await,
        };
        self.metrics.policy_reload(outcome.label());
        match &outcome {
            Outcome::Rejected { error } => tracing::error!(
                trigger,
                error = %error,
                hash = self.live.current().hash(),
                "configuration reload rejected; the policy in force stays"
            ),
            Outcome::Unchanged { hash } => {
                tracing::info!(trigger, hash = %hash, "configuration reloaded; the policy is unchanged")
            }
            Outcome::Applied { previous, hash } => tracing::info!(
                trigger,
                previous = %previous,
                hash = %hash,
                "configuration reloaded; the new policy decides the requests that start from now"
            ),
        }
        outcome
    }

    async fn apply(&self, config: &Config, trigger: &'static str) -> Outcome {
        let needs_restart = restart_needed(&self.running, config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                trigger,
                settings = %needs_restart.join(", "),
                "configuration reload: these settings changed but take effect only after a restart"
            );
        }
        let policy = match Policy::from_config(&config.policy) {
            Ok(p) => p,
            // `Config::load` validated it; kept for the day it stops doing so.
            Err(e) => {
                return Outcome::Rejected {
                    error: format!("{}: {e}", e.key()),
                }
            }
        };
        let hash = policy.hash().to_owned();
        let current = self.live.current();
        if current.hash() == hash {
            return Outcome::Unchanged { hash };
        }
        let previous = self.live.replace(policy);
        self.metrics.policy_loaded(Some(previous.hash()), &hash);
        self.remember(&self.live.current()).await;
        Outcome::Applied {
            previous: previous.hash().to_owned(),
            hash,
        }
    }

    async fn remember(&self, policy: &Policy) {
        let Some(ledger) = &self.history else { return };
        if let Err(e) = ledger.remember_policy(policy).await {
            tracing::warn!(error = %crate::oci::error::chain(&e), hash = policy.hash(), "could not record the policy in the ledger's policy history");
        }
    }
}

/// The settings outside `[policy]` that differ, as `section.key`: values are never
/// named (some are secrets).
pub fn restart_needed(running: &Config, loaded: &Config) -> Vec<String> {
    let flat = |c: &Config| -> Vec<(String, serde_json::Value)> {
        let serde_json::Value::Object(sections) = serde_json::to_value(c).unwrap_or_default()
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (section, value) in sections.into_iter().filter(|(s, _)| s != "policy") {
            match value {
                serde_json::Value::Object(keys) => {
                    out.extend(keys.into_iter().map(|(k, v)| (format!("{section}.{k}"), v)))
                }
                other => out.push((section, other)),
            }
        }
        out
    };
    let before = flat(running);
    let after = flat(loaded);
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.iter().find(|(bk, _)| bk == k).map(|(_, bv)| bv) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(
        before
            .iter()
            .filter(|(k, _)| !after.iter().any(|(ak, _)| ak == k))
            .map(|(k, _)| k.clone()),
    );
    changed.sort();
    changed.dedup();
    changed
}

/// Reload on every `SIGHUP`, and on file changes when `watch` is given, until the
/// process ends. The signal handler is installed before this returns, so a `SIGHUP`
/// sent once tagwarden serves never takes the default action (termination).
pub fn start(
    reloader: Reloader,
    watch: Option<Duration>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    let watched = watch.and(reloader.source.file.clone());
    Ok(tokio::spawn(async move {
        let mut seen = match &watched {
            Some(path) => fingerprint(path).await,
            None => None,
        };
        let mut tick = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        reloader.record_current().await;
        loop {
            tokio::select! {
                got = hangup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    reloader.reload("sighup").await;
                    if let Some(path) = &watched {
                        seen = fingerprint(path).await;
                    }
                }
                _ = tick.tick(), if watched.is_some() => {
                    let Some(path) = &watched else { continue };
                    let now = fingerprint(path).await;
                    if now.is_some() && now != seen {
                        seen = now;
                        reloader.reload("file-change").await;
                    }
                }
            }
        }
    }))
}

/// The sha256 of the file's bytes: a change of contents, whatever the mtime says.
/// `None` while the file cannot be read (an editor's rename in progress).
async fn fingerprint(path: &std::path::Path) -> Option<[u8; 32]> {
    const MAX_BYTES: u64 = 16 * 1024 * 1024;
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.len() > MAX_BYTES {
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(Sha256::digest(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn config(text: &str) -> Config {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", text)?;
            out = Some(Config::load(Some("t.toml".as_ref()), &Overrides::default()));
            Ok(())
        });
        out.expect("jail ran").expect("valid config")
    }

    const BASE: &str =
        "[upstream]\nurl = \"http://r:5000\"\n[database]\nurl = \"postgres://x/y\"\n";

    #[test]
    fn only_settings_outside_the_policy_count_as_needing_a_restart() {
        let running = config(BASE);
        let policy_only = config(&format!(
            "{BASE}[[policy.rules]]\nname = \"all\"\ntag = \".*\"\nclass = \"immutable\"\n"
        ));
        assert!(restart_needed(&running, &policy_only).is_empty());
        let moved = config(
            "[upstream]\nurl = \"http://other:5000\"\n[database]\nurl = \"postgres://x/y\"\nmax_connections = 3\n",
        );
        assert_eq!(
            restart_needed(&running, &moved),
            ["database.max_connections", "upstream.url"]
        );
    }
}

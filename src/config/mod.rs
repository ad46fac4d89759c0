//! Configuration: a TOML file, overridden by `TAGWARDEN_*` environment variables
//! (`TAGWARDEN_UPSTREAM__URL` sets `upstream.url`), overridden by command-line flags.
//!
//! Every key has a default except `upstream.url` and `database.url`. Unknown keys are
//! errors, so a typo cannot silently leave a safety setting at its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod backends;
mod feeds;
mod operations;
mod server;

pub use backends::{DatabaseConfig, Secret, UpstreamConfig};
pub use feeds::{NotifyConfig, PullsConfig, StartFrom, WebhookConfig};
pub use operations::{PolicyConfig, ReconcileConfig, ReloadConfig, TlogConfig};
pub use server::{
    AdminConfig, ApiToken, EnforceConfig, LimitsConfig, LogConfig, LogFormat, Role, ServerConfig,
    MIN_TOKEN_LENGTH,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub enforce: EnforceConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub pulls: PullsConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    #[serde(default)]
    pub tlog: TlogConfig,
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
}

mod defaults {
    use std::time::Duration;
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(120)
    }
    pub fn pool_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub fn pool_max_idle_per_host() -> usize {
        64
    }
    pub fn max_connections() -> u32 {
        16
    }
    pub fn acquire_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn startup_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn manifest_timeout() -> Duration {
        Duration::from_secs(15)
    }
    pub fn lock_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn statement_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none", rename = "server.listen")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "upstream.url")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "database.url")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "admin.listen")]
    pub admin_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "log.format")]
    pub log_format: Option<LogFormat>,
}

/// A configuration error, phrased for the operator: it names the key and the source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Load from an optional file, the environment and flags, then validate.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        if let Some(path) = file {
            // Read it ourselves: figment treats a missing file as empty.
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            fig = fig.merge(Toml::string(&text));
        }
        // Only `SECTION__KEY` variables: the single-word ones (`TAGWARDEN_LISTEN`...) are
        // the command-line flags' own and arrive through `overrides`.
        fig = fig.merge(
            Env::prefixed("TAGWARDEN_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        for (key, value) in flat_overrides(overrides) {
            fig = fig.merge(Serialized::global(&key, value));
        }
        let config: Config = fig.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let url: http::Uri = self
            .upstream
            .url
            .parse()
            .map_err(|e| invalid("upstream.url", format!("not a URL: {e}")))?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(invalid(
                    "upstream.url",
                    "must start with http:// or https://".into(),
                ))
            }
        }
        if url.authority().is_none() {
            return Err(invalid("upstream.url", "must name a host".into()));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(invalid(
                "upstream.url",
                "must not have a path: registries serve /v2/ at the root".into(),
            ));
        }
        let db_url = self.database.url.expose();
        if !db_url.starts_with("postgres://") && !db_url.starts_with("postgresql://") {
            return Err(invalid(
                "database.url",
                "must be a postgres:// or postgresql:// URL".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid(
                "database.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "server.tls_cert and server.tls_key must be set together".into(),
            ));
        }
        if self.limits.max_manifest_bytes < 4 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_manifest_bytes",
                "must be at least 4194304: the OCI spec requires registries to accept 4 MiB manifests".into(),
            ));
        }
        if self.upstream.idle_timeout.is_zero() || self.upstream.connect_timeout.is_zero() {
            return Err(invalid(
                "upstream.idle_timeout",
                "timeouts must be greater than zero".into(),
            ));
        }
        self.validate_bounds()?;
        self.admin.validate()?;
        self.pulls.validate()?;
        self.notify.validate()?;
        self.reconcile.validate()?;
        self.tlog.validate()?;
        self.retention
            .validate(self.pulls.enabled)
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        self.reload.validate()?;
        crate::policy::Policy::from_config(&self.policy).map_err(|e| ConfigError::Invalid {
            key: e.key(),
            message: e.to_string(),
        })?;
        Ok(())
    }
}

impl Config {
    /// The resource bounds: each must be positive, and a manifest must fit the budget.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        let durations = [
            ("upstream.manifest_timeout", self.upstream.manifest_timeout),
            ("database.lock_timeout", self.database.lock_timeout),
            (
                "database.statement_timeout",
                self.database.statement_timeout,
            ),
            (
                "limits.manifest_read_timeout",
                self.limits.manifest_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
        ];
        for (key, d) in durations {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        for (key, d) in [
            ("database.lock_timeout", self.database.lock_timeout),
            (
                "database.statement_timeout",
                self.database.statement_timeout,
            ),
        ] {
            if d.as_millis() > i32::MAX as u128 {
                return Err(invalid(key, "is too long for Postgres"));
            }
        }
        if self.limits.manifest_buffer_budget < self.limits.max_manifest_bytes {
            return Err(invalid(
                "limits.manifest_buffer_budget",
                "must be at least limits.max_manifest_bytes, or the largest manifest could never be pushed",
            ));
        }
        if self.server.max_connections == 0 || self.admin.max_open_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "server.max_connections and admin.max_open_connections must be at least 1",
            ));
        }
        if self.server.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "server.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

fn flat_overrides(o: &Overrides) -> Vec<(String, serde_json::Value)> {
    match serde_json::to_value(o) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// figment's errors already name the key (`for key "default.upstream.url"`); drop the
/// profile prefix and keep the chain of causes.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|err| {
            let key = err.path.join(".");
            let what = err.kind.to_string();
            let source = err
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{what}{source}")
            } else {
                format!("{key}: {what}{source}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;

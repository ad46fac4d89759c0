//! What tagwarden talks to: the upstream registry and the ledger database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the registry, e.g. `http://registry:5000`. Only scheme and authority
    /// are used: registries serve the API at the root.
    pub url: String,
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A request fails if neither side makes progress for this long (no bytes from the
    /// client, no answer or bytes from the upstream), and a client connection is closed
    /// if it stops reading its response for this long.
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest the upstream may take to answer a request made for a manifest (push,
    /// delete, or a look-up before one), moving or not. A manifest write holds a
    /// ledger connection and tag locks meanwhile, so this is much shorter than
    /// `idle_timeout`; past it the client gets 504.
    #[serde(default = "defaults::manifest_timeout", with = "humantime_serde")]
    pub manifest_timeout: Duration,
    /// How long an unused upstream connection is kept for reuse.
    #[serde(default = "defaults::pool_idle_timeout", with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    #[serde(default = "defaults::pool_max_idle_per_host")]
    pub pool_max_idle_per_host: usize,
    /// Credentials for tagwarden's own requests to the registry (`tagwarden import`).
    /// Client requests always carry the client's own credentials, never these.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Whether the registry authenticates its clients. Unset: detected from an
    /// anonymous `GET /v2/` (401 means it does). Only then is a pusher's identity
    /// recorded as verified, and only then is push access checked with the client's
    /// credentials before a refusal discloses anything about a repository.
    #[serde(default)]
    pub authenticates: Option<bool>,
}

impl UpstreamConfig {
    /// The `Authorization` for tagwarden's own requests (import, follow, rewind), from
    /// `username` and `password`.
    pub fn authorization(&self) -> Option<http::HeaderValue> {
        use base64::Engine as _;
        let (user, pass) = (self.username.as_ref()?, self.password.as_ref()?);
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.expose()));
        let mut value = http::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// A value that must never appear in logs or `Debug` output.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`. Never logged.
    pub url: Secret,
    /// The write pool's size: one connection per manifest write in flight (its
    /// announcement, locks and reads go over the connection of its transaction).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// How long a manifest write waits for a ledger connection before it is refused
    /// with 503.
    #[serde(default = "defaults::acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long start-up keeps retrying an unreachable database before giving up.
    #[serde(default = "defaults::startup_timeout", with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Longest a manifest write waits for another write's tag lock (Postgres
    /// `lock_timeout`) before it is refused with 503.
    #[serde(default = "defaults::lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Longest one ledger statement of a manifest write may run (Postgres
    /// `statement_timeout`).
    #[serde(default = "defaults::statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
}

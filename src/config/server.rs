//! The two listeners (`[server]` for registry clients, `[admin]` for audits and
//! operators, with its tokens), the bounds on what a request may use, and logging.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where registry clients connect.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to send its request headers, and how long a new
    /// connection may go without starting a request (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (HTTP/1.1
    /// keep-alive, or an HTTP/2 connection kept alive by pings) before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Client connections open at once; beyond it new ones are closed at once. Each
    /// may also hold an upstream connection, so the process needs about twice this
    /// many descriptors, plus the admin listener's and the database pools'.
    pub max_connections: usize,
    /// HTTP/2 streams (concurrent requests) one client connection may have open.
    pub h2_max_concurrent_streams: u32,
    /// Peers (IPs or CIDRs) whose own `X-Forwarded-*` headers are believed and passed on.
    /// Everyone else's are replaced, so they cannot steer the registry's `Location`s.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:5000".parse().expect("static address"),
            tls_cert: None,
            tls_key: None,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 1024,
            h2_max_concurrent_streams: 32,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerConfig {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Health, readiness, metrics and the audit API. Keep it off the public network.
    pub listen: SocketAddr,
    /// Bearer tokens for the audit API (`/api/v1/`). With none, the API refuses every
    /// request.
    pub tokens: Vec<ApiToken>,
    /// Connections the audit API may hold at once, in a pool of its own so that
    /// audits never take connections from manifest writes.
    pub max_connections: u32,
    /// Longest an audit query may run before the database cancels it.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// HTTP connections the admin listener holds at once (its header, idle and write
    /// timeouts are the client listener's); beyond it new ones are closed at once.
    pub max_open_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:5001".parse().expect("static address"),
            tokens: Vec::new(),
            max_connections: 4,
            query_timeout: Duration::from_secs(10),
            max_open_connections: 64,
        }
    }
}

/// Shortest token accepted: long enough that guessing is hopeless.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// A bearer token for the audit API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds the token; logged with each request, never the token itself.
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the ledger: bindings, history, resolution, events.
    Auditor,
    /// Reads, and may deliberately rewind a moving tag (`POST /api/v1/rewind`).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Whether the role may read the ledger through the API.
    pub fn can_read(self) -> bool {
        match self {
            Role::Auditor | Role::Admin => true,
        }
    }

    /// Whether the role may move tags itself (rewind).
    pub fn can_rewind(self) -> bool {
        self == Role::Admin
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes. The spec asks registries to take at least
    /// 4 MiB; larger ones get 413.
    pub max_manifest_bytes: usize,
    /// Manifest bytes all pushes together may buffer at once. A push that does not
    /// fit gets 503 with `Retry-After`; none waits.
    pub manifest_buffer_budget: usize,
    /// Longest a client may take to send a whole manifest body, however steadily it
    /// trickles; past it the push gets 408.
    #[serde(with = "humantime_serde")]
    pub manifest_read_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            manifest_buffer_budget: 64 * 1024 * 1024,
            manifest_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How manifest writes are checked against the registry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforceConfig {
    /// The operator's assertion that the ledger records every tag the registry holds:
    /// `tagwarden import` ran to the end, and nothing writes to the registry except
    /// through tagwarden. A write of an immutable tag the ledger has never seen then
    /// skips asking the registry whether the tag exists, unless a write of it is
    /// pending (one whose commit may not have happened) or reconciliation found the
    /// repository drifted. Off by default: see README, "Skipping the existence probe".
    pub ledger_complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `tagwarden=debug,info`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            key,
            message: message.into(),
        };
        if self.max_connections == 0 {
            return Err(invalid(
                "admin.max_connections".into(),
                "must be at least 1",
            ));
        }
        if self.query_timeout.is_zero() {
            return Err(invalid(
                "admin.query_timeout".into(),
                "must be greater than zero",
            ));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let key = |field: &str| format!("admin.tokens[{i}].{field}");
            if t.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if self.tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(invalid(key("name"), "another token has the same name"));
            }
            let token = t.token.expose();
            if token.len() < MIN_TOKEN_LENGTH {
                return Err(ConfigError::Invalid {
                    key: key("token"),
                    message: format!("must be at least {MIN_TOKEN_LENGTH} characters"),
                });
            }
            // What can follow `Bearer ` in a header (RFC 6750 b64token), so that every
            // configured token can actually be sent.
            let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
            if !token.chars().all(b64token) {
                return Err(invalid(
                    key("token"),
                    "may contain only letters, digits and - . _ ~ + / =",
                ));
            }
            if self.tokens[..i].iter().any(|o| o.token.expose() == token) {
                return Err(invalid(key("token"), "another token has the same value"));
            }
        }
        Ok(())
    }
}

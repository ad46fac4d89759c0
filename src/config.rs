//! Configuration: a TOML file, overridden by `TAGWARDEN_*` environment variables
//! (`TAGWARDEN_UPSTREAM__URL` sets `upstream.url`), overridden by command-line flags.
//!
//! Every key has a default except `upstream.url` and `database.url`. Unknown keys are
//! errors, so a typo cannot silently leave a safety setting at its default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::RuleConfig;

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
    fn validate(&self) -> Result<(), ConfigError> {
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
    fn validate(&self) -> Result<(), ConfigError> {
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
    /// Where each new checkpoint is posted (a witness or a log pipeline).
    pub witness_url: Option<String>,
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
            batch: 1000,
        }
    }
}

impl TlogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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
        if let Some(u) = &self.witness_url {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || reqwest::Url::parse(u).is_err()
            {
                return Err(invalid(
                    "tlog.witness_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
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
    fn validate(&self) -> Result<(), ConfigError> {
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
    fn validate(&self) -> Result<(), ConfigError> {
        if self.watch_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "reload.watch_interval".into(),
                message: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }
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

    fn validate(&self) -> Result<(), ConfigError> {
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

impl AdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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
mod tests {
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

    const MINIMAL: &str = "[upstream]\nurl = \"http://registry:5000\"\n[database]\nurl = \"postgres://localhost/test\"\n";

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
            ("keep_newest_per_minor = 0\n", "retention.rules[0].keep_newest_per_minor"),
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
            let c =
                Config::load(Some(f.path()), &Overrides::default()).map_err(|e| e.to_string())?;
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
            let c =
                Config::load(Some(f.path()), &Overrides::default()).map_err(|e| e.to_string())?;
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
}

//! Shared harness for the end-to-end tests: a real `docker-registry`, a fresh Postgres
//! database, the `tagwarden` binary in front of them, an OCI image builder and skopeo.
//!
//! Every external tool is required. A missing tool makes the test fail with a message
//! that points at `scripts/provision.sh`; nothing is skipped silently.
//!
//! Harness check: with `TAGWARDEN_E2E_DIRECT=1`, [`Front`] talks to the upstream
//! directly instead of through tagwarden. Tests of plain registry behaviour (push, pull,
//! ranges, uploads) must pass that way too; tests of what tagwarden adds (rejections,
//! header hygiene, error bodies) are expected to fail, which shows they can fail.

pub mod api;
pub mod audit;
pub mod consistency;
pub mod database;
pub mod engines;
pub mod http;
pub mod oci;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod registry;
pub mod relay;
pub mod serial;
pub mod skopeo;
pub mod tagwarden;
pub mod wait;
pub mod zuul;

pub use database::Database;
pub use oci::{Blob, Image, Index, OciLayout};
pub use registry::Registry;
pub use tagwarden::{Tagwarden, TagwardenBuilder};

use std::net::TcpListener;

/// Where a missing dependency is installed from; named in every "missing tool" panic.
pub const PROVISION_HINT: &str =
    "run scripts/provision.sh to install docker-registry, skopeo, apache2-utils and Postgres";

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
        .port()
}

/// `TAGWARDEN_E2E_DIRECT=1`: clients talk to the upstream itself (harness self-check).
pub fn direct_mode() -> bool {
    matches!(
        std::env::var("TAGWARDEN_E2E_DIRECT").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// What registry clients talk to: tagwarden (with its own fresh database) in front of
/// an upstream, or, in direct mode, the upstream itself.
pub struct Front {
    addr: String,
    tagwarden: Option<Tagwarden>,
    database: Option<Database>,
}

impl Front {
    /// tagwarden with default settings in front of `upstream_url`.
    pub async fn in_front_of(upstream_url: &str) -> Front {
        Front::builder(upstream_url).start().await
    }

    /// Like [`Front::in_front_of`], with a chance to add flags, environment or config.
    pub fn builder(upstream_url: &str) -> FrontBuilder {
        FrontBuilder {
            upstream_url: upstream_url.to_string(),
            customize: Vec::new(),
        }
    }

    /// "127.0.0.1:port" that clients connect to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// "http://127.0.0.1:port"
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A skopeo `docker://` reference to `name_and_tag` (e.g. "team/app:1.0.0") here.
    pub fn docker_ref(&self, name_and_tag: &str) -> String {
        format!("docker://{}/{}", self.addr, name_and_tag)
    }

    /// The tagwarden process, unless in direct mode.
    pub fn tagwarden(&self) -> Option<&Tagwarden> {
        self.tagwarden.as_ref()
    }

    pub fn database(&self) -> Option<&Database> {
        self.database.as_ref()
    }

    /// tagwarden's log so far (empty in direct mode); handy in assertion messages.
    pub fn logs(&self) -> String {
        self.tagwarden
            .as_ref()
            .map(|t| t.logs())
            .unwrap_or_default()
    }
}

type Customize = Box<dyn FnOnce(TagwardenBuilder) -> TagwardenBuilder + Send>;

pub struct FrontBuilder {
    upstream_url: String,
    customize: Vec<Customize>,
}

impl FrontBuilder {
    /// Adjust the tagwarden command (ignored in direct mode).
    pub fn with(
        mut self,
        f: impl FnOnce(TagwardenBuilder) -> TagwardenBuilder + Send + 'static,
    ) -> Self {
        self.customize.push(Box::new(f));
        self
    }

    pub fn env(self, key: &str, value: &str) -> Self {
        let (key, value) = (key.to_string(), value.to_string());
        self.with(move |b| b.env(&key, &value))
    }

    pub async fn start(self) -> Front {
        if direct_mode() {
            let addr = self
                .upstream_url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            return Front {
                addr,
                tagwarden: None,
                database: None,
            };
        }
        let database = Database::fresh();
        let mut builder = Tagwarden::builder(&self.upstream_url, database.url());
        for f in self.customize {
            builder = f(builder);
        }
        let tagwarden = builder.start().await;
        Front {
            addr: tagwarden.addr().to_string(),
            tagwarden: Some(tagwarden),
            database: Some(database),
        }
    }
}

/// A registry with a front (tagwarden, or the registry itself in direct mode).
/// Fields drop in order: the front stops before the registry.
pub struct Stack {
    pub front: Front,
    pub registry: Registry,
}

impl Stack {
    pub async fn start() -> Stack {
        let registry = Registry::start().await;
        let front = Front::in_front_of(&registry.url()).await;
        Stack { front, registry }
    }

    pub async fn start_with_htpasswd(user: &str, password: &str) -> Stack {
        let registry = Registry::start_with_htpasswd(user, password).await;
        let front = Front::in_front_of(&registry.url()).await;
        Stack { front, registry }
    }
}

/// A registry, a fresh database and tagwarden in front of both with a configuration:
/// the start of every suite that configures tagwarden itself. Fields drop in order:
/// tagwarden stops before its database and registry go.
pub struct Served {
    pub tw: Tagwarden,
    pub db: Database,
    pub registry: Registry,
}

impl Served {
    /// tagwarden with the TOML `config` (passed with `--config`).
    pub async fn with_config(config: &str) -> Served {
        let registry = Registry::start().await;
        let db = Database::fresh();
        let tw = Tagwarden::builder(&registry.url(), db.url())
            .config(config)
            .start()
            .await;
        Served { tw, db, registry }
    }
}

//! A real `zuul-registry` (1.3, from PyPI) on a free loopback port: a second upstream,
//! unrelated to distribution, that always wants a bearer token from its own token
//! service (`/auth/token`, Basic credentials in, an HS256 JWT out).
//!
//! It runs with filesystem storage in a temp dir, over plain HTTP (TLS is optional in
//! zuul-registry), with one read-write and one read-only user. Because a read-only user
//! exists, anonymous reads are off: every request needs a token. Clients fetch tokens
//! from zuul-registry itself (the challenge's realm), never through tagwarden.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tempfile::TempDir;

use super::api::digest_of;
use super::free_port;
use super::http::{client, header, MANIFEST_ACCEPT};
use super::process::LoggedChild;

/// The user who may push and pull.
pub const RW_USER: &str = "writer";
pub const RW_PASSWORD: &str = "writer-zuul-pw";
/// The user who may only pull.
pub const RO_USER: &str = "reader";
pub const RO_PASSWORD: &str = "reader-zuul-pw";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: u32 = 3;

/// `user:password` of the read-write user, as skopeo's `--creds` wants it.
pub fn rw_creds() -> String {
    format!("{RW_USER}:{RW_PASSWORD}")
}

/// `user:password` of the read-only user.
pub fn ro_creds() -> String {
    format!("{RO_USER}:{RO_PASSWORD}")
}

/// The `zuul-registry` command that `scripts/provision.sh --with-zuul` installs.
pub fn program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tmp/zuul-venv/bin/zuul-registry")
}

/// A zuul-registry process; killed on drop.
pub struct Zuul {
    child: LoggedChild,
    port: u16,
    /// Its storage and logs, removed on drop.
    _dir: TempDir,
}

impl Zuul {
    /// Starts zuul-registry and waits until `/v2/` answers 401 with a Bearer challenge.
    pub async fn start() -> Zuul {
        let program = program();
        assert!(
            program.exists(),
            "zuul-registry is not installed at {}: run scripts/provision.sh --with-zuul",
            program.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("tw-zuul-")
            .tempdir()
            .expect("create zuul-registry temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("create zuul-registry storage dir");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let config_path = dir.path().join("registry.yaml");
            std::fs::write(&config_path, config(port, &storage)).expect("write zuul config");
            let mut command = Command::new(&program);
            command.arg("-c").arg(&config_path).arg("serve");
            let mut child = LoggedChild::spawn(
                "zuul-registry",
                command,
                &dir.path().join(format!("registry-{attempt}.log")),
            );
            match wait_for_challenge(port, &mut child).await {
                Ok(()) => {
                    return Zuul {
                        child,
                        port,
                        _dir: dir,
                    }
                }
                Err(exited) if exited && attempt < START_ATTEMPTS && port_taken(&child) => {
                    continue
                }
                Err(_) => panic!(
                    "zuul-registry did not answer /v2/ with a Bearer challenge; last log lines:\n{}",
                    child.log_tail(40)
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// "http://127.0.0.1:port"
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// A token from zuul-registry's own token service for `scope`, with `creds`
    /// (`user:password`) as Basic auth if given; `Err(status)` if it refuses.
    pub async fn token(&self, creds: Option<&str>, scope: &str) -> Result<String, StatusCode> {
        let mut req = client()
            .get(format!("{}/auth/token", self.url()))
            .query(&[("scope", scope)]);
        if let Some((user, password)) = creds.and_then(|c| c.split_once(':')) {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.expect("GET /auth/token");
        if resp.status() != StatusCode::OK {
            return Err(resp.status());
        }
        let body: serde_json::Value = resp.json().await.expect("token JSON");
        Ok(body["token"]
            .as_str()
            .expect("a `token` in the token answer")
            .to_string())
    }

    /// `Authorization: Bearer …` for the read-write user, pull and push on `repo`.
    pub async fn rw_bearer(&self, repo: &str) -> String {
        let token = self
            .token(Some(&rw_creds()), &format!("repository:{repo}:pull,push"))
            .await
            .expect("a read-write token for the read-write user");
        format!("Bearer {token}")
    }

    /// The digest `repo:tag` resolves to in zuul-registry itself (a HEAD as the
    /// read-write user, every manifest type accepted), or `None` if it does not exist.
    pub async fn resolve(&self, repo: &str, tag: &str) -> Option<String> {
        let resp = client()
            .head(format!("{}/v2/{repo}/manifests/{tag}", self.url()))
            .header("accept", MANIFEST_ACCEPT)
            .header("authorization", self.rw_bearer(repo).await)
            .send()
            .await
            .expect("HEAD manifest");
        digest_of(&resp, &format!("HEAD {repo}:{tag} on zuul-registry"))
    }

    /// Every tag of `repo` in zuul-registry itself, sorted, as the read-write user.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let resp = client()
            .get(format!("{}/v2/{repo}/tags/list", self.url()))
            .header("authorization", self.rw_bearer(repo).await)
            .send()
            .await
            .expect("GET tags/list");
        assert_eq!(resp.status(), StatusCode::OK, "tags of {repo} on zuul");
        let v: serde_json::Value = resp.json().await.expect("tag list JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        tags.sort();
        tags
    }
}

/// zuul-registry's configuration: the token realm is zuul-registry's own address, so
/// clients behind tagwarden still fetch their tokens from it directly.
fn config(port: u16, storage: &Path) -> String {
    format!(
        "registry:\n  \
           address: 127.0.0.1\n  \
           port: {port}\n  \
           public-url: http://127.0.0.1:{port}\n  \
           secret: tagwarden-e2e-zuul-secret\n  \
           users:\n    \
             - name: {RW_USER}\n      pass: {RW_PASSWORD}\n      access: write\n    \
             - name: {RO_USER}\n      pass: {RO_PASSWORD}\n      access: read\n  \
           storage:\n    \
             driver: filesystem\n    \
             root: {}\n",
        storage.display()
    )
}

/// Polls `/v2/` until it answers 401 with zuul-registry's own Bearer challenge; `Err(true)` if the
/// process exited, `Err(false)` on a timeout.
async fn wait_for_challenge(port: u16, child: &mut LoggedChild) -> Result<(), bool> {
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build HTTP client");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if child.exited().is_some() {
            return Err(true);
        }
        if let Ok(resp) = probe
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .await
        {
            // Only zuul-registry's own challenge counts: its realm is its public URL. In
            // one test process another server (a tagwarden's admin listener) may have
            // taken the port first; zuul-registry then exits with "not free".
            let challenge = header(&resp, "www-authenticate").unwrap_or_default();
            let own_realm = format!("realm=\"http://127.0.0.1:{port}/");
            if resp.status() == StatusCode::UNAUTHORIZED
                && challenge.starts_with("Bearer ")
                && challenge.contains(&own_realm)
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(false)
}

/// CherryPy's words for a port another process took first.
fn port_taken(child: &LoggedChild) -> bool {
    let logs = child.logs().to_lowercase();
    logs.contains("not free") || logs.contains("address already in use")
}

//! A real `docker-registry` (CNCF distribution 2.8) on a free loopback port.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use tempfile::TempDir;

use super::api::resolve;
use super::http::{wait_until_answers_with, StartError};
use super::process::{require_tool, LoggedChild};
use super::{free_port, wait, PROVISION_HINT};

const START_ATTEMPTS: u32 = 3;
/// A response header the registry is configured to send, with a value of its own:
/// only its answers count as its start (another server can take a free port first).
const MARKER_HEADER: &str = "x-tagwarden-test-registry";

/// A registry process with filesystem storage in a temp dir; killed on drop.
pub struct Registry {
    child: LoggedChild,
    port: u16,
    dir: TempDir,
    marker: String,
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::launch(&[]).await
    }

    /// Registry that requires HTTP Basic auth (bcrypt htpasswd file) for everything.
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::launch(&[(user, password)]).await
    }

    /// Like [`Registry::start_with_htpasswd`], with several users.
    pub async fn start_with_htpasswd_users(users: &[(&str, &str)]) -> Registry {
        Registry::launch(users).await
    }

    async fn launch(users: &[(&str, &str)]) -> Registry {
        require_tool("docker-registry", "--version");
        let dir = tempfile::Builder::new()
            .prefix("tw-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("create registry storage dir");

        let mut auth = String::new();
        if !users.is_empty() {
            let htpasswd_file = write_htpasswd(&dir, users);
            auth = format!(
                "auth:\n  htpasswd:\n    realm: tagwarden-test-realm\n    path: {}\n",
                htpasswd_file.display()
            );
        }

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let marker = format!("{}-{port}-{attempt}", std::process::id());
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: tagwarden-e2e-fixed-secret\n\
                 \x20 headers:\n    X-Tagwarden-Test-Registry: [\"{marker}\"]\n\
                 {auth}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");

            let mut command = Command::new("docker-registry");
            command.arg("serve").arg(&config_path);
            let mut child =
                LoggedChild::spawn("docker-registry", command, &dir.path().join("registry.log"));
            let ready = wait_until_answers_with(
                &format!("http://127.0.0.1:{port}/v2/"),
                &[StatusCode::OK, StatusCode::UNAUTHORIZED],
                Some((MARKER_HEADER, &marker)),
                Duration::from_secs(20),
                &mut child,
            )
            .await;
            match ready {
                Ok(()) => {
                    return Registry {
                        child,
                        port,
                        dir,
                        marker,
                    }
                }
                Err(StartError::Exited {
                    port_taken: true, ..
                }) if attempt < START_ATTEMPTS => continue,
                Err(e) => panic!(
                    "docker-registry did not start: {e}; last log lines:\n{}",
                    child.log_tail(40)
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// "127.0.0.1:port"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:port"
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A skopeo `docker://` reference that bypasses any proxy.
    pub fn docker_ref(&self, name_and_tag: &str) -> String {
        format!("docker://{}/{}", self.addr(), name_and_tag)
    }

    /// Wait until the registry itself resolves `repo:tag` to `digest`: a write held
    /// between the registry and tagwarden has been stored.
    pub async fn wait_until_serves(&self, repo: &str, tag: &str, digest: &str, within: Duration) {
        let base = self.url();
        wait::until(within, Duration::from_millis(50), || async {
            match resolve(&base, repo, tag).await {
                Some(served) if served == digest => Ok(()),
                served => Err(format!("{repo}:{tag} resolves to {served:?}, not {digest}")),
            }
        })
        .await
    }

    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// SIGKILL the registry: an outage. Storage stays for [`Registry::start_again`].
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Start the registry again on the same port, with the same storage and config.
    pub async fn start_again(&mut self) {
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(self.dir.path().join("config.yml"));
        let mut child = LoggedChild::spawn(
            "docker-registry",
            command,
            &self.dir.path().join("registry-again.log"),
        );
        if let Err(e) = wait_until_answers_with(
            &format!("http://127.0.0.1:{}/v2/", self.port),
            &[StatusCode::OK, StatusCode::UNAUTHORIZED],
            Some((MARKER_HEADER, &self.marker)),
            Duration::from_secs(20),
            &mut child,
        )
        .await
        {
            panic!(
                "docker-registry did not start again: {e}; last log lines:\n{}",
                child.log_tail(40)
            );
        }
        self.child = child;
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn write_htpasswd(dir: &TempDir, users: &[(&str, &str)]) -> PathBuf {
    require_tool("htpasswd", "-v");
    let mut lines = Vec::new();
    for (user, password) in users {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap_or_else(|e| panic!("cannot run htpasswd ({e}): {PROVISION_HINT}"));
        assert!(
            out.status.success(),
            "htpasswd -Bbn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `-n` prints the entry and a blank line; keep the entry only.
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write htpasswd file");
    path
}

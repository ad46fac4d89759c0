//! The `tagwarden` binary under test, on free loopback ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use tempfile::TempDir;

use super::free_port;
use super::http::{wait_until_answers, StartError};
use super::process::LoggedChild;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 3;
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A running `tagwarden serve`; SIGTERM (then SIGKILL) on drop.
pub struct Tagwarden {
    child: LoggedChild,
    port: u16,
    admin_port: u16,
    dir: TempDir,
}

pub struct TagwardenBuilder {
    upstream_url: String,
    database_url: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
}

impl Tagwarden {
    /// `tagwarden serve` with defaults in front of `upstream_url`.
    pub async fn start(upstream_url: &str, database_url: &str) -> Tagwarden {
        Tagwarden::builder(upstream_url, database_url).start().await
    }

    pub fn builder(upstream_url: &str, database_url: &str) -> TagwardenBuilder {
        TagwardenBuilder {
            upstream_url: upstream_url.to_string(),
            database_url: database_url.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
        }
    }

    /// "127.0.0.1:port" of the proxy listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:port" of the proxy listener.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:port" of the admin listener (health, readiness, metrics).
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn docker_ref(&self, name_and_tag: &str) -> String {
        format!("docker://{}/{}", self.addr(), name_and_tag)
    }

    /// Everything tagwarden wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `Some(exit status)` once the process has ended.
    pub fn exited(&mut self) -> Option<String> {
        self.child.exited()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Resident memory in KiB (`VmRSS`), while the process runs.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// How many file descriptors (sockets included) the process holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("read /proc/<pid>/fd")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, then SIGKILL if still running after `grace`. Returns the exit status
    /// if it ended by itself in time.
    pub fn terminate(&mut self, grace: Duration) -> Option<String> {
        self.child.terminate(grace)
    }
}

impl Drop for Tagwarden {
    fn drop(&mut self) {
        self.child.terminate(TERM_GRACE);
    }
}

impl TagwardenBuilder {
    /// An extra command-line argument after the standard ones.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// A TOML configuration file, passed with `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    pub async fn start(self) -> Tagwarden {
        let dir = tempfile::Builder::new()
            .prefix("tw-tagwarden-")
            .tempdir()
            .expect("create tagwarden temp dir");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let admin_port = free_port();
            let mut child = LoggedChild::spawn(
                "tagwarden",
                self.command(&dir, port, admin_port),
                &dir.path().join("tagwarden.log"),
            );
            let ready = wait_until_answers(
                &format!("http://127.0.0.1:{admin_port}/healthz"),
                &[StatusCode::OK],
                STARTUP_TIMEOUT,
                &mut child,
            )
            .await;
            match ready {
                Ok(()) => {
                    return Tagwarden {
                        child,
                        port,
                        admin_port,
                        dir,
                    }
                }
                Err(StartError::Exited {
                    port_taken: true, ..
                }) if attempt < START_ATTEMPTS => continue,
                Err(e) => panic!(
                    "tagwarden did not become healthy: {e}; last log lines:\n{}",
                    child.log_tail(40)
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn command(&self, dir: &TempDir, port: u16, admin_port: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tagwarden"));
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--upstream", &self.upstream_url])
            .args(["--database-url", &self.database_url]);
        if let Some(toml) = &self.config {
            let path = dir.path().join("tagwarden.toml");
            std::fs::write(&path, toml).expect("write tagwarden config");
            command.arg("--config").arg(path);
        }
        command.args(&self.args);
        // Only what the test sets: a stray TAGWARDEN_* in the environment must not leak
        // into the configuration under test.
        for (key, _) in std::env::vars() {
            if key.starts_with("TAGWARDEN_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

//! Real container engines for the client suite: docker (dockerd), containerd (ctr),
//! podman and buildah, each on private sockets and storage under a temporary directory.
//!
//! Nothing touches the machine's own engines or credentials: every daemon gets its own
//! socket, data and exec root; every CLI gets its own config and auth file. Daemons stop
//! on drop (also when a test panics), and any mount they left under their directory is
//! taken down before the directory is removed. A missing or failing engine panics with
//! its error and the provisioning hint; nothing is skipped.
//!
//! Registries are plain HTTP on loopback: docker treats 127.0.0.0/8 as insecure by
//! default, podman and buildah get `--tls-verify=false`, ctr gets `--plain-http`.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::LoggedChild;

/// Longest any engine command may run: a hung push must fail the test, not stall it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);
const DAEMON_STOP_GRACE: Duration = Duration::from_secs(20);

/// Where the engines come from; named in every panic about a missing engine.
const ENGINES_HINT: &str =
    "run scripts/provision.sh --with-engines (docker.io, podman, buildah, containerd from Debian)";

/// What one engine command did.
pub struct Run {
    pub command: String,
    /// `None` when it was killed after [`COMMAND_TIMEOUT`].
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout and stderr together: clients print refusals on either.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the command and its output unless it succeeded; returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(self.success(), "engine command failed: {self:?}");
        self.stdout
    }

    /// Panics unless it failed (and did not time out); returns stdout and stderr.
    #[track_caller]
    pub fn failed(self) -> String {
        assert!(
            self.status.is_some() && !self.success(),
            "engine command should have failed: {self:?}"
        );
        self.text()
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("killed after {COMMAND_TIMEOUT:?}"));
        write!(
            f,
            "`{}` -> {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// One engine CLI with the flags and environment that pin it to its private state.
#[derive(Clone)]
struct Cli {
    program: PathBuf,
    leading: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cli {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let cli = self.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || cli.run_blocking(&args, stdin.as_deref()))
            .await
            .expect("engine command thread panicked")
    }

    fn run_blocking(&self, args: &[String], stdin: Option<&str>) -> Run {
        let line = format!(
            "{} {} {}",
            self.program.display(),
            self.leading.join(" "),
            args.join(" ")
        );
        // Output goes to files, not pipes, so a chatty command can never block on a full
        // pipe while we wait for it with a deadline.
        let out_dir = tempfile::tempdir().expect("temp dir for command output");
        let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
        let mut command = Command::new(&self.program);
        command
            .args(&self.leading)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(File::create(&out_path).expect("create stdout file"))
            .stderr(File::create(&err_path).expect("create stderr file"));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}: {ENGINES_HINT}"));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .expect("write command stdin");
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match child.try_wait().expect("wait for engine command") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        Run {
            command: line,
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        }
    }
}

/// A build context `FROM scratch` with one file `/f` holding `content`: a tiny real image
/// every engine can build offline.
fn scratch_context(dir: &Path, content: &str) -> PathBuf {
    let ctx = dir.join(format!("ctx-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&ctx).expect("create build context");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").expect("write Dockerfile");
    std::fs::write(ctx.join("f"), content).expect("write build context file");
    ctx
}

fn engine_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create engine temp dir")
}

/// Unmounts, deepest first, whatever is still mounted under `dir` (overlay layers,
/// containerd's temporary mounts), so the directory can be removed.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["-l", &point])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Panics, naming the provisioning flag, unless `program` can be run.
fn require_engine(program: &str) {
    match Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!("`{program}` cannot be run ({e}): {ENGINES_HINT}"),
    }
}

/// Runs `cli ARGS` until it succeeds; an error with the daemon's log if the daemon exits
/// or does not answer within [`DAEMON_START_TIMEOUT`].
async fn wait_for_daemon(daemon: &mut LoggedChild, cli: &Cli, args: &[&str]) -> Result<(), String> {
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    loop {
        if let Some(status) = daemon.exited() {
            return Err(format!("exited ({status}):\n{}", daemon.log_tail(30)));
        }
        let run = cli.run(args, None).await;
        if run.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer within {DAEMON_START_TIMEOUT:?}: {}\n{}",
                run.text().trim(),
                daemon.log_tail(30)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A private `dockerd` (it runs its own containerd under the exec root) and the docker
/// CLI that talks to it.
pub struct Docker {
    // Dropped before `dir`: the daemon stops, then its mounts go, then the files.
    daemon: Option<LoggedChild>,
    cli: Cli,
    dir: TempDir,
}

impl Docker {
    /// Starts dockerd with overlay2 (vfs if overlay2 cannot start) and waits until it
    /// answers. Networking is off: nothing here runs containers.
    pub async fn start() -> Docker {
        require_engine("dockerd");
        let mut failures = Vec::new();
        for driver in ["overlay2", "vfs"] {
            match Docker::start_with(driver).await {
                Ok(docker) => return docker,
                Err(why) => failures.push(format!("with {driver}: {why}")),
            }
        }
        panic!(
            "dockerd did not start: {ENGINES_HINT}\n{}",
            failures.join("\n")
        );
    }

    async fn start_with(driver: &str) -> Result<Docker, String> {
        let dir = engine_dir("tw-docker-");
        let root = dir.path();
        for sub in ["data", "exec", "config"] {
            std::fs::create_dir_all(root.join(sub)).expect("create docker dirs");
        }
        // No daemon.json from the machine; the CLI's experimental commands
        // (`docker manifest`) on.
        std::fs::write(root.join("daemon.json"), "{}").expect("write daemon.json");
        std::fs::write(
            root.join("config").join("config.json"),
            r#"{"experimental":"enabled"}"#,
        )
        .expect("write docker CLI config");
        let socket = root.join("docker.sock");
        let mut command = Command::new("dockerd");
        command
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--config-file")
            .arg(root.join("daemon.json"))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .arg(format!("--storage-driver={driver}"));
        let cli = Cli {
            program: docker_cli(),
            leading: vec!["--host".into(), format!("unix://{}", socket.display())],
            env: vec![
                (
                    "DOCKER_CONFIG".into(),
                    root.join("config").display().to_string(),
                ),
                ("DOCKER_CLI_EXPERIMENTAL".into(), "enabled".into()),
            ],
        };
        let mut daemon = LoggedChild::spawn("dockerd", command, &root.join("dockerd.log"));
        let probe = ["version", "--format", "{{.Server.Version}}"];
        match wait_for_daemon(&mut daemon, &cli, &probe).await {
            Ok(()) => Ok(Docker {
                daemon: Some(daemon),
                cli,
                dir,
            }),
            Err(why) => {
                daemon.terminate(DAEMON_STOP_GRACE);
                unmount_under(dir.path());
                Err(why)
            }
        }
    }

    /// `docker ARGS...`
    pub async fn run(&self, args: &[&str]) -> Run {
        self.cli.run(args, None).await
    }

    /// `docker ARGS...` with `input` on stdin (for `--password-stdin`).
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        self.cli.run(args, Some(input)).await
    }

    /// Builds `FROM scratch` + a file holding `content`, tagged with every entry of
    /// `tags`; returns the image id.
    pub async fn build(&self, tags: &[&str], content: &str) -> String {
        let ctx = scratch_context(self.dir.path(), content);
        let ctx = ctx.display().to_string();
        let mut args = vec!["build", "--quiet"];
        for tag in tags {
            args.extend(["--tag", tag]);
        }
        args.push(&ctx);
        self.run(&args).await.ok().trim().to_string()
    }

    /// `(client, engine)` versions, as the daemon reports them.
    pub async fn versions(&self) -> (String, String) {
        let out = self
            .run(&[
                "version",
                "--format",
                "{{.Client.Version}} {{.Server.Version}}",
            ])
            .await
            .ok();
        let mut words = out.split_whitespace().map(str::to_string);
        let client = words.next().unwrap_or_default();
        (client, words.next().unwrap_or_default())
    }
}

/// The docker CLI of the same release as `dockerd` (Debian's /usr/bin/docker), so client
/// and engine match even when another `docker` comes first in `PATH`; the first `docker`
/// in `PATH` if none matches.
fn docker_cli() -> PathBuf {
    let version = |program: &Path| {
        Command::new(program)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .and_then(|v| {
                v.split_whitespace()
                    .nth(2)
                    .map(|w| w.trim_end_matches(',').to_string())
            })
    };
    let engine = version(Path::new("dockerd"));
    let candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("docker"))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .find(|cli| engine.is_some() && version(cli) == engine)
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("docker"))
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(DAEMON_STOP_GRACE);
        }
        unmount_under(self.dir.path());
    }
}

/// A private `containerd` and `ctr` bound to its socket.
pub struct Containerd {
    daemon: Option<LoggedChild>,
    cli: Cli,
    dir: TempDir,
}

impl Containerd {
    pub async fn start() -> Containerd {
        require_engine("containerd");
        require_engine("ctr");
        let dir = engine_dir("tw-containerd-");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        // Only what a push and pull need: no CRI (it wants CNI and a kubelet), private
        // sockets so nothing reaches the machine's own containerd.
        let config = format!(
            "version = 2\n\
             root = \"{root}/root\"\n\
             state = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"{root}/debug.sock\"\n",
            root = root.display(),
            sock = socket.display()
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&config_path)
            .arg("--root")
            .arg(root.join("root"))
            .arg("--state")
            .arg(root.join("state"))
            .arg("--address")
            .arg(&socket);
        let mut daemon = LoggedChild::spawn("containerd", command, &root.join("containerd.log"));
        let cli = Cli {
            program: PathBuf::from("ctr"),
            leading: vec!["--address".into(), socket.display().to_string()],
            env: Vec::new(),
        };
        if let Err(why) = wait_for_daemon(&mut daemon, &cli, &["version"]).await {
            panic!("containerd did not start: {ENGINES_HINT}\n{why}");
        }
        Containerd {
            daemon: Some(daemon),
            cli,
            dir,
        }
    }

    /// `ctr --address SOCK ARGS...`
    pub async fn ctr(&self, args: &[&str]) -> Run {
        self.cli.run(args, None).await
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(DAEMON_STOP_GRACE);
        }
        unmount_under(self.dir.path());
    }
}

/// Storage, registries configuration and auth file of its own for podman or buildah
/// (daemonless: every command opens the store under the temp dir).
struct Daemonless {
    dir: TempDir,
    cli: Cli,
}

impl Daemonless {
    fn new(program: &str, extra: &[&str]) -> Daemonless {
        require_engine(program);
        let dir = engine_dir(&format!("tw-{program}-"));
        let root = dir.path();
        let registries = root.join("registries.conf");
        // No search registries and no mirrors: every name here is fully qualified.
        std::fs::write(&registries, "unqualified-search-registries = []\n")
            .expect("write registries.conf");
        // The tools insist the auth file exists; empty means no credentials at all.
        std::fs::write(root.join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
        let mut leading = vec![
            "--root".to_string(),
            root.join("root").display().to_string(),
            "--runroot".to_string(),
            root.join("run").display().to_string(),
            "--storage-driver".to_string(),
            "vfs".to_string(),
        ];
        leading.extend(extra.iter().map(|s| s.to_string()));
        let cli = Cli {
            program: PathBuf::from(program),
            leading,
            env: vec![
                (
                    "CONTAINERS_REGISTRIES_CONF".into(),
                    registries.display().to_string(),
                ),
                (
                    "REGISTRY_AUTH_FILE".into(),
                    root.join("auth.json").display().to_string(),
                ),
                ("TMPDIR".into(), root.display().to_string()),
            ],
        };
        Daemonless { dir, cli }
    }
}

impl Drop for Daemonless {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}

/// podman with private storage (vfs), no systemd: cgroupfs and file events.
pub struct Podman(Daemonless);

impl Podman {
    pub fn new() -> Podman {
        Podman(Daemonless::new(
            "podman",
            &["--cgroup-manager", "cgroupfs", "--events-backend", "file"],
        ))
    }

    /// `podman ARGS...`
    pub async fn run(&self, args: &[&str]) -> Run {
        self.0.cli.run(args, None).await
    }

    /// Builds `FROM scratch` + a file holding `content` as `tag`; returns the image id.
    pub async fn build(&self, tag: &str, content: &str) -> String {
        let ctx = scratch_context(self.0.dir.path(), content);
        let ctx = ctx.display().to_string();
        self.run(&["build", "--quiet", "--tag", tag, &ctx])
            .await
            .ok()
            .trim()
            .to_string()
    }
}

/// buildah with private storage (vfs); `chroot` isolation, which needs no runtime setup.
pub struct Buildah(Daemonless);

impl Buildah {
    pub fn new() -> Buildah {
        Buildah(Daemonless::new("buildah", &[]))
    }

    /// `buildah ARGS...`
    pub async fn run(&self, args: &[&str]) -> Run {
        self.0.cli.run(args, None).await
    }

    /// Builds `FROM scratch` + a file holding `content` as `tag`; returns the image id.
    pub async fn build(&self, tag: &str, content: &str) -> String {
        let ctx = scratch_context(self.0.dir.path(), content);
        let ctx = ctx.display().to_string();
        self.run(&[
            "build",
            "--quiet",
            "--isolation",
            "chroot",
            "--tag",
            tag,
            &ctx,
        ])
        .await
        .ok()
        .trim()
        .to_string()
    }
}

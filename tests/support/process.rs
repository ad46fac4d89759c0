//! Child processes with their output in a log file, and checks for required tools.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PROVISION_HINT;

/// Panics, naming the provisioning script, unless `program` can be run.
pub fn require_tool(program: &str, version_arg: &str) {
    match Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{program}` is not installed (not found in PATH): {PROVISION_HINT}")
        }
        Err(e) => panic!("`{program}` cannot be run ({e}): {PROVISION_HINT}"),
    }
}

/// A child process whose stdout and stderr go to one log file. Killed on drop.
pub struct LoggedChild {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl LoggedChild {
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> LoggedChild {
        let log = File::create(log_path).expect("create log file");
        let log2 = log.try_clone().expect("clone log file handle");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = match command.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("cannot start {name}: {command:?} not found: {PROVISION_HINT}")
            }
            Err(e) => panic!("cannot start {name} ({command:?}): {e}"),
        };
        LoggedChild {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let logs = self.logs();
        let all: Vec<&str> = logs.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state: {e}")),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, wait up to `grace` for a clean exit, then SIGKILL. Returns the exit
    /// status description if the process ended by itself within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<String> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the {} log ({}) ---\n{}\n--- end of {} log ---",
                self.name,
                self.log_path.display(),
                self.log_tail(30),
                self.name
            );
        }
        self.kill();
    }
}

//! skopeo, run on the blocking thread pool so it never stalls the test's runtime.
//!
//! TLS verification is off (everything is plain HTTP on loopback), signature policy is
//! ignored, credentials come only from the flags given here, and every command gives up
//! after two minutes rather than hanging a test.

use std::fmt;
use std::process::{Command, ExitStatus};

use super::oci::{sha256_digest, Image, OciLayout};
use super::process::require_tool;

/// What a skopeo run did.
pub struct SkopeoOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl SkopeoOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command and its stderr unless it succeeded.
    #[track_caller]
    pub fn assert_success(self) -> Self {
        assert!(self.success(), "skopeo failed: {self:?}");
        self
    }

    /// Panics unless it failed; returns stderr for checks on the message.
    #[track_caller]
    pub fn assert_failure(self) -> String {
        assert!(!self.success(), "skopeo unexpectedly succeeded: {self:?}");
        self.stderr
    }
}

impl fmt::Debug for SkopeoOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.command,
            self.status,
            self.stderr.trim_end(),
            String::from_utf8_lossy(&self.stdout).trim_end()
        )
    }
}

/// `skopeo copy SRC DST`, configured with the builder methods, run with `.run().await`.
pub fn copy(src: &str, dst: &str) -> Copy {
    Copy {
        src: src.to_string(),
        dst: dst.to_string(),
        all: false,
        preserve_digests: false,
        src_creds: None,
        dest_creds: None,
    }
}

pub struct Copy {
    src: String,
    dst: String,
    all: bool,
    preserve_digests: bool,
    src_creds: Option<String>,
    dest_creds: Option<String>,
}

impl Copy {
    /// `--all`: copy an index with every image in it.
    pub fn all(mut self) -> Self {
        self.all = true;
        self
    }

    /// `--preserve-digests`: fail rather than change any manifest or layer.
    pub fn preserve_digests(mut self) -> Self {
        self.preserve_digests = true;
        self
    }

    /// `--src-creds user:pass`
    pub fn src_creds(mut self, creds: &str) -> Self {
        self.src_creds = Some(creds.to_string());
        self
    }

    /// `--dest-creds user:pass`
    pub fn dest_creds(mut self, creds: &str) -> Self {
        self.dest_creds = Some(creds.to_string());
        self
    }

    pub async fn run(self) -> SkopeoOutput {
        let mut args: Vec<String> = vec![
            "copy".into(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
        ];
        if self.all {
            args.push("--all".into());
        }
        if self.preserve_digests {
            args.push("--preserve-digests".into());
        }
        if self.dst.starts_with("oci:") {
            // Keep layers as they are instead of gzipping them into the layout.
            args.push("--dest-oci-accept-uncompressed-layers".into());
        }
        if let Some(c) = self.src_creds {
            args.extend(["--src-creds".into(), c]);
        }
        if let Some(c) = self.dest_creds {
            args.extend(["--dest-creds".into(), c]);
        }
        args.extend([self.src, self.dst]);
        run(args).await
    }
}

/// `skopeo inspect --raw REF`: the manifest bytes exactly as served.
pub async fn inspect_raw(reference: &str) -> SkopeoOutput {
    run(vec![
        "inspect".into(),
        "--raw".into(),
        "--tls-verify=false".into(),
        reference.into(),
    ])
    .await
}

/// Digest of the manifest `reference` points to (sha256 of the raw bytes served),
/// or the failed run.
pub async fn inspect_digest(reference: &str) -> Result<String, SkopeoOutput> {
    let out = inspect_raw(reference).await;
    if out.success() {
        Ok(sha256_digest(&out.stdout))
    } else {
        Err(out)
    }
}

/// `skopeo delete REF` (resolves a tag, then deletes the manifest by digest).
pub async fn delete(reference: &str) -> SkopeoOutput {
    run(vec![
        "delete".into(),
        "--tls-verify=false".into(),
        reference.into(),
    ])
    .await
}

/// `skopeo delete --creds user:pass REF`, for registries that want a login.
pub async fn delete_with_creds(reference: &str, creds: &str) -> SkopeoOutput {
    run(vec![
        "delete".into(),
        "--tls-verify=false".into(),
        "--creds".into(),
        creds.into(),
        reference.into(),
    ])
    .await
}

async fn run(args: Vec<String>) -> SkopeoOutput {
    require_tool("skopeo", "--version");
    tokio::task::spawn_blocking(move || run_blocking(args))
        .await
        .expect("skopeo thread panicked")
}

fn run_blocking(args: Vec<String>) -> SkopeoOutput {
    let mut command = Command::new("skopeo");
    command
        .args(["--insecure-policy", "--command-timeout", "120s"])
        .args(&args)
        // No credentials from the machine: only what the test passes.
        .env("REGISTRY_AUTH_FILE", "/nonexistent/tagwarden-e2e/auth.json")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy");
    let line = format!("skopeo --insecure-policy {}", args.join(" "));
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}: {}", super::PROVISION_HINT));
    SkopeoOutput {
        command: line,
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Pushes `image` to `dest` (a `docker://` reference), every digest preserved.
pub async fn push(image: &Image, dest: &str) -> SkopeoOutput {
    let layout = OciLayout::with_image(image);
    copy(&layout.reference(), dest)
        .preserve_digests()
        .run()
        .await
}

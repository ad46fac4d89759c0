//! The second real client: oras-py (from PyPI) pushes and pulls an artifact through
//! tagwarden, and sees the refusal when it re-pushes a release with other content.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::Stack;

/// The interpreter of the virtualenv `scripts/provision.sh --with-oras` makes.
fn oras_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tmp/venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "oras-py is not installed in .tmp/venv: run scripts/provision.sh --with-oras"
    );
    python
}

const SCRIPT: &str = r#"
import os, sys, oras.client
host, target, content, workdir = sys.argv[1:5]
os.chdir(workdir)
with open("payload.txt", "w") as f:
    f.write(content)
client = oras.client.OrasClient(hostname=host, insecure=True)
try:
    client.push(files=["payload.txt"], target=f"{host}/{target}")
except Exception as e:
    print("push failed:", e)
    sys.exit(3)
pulled = client.pull(target=f"{host}/{target}", outdir="pulled")
print("pulled:", open(pulled[0]).read())
"#;

async fn oras(host: &str, target: &str, content: &str) -> Output {
    let (host, target, content) = (host.to_owned(), target.to_owned(), content.to_owned());
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        Command::new(oras_python())
            .args(["-c", SCRIPT, &host, &target, &content])
            .arg(dir.path())
            .output()
            .expect("run oras-py")
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn oras_pushes_and_pulls_through_tagwarden_and_sees_why_a_release_is_refused() {
    let stack = Stack::start().await;
    let host = stack.front.addr().to_owned();

    let out = oras(&host, "art/app:1.0.0", "first build").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pulled: first build"), "{}", text(&out));

    let out = oras(&host, "art/app:1.0.0", "second build").await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "the re-push fails: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("tag art/app:1.0.0 is immutable: bound to sha256:")
            && text(&out).contains("publish a new version such as 1.0.1 instead"),
        "oras-py shows the reason: {}",
        text(&out)
    );

    // Moving tags move.
    for content in ["one", "two"] {
        let out = oras(&host, "art/app:latest", content).await;
        assert!(
            text(&out).contains(&format!("pulled: {content}")),
            "{}",
            text(&out)
        );
    }
    let db = stack.front.database().expect("tagwarden in front");
    let actions = db.query_column("SELECT action FROM tag_events WHERE tag = 'latest' ORDER BY id");
    assert_eq!(
        actions,
        [Some("create".to_string()), Some("move".to_string())]
    );
}

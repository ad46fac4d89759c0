//! Real clients through tagwarden: docker (dockerd 20.10), podman, buildah and ctr
//! (containerd), each pushing and pulling against the real registry behind tagwarden,
//! and each showing what a user sees when a release tag refuses other bytes.
//!
//! Images are built offline `FROM scratch` with one small file, so every engine makes its
//! own real image (docker's classic builder, podman and buildah build); ctr, which cannot
//! build, pulls images that skopeo pushed from an OCI layout with a real tar layer. Every
//! test starts its own engine (a few seconds) and stops it on drop, panicking or not.
//!
//! The default policy decides the classes asserted here: `1.4.0`, `v2.4.1` (semver) and
//! `git-9f3c2a1`, `a3f2c8d` (commits) are immutable; `1.4`, `v2.4`, `latest`, `staging`,
//! `production` and branch tags like `main-a3f2c8d` match no rule and move.

use crate::support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use support::engines::{Buildah, Containerd, Docker, Podman, Run};
use support::oci::{Blob, Image, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use support::{skopeo, Database, Stack};

/// The ledger of the tagwarden in front (these tests need tagwarden, not direct mode).
fn ledger(stack: &Stack) -> &Database {
    stack
        .front
        .database()
        .expect("the client suite runs with tagwarden in front")
}

/// Actions recorded for `repo:tag`, oldest first.
fn actions(stack: &Stack, repo: &str, tag: &str) -> Vec<String> {
    ledger(stack)
        .query_column(&format!(
            "SELECT action FROM tag_events WHERE repository = '{repo}' AND tag = '{tag}' ORDER BY id"
        ))
        .into_iter()
        .flatten()
        .collect()
}

/// One column of the `create` event of `repo:tag`.
fn created(stack: &Stack, repo: &str, tag: &str, column: &str) -> String {
    ledger(stack)
        .query_column(&format!(
            "SELECT {column} FROM tag_events WHERE repository = '{repo}' AND tag = '{tag}' AND action = 'create'"
        ))
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("no create event with {column} for {repo}:{tag}"))
}

/// The digest the registry itself (not tagwarden) serves for `name_and_tag`.
async fn registry_digest(stack: &Stack, name_and_tag: &str) -> String {
    skopeo::inspect_digest(&stack.registry.docker_ref(name_and_tag))
        .await
        .unwrap_or_else(|e| panic!("the registry serves {name_and_tag}: {e:?}"))
}

/// Asserts a client's output carries tagwarden's refusal for `repo:tag` bound to `digest`.
#[track_caller]
fn assert_refusal_shown(output: &str, repo: &str, tag: &str, digest: &str) {
    let expected = format!("tag {repo}:{tag} is immutable: bound to {digest} since");
    eprintln!(
        "refusal of {repo}:{tag} as the client shows it:\n{}",
        output.trim()
    );
    assert!(
        output.contains(&expected),
        "the client shows why {repo}:{tag} was refused ({expected:?}):\n{output}"
    );
}

/// Content no other test or run shares, so every build is a new digest.
fn unique(label: &str) -> String {
    format!("{label} {}\n", uuid::Uuid::new_v4())
}

/// `<digest>` from docker's `<tag>: digest: <digest> size: N` push line for `tag`.
fn pushed_digest(output: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    output
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no digest line for {tag} in docker push output:\n{output}"))
}

/// `sha256:…` digest printed on the last line (docker/podman `manifest push`).
fn last_digest(output: &str) -> String {
    output
        .split_whitespace()
        .rev()
        .find(|w| w.starts_with("sha256:") && w.len() == 71)
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no digest in output:\n{output}"))
}

fn read_digest_file(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read digest file {}: {e}", path.display()))
        .trim()
        .to_string()
}

// --- docker ---------------------------------------------------------------------------

#[tokio::test]
async fn docker_pushes_repushes_pulls_and_shows_why_a_release_is_refused() {
    let stack = Stack::start().await;
    let docker = Docker::start().await;
    let (client, engine) = docker.versions().await;
    assert_eq!(
        client, engine,
        "the CLI of the engine's own release drives it"
    );
    let image = format!("{}/dock/app", stack.front.addr());
    let release = format!("{image}:1.0.0");

    let id = docker.build(&[&release], &unique("docker first")).await;
    let out = docker.run(&["push", &release]).await.ok();
    let digest = pushed_digest(&out, "1.0.0");
    assert_eq!(registry_digest(&stack, "dock/app:1.0.0").await, digest);
    let agent = created(&stack, "dock/app", "1.0.0", "user_agent");
    assert!(agent.contains("docker/20.10"), "pushed by docker: {agent}");

    // An identical re-push succeeds and names the same digest.
    let out = docker.run(&["push", &release]).await.ok();
    assert_eq!(pushed_digest(&out, "1.0.0"), digest);
    assert_eq!(actions(&stack, "dock/app", "1.0.0"), ["create", "repush"]);

    // Pull by tag, then by digest, into an engine that no longer has the image.
    docker.run(&["image", "rm", "--force", &id]).await.ok();
    let out = docker.run(&["pull", &release]).await.ok();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let repo_digests = docker
        .run(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &release,
        ])
        .await
        .ok();
    assert!(
        repo_digests.contains(&format!("{image}@{digest}")),
        "{repo_digests}"
    );
    docker.run(&["image", "rm", "--force", &id]).await.ok();
    let by_digest = format!("{image}@{digest}");
    let out = docker.run(&["pull", &by_digest]).await.ok();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");

    // `docker manifest inspect` reads the manifest through tagwarden.
    let out = docker
        .run(&["manifest", "inspect", "--insecure", &release])
        .await
        .ok();
    let manifest: Value = serde_json::from_str(&out).expect("manifest inspect prints JSON");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));

    // Other bytes under the release: refused, and docker prints why.
    docker.build(&[&release], &unique("docker other")).await;
    let out = docker.run(&["push", &release]).await.failed();
    assert_refusal_shown(&out, "dock/app", "1.0.0", &digest);
    assert!(out.contains("denied: "), "docker names the code: {out}");
    assert_eq!(registry_digest(&stack, "dock/app:1.0.0").await, digest);
    assert_eq!(
        actions(&stack, "dock/app", "1.0.0"),
        ["create", "repush", "refuse"]
    );
}

#[tokio::test]
async fn docker_logs_in_through_tagwarden_to_a_registry_with_htpasswd() {
    const USER: &str = "ci-pusher";
    const PASSWORD: &str = "s3cret-for-the-test";
    let stack = Stack::start_with_htpasswd(USER, PASSWORD).await;
    let docker = Docker::start().await;
    let host = stack.front.addr().to_string();
    let release = format!("{host}/auth/app:1.0.0");
    docker.build(&[&release], &unique("docker auth")).await;

    let out = docker.run(&["push", &release]).await.failed();
    assert!(
        out.contains("no basic auth credentials") || out.contains("unauthorized"),
        "without a login the registry's challenge reaches docker: {out}"
    );

    let out = docker
        .run_with_stdin(
            &["login", &host, "--username", USER, "--password-stdin"],
            PASSWORD,
        )
        .await
        .ok();
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = docker.run(&["push", &release]).await.ok();
    let digest = pushed_digest(&out, "1.0.0");
    assert_eq!(
        registry_digest_with_auth(&stack, USER, PASSWORD).await,
        digest
    );
    assert_eq!(created(&stack, "auth/app", "1.0.0", "identity"), USER);
    assert_eq!(
        created(&stack, "auth/app", "1.0.0", "identity_verified::text"),
        "true"
    );
    assert!(
        !stack.front.logs().contains(PASSWORD),
        "the password never reaches tagwarden's log"
    );

    docker.run(&["logout", &host]).await.ok();
    docker.run(&["image", "rm", "--force", &release]).await.ok();
    let out = docker.run(&["pull", &release]).await.failed();
    assert!(
        out.contains("no basic auth credentials") || out.contains("unauthorized"),
        "after logout the pull is challenged again: {out}"
    );
}

/// The digest the registry itself serves for `auth/app:1.0.0`, asked with credentials.
async fn registry_digest_with_auth(stack: &Stack, user: &str, password: &str) -> String {
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{user}:{password}"))
        .arg(stack.registry.docker_ref("auth/app:1.0.0"))
        .env("REGISTRY_AUTH_FILE", "/nonexistent/tagwarden-e2e/auth.json")
        .output()
        .expect("run skopeo inspect");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    support::oci::sha256_digest(&raw.stdout)
}

#[tokio::test]
async fn docker_pushes_pulls_and_inspects_a_multi_arch_list_and_sees_it_refused() {
    let stack = Stack::start().await;
    let docker = Docker::start().await;
    let image = format!("{}/dock/multi", stack.front.addr());
    let list = format!("{image}:1.0.0");
    let (amd64, arm64) = (format!("{image}:amd64"), format!("{image}:arm64"));
    docker.build(&[&amd64], &unique("amd64")).await;
    docker.build(&[&arm64], &unique("arm64")).await;
    docker.run(&["push", &amd64]).await.ok();
    docker.run(&["push", &arm64]).await.ok();

    docker
        .run(&["manifest", "create", "--insecure", &list, &amd64, &arm64])
        .await
        .ok();
    docker
        .run(&["manifest", "annotate", "--arch", "arm64", &list, &arm64])
        .await
        .ok();
    let out = docker
        .run(&["manifest", "push", "--insecure", "--purge", &list])
        .await
        .ok();
    let digest = last_digest(&out);
    assert_eq!(registry_digest(&stack, "dock/multi:1.0.0").await, digest);

    let out = docker
        .run(&["manifest", "inspect", "--insecure", &list])
        .await
        .ok();
    let inspected: Value = serde_json::from_str(&out).expect("manifest inspect prints JSON");
    assert_eq!(
        inspected["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let arches: Vec<&str> = inspected["manifests"]
        .as_array()
        .expect("a list of manifests")
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);

    // docker pulls the list by tag and by digest, taking this machine's platform.
    let out = docker.run(&["pull", &list]).await.ok();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let out = docker
        .run(&["pull", &format!("{image}@{digest}")])
        .await
        .ok();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");

    // Another list under the release is refused, with the reason on screen.
    let other = format!("{image}:other");
    docker.build(&[&other], &unique("other")).await;
    docker.run(&["push", &other]).await.ok();
    docker
        .run(&["manifest", "create", "--insecure", &list, &other, &arm64])
        .await
        .ok();
    let out = docker
        .run(&["manifest", "push", "--insecure", "--purge", &list])
        .await
        .failed();
    assert_refusal_shown(&out, "dock/multi", "1.0.0", &digest);
    assert_eq!(registry_digest(&stack, "dock/multi:1.0.0").await, digest);
}

/// The seed "A Tagging Strategy for Releases": one build pushed as `1.4.0`, `1.4`,
/// `latest` and `git-9f3c2a1`; `1.4.1` moves `1.4` and `latest`; a hotfix under `1.4.0`
/// is refused; the ledger answers what shipped as `1.4` before and after.
#[tokio::test]
async fn docker_release_tagging_strategy_with_all_tags() {
    let stack = Stack::start().await;
    let docker = Docker::start().await;
    let image = format!("{}/driftwood/web", stack.front.addr());
    let tagged = |t: &str| format!("{image}:{t}");

    let first_tags = ["1.4.0", "1.4", "latest", "git-9f3c2a1"];
    let first: Vec<String> = first_tags.iter().map(|t| tagged(t)).collect();
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    docker.build(&refs, &unique("web 1.4.0")).await;
    let out = docker.run(&["push", "--all-tags", &image]).await.ok();
    let d140 = pushed_digest(&out, "1.4.0");
    for tag in first_tags {
        assert_eq!(pushed_digest(&out, tag), d140, "{tag} names the one build");
        assert_eq!(
            registry_digest(&stack, &format!("driftwood/web:{tag}")).await,
            d140
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1.4.1: `1.4` and `latest` move with it; the other tags still name 1.4.0 locally.
    docker
        .build(
            &[&tagged("1.4.1"), &tagged("1.4"), &tagged("latest")],
            &unique("web 1.4.1"),
        )
        .await;
    let out = docker.run(&["push", "--all-tags", &image]).await.ok();
    let d141 = pushed_digest(&out, "1.4.1");
    assert_ne!(d141, d140);
    for (tag, digest) in [
        ("1.4.0", &d140),
        ("git-9f3c2a1", &d140),
        ("1.4.1", &d141),
        ("1.4", &d141),
        ("latest", &d141),
    ] {
        assert_eq!(
            &registry_digest(&stack, &format!("driftwood/web:{tag}")).await,
            digest,
            "{tag}"
        );
    }
    assert_eq!(actions(&stack, "driftwood/web", "1.4"), ["create", "move"]);
    assert_eq!(
        actions(&stack, "driftwood/web", "latest"),
        ["create", "move"]
    );
    assert_eq!(
        actions(&stack, "driftwood/web", "1.4.0"),
        ["create", "repush"],
        "--all-tags re-pushed the release unchanged"
    );

    // A hotfix rebuilt under 1.4.0 is refused; 1.4.0 still ships what it shipped.
    docker
        .build(&[&tagged("1.4.0")], &unique("web 1.4.0 hotfix"))
        .await;
    let out = docker.run(&["push", &tagged("1.4.0")]).await.failed();
    assert_refusal_shown(&out, "driftwood/web", "1.4.0", &d140);
    assert_eq!(registry_digest(&stack, "driftwood/web:1.4.0").await, d140);

    // The same hotfix with `--all-tags`: docker pushes the tags in name order and stops at
    // the refused one, so `1.4` (before it) is re-pushed and `latest` (after) is not.
    let latest_events = actions(&stack, "driftwood/web", "latest").len();
    let out = docker.run(&["push", "--all-tags", &image]).await.failed();
    assert_refusal_shown(&out, "driftwood/web", "1.4.0", &d140);
    assert_eq!(
        actions(&stack, "driftwood/web", "1.4"),
        ["create", "move", "repush"]
    );
    assert_eq!(
        actions(&stack, "driftwood/web", "latest").len(),
        latest_events,
        "docker stopped at the refused tag: {out}"
    );

    // What shipped as 1.4, before and after 1.4.1, from the ledger.
    let before = resolve(&stack, "driftwood/web:1.4", Some(&between));
    assert_eq!(before["digest"], d140.as_str(), "{before}");
    let now = resolve(&stack, "driftwood/web:1.4", None);
    assert_eq!(now["digest"], d141.as_str(), "{now}");
    let release = resolve(&stack, "driftwood/web:1.4.0", None);
    assert_eq!(release["digest"], d140.as_str(), "{release}");
    assert_eq!(release["event"]["class"], "immutable");
}

/// `tagwarden resolve REF [--at T] --json` against the ledger of the stack.
fn resolve(stack: &Stack, reference: &str, at: Option<&str>) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tagwarden"));
    command
        .args(["resolve", reference, "--json", "--database-url"])
        .arg(ledger(stack).url());
    if let Some(at) = at {
        command.args(["--at", at]);
    }
    let out = command.output().expect("run tagwarden resolve");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tagwarden resolve {reference}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("resolve prints JSON ({e}): {stdout}"))
}

/// The Docker course pipeline: `v2.4.1`, `v2.4`, `latest` pushed together; `v2.4.2`
/// moves `v2.4` and `latest`; other bytes on `v2.4.1` or on the commit tag `a3f2c8d`
/// are refused; `staging` and `production` are promoted by retagging a commit build and
/// rolled back; `main-<sha>` branch tags move.
#[tokio::test]
async fn docker_course_pipeline_releases_promotes_and_rolls_back() {
    let stack = Stack::start().await;
    let docker = Docker::start().await;
    let image = format!("{}/course/api", stack.front.addr());
    let tagged = |t: &str| format!("{image}:{t}");
    let push = |tag: &str| {
        let reference = tagged(tag);
        let docker = &docker;
        async move { docker.run(&["push", &reference]).await }
    };

    // Commit a3f2c8d builds v2.4.1.
    let first = ["a3f2c8d", "main-a3f2c8d", "v2.4.1", "v2.4", "latest"];
    let refs: Vec<String> = first.iter().map(|t| tagged(t)).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    docker.build(&refs, &unique("api v2.4.1")).await;
    let mut d241 = String::new();
    for tag in first {
        d241 = pushed_digest(&push(tag).await.ok(), tag);
    }
    // Commit b71e4d0 builds v2.4.2: v2.4 and latest move.
    let second = ["b71e4d0", "main-b71e4d0", "v2.4.2", "v2.4", "latest"];
    let refs: Vec<String> = second.iter().map(|t| tagged(t)).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    docker.build(&refs, &unique("api v2.4.2")).await;
    let mut d242 = String::new();
    for tag in second {
        d242 = pushed_digest(&push(tag).await.ok(), tag);
    }
    assert_ne!(d241, d242);
    for (tag, digest) in [
        ("v2.4.1", &d241),
        ("a3f2c8d", &d241),
        ("v2.4.2", &d242),
        ("v2.4", &d242),
        ("latest", &d242),
    ] {
        assert_eq!(
            &registry_digest(&stack, &format!("course/api:{tag}")).await,
            digest,
            "{tag}"
        );
    }

    // Other bytes on a release or a commit tag: refused, reason shown.
    docker
        .build(
            &[&tagged("v2.4.1"), &tagged("a3f2c8d")],
            &unique("api tampered"),
        )
        .await;
    for tag in ["v2.4.1", "a3f2c8d"] {
        let out = push(tag).await.failed();
        assert_refusal_shown(&out, "course/api", tag, &d241);
        assert_eq!(
            registry_digest(&stack, &format!("course/api:{tag}")).await,
            d241
        );
    }

    // Promotion by retagging commit builds, then a rollback of production.
    docker.run(&["pull", &tagged("b71e4d0")]).await.ok();
    docker.run(&["pull", &tagged("a3f2c8d")]).await.ok();
    for (env, commit, digest) in [
        ("staging", "a3f2c8d", &d241),
        ("staging", "b71e4d0", &d242),
        ("production", "b71e4d0", &d242),
        ("production", "a3f2c8d", &d241),
    ] {
        docker
            .run(&["tag", &tagged(commit), &tagged(env)])
            .await
            .ok();
        let out = push(env).await.ok();
        assert_eq!(&pushed_digest(&out, env), digest, "{env} <- {commit}");
        assert_eq!(
            &registry_digest(&stack, &format!("course/api:{env}")).await,
            digest,
            "{env} <- {commit}"
        );
    }
    assert_eq!(
        actions(&stack, "course/api", "production"),
        ["create", "move"],
        "the rollback is recorded as a move"
    );

    // A branch tag is not a commit tag: it moves when the branch is rebuilt.
    docker
        .build(&[&tagged("main-a3f2c8d")], &unique("api rebuilt"))
        .await;
    push("main-a3f2c8d").await.ok();
    assert_eq!(
        actions(&stack, "course/api", "main-a3f2c8d"),
        ["create", "move"]
    );

    for (tag, class) in [
        ("v2.4.1", "immutable"),
        ("a3f2c8d", "immutable"),
        ("v2.4", "moving"),
        ("latest", "moving"),
        ("main-a3f2c8d", "moving"),
        ("staging", "moving"),
        ("production", "moving"),
    ] {
        assert_eq!(created(&stack, "course/api", tag, "class"), class, "{tag}");
    }
}

// --- podman and buildah ---------------------------------------------------------------

#[tokio::test]
async fn podman_pushes_repushes_pulls_and_shows_refusals() {
    let stack = Stack::start().await;
    let podman = Podman::new();
    let image = format!("{}/pod/app", stack.front.addr());
    let release = format!("{image}:1.0.0");
    let scratch = tempfile::tempdir().unwrap();
    let digest_file = scratch.path().join("digest");
    let digest_arg = digest_file.display().to_string();

    let id = podman.build(&release, &unique("podman first")).await;
    let push = [
        "push",
        "--tls-verify=false",
        "--digestfile",
        &digest_arg,
        &release,
    ];
    podman.run(&push).await.ok();
    let digest = read_digest_file(&digest_file);
    assert_eq!(registry_digest(&stack, "pod/app:1.0.0").await, digest);
    let agent = created(&stack, "pod/app", "1.0.0", "user_agent");
    assert!(agent.contains("containers/"), "pushed by podman: {agent}");
    podman.run(&push).await.ok();
    assert_eq!(read_digest_file(&digest_file), digest, "identical re-push");
    assert!(!actions(&stack, "pod/app", "1.0.0").contains(&"refuse".to_string()));

    podman.run(&["rmi", "--force", &id]).await.ok();
    podman
        .run(&["pull", "--tls-verify=false", &release])
        .await
        .ok();
    let by_digest = format!("{image}@{digest}");
    podman
        .run(&["pull", "--tls-verify=false", &by_digest])
        .await
        .ok();

    podman.build(&release, &unique("podman other")).await;
    let out = podman.run(&push).await.failed();
    assert_refusal_shown(&out, "pod/app", "1.0.0", &digest);
    assert_eq!(registry_digest(&stack, "pod/app:1.0.0").await, digest);

    // An index under a release, then another index under it.
    let list = format!("{image}-multi:2.0.0");
    let target = format!("docker://{list}");
    let (amd64, arm64) = (format!("{image}:amd64"), format!("{image}:arm64"));
    podman.build(&amd64, &unique("podman amd64")).await;
    podman.build(&arm64, &unique("podman arm64")).await;
    podman.run(&["manifest", "create", &list]).await.ok();
    for (arch, img) in [("amd64", &amd64), ("arm64", &arm64)] {
        let source = format!("containers-storage:{img}");
        podman
            .run(&["manifest", "add", "--arch", arch, &list, &source])
            .await
            .ok();
    }
    let push_list = [
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--digestfile",
        &digest_arg,
        &list,
        &target,
    ];
    podman.run(&push_list).await.ok();
    let index_digest = read_digest_file(&digest_file);
    assert_eq!(
        registry_digest(&stack, "pod/app-multi:2.0.0").await,
        index_digest
    );

    podman.run(&["manifest", "rm", &list]).await.ok();
    podman.run(&["manifest", "create", &list]).await.ok();
    let other = format!("{image}:other");
    podman.build(&other, &unique("podman other arch")).await;
    let source = format!("containers-storage:{other}");
    podman.run(&["manifest", "add", &list, &source]).await.ok();
    let out = podman.run(&push_list).await.failed();
    assert_refusal_shown(&out, "pod/app-multi", "2.0.0", &index_digest);
    assert_eq!(
        registry_digest(&stack, "pod/app-multi:2.0.0").await,
        index_digest
    );
    // podman retries a refused OCI index as a Docker manifest list with the same
    // platform manifests: the user sees the refusal for both formats, and the one push
    // is recorded once.
    assert!(
        out.contains("application/vnd.oci.image.index.v1+json")
            && out.contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "podman tried both list formats: {out}"
    );
    let refusals = actions(&stack, "pod/app-multi", "2.0.0")
        .iter()
        .filter(|a| *a == "refuse")
        .count();
    assert_eq!(refusals, 1, "one refused podman push, one recorded refusal");
    // Pushing it again later is another attempt, and is recorded; the retry window
    // is per process and short, so push other content instead of waiting it out.
    podman.run(&["manifest", "rm", &list]).await.ok();
    podman.run(&["manifest", "create", &list]).await.ok();
    let third = format!("{image}:third");
    podman.build(&third, &unique("podman third arch")).await;
    let source = format!("containers-storage:{third}");
    podman.run(&["manifest", "add", &list, &source]).await.ok();
    let again = podman.run(&push_list).await.failed();
    let refusals = actions(&stack, "pod/app-multi", "2.0.0")
        .iter()
        .filter(|a| *a == "refuse")
        .count();
    assert_eq!(refusals, 2, "another list is another attempt: {again}");
}

#[tokio::test]
async fn buildah_pushes_repushes_pulls_and_shows_refusals() {
    let stack = Stack::start().await;
    let buildah = Buildah::new();
    let image = format!("{}/bah/app", stack.front.addr());
    let release = format!("{image}:1.0.0");
    let scratch = tempfile::tempdir().unwrap();
    let digest_file = scratch.path().join("digest");
    let digest_arg = digest_file.display().to_string();

    let id = buildah.build(&release, &unique("buildah first")).await;
    let push = [
        "push",
        "--tls-verify=false",
        "--digestfile",
        &digest_arg,
        &release,
    ];
    buildah.run(&push).await.ok();
    let digest = read_digest_file(&digest_file);
    assert_eq!(registry_digest(&stack, "bah/app:1.0.0").await, digest);
    let agent = created(&stack, "bah/app", "1.0.0", "user_agent");
    assert!(agent.contains("Buildah"), "pushed by buildah: {agent}");

    buildah.run(&push).await.ok();
    assert_eq!(read_digest_file(&digest_file), digest, "identical re-push");
    assert!(!actions(&stack, "bah/app", "1.0.0").contains(&"refuse".to_string()));

    buildah.run(&["rmi", "--force", &id]).await.ok();
    buildah
        .run(&["pull", "--tls-verify=false", &release])
        .await
        .ok();
    let by_digest = format!("{image}@{digest}");
    buildah
        .run(&["pull", "--tls-verify=false", &by_digest])
        .await
        .ok();

    buildah.build(&release, &unique("buildah other")).await;
    let out = buildah.run(&push).await.failed();
    assert_refusal_shown(&out, "bah/app", "1.0.0", &digest);
    assert_eq!(registry_digest(&stack, "bah/app:1.0.0").await, digest);
}

// --- ctr (containerd) -----------------------------------------------------------------

/// A POSIX tar archive holding one regular file: a layer containerd can unpack.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut field = |at: usize, value: &[u8]| header[at..at + value.len()].copy_from_slice(value);
    field(0, name.as_bytes());
    field(100, b"0000644\0");
    field(108, b"0000000\0");
    field(116, b"0000000\0");
    field(124, format!("{:011o}\0", content.len()).as_bytes());
    field(136, b"00000000000\0");
    field(148, b"        ");
    field(156, b"0");
    field(257, b"ustar\0");
    field(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// A linux/amd64 OCI image whose one layer is a real tar of `/f`.
fn tar_image(content: &str) -> Image {
    let layer = Blob::new(OCI_LAYER_TAR, tar_with_file("f", content.as_bytes()));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    Image {
        manifest: Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()),
        config,
        layers: vec![layer],
        architecture: "amd64".into(),
    }
}

/// Puts `image` into containerd as `reference` the way a user would: skopeo pushes it
/// through tagwarden under a moving tag, ctr pulls it and tags it.
async fn load_into_containerd(
    stack: &Stack,
    ctr: &Containerd,
    image: &Image,
    seed_tag: &str,
    reference: &str,
) {
    skopeo::push(
        image,
        &stack.front.docker_ref(&format!("seed/ctr:{seed_tag}")),
    )
    .await
    .assert_success();
    let seed = format!("{}/seed/ctr:{seed_tag}", stack.front.addr());
    ctr.ctr(&["images", "pull", "--plain-http", &seed])
        .await
        .ok();
    ctr.ctr(&["images", "tag", "--force", &seed, reference])
        .await
        .ok();
}

/// Pushes a release with ctr, re-pushes it, pulls it by digest, then pushes other bytes
/// under it; returns what ctr printed for the refusal.
async fn ctr_refused_push() -> (Stack, Run) {
    let stack = Stack::start().await;
    let ctr = Containerd::start().await;
    let release = format!("{}/ctr/app:1.0.0", stack.front.addr());
    let first = tar_image(&unique("ctr first"));
    load_into_containerd(&stack, &ctr, &first, "a", &release).await;

    ctr.ctr(&["images", "push", "--plain-http", &release])
        .await
        .ok();
    assert_eq!(
        registry_digest(&stack, "ctr/app:1.0.0").await,
        first.digest()
    );
    let agent = created(&stack, "ctr/app", "1.0.0", "user_agent");
    assert!(
        agent.contains("containerd/"),
        "pushed by containerd: {agent}"
    );
    ctr.ctr(&["images", "push", "--plain-http", &release])
        .await
        .ok();
    ctr.ctr(&["images", "rm", &release]).await.ok();
    let by_digest = format!("{}/ctr/app@{}", stack.front.addr(), first.digest());
    ctr.ctr(&["images", "pull", "--plain-http", &by_digest])
        .await
        .ok();
    ctr.ctr(&["images", "pull", "--plain-http", &release])
        .await
        .ok();

    let other = tar_image(&unique("ctr other"));
    load_into_containerd(&stack, &ctr, &other, "b", &release).await;
    let refused = ctr.ctr(&["images", "push", "--plain-http", &release]).await;
    assert!(!refused.success(), "other bytes are refused: {refused:?}");
    assert_eq!(
        registry_digest(&stack, "ctr/app:1.0.0").await,
        first.digest()
    );
    assert_eq!(
        actions(&stack, "ctr/app", "1.0.0")
            .last()
            .map(String::as_str),
        Some("refuse")
    );
    (stack, refused)
}

#[tokio::test]
async fn ctr_pushes_pulls_and_prints_409_for_a_refused_release() {
    let (_stack, refused) = ctr_refused_push().await;
    let status_line = refused
        .text()
        .lines()
        .find(|l| l.contains("unexpected status:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("ctr prints the status line: {refused:?}"));
    assert!(status_line.contains("409"), "{status_line}");
}

/// ctr shows only the status line of a refusal, so the message has to travel in the
/// HTTP/1.1 reason phrase.
#[tokio::test]
async fn ctr_status_line_carries_the_refusal_message() {
    let (_stack, refused) = ctr_refused_push().await;
    let status_line = refused
        .text()
        .lines()
        .find(|l| l.contains("unexpected status:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("ctr prints the status line: {refused:?}"));
    assert!(
        status_line.contains("409") && status_line.contains("tag ctr/app:1.0.0 is immutable"),
        "the reason phrase names the refusal: {status_line}"
    );
}

/// The shipped config's commented `snapshots` rule, uncommented: what a team that uses
/// `v<N>` and `main-<sha>` as snapshots (Dokku, digger) puts in its configuration.
fn snapshot_rule() -> String {
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/tagwarden.toml"
    ))
    .expect("read config/tagwarden.toml");
    let start = config
        .find("# [[policy.rules]]\n# name = \"snapshots\"")
        .expect("the snapshots example in config/tagwarden.toml");
    config[start..]
        .lines()
        .take_while(|l| l.starts_with("# ") && !l.trim_end().eq("#"))
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// digger's `dg env push --tag v1` and Dokku's `tags:create app v1` retag a build and push
/// it from CI. With the snapshot rule, `v1` and `main-<sha>` are bound once, by the CI
/// identity; without it `v1` moves (the default, a major-version tag).
#[tokio::test]
async fn docker_snapshot_tags_pushed_from_a_ci_identity() {
    const USER: &str = "ci-bot";
    const PASSWORD: &str = "pipeline-secret-0123";
    let registry = support::Registry::start_with_htpasswd(USER, PASSWORD).await;
    let front = support::Front::builder(&registry.url())
        .with(|b| b.config(&format!("[policy]\n{}\n", snapshot_rule())))
        .start()
        .await;
    let stack = Stack { front, registry };
    let docker = Docker::start().await;
    let host = stack.front.addr().to_string();
    docker
        .run_with_stdin(
            &["login", &host, "--username", USER, "--password-stdin"],
            PASSWORD,
        )
        .await
        .ok();
    let (v1, branch) = (
        format!("{host}/shop/app:v1"),
        format!("{host}/shop/app:main-a3f2c8d"),
    );
    docker.build(&[&v1, &branch], &unique("snapshot one")).await;
    let out = docker.run(&["push", &v1]).await.ok();
    let digest = pushed_digest(&out, "v1");
    docker.run(&["push", &branch]).await.ok();
    for tag in ["v1", "main-a3f2c8d"] {
        assert_eq!(actions(&stack, "shop/app", tag), ["create"], "{tag}");
        assert_eq!(created(&stack, "shop/app", tag, "identity"), USER);
        assert_eq!(
            created(&stack, "shop/app", tag, "identity_verified::text"),
            "true"
        );
        assert_eq!(created(&stack, "shop/app", tag, "class"), "immutable");
    }

    // The next build retagged as v1 is refused: the snapshot stays what it was.
    docker.build(&[&v1], &unique("snapshot two")).await;
    let out = docker.run(&["push", &v1]).await.failed();
    assert_refusal_shown(&out, "shop/app", "v1", &digest);

    // Without the rule, v1 is a moving major-version tag.
    let moving = Stack::start().await;
    let host = moving.front.addr().to_string();
    let v1 = format!("{host}/shop/app:v1");
    docker.build(&[&v1], &unique("moving one")).await;
    docker.run(&["push", &v1]).await.ok();
    docker.build(&[&v1], &unique("moving two")).await;
    docker.run(&["push", &v1]).await.ok();
    assert_eq!(actions(&moving, "shop/app", "v1"), ["create", "move"]);
}

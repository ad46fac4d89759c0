//! tagwarden in front of a second, unrelated registry: zuul-registry 1.3 (Python,
//! CherryPy), which always wants a bearer token from its own token service, has no
//! manifest DELETE, no referrers API and no `?tag=`. skopeo does the whole bearer flow
//! through tagwarden: the challenge comes from zuul-registry, the token from its realm.
//!
//! What zuul-registry answers, as these tests pin it down:
//! - `GET /v2/` without a token: 401 `Bearer realm="<url>/auth/token",scope="read"`,
//!   an HTML body; with a read-only user configured, anonymous reads are off.
//! - Its tokens are HS256 JWTs whose payload is only `{"level":"read"|"write"}`: no
//!   `sub`, no user name, so the ledger cannot name the pusher.
//! - `POST /v2/<name>/blobs/uploads/` (tagwarden's push-access check): 202 with a
//!   relative `Location` for a write token, 401 with the challenge otherwise; the
//!   cancelling `DELETE` of the upload answers 404 (there is no such route).
//! - `DELETE /v2/<name>/manifests/<ref>`: 404, an HTML body, nothing removed.

use crate::support;

use reqwest::{Method, StatusCode};
use support::consistency::assert_live_bindings_are;
use support::http::{client, expect_oci_error, header};
use support::skopeo::{self, SkopeoOutput};
use support::zuul::{ro_creds, rw_creds, Zuul};
use support::{Blob, Database, Image, Index, OciLayout, Tagwarden};

/// zuul-registry, a fresh ledger, and tagwarden in front with default settings.
/// Fields drop in order: tagwarden stops before its database and registry go.
struct Stack {
    tw: Tagwarden,
    db: Database,
    zuul: Zuul,
}

impl Stack {
    async fn start() -> Stack {
        let zuul = Zuul::start().await;
        let db = Database::fresh();
        let tw = Tagwarden::builder(&zuul.url(), db.url()).start().await;
        Stack { tw, db, zuul }
    }

    /// tagwarden's and zuul-registry's logs, for assertion messages.
    fn logs(&self) -> String {
        format!(
            "--- tagwarden ---\n{}\n--- zuul-registry ---\n{}",
            self.tw.logs(),
            self.zuul.logs()
        )
    }
}

/// skopeo pushes `image` to `dest`, every digest preserved.
async fn push(image: &Image, dest: &str, creds: Option<&str>) -> SkopeoOutput {
    let layout = OciLayout::with_image(image);
    let mut copy = skopeo::copy(&layout.reference(), dest).preserve_digests();
    if let Some(c) = creds {
        copy = copy.dest_creds(c);
    }
    copy.run().await
}

/// skopeo pulls `src` into a fresh layout and returns the digest of what it got.
async fn pull(src: &str, creds: &str) -> String {
    let pulled = OciLayout::empty();
    skopeo::copy(src, &pulled.reference())
        .src_creds(creds)
        .run()
        .await
        .assert_success();
    pulled.manifest_digest()
}

/// Every event of `repo`, oldest first: `action tag digest identity verified`.
fn events(db: &Database, repo: &str) -> Vec<String> {
    db.query_column(&format!(
        "SELECT action || ' ' || coalesce(tag, '-') || ' ' || coalesce(digest, '-') || ' '
                || coalesce(identity, '-') || ' ' || identity_verified::text
         FROM tag_events WHERE repository = '{repo}' ORDER BY id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

/// The ledger's live bindings of each repository are exactly the tags zuul-registry
/// serves, at the digests it serves them; read as the read-write user, because
/// zuul-registry answers nothing without a token.
async fn assert_ledger_matches_zuul(db: &Database, zuul: &Zuul, repos: &[&str]) {
    for repo in repos {
        let mut served = Vec::new();
        // zuul-registry lists a manifest pushed by digest as a "tag" named after the
        // digest; no client can name it as a tag, so it is nobody's binding.
        for tag in zuul
            .tags(repo)
            .await
            .into_iter()
            .filter(|t| !t.contains(':'))
        {
            let digest = zuul
                .resolve(repo, &tag)
                .await
                .unwrap_or_else(|| panic!("{repo}:{tag} is listed but does not resolve"));
            served.push((tag, digest));
        }
        assert_live_bindings_are(db, repo, served, "zuul-registry");
    }
}

#[tokio::test]
async fn releases_stay_put_and_moving_tags_move_in_front_of_zuul() {
    let s = Stack::start().await;
    let repo = "team/app";
    let (release, other, first, second) = (
        Image::random(&[700, 300]),
        Image::random(&[700]),
        Image::random(&[500]),
        Image::random(&[500]),
    );
    let rw = rw_creds();
    let at = |tag: &str| s.tw.docker_ref(&format!("{repo}:{tag}"));

    push(&release, &at("1.0.0"), Some(&rw))
        .await
        .assert_success();
    push(&first, &at("latest"), Some(&rw))
        .await
        .assert_success();
    assert_eq!(
        s.zuul.resolve(repo, "1.0.0").await.as_deref(),
        Some(release.digest())
    );

    // Pull by tag and by digest, through tagwarden, with a token for pulling.
    assert_eq!(pull(&at("1.0.0"), &rw).await, release.digest());
    let by_digest = s.tw.docker_ref(&format!("{repo}@{}", release.digest()));
    assert_eq!(pull(&by_digest, &ro_creds()).await, release.digest());

    // An identical re-push is fine.
    push(&release, &at("1.0.0"), Some(&rw))
        .await
        .assert_success();

    // Other bytes under the release: tagwarden's refusal, and zuul keeps the first.
    let stderr = push(&other, &at("1.0.0"), Some(&rw)).await.assert_failure();
    let expected = format!(
        "tag {repo}:1.0.0 is immutable: bound to {} since",
        release.digest()
    );
    assert!(
        stderr.contains(&expected),
        "skopeo should show {expected:?}; it printed:\n{stderr}\n{}",
        s.logs()
    );
    assert_eq!(
        s.zuul.resolve(repo, "1.0.0").await.as_deref(),
        Some(release.digest()),
        "zuul-registry must still serve the first digest"
    );

    // The moving tag moves.
    push(&second, &at("latest"), Some(&rw))
        .await
        .assert_success();
    assert_eq!(
        s.zuul.resolve(repo, "latest").await.as_deref(),
        Some(second.digest())
    );
    assert_eq!(pull(&at("latest"), &rw).await, second.digest());

    // zuul-registry's tokens carry no `sub` and no user name, so no identity can be
    // recorded, and an absent identity is never "verified". What a row can name is the
    // client: its user agent.
    let none = "- false";
    assert_eq!(
        events(&s.db, repo),
        vec![
            format!("create 1.0.0 {} {none}", release.digest()),
            format!("create latest {} {none}", first.digest()),
            format!("repush 1.0.0 {} {none}", release.digest()),
            format!("refuse 1.0.0 {} {none}", other.digest()),
            format!("move latest {} {none}", second.digest()),
        ],
        "{}",
        s.logs()
    );
    let agents = s.db.query_column(&format!(
        "SELECT coalesce(user_agent, '-') FROM tag_events WHERE repository = '{repo}'"
    ));
    assert!(
        agents
            .iter()
            .flatten()
            .all(|a| a.to_lowercase().contains("skopeo")),
        "every event names skopeo as the client: {agents:?}"
    );
    assert_ledger_matches_zuul(&s.db, &s.zuul, &[repo]).await;
}

/// `PUT /v2/<repo>/manifests/<reference>` of `manifest` through `base`, with
/// `authorization` if given.
async fn put_as(
    base: &str,
    repo: &str,
    reference: &str,
    manifest: &Blob,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", &manifest.media_type)
        .body(manifest.bytes.clone());
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("PUT manifest")
}

/// `method url`, with `authorization` if given and no body.
async fn call(method: Method, url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = client().request(method, url).header("content-length", "0");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("request")
}

/// How many events of `action` the ledger holds for `repo`.
fn count(db: &Database, repo: &str, action: &str) -> usize {
    db.query_column(&format!(
        "SELECT id::text FROM tag_events WHERE repository = '{repo}' AND action = '{action}'"
    ))
    .len()
}

#[tokio::test]
async fn clients_without_push_access_get_zuuls_answer_not_a_refusal() {
    let s = Stack::start().await;
    let repo = "locked/app";
    let (release, other) = (Image::random(&[600]), Image::random(&[600]));
    let at = |tag: &str| s.tw.docker_ref(&format!("{repo}:{tag}"));
    push(&release, &at("1.0.0"), Some(&rw_creds()))
        .await
        .assert_success();

    // skopeo with a wrong password, none, or the read-only user's: zuul-registry's
    // token service turns the push scope down, so the push ends before any manifest.
    for creds in [Some("writer:wrong-password"), None, Some(&ro_creds()[..])] {
        let stderr = push(&other, &at("1.0.0"), creds).await.assert_failure();
        assert!(
            stderr.contains("unauthorized: authentication required")
                && !stderr.contains("immutable"),
            "creds {creds:?}: zuul-registry's denial, not tagwarden's refusal:\n{stderr}"
        );
    }
    // The read-only user pulls.
    assert_eq!(pull(&at("1.0.0"), &ro_creds()).await, release.digest());

    // The same manifest PUT by hand, past the token service: tagwarden's access check
    // (a blob upload started with the client's credentials) gets zuul-registry's 401,
    // and hands that on.
    let challenge = format!(
        "Bearer realm=\"{}/auth/token\",scope=\"write\"",
        s.zuul.url()
    );
    let read_token = s
        .zuul
        .token(Some(&ro_creds()), &format!("repository:{repo}:pull"))
        .await
        .expect("a read token for the read-only user");
    for auth in [None, Some(format!("Bearer {read_token}"))] {
        let resp = put_as(&s.tw.url(), repo, "1.0.0", &other.manifest, auth.as_deref()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            header(&resp, "www-authenticate").as_deref(),
            Some(&challenge[..]),
            "zuul-registry's own challenge"
        );
        let body = resp.text().await.unwrap();
        assert!(!body.contains("immutable"), "{body}");
    }
    // A token zuul-registry cannot decode makes it answer 500: the check cannot be
    // made, so the write fails closed.
    let resp = put_as(
        &s.tw.url(),
        repo,
        "1.0.0",
        &other.manifest,
        Some("Bearer not.a.token"),
    )
    .await;
    let error = expect_oci_error(resp, StatusCode::BAD_GATEWAY, "undecodable token").await;
    assert_eq!(error.code, "UNAVAILABLE");
    assert!(error.message.contains("500"), "{}", error.message);

    assert_eq!(count(&s.db, repo, "refuse"), 0, "{:?}", events(&s.db, repo));
    assert_eq!(
        s.zuul.resolve(repo, "1.0.0").await.as_deref(),
        Some(release.digest())
    );
    assert_ledger_matches_zuul(&s.db, &s.zuul, &[repo]).await;
}

/// tagwarden's push-access check, asked of zuul-registry directly: the upload starts for
/// a write token (a relative `Location`), the cancel answers 404 (zuul-registry has no
/// route for it; tagwarden takes 404 as done), and a read token is challenged.
#[tokio::test]
async fn zuul_answers_the_access_check_the_way_tagwarden_expects() {
    let zuul = Zuul::start().await;
    let repo = "probe/app";
    let uploads = format!("{}/v2/{repo}/blobs/uploads/", zuul.url());

    // What tagwarden's detection sees: an anonymous `GET /v2/` is challenged.
    let resp = call(Method::GET, &format!("{}/v2/", zuul.url()), None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"{}/auth/token\",scope=\"read\"",
            zuul.url()
        ))
    );

    let rw = zuul.rw_bearer(repo).await;
    let resp = call(Method::POST, &uploads, Some(&rw)).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location").expect("an upload Location");
    assert!(
        location.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{location}"
    );
    let resp = call(
        Method::DELETE,
        &format!("{}{location}", zuul.url()),
        Some(&rw),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let read = zuul
        .token(Some(&ro_creds()), &format!("repository:{repo}:pull"))
        .await
        .expect("a read token");
    for auth in [None, Some(format!("Bearer {read}"))] {
        let resp = call(Method::POST, &uploads, auth.as_deref()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(header(&resp, "www-authenticate")
            .unwrap_or_default()
            .starts_with("Bearer realm="));
    }
    // The read-only user cannot get a push token at all.
    assert_eq!(
        zuul.token(Some(&ro_creds()), &format!("repository:{repo}:pull,push"))
            .await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn deletes_get_zuuls_answer_and_mark_nothing_deleted() {
    let s = Stack::start().await;
    let repo = "gone/app";
    let (release, moving) = (Image::random(&[400]), Image::random(&[400]));
    let at = |tag: &str| s.tw.docker_ref(&format!("{repo}:{tag}"));
    push(&release, &at("1.0.0"), Some(&rw_creds()))
        .await
        .assert_success();
    push(&moving, &at("latest"), Some(&rw_creds()))
        .await
        .assert_success();

    // skopeo resolves the moving tag, then deletes by digest: tagwarden forwards it, and
    // zuul-registry, which has no manifest DELETE, answers 404 with an HTML page.
    let stderr = skopeo::delete_with_creds(&at("latest"), &rw_creds())
        .await
        .assert_failure();
    assert!(
        stderr.contains(&format!(
            "Failed to delete /v2/{repo}/manifests/{}",
            moving.digest()
        )) && stderr.contains("404 Not Found"),
        "{stderr}"
    );
    // A delete by tag: the same 404, passed on as zuul-registry sent it.
    let rw = s.zuul.rw_bearer(repo).await;
    let resp = call(
        Method::DELETE,
        &format!("{}/v2/{repo}/manifests/latest", s.tw.url()),
        Some(&rw),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(header(&resp, "content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("was not found"));

    // The release: tagwarden refuses before zuul-registry is asked.
    let stderr = skopeo::delete_with_creds(&at("1.0.0"), &rw_creds())
        .await
        .assert_failure();
    assert!(
        stderr.contains("immutable tag(s) 1.0.0 name it") && stderr.contains("405"),
        "{stderr}"
    );

    // Nothing was deleted, in zuul-registry or in the ledger.
    assert_eq!(
        s.zuul.resolve(repo, "latest").await.as_deref(),
        Some(moving.digest())
    );
    assert_eq!(count(&s.db, repo, "delete"), 0, "{:?}", events(&s.db, repo));
    assert_eq!(
        s.db.query_column(&format!(
            "SELECT tag FROM tag_bindings WHERE repository = '{repo}' AND deleted_at IS NOT NULL"
        )),
        Vec::<Option<String>>::new()
    );
    assert_ledger_matches_zuul(&s.db, &s.zuul, &[repo]).await;
}

/// zuul-registry has no `?tag=`: CherryPy turns the unknown query parameter into a 404
/// for the whole PUT, so nothing is tagged and tagwarden binds nothing.
#[tokio::test]
async fn a_digest_push_with_tag_parameters_binds_nothing_on_zuul() {
    let s = Stack::start().await;
    let repo = "bytag/app";
    let image = Image::random(&[300]);
    push(
        &image,
        &s.tw.docker_ref(&format!("{repo}:1.0.0")),
        Some(&rw_creds()),
    )
    .await
    .assert_success();
    let rw = s.zuul.rw_bearer(repo).await;
    let resp = put_as(
        &s.tw.url(),
        repo,
        &format!("{}?tag=2.0.0&tag=stable", image.digest()),
        &image.manifest,
        Some(&rw),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.zuul.tags(repo).await, vec!["1.0.0".to_string()]);
    assert_eq!(
        events(&s.db, repo),
        vec![format!("create 1.0.0 {} - false", image.digest())]
    );
    assert_ledger_matches_zuul(&s.db, &s.zuul, &[repo]).await;
}

/// A delete of a release tells nothing to a client zuul-registry would not let read the
/// repository: it gets zuul-registry's own challenge, and nothing is recorded. A client
/// that may read it (a read token) learns which release names the manifest, which it
/// could list itself, and that refusal is recorded.
#[tokio::test]
async fn deletes_of_a_release_tell_only_clients_zuul_lets_read_it() {
    let s = Stack::start().await;
    let repo = "nodelete/app";
    let release = Image::random(&[300]);
    push(
        &release,
        &s.tw.docker_ref(&format!("{repo}:1.0.0")),
        Some(&rw_creds()),
    )
    .await
    .assert_success();
    let read = s
        .zuul
        .token(Some(&ro_creds()), &format!("repository:{repo}:pull"))
        .await
        .expect("a read token");
    for reference in ["1.0.0".to_string(), release.digest().to_string()] {
        let url = format!("{}/v2/{repo}/manifests/{reference}", s.tw.url());
        let resp = call(Method::DELETE, &url, None).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{reference}");
        assert!(!resp.text().await.unwrap().contains(release.digest()));
    }
    assert_eq!(count(&s.db, repo, "refuse"), 0, "{:?}", events(&s.db, repo));
    for reference in ["1.0.0".to_string(), release.digest().to_string()] {
        let url = format!("{}/v2/{repo}/manifests/{reference}", s.tw.url());
        let resp = call(Method::DELETE, &url, Some(&format!("Bearer {read}"))).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{reference}");
        assert!(resp.text().await.unwrap().contains("1.0.0"));
    }
    assert_eq!(count(&s.db, repo, "refuse"), 2, "{:?}", events(&s.db, repo));
    assert_eq!(
        s.zuul.resolve(repo, "1.0.0").await.as_deref(),
        Some(release.digest())
    );
}

/// An index goes through as on distribution: skopeo pushes the images by digest and the
/// index by tag, pulls it back unchanged, and other bytes under the release are refused.
/// zuul-registry lists each digest push as a tag named `sha256:<hex>`; the ledger
/// comparison skips those, since no client can name them as tags.
#[tokio::test]
async fn an_index_and_its_images_go_through_to_zuul() {
    let s = Stack::start().await;
    let repo = "team/multi";
    let (index, other) = (
        Index::random_multi_arch(&[600]),
        Index::random_multi_arch(&[600]),
    );
    let dest = s.tw.docker_ref(&format!("{repo}:2.0.0"));
    let copy = |index: &Index| {
        let layout = OciLayout::with_index(index);
        let dest = dest.clone();
        async move {
            skopeo::copy(&layout.reference(), &dest)
                .all()
                .preserve_digests()
                .dest_creds(&rw_creds())
                .run()
                .await
        }
    };
    copy(&index).await.assert_success();
    assert_eq!(
        s.zuul.resolve(repo, "2.0.0").await.as_deref(),
        Some(index.digest())
    );
    let pulled = OciLayout::empty();
    skopeo::copy(&dest, &pulled.reference())
        .all()
        .preserve_digests()
        .src_creds(&ro_creds())
        .run()
        .await
        .assert_success();
    assert_eq!(pulled.manifest_digest(), index.digest());
    for image in &index.images {
        assert!(pulled.blob(image.digest()).is_some(), "{}", image.digest());
    }

    // skopeo retries a refused index as a Docker list, which `--preserve-digests`
    // forbids, so its last words hide the refusal; the ledger has it.
    copy(&other).await.assert_failure();
    assert_eq!(
        s.db.query_column(&format!(
            "SELECT digest FROM tag_events WHERE repository = '{repo}' AND action = 'refuse'"
        )),
        vec![Some(other.digest().to_string())],
        "{}",
        s.logs()
    );
    assert_eq!(
        s.zuul.resolve(repo, "2.0.0").await.as_deref(),
        Some(index.digest())
    );
    let digest_entries: Vec<String> = s
        .zuul
        .tags(repo)
        .await
        .into_iter()
        .filter(|t| t.starts_with("sha256:"))
        .collect();
    assert!(
        index
            .images
            .iter()
            .all(|i| digest_entries.iter().any(|t| t == i.digest())),
        "zuul-registry lists digest pushes as tags: {digest_entries:?}"
    );
    assert_ledger_matches_zuul(&s.db, &s.zuul, &[repo]).await;
}

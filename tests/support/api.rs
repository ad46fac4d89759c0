//! Registry API calls by hand, for tests that need one exact request rather than a
//! client's whole push.

use reqwest::StatusCode;

use super::http::{client, header, MANIFEST_ACCEPT};
use super::oci::Blob;

/// Upload a blob monolithically (POST, then PUT with the digest).
pub async fn upload_blob(base: &str, repo: &str, blob: &Blob) {
    let c = client();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "start upload of {}",
        blob.digest
    );
    let loc = header(&r, "location").expect("upload Location");
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={}", blob.digest))
        .header("content-type", "application/octet-stream")
        .body(blob.bytes.clone())
        .send()
        .await
        .expect("finish upload");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "finish upload of {}",
        blob.digest
    );
}

/// `PUT /v2/<repo>/manifests/<reference>` with the manifest's own media type.
pub async fn put_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    manifest: &Blob,
) -> reqwest::Response {
    client()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", &manifest.media_type)
        .body(manifest.bytes.clone())
        .send()
        .await
        .expect("PUT manifest")
}

/// The digest `repo:tag` resolves to at `base` (a HEAD with every manifest type
/// accepted), or `None` if it does not exist.
pub async fn resolve(base: &str, repo: &str, tag: &str) -> Option<String> {
    let resp = client()
        .head(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", MANIFEST_ACCEPT)
        .send()
        .await
        .expect("HEAD manifest");
    digest_of(&resp, &format!("HEAD {base}/v2/{repo}/manifests/{tag}"))
}

/// The digest a manifest HEAD answered with, `None` for 404; panics naming `request`
/// on any other status.
pub fn digest_of(resp: &reqwest::Response, request: &str) -> Option<String> {
    match resp.status() {
        StatusCode::OK => Some(header(resp, "docker-content-digest").expect("digest header")),
        StatusCode::NOT_FOUND => None,
        other => panic!("{request}: {other}"),
    }
}

/// Every tag of `repo` at `base` (empty if the repository does not exist).
pub async fn tags(base: &str, repo: &str) -> Vec<String> {
    let resp = client()
        .get(format!("{base}/v2/{repo}/tags/list?n=10000"))
        .send()
        .await
        .expect("GET tags/list");
    if resp.status() == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(resp.status(), StatusCode::OK, "tags of {repo}");
    let v: serde_json::Value = resp.json().await.expect("tag list JSON");
    sorted_strings(&v["tags"])
}

/// Every repository in the registry at `base`. Distribution refuses `n` above its
/// catalog limit (1000 by default) with 400, so ask for that many and insist on one page.
pub async fn catalog(base: &str) -> Vec<String> {
    let resp = client()
        .get(format!("{base}/v2/_catalog?n=1000"))
        .send()
        .await
        .expect("GET _catalog");
    assert_eq!(resp.status(), StatusCode::OK, "GET _catalog");
    assert!(
        resp.headers().get("link").is_none(),
        "the catalog has more than one page"
    );
    let v: serde_json::Value = resp.json().await.expect("catalog JSON");
    sorted_strings(&v["repositories"])
}

/// The strings of a JSON array, sorted (none if it is not an array): the tag list and
/// the catalog answer in the same shape.
fn sorted_strings(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

//! One refused push, one recorded refusal, when a client retries it in another format.
//!
//! containers/image (podman, buildah, skopeo) uploads a multi-arch list as an OCI index
//! and, when that PUT fails for any reason, again as a Docker manifest list with the
//! same platform manifests. Both are refused, and both are answered; but they are one
//! attempt by one client, so only the first is appended to the history. A refused
//! manifest is such a retry when, under the same tag, for the same client and within
//! [`WINDOW`], a manifest in another encoding (other bytes) named the same content (an
//! index's or list's child digests; an image's config and layer digests). The same
//! bytes again are a new attempt (someone ran the push twice), and other content
//! (another child, another layer) is too: both are recorded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How long a refused push's content is remembered; clients retry at once.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Pushes remembered at once; beyond it, expired ones are dropped, then all of them.
const MAX_KEYS: usize = 10_000;

/// Repository, tag, client and content.
type Key = (String, String, String, [u8; 32]);

#[derive(Default)]
pub struct FormatRetries {
    /// Per key: when it was last refused, and the sha256 of that manifest's bytes.
    seen: Mutex<HashMap<Key, (Instant, [u8; 32])>>,
}

impl FormatRetries {
    /// True if this refusal repeats, in another encoding, one recorded within
    /// [`WINDOW`]; otherwise remembers it and returns false.
    pub fn is_retry(&self, repository: &str, tag: &str, who: &str, manifest: &[u8]) -> bool {
        self.is_retry_at(repository, tag, who, manifest, Instant::now())
    }

    fn is_retry_at(
        &self,
        repository: &str,
        tag: &str,
        who: &str,
        manifest: &[u8],
        now: Instant,
    ) -> bool {
        let Some(content) = content_key(manifest) else {
            return false;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, (at, _)| now.duration_since(*at) < WINDOW);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        let bytes: [u8; 32] = Sha256::digest(manifest).into();
        let key = (
            repository.to_owned(),
            tag.to_owned(),
            who.to_owned(),
            content,
        );
        match seen.get(&key) {
            Some((at, earlier)) if now.duration_since(*at) < WINDOW && *earlier != bytes => true,
            _ => {
                seen.insert(key, (now, bytes));
                false
            }
        }
    }
}

/// What a manifest names, independent of its format: the sorted child digests of an
/// index or list, or an image's config digest followed by its layer digests in order.
/// `None` for anything else, which is then never taken for a retry.
fn content_key(manifest: &[u8]) -> Option<[u8; 32]> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let digest = |d: &serde_json::Value| d.get("digest")?.as_str().map(str::to_owned);
    let mut hasher = Sha256::new();
    if let Some(children) = v.get("manifests").and_then(|m| m.as_array()) {
        let mut digests = children.iter().map(digest).collect::<Option<Vec<_>>>()?;
        digests.sort();
        hasher.update(b"list\n");
        for d in digests {
            hasher.update(d.as_bytes());
            hasher.update(b"\n");
        }
    } else {
        let config = digest(v.get("config")?)?;
        let layers = v.get("layers")?.as_array()?;
        hasher.update(b"image\n");
        hasher.update(config.as_bytes());
        hasher.update(b"\n");
        for d in layers.iter().map(digest) {
            hasher.update(d?.as_bytes());
            hasher.update(b"\n");
        }
    }
    Some(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn oci_index(children: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children.iter().map(|d| serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d, "size": 1,
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn docker_list(children: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": children.iter().map(|d| serde_json::json!({
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": d, "size": 1, "platform": {"os": "linux", "architecture": "amd64"},
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn image(config: &str, layers: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": config, "size": 1},
            "layers": layers.iter().map(|d| serde_json::json!({"digest": d, "size": 1})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn the_same_list_in_the_other_format_is_a_retry() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &oci_index(&[A, B]), t0));
        assert!(r.is_retry_at("pod/app", "2.0.0", "alice", &docker_list(&[B, A]), t0));
    }

    #[test]
    fn other_content_another_tag_client_or_a_later_attempt_is_recorded() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &oci_index(&[A, B]), t0));
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &docker_list(&[A, C]), t0));
        assert!(!r.is_retry_at("pod/app", "2.0.1", "alice", &docker_list(&[A, B]), t0));
        assert!(!r.is_retry_at("pod/app", "2.0.0", "bob", &docker_list(&[A, B]), t0));
        assert!(!r.is_retry_at("pod/web", "2.0.0", "alice", &docker_list(&[A, B]), t0));
        let later = t0 + WINDOW;
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &docker_list(&[A, B]), later));
    }

    #[test]
    fn the_same_bytes_again_are_another_attempt() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        let index = oci_index(&[A, B]);
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &index, t0));
        assert!(!r.is_retry_at("pod/app", "2.0.0", "alice", &index, t0));
    }

    #[test]
    fn images_compare_by_config_and_layers_in_order() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        let mut docker = serde_json::from_slice::<serde_json::Value>(&image(A, &[B, C])).unwrap();
        docker["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
        assert!(!r.is_retry_at("r", "1.0.0", "x", &image(A, &[B, C]), t0));
        assert!(r.is_retry_at("r", "1.0.0", "x", &serde_json::to_vec(&docker).unwrap(), t0));
        assert!(!r.is_retry_at("r", "1.0.0", "x", &image(A, &[C, B]), t0));
    }

    #[test]
    fn unrecognised_bytes_are_never_a_retry() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        for body in [&b"not json"[..], b"{}", b"{\"manifests\":[{}]}", b"{ }"] {
            assert!(!r.is_retry_at("r", "1.0.0", "x", body, t0));
        }
    }

    #[test]
    fn memory_is_bounded() {
        let r = FormatRetries::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            r.is_retry_at("r", &i.to_string(), "x", &image(A, &[]), t0);
        }
        assert!(r.seen.lock().unwrap().len() <= MAX_KEYS);
    }
}

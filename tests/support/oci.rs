//! OCI images made of random bytes, written as OCI image layout directories that skopeo
//! reads (`oci:<dir>:<name>`) and writes.
//!
//! Every call makes new random content, so two images never share a digest: that is how
//! tests get "other bytes for the same tag". Layers are random bytes with media type
//! `application/vnd.oci.image.layer.v1.tar`; skopeo copies them unchanged as long as it
//! runs with `--preserve-digests` (without it, skopeo gzips uncompressed layers on push,
//! which changes every digest).

use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The `org.opencontainers.image.ref.name` under which layouts here hold their image.
pub const REF_NAME: &str = "image";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `len` random bytes (fast, not cryptographic).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Content-addressed bytes with a media type.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// `{"mediaType","digest","size"}`
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size() })
    }
}

/// A single-platform image: manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub architecture: String,
}

impl Image {
    /// A linux/amd64 image with one layer of random bytes per entry of `layer_sizes`.
    pub fn random(layer_sizes: &[usize]) -> Image {
        Image::random_for("amd64", layer_sizes)
    }

    pub fn random_for(architecture: &str, layer_sizes: &[usize]) -> Image {
        let layers: Vec<Blob> = layer_sizes
            .iter()
            .map(|&n| Blob::new(OCI_LAYER_TAR, random_bytes(n)))
            .collect();
        // Layers are uncompressed, so each diff_id is the layer digest itself.
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": { "Labels": { "test.nonce": uuid::Uuid::new_v4().to_string() } },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("json"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
        Image {
            manifest,
            config,
            layers,
            architecture: architecture.to_string(),
        }
    }

    /// Digest of the manifest: what a tag of this image points to.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// A multi-platform image index over linux/amd64 and linux/arm64.
#[derive(Debug, Clone)]
pub struct Index {
    pub manifest: Blob,
    pub images: Vec<Image>,
}

impl Index {
    /// Two random images (linux/amd64, linux/arm64), each with `layer_sizes` layers.
    pub fn random_multi_arch(layer_sizes: &[usize]) -> Index {
        let images = vec![
            Image::random_for("amd64", layer_sizes),
            Image::random_for("arm64", layer_sizes),
        ];
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let mut d = img.manifest.descriptor();
                d["platform"] = json!({ "architecture": img.architecture, "os": "linux" });
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        Index {
            manifest: Blob::new(OCI_INDEX, serde_json::to_vec(&index).expect("json")),
            images,
        }
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
}

/// An OCI image layout directory holding one image or index under [`REF_NAME`].
pub struct OciLayout {
    _dir: TempDir,
    path: PathBuf,
}

impl OciLayout {
    /// A place for skopeo to write an image to (the directory does not exist yet).
    pub fn empty() -> OciLayout {
        let dir = tempfile::Builder::new()
            .prefix("tw-oci-")
            .tempdir()
            .expect("create layout temp dir");
        let path = dir.path().join("layout");
        OciLayout { _dir: dir, path }
    }

    /// A layout holding `image`.
    pub fn with_image(image: &Image) -> OciLayout {
        let layout = OciLayout::empty();
        layout.write(&image.manifest, image.blobs());
        layout
    }

    /// A layout holding `index` and all its images.
    pub fn with_index(index: &Index) -> OciLayout {
        let layout = OciLayout::empty();
        let mut blobs: Vec<&Blob> = Vec::new();
        for image in &index.images {
            blobs.push(&image.manifest);
            blobs.extend(image.blobs());
        }
        layout.write(&index.manifest, blobs.into_iter());
        layout
    }

    fn write<'a>(&self, top: &'a Blob, blobs: impl Iterator<Item = &'a Blob>) {
        let blob_dir = self.path.join("blobs").join("sha256");
        std::fs::create_dir_all(&blob_dir).expect("create blobs/sha256");
        for blob in std::iter::once(top).chain(blobs) {
            let hex = blob.digest.trim_start_matches("sha256:");
            std::fs::write(blob_dir.join(hex), &blob.bytes).expect("write blob");
        }
        std::fs::write(
            self.path.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write oci-layout");
        let mut descriptor = top.descriptor();
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": REF_NAME });
        let index = json!({ "schemaVersion": 2, "manifests": [descriptor] });
        std::fs::write(
            self.path.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write index.json");
    }

    /// skopeo reference: `oci:<dir>:image`.
    pub fn reference(&self) -> String {
        format!("oci:{}:{REF_NAME}", self.path.display())
    }

    /// Digest of the manifest or index the layout holds under [`REF_NAME`].
    pub fn manifest_digest(&self) -> String {
        let raw = std::fs::read(self.path.join("index.json"))
            .unwrap_or_else(|e| panic!("read {}/index.json: {e}", self.path.display()));
        let index: Value = serde_json::from_slice(&raw).expect("index.json is JSON");
        index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == REF_NAME)
            .and_then(|d| d["digest"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {REF_NAME:?} entry in index.json: {index}"))
    }

    /// The bytes of a blob in the layout, if present.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        std::fs::read(self.path.join("blobs").join("sha256").join(hex)).ok()
    }
}

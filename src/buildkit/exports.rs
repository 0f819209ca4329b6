//! What dockerd's exported images were loaded into the store as: `buildkit/dockerd-images.json`
//! in the store root maps the ID of an image dockerd's `moby` exporter made (its config digest)
//! to the store's layer blobs for that image's layers (and the inline cache its config carried,
//! with `--cache-to type=inline`). A build whose solve ends with an image
//! dockerd made before (a warm build: BuildKit had every op cached) takes its layers from here
//! and skips `docker save` and the load, which are most of a warm build's time.
//!
//! The map is a hint: the config digest fixes the image's diff IDs, so the layers named are
//! the right ones whichever dockerd made it; an entry whose blobs the store no longer has (an
//! `rbuild prune` took them) is ignored and the image is saved and loaded again. It is written
//! unsynced and atomically; two builds writing at once lose at worst one entry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::layer::digest::Sha256Digest;
use crate::store::atomic::{write_atomic, Durability};
use crate::store::{ImageStore, LayerBlob};

/// The most images remembered; the oldest entries go first beyond it.
const MAX_ENTRIES: usize = 256;

/// One layer of a remembered image, as [`LayerBlob`] holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RememberedLayer {
    digest: String,
    diff_id: String,
    size: u64,
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unpacked_size: Option<u64>,
}

/// What the build takes from an image dockerd exported.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedImage {
    pub layers: Vec<LayerBlob>,
    /// The config's `moby.buildkit.cache.v0` (BuildKit's inline cache), if it has one.
    pub inline_cache: Option<serde_json::Value>,
    /// When the image was first loaded (RFC 3339): a build ending with the same image again
    /// (every step cached) dates it the same, so it gets the same image ID, as a fully cached
    /// docker build does.
    pub created: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    /// Sequence number of the last use.
    seq: u64,
    layers: Vec<RememberedLayer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inline_cache: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ExportMap {
    /// dockerd image ID -> what it was loaded as.
    images: BTreeMap<String, Remembered>,
}

/// The store's memory of dockerd's exports.
pub struct DockerdExports<'s> {
    store: &'s ImageStore,
    path: PathBuf,
}

impl<'s> DockerdExports<'s> {
    pub fn new(store: &'s ImageStore) -> DockerdExports<'s> {
        DockerdExports { store, path: store.root().join("buildkit").join("dockerd-images.json") }
    }

    fn read(&self) -> ExportMap {
        std::fs::read(&self.path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// What dockerd's image `image_id` was loaded as, if remembered and its layers are all
    /// still in the store.
    pub fn recall(&self, image_id: &str) -> Option<ExportedImage> {
        let map = self.read();
        let remembered = map.images.get(image_id)?;
        let layers = remembered.layers.iter().map(to_blob).collect::<Option<Vec<LayerBlob>>>()?;
        layers.iter().all(|b| self.store.has_blob(&b.digest)).then(|| ExportedImage {
            layers,
            inline_cache: remembered.inline_cache.clone(),
            created: remembered.created.clone(),
        })
    }

    /// Remembers that dockerd's image `image_id` was loaded as `image`.
    pub fn remember(&self, image_id: &str, image: &ExportedImage) -> std::io::Result<()> {
        let mut map = self.read();
        let seq = map.images.values().map(|r| r.seq).max().unwrap_or(0) + 1;
        let layers = image.layers.iter().map(from_blob).collect();
        let remembered =
            Remembered { seq, layers, inline_cache: image.inline_cache.clone(), created: image.created.clone() };
        map.images.insert(image_id.to_string(), remembered);
        while map.images.len() > MAX_ENTRIES {
            let oldest = map.images.iter().min_by_key(|(_, r)| r.seq).map(|(id, _)| id.clone());
            let Some(oldest) = oldest else { break };
            map.images.remove(&oldest);
        }
        let dir = self.store.root().join("buildkit");
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(&map).map_err(std::io::Error::other)?;
        write_atomic(&dir, &self.path, &bytes, Durability::Unsynced)
    }
}

fn from_blob(blob: &LayerBlob) -> RememberedLayer {
    RememberedLayer {
        digest: blob.digest.to_string(),
        diff_id: blob.diff_id.to_string(),
        size: blob.size,
        media_type: blob.media_type.to_string(),
        unpacked_size: blob.unpacked_size,
    }
}

fn to_blob(layer: &RememberedLayer) -> Option<LayerBlob> {
    Some(LayerBlob {
        digest: layer.digest.parse::<Sha256Digest>().ok()?,
        diff_id: layer.diff_id.parse::<Sha256Digest>().ok()?,
        size: layer.size,
        media_type: layer.media_type.as_str().into(),
        unpacked_size: layer.unpacked_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_layers_come_back_only_while_the_store_has_their_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("store");
        let work = store.work_dir().expect("work");
        let digest = store.put_blob_bytes(&work, b"layer bytes").expect("blob");
        let blob = LayerBlob {
            digest: digest.clone(),
            diff_id: Sha256Digest::of(b"diff"),
            size: 11,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            unpacked_size: Some(20),
        };
        let exports = DockerdExports::new(&store);
        assert!(exports.recall("sha256:aa").is_none(), "nothing remembered yet");
        let image = ExportedImage {
            layers: vec![blob.clone()],
            inline_cache: Some(serde_json::json!({"k": 1})),
            created: Some("2026-01-01T00:00:00Z".into()),
        };
        exports.remember("sha256:aa", &image).expect("remember");
        assert_eq!(exports.recall("sha256:aa"), Some(image));
        let missing = LayerBlob { digest: Sha256Digest::of(b"not in the store"), ..blob };
        let missing = ExportedImage { layers: vec![missing], inline_cache: None, created: None };
        exports.remember("sha256:bb", &missing).expect("remember");
        assert!(exports.recall("sha256:bb").is_none(), "a blob the store lacks makes the entry useless");
        std::fs::write(dir.path().join("buildkit/dockerd-images.json"), "{not json").expect("write");
        assert!(exports.recall("sha256:aa").is_none(), "a damaged map is an empty one");
    }
}

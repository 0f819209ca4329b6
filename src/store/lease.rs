//! Leases: what a build, a running container, a push or a save is using stays in the store
//! until that command ends, whatever `rmi -f`, `image prune -a` or `store gc` do meanwhile.
//!
//! A handle made with [`ImageStore::leased`] records every image it resolves or writes in
//! one lease before handing it out: the image ID, its manifest, config and layer blobs and
//! its layers' chain IDs. The lease is a work dir `tmp/lease-<pid>-…/` (see [`super::lock`])
//! whose `.pin` file the command holds a flock on, so it ends with the process however the
//! process ends (exit, panic, `kill -9`): a lease whose `.pin` is not locked is dead, and the
//! next command (or `gc`) removes it. As in containerd, a lease names content rather than
//! counting references, and deleting commands skip what a live lease names and say so:
//! `rmi` only untags a leased image (the image stays, untagged, until `prune`), `prune` skips
//! it, `gc` keeps its blobs and unpacked layers.
//!
//! Images are leased under the store lock after checking that their blobs are still there,
//! and deleting commands read the leases under the same lock, so an image is either gone
//! before a lease could name it (and the lease is refused) or kept.

use super::lock::WorkDir;
use super::{ImageStore, Result, StoreError, StoredImage};
use crate::layer::digest::Sha256Digest;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Mutex;

/// One command's lease; its `tmp/lease-…` dir is made on first use and removed on drop.
#[derive(Debug)]
pub struct Lease {
    owner: String,
    state: Mutex<LeaseState>,
}

#[derive(Debug, Default)]
struct LeaseState {
    dir: Option<WorkDir>,
    images: HashSet<Sha256Digest>,
}

impl Lease {
    pub(crate) fn new(what: &str) -> Self {
        Lease { owner: format!("{what} (pid {})", std::process::id()), state: Mutex::default() }
    }

    /// Who holds the lease, as deleting commands name it: `build (pid 12)`.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// The `.pin` lines that lease `image`: everything `rmi` and `gc` would otherwise delete.
fn pin_lines(image: &StoredImage) -> String {
    let mut lines =
        format!("image {}\nblob {}\nblob {}\n", image.id.hex(), image.manifest_digest.hex(), image.id.hex());
    for layer in &image.layers {
        let _ = writeln!(lines, "blob {}\nlayer {}", layer.digest.hex(), layer.chain_id.hex());
    }
    lines
}

impl ImageStore {
    /// A handle on the same store whose resolved and written images are leased until the
    /// last clone of it is dropped; `what` names the holder (`build`, `container 3f2a…`).
    pub fn leased(&self, what: &str) -> ImageStore {
        ImageStore { lease: Some(std::sync::Arc::new(Lease::new(what))), ..self.clone() }
    }

    /// The lease this handle holds, if it was made by [`ImageStore::leased`].
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_deref()
    }

    /// Leases `image` (a no-op on a handle without a lease, or for an image already leased).
    /// Fails with [`StoreError::MissingBlob`] when a blob of the image is already gone: a
    /// concurrent `rmi` got there first.
    pub fn lease_image(&self, image: &StoredImage) -> Result<()> {
        let Some(lease) = &self.lease else { return Ok(()) };
        if lease.state.lock().unwrap_or_else(|e| e.into_inner()).images.contains(&image.id) {
            return Ok(());
        }
        let _lock = self.lock()?;
        let blobs = [&image.manifest_digest, &image.id].into_iter().chain(image.layers.iter().map(|l| &l.digest));
        for digest in blobs {
            if !self.has_blob(digest) {
                return Err(StoreError::MissingBlob { digest: digest.clone(), path: self.blob_path(digest) });
            }
        }
        let mut state = lease.state.lock().unwrap_or_else(|e| e.into_inner());
        let dir = match &mut state.dir {
            Some(dir) => dir,
            empty => {
                let dir = WorkDir::create_named(&self.root.join("tmp"), "lease")?;
                dir.pin_lines(&format!("owner {}\n", lease.owner))?;
                empty.insert(dir)
            }
        };
        dir.pin_lines(&pin_lines(image))?;
        state.images.insert(image.id.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ImageReference, PutImage};

    fn put(store: &ImageStore, label: &str, tag: &str) -> StoredImage {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": { "Labels": { "n": label } },
            "rootfs": { "type": "layers", "diff_ids": [] }, "history": [],
        });
        let tags = vec![ImageReference::parse(tag).expect("reference")];
        store
            .put_image_raw(&serde_json::to_vec(&config).expect("json"), &[], &PutImage { tags, parent: None })
            .expect("put")
    }

    #[test]
    fn a_leased_image_survives_rmi_prune_and_gc_until_the_lease_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let image = put(&store, "a", "a:1");
        let leased = store.leased("test");
        assert_eq!(leased.resolve("a:1").expect("resolve").id, image.id);

        let removal = store.remove_image("a:1", true).expect("rmi -f");
        assert_eq!(removal.untagged.len(), 1, "the tag goes");
        assert!(removal.deleted.is_empty(), "the image stays");
        assert!(removal.kept[0].contains("test (pid"), "{:?}", removal.kept);
        let pruned = store.prune(true).expect("prune -a");
        assert!(pruned.deleted.is_empty());
        assert!(pruned.kept[0].contains("test (pid"), "{:?}", pruned.kept);
        store.gc().expect("gc");
        assert_eq!(leased.resolve(&image.id.to_string()).expect("still there").id, image.id);
        assert!(store.has_blob(&image.manifest_digest));

        drop(leased);
        let pruned = store.prune(true).expect("prune -a");
        assert_eq!(pruned.deleted, vec![image.id.clone()]);
        assert!(!store.has_blob(&image.manifest_digest));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).expect("tmp").count(), 0, "the lease dir went");
    }

    #[test]
    fn an_image_removed_before_the_lease_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let image = put(&store, "b", "b:1");
        store.remove_image("b:1", false).expect("rmi");
        let leased = store.leased("test");
        assert!(matches!(leased.lease_image(&image), Err(StoreError::MissingBlob { .. })));
    }
}

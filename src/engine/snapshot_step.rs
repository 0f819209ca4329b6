//! RUN in the chroot-snapshot mode (`--isolation chroot`, or `auto` where no namespace can be
//! made): the parent image is assembled as a plain directory in the step's work dir (from the
//! layer blobs, with the layers' owners kept aside: an unprivileged user cannot chown), the
//! rootfs is snapshotted, the step runs in it (`runtime::chroot`), and the comparison with a
//! second snapshot is the step's layer, written as a [`LayerTree`] so that it equals what the
//! overlay upper dir gives in the namespaces mode (see `layer::snapshot`).
//!
//! The rootfs is kept for the stage's next RUN ([`KeptRootfs`]): when the next RUN's parent
//! holds the kept layers plus perhaps more (a WORKDIR, a COPY), only those are applied on top,
//! instead of a new copy of the whole image per RUN.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_err as fs;

use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::scheduler::Cancel;
use crate::engine::BuildError;
use crate::frontend::instructions::RunInstruction;
use crate::layer::apply::{OwnerTable, RecordedOwner};
use crate::layer::diff::{LayerTree, TreeEntry, TreeEntryKind};
use crate::layer::digest::Sha256Digest;
use crate::layer::snapshot::{FsSnapshot, Owners};
use crate::plan::{Stage, Step};
use crate::runtime::{resolve_user, ContainerSpec, Rootfs};
use crate::store::WorkDir;

/// A stage's rootfs after a chroot-snapshot RUN, kept for its next RUN: the layers it holds
/// (diff IDs, bottom first) and their owners and modes. Removed with its work dir on drop.
pub(crate) struct KeptRootfs {
    dir: WorkDir,
    layers: Vec<Sha256Digest>,
    owners: OwnerTable,
}

impl KeptRootfs {
    fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Records the owners and modes of what a step's layer put in the rootfs.
    pub(crate) fn record(&mut self, tree: &LayerTree) {
        let mut pending: Vec<(PathBuf, &BTreeMap<Vec<u8>, TreeEntry>)> = vec![(PathBuf::new(), &tree.root)];
        while let Some((dir, children)) = pending.pop() {
            for (name, entry) in children {
                let path = dir.join(OsStr::from_bytes(name));
                if let TreeEntryKind::Whiteout = entry.kind {
                    continue;
                }
                self.owners.insert(path.clone(), RecordedOwner { uid: entry.uid, gid: entry.gid, mode: entry.mode });
                if let TreeEntryKind::Dir(grandchildren) = &entry.kind {
                    pending.push((path, grandchildren));
                }
            }
        }
    }
}

impl StageExecutor<'_> {
    /// Runs a RUN step in the chroot-snapshot mode and returns its argv, its layer and the
    /// rootfs (which the layer's files are read from; keep it with [`Self::keep_rootfs`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_step_snapshot(
        &self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        state: &ImageState,
        work: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
    ) -> Result<(Vec<String>, LayerTree, KeptRootfs), BuildError> {
        let rootfs = self.rootfs_for(stage, state)?;
        let root = rootfs.root();
        let prepared = self.prepare_run(stage, step, run, state, Rootfs::Dir(root.clone()), work, done)?;
        let excluded = crate::runtime::bound_paths(&prepared.spec);
        let new_entries = new_entry_owner(&prepared.spec, &root);
        let targets = crate::runtime::make_bind_targets(&prepared.spec)?;
        let before = FsSnapshot::take(&root, &excluded)?;
        let ran = self.start_run(step, state, run, prepared, cancel);
        let after = FsSnapshot::take(&root, &excluded);
        if !nix::unistd::geteuid().is_root() {
            // The rootfs is removed some time later; a directory the step left without owner
            // write permission would keep the user from removing it.
            make_removable(&root);
        }
        let (argv, _) = ran?;
        targets.remove()?;
        let tree = after?.changes_since(&before, Owners { table: &rootfs.owners, new_entries });
        Ok((argv, tree, rootfs))
    }

    /// The stage's kept rootfs brought up to `state`'s layers, or a new one.
    fn rootfs_for(&self, stage: &Stage, state: &ImageState) -> Result<KeptRootfs, BuildError> {
        let layers: Vec<Sha256Digest> =
            state.stored.as_ref().map(|s| s.layers.iter().map(|l| l.diff_id.clone()).collect()).unwrap_or_default();
        let kept = self.kept_rootfs.lock().ok().and_then(|mut kept| kept.remove(&stage.index));
        let mut rootfs = match kept {
            Some(kept) if layers.starts_with(&kept.layers) => kept,
            _ => {
                let dir = self.store.work_dir()?;
                fs::create_dir(dir.path().join("rootfs"))?;
                KeptRootfs { dir, layers: Vec::new(), owners: OwnerTable::new() }
            }
        };
        if let Some(image) = &state.stored {
            let owners = self.store.assemble_rootfs(image, &rootfs.root(), rootfs.layers.len())?;
            rootfs.owners.extend(owners);
        }
        rootfs.layers = layers;
        Ok(rootfs)
    }

    /// Keeps `rootfs` (holding `image`'s layers once `tree` is recorded) for the stage's next
    /// RUN.
    pub(crate) fn keep_rootfs(&self, stage: &Stage, mut rootfs: KeptRootfs, image: &ImageState) {
        rootfs.layers =
            image.stored.as_ref().map(|s| s.layers.iter().map(|l| l.diff_id.clone()).collect()).unwrap_or_default();
        if let Ok(mut kept) = self.kept_rootfs.lock() {
            kept.insert(stage.index, rootfs);
        }
    }

    /// Drops the stage's kept rootfs (the stage has ended).
    pub(crate) fn release_rootfs(&self, stage: &Stage) {
        let kept = self.kept_rootfs.lock().ok().and_then(|mut kept| kept.remove(&stage.index));
        drop(kept);
    }
}

/// Who owns what the step creates: the step's user, unless rbuild is root and so is the step
/// (then the disk is right, a `chown` in RUN included).
fn new_entry_owner(spec: &ContainerSpec, root: &Path) -> Option<(u32, u32)> {
    let read = |name: &str| std::fs::read_to_string(root.join("etc").join(name)).unwrap_or_default();
    let user = resolve_user(spec.user.as_deref(), &read("passwd"), &read("group")).ok()?;
    let disk_is_right = nix::unistd::geteuid().is_root() && (user.uid, user.gid) == (0, 0);
    (!disk_is_right).then_some((user.uid, user.gid))
}

/// Gives every directory under `root` owner read, write and search permission (their modes
/// are already recorded in the layer).
fn make_removable(root: &Path) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if let Ok(meta) = dir.symlink_metadata() {
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
            }
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
}

//! RUN in the chroot-snapshot mode (`--isolation chroot`, or `auto` where no namespace can be
//! made): the parent image is assembled as a plain directory in the step's work dir (from the
//! layer blobs, with the layers' owners kept aside: an unprivileged user cannot chown), the
//! rootfs is snapshotted, the step runs in it (`runtime::chroot`), and the comparison with a
//! second snapshot is the step's layer, written as a [`LayerTree`] so that it equals what the
//! overlay upper dir gives in the namespaces mode (see `layer::snapshot`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use fs_err as fs;

use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::scheduler::Cancel;
use crate::engine::BuildError;
use crate::frontend::instructions::RunInstruction;
use crate::layer::apply::OwnerTable;
use crate::layer::diff::LayerTree;
use crate::layer::snapshot::{FsSnapshot, Owners};
use crate::plan::{Stage, Step};
use crate::runtime::{resolve_user, ContainerSpec, Rootfs};

impl StageExecutor<'_> {
    /// Runs a RUN step in the chroot-snapshot mode and returns its argv and its layer.
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
    ) -> Result<(Vec<String>, LayerTree), BuildError> {
        let root = work.join("rootfs");
        fs::create_dir(&root)?;
        let table = match &state.stored {
            Some(image) => self.store.assemble_rootfs(image, &root)?,
            None => OwnerTable::new(),
        };
        let prepared = self.prepare_run(stage, step, run, state, Rootfs::Dir(root.clone()), work, done)?;
        let excluded = crate::runtime::bound_paths(&prepared.spec);
        let new_entries = new_entry_owner(&prepared.spec, &root);
        crate::runtime::make_bind_targets(&prepared.spec)?;
        let before = FsSnapshot::take(&root, &excluded)?;
        let ran = self.start_run(step, state, run, prepared, cancel);
        let after = FsSnapshot::take(&root, &excluded);
        if !nix::unistd::geteuid().is_root() {
            // The work dir is removed after the commit; a directory the step left without
            // owner write permission would keep the user from removing it.
            make_removable(&root);
        }
        let (argv, _) = ran?;
        let tree = after?.changes_since(&before, Owners { table: &table, new_entries });
        Ok((argv, tree))
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

//! WORKDIR's directory: made in the step's upper dir as BuildKit makes it (missing components
//! 0755, owned by the USER in effect; existing parents repeated with their own metadata).

use std::path::Path;

use fs_err as fs;

use crate::engine::commit::UpperDiff;
use crate::engine::copy_step::resolve_chown;
use crate::engine::executor::{ImageState, StageExecutor, Written};
use crate::engine::BuildError;
use crate::layer::diff::{LayerTree, TreeEntry, TreeEntryKind};
use crate::layer::stack::MergedView;
use crate::plan::Step;

impl StageExecutor<'_> {
    /// WORKDIR makes its directory, as BuildKit does: every missing component is created in
    /// `upper` with mode 0755, owned by the USER in effect (names looked up in the image).
    /// Says what was created: nothing, the upper dir, or (unprivileged, where the disk cannot
    /// hold the owners) a [`LayerTree`] of the directories in `upper` with their owners.
    pub(crate) fn make_workdir(
        &self,
        step: &Step,
        state: &ImageState,
        config: &crate::image::ContainerConfig,
        upper: &Path,
    ) -> Result<Written, BuildError> {
        let path = &config.working_dir;
        let view = MergedView::new(&self.unpacked(state)?);
        if path.is_empty() || path == "/" || view.is_dir(path) {
            return Ok(Written::Nothing);
        }
        let (uid, gid) = if config.user.is_empty() {
            (0, 0)
        } else {
            resolve_chown(&config.user, &view).map_err(|what| BuildError::Step {
                step: step.number,
                message: format!("WORKDIR {path}: USER {}: {what}", config.user),
            })?
        };
        // The longest prefix that exists, resolved through symlinks (`/var/run` -> `/run`), is
        // repeated in `upper` with its own metadata so the layer leaves it as it was.
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let existing = (0..=components.len())
            .rev()
            .find(|n| view.is_dir(&format!("/{}", components[..*n].join("/"))))
            .unwrap_or(0);
        // `/` always exists, even in an image without layers (FROM scratch).
        let real = if existing == 0 {
            Vec::new()
        } else {
            view.resolve(&format!("/{}", components[..existing].join("/")), true)
                .ok_or_else(|| BuildError::Internal(format!("WORKDIR {path}: an existing parent vanished")))?
                .0
        };
        // Unprivileged, rbuild cannot chown: the layer is written from a tree that carries the
        // owners (the parents' as the layers show them, mapped back; the USER's for new ones).
        let host_ids = self.diff.host_ids.clone();
        let unprivileged = host_ids.is_some();
        let mut host = upper.to_path_buf();
        let mut times = Vec::new();
        let mut owners = Vec::new();
        // `real` is resolved: every prefix in one walk, not each from the root again (that
        // made a deep WORKDIR cost the cube of its depth).
        let lowers = view.lookup_prefixes(&real);
        for (component, lower) in real.iter().zip(lowers) {
            host.push(component);
            let lower =
                lower.ok_or_else(|| BuildError::Internal(format!("WORKDIR {path}: an existing parent vanished")))?;
            let meta = fs::symlink_metadata(&lower.host_path)?;
            fs::create_dir_all(&host)?;
            use std::os::unix::fs::MetadataExt;
            if !unprivileged {
                std::os::unix::fs::lchown(&host, Some(meta.uid()), Some(meta.gid()))?;
            }
            owners.push(host_ids.as_ref().map_or((meta.uid(), meta.gid()), |m| (m.uid(meta.uid()), m.gid(meta.gid()))));
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777))?;
            times.push((host.clone(), meta.modified()?));
        }
        for component in &components[existing..] {
            host.push(component);
            fs::create_dir(&host)?;
            if !unprivileged {
                std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
            }
            owners.push((uid, gid));
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        // Last, as creating the children touched them.
        for (dir, modified) in times.iter().rev() {
            fs::File::open(dir)?.set_modified(*modified)?;
        }
        match unprivileged {
            false => Ok(Written::Upper(UpperDiff::default())),
            true => Ok(Written::Tree(directory_chain(upper, &owners)?)),
        }
    }
}

/// The [`LayerTree`] of the one chain of directories under `upper` (each dir has at most one
/// child), with `owners` top-down and the rest of the metadata from the disk.
fn directory_chain(upper: &Path, owners: &[(u32, u32)]) -> Result<LayerTree, BuildError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut chain = Vec::new();
    let mut dir = upper.to_path_buf();
    for owner in owners {
        let Some(child) = fs::read_dir(&dir)?.flatten().next() else { break };
        dir = child.path();
        let meta = fs::symlink_metadata(&dir)?;
        let entry = TreeEntry {
            kind: TreeEntryKind::Dir(Default::default()),
            mode: meta.mode() & 0o7777,
            uid: owner.0,
            gid: owner.1,
            mtime: meta.mtime(),
        };
        chain.push((child.file_name().as_bytes().to_vec(), entry));
    }
    let mut tree = LayerTree::default();
    let mut children = &mut tree.root;
    for (name, entry) in chain {
        let TreeEntryKind::Dir(next) = &mut children.entry(name).or_insert(entry).kind else { break };
        children = next;
    }
    Ok(tree)
}

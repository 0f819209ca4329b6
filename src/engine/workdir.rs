//! WORKDIR's directory: made in the step's upper dir as BuildKit makes it (missing components
//! 0755, owned by the USER in effect; existing parents repeated with their own metadata).

use std::path::Path;

use fs_err as fs;

use crate::engine::copy_step::resolve_chown;
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::BuildError;
use crate::layer::stack::MergedView;
use crate::plan::Step;

impl StageExecutor<'_> {
    /// WORKDIR makes its directory, as BuildKit does: every missing component is created in
    /// `upper` with mode 0755, owned by the USER in effect (names looked up in the image).
    /// Returns whether anything was created.
    pub(crate) fn make_workdir(
        &self,
        step: &Step,
        state: &ImageState,
        config: &crate::image::ContainerConfig,
        upper: &Path,
    ) -> Result<bool, BuildError> {
        let path = &config.working_dir;
        let view = MergedView::new(&self.unpacked(state)?);
        if path.is_empty() || path == "/" || view.is_dir(path) {
            return Ok(false);
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
        // Unprivileged, what rbuild creates is the caller's, which is root in the container:
        // other owners cannot be set from outside the container's namespace.
        let unprivileged = self.diff.host_ids.is_some();
        let mut host = upper.to_path_buf();
        let mut times = Vec::new();
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
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777))?;
            times.push((host.clone(), meta.modified()?));
        }
        for component in &components[existing..] {
            host.push(component);
            fs::create_dir(&host)?;
            if !unprivileged {
                std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
            }
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        // Last, as creating the children touched them.
        for (dir, modified) in times.iter().rev() {
            fs::File::open(dir)?.set_modified(*modified)?;
        }
        Ok(true)
    }
}

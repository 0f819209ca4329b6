//! Turns a RUN's `--mount` flags into runtime mounts ([`crate::runtime::Mount`]), BuildKit's
//! semantics:
//!
//! - `type=bind`: a read-only (unless `rw`) view of a build-context path or of a path in an
//!   earlier stage or image (`from=`). The source is *copied* into the step's work dir under
//!   the store's `tmp/` rather than bind-mounted from the context dir in place: a plain bind
//!   would show files `.dockerignore` excludes, and `rw` writes would reach the user's
//!   context (BuildKit discards them). The copy goes away with the work dir.
//! - `type=cache`: a persistent dir `<store root>/cache-mounts/<sha256 of id>` (id defaults
//!   to the target; with `from=`, the sha256 of the id and the source image's ID, as BuildKit
//!   keys such a cache by its id and its source), kept across builds and never part of a layer; `sharing=locked` holds an
//!   flock on `<dir>.lock` for the step, `private` takes the first instance nobody holds
//!   (`<hex>`, `<hex>-1`, ...), `shared` takes none. Delete the dir to drop a cache.
//! - `type=tmpfs`: a fresh tmpfs, `size=` with Docker's units.
//! - `type=secret`: the `--secret` with that id as a read-only tmpfs-backed file (default
//!   `/run/secrets/<id>`, mode 0400) and/or an environment variable (`env=`). A missing
//!   required secret is an error; a missing optional one is not mounted.
//!
//! - `type=ssh`: a socket (default `/run/buildkit/ssh_agent.<N>`, mode 0600) forwarding to the
//!   `--ssh` agent with that id (default `default`), see [`crate::engine::ssh`]; the first one
//!   is `SSH_AUTH_SOCK` unless the image sets it. A missing required agent is an error.
//!
//! Targets that do not exist in the image are created by the runtime in its init layer, so
//! they leave no trace in the committed layer (as BuildKit removes its mount stubs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_err as fs;
use rustix::fs::{flock, FlockOperation};

use crate::context::EntryKind;
use crate::engine::config::resolve_workdir;
use crate::engine::copy::{materialize, plan_from_context, plan_from_image, CopyItem, CopyOptions};
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::ssh::AgentProxy;
use crate::engine::BuildError;
use crate::frontend::instructions::{CacheSharing, MountSpec, MountType, RunInstruction};
use crate::layer::apply::{LayerApply, WhiteoutMode};
use crate::layer::digest::Sha256Digest;
use crate::layer::stack::{EntryType, MergedView};
use crate::plan::{Stage, Step};
use crate::registry::cache::{CacheSource, CachedMount};
use crate::runtime::{Mount, MountKind};

/// The runtime side of a RUN's `--mount`s, and what must live as long as the container: the
/// cache mount locks (released on drop).
#[derive(Debug, Default)]
pub struct RunMounts {
    pub mounts: Vec<Mount>,
    /// `NAME=value` entries for secrets mounted as environment variables, and
    /// `SSH_AUTH_SOCK` for the first ssh mount.
    pub env: Vec<String>,
    locks: Vec<std::fs::File>,
    /// The ssh agent sockets the mounts show, forwarding until the step is over.
    proxies: Vec<AgentProxy>,
}

impl RunMounts {
    /// How many cache locks are held (for tests).
    pub fn locks_held(&self) -> usize {
        self.locks.len()
    }
}

/// Where cache mounts live under a store root.
pub fn cache_mounts_dir(store_root: &Path) -> PathBuf {
    store_root.join("cache-mounts")
}

/// The directory name of a cache mount under [`cache_mounts_dir`]: the sha256 of its id, and
/// of the image ID it is seeded from (`from=`) when it has one.
pub fn cache_name(id: &str, from_image: Option<&str>) -> String {
    let key = match from_image {
        None => id.to_string(),
        Some(image) => format!("{id}\0from={image}"),
    };
    Sha256Digest::of(key.as_bytes()).hex().to_string()
}

pub use crate::plan::instruction::parse_size;

/// Why a RUN mount could not be prepared (shown after `--mount=<spec>: `).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("source {path:?} must name exactly one path")]
    NotOnePath { path: String },
    #[error("source {path:?} is a symbolic link in the build context")]
    Symlink { path: String },
    #[error("cache source {path:?} is not a directory")]
    CacheSourceNotDirectory { path: String },
    #[error("locking cache {id:?}: {errno}")]
    Lock { id: String, errno: rustix::io::Errno },
    #[error("chown {}: {error}", path.display())]
    Chown { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Context(#[from] crate::context::ContextError),
    #[error("{0}")]
    Copy(#[from] crate::engine::copy::CopyError),
    /// The directory an imported cache carries could not be fetched or unpacked.
    #[error("importing the cache mount: {0}")]
    ImportFetch(#[from] crate::registry::cache::CacheTransferError),
    #[error("unpacking the imported cache mount: {0}")]
    ImportUnpack(#[from] crate::layer::apply::ApplyError),
    /// The `from` stage or image could not be read.
    #[error("{0}")]
    Source(#[from] Box<BuildError>),
}

impl StageExecutor<'_> {
    /// Prepares the runtime mounts of `run` in `work` (the step's work dir).
    pub(crate) fn run_mounts(
        &self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        state: &ImageState,
        work: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<RunMounts, BuildError> {
        let mut out = RunMounts::default();
        let workdir = &state.config.config.working_dir;
        for (n, spec) in run.mounts.iter().enumerate() {
            let fail = |message: String| BuildError::Step {
                step: step.number,
                message: format!("--mount={}: {message}", spec.canonical()),
            };
            let target = spec.target.as_deref().filter(|t| !t.is_empty()).map(|t| resolve_workdir(workdir, t));
            match spec.kind {
                MountType::Bind => {
                    let target = target.unwrap_or_else(|| resolve_workdir(workdir, "."));
                    let source = self
                        .mount_source(stage, spec, &work.join(format!("mount-{n}")), done)
                        .map_err(|e| fail(e.to_string()))?;
                    let readonly = spec.readonly.unwrap_or(true);
                    out.mounts.push(Mount { target, kind: MountKind::Bind { source, readonly } });
                }
                MountType::Cache => {
                    let target = target.ok_or_else(|| fail("a cache mount needs a target".into()))?;
                    let (dir, lock) =
                        self.cache_dir(stage, spec, &target, work, n, done).map_err(|e| fail(e.to_string()))?;
                    out.locks.extend(lock);
                    let readonly = spec.readonly.unwrap_or(false);
                    out.mounts.push(Mount { target, kind: MountKind::Bind { source: dir, readonly } });
                }
                MountType::Tmpfs => {
                    let target = target.ok_or_else(|| fail("a tmpfs mount needs a target".into()))?;
                    let size = match &spec.size {
                        Some(s) => Some(parse_size(s).ok_or_else(|| fail(format!("invalid size {s:?}")))?),
                        None => None,
                    };
                    out.mounts.push(Mount { target, kind: MountKind::Tmpfs { size } });
                }
                MountType::Secret => {
                    let id = spec
                        .id
                        .clone()
                        .filter(|i| !i.is_empty())
                        .or_else(|| target.as_deref().and_then(|t| t.rsplit('/').next()).map(str::to_string))
                        .filter(|i| !i.is_empty())
                        .ok_or_else(|| fail("a secret mount needs an id".into()))?;
                    let Some(secret) = self.secrets.iter().find(|s| s.id == id) else {
                        if spec.required.unwrap_or(false) {
                            return Err(BuildError::SecretMissing { step: step.number, id });
                        }
                        continue;
                    };
                    let contents = secret.read().map_err(|e| fail(e.to_string()))?;
                    if let Some(var) = &spec.env {
                        out.env.push(format!("{var}={}", String::from_utf8_lossy(&contents)));
                    }
                    if spec.env.is_none() || target.is_some() {
                        let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                        let kind = MountKind::File {
                            contents,
                            mode: spec.mode.unwrap_or(0o400),
                            uid: spec.uid.unwrap_or(0),
                            gid: spec.gid.unwrap_or(0),
                        };
                        out.mounts.push(Mount { target, kind });
                    }
                }
                MountType::Ssh => {
                    let id = spec.ssh_id();
                    let Some(agent) = self.ssh_agents.iter().find(|a| a.id == id) else {
                        if spec.required.unwrap_or(false) {
                            return Err(BuildError::SshMissing { step: step.number, id });
                        }
                        continue;
                    };
                    let target = target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", out.proxies.len()));
                    let socket = work.join(format!("ssh-{n}.sock"));
                    let proxy = AgentProxy::start(
                        &agent.socket,
                        &socket,
                        spec.mode.unwrap_or(0o600),
                        spec.uid.unwrap_or(0),
                        spec.gid.unwrap_or(0),
                    )
                    .map_err(|e| fail(format!("forwarding ssh agent {id} ({}): {e}", agent.socket.display())))?;
                    // Like BuildKit, the first agent is SSH_AUTH_SOCK unless the image sets one.
                    let env_has_sock = |env: &[String]| env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="));
                    if out.proxies.is_empty() && !env_has_sock(&state.config.config.env) && !env_has_sock(&out.env) {
                        out.env.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    out.mounts.push(Mount {
                        target,
                        kind: MountKind::Bind { source: proxy.path().to_path_buf(), readonly: false },
                    });
                    out.proxies.push(proxy);
                }
            }
        }
        Ok(out)
    }

    /// Copies a bind (or cache seed) source into `dest` and returns the host path to mount:
    /// `source` (default the root) of the build context after `.dockerignore`, or of the
    /// stage or image `from` names.
    fn mount_source(
        &self,
        stage: &Stage,
        spec: &MountSpec,
        dest: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<PathBuf, MountError> {
        let source = spec.source.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "/".to_string());
        fs::create_dir_all(dest)?;
        let keyword = "RUN --mount";
        let mut source_is_file = false;
        let items: Vec<CopyItem> = match &spec.from {
            None => {
                let roots = self.context.select_roots(std::slice::from_ref(&source), &[])?;
                if roots.len() != 1 {
                    return Err(MountError::NotOnePath { path: source });
                }
                match roots[0].root.as_ref().map(|r| &r.kind) {
                    // A link would be followed on the host when mounted: refuse it.
                    Some(EntryKind::Symlink { .. }) => return Err(MountError::Symlink { path: source }),
                    Some(EntryKind::Dir) | None => {}
                    Some(_) => source_is_file = true,
                }
                plan_from_context(keyword, &self.context.root, &roots, "/", true, false)?
            }
            Some(from) => {
                let image = self.copy_source_image(stage, from, done).map_err(Box::new)?;
                let view = MergedView::new(&self.unpacked(&image).map_err(Box::new)?);
                source_is_file = view.stat(&source).is_some_and(|e| e.metadata_kind != EntryType::Dir);
                plan_from_image(keyword, from, &view, std::slice::from_ref(&source), "/", true)?
            }
        };
        materialize(dest, &items, &CopyOptions::default())?;
        // A file source lands in `dest` under its own name: that file is what gets mounted.
        match items.iter().find(|i| i.kind != EntryType::Dir) {
            Some(file) if source_is_file => Ok(dest.join(file.dest.trim_start_matches('/'))),
            _ => Ok(dest.to_path_buf()),
        }
    }

    /// The cache dir of a cache mount, created (mode, owner, `from` seed) when new, and the
    /// lock its `sharing` needs.
    fn cache_dir(
        &self,
        stage: &Stage,
        spec: &MountSpec,
        target: &str,
        work: &Path,
        n: usize,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<(PathBuf, Option<std::fs::File>), MountError> {
        let base = cache_mounts_dir(self.store.root());
        fs::create_dir_all(&base)?;
        let id = spec.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| target.to_string());
        let hex = match &spec.from {
            // As BuildKit, a cache seeded `from` a stage or image is keyed by its id and that
            // source: the same target from another stage is another cache.
            Some(from) => {
                let source = self.copy_source_image(stage, from, done).map_err(Box::new)?;
                // An empty scratch stage has no image: it seeds nothing.
                cache_name(&id, Some(source.id().as_deref().unwrap_or("scratch")))
            }
            None => cache_name(&id, None),
        };
        let lock_file = |name: &str| -> Result<std::fs::File, MountError> {
            let path = base.join(format!("{name}.lock"));
            let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path);
            Ok(file?.into_parts().0)
        };
        let (name, lock) = match spec.sharing.unwrap_or(CacheSharing::Shared) {
            CacheSharing::Shared => (hex.clone(), None),
            CacheSharing::Locked => {
                let file = lock_file(&hex)?;
                flock(&file, FlockOperation::LockExclusive)
                    .map_err(|errno| MountError::Lock { id: id.clone(), errno })?;
                (hex.clone(), Some(file))
            }
            CacheSharing::Private => {
                let mut instance = 0usize;
                loop {
                    let name = if instance == 0 { hex.clone() } else { format!("{hex}-{instance}") };
                    let file = lock_file(&name)?;
                    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                        break (name, Some(file));
                    }
                    instance += 1;
                }
            }
        };
        let dir = base.join(&name);
        if let Ok(mut used) = self.used.lock() {
            used.cache_mounts.push((hex.clone(), dir.clone()));
        }
        if !dir.is_dir() {
            // Made aside and renamed into place, so a concurrent build never sees it half made.
            let imported = self.imported.mount(&hex);
            let fresh = match &spec.from {
                // Carried by a `--cache-from` cache (exported with `cache-mounts=true`).
                _ if imported.is_some() => self.imported_cache_dir(imported, work, n)?,
                Some(_) => self.mount_source(stage, spec, &work.join(format!("cache-seed-{n}")), done)?,
                None => {
                    let fresh = work.join(format!("cache-{n}"));
                    fs::create_dir(&fresh)?;
                    fresh
                }
            };
            if !fresh.is_dir() {
                return Err(MountError::CacheSourceNotDirectory {
                    path: spec.source.as_deref().unwrap_or("/").to_string(),
                });
            }
            let mode = spec.mode.unwrap_or(0o755);
            fs::set_permissions(&fresh, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            match std::os::unix::fs::lchown(&fresh, Some(spec.uid.unwrap_or(0)), Some(spec.gid.unwrap_or(0))) {
                // An unprivileged rbuild cannot chown: the directory stays the caller's, who
                // runs the step (the chroot-snapshot mode) or is its root (rootless).
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !nix::unistd::geteuid().is_root() => {}
                result => result.map_err(|error| MountError::Chown { path: fresh.clone(), error })?,
            }
            if let Err(e) = fs::rename(&fresh, &dir) {
                if !dir.is_dir() {
                    return Err(e.into());
                }
            }
        }
        Ok((dir, lock))
    }
}

impl StageExecutor<'_> {
    /// A cache mount's directory unpacked from the archive an imported cache carries, in
    /// `work` (renamed into place by the caller).
    fn imported_cache_dir(
        &self,
        imported: Option<(&CacheSource, &CachedMount)>,
        work: &Path,
        n: usize,
    ) -> Result<PathBuf, MountError> {
        let Some((source, mount)) = imported else { return Err(MountError::Io(std::io::ErrorKind::NotFound.into())) };
        let archive = work.join(format!("cache-import-{n}"));
        source.fetch_file(&mount.archive, &archive)?;
        let fresh = work.join(format!("cache-{n}"));
        fs::create_dir(&fresh)?;
        let mut apply = LayerApply::new(&fresh, WhiteoutMode::Literal)?;
        apply.apply(fs::File::open(&archive)?)?;
        let _ = fs::remove_file(&archive);
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_docker_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("10mb"), Some(10 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn a_cache_from_a_source_is_not_the_cache_without_one() {
        let plain = cache_name("/cache", None);
        assert_eq!(plain, Sha256Digest::of(b"/cache").hex());
        let from_a = cache_name("/cache", Some("sha256:aaaa"));
        let from_b = cache_name("/cache", Some("sha256:bbbb"));
        assert!(plain != from_a && from_a != from_b && from_a == cache_name("/cache", Some("sha256:aaaa")));
    }
}

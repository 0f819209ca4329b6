//! The container's mount sequence: overlay (kernel or fuse-overlayfs) or a bind-mounted dir
//! as root, `/proc`, a minimal `/dev`, read-only `/sys`, the bind-mounted `/etc` files, the
//! spec's extra mounts (binds, tmpfs, tmpfs-backed files), then `pivot_root`. Runs inside the
//! container's mount namespace, through [`Syscall`]. Also resolves extra mount targets
//! inside the root's layers before the container starts ([`resolve_in_layers`]).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::layer::stack::MergedView;
use crate::runtime::error::SetupFailure;
use crate::runtime::spec::{MountKind, OverlayDriver, Rootfs};
use crate::runtime::syscall::{Syscall, SyscallError};

/// Which filesystem became the container's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OverlayKind {
    /// The kernel's overlayfs.
    Kernel,
    /// `fuse-overlayfs`, because the kernel refused (or it was asked for).
    Fuse,
    /// A plain directory, bind-mounted.
    PlainDir,
}

/// Everything the mount sequence needs, decided by rbuild before the container starts.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// The root filesystem; for an overlay, `lower[0]` is the container's init layer (the
    /// mount points of `/etc/hosts`, `/proc`... so they never reach the upper dir).
    pub rootfs: Rootfs,
    /// Where the root is mounted before `pivot_root` (`<state_dir>/<id>/rootfs`).
    pub mount_point: PathBuf,
    /// Host files bind-mounted over `etc/hosts`, `etc/resolv.conf`, `etc/hostname`
    /// (relative targets).
    pub etc_files: Vec<(PathBuf, &'static str)>,
    pub hostname: String,
    pub user_namespace: bool,
    pub new_network: bool,
    pub overlay: OverlayDriver,
    /// Add overlay's `volatile` option (no sync of the upper dir on unmount).
    pub volatile: bool,
    /// Leave `/proc` and `/sys` unmasked.
    pub privileged: bool,
    /// Extra mounts, in the order they are made.
    pub mounts: Vec<PlannedMount>,
    /// An empty host dir (`<state_dir>/<id>/files`) where a tmpfs private to the container's
    /// mount namespace holds the [`MountKind::File`] contents.
    pub files_dir: PathBuf,
}

/// A [`crate::runtime::Mount`] with its target resolved inside the root.
#[derive(Debug, Clone)]
pub struct PlannedMount {
    /// Relative to the root, with no symlink in it.
    pub target: PathBuf,
    pub target_is_dir: bool,
    pub kind: MountKind,
}

/// Longest option string `mount(2)` takes (one page, less the terminating NUL and a margin);
/// longer overlay stacks go through [`Syscall::mount_overlay_stack`].
const MOUNT_DATA_MAX: usize = 4000;

/// Device nodes of a minimal `/dev`, bind-mounted from the host's `/dev`. Every other
/// filesystem the workload can write to (the root, `/dev` itself, tmpfs and bind mounts) is
/// `nodev`, so a device node it makes there (it has CAP_MKNOD, as in Docker) cannot be
/// opened: these are the only usable ones. Docker gets the same with a device cgroup; `nodev`
/// also works without privileges and on cgroup v1 and v2 alike.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

impl RootfsPlan {
    /// The kernel overlay mount options, or `None` for a plain dir.
    pub fn overlay_options(&self) -> Option<String> {
        let Rootfs::Overlay { lower, upper, work } = &self.rootfs else {
            return None;
        };
        let lowers: Vec<String> = lower.iter().map(|l| escape_overlay_path(&l.display().to_string())).collect();
        let mut opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            escape_overlay_path(&upper.display().to_string()),
            escape_overlay_path(&work.display().to_string()),
        );
        if self.volatile {
            opts.push_str(",volatile");
        }
        if self.user_namespace {
            opts.push_str(",userxattr");
        }
        Some(opts)
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.mount_point.join(rel)
    }
}

/// Overlay options separate with `,` and lower dirs with `:`; both are escaped with `\`.
fn escape_overlay_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn sys_failure(e: SyscallError) -> SetupFailure {
    SetupFailure::Syscall {
        op: e.op.to_string(),
        path: e.path.display().to_string(),
        errno: e.errno as i32,
        message: e.errno.desc().to_string(),
    }
}

/// Mounts the root and its pseudo-filesystems at `plan.mount_point`. `fuse_mount` mounts
/// `fuse-overlayfs` with the given options (a process, not a system call).
pub(crate) fn mount_rootfs(
    sys: &dyn Syscall,
    plan: &RootfsPlan,
    fuse_mount: &dyn Fn(&str, &Path) -> Result<(), SetupFailure>,
) -> Result<OverlayKind, SetupFailure> {
    let root = &plan.mount_point;
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None).map_err(sys_failure)?;
    let kind = match (&plan.rootfs, plan.overlay_options()) {
        (Rootfs::Overlay { lower, upper, work }, Some(opts)) => {
            let kernel = || {
                if opts.len() < MOUNT_DATA_MAX {
                    sys.mount(Some(Path::new("overlay")), root, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
                } else {
                    let mut flags = Vec::new();
                    if plan.volatile {
                        flags.push("volatile");
                    }
                    if plan.user_namespace {
                        flags.push("userxattr");
                    }
                    sys.mount_overlay_stack(root, lower, upper, work, &flags)
                }
            };
            match plan.overlay {
                OverlayDriver::Kernel => kernel().map(|_| OverlayKind::Kernel).map_err(sys_failure)?,
                OverlayDriver::Fuse => {
                    fuse_mount(&opts, root)?;
                    OverlayKind::Fuse
                }
                OverlayDriver::Auto => match kernel() {
                    Ok(()) => OverlayKind::Kernel,
                    Err(e) if plan.user_namespace => {
                        fuse_mount(&opts, root).map_err(|fuse| SetupFailure::Other {
                            message: format!("kernel overlay refused ({}), and so did {fuse}", sys_failure(e)),
                        })?;
                        OverlayKind::Fuse
                    }
                    Err(e) => return Err(sys_failure(e)),
                },
            }
        }
        (Rootfs::Dir(dir), _) => {
            sys.mount(Some(dir), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None).map_err(sys_failure)?;
            for d in ["proc", "sys", "dev", "etc"] {
                sys.mkdir_all(&plan.at(d), 0o755).map_err(sys_failure)?;
            }
            for (_, target) in &plan.etc_files {
                sys.touch(&plan.at(target)).map_err(sys_failure)?;
            }
            OverlayKind::PlainDir
        }
        (Rootfs::Overlay { .. }, None) => unreachable!("overlay rootfs always has options"),
    };
    // Device nodes in the image's layers or made by the workload must not open.
    remount_nodev(sys, root, false, root).map_err(sys_failure)?;
    mount_pseudo_filesystems(sys, plan).map_err(sys_failure)?;
    if !plan.privileged {
        mask_kernel_paths(sys, plan).map_err(sys_failure)?;
    }
    for (source, target) in &plan.etc_files {
        sys.mount(Some(source), &plan.at(target), None, MsFlags::MS_BIND, None).map_err(sys_failure)?;
    }
    mount_extra(sys, plan).map_err(sys_failure)?;
    sys.sethostname(&plan.hostname).map_err(sys_failure)?;
    if plan.new_network {
        sys.loopback_up().map_err(sys_failure)?;
    }
    Ok(kind)
}

fn mount_pseudo_filesystems(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<(), SyscallError> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    sys.mount(Some(Path::new("proc")), &plan.at("proc"), Some("proc"), nosuid_nodev_noexec, None)?;

    let dev = plan.at("dev");
    sys.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEVICES {
        // A bind mount keeps the flags of the host's /dev mount, so the node works on the
        // nodev tmpfs (and a user namespace may not mknod anyway).
        let node = dev.join(name);
        sys.touch(&node)?;
        let host = Path::new("/dev").join(name);
        sys.mount(Some(&host), &node, None, MsFlags::MS_BIND, None)?;
    }
    sys.mkdir_all(&dev.join("pts"), 0o755)?;
    let pts_opts = if plan.user_namespace {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    sys.mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts_opts),
    )?;
    sys.symlink(Path::new("pts/ptmx"), &dev.join("ptmx"))?;
    sys.mkdir_all(&dev.join("shm"), 0o1777)?;
    sys.mount(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some("mode=1777,size=65536k"),
    )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink(Path::new(target), &dev.join(link))?;
    }

    let sys_dir = plan.at("sys");
    let sysfs =
        sys.mount(Some(Path::new("sysfs")), &sys_dir, Some("sysfs"), nosuid_nodev_noexec | MsFlags::MS_RDONLY, None);
    if let Err(e) = sysfs {
        // A user namespace may not mount sysfs for the host's network namespace: bind the
        // host's /sys and make the bind read-only, keeping the flags the host mount locks.
        if !plan.user_namespace {
            return Err(e);
        }
        sys.mount(Some(Path::new("/sys")), &sys_dir, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        let locked = host_mount_flags(Path::new("/sys"));
        sys.mount(None, &sys_dir, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked, None)?;
    }
    Ok(())
}

/// Makes the mount at `target` `nodev` (and read-only if asked) with a bind remount that
/// keeps the flags of the mount `source` is on (a user namespace may not clear them, and
/// root should not).
fn remount_nodev(sys: &dyn Syscall, target: &Path, readonly: bool, source: &Path) -> Result<(), SyscallError> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV | host_mount_flags(source);
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, target, None, flags, None)
}

/// The spec's extra mounts. Binds are a bind then a `nodev` (and maybe read-only) bind
/// remount.
fn mount_extra(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<(), SyscallError> {
    if plan.mounts.iter().any(|m| matches!(m.kind, MountKind::File { .. })) {
        sys.mount(
            Some(Path::new("tmpfs")),
            &plan.files_dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=700"),
        )?;
    }
    for (n, m) in plan.mounts.iter().enumerate() {
        sys.make_mount_target(&plan.mount_point, &m.target, m.target_is_dir)?;
        let target = plan.mount_point.join(&m.target);
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                sys.mount(Some(source), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
                remount_nodev(sys, &target, *readonly, source)?;
            }
            MountKind::Tmpfs { size } => {
                let opts = match size {
                    Some(bytes) => format!("mode=1777,size={bytes}"),
                    None => "mode=1777".to_string(),
                };
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                sys.mount(Some(Path::new("tmpfs")), &target, Some("tmpfs"), flags, Some(&opts))?;
            }
            MountKind::File { contents, mode, uid, gid } => {
                let file = plan.files_dir.join(format!("file-{n}"));
                sys.write_file(&file, contents, *mode)?;
                sys.lchown(&file, *uid, *gid)?;
                sys.mount(Some(&file), &target, None, MsFlags::MS_BIND, None)?;
                remount_nodev(sys, &target, true, &plan.files_dir)?;
            }
        }
    }
    Ok(())
}

/// Resolves the absolute container path `target` through the root's `layers` (top-most
/// first) as the kernel would inside the container (see [`MergedView::resolve_target`]). The
/// result is relative to the root and has no symlink in it, so mounting on it cannot leave
/// the root. `None` after too many symlinks.
pub fn resolve_in_layers(layers: &MergedView, target: &str) -> Option<PathBuf> {
    layers.resolve_target(target).map(|comps| comps.iter().collect())
}

/// The metadata of what the layers have at `rel` (relative, resolved), if anything.
pub(crate) fn layer_metadata(layers: &MergedView, rel: &Path) -> Option<std::fs::Metadata> {
    let names: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if names.is_empty() {
        return None;
    }
    layers.lookup_exact(&names)?.host_path.symlink_metadata().ok()
}

/// Host kernel interfaces hidden from the container, as Docker does: files get `/dev/null`
/// bound over them, directories an empty read-only tmpfs.
pub(crate) const MASKED_PATHS: [&str; 10] = [
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
];

/// Host kernel interfaces the container sees read-only (`/proc/sys` holds the host's
/// sysctls when the container is real root).
pub(crate) const READONLY_PATHS: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

fn missing_is_fine(result: Result<(), SyscallError>) -> Result<(), SyscallError> {
    match result {
        Err(e) if e.errno == nix::errno::Errno::ENOENT => Ok(()),
        other => other,
    }
}

fn mask_kernel_paths(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<(), SyscallError> {
    let null = plan.at("dev/null");
    for rel in MASKED_PATHS {
        let target = plan.at(rel);
        match sys.mount(Some(&null), &target, None, MsFlags::MS_BIND, None) {
            Err(e) if e.errno == nix::errno::Errno::ENOTDIR => {
                // A directory: cover it with an empty read-only tmpfs.
                sys.mount(
                    Some(Path::new("tmpfs")),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    Some("size=0"),
                )?
            }
            other => missing_is_fine(other)?,
        }
    }
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for rel in READONLY_PATHS {
        let target = plan.at(rel);
        let bound = sys.mount(Some(&target), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None);
        match bound {
            Ok(()) => sys.mount(
                None,
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | proc_flags,
                None,
            )?,
            Err(e) if e.errno == nix::errno::Errno::ENOENT => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The flags of the mount at `path` that a user namespace may not clear on a bind remount.
fn host_mount_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// Makes `plan.mount_point` the root: `pivot_root(".", ".")` then a lazy unmount of the old
/// root stacked beneath, so no put-old dir is needed.
///
/// `pivot_root` moves the root of every process of the mount namespace, so with
/// fuse-overlayfs (a process serving the new root) the container first enters a mount
/// namespace of its own; otherwise fuse-overlayfs would look its lower dirs up through
/// itself and deadlock.
pub(crate) fn enter_rootfs(sys: &dyn Syscall, plan: &RootfsPlan, kind: OverlayKind) -> Result<(), SetupFailure> {
    if kind == OverlayKind::Fuse {
        sys.unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(sys_failure)?;
    }
    sys.chdir(&plan.mount_point).map_err(sys_failure)?;
    sys.pivot_root(Path::new("."), Path::new(".")).map_err(sys_failure)?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH).map_err(sys_failure)?;
    sys.chdir(Path::new("/")).map_err(sys_failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::syscall::RecordingSyscall;
    use nix::sys::stat::{Mode, SFlag};

    fn plan(user_namespace: bool, overlay: OverlayDriver) -> RootfsPlan {
        RootfsPlan {
            rootfs: Rootfs::Overlay {
                lower: vec!["/s/c/init".into(), "/l/top".into(), "/l/base".into()],
                upper: "/u/upper".into(),
                work: "/u/work".into(),
            },
            mount_point: "/s/c/rootfs".into(),
            etc_files: vec![("/s/c/hosts".into(), "etc/hosts")],
            hostname: "box".into(),
            user_namespace,
            new_network: true,
            overlay,
            volatile: false,
            privileged: false,
            mounts: Vec::new(),
            files_dir: "/s/c/files".into(),
        }
    }

    fn no_fuse(_: &str, _: &Path) -> Result<(), SetupFailure> {
        Err(SetupFailure::FuseOverlay { message: "not installed".into() })
    }

    fn index_of(calls: &[String], needle: &str) -> usize {
        calls.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {calls:#?}"))
    }

    #[test]
    fn root_mode_mounts_overlay_first_and_pivots_last() {
        let sys = RecordingSyscall::default();
        let p = plan(false, OverlayDriver::Auto);
        let kind = mount_rootfs(&sys, &p, &no_fuse).expect("mount");
        enter_rootfs(&sys, &p, kind).expect("pivot");
        assert_eq!(kind, OverlayKind::Kernel);
        let calls = sys.calls();
        assert_eq!(calls[0], "mount - / - [MS_REC MS_PRIVATE] -");
        assert!(calls[1].contains("overlay [] lowerdir=/s/c/init:/l/top:/l/base,upperdir=/u/upper,workdir=/u/work"));
        assert_eq!(calls[2], "mount - /s/c/rootfs - [MS_NODEV MS_REMOUNT MS_BIND] -");
        assert!(index_of(&calls, "proc") < index_of(&calls, "mount /dev/null /s/c/rootfs/dev/null - [MS_BIND]"));
        index_of(&calls, "mount tmpfs /s/c/rootfs/dev tmpfs [MS_NOSUID MS_NODEV MS_STRICTATIME]");
        assert!(!calls.iter().any(|c| c.starts_with("mknod")));
        assert!(index_of(&calls, "devpts") < index_of(&calls, "sysfs"));
        assert!(index_of(&calls, "/s/c/hosts /s/c/rootfs/etc/hosts") < index_of(&calls, "pivot_root"));
        assert!(index_of(&calls, "loopback_up") < index_of(&calls, "pivot_root"));
        assert!(index_of(&calls, "/s/c/rootfs/dev/null /s/c/rootfs/proc/kcore") > index_of(&calls, "/dev/null"));
        index_of(&calls, "mount - /s/c/rootfs/proc/sys - [MS_RDONLY MS_NOSUID MS_NODEV MS_NOEXEC MS_REMOUNT MS_BIND]");
        let tail: Vec<&str> = calls[calls.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["chdir /s/c/rootfs", "pivot_root . .", "umount .", "chdir /"]);
    }

    #[test]
    fn user_namespace_binds_devices_and_falls_back_to_fuse_and_host_sys() {
        let sys = RecordingSyscall { fail_on: vec!["lowerdir=".into(), "sysfs".into()], ..RecordingSyscall::default() };
        let p = plan(true, OverlayDriver::Auto);
        let fused = std::cell::Cell::new(false);
        let fuse = |opts: &str, _: &Path| {
            assert!(opts.ends_with(",userxattr"));
            fused.set(true);
            Ok(())
        };
        assert_eq!(mount_rootfs(&sys, &p, &fuse).expect("mount"), OverlayKind::Fuse);
        assert!(fused.get());
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| c.starts_with("mknod")));
        index_of(&calls, "mount /dev/null /s/c/rootfs/dev/null - [MS_BIND]");
        index_of(&calls, "mount /sys /s/c/rootfs/sys - [MS_BIND MS_REC]");
        index_of(&calls, "mount - /s/c/rootfs/sys - [MS_RDONLY MS_REMOUNT MS_BIND");
    }

    #[test]
    fn root_mode_does_not_fall_back_to_fuse() {
        let sys = RecordingSyscall { fail_on: vec!["lowerdir=".into()], ..RecordingSyscall::default() };
        let err = mount_rootfs(&sys, &plan(false, OverlayDriver::Auto), &no_fuse).unwrap_err();
        assert!(err.to_string().contains("mount /s/c/rootfs"), "{err}");
    }

    #[test]
    fn a_deep_layer_stack_uses_the_new_mount_api() {
        let sys = RecordingSyscall::default();
        let mut p = plan(false, OverlayDriver::Kernel);
        p.volatile = true;
        let lower: Vec<PathBuf> = (0..100).map(|i| PathBuf::from(format!("/var/lib/rbuild/layers/{i:064}"))).collect();
        p.rootfs = Rootfs::Overlay { lower, upper: "/u/upper".into(), work: "/u/work".into() };
        mount_rootfs(&sys, &p, &no_fuse).expect("mount");
        index_of(&sys.calls(), "mount_overlay_stack /s/c/rootfs lowers=100 upper=/u/upper work=/u/work volatile");
    }

    #[test]
    fn extra_mounts_come_after_the_etc_files_and_before_pivot_root() {
        let sys = RecordingSyscall::default();
        let mut p = plan(false, OverlayDriver::Kernel);
        p.mounts = vec![
            PlannedMount {
                target: "src".into(),
                target_is_dir: true,
                kind: MountKind::Bind { source: "/ctx/app".into(), readonly: true },
            },
            PlannedMount {
                target: "cache".into(),
                target_is_dir: true,
                kind: MountKind::Bind { source: "/store/cache-mounts/x".into(), readonly: false },
            },
            PlannedMount { target: "tmp".into(), target_is_dir: true, kind: MountKind::Tmpfs { size: Some(4096) } },
            PlannedMount {
                target: "run/secrets/tok".into(),
                target_is_dir: false,
                kind: MountKind::File { contents: b"hunter2".to_vec(), mode: 0o400, uid: 0, gid: 0 },
            },
        ];
        let kind = mount_rootfs(&sys, &p, &no_fuse).expect("mount");
        enter_rootfs(&sys, &p, kind).expect("pivot");
        let calls = sys.calls();
        let bind = index_of(&calls, "mount /ctx/app /s/c/rootfs/src - [MS_BIND MS_REC]");
        assert!(index_of(&calls, "/s/c/hosts /s/c/rootfs/etc/hosts") < bind);
        assert!(index_of(&calls, "mount_target /s/c/rootfs/src dir") < bind);
        assert_eq!(calls[bind + 1], "mount - /s/c/rootfs/src - [MS_RDONLY MS_NODEV MS_REMOUNT MS_BIND] -");
        let cache = index_of(&calls, "mount /store/cache-mounts/x /s/c/rootfs/cache");
        assert_eq!(calls[cache + 1], "mount - /s/c/rootfs/cache - [MS_NODEV MS_REMOUNT MS_BIND] -");
        index_of(&calls, "mount tmpfs /s/c/rootfs/tmp tmpfs [MS_NOSUID MS_NODEV] mode=1777,size=4096");
        let files = index_of(&calls, "mount tmpfs /s/c/files tmpfs");
        let write = index_of(&calls, "write_file /s/c/files/file-3 7 bytes 400");
        assert!(files < write);
        index_of(&calls, "mount_target /s/c/rootfs/run/secrets/tok file");
        let secret = index_of(&calls, "mount /s/c/files/file-3 /s/c/rootfs/run/secrets/tok - [MS_BIND]");
        assert!(calls[secret + 1].contains("MS_RDONLY MS_NODEV MS_REMOUNT MS_BIND"));
        assert!(secret < index_of(&calls, "pivot_root"));
        assert!(!calls.iter().any(|c| c.contains("hunter2")));
    }

    #[test]
    fn no_files_tmpfs_without_file_mounts() {
        let sys = RecordingSyscall::default();
        mount_rootfs(&sys, &plan(false, OverlayDriver::Kernel), &no_fuse).expect("mount");
        assert!(!sys.calls().iter().any(|c| c.contains("/s/c/files")));
    }

    #[test]
    fn targets_resolve_through_symlinks_inside_the_layers() {
        let t = tempfile::tempdir().expect("tempdir");
        let top = t.path().join("top");
        let base = t.path().join("base");
        std::fs::create_dir_all(base.join("run")).expect("mkdir");
        std::fs::create_dir_all(base.join("opt/real")).expect("mkdir");
        std::fs::create_dir_all(&top).expect("mkdir");
        std::os::unix::fs::symlink("/run", base.join("var-run")).expect("symlink");
        std::os::unix::fs::symlink("../../etc", base.join("opt/real/up")).expect("symlink");
        std::os::unix::fs::symlink("real", top.join("opt-link")).expect("symlink");
        let layers = MergedView::from_top_first(vec![top.clone(), base.clone()]);
        let r = |t: &str| resolve_in_layers(&layers, t).expect("resolves");
        assert_eq!(r("/var-run/secrets/x"), PathBuf::from("run/secrets/x"));
        assert_eq!(r("/opt/real/up/passwd"), PathBuf::from("etc/passwd"), "`..` stops at the root");
        assert_eq!(r("/new/dir"), PathBuf::from("new/dir"));
        assert_eq!(r("/../../x"), PathBuf::from("x"));
        // A whiteout in the top layer hides the link below (mknod needs root).
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(&top.join("var-run"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), 0)
                .expect("mknod");
            assert_eq!(r("/var-run/x"), PathBuf::from("var-run/x"));
        }
        std::os::unix::fs::symlink("loop", base.join("loop")).expect("symlink");
        assert_eq!(resolve_in_layers(&layers, "/loop/x"), None);
    }

    #[test]
    fn overlay_paths_are_escaped() {
        assert_eq!(escape_overlay_path("/a:b,c"), "/a\\:b\\,c");
    }
}

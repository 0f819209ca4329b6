//! The container's mount sequence: overlay (kernel or fuse-overlayfs) or a bind-mounted dir
//! as root, `/proc`, a minimal `/dev`, read-only `/sys`, the bind-mounted `/etc` files, then
//! `pivot_root`. Runs inside the container's mount namespace, through [`Syscall`].

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::runtime::error::SetupFailure;
use crate::runtime::spec::{OverlayDriver, Rootfs};
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
}

/// Longest option string `mount(2)` takes (one page, less the terminating NUL and a margin);
/// longer overlay stacks go through [`Syscall::mount_overlay_stack`].
const MOUNT_DATA_MAX: usize = 4000;

/// Device nodes of a minimal `/dev`: name, major, minor.
pub(crate) const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

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
    mount_pseudo_filesystems(sys, plan).map_err(sys_failure)?;
    if !plan.privileged {
        mask_kernel_paths(sys, plan).map_err(sys_failure)?;
    }
    for (source, target) in &plan.etc_files {
        sys.mount(Some(source), &plan.at(target), None, MsFlags::MS_BIND, None).map_err(sys_failure)?;
    }
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
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        if plan.user_namespace {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            sys.touch(&node)?;
            let host = Path::new("/dev").join(name);
            sys.mount(Some(&host), &node, None, MsFlags::MS_BIND, None)?;
        } else {
            let perm = Mode::from_bits_truncate(0o666);
            sys.mknod(&node, SFlag::S_IFCHR, perm, libc::makedev(major as u32, minor as u32))?;
            sys.chmod(&node, 0o666)?;
        }
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
        assert!(index_of(&calls, "proc") < index_of(&calls, "mknod /s/c/rootfs/dev/null 1:3"));
        assert!(index_of(&calls, "devpts") < index_of(&calls, "sysfs"));
        assert!(index_of(&calls, "/s/c/hosts /s/c/rootfs/etc/hosts") < index_of(&calls, "pivot_root"));
        assert!(index_of(&calls, "loopback_up") < index_of(&calls, "pivot_root"));
        assert!(index_of(&calls, "/s/c/rootfs/dev/null /s/c/rootfs/proc/kcore") > index_of(&calls, "mknod"));
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
    fn overlay_paths_are_escaped() {
        assert_eq!(escape_overlay_path("/a:b,c"), "/a\\:b\\,c");
    }
}

//! The system calls a container's setup makes, behind a trait so that the mount and namespace
//! sequence can be recorded and checked in unit tests ([`LinuxSyscall`] is the real one).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// A failed system call: what was attempted, on which path, and the errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {path}: {errno}", path = path.display())]
pub struct SyscallError {
    pub op: &'static str,
    pub path: PathBuf,
    pub errno: Errno,
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SyscallError + 'a {
    move |errno| SyscallError { op, path: path.to_path_buf(), errno }
}

/// System calls used to set up a container's root filesystem and namespaces.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError>;
    /// Mounts an overlay with the new mount API, one `lowerdir+` per lower dir (top-most
    /// first; Linux >= 6.8), for stacks whose `mount(2)` option string would not fit a page.
    /// `flags` are value-less options such as `volatile`.
    fn mount_overlay_stack(
        &self,
        target: &Path,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        flags: &[&str],
    ) -> Result<(), SyscallError>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), SyscallError>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError>;
    fn chdir(&self, path: &Path) -> Result<(), SyscallError>;
    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError>;
    fn sethostname(&self, name: &str) -> Result<(), SyscallError>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> Result<(), SyscallError>;
    fn chmod(&self, path: &Path, mode: u32) -> Result<(), SyscallError>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SyscallError>;
    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), SyscallError>;
    /// Creates an empty regular file if nothing exists at `path` (a bind mount target).
    fn touch(&self, path: &Path) -> Result<(), SyscallError>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> Result<(), SyscallError>;
    /// Makes the mount target `root/rel` where it is missing: directories (0755) down to it,
    /// then a directory or, when `!dir`, an empty file (0644). A symlink on the way is an
    /// error (`ELOOP`): the mount would follow it out of the container's root.
    fn make_mount_target(&self, root: &Path, rel: &Path, dir: bool) -> Result<(), SyscallError>;
    /// Creates (or truncates) `path` with exactly `contents` and permission bits `mode`.
    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), SyscallError>;
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SyscallError>;
}

/// The real system calls, through `nix`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(fail("mount", target))
    }

    fn mount_overlay_stack(
        &self,
        target: &Path,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        flags: &[&str],
    ) -> Result<(), SyscallError> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        const FSOPEN_CLOEXEC: libc::c_uint = 1;
        const FSCONFIG_SET_FLAG: libc::c_uint = 0;
        const FSCONFIG_SET_STRING: libc::c_uint = 1;
        const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
        const FSMOUNT_CLOEXEC: libc::c_uint = 1;
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
        let cstr = |bytes: &[u8]| CString::new(bytes).map_err(|_| fail("mount overlay", target)(Errno::EINVAL));
        // SAFETY: raw mount-API syscalls with valid C strings; fds are closed below.
        unsafe {
            let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC);
            if fs < 0 {
                return Err(fail("fsopen overlay", target)(Errno::last()));
            }
            let fs = fs as libc::c_int;
            let config = |key: &CString, value: Option<&CString>| {
                let (cmd, value) = match value {
                    Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
                    None => (FSCONFIG_SET_FLAG, std::ptr::null()),
                };
                if libc::syscall(libc::SYS_fsconfig, fs, cmd, key.as_ptr(), value, 0) < 0 {
                    Err(Errno::last())
                } else {
                    Ok(())
                }
            };
            let result = (|| {
                let lowerdir_plus = cstr(b"lowerdir+")?;
                for dir in lower {
                    let value = cstr(dir.as_os_str().as_bytes())?;
                    config(&lowerdir_plus, Some(&value)).map_err(fail("fsconfig lowerdir+", dir))?;
                }
                for (key, dir) in [("upperdir", upper), ("workdir", work)] {
                    let value = cstr(dir.as_os_str().as_bytes())?;
                    config(&cstr(key.as_bytes())?, Some(&value)).map_err(fail("fsconfig", dir))?;
                }
                for flag in flags {
                    config(&cstr(flag.as_bytes())?, None).map_err(fail("fsconfig", target))?;
                }
                if libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, 0, 0, 0) < 0 {
                    return Err(fail("fsconfig create overlay", target)(Errno::last()));
                }
                let mnt = libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
                if mnt < 0 {
                    return Err(fail("fsmount overlay", target)(Errno::last()));
                }
                let mnt = mnt as libc::c_int;
                let to = cstr(target.as_os_str().as_bytes())?;
                let moved = libc::syscall(
                    libc::SYS_move_mount,
                    mnt,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                );
                let moved = if moved < 0 { Err(Errno::last()) } else { Ok(()) };
                libc::close(mnt);
                moved.map_err(fail("move_mount overlay", target))
            })();
            libc::close(fs);
            result
        }
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), SyscallError> {
        nix::mount::umount2(target, flags).map_err(fail("umount", target))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError> {
        nix::unistd::pivot_root(new_root, put_old).map_err(fail("pivot_root", new_root))
    }

    fn chdir(&self, path: &Path) -> Result<(), SyscallError> {
        nix::unistd::chdir(path).map_err(fail("chdir", path))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError> {
        nix::sched::unshare(flags).map_err(fail("unshare", Path::new("")))
    }

    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        nix::unistd::sethostname(name).map_err(fail("sethostname", Path::new(name)))
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> Result<(), SyscallError> {
        nix::sys::stat::mknod(path, kind, perm, dev).map_err(fail("mknod", path))
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<(), SyscallError> {
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(fail("chmod", path))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SyscallError> {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_fail("symlink", link, &e)),
        }
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), SyscallError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(path).map_err(|e| io_fail("mkdir", path, &e))
    }

    fn touch(&self, path: &Path) -> Result<(), SyscallError> {
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
            .map_err(|e| io_fail("create", path, &e))
    }

    fn loopback_up(&self) -> Result<(), SyscallError> {
        let lo = Path::new("lo");
        // SAFETY: plain socket/ioctl calls on a zeroed ifreq naming "lo"; the fd is closed below.
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(fail("socket", lo)(Errno::last()));
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let mut result = Ok(());
            if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
                result = Err(fail("SIOCGIFFLAGS", lo)(Errno::last()));
            } else {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                    result = Err(fail("SIOCSIFFLAGS", lo)(Errno::last()));
                }
            }
            libc::close(sock);
            result
        }
    }

    fn make_mount_target(&self, root: &Path, rel: &Path, dir: bool) -> Result<(), SyscallError> {
        let names: Vec<&std::ffi::OsStr> = rel
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let mut path = root.to_path_buf();
        for (i, name) in names.iter().enumerate() {
            path.push(name);
            let last = i + 1 == names.len();
            match path.symlink_metadata() {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(fail("mount target", &path)(Errno::ELOOP));
                }
                Ok(_) => {}
                Err(_) => self.create_missing(&path, dir || !last)?,
            }
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), SyscallError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_fail("create", path, &e))?;
        file.write_all(contents).map_err(|e| io_fail("write", path, &e))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| io_fail("chmod", path, &e))
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SyscallError> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| io_fail("chown", path, &e))
    }
}

impl LinuxSyscall {
    fn create_missing(&self, path: &Path, dir: bool) -> Result<(), SyscallError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let created = if dir {
            std::fs::DirBuilder::new().mode(0o755).create(path)
        } else {
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).map(drop)
        };
        match created {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io_fail("create mount target", path, &e)),
            _ => Ok(()),
        }
    }
}

fn io_fail(op: &'static str, path: &Path, e: &std::io::Error) -> SyscallError {
    SyscallError { op, path: path.to_path_buf(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) }
}

/// Records every call as a line of text and succeeds, except for calls whose text contains
/// one of `fail_on` (which fail with `EPERM`), so tests can check order and fallbacks.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingSyscall {
    pub calls: std::cell::RefCell<Vec<String>>,
    pub fail_on: Vec<String>,
}

#[cfg(test)]
impl RecordingSyscall {
    fn record(&self, op: &'static str, path: &Path, line: String) -> Result<(), SyscallError> {
        let failed = self.fail_on.iter().any(|f| line.contains(f.as_str()));
        self.calls.borrow_mut().push(line);
        if failed {
            Err(fail(op, path)(Errno::EPERM))
        } else {
            Ok(())
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

#[cfg(test)]
impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
        let line = format!(
            "mount {} {} {} [{}] {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            names.join(" "),
            data.unwrap_or("-")
        );
        self.record("mount", target, line)
    }
    fn mount_overlay_stack(
        &self,
        target: &Path,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        flags: &[&str],
    ) -> Result<(), SyscallError> {
        let line = format!(
            "mount_overlay_stack {} lowers={} upper={} work={} {}",
            target.display(),
            lower.len(),
            upper.display(),
            work.display(),
            flags.join(",")
        );
        self.record("mount", target, line)
    }
    fn umount2(&self, target: &Path, _flags: MntFlags) -> Result<(), SyscallError> {
        self.record("umount", target, format!("umount {}", target.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError> {
        let line = format!("pivot_root {} {}", new_root.display(), put_old.display());
        self.record("pivot_root", new_root, line)
    }
    fn chdir(&self, path: &Path) -> Result<(), SyscallError> {
        self.record("chdir", path, format!("chdir {}", path.display()))
    }
    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError> {
        self.record("unshare", Path::new(""), format!("unshare {flags:?}"))
    }
    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        self.record("sethostname", Path::new(name), format!("sethostname {name}"))
    }
    fn mknod(&self, path: &Path, _kind: SFlag, _perm: Mode, dev: u64) -> Result<(), SyscallError> {
        let line = format!("mknod {} {}:{}", path.display(), libc::major(dev), libc::minor(dev));
        self.record("mknod", path, line)
    }
    fn chmod(&self, path: &Path, mode: u32) -> Result<(), SyscallError> {
        self.record("chmod", path, format!("chmod {mode:o} {}", path.display()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SyscallError> {
        let line = format!("symlink {} {}", target.display(), link.display());
        self.record("symlink", link, line)
    }
    fn mkdir_all(&self, path: &Path, _mode: u32) -> Result<(), SyscallError> {
        self.record("mkdir", path, format!("mkdir {}", path.display()))
    }
    fn touch(&self, path: &Path) -> Result<(), SyscallError> {
        self.record("touch", path, format!("touch {}", path.display()))
    }
    fn loopback_up(&self) -> Result<(), SyscallError> {
        self.record("loopback", Path::new("lo"), "loopback_up".into())
    }
    fn make_mount_target(&self, root: &Path, rel: &Path, dir: bool) -> Result<(), SyscallError> {
        let path = root.join(rel);
        let line = format!("mount_target {} {}", path.display(), if dir { "dir" } else { "file" });
        self.record("mount target", &path, line)
    }
    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), SyscallError> {
        // The bytes are not recorded: a secret must not show up even in a test's output.
        let line = format!("write_file {} {} bytes {mode:o}", path.display(), contents.len());
        self.record("write", path, line)
    }
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SyscallError> {
        self.record("chown", path, format!("chown {uid}:{gid} {}", path.display()))
    }
}

//! The container side of a run: the setup process (forked by rbuild; enters the namespaces)
//! and the container's PID 1 (mounts the root, pivots, drops privileges, installs the seccomp
//! filter and execs the workload: PID 1 is the workload, as in Docker). Nothing here returns:
//! each process ends in `_exit` or `execve`, and reports failures to rbuild as JSON lines on
//! the report pipe.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::runtime::error::SetupFailure;
use crate::runtime::mounts::{enter_rootfs, mount_rootfs, OverlayKind, RootfsPlan};
use crate::runtime::netpool::JoinNamespaces;
use crate::runtime::seccomp::SeccompProgram;

use crate::runtime::syscall::{LinuxSyscall, Syscall};
use crate::runtime::user::resolve_user;

/// One line on the report pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum SetupReport {
    Mounted(OverlayKind),
    Failed(SetupFailure),
}

/// How the workload's stdio is wired (fds are the setup process's).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChildStdio {
    Inherit,
    Null,
    Pipes { out: RawFd, err: RawFd },
    Pty { slave: RawFd },
}

/// What the workload runs, prepared by rbuild before the fork.
#[derive(Debug, Clone)]
pub(crate) struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Option<String>,
    pub allow_setgroups: bool,
    pub privileged: bool,
    /// The filter installed just before the workload's `execve`; `None`: unconfined.
    pub seccomp: Option<SeccompProgram>,
}

/// Everything the setup process needs.
pub(crate) struct SetupArgs<'a> {
    pub plan: &'a RootfsPlan,
    pub process: &'a ProcessPlan,
    pub parent_pid: i32,
    pub user_namespace: bool,
    /// Written by the setup process once it is in its user namespace (ids to be mapped).
    pub ready: RawFd,
    /// Read by the setup process: a byte once the ids are mapped, EOF if rbuild gave up.
    pub go: RawFd,
    pub report: RawFd,
    pub stdio: ChildStdio,
    /// A prepared network namespace (and its user namespace) to join instead of making them.
    pub join: Option<JoinNamespaces>,
}

/// Exit code of the setup process when it failed before the workload started.
pub(crate) const SETUP_FAILED: i32 = 125;

fn send(report: RawFd, what: &SetupReport) {
    if let Ok(mut line) = serde_json::to_vec(what) {
        line.push(b'\n');
        // SAFETY: writing a buffer we own to a pipe fd we hold.
        unsafe { libc::write(report, line.as_ptr().cast(), line.len()) };
    }
}

pub(crate) fn fail(report: RawFd, failure: SetupFailure) -> ! {
    send(report, &SetupReport::Failed(failure));
    // SAFETY: _exit ends this process without running the parent's atexit handlers.
    unsafe { libc::_exit(SETUP_FAILED) }
}

pub(crate) fn os_failure(op: &str, path: &str, errno: nix::errno::Errno) -> SetupFailure {
    SetupFailure::Syscall {
        op: op.to_string(),
        path: path.to_string(),
        errno: errno as i32,
        message: errno.desc().to_string(),
    }
}

pub(crate) fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `child` and exits this fork child with its exit code (`128 + n` for signal `n`).
pub(crate) fn exit_with_child(child: nix::unistd::Pid) -> ! {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    // SAFETY: see `fail`.
                    unsafe { libc::_exit(code) };
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            // SAFETY: see `fail`.
            Err(_) => unsafe { libc::_exit(SETUP_FAILED) },
        }
    }
}

/// The setup process: runs in the child of `fork` in rbuild, never returns.
pub(crate) fn setup_process(args: &SetupArgs<'_>) -> ! {
    let report = args.report;
    // Die with rbuild; rbuild's signal handlers write to fds that are not ours any more.
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() != args.parent_pid {
        // SAFETY: see `fail`.
        unsafe { libc::_exit(SETUP_FAILED) };
    }
    // Every signal back to its default action: an ignored disposition survives execve, and
    // Rust ignores SIGPIPE (so `yes | head` in a RUN would spin forever); whatever rbuild's own
    // parent ignored, real-time signals included, must not reach the workload either. The raw
    // syscall, because libc refuses the two signals it reserves (32, 33).
    let default_action = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the kernel reads a `struct sigaction` (handler, flags, restorer, mask: at
        // most 32 bytes on every Linux architecture); all zeros is SIG_DFL, no flags, an empty
        // mask. The old action is not asked for (null); 8 is the kernel's sigset size.
        unsafe {
            libc::syscall(libc::SYS_rt_sigaction, sig, default_action.as_ptr(), std::ptr::null_mut::<u64>(), 8usize)
        };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let mut keep = vec![0, 1, 2, report, args.go, args.ready];
    if let Some(join) = args.join {
        keep.extend(std::iter::once(join.net).chain(join.user));
    }
    match args.stdio {
        ChildStdio::Pipes { out, err } => keep.extend([out, err]),
        ChildStdio::Pty { slave } => keep.push(slave),
        ChildStdio::Inherit | ChildStdio::Null => {}
    }
    close_other_fds(&keep);

    let sys = LinuxSyscall;
    // The network namespace is made before rbuild is told `ready`, so that rbuild can start
    // its network stack on it; with a user namespace, in the same call, so that it belongs to
    // the new user namespace (where the container is root).
    let mut early = CloneFlags::empty();
    if args.user_namespace {
        early |= CloneFlags::CLONE_NEWUSER;
    }
    if args.plan.new_network {
        early |= CloneFlags::CLONE_NEWNET;
    }
    if let Some(join) = args.join {
        join_namespaces(join, report);
    } else if !early.is_empty() {
        if let Err(e) = sys.unshare(early) {
            fail(report, os_failure("unshare", &format!("{early:?}"), e.errno));
        }
    }
    // SAFETY: one byte to a pipe we hold.
    unsafe { libc::write(args.ready, b"r".as_ptr().cast(), 1) };
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte into a buffer we own.
    if unsafe { libc::read(args.go, byte.as_mut_ptr().cast(), 1) } != 1 {
        // SAFETY: see `fail`.
        unsafe { libc::_exit(SETUP_FAILED) };
    }
    if args.user_namespace {
        if let Err(e) = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)) {
            fail(report, os_failure("setresgid", "0", e));
        }
        if let Err(e) = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)) {
            fail(report, os_failure("setresuid", "0", e));
        }
    }
    let flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if let Err(e) = sys.unshare(flags) {
        fail(report, os_failure("unshare", &format!("{flags:?}"), e.errno));
    }
    let setup_pid = nix::unistd::getpid().as_raw();
    // SAFETY: this process is single-threaded (a fork child).
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(report, os_failure("fork", "init", e)),
        Ok(ForkResult::Child) => container_init(args, setup_pid),
        Ok(ForkResult::Parent { child }) => {
            // SAFETY: closing fds only the children still need.
            unsafe {
                libc::close(report);
                libc::close(args.go);
            }
            exit_with_child(child)
        }
    }
}

/// Joins a prepared network namespace: its user namespace first (which owns it and where the
/// ids are mapped already), then the network namespace; closes both fds.
fn join_namespaces(join: JoinNamespaces, report: RawFd) {
    for (fd, kind) in
        join.user.map(|u| (u, CloneFlags::CLONE_NEWUSER)).into_iter().chain([(join.net, CloneFlags::CLONE_NEWNET)])
    {
        // SAFETY: setns with an nsfs fd this process holds; close of that fd.
        unsafe {
            if libc::setns(fd, kind.bits()) < 0 {
                fail(report, os_failure("setns", &format!("{kind:?}"), nix::errno::Errno::last()));
            }
            libc::close(fd);
        }
    }
}

/// PID 1 of the container: mounts the root, pivots, then becomes the workload.
fn container_init(args: &SetupArgs<'_>, setup_pid: i32) -> ! {
    let report = args.report;
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() != 0 && nix::unistd::getppid().as_raw() != setup_pid {
        // SAFETY: see `fail`.
        unsafe { libc::_exit(SETUP_FAILED) };
    }
    let sys = LinuxSyscall;
    let fuse = |opts: &str, target: &Path| fuse_overlay_mount(opts, target);
    let kind = match mount_rootfs(&sys, args.plan, &fuse) {
        Ok(kind) => kind,
        Err(f) => fail(report, f),
    };
    send(report, &SetupReport::Mounted(kind));
    if let Err(f) = enter_rootfs(&sys, args.plan, kind) {
        fail(report, f);
    }
    become_workload(args.process, args.stdio, report)
}

/// Inside the container's root: resolves the user, prepares the environment and working dir,
/// wires stdio, drops capabilities, installs the seccomp filter, changes credentials and execs
/// the workload. Shared by the container's PID 1 and `exec`'d processes.
pub(crate) fn become_workload(process: &ProcessPlan, stdio: ChildStdio, report: RawFd) -> ! {
    let sys = LinuxSyscall;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = match resolve_user(process.user.as_deref(), &passwd, &group) {
        Ok(user) => user,
        // The reason crosses the report pipe as text.
        Err(e) => {
            fail(report, SetupFailure::User { user: process.user.clone().unwrap_or_default(), reason: e.to_string() })
        }
    };
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = &process.cwd;
    if let Err(e) = sys.mkdir_all(Path::new(cwd), 0o755) {
        fail(report, os_failure("mkdir", cwd, e.errno));
    }
    if let Err(e) = crate::runtime::rlimits::apply_container_rlimits() {
        fail(report, os_failure("setrlimit", "RLIMIT_NOFILE", nix::errno::Errno::from_raw(e.raw_os_error())));
    }
    let envp: Vec<CString> = env.iter().filter_map(|e| CString::new(e.as_bytes()).ok()).collect();
    let path_var =
        env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(crate::runtime::spec::DEFAULT_PATH).to_string();

    // PID 1 becomes the workload itself, as with Docker (no `--init`): its cmdline is the
    // step's own command, not rbuild's, and reaping orphans is its business.
    wire_stdio(stdio, report);
    if !process.privileged {
        drop_capabilities(report);
    }
    // Installed while still root in this namespace (it needs CAP_SYS_ADMIN without
    // no_new_privs); the profile allows what follows (setgroups, setuid, chdir, execve).
    if let Some(program) = &process.seccomp {
        if let Err(e) = program.install() {
            fail(report, os_failure("seccomp", "", e));
        }
    }
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    if process.allow_setgroups {
        if let Err(e) = nix::unistd::setgroups(&groups) {
            fail(report, os_failure("setgroups", "", e));
        }
    }
    if let Err(e) = nix::unistd::setgid(Gid::from_raw(user.gid)) {
        fail(report, os_failure("setgid", &user.gid.to_string(), e));
    }
    if let Err(e) = nix::unistd::setuid(Uid::from_raw(user.uid)) {
        fail(report, os_failure("setuid", &user.uid.to_string(), e));
    }
    // A change of credentials clears the parent-death signal: set it again, so that the
    // container dies with the setup process (and so with rbuild).
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Err(e) = nix::unistd::chdir(Path::new(cwd)) {
        fail(report, os_failure("chdir", cwd, e));
    }
    exec_workload(&process.args, &envp, &path_var, report)
}

fn wire_stdio(stdio: ChildStdio, report: RawFd) {
    let dup = |from: RawFd, to: RawFd| {
        // SAFETY: dup2 onto the standard fds.
        if unsafe { libc::dup2(from, to) } < 0 {
            fail(report, os_failure("dup2", &to.to_string(), nix::errno::Errno::last()));
        }
    };
    let dev_null = || {
        // SAFETY: opening /dev/null with a static C string.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            fail(report, os_failure("open", "/dev/null", nix::errno::Errno::last()));
        }
        fd
    };
    match stdio {
        ChildStdio::Inherit => {}
        ChildStdio::Null => {
            let null = dev_null();
            for fd in 0..3 {
                dup(null, fd);
            }
        }
        ChildStdio::Pipes { out, err } => {
            let _ = nix::unistd::setsid();
            dup(dev_null(), 0);
            dup(out, 1);
            dup(err, 2);
        }
        ChildStdio::Pty { slave } => {
            let _ = nix::unistd::setsid();
            // SAFETY: making the pty slave our controlling terminal.
            if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
                fail(report, os_failure("TIOCSCTTY", "pty", nix::errno::Errno::last()));
            }
            for fd in 0..3 {
                dup(slave, fd);
            }
            if slave > 2 {
                // SAFETY: the slave is on 0, 1 and 2 now; the workload needs no fourth copy.
                unsafe { libc::close(slave) };
            }
        }
    }
}

/// `execve`s the workload, searching `PATH` when `args[0]` has no `/`.
fn exec_workload(args: &[CString], envp: &[CString], path_var: &str, report: RawFd) -> ! {
    let program = args[0].to_string_lossy().into_owned();
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        path_var.split(':').map(|d| if d.is_empty() { "." } else { d }).map(|d| format!("{d}/{program}")).collect()
    };
    let mut last = nix::errno::Errno::ENOENT;
    for candidate in candidates {
        let Ok(c) = CString::new(candidate) else {
            continue;
        };
        let Err(e) = nix::unistd::execve(&c, args, envp);
        if !matches!(e, nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) {
            last = e;
        }
    }
    let message = if last == nix::errno::Errno::ENOENT && !program.contains('/') {
        "executable file not found in $PATH".to_string()
    } else {
        last.desc().to_string()
    };
    send(report, &SetupReport::Failed(SetupFailure::Exec { program, errno: last as i32, message }));
    let code = if last == nix::errno::Errno::ENOENT { 127 } else { 126 };
    // SAFETY: see `fail`.
    unsafe { libc::_exit(code) }
}

/// Docker's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub(crate) const DEFAULT_CAPABILITIES: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Drops every capability outside [`DEFAULT_CAPABILITIES`] from the bounding set, so the
/// workload (root or not, before and after exec) can never hold them.
fn drop_capabilities(report: RawFd) {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if DEFAULT_CAPABILITIES.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } < 0 {
            let errno = nix::errno::Errno::last();
            if errno != nix::errno::Errno::EINVAL {
                fail(report, os_failure("PR_CAPBSET_DROP", &cap.to_string(), errno));
            }
        }
    }
}

/// Mounts `fuse-overlayfs` at `target` with the kernel overlay options, less the kernel-only
/// `volatile` and `userxattr`.
fn fuse_overlay_mount(opts: &str, target: &Path) -> Result<(), SetupFailure> {
    let opts = opts.trim_end_matches(",userxattr").trim_end_matches(",volatile");
    let out = std::process::Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(opts)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| SetupFailure::FuseOverlay { message: format!("cannot run fuse-overlayfs: {e}") })?;
    if !out.status.success() {
        return Err(SetupFailure::FuseOverlay { message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

fn close_other_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in fds {
        if !keep.contains(&fd) {
            // SAFETY: closing an fd this fork child does not use.
            unsafe { libc::close(fd) };
        }
    }
}

//! Which isolation a process can use, probed once per process, strongest first: namespaces
//! with the kernel overlay (root that may `unshare(CLONE_NEWNS|CLONE_NEWPID|...)`), a user
//! namespace (rootless), else the chroot-snapshot mode (a plain directory, no mounts: an
//! unprivileged CI container). [`choose`] turns `--isolation` into the mode a build uses and
//! says why; a mode that cannot work is an error naming the missing permission and the flag or
//! `docker run` option that fixes it.

use std::path::PathBuf;
use std::sync::OnceLock;

use nix::sched::CloneFlags;

use crate::runtime::spec::Isolation;

/// The mode a build or container uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationChoice {
    /// [`Isolation::Root`], [`Isolation::UserNamespace`] or [`Isolation::Chroot`].
    pub isolation: Isolation,
    /// Why this mode: what the stronger modes lacked, or that it was asked for.
    pub reason: String,
    /// The mode rbuild takes without asking on a normal host (namespaces for root, rootless
    /// for other users): classic output names only the other choices.
    pub usual: bool,
}

/// What runs a chroot-snapshot step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChrootExecutor {
    /// `proot` (ptrace-based: needs no capability, works under Docker's default seccomp, gives
    /// the step `/proc`, `/dev` and `/sys` and the step's user as its ids).
    Proot(PathBuf),
    /// `chroot(2)` in a forked child (needs CAP_SYS_CHROOT; no `/proc` or `/dev`: no mounts).
    Chroot,
}

/// Why a requested isolation cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--isolation {mode} is not available: {reason}; {fix}")]
pub struct IsolationUnavailable {
    pub mode: &'static str,
    pub reason: String,
    pub fix: &'static str,
}

const NAMESPACES_FIX: &str = "it needs root with CAP_SYS_ADMIN (in Docker: `docker run --cap-add SYS_ADMIN \
     --security-opt seccomp=unconfined --security-opt apparmor=unconfined`), or use `--isolation chroot`";
const ROOTLESS_FIX: &str = "it needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; in \
     Docker: `--security-opt seccomp=unconfined --security-opt apparmor=unconfined`) and `uidmap` with an \
     /etc/subuid range, or use `--isolation chroot`";
const CHROOT_FIX: &str = "install proot (Debian/Ubuntu package `proot`), or run as root with CAP_SYS_CHROOT \
     (Docker grants it by default)";

impl Isolation {
    /// The name `--isolation` and the build output use.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Root => "namespaces",
            Isolation::UserNamespace => "rootless",
            Isolation::Chroot => "chroot-snapshot",
        }
    }
}

/// What the environment allows, probed once.
struct Probe {
    namespaces: Result<(), String>,
    rootless: Result<(), String>,
    chroot: Result<ChrootExecutor, String>,
}

fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let root = nix::unistd::geteuid().is_root();
        let ns_flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
        let namespaces = match root {
            false => Err("rbuild is not running as root".to_string()),
            true => try_unshare(ns_flags).map_err(|e| match e {
                nix::errno::Errno::EPERM => "unshare(CLONE_NEWNS) not permitted (no CAP_SYS_ADMIN)".to_string(),
                e => format!("unshare(CLONE_NEWNS|CLONE_NEWPID): {}", e.desc()),
            }),
        };
        let rootless = try_unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| match e {
            nix::errno::Errno::EPERM | nix::errno::Errno::ENOSPC => {
                "unshare(CLONE_NEWUSER) not permitted (seccomp, or user namespaces disabled)".to_string()
            }
            e => format!("unshare(CLONE_NEWUSER): {}", e.desc()),
        });
        Probe { namespaces, rootless, chroot: chroot_executor() }
    })
}

/// Whether a child process may `unshare(flags)` (tried in a forked child, so this process
/// keeps its namespaces).
fn try_unshare(flags: CloneFlags) -> Result<(), nix::errno::Errno> {
    in_child(move || nix::sched::unshare(flags))
}

/// Runs `probe` in a forked child (which exits with the errno it returns) and gives its result.
fn in_child(probe: impl FnOnce() -> Result<(), nix::errno::Errno>) -> Result<(), nix::errno::Errno> {
    use nix::sys::wait::{waitpid, WaitStatus};
    // SAFETY: the child only runs `probe` (unshare(2) and mount(2) calls on values made before
    // the fork) and _exit(2).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let code = match probe() {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, errno) => Err(nix::errno::Errno::from_raw(errno)),
            _ => Err(nix::errno::Errno::EINTR),
        },
    }
}

/// Whether a kernel overlay mount with its upper dir in `scratch` (a new, empty directory on
/// the store's filesystem) works in a new mount namespace: inside a container whose own root is
/// an overlay (Docker's overlay2), a store on that root cannot be an overlay's upper dir.
pub fn overlay_mount_works(scratch: &std::path::Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let dirs = ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    for dir in &dirs {
        std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let options =
        format!("lowerdir={},upperdir={},workdir={}", dirs[0].display(), dirs[1].display(), dirs[2].display());
    let target = dirs[3].clone();
    let result = in_child(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
        mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
    });
    result.map_err(|e| {
        format!(
            "the kernel overlay refuses an upper dir on the store's filesystem ({}; is the store on an overlay? \
             put it on a volume for the namespaces mode)",
            e.desc()
        )
    })
}

/// The isolation `auto` falls back to when the namespaces mode was possible but its overlay is
/// not (`reason`): the chroot-snapshot mode.
pub fn choose_without_overlay(reason: String) -> Result<IsolationChoice, IsolationUnavailable> {
    chroot_choice(reason)
}

/// proot on `PATH`, else chroot(2) when this process holds CAP_SYS_CHROOT.
fn chroot_executor() -> Result<ChrootExecutor, String> {
    if let Some(proot) = crate::runtime::userns::find_in_path("proot") {
        return Ok(ChrootExecutor::Proot(proot));
    }
    match has_capability(CAP_SYS_CHROOT) {
        true => Ok(ChrootExecutor::Chroot),
        false => Err("proot is not installed and chroot(2) needs CAP_SYS_CHROOT".to_string()),
    }
}

/// capability(7) number of CAP_SYS_CHROOT.
const CAP_SYS_CHROOT: u32 = 18;

/// Whether this process has capability `cap` in its effective set (`CapEff` of
/// `/proc/self/status`).
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << cap) != 0)
}

/// How chroot-snapshot steps run here (see [`ChrootExecutor`]).
pub fn chroot_executor_here() -> Result<ChrootExecutor, IsolationUnavailable> {
    probe().chroot.clone().map_err(|reason| IsolationUnavailable { mode: "chroot", reason, fix: CHROOT_FIX })
}

/// The chroot-snapshot mode, because of `reason`, with how its steps run here.
fn chroot_choice(reason: String) -> Result<IsolationChoice, IsolationUnavailable> {
    let how = match chroot_executor_here()? {
        ChrootExecutor::Proot(_) => "steps run under proot",
        ChrootExecutor::Chroot => "steps run with chroot(2) (proot is not installed): no /proc or /dev",
    };
    let reason = format!("{reason}; {how}, on the host's network (no network namespace without unshare)");
    Ok(IsolationChoice { isolation: Isolation::Chroot, reason, usual: false })
}

/// The isolation `requested` becomes here (see the module comment).
pub fn choose(requested: Isolation) -> Result<IsolationChoice, IsolationUnavailable> {
    let probe = probe();
    let root = nix::unistd::geteuid().is_root();
    match requested {
        Isolation::Auto => match (&probe.namespaces, &probe.rootless) {
            (Ok(()), _) => Ok(IsolationChoice {
                isolation: Isolation::Root,
                reason: "root with mount and PID namespaces".into(),
                usual: true,
            }),
            (Err(ns), Ok(())) => Ok(IsolationChoice {
                isolation: Isolation::UserNamespace,
                reason: format!("{ns}; an unprivileged user namespace works"),
                usual: !root,
            }),
            (Err(ns), Err(userns)) => chroot_choice(format!("{ns}; {userns}")),
        },
        Isolation::Root => match &probe.namespaces {
            Ok(()) => Ok(IsolationChoice { isolation: Isolation::Root, reason: "asked for".into(), usual: root }),
            Err(reason) => {
                Err(IsolationUnavailable { mode: "namespaces", reason: reason.clone(), fix: NAMESPACES_FIX })
            }
        },
        Isolation::UserNamespace => match &probe.rootless {
            Ok(()) => {
                Ok(IsolationChoice { isolation: Isolation::UserNamespace, reason: "asked for".into(), usual: !root })
            }
            Err(reason) => Err(IsolationUnavailable { mode: "rootless", reason: reason.clone(), fix: ROOTLESS_FIX }),
        },
        Isolation::Chroot => chroot_choice("asked for (--isolation chroot)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_chroot_gives_chroot_when_it_can_run() {
        match choose(Isolation::Chroot) {
            Ok(choice) => {
                assert_eq!(choice.isolation, Isolation::Chroot);
                assert!(!choice.usual);
                assert!(choice.reason.starts_with("asked for"), "{}", choice.reason);
            }
            Err(e) => assert!(e.to_string().contains("install proot"), "{e}"),
        }
    }

    #[test]
    fn auto_picks_a_concrete_mode() {
        let choice = choose(Isolation::Auto).expect("some mode works on a test machine");
        assert_ne!(choice.isolation, Isolation::Auto);
    }

    #[test]
    fn an_unavailable_mode_names_the_permission_and_the_fix() {
        let e = IsolationUnavailable {
            mode: "namespaces",
            reason: "unshare(CLONE_NEWNS) not permitted (no CAP_SYS_ADMIN)".into(),
            fix: NAMESPACES_FIX,
        };
        let text = e.to_string();
        assert!(text.starts_with("--isolation namespaces is not available: unshare(CLONE_NEWNS) not permitted"));
        assert!(text.contains("--cap-add SYS_ADMIN") && text.contains("--isolation chroot"), "{text}");
    }
}

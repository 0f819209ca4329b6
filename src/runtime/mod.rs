//! Transient containers: namespaces, overlay mounts, pivot_root, process execution and teardown.
//!
//! A [`ContainerSpec`] says what to run and on which root filesystem; [`Container::run`] runs it
//! to completion and tears everything down on success, failure and interruption (SIGINT,
//! SIGTERM, SIGHUP to rbuild). [`cleanup_stale`] removes what a killed rbuild left behind.
//!
//! Process layout of one run:
//!
//! ```text
//! rbuild (caller thread)  ── fork ──► setup process: unshare([USER,] [NET]), [id maps by rbuild,]
//!   starts pasta on its NET (default    unshare(NS, UTS, IPC, PID) ── fork ──► init (PID 1)
//!   network, see `network`),
//!   the setup process's pidfd          waits for init, exits with its code        mounts rootfs, pivot_root,
//!                                                                                  drops privileges, seccomp,
//!                                                                                  execs the workload (PID 1)
//! ```
//!
//! Every mount is made inside the container's own mount namespace, so when the last process
//! of the container dies the kernel drops the mounts; the setup process and init die with
//! rbuild (`PR_SET_PDEATHSIG`); the network stack (pasta) is killed by rbuild when the
//! container ends, or by [`cleanup_stale`] after a killed rbuild. A build's RUN steps instead
//! borrow a network namespace that pasta already serves from the build's [`NetworkPool`]
//! (`netpool`): the setup process joins it with `setns` rather than unsharing one, and it goes
//! back to the pool when the step ends. `exec` joins a running
//! container's namespaces (see `exec`). What stays on the host is the per-container state dir
//! (`<state_dir>/<id>/`: a record, the mount point, the bind-mounted `/etc` files and the
//! overlay "init layer"), removed by an RAII guard or by [`cleanup_stale`].
//!
//! The mount sequence goes through the [`Syscall`] trait so that its order can be checked
//! with a recording fake; [`LinuxSyscall`] is the real one.

mod chroot;
mod container;
mod error;
mod exec;
mod init;
mod isolation;
mod mounts;
mod netpool;
mod network;
mod pty;
mod remove;
mod rlimits;
mod seccomp;
mod signals;
mod spec;
mod state;
mod syscall;
mod user;
mod userns;

pub use chroot::{bound_paths, make_bind_targets, BindTargets};
pub use container::{Container, ContainerExit};
pub use error::{RuntimeError, SetupFailure};
pub use exec::exec_in_container;
pub use isolation::{
    choose as choose_isolation, choose_without_overlay, overlay_mount_works, IsolationChoice, IsolationUnavailable,
};
pub use mounts::{OverlayKind, RootfsPlan};
pub use netpool::NetworkPool;
pub use network::{HostEntry, PortMapping, Protocol};
pub use remove::remove_tree_in_user_namespace;
pub use seccomp::{RuleError, SeccompError, SeccompPolicy};
pub use spec::{
    ContainerSpec, Isolation, LineEnd, LineSink, LineSplitter, Mount, MountKind, NetworkMode, OutputStream,
    OverlayDriver, Rootfs, StdioMode, DEFAULT_PATH,
};
pub use state::{cleanup_stale, container_init_pid, process_start_time, CleanupReport};
pub use syscall::{LinuxSyscall, Syscall, SyscallError};
pub use user::{group_id, passwd_ids, resolve_user, ExecUser, UserError};
pub use userns::{rootless_setup_warning, unprivileged_host_ids, IdMapError};

//! [`NetworkPool`]: network namespaces prepared ahead and reused by a build's RUN steps, as
//! BuildKit keeps a pool of network namespaces that its steps borrow and give back. Starting
//! pasta and letting it configure a namespace costs tens of milliseconds of CPU (its socket
//! pools, the netlink setup), most of a `RUN true` step; a pooled namespace is ready when the
//! step starts, and the setup process joins it (`setns`) instead of making a new one.
//!
//! A [`PreparedNetwork`] is a network namespace (and, rootless, the user namespace that owns
//! it, with the id maps written) held open as files, with pasta already serving it. It is made
//! by a short-lived holder process that unshares the namespaces and is killed once rbuild has
//! opened them. A container borrows one ([`PooledNetwork`]) and gives it back when it ends: by
//! then every process of the container is gone (its PID namespace ends with its PID 1), so no
//! socket or listener of one step is left for the next, and a container without
//! `CAP_NET_ADMIN` cannot change addresses, routes or filters. A privileged container's
//! namespace is torn down instead. The first RUN step of a build prepares one (not ahead: a
//! fully cached build would pay for a namespace it never uses); parallel stages prepare more on
//! demand. Only containers without published ports use the pool (a port is a pasta argument).
//!
//! Leftovers: every prepared namespace has a state dir (`<state_dir>/netns-…`) whose record
//! names rbuild and pasta, so a killed rbuild's pasta is killed by
//! [`crate::runtime::cleanup_stale`]; dropping the pool tears down what it holds.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::runtime::error::RuntimeError;
use crate::runtime::network::{NamespaceFiles, NetworkStack, StackRequest};
use crate::runtime::state::ContainerDir;
use crate::runtime::userns::IdMap;

/// What a prepared namespace must match to serve a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolKey {
    pub state_dir: PathBuf,
    pub user_namespace: bool,
    /// The address pasta forwards to the host's loopback resolver, if any.
    pub dns_forward: Option<&'static str>,
}

/// A network namespace served by pasta, ready for one container. Drop order tears down pasta
/// first, then the state dir.
pub(crate) struct PreparedNetwork {
    pub namespaces: NamespaceFiles,
    _stack: NetworkStack,
    _dir: ContainerDir,
}

/// The namespace fds a setup process joins: the user namespace first (it owns the network one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinNamespaces {
    pub net: i32,
    pub user: Option<i32>,
}

impl PreparedNetwork {
    pub fn join_fds(&self) -> JoinNamespaces {
        JoinNamespaces {
            net: self.namespaces.net.as_raw_fd(),
            user: self.namespaces.user.as_ref().map(AsRawFd::as_raw_fd),
        }
    }
}

#[derive(Default)]
struct PoolState {
    key: Option<PoolKey>,
    /// Namespaces no container uses now.
    idle: Vec<PreparedNetwork>,
    closed: bool,
}

type Shared = Arc<Mutex<PoolState>>;

/// Network namespaces prepared ahead and reused by the build's RUN steps; one per build.
/// Dropping it tears down what it holds.
#[derive(Default)]
pub struct NetworkPool {
    shared: Shared,
}

impl std::fmt::Debug for NetworkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkPool").finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, PoolState> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pooled namespace lent to one container; back to the pool on drop, unless the container
/// could have changed it.
pub(crate) struct PooledNetwork {
    network: Option<PreparedNetwork>,
    shared: Shared,
    key: PoolKey,
    reusable: bool,
}

impl PooledNetwork {
    pub fn join_fds(&self) -> Option<JoinNamespaces> {
        self.network.as_ref().map(PreparedNetwork::join_fds)
    }
}

impl Drop for PooledNetwork {
    fn drop(&mut self) {
        let Some(network) = self.network.take() else { return };
        let mut state = lock(&self.shared);
        if self.reusable && !state.closed && state.key.as_ref() == Some(&self.key) {
            state.idle.push(network);
            return;
        }
        drop(state);
        drop(network);
    }
}

impl NetworkPool {
    pub fn new() -> NetworkPool {
        NetworkPool::default()
    }

    /// A namespace for a container with `key`: an idle one, or one prepared now. `reusable`: the container cannot change the namespace (no
    /// `CAP_NET_ADMIN`), so it goes back to the pool when the container ends.
    pub(crate) fn take(&self, key: &PoolKey, reusable: bool) -> Result<PooledNetwork, RuntimeError> {
        let mut state = lock(&self.shared);
        let stale = if state.key.as_ref() != Some(key) {
            state.key = Some(key.clone());
            std::mem::take(&mut state.idle)
        } else {
            Vec::new()
        };
        let taken = state.idle.pop();
        drop(state);
        drop(stale);
        // Nothing idle (first use, parallel stages): prepared here.
        let network = match taken {
            Some(network) => network,
            None => prepare(key)?,
        };
        Ok(PooledNetwork { network: Some(network), shared: Arc::clone(&self.shared), key: key.clone(), reusable })
    }
}

impl Drop for NetworkPool {
    /// Tears down the idle namespaces. (One lent to a container is torn down when it comes
    /// back.)
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.closed = true;
        let idle = std::mem::take(&mut state.idle);
        drop(state);
        drop(idle);
    }
}

/// Makes a network namespace (rootless: in a new user namespace with the ids mapped) and
/// starts pasta on it.
fn prepare(key: &PoolKey) -> Result<PreparedNetwork, RuntimeError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!("netns-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut dir = ContainerDir::create(&key.state_dir, &id)?;
    let holder = NamespaceHolder::spawn(&id, key.user_namespace)?;
    if key.user_namespace {
        IdMap::for_current_user()
            .apply(holder.pid.as_raw())
            .map_err(|source| RuntimeError::IdMapping { id: id.clone(), source })?;
    }
    let namespaces = NamespaceFiles::of_process(holder.pid.as_raw(), key.user_namespace)?;
    drop(holder);
    let stack = NetworkStack::start(&StackRequest {
        id: &id,
        namespaces: &namespaces,
        ports: &[],
        dns_forward: key.dns_forward,
        dir: dir.path(),
    })?;
    dir.set_network_pid(stack.pid())?;
    Ok(PreparedNetwork { namespaces, _stack: stack, _dir: dir })
}

/// A child process that unshares the namespaces and waits so that rbuild can map its ids and
/// open them; killed and reaped on drop. (Killed rather than told through a pipe: a process
/// forked meanwhile by another thread would hold the pipe's write end.)
struct NamespaceHolder {
    pid: Pid,
}

impl NamespaceHolder {
    fn spawn(id: &str, user_namespace: bool) -> Result<NamespaceHolder, RuntimeError> {
        let mut flags = CloneFlags::CLONE_NEWNET;
        if user_namespace {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (ready_r, ready_w) = nix::unistd::pipe2(cloexec).map_err(RuntimeError::os("pipe2"))?;
        // SAFETY: the child only calls prctl, unshare, write and pause (async-signal-safe).
        let pid = match unsafe { nix::unistd::fork() }.map_err(RuntimeError::os("fork"))? {
            ForkResult::Child => {
                // SAFETY: see above; the buffers are the child's own.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    let errno: i32 = if libc::unshare(flags.bits()) == 0 { 0 } else { *libc::__errno_location() };
                    libc::write(ready_w.as_raw_fd(), errno.to_ne_bytes().as_ptr().cast(), 4);
                    loop {
                        libc::pause();
                    }
                }
            }
            ForkResult::Parent { child } => child,
        };
        drop(ready_w);
        let holder = NamespaceHolder { pid };
        let mut errno = [0u8; 4];
        let read = nix::unistd::read(&ready_r, &mut errno).unwrap_or(0);
        let failed = |reason: String| RuntimeError::Network { id: id.to_string(), reason };
        if read != 4 {
            return Err(failed("the namespace holder process ended early".into()));
        }
        match i32::from_ne_bytes(errno) {
            0 => Ok(holder),
            e => Err(failed(format!("unshare({flags:?}): {}", nix::errno::Errno::from_raw(e).desc()))),
        }
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

//! [`Container`]: prepares a container's state dir, forks its setup process, streams its
//! output, reacts to signals, and returns its exit code once everything is torn down.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::layer::stack::MergedView;
use crate::runtime::error::{RuntimeError, SetupFailure};
use crate::runtime::init::{setup_process, ChildStdio, ProcessPlan, SetupArgs, SetupReport, DEFAULT_CAPABILITIES};
use crate::runtime::mounts::{layer_metadata, resolve_in_layers, OverlayKind, PlannedMount, RootfsPlan};
use crate::runtime::netpool::{NetworkPool, PoolKey, PooledNetwork};
use crate::runtime::network::{
    default_route_address, hosts_file, resolv_conf, NamespaceFiles, NetworkStack, StackRequest,
};
use crate::runtime::pty::{copy_window_size, PtyPair, RawMode};
use crate::runtime::seccomp::SeccompProgram;
use crate::runtime::signals::SignalPipe;
use crate::runtime::spec::{
    ContainerSpec, Isolation, LineSplitter, NetworkMode, OutputStream, Rootfs, StdioMode, DEFAULT_PATH,
};
use crate::runtime::state::{children_of, ContainerDir};
use crate::runtime::userns::IdMap;

/// A container ready to run.
#[derive(Debug)]
pub struct Container {
    spec: ContainerSpec,
    /// Prepared network namespaces for a default network without published ports.
    networks: Option<Arc<NetworkPool>>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit {
    /// The workload's exit code; `128 + n` if it was killed by signal `n`.
    pub code: i32,
    /// What mounted the root filesystem.
    pub overlay: OverlayKind,
    /// Whether it ran in a user namespace (unprivileged mode).
    pub user_namespace: bool,
}

/// The setup process; killed and reaped on drop unless it was reaped already.
struct SetupProcess {
    pid: Pid,
    status: Option<WaitStatus>,
}

impl SetupProcess {
    fn wait(&mut self) -> Result<WaitStatus, RuntimeError> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        loop {
            match waitpid(self.pid, None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.status = Some(status);
                    return Ok(status);
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(RuntimeError::os("waitpid")(e)),
            }
        }
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            // The container's PID 1 dies with the setup process (parent-death signal), but a
            // set-user-ID workload loses that signal at exec: kill it first, which ends its
            // whole PID namespace.
            for init in children_of(self.pid.as_raw()) {
                let _ = nix::sys::signal::kill(Pid::from_raw(init), Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = self.wait();
        }
    }
}

impl Drop for SetupProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(RuntimeError::os("pipe2"))
}

impl Container {
    pub fn new(spec: ContainerSpec) -> Self {
        Container { spec, networks: None }
    }

    /// Takes the default network from `pool` (a prepared namespace, joined) instead of
    /// starting pasta for this container while it waits.
    pub fn with_network_pool(mut self, pool: Arc<NetworkPool>) -> Self {
        self.networks = Some(pool);
        self
    }

    /// Runs the container to completion and tears it down. SIGINT, SIGTERM or SIGHUP to
    /// rbuild meanwhile kill the container and give [`RuntimeError::Interrupted`].
    pub fn run(self) -> Result<ContainerExit, RuntimeError> {
        let mut spec = self.spec;
        validate(&spec)?;
        let user_namespace = match spec.isolation {
            Isolation::Auto => !nix::unistd::geteuid().is_root(),
            Isolation::Root if !nix::unistd::geteuid().is_root() => return Err(RuntimeError::NotRoot),
            Isolation::Root => false,
            Isolation::UserNamespace => true,
            Isolation::Chroot => return crate::runtime::chroot::run(spec),
        };
        let mut cdir = ContainerDir::create(&spec.state_dir, &spec.id)?;
        let (plan, dns_forward) = rootfs_plan(&spec, cdir.path(), user_namespace)?;
        let id_map = user_namespace.then(IdMap::for_current_user);
        let process = process_plan(&spec, id_map.as_ref())?;
        let pooled = match &self.networks {
            Some(pool) if spec.network == NetworkMode::Default && spec.ports.is_empty() => {
                let key = PoolKey { state_dir: spec.state_dir.clone(), user_namespace, dns_forward };
                Some(pool.take(&key, !spec.privileged)?)
            }
            _ => None,
        };

        let signals = SignalPipe::new()?;
        let (report_r, report_w) = pipe()?;
        let (ready_r, ready_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let mut stdio = std::mem::replace(&mut spec.stdio, StdioMode::Null);
        let (child_stdio, out_pipes, pty) = stdio_wiring(&stdio)?;
        let args = SetupArgs {
            plan: &plan,
            process: &process,
            parent_pid: std::process::id() as i32,
            user_namespace,
            ready: ready_w.as_raw_fd(),
            go: go_r.as_raw_fd(),
            report: report_w.as_raw_fd(),
            stdio: child_stdio,
            join: pooled.as_ref().and_then(PooledNetwork::join_fds),
        };
        // SAFETY: the child only runs `setup_process`, which ends in _exit or execve.
        let child = match unsafe { nix::unistd::fork() }.map_err(RuntimeError::os("fork"))? {
            ForkResult::Child => setup_process(&args),
            ForkResult::Parent { child } => child,
        };
        let mut setup = SetupProcess { pid: child, status: None };
        drop((ready_w, go_r, report_w));
        let output = match out_pipes {
            Some((out_r, err_r, out_w, err_w)) => {
                drop((out_w, err_w));
                vec![(out_r, LineSplitter::new(OutputStream::Stdout)), (err_r, LineSplitter::new(OutputStream::Stderr))]
            }
            None => Vec::new(),
        };
        let pty_master = pty.map(|pair| pair.master);
        cdir.set_setup_pid(child.as_raw())?;

        let namespaces = SetupNamespaces { child, id_map: id_map.as_ref(), pooled: pooled.is_some(), dns_forward };
        let network = namespaces.connect(&spec, &mut cdir, &ready_r, go_w)?;

        let raw_mode = match pty_master {
            Some(_) => RawMode::enter(std::io::stdin().as_fd()),
            None => None,
        };
        let sink = match &mut stdio {
            StdioMode::Lines(sink) => Some(sink),
            _ => None,
        };
        let mut events = EventLoop {
            signals: &signals,
            pidfd: pidfd_open(child)?,
            report: Some(report_r),
            report_bytes: Vec::new(),
            output,
            sink,
            pty_master,
            pty_log: match &spec.pty_log {
                Some(path) => Some(
                    fs_err::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path)
                        .map_err(RuntimeError::io("opening", path))?,
                ),
                None => None,
            },
            stdin_open: true,
        };
        let outcome = events.run(&mut setup);
        drop(raw_mode);
        let status = match outcome {
            Ok(status) => status,
            Err(signal) => {
                setup.kill();
                return Err(RuntimeError::Interrupted { id: spec.id.clone(), signal });
            }
        }?;
        let overlay = read_setup_report(&events.report_bytes, &spec.id)?;
        let code = match status {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
            other => unreachable!("wait returned {other:?}"),
        };
        let overlay = overlay.ok_or_else(|| RuntimeError::Setup {
            id: spec.id.clone(),
            failure: SetupFailure::Other {
                message: format!("setup process exited with {code} before mounting the root"),
            },
        })?;
        drop(events);
        drop(setup);
        drop(network);
        drop(pooled);
        drop(cdir);
        if let Rootfs::Overlay { work, .. } = &spec.rootfs {
            if spec.volatile_upper && overlay == OverlayKind::Kernel {
                remove_volatile_marker(work);
            }
        }
        Ok(ContainerExit { code, overlay, user_namespace })
    }
}

/// What rbuild does to the setup process's new namespaces before it goes on.
struct SetupNamespaces<'a> {
    child: Pid,
    id_map: Option<&'a IdMap>,
    /// It joined a pooled namespace: ids mapped and network served already.
    pooled: bool,
    dns_forward: Option<&'static str>,
}

impl SetupNamespaces<'_> {
    /// Once the setup process is in its user and network namespaces (`ready` has a byte; it
    /// failed otherwise): maps its ids and starts pasta on its network namespace (default
    /// network), then tells it to go on (`go`).
    fn connect(
        &self,
        spec: &ContainerSpec,
        cdir: &mut ContainerDir,
        ready: &OwnedFd,
        go: OwnedFd,
    ) -> Result<Option<NetworkStack>, RuntimeError> {
        let mut byte = [0u8; 1];
        if nix::unistd::read(ready, &mut byte).unwrap_or(0) != 1 {
            return Ok(None);
        }
        let mut network = None;
        if !self.pooled {
            if let Some(map) = self.id_map {
                map.apply(self.child.as_raw())
                    .map_err(|source| RuntimeError::IdMapping { id: spec.id.clone(), source })?;
            }
            if spec.network == NetworkMode::Default {
                let namespaces = NamespaceFiles::of_process(self.child.as_raw(), self.id_map.is_some())?;
                let stack = NetworkStack::start(&StackRequest {
                    id: &spec.id,
                    namespaces: &namespaces,
                    ports: &spec.ports,
                    dns_forward: self.dns_forward,
                    dir: cdir.path(),
                })?;
                cdir.set_network_pid(stack.pid())?;
                network = Some(stack);
            }
        }
        let _ = nix::unistd::write(&go, b"g");
        Ok(network)
    }
}

/// Everything the setup process needs to mount the root, made in the state dir `cdir`: the
/// `/etc` files, the mount point, the planned extra mounts and, for an overlay, the init
/// layer with their targets.
/// Also the address pasta must forward to the host's resolvers, if any.
fn rootfs_plan(
    spec: &ContainerSpec,
    cdir: &Path,
    user_namespace: bool,
) -> Result<(RootfsPlan, Option<&'static str>), RuntimeError> {
    let (etc_files, dns_forward) = write_etc_files(cdir, spec)?;
    let mount_point = cdir.join("rootfs");
    fs_err::create_dir(&mount_point).map_err(RuntimeError::io("creating mount point", &mount_point))?;
    let mounts = plan_mounts(spec)?;
    let files_dir = cdir.join("files");
    fs_err::create_dir(&files_dir).map_err(RuntimeError::io("creating", &files_dir))?;
    let rootfs = match &spec.rootfs {
        Rootfs::Overlay { lower, upper, work } => {
            let init = cdir.join("init");
            build_init_layer(&init, lower)?;
            let layers = MergedView::from_top_first(std::iter::once(upper).chain(lower).cloned().collect());
            add_mount_targets(&spec.id, &init, &layers, &mounts)?;
            let mut all = vec![init];
            all.extend(lower.iter().cloned());
            Rootfs::Overlay { lower: all, upper: upper.clone(), work: work.clone() }
        }
        Rootfs::Dir(dir) => Rootfs::Dir(dir.clone()),
    };
    let plan = RootfsPlan {
        rootfs,
        mount_point,
        etc_files,
        hostname: spec.hostname.clone(),
        user_namespace,
        new_network: spec.network.is_isolated(),
        overlay: spec.overlay,
        volatile: spec.volatile_upper,
        privileged: spec.privileged,
        mounts,
        files_dir,
    };
    Ok((plan, dns_forward))
}

/// The output pipes of [`StdioMode::Lines`]: stdout's and stderr's read and write ends.
type OutputPipes = (OwnedFd, OwnedFd, OwnedFd, OwnedFd);

/// How the workload's streams are wired for `stdio`: what the setup process is told, and the
/// pipes or pseudo-terminal rbuild keeps.
fn stdio_wiring(stdio: &StdioMode) -> Result<(ChildStdio, Option<OutputPipes>, Option<PtyPair>), RuntimeError> {
    Ok(match stdio {
        StdioMode::Inherit => (ChildStdio::Inherit, None, None),
        StdioMode::Null => (ChildStdio::Null, None, None),
        StdioMode::Lines(_) => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let wiring = ChildStdio::Pipes { out: out_w.as_raw_fd(), err: err_w.as_raw_fd() };
            (wiring, Some((out_r, err_r, out_w, err_w)), None)
        }
        StdioMode::Pty => {
            let pair = PtyPair::open()?;
            copy_window_size(std::io::stdin().as_fd(), pair.master.as_fd());
            (ChildStdio::Pty { slave: pair.slave.as_raw_fd() }, None, Some(pair))
        }
    })
}

/// What the setup process reported: the root it mounted (`None` if it ended before), or
/// the failure it reported.
fn read_setup_report(report: &[u8], id: &str) -> Result<Option<OverlayKind>, RuntimeError> {
    let mut overlay = None;
    for line in report.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<SetupReport>(line) {
            Ok(SetupReport::Mounted(kind)) => overlay = Some(kind),
            Ok(SetupReport::Failed(failure)) => return Err(RuntimeError::Setup { id: id.to_string(), failure }),
            Err(e) => {
                return Err(RuntimeError::Setup {
                    id: id.to_string(),
                    failure: SetupFailure::Other { message: format!("unreadable setup report: {e}") },
                })
            }
        }
    }
    Ok(overlay)
}

/// After a kernel overlay mounted `volatile` has gone with its container (the upper dir is
/// consistent), removes the marker of an unclean volatile mount from its work dir.
fn remove_volatile_marker(work: &Path) {
    // The kernel makes these dirs with mode 0, which stops an unprivileged owner.
    let inner = work.join("work");
    for dir in [&inner, &inner.join("incompat"), &inner.join("incompat/volatile")] {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_dir_all(inner.join("incompat"));
}

fn validate(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    let invalid = |reason: &str| RuntimeError::InvalidSpec { id: spec.id.clone(), reason: reason.to_string() };
    if spec.id.is_empty()
        || !spec.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || spec.id.starts_with('.')
    {
        return Err(invalid("id must be letters, digits, '-', '_' or '.', not starting with '.'"));
    }
    if spec.args.is_empty() || spec.args[0].is_empty() {
        return Err(invalid("no command to run"));
    }
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') {
            return Err(invalid("working dir must be absolute"));
        }
    }
    if !spec.ports.is_empty() && spec.network != NetworkMode::Default {
        return Err(invalid("published ports need the default network"));
    }
    if let Rootfs::Overlay { lower, .. } = &spec.rootfs {
        if lower.is_empty() {
            return Err(invalid("an overlay needs at least one lower dir"));
        }
    }
    Ok(())
}

/// The spec's extra mounts with their targets resolved in the root's layers, parents first.
fn plan_mounts(spec: &ContainerSpec) -> Result<Vec<PlannedMount>, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidSpec { id: spec.id.clone(), reason };
    let layers = MergedView::from_top_first(match &spec.rootfs {
        Rootfs::Overlay { lower, upper, .. } => std::iter::once(upper).chain(lower).cloned().collect(),
        Rootfs::Dir(dir) => vec![dir.clone()],
    });
    let mut planned = Vec::new();
    for m in &spec.mounts {
        if !m.target.starts_with('/') {
            return Err(invalid(format!("mount target {:?} must be absolute", m.target)));
        }
        if let crate::runtime::MountKind::Bind { source, .. } = &m.kind {
            if source.symlink_metadata().is_err() {
                return Err(invalid(format!("bind source {} does not exist", source.display())));
            }
        }
        let target = resolve_in_layers(&layers, &m.target)
            .ok_or_else(|| invalid(format!("mount target {}: too many levels of symbolic links", m.target)))?;
        if target.as_os_str().is_empty() {
            return Err(invalid(format!("mount target {:?} is the root", m.target)));
        }
        if let Some(file) = target
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .find(|a| layer_metadata(&layers, a).is_some_and(|meta| !meta.is_dir()))
        {
            return Err(invalid(format!("mount target {}: /{} is not a directory", m.target, file.display())));
        }
        let target_is_dir = m.kind.target_is_dir();
        if let Some(meta) = layer_metadata(&layers, &target) {
            if meta.is_dir() != target_is_dir {
                let (is, needs) =
                    if target_is_dir { ("not a directory", "a directory") } else { ("a directory", "a file") };
                return Err(invalid(format!(
                    "mount target {} is {is} in the image, the mount needs {needs}",
                    m.target
                )));
            }
        }
        planned.push(PlannedMount { target, target_is_dir, kind: m.kind.clone() });
    }
    // A mount inside another one's target must come after it (stable: same depth keeps order).
    planned.sort_by_key(|m| m.target.components().count());
    Ok(planned)
}

pub(crate) fn process_plan(spec: &ContainerSpec, id_map: Option<&IdMap>) -> Result<ProcessPlan, RuntimeError> {
    let args = spec.args.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<Vec<_>, _>>().map_err(|_| {
        RuntimeError::InvalidSpec { id: spec.id.clone(), reason: "an argument contains a NUL byte".into() }
    })?;
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd: spec.working_dir.clone().unwrap_or_else(|| "/".into()),
        user: spec.user.clone(),
        allow_setgroups: id_map.is_none_or(IdMap::allows_setgroups),
        privileged: spec.privileged,
        seccomp: if spec.privileged {
            None
        } else {
            SeccompProgram::for_policy(&spec.seccomp, &DEFAULT_CAPABILITIES)
                .map_err(|source| RuntimeError::Seccomp { id: spec.id.clone(), source })?
        },
    })
}

/// Writes the files bind-mounted over `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`;
/// also the address pasta must forward to the host's resolvers, if any.
type EtcFiles = (Vec<(PathBuf, &'static str)>, Option<&'static str>);

fn write_etc_files(dir: &Path, spec: &ContainerSpec) -> Result<EtcFiles, RuntimeError> {
    let own_ip = if spec.network == NetworkMode::Default { default_route_address() } else { None };
    let hosts = hosts_file(spec.network, &spec.hostname, &spec.extra_hosts, own_ip);
    let (resolv, dns_forward) = resolv_conf(spec.network);
    let etc = dir.join("etc");
    fs_err::create_dir(&etc).map_err(RuntimeError::io("creating", &etc))?;
    let mut out = Vec::new();
    for (name, text, target) in [
        ("hosts", hosts, "etc/hosts"),
        ("resolv.conf", resolv, "etc/resolv.conf"),
        ("hostname", format!("{}\n", spec.hostname), "etc/hostname"),
    ] {
        let path = etc.join(name);
        fs_err::write(&path, text).map_err(RuntimeError::io("writing", &path))?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(RuntimeError::io("chmod", &path))?;
        out.push((path, target));
    }
    Ok((out, dns_forward))
}

/// Adds the extra mounts' targets (and their missing parents) to the init layer, so they
/// exist in the merged view without ever reaching the upper dir (BuildKit also removes the
/// mount stubs it creates, moby/buildkit#3307). Directories that shadow one in the layers
/// copy its mode, owner and mtime, so the merged view (and a copy-up) looks the same.
fn add_mount_targets(id: &str, init: &Path, layers: &MergedView, mounts: &[PlannedMount]) -> Result<(), RuntimeError> {
    for m in mounts {
        let names: Vec<&std::ffi::OsStr> = m.target.iter().collect();
        let mut rel = PathBuf::new();
        for (i, name) in names.iter().enumerate() {
            rel.push(name);
            let path = init.join(&rel);
            let last = i + 1 == names.len();
            if path.symlink_metadata().is_ok() {
                if path.symlink_metadata().is_ok_and(|meta| meta.is_dir() != (!last || m.target_is_dir)) {
                    return Err(RuntimeError::InvalidSpec {
                        id: id.to_string(),
                        reason: format!("mount target /{} clashes with another mount", m.target.display()),
                    });
                }
                continue;
            }
            if last && !m.target_is_dir {
                fs_err::write(&path, b"").map_err(RuntimeError::io("creating init layer", &path))?;
                continue;
            }
            fs_err::create_dir(&path).map_err(RuntimeError::io("creating init layer", &path))?;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(RuntimeError::io("chmod init layer", &path))?;
        }
    }
    // Metadata last: making entries in a dir moves its mtime.
    for m in mounts {
        let dirs = if m.target_is_dir { Some(m.target.as_path()) } else { m.target.parent() };
        for rel in dirs.into_iter().flat_map(Path::ancestors).filter(|p| !p.as_os_str().is_empty()) {
            if let Some(meta) = layer_metadata(layers, rel).filter(|meta| meta.is_dir()) {
                copy_dir_metadata(&init.join(rel), &meta)?;
            }
        }
    }
    Ok(())
}

/// Gives an init layer dir the mode, owner and mtime of the dir it shadows.
fn copy_dir_metadata(path: &Path, meta: &std::fs::Metadata) -> Result<(), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(RuntimeError::io("chmod init layer", path))?;
    // Best effort without root: the owner is then the caller, root in the namespace.
    let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    let time = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

/// The overlay's top lower layer: mount points (`/proc`, `/sys`, `/dev`, the `/etc` files)
/// that must exist in the merged view but must never be copied into the upper dir. Its
/// directories copy the mode, owner and mtime of the lower dirs they shadow.
fn build_init_layer(init: &Path, lowers: &[PathBuf]) -> Result<(), RuntimeError> {
    for dir in ["etc", "proc", "sys", "dev"] {
        let path = init.join(dir);
        fs_err::create_dir_all(&path).map_err(RuntimeError::io("creating init layer", &path))?;
    }
    for file in ["hosts", "resolv.conf", "hostname"] {
        let path = init.join("etc").join(file);
        fs_err::write(&path, b"").map_err(RuntimeError::io("creating init layer", &path))?;
    }
    for dir in ["etc", "proc", "sys", "dev"] {
        let path = init.join(dir);
        let shadowed =
            lowers.iter().map(|l| l.join(dir)).find_map(|p| p.symlink_metadata().ok().filter(|m| m.is_dir()));
        let Some(meta) = shadowed else { continue };
        copy_dir_metadata(&path, &meta)?;
    }
    let mode = std::fs::Permissions::from_mode(0o755);
    fs_err::set_permissions(init, mode).map_err(RuntimeError::io("chmod init layer", init))
}

fn pidfd_open(pid: Pid) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(RuntimeError::os("pidfd_open")(nix::errno::Errno::last()));
    }
    // SAFETY: fd is a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// rbuild's side of a running container: output, setup reports, signals, exit.
struct EventLoop<'a> {
    signals: &'a SignalPipe,
    pidfd: OwnedFd,
    report: Option<OwnedFd>,
    report_bytes: Vec<u8>,
    /// Open output pipes, each with its splitter (holding the partial last line).
    output: Vec<(OwnedFd, LineSplitter)>,
    sink: Option<&'a mut crate::runtime::spec::LineSink>,
    pty_master: Option<OwnedFd>,
    pty_log: Option<fs_err::File>,
    stdin_open: bool,
}

enum Source {
    Signals,
    Exit,
    Report,
    Output(usize),
    PtyMaster,
    Stdin,
}

impl EventLoop<'_> {
    /// Reads output stream `i` and hands its complete lines to the sink; `false` once it is
    /// closed (its partial last line handed on).
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let (fd, splitter) = &mut self.output[i];
        let n = nix::unistd::read(&*fd, buf).unwrap_or(0);
        let Some(sink) = self.sink.as_mut() else { return n > 0 };
        if n == 0 {
            splitter.finish(sink);
            return false;
        }
        splitter.push(&buf[..n], sink);
        true
    }

    /// Runs until the setup process has exited and every stream is drained. `Err(signal)`
    /// when rbuild was told to stop.
    fn run(&mut self, setup: &mut SetupProcess) -> Result<Result<WaitStatus, RuntimeError>, i32> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut exited = false;
        loop {
            let streams_open = self.report.is_some() || !self.output.is_empty() || self.pty_master.is_some();
            if exited && !streams_open {
                return Ok(setup.wait());
            }
            let stdin = std::io::stdin();
            let mut sources = vec![Source::Signals];
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.signals.fd()];
            if !exited {
                sources.push(Source::Exit);
                fds.push(self.pidfd.as_fd());
            }
            if let Some(r) = &self.report {
                sources.push(Source::Report);
                fds.push(r.as_fd());
            }
            for (i, (fd, _)) in self.output.iter().enumerate() {
                sources.push(Source::Output(i));
                fds.push(fd.as_fd());
            }
            if let Some(m) = &self.pty_master {
                sources.push(Source::PtyMaster);
                fds.push(m.as_fd());
                if self.stdin_open {
                    sources.push(Source::Stdin);
                    fds.push(stdin.as_fd());
                }
            }
            let mut polls: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
            // After the exit, everything still open is drained with a bound.
            let timeout = if exited { PollTimeout::from(2000u16) } else { PollTimeout::NONE };
            match nix::poll::poll(&mut polls, timeout) {
                Ok(0) => {
                    self.report = None;
                    self.output.clear();
                    self.pty_master = None;
                    continue;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Ok(Err(RuntimeError::os("poll")(e))),
            }
            let ready: Vec<usize> = polls
                .iter()
                .enumerate()
                .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| i)
                .collect();
            let ready: Vec<&Source> = ready.into_iter().map(|i| &sources[i]).collect();
            let mut closed_outputs = Vec::new();
            let mut close_master = false;
            for source in ready {
                match source {
                    Source::Signals => {
                        for sig in self.signals.drain() {
                            if sig == libc::SIGWINCH {
                                if let Some(m) = &self.pty_master {
                                    copy_window_size(std::io::stdin().as_fd(), m.as_fd());
                                }
                            } else {
                                return Err(sig);
                            }
                        }
                    }
                    Source::Exit => {
                        exited = true;
                    }
                    Source::Report => {
                        let n = self.report.as_ref().map_or(0, |r| nix::unistd::read(r, &mut buf).unwrap_or(0));
                        if n == 0 {
                            self.report = None;
                        } else {
                            self.report_bytes.extend_from_slice(&buf[..n]);
                        }
                    }
                    Source::Output(i) => {
                        if !self.read_output(*i, &mut buf) {
                            closed_outputs.push(*i);
                        }
                    }
                    Source::PtyMaster => {
                        let n = self.pty_master.as_ref().map_or(0, |m| nix::unistd::read(m, &mut buf).unwrap_or(0));
                        if n == 0 {
                            close_master = true;
                        } else {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&buf[..n]);
                            let _ = out.flush();
                            if let Some(log) = self.pty_log.as_mut() {
                                let _ = log.write_all(&buf[..n]);
                            }
                        }
                    }
                    Source::Stdin => {
                        let n = nix::unistd::read(std::io::stdin(), &mut buf).unwrap_or(0);
                        if n == 0 {
                            self.stdin_open = false;
                        } else if let Some(m) = &self.pty_master {
                            let _ = nix::unistd::write(m, &buf[..n]);
                        }
                    }
                }
            }
            closed_outputs.sort_unstable();
            for i in closed_outputs.into_iter().rev() {
                self.output.remove(i);
            }
            if close_master {
                self.pty_master = None;
            }
        }
    }
}

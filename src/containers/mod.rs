//! Long-lived containers (`rbuild run/ps/logs/stop/start/rm/diff/commit/export`): their
//! records in the store, their kept upper dirs, running them in the foreground or under a
//! detached monitor process, stopping and removing them.
//!
//! On disk, beside the image store:
//! ```text
//! containers/<id>.json        ContainerRecord ({"image": "sha256:…", …}; keeps the image alive)
//! containers/<id>/upper/      the container's writable layer, kept until `rm`
//! containers/<id>/work/       overlay's work dir
//! containers/<id>/log         what the container wrote (stdout and stderr)
//! run/<id>/                   the runtime's state dir while it runs (see `cleanup_stale`)
//! ```
//! Whoever runs a container (the foreground `rbuild run`, or the detached monitor `rbuild
//! container-monitor <id>`) records itself in `monitor_pid` and writes the exit code when the
//! container ends; a record that says running but whose monitor is gone reads as exited.

mod names;
mod ports;
mod snapshot;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::image::ImageConfig;
use crate::layer::diff::LayerError;
use crate::runtime::{
    cleanup_stale, container_init_pid, process_start_time, Container, ContainerSpec, HostEntry, LineEnd, LineSink,
    NetworkMode, OutputStream, PortMapping, Protocol, Rootfs, RuntimeError, SeccompPolicy, SetupFailure, StdioMode,
};
use crate::store::{ImageStore, StoreError, StoredImage};

pub use names::{generated_name, is_valid_name, new_container_id};
pub use ports::{inspect_ports, parse_port_proto, port_lines, ps_column, PortBinding, PortSyntaxError};
pub use snapshot::CommitOptions;

/// The hidden subcommand the detached monitor runs as: `rbuild container-monitor <id>`.
pub const MONITOR_COMMAND: &str = "container-monitor";

/// Errors of container lifecycle operations; each names the container or path involved.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error(
        "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
    )]
    RemoveRunning { id: String },
    #[error("Container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is already running")]
    AlreadyRunning { id: String },
    #[error("No command specified")]
    NoCommand,
    #[error("image {image}: unreadable config: {source}")]
    ImageConfig { image: String, source: serde_json::Error },
    #[error("container record {path}: {source}")]
    Record { path: PathBuf, source: serde_json::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("invalid change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("container {id} did not stop within {seconds} seconds after SIGKILL")]
    StopTimeout { id: String, seconds: u64 },
    #[error("starting the monitor of container {id}: {source}")]
    Monitor { id: String, source: std::io::Error },
    #[error("container {id} failed to start: {source}")]
    Start { id: String, code: i32, source: Box<RuntimeError> },
    #[error("container {id}: cannot publish ports: {reason}")]
    Ports { id: String, reason: String },
    #[error("exporting container {id}: {source}")]
    Export { id: String, source: crate::layer::apply::ApplyError },
    #[error("writing the export of container {id}: {source}")]
    ExportWrite { id: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
    #[error(transparent)]
    Layer(#[from] LayerError),
}

impl From<RuntimeError> for LifecycleError {
    fn from(e: RuntimeError) -> Self {
        LifecycleError::Runtime(Box::new(e))
    }
}

pub type Result<T, E = LifecycleError> = std::result::Result<T, E>;

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> LifecycleError + 'p {
    move |source| LifecycleError::Io { op, path: path.to_path_buf(), source }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

/// `--network` as recorded: a namespace of its own served by pasta, the host's network, or
/// only loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerNetwork {
    Default,
    Host,
    None,
}

/// `containers/<id>.json`: the store's `{"image": …}` plus everything needed to show, run
/// again, commit and remove the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The image ID, `sha256:…` (the field the store reads to keep the image alive).
    pub image: String,
    pub id: String,
    pub name: String,
    /// The image as the user named it (`busybox`), for `ps`.
    pub image_name: String,
    /// Docker's Config.Entrypoint and Config.Cmd; the command is their concatenation.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub network: ContainerNetwork,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// RFC 3339.
    pub created: String,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The process running the container (foreground rbuild or the detached monitor), with
    /// its start time so that a reused pid is not mistaken for it.
    pub monitor_pid: Option<i32>,
    pub monitor_start: Option<u64>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub log: PathBuf,
    /// `--security-opt seccomp=…` (a profile is kept with its text, as Docker does).
    #[serde(default)]
    pub seccomp: SeccompPolicy,
    /// `-p` and `-P` as asked (host ports may be left to choose at start).
    #[serde(default)]
    pub port_bindings: Vec<PortBinding>,
    /// The ports published while it runs (empty when it does not).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// `--add-host` entries.
    #[serde(default)]
    pub extra_hosts: Vec<HostEntry>,
}

impl ContainerRecord {
    /// The argv the container runs: entrypoint then cmd.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.entrypoint.clone().unwrap_or_default();
        args.extend(self.cmd.clone().unwrap_or_default());
        args
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    pub fn network_mode(&self) -> NetworkMode {
        match self.network {
            ContainerNetwork::Default => NetworkMode::Default,
            ContainerNetwork::Host => NetworkMode::Host,
            ContainerNetwork::None => NetworkMode::None,
        }
    }

    fn monitor_alive(&self) -> bool {
        match (self.monitor_pid, self.monitor_start) {
            (Some(pid), Some(start)) => is_alive(pid, start),
            _ => false,
        }
    }
}

/// What `rbuild run` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image; replace the image's CMD when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's ENTRYPOINT (and drops its CMD); `""` clears it.
    pub entrypoint: Option<String>,
    /// `-e K=V` (or `-e K`, taking K from rbuild's environment).
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub network: NetworkMode,
    /// `-p` values.
    pub publish: Vec<PortBinding>,
    /// `-P`: publish every EXPOSEd port on a host port chosen at start.
    pub publish_all: bool,
    /// `--add-host` entries.
    pub extra_hosts: Vec<HostEntry>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub seccomp: SeccompPolicy,
}

/// What `rbuild exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    /// `-e K=V`, over the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `-t`: a pseudo-terminal for the command.
    pub tty: bool,
    /// `-i`: the command reads rbuild's stdin (through the terminal with `-t`).
    pub interactive: bool,
}

/// How a foreground run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code: the workload's, or `128 + n` when rbuild got signal `n`.
    pub code: i32,
    /// rbuild was told to stop (SIGINT, SIGTERM, SIGHUP) and killed the container.
    pub interrupted: bool,
}

/// The containers of one store.
#[derive(Debug, Clone)]
pub struct Containers {
    store: ImageStore,
}

impl Containers {
    /// Opens the containers of `store` and cleans up what killed rbuild processes left in the
    /// runtime's state dir.
    pub fn open(store: ImageStore) -> Result<Self> {
        let containers = Containers { store };
        let records = containers.records_dir();
        fs_err::create_dir_all(&records).map_err(io_err("creating", &records))?;
        let state_dir = containers.state_dir();
        fs_err::create_dir_all(&state_dir).map_err(io_err("creating", &state_dir))?;
        cleanup_stale(&state_dir)?;
        Ok(containers)
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The runtime's state dir, shared with the build engine: `<root>/run`.
    pub fn state_dir(&self) -> PathBuf {
        self.store.root().join("run")
    }

    fn records_dir(&self) -> PathBuf {
        self.store.root().join("containers")
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    /// `containers/<id>/`: upper, work and log.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.records_dir().join(id)
    }

    /// Every container, newest first. Records of other kinds in `containers/` (plain
    /// `{"image": …}` from other tools) are skipped.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.records_dir();
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(io_err("reading", &dir))? {
            let path = entry.map_err(io_err("reading", &dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let Ok(record) = serde_json::from_slice::<ContainerRecord>(&bytes) else { continue };
            out.push(settle(record));
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A container by full ID, name, or unique ID prefix.
    pub fn find(&self, name_or_id: &str) -> Result<ContainerRecord> {
        let all = self.list()?;
        let wanted = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if let Some(r) = all.iter().find(|r| r.id == wanted || r.name == wanted) {
            return Ok(r.clone());
        }
        let mut prefixed = all.iter().filter(|r| !wanted.is_empty() && r.id.starts_with(wanted));
        match (prefixed.next(), prefixed.next()) {
            (Some(r), None) => Ok(r.clone()),
            _ => Err(LifecycleError::NoSuchContainer(name_or_id.to_string())),
        }
    }

    /// Reads a container's record again (its monitor may have changed it).
    pub fn reload(&self, id: &str) -> Result<ContainerRecord> {
        let path = self.record_path(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LifecycleError::NoSuchContainer(id.to_string()))
            }
            Err(source) => return Err(LifecycleError::Io { op: "reading", path, source }),
        };
        let record = serde_json::from_slice(&bytes).map_err(|source| LifecycleError::Record { path, source })?;
        Ok(settle(record))
    }

    /// Writes a record atomically.
    pub fn save(&self, record: &ContainerRecord) -> Result<()> {
        let path = self.record_path(&record.id);
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|source| LifecycleError::Record { path: path.clone(), source })?;
        self.store.write_atomic(&path, &bytes)?;
        Ok(())
    }

    /// Creates a container: resolves the image, combines its config with the options as
    /// Docker does, makes `containers/<id>/{upper,work,log}` and writes the record.
    pub fn create(&self, opts: &CreateOptions) -> Result<ContainerRecord> {
        let image = self.store.resolve(&opts.image)?;
        let config = image.config.clone();
        let existing = self.list()?;
        let name = match &opts.name {
            Some(name) => {
                let name = name.strip_prefix('/').unwrap_or(name);
                if !is_valid_name(name) {
                    return Err(LifecycleError::InvalidName(name.to_string()));
                }
                if let Some(other) = existing.iter().find(|r| r.name == name) {
                    return Err(LifecycleError::NameInUse { name: name.to_string(), id: other.id.clone() });
                }
                name.to_string()
            }
            None => (0..)
                .map(generated_name)
                .find(|n| !existing.iter().any(|r| &r.name == n))
                .unwrap_or_else(new_container_id),
        };
        let (entrypoint, cmd) = combine_command(&config, opts);
        if entrypoint.iter().chain(cmd.iter()).all(Vec::is_empty) {
            return Err(LifecycleError::NoCommand);
        }
        let mut env = config.config.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={}", crate::runtime::DEFAULT_PATH));
        }
        for e in &opts.env {
            let entry = match e.split_once('=') {
                Some(_) => e.clone(),
                None => match std::env::var(e) {
                    Ok(v) => format!("{e}={v}"),
                    Err(_) => continue,
                },
            };
            let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k).to_string();
            env.retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
            env.push(entry);
        }
        let port_bindings = port_bindings(&config, opts)?;
        let id = new_container_id();
        let dir = self.container_dir(&id);
        let upper = dir.join("upper");
        let work = dir.join("work");
        let log = dir.join("log");
        for d in [&upper, &work] {
            fs_err::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        fs_err::write(&log, b"").map_err(io_err("creating", &log))?;
        let record = ContainerRecord {
            image: image.id.to_string(),
            id: id.clone(),
            name,
            image_name: opts.image.clone(),
            entrypoint,
            cmd,
            env,
            working_dir: opts.working_dir.clone().unwrap_or_else(|| config.config.working_dir.clone()),
            user: opts.user.clone().unwrap_or_else(|| config.config.user.clone()),
            network: match opts.network {
                NetworkMode::Default => ContainerNetwork::Default,
                NetworkMode::Host => ContainerNetwork::Host,
                NetworkMode::None => ContainerNetwork::None,
            },
            tty: opts.tty,
            interactive: opts.interactive,
            auto_remove: opts.auto_remove,
            created: chrono::Utc::now().to_rfc3339(),
            state: ContainerState::Created,
            exit_code: None,
            started_at: None,
            finished_at: None,
            monitor_pid: None,
            monitor_start: None,
            upper,
            work,
            log,
            seccomp: opts.seccomp.clone(),
            port_bindings,
            ports: Vec::new(),
            extra_hosts: opts.extra_hosts.clone(),
        };
        // The store's record first (under its lock), then ours over it.
        self.store.add_container(&id, &image.id)?;
        if let Err(e) = self.save(&record) {
            let _ = self.store.remove_container(&id);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(record)
    }

    /// The runtime spec for a record: the image's layers below its kept upper dir.
    fn spec(&self, record: &ContainerRecord, stdio: StdioMode) -> Result<ContainerSpec> {
        let image = self.store.resolve(&record.image)?;
        let mut lower = self.store.ensure_unpacked(&image)?;
        lower.reverse();
        if lower.is_empty() {
            let empty = self.container_dir(&record.id).join("empty");
            fs_err::create_dir_all(&empty).map_err(io_err("creating", &empty))?;
            lower.push(empty);
        }
        // A reused work dir may hold overlay's leftovers from the last run.
        clear_dir(&record.work)?;
        let rootfs = Rootfs::Overlay { lower, upper: record.upper.clone(), work: record.work.clone() };
        let mut spec = ContainerSpec::new(&record.id, rootfs, record.args(), self.state_dir());
        spec.env = record.env.clone();
        spec.working_dir = (!record.working_dir.is_empty()).then(|| record.working_dir.clone());
        spec.user = (!record.user.is_empty()).then(|| record.user.clone());
        spec.network = record.network_mode();
        spec.ports = record.ports.clone();
        spec.extra_hosts = record.extra_hosts.clone();
        spec.seccomp = record.seccomp.clone();
        if matches!(stdio, StdioMode::Pty) {
            spec.pty_log = Some(record.log.clone());
        }
        spec.stdio = stdio;
        Ok(spec)
    }

    /// Runs a container in this process until it exits, recording this process as its
    /// monitor and then its exit code. `stdio`: how the container's streams are wired; with
    /// [`RunStdio::Log`] its output is copied to the log and to rbuild's stdout/stderr.
    pub fn run_attached(&self, record: &mut ContainerRecord, stdio: RunStdio) -> Result<RunOutcome> {
        if record.state == ContainerState::Running {
            return Err(LifecycleError::AlreadyRunning { id: record.id.clone() });
        }
        let stdio = match stdio {
            RunStdio::Inherit => StdioMode::Inherit,
            RunStdio::Pty => StdioMode::Pty,
            RunStdio::Log { echo } => StdioMode::Lines(log_sink(&record.log, echo)?),
        };
        record.ports = record
            .port_bindings
            .iter()
            .map(PortBinding::resolve)
            .collect::<std::io::Result<_>>()
            .map_err(|source| LifecycleError::Ports { id: record.id.clone(), reason: source.to_string() })?;
        let spec = self.spec(record, stdio)?;
        let pid = std::process::id() as i32;
        record.state = ContainerState::Running;
        record.started_at = Some(chrono::Utc::now().to_rfc3339());
        record.finished_at = None;
        record.exit_code = None;
        record.monitor_pid = Some(pid);
        record.monitor_start = process_start_time(pid);
        self.save(record)?;
        let result = Container::new(spec).run();
        let (outcome, failure) = match result {
            Ok(exit) => (RunOutcome { code: exit.code, interrupted: false }, None),
            Err(RuntimeError::Interrupted { signal, .. }) => {
                (RunOutcome { code: 128 + signal, interrupted: true }, None)
            }
            Err(e) => (RunOutcome { code: start_failure_code(&e), interrupted: false }, Some(e)),
        };
        record.state = ContainerState::Exited;
        record.ports.clear();
        record.exit_code = Some(outcome.code);
        record.finished_at = Some(chrono::Utc::now().to_rfc3339());
        record.monitor_pid = None;
        record.monitor_start = None;
        self.save(record)?;
        match failure {
            Some(source) => {
                Err(LifecycleError::Start { id: record.id.clone(), code: outcome.code, source: Box::new(source) })
            }
            None => Ok(outcome),
        }
    }

    /// Starts a detached monitor (`<exe> container-monitor <id>`, its own session, stdio to
    /// the container's log) and waits until it has taken the container over.
    pub fn spawn_monitor(&self, record: &ContainerRecord) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let monitor_err = |source| LifecycleError::Monitor { id: record.id.clone(), source };
        let exe = std::env::current_exe().map_err(monitor_err)?;
        let log = fs_err::OpenOptions::new().append(true).create(true).open(&record.log).map_err(monitor_err)?;
        let log_err = log.try_clone().map_err(monitor_err)?;
        let mut command = std::process::Command::new(exe);
        command
            .arg(MONITOR_COMMAND)
            .arg(&record.id)
            .env("RBUILD_ROOT", self.store.root())
            .stdin(std::process::Stdio::null())
            .stdout(log.into_parts().0)
            .stderr(log_err.into_parts().0);
        // SAFETY: setsid is async-signal-safe and touches no memory of this process.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(monitor_err)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let current = self.reload(&record.id)?;
            if current.started_at != record.started_at {
                // The monitor reparents to init when this process exits; it is not waited for.
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let message = format!("the monitor exited with {status} before starting the container");
                return Err(monitor_err(std::io::Error::other(message)));
            }
            if Instant::now() > deadline {
                return Err(monitor_err(std::io::Error::other("timed out waiting for the monitor")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's init (PID 1 inside), if it runs.
    fn init_pid(&self, record: &ContainerRecord) -> Option<i32> {
        container_init_pid(&self.state_dir(), &record.id)
    }

    /// Sends `signal` to the container's PID 1, the workload (as in Docker, a signal it has no
    /// handler for does nothing, except SIGKILL, which ends the whole PID namespace). Without an init yet, SIGKILL goes to
    /// the monitor, whose death takes the container down.
    fn signal(&self, record: &ContainerRecord, signal: nix::sys::signal::Signal) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        match self.init_pid(record) {
            Some(init) => {
                let _ = kill(Pid::from_raw(init), signal);
            }
            None if signal == Signal::SIGKILL => {
                if let (Some(pid), true) = (record.monitor_pid, record.monitor_alive()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            None => {}
        }
    }

    /// Waits until the container is no longer running; returns its record.
    fn wait_stopped(&self, id: &str, timeout: Duration) -> Result<Option<ContainerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.reload(id)?;
            if current.state != ContainerState::Running {
                return Ok(Some(current));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `docker stop`: the image's STOPSIGNAL (SIGTERM by default), then SIGKILL after
    /// `timeout`. A stopped container is left as it is.
    pub fn stop(&self, record: &ContainerRecord, timeout: Duration) -> Result<ContainerRecord> {
        let current = self.reload(&record.id)?;
        if current.state != ContainerState::Running {
            return Ok(current);
        }
        let configured = self.image_of(&current).ok().map(|i| i.config);
        let signal = configured.and_then(|c| parse_signal(&c.config.stop_signal));
        self.signal(&current, signal.unwrap_or(nix::sys::signal::Signal::SIGTERM));
        if let Some(done) = self.wait_stopped(&record.id, timeout)? {
            return Ok(done);
        }
        self.kill(&current)
    }

    /// SIGKILL and wait for the monitor to record the end.
    pub fn kill(&self, record: &ContainerRecord) -> Result<ContainerRecord> {
        use nix::sys::signal::Signal;
        self.signal(record, Signal::SIGKILL);
        const GRACE: u64 = 10;
        self.wait_stopped(&record.id, Duration::from_secs(GRACE))?
            .ok_or_else(|| LifecycleError::StopTimeout { id: record.id.clone(), seconds: GRACE })
    }

    /// Removes a container: its record (releasing the image) and `containers/<id>/`. A running
    /// one is refused unless `force`, which kills it first.
    pub fn remove(&self, record: &ContainerRecord, force: bool) -> Result<()> {
        let current = self.reload(&record.id)?;
        if current.state == ContainerState::Running {
            if !force {
                return Err(LifecycleError::RemoveRunning { id: record.id.clone() });
            }
            self.kill(&current)?;
        }
        let dir = self.container_dir(&record.id);
        // An unprivileged container's upper dir holds files of its subordinate ids.
        crate::store::trees::remove_tree(&dir).map_err(|source| LifecycleError::Io {
            op: "removing",
            path: dir.clone(),
            source,
        })?;
        self.store.remove_container(&record.id)?;
        Ok(())
    }

    /// `start` without `-a`: a detached monitor runs the container; a running one is left as is.
    pub fn start_detached(&self, record: &ContainerRecord) -> Result<()> {
        if record.state == ContainerState::Running {
            return Ok(());
        }
        self.spawn_monitor(record)
    }

    /// What the container wrote to stdout and stderr (nothing if it has no log yet).
    pub fn logs(&self, record: &ContainerRecord) -> Result<Vec<u8>> {
        match std::fs::read(&record.log) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(LifecycleError::Io { op: "reading", path: record.log.clone(), source }),
        }
    }

    /// The pids (as the host sees them) of every process of a running container: those in
    /// its PID 1's PID namespace.
    pub fn processes(&self, record: &ContainerRecord) -> Result<Vec<i32>> {
        let init = self.running_init(record)?;
        let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let wanted = ns(init);
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .map_err(io_err("reading", Path::new("/proc")))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| wanted.is_some() && ns(*pid) == wanted)
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// The PID 1 of a running container, or why there is none. A container that `run -d`
    /// has just started may still be setting up its root: it is given a few seconds.
    fn running_init(&self, record: &ContainerRecord) -> Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let current = self.reload(&record.id)?;
            match (current.state, self.init_pid(&current)) {
                (ContainerState::Running, Some(pid)) => return Ok(pid),
                (ContainerState::Running, None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return Err(LifecycleError::NotRunning { id: record.id.clone() }),
            }
        }
    }

    /// `exec`: runs `opts.command` in the running container (its namespaces, user, env and
    /// working dir unless given) with rbuild's stdio; returns the exit code.
    pub fn exec(&self, record: &ContainerRecord, opts: &ExecOptions) -> Result<i32> {
        let init = self.running_init(record)?;
        let rootfs = Rootfs::Dir(PathBuf::from("/"));
        let mut spec = ContainerSpec::new(&record.id, rootfs, opts.command.clone(), self.state_dir());
        spec.env = record.env.clone();
        for entry in &opts.env {
            let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
            spec.env.retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
            spec.env.push(entry.clone());
        }
        let working_dir = opts.working_dir.clone().unwrap_or_else(|| record.working_dir.clone());
        spec.working_dir = (!working_dir.is_empty()).then_some(working_dir);
        let user = opts.user.clone().unwrap_or_else(|| record.user.clone());
        spec.user = (!user.is_empty()).then_some(user);
        spec.seccomp = record.seccomp.clone();
        spec.stdio = if opts.tty { StdioMode::Pty } else { StdioMode::Inherit };
        match crate::runtime::exec_in_container(init, &spec, opts.interactive) {
            Ok(code) => Ok(code),
            Err(e) => {
                Err(LifecycleError::Start { id: record.id.clone(), code: start_failure_code(&e), source: Box::new(e) })
            }
        }
    }

    /// The image a container was created from.
    pub fn image_of(&self, record: &ContainerRecord) -> Result<StoredImage> {
        Ok(self.store.resolve(&record.image)?)
    }
}

/// How [`Containers::run_attached`] wires the container's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStdio {
    /// rbuild's own stdin, stdout and stderr (`-i`, and the detached monitor, whose stdout
    /// is the log).
    Inherit,
    /// A pseudo-terminal (`-t`).
    Pty,
    /// stdin `/dev/null`; output lines go to the log, and to stdout/stderr when `echo`.
    Log { echo: bool },
}

impl RunStdio {
    /// How an attached run wires a container's streams: a pseudo-terminal for `-t`, rbuild's
    /// own for `-i`, else the log (echoed).
    pub fn attached(tty: bool, interactive: bool) -> Self {
        if tty {
            RunStdio::Pty
        } else if interactive {
            RunStdio::Inherit
        } else {
            RunStdio::Log { echo: true }
        }
    }
}

fn log_sink(path: &Path, echo: bool) -> Result<LineSink> {
    let mut log = fs_err::OpenOptions::new().append(true).create(true).open(path).map_err(io_err("opening", path))?;
    Ok(Box::new(move |stream, piece, end| {
        // The bytes as the container wrote them: a newline only where it wrote one.
        let newline: &[u8] = if end == LineEnd::Newline { b"\n" } else { b"" };
        let _ = log.write_all(piece).and_then(|()| log.write_all(newline));
        if echo {
            let _ = match stream {
                OutputStream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(piece).and_then(|()| out.write_all(newline)).and_then(|()| out.flush())
                }
                OutputStream::Stderr => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(piece).and_then(|()| err.write_all(newline))
                }
            };
        }
    }))
}

/// A signal as STOPSIGNAL names it: `SIGQUIT`, `QUIT` or `3`. Only signals the container's
/// init passes on to the workload are accepted.
fn parse_signal(text: &str) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let text = text.trim();
    let signal = match text.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok()?,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
            name.parse::<Signal>().ok()?
        }
    };
    let forwarded =
        [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];
    forwarded.contains(&signal).then_some(signal)
}

/// Docker's exit codes for a container that could not start: 127 command not found, 126 not
/// executable, 125 anything else.
fn start_failure_code(error: &RuntimeError) -> i32 {
    match error {
        RuntimeError::Setup { failure: SetupFailure::Exec { errno, .. }, .. } if *errno == libc::ENOENT => 127,
        RuntimeError::Setup { failure: SetupFailure::Exec { .. }, .. } => 126,
        _ => 125,
    }
}

/// A record that says running but whose monitor is gone (kill -9) reads as exited.
fn settle(mut record: ContainerRecord) -> ContainerRecord {
    if record.state == ContainerState::Running && !record.monitor_alive() {
        record.state = ContainerState::Exited;
        record.exit_code = record.exit_code.or(Some(137));
        record.monitor_pid = None;
        record.monitor_start = None;
    }
    record
}

fn is_alive(pid: i32, start: u64) -> bool {
    if process_start_time(pid) != Some(start) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

fn clear_dir(dir: &Path) -> Result<()> {
    crate::store::trees::remove_tree(dir).map_err(|source| LifecycleError::Io {
        op: "clearing",
        path: dir.to_path_buf(),
        source,
    })?;
    fs_err::create_dir_all(dir).map_err(io_err("creating", dir))
}

/// The ports to publish: `-p` values, then (`-P`) every EXPOSEd port not published already,
/// on a host port chosen at start. Only the default network publishes ports.
fn port_bindings(config: &ImageConfig, opts: &CreateOptions) -> Result<Vec<PortBinding>> {
    let mut bindings = opts.publish.clone();
    if opts.publish_all {
        for (port, protocol) in exposed_ports(config) {
            if !bindings.iter().any(|b| (b.container_port, b.protocol) == (port, protocol)) {
                bindings.push(PortBinding { host_ip: None, host_port: None, container_port: port, protocol });
            }
        }
    }
    if !bindings.is_empty() && opts.network != NetworkMode::Default {
        return Err(LifecycleError::Ports {
            id: opts.name.clone().unwrap_or_default(),
            reason: format!("--network {} has no ports to publish; use the default network", opts.network.as_str()),
        });
    }
    Ok(bindings)
}

/// The image's EXPOSEd ports (`80/tcp`, `53/udp`; unreadable entries skipped).
pub fn exposed_ports(config: &ImageConfig) -> Vec<(u16, Protocol)> {
    config.config.exposed_ports.keys().filter_map(|k| parse_port_proto(k, "EXPOSE").ok()).collect()
}

/// Docker's rules: `--entrypoint` replaces the image's ENTRYPOINT and drops its CMD; command
/// arguments replace CMD.
fn combine_command(config: &ImageConfig, opts: &CreateOptions) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let entrypoint = match &opts.entrypoint {
        Some(e) if e.is_empty() => None,
        Some(e) => Some(vec![e.clone()]),
        None => config.config.entrypoint.clone(),
    };
    let cmd = if !opts.command.is_empty() {
        Some(opts.command.clone())
    } else if opts.entrypoint.is_some() {
        None
    } else {
        config.config.cmd.clone()
    };
    (entrypoint, cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut c = ImageConfig::scratch("linux", "amd64", None);
        c.config.entrypoint = entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect());
        c.config.cmd = cmd.map(|v| v.iter().map(|s| s.to_string()).collect());
        c
    }

    fn args(c: &ImageConfig, opts: &CreateOptions) -> Vec<String> {
        let (e, c) = combine_command(c, opts);
        e.unwrap_or_default().into_iter().chain(c.unwrap_or_default()).collect()
    }

    #[test]
    fn command_combines_like_docker() {
        let image = config(Some(&["/entry"]), Some(&["default"]));
        assert_eq!(args(&image, &CreateOptions::default()), ["/entry", "default"]);
        let given = CreateOptions { command: vec!["x".into()], ..Default::default() };
        assert_eq!(args(&image, &given), ["/entry", "x"]);
        let over = CreateOptions { entrypoint: Some("sh".into()), ..Default::default() };
        assert_eq!(args(&image, &over), ["sh"]);
        let cleared =
            CreateOptions { entrypoint: Some(String::new()), command: vec!["ls".into()], ..Default::default() };
        assert_eq!(args(&image, &cleared), ["ls"]);
        assert_eq!(args(&config(None, Some(&["sh"])), &CreateOptions::default()), ["sh"]);
    }

    #[test]
    fn stop_signals_parse_like_stopsignal() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("usr1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("1"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("SIGKILL"), None);
    }

    #[test]
    fn dead_monitor_reads_as_exited() {
        let record = ContainerRecord {
            image: "sha256:00".into(),
            id: "a".repeat(64),
            name: "n".into(),
            image_name: "busybox".into(),
            entrypoint: None,
            cmd: Some(vec!["sh".into()]),
            env: vec![],
            working_dir: String::new(),
            user: String::new(),
            network: ContainerNetwork::Host,
            tty: false,
            interactive: false,
            auto_remove: false,
            created: "2026-01-01T00:00:00Z".into(),
            state: ContainerState::Running,
            exit_code: None,
            started_at: None,
            finished_at: None,
            monitor_pid: Some(i32::MAX),
            monitor_start: Some(1),
            upper: PathBuf::new(),
            work: PathBuf::new(),
            log: PathBuf::new(),
            seccomp: SeccompPolicy::Default,
            port_bindings: Vec::new(),
            ports: Vec::new(),
            extra_hosts: Vec::new(),
        };
        let settled = settle(record);
        assert_eq!(settled.state, ContainerState::Exited);
        assert_eq!(settled.exit_code, Some(137));
    }
}

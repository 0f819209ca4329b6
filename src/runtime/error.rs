//! Errors of the runtime, and [`SetupFailure`], the report a container's setup process sends
//! back to rbuild over a pipe when it cannot start the workload.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why the container could not be set up or started, as reported from inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SetupFailure {
    #[error("{op} {path}: {message}")]
    Syscall { op: String, path: String, errno: i32, message: String },
    #[error("unable to find user {user}: {reason}")]
    User { user: String, reason: String },
    #[error("exec {program:?}: {message}")]
    Exec { program: String, errno: i32, message: String },
    #[error("fuse-overlayfs: {message}")]
    FuseOverlay { message: String },
    #[error("{message}")]
    Other { message: String },
}

/// Errors of [`crate::runtime`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: invalid spec: {reason}")]
    InvalidSpec { id: String, reason: String },
    #[error("container {id} already has a state dir at {path}")]
    AlreadyExists { id: String, path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{op}: {source}")]
    Os { op: &'static str, source: nix::errno::Errno },
    #[error("container {id}: {failure}")]
    Setup { id: String, failure: SetupFailure },
    #[error("user namespace for container {id}: {source}")]
    IdMapping { id: String, source: crate::runtime::userns::IdMapError },
    #[error("root mode needs root; run as root or use Isolation::UserNamespace")]
    NotRoot,
    #[error("container {id} interrupted by signal {signal}; it was killed and torn down")]
    Interrupted { id: String, signal: i32 },
    #[error("container {id}: {source}")]
    Seccomp { id: String, source: crate::runtime::seccomp::SeccompError },
    #[error("container {id}: network: {reason}")]
    Network { id: String, reason: String },
    #[error("reading state record {path}: {reason}")]
    StateRecord { path: PathBuf, reason: String },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RuntimeError::Io { op, path, source }
    }

    pub(crate) fn os(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> Self {
        move |source| RuntimeError::Os { op, source }
    }
}

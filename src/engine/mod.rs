//! The build engine: walks a [`crate::plan::BuildPlan`] stage by stage (independent stages in
//! parallel), looks each step's cache key up, runs what missed (config changes, RUN in a
//! transient container, COPY/ADD into a fresh upper dir), commits layers and images to the
//! store, records cache keys, and reports everything as [`crate::events::BuildEvent`]s.
//!
//! [`Builder`] is the library entry point; `rbuild build` is a thin CLI over it.

pub mod add;
pub mod builder;
pub mod cache;
mod cache_lookup;
pub mod classic_cache;
mod commit;
pub mod config;
pub mod copy;
mod copy_step;
pub mod destination;
pub mod executor;
pub mod llb_facts;
pub mod outputs;
pub mod planning;
mod rekey;
pub mod run_mounts;
pub mod run_step;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod settings;
pub mod shared_cache;
pub mod snapshot_step;
pub mod sources;
pub mod ssh;
mod workdir;

pub use builder::{BuildOptions, BuildOutput, Builder};
pub use settings::BuildSettings;

use crate::frontend::Diagnostic;

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is wrong (file:line:col inside).
    #[error(transparent)]
    Dockerfile(#[from] Diagnostic),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// `--isolation` asks for a mode this environment does not allow (or none works).
    #[error(transparent)]
    Isolation(#[from] crate::runtime::IsolationUnavailable),
    #[error(transparent)]
    Layer(#[from] crate::layer::diff::LayerError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `--cache-to`/`--cache-from`: the shared cache could not be written or read.
    #[error(transparent)]
    CacheTransfer(#[from] crate::registry::cache::CacheTransferError),
    /// A base image is not in the store and could not be pulled (or `--pull` failed).
    #[error("pull access denied for {reference}: {reason}")]
    BaseImageMissing { reference: String, reason: String },
    /// A RUN exited non-zero: Docker's wording.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed { step: usize, command: String, code: i32, last_image: Option<String> },
    #[error("step {step}: {message}")]
    Step { step: usize, message: String },
    /// `RUN --mount=type=secret,id=…,required` without a matching `--secret`.
    #[error("step {step}: secret {id} is required but was not provided (use --secret id={id},src=<file>)")]
    SecretMissing { step: usize, id: String },
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// `RUN --mount=type=ssh,required` without a matching `--ssh`.
    #[error("step {step}: ssh agent {id} is required but was not provided (use --ssh {id}[=SOCKET])")]
    SshMissing { step: usize, id: String },
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    #[error(transparent)]
    NotEntitled(#[from] crate::plan::entitlements::NotEntitled),
    /// `FROM --platform=` names a platform other than the one the build runs on.
    #[error("step {step}: FROM --platform={platform}: rbuild runs steps natively and can only build for {native} here (no emulation)")]
    ForeignPlatform { step: usize, platform: String, native: String },
    #[error("step {step}: {what} is not supported yet")]
    Unsupported { step: usize, what: String },
    #[error("build interrupted")]
    Cancelled { last_image: Option<String> },
    #[error("internal error: {0}")]
    Internal(String),
    /// A store, I/O, runtime, layer, cache or context error while step `step` ran; shown as
    /// the error itself.
    #[error("{error}")]
    InStep { step: usize, error: Box<BuildError> },
}

impl BuildError {
    /// The step the error happened in, when it belongs to one.
    pub fn step(&self) -> Option<usize> {
        match self {
            BuildError::RunFailed { step, .. }
            | BuildError::Step { step, .. }
            | BuildError::SecretMissing { step, .. }
            | BuildError::SshMissing { step, .. }
            | BuildError::Unsupported { step, .. }
            | BuildError::ForeignPlatform { step, .. }
            | BuildError::InStep { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// This error as one of step `step`, when it is one that does not name its step (store,
    /// I/O, runtime, layer, cache, context).
    pub fn at_step(self, step: usize) -> BuildError {
        match self {
            e @ (BuildError::Store(_)
            | BuildError::Io(_)
            | BuildError::Runtime(_)
            | BuildError::Layer(_)
            | BuildError::Cache(_)
            | BuildError::CacheTransfer(_)
            | BuildError::Context(_)) => BuildError::InStep { step, error: Box::new(e) },
            other => other,
        }
    }

    /// The last image that was built before the failure (to debug with `rbuild run`).
    pub fn last_image(&self) -> Option<&str> {
        match self {
            BuildError::RunFailed { last_image, .. } | BuildError::Cancelled { last_image } => last_image.as_deref(),
            BuildError::InStep { error, .. } => error.last_image(),
            _ => None,
        }
    }

    /// Whether the build was interrupted (Ctrl-C or SIGTERM): the CLI exits 130.
    pub fn is_interrupted(&self) -> bool {
        match self {
            BuildError::InStep { error, .. } => error.is_interrupted(),
            _ => matches!(
                self,
                BuildError::Cancelled { .. } | BuildError::Runtime(crate::runtime::RuntimeError::Interrupted { .. })
            ),
        }
    }
}

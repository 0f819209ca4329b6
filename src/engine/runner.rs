//! The engine's one seam to the runtime: [`ContainerRunner`] runs a RUN step's container from
//! its [`ContainerSpec`] (as youki puts its syscalls behind a trait). [`RuntimeRunner`] is the
//! real one; the executor's unit tests use a recording runner that keeps the specs it was
//! given and simulates what the command does, so the engine is tested without root.

use std::sync::Arc;

use crate::runtime::{Container, ContainerExit, ContainerSpec, NetworkPool, RuntimeError};

/// Runs one container to its end.
pub trait ContainerRunner: Send + Sync {
    /// Runs `spec` (its overlay's upper dir receives what the command writes) and returns how
    /// the command exited.
    fn run(&self, spec: ContainerSpec) -> Result<ContainerExit, RuntimeError>;
}

/// Runs containers with [`crate::runtime`]: namespaces, the overlay, the process. One per
/// build: it keeps the build's pool of prepared network namespaces (torn down on drop).
#[derive(Debug, Default)]
pub struct RuntimeRunner {
    networks: Arc<NetworkPool>,
}

impl ContainerRunner for RuntimeRunner {
    fn run(&self, spec: ContainerSpec) -> Result<ContainerExit, RuntimeError> {
        Container::new(spec).with_network_pool(Arc::clone(&self.networks)).run()
    }
}

#[cfg(test)]
pub(crate) mod recording {
    //! A [`ContainerRunner`] for tests: records what it was asked to run.

    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::ContainerRunner;
    use crate::runtime::{
        ContainerExit, ContainerSpec, Mount, MountKind, NetworkMode, OverlayKind, Rootfs, RuntimeError,
    };

    /// What a RUN asked for, without the spec's output sink (which cannot be kept).
    #[derive(Debug, Clone, PartialEq)]
    pub struct RecordedRun {
        pub args: Vec<String>,
        pub env: Vec<String>,
        pub user: Option<String>,
        pub working_dir: Option<String>,
        pub network: NetworkMode,
        /// (target, what) of every extra mount; `what` is `bind`, `tmpfs` or `file`.
        pub mounts: Vec<(String, &'static str)>,
        /// The overlay's upper dir, where the command's writes go.
        pub upper: Option<PathBuf>,
        /// The overlay's lower dirs, top-most first.
        pub lower: Vec<PathBuf>,
    }

    type Effect = Box<dyn Fn(&RecordedRun) -> Result<i32, RuntimeError> + Send + Sync>;

    /// Records every spec; `effect` plays the command (writes into the upper dir) and returns
    /// its exit code, or the runtime's failure.
    pub struct RecordingRunner {
        pub runs: Mutex<Vec<RecordedRun>>,
        effect: Effect,
    }

    impl RecordingRunner {
        /// A runner whose commands do nothing and exit 0.
        pub fn new() -> Self {
            Self::with_effect(|_| 0)
        }

        pub fn with_effect(effect: impl Fn(&RecordedRun) -> i32 + Send + Sync + 'static) -> Self {
            Self::with_outcome(move |run| Ok(effect(run)))
        }

        /// A runner whose containers end as `outcome` says (an error: the runtime failed).
        pub fn with_outcome(
            outcome: impl Fn(&RecordedRun) -> Result<i32, RuntimeError> + Send + Sync + 'static,
        ) -> Self {
            RecordingRunner { runs: Mutex::new(Vec::new()), effect: Box::new(outcome) }
        }

        pub fn recorded(&self) -> Vec<RecordedRun> {
            self.runs.lock().map(|r| r.clone()).unwrap_or_default()
        }
    }

    impl ContainerRunner for RecordingRunner {
        fn run(&self, spec: ContainerSpec) -> Result<ContainerExit, RuntimeError> {
            let (upper, lower) = match &spec.rootfs {
                Rootfs::Overlay { lower, upper, .. } => (Some(upper.clone()), lower.clone()),
                _ => (None, Vec::new()),
            };
            let kind = |m: &Mount| match m.kind {
                MountKind::Bind { .. } => "bind",
                MountKind::Tmpfs { .. } => "tmpfs",
                MountKind::File { .. } => "file",
            };
            let run = RecordedRun {
                args: spec.args.clone(),
                env: spec.env.clone(),
                user: spec.user.clone(),
                working_dir: spec.working_dir.clone(),
                network: spec.network,
                mounts: spec.mounts.iter().map(|m| (m.target.clone(), kind(m))).collect(),
                upper,
                lower,
            };
            let code = (self.effect)(&run);
            if let Ok(mut runs) = self.runs.lock() {
                runs.push(run);
            }
            Ok(ContainerExit { code: code?, overlay: OverlayKind::Kernel, user_namespace: false })
        }
    }
}

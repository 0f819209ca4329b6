//! The one image model: the image config blob (container defaults, `rootfs`, `history`,
//! platform fields) with its Docker/OCI JSON in and out, the [`Platform`] an image is for, and
//! Docker's default `PATH`.
//!
//! This module sits at the bottom of the module graph: it does no I/O and imports nothing
//! else of rbuild, so `store`, `registry`, `engine`, `runtime` and `cli` can all share it.
//! A config blob is parsed once ([`ImageConfig::from_json`]) and kept parsed beside its bytes;
//! [`ImageConfig::to_json`] writes the bytes whose sha256 is the image ID.

pub mod config;
pub mod platform;
mod workdir;

pub use config::{default_shell, ContainerConfig, HealthConfig, HistoryEntry, ImageConfig, RootFs};
pub use platform::{Platform, PlatformError};
pub use workdir::{clean_path, resolve_workdir};

/// Docker's default PATH: set in every image and container that has none, as `docker build`
/// and `docker run` do.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

//! Build events and their renderers. The engine only emits [`BuildEvent`]s; a renderer turns
//! them into what a user or a program reads: [`ClassicRenderer`] mirrors `docker build`'s
//! classic output, [`JsonRenderer`] writes one event per line for CI and test suites.
//!
//! # JSON schema (stable)
//!
//! Each line is one JSON object with an `"event"` field naming its kind; steps are numbered as
//! in `Step N/M` (1-based, `step` and `total`). Fields are only ever added, never renamed or
//! removed.
//!
//! | `event` | fields |
//! |---|---|
//! | `build_started` | `context_files`, `context_bytes`, `total_steps` |
//! | `step_started` | `step`, `total`, `stage`, `instruction` (as written), `cache_key` (empty for an ARG before the first FROM: a step that runs nothing and has no `step_done`) |
//! | `cache_hit` | `step`, `image_id` |
//! | `cache_miss` | `step`, `reason` (object: `reason` plus its details, see below), `message` (human text) |
//! | `container_started` | `step`, `container_id` |
//! | `output` | `step`, `stream` (`stdout`/`stderr`), `line` |
//! | `container_removed` | `step`, `container_id` |
//! | `step_done` | `step`, `image_id`, `layer_size` (bytes, null for a config-only step), `duration_ms`, `cached` |
//! | `warning` | `message` |
//! | `isolation` | `mode` (`namespaces`, `rootless`, `chroot-snapshot`), `reason`, `usual` (false: shown in classic output) |
//! | `cache_transfer` | `location` (a `--cache-from`/`--cache-to` cache), `message` (what was imported or exported) |
//! | `pull` | `reference` (as the Dockerfile names it), `message` (a line `docker pull` prints) |
//! | `build_failed` | `step` (null before the first step), `message`, `exit_code` (of a failed RUN), `last_image_id` |
//! | `build_done` | `image_id`, `tags`, `duration_ms` |
//!
//! Miss reasons (`reason.reason`): `no_cache_flag`, `no_record`, `no_record_in_cache` (`cache`:
//! the `--cache-from` caches consulted), `parent_missed`,
//! `base_changed` (`old`, `new`), `instruction_changed` (`old`, `new`), `build_arg_changed`
//! (`name`, `old`, `new`), `source_changed` / `source_added` / `source_removed` (`path`).

mod classic;
mod json;
mod tty;
pub mod units;

pub use classic::ClassicRenderer;
pub use json::JsonRenderer;
pub use tty::TtyRenderer;

use std::io;

use crate::plan::MissReason;

/// Which output stream a line of RUN output came from (the runtime's own type).
pub use crate::plan::OutputStream;

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    BuildStarted {
        context_files: u64,
        context_bytes: u64,
        total_steps: usize,
    },
    StepStarted {
        step: usize,
        total: usize,
        stage: usize,
        instruction: String,
        cache_key: String,
    },
    CacheHit {
        step: usize,
        image_id: String,
    },
    CacheMiss {
        step: usize,
        reason: MissReason,
        message: String,
    },
    ContainerStarted {
        step: usize,
        container_id: String,
    },
    Output {
        step: usize,
        stream: OutputStream,
        line: String,
    },
    ContainerRemoved {
        step: usize,
        container_id: String,
    },
    StepDone {
        step: usize,
        image_id: String,
        layer_size: Option<u64>,
        duration_ms: u64,
        cached: bool,
    },
    /// A `--cache-from` cache was opened or a `--cache-to` cache written.
    CacheTransfer {
        location: String,
        message: String,
    },
    Warning {
        message: String,
    },
    /// How RUN steps are isolated in this build (before the first step, when there is a RUN):
    /// `mode` is `namespaces`, `rootless` or `chroot-snapshot`; `usual` is false when the
    /// mode is not the one a normal host gives this user (classic output shows only those).
    Isolation {
        mode: String,
        reason: String,
        usual: bool,
    },
    /// A base image is being pulled (before the first step: lowering needs its digest).
    Pull {
        reference: String,
        message: String,
    },
    BuildFailed {
        step: Option<usize>,
        message: String,
        exit_code: Option<i32>,
        last_image_id: Option<String>,
    },
    BuildDone {
        image_id: String,
        tags: Vec<String>,
        duration_ms: u64,
    },
}

impl BuildEvent {
    /// A cache miss with its human-readable message filled in from the reason.
    pub fn cache_miss(step: usize, reason: MissReason) -> Self {
        BuildEvent::CacheMiss { step, message: reason.to_string(), reason }
    }

    /// The line the human renderers print for an [`BuildEvent::Isolation`] that is not the
    /// usual mode (`[isolation] chroot-snapshot: ...`); `None` for every other event.
    pub fn unusual_isolation_line(&self) -> Option<String> {
        match self {
            BuildEvent::Isolation { mode, reason, usual: false } => Some(format!("[isolation] {mode}: {reason}")),
            _ => None,
        }
    }
}

/// Turns events into output.
pub trait Renderer: Send {
    fn render(&mut self, event: &BuildEvent) -> io::Result<()>;
}

/// The 12 hex digits Docker shows for an ID (`sha256:` prefix dropped).
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:4d6a3b434479aaaabbbbccccdddd"), "4d6a3b434479");
        assert_eq!(short_id("2c47e1d4c5a8ffff"), "2c47e1d4c5a8");
        assert_eq!(short_id("abc"), "abc");
    }
}

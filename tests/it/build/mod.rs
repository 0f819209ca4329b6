//! `rbuild build` end to end: the cache, the engine API, every instruction, interrupts,
//! RUN mounts, `--dry-run`'s keys against a build's, and remote (git and URL) contexts.

mod cache;
mod cache_export;
mod dry_run_keys;
mod engine;
mod instructions;
mod interrupt;
mod llb;
mod mounts;
mod remote_context;

//! `rbuild build` end to end: the cache, the engine API, every instruction, interrupts,
//! RUN mounts, and `--dry-run`'s keys against a build's.

mod cache;
mod dry_run_keys;
mod engine;
mod instructions;
mod interrupt;
mod llb;
mod mounts;

//! `rbuild build` end to end: the cache, the engine API, every instruction, interrupts and
//! RUN mounts.

mod cache;
mod engine;
mod instructions;
mod interrupt;
mod mounts;

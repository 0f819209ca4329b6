//! The integration tests, one binary: each module drives the real `rbuild` binary (or the
//! library's public API) for one area. `fixture` is the one place for shared test material
//! (busybox rootfs, running the binary, a store with busybox, tree snapshots); `cases` runs the
//! data-driven suites (conformance vectors, differential cases), whose one-test-per-case
//! functions `build.rs` generates from the data; `golden` holds the `insta` snapshots
//! (`snapshots/`, IDs, times and paths redacted).

mod build;
mod cases;
mod cli;
mod conformance;
mod containers;
mod differential;
mod distribution;
mod fixture;
mod frontend;
mod golden;
mod isolation;
mod layer;
mod network;
mod registry;
pub(crate) mod runtime;
mod store;

//! rbuild: a daemonless Dockerfile build engine.
//!
//! The crate is both the `rbuild` command and a library. The module map and the data flow
//! are described in `DESIGN.md` (shared beside the checkout); each module's header says what
//! it owns.

pub mod buildkit;
pub mod cli;
pub mod containers;
pub mod context;
pub mod engine;
pub mod events;
pub mod frontend;
pub mod image;
pub mod layer;
pub mod llb;
pub mod plan;
pub mod registry;
pub mod runtime;
pub mod store;

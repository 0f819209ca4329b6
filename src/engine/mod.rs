//! Scheduling of build steps, cache lookup and recording, stage parallelism and failure
//! handling. So far it owns the bridge from the build context to cache keys
//! ([`sources::ContextSources`]); the step scheduler comes with the build-engine issue.

pub mod cache;
pub mod config;
pub mod copy;
pub mod merged;
pub mod scheduler;
pub mod sources;

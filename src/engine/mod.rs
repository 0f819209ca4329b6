//! Scheduling of build steps, cache lookup and recording, stage parallelism and failure handling. Filled in by the build-engine issue.

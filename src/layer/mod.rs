//! Layer diff (upper dir to OCI layer tar), apply (tar to dir), compression and digests. Filled in by the image-store and runtime issues.

pub mod diff;
pub mod media;

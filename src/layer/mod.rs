//! Layers: diff (overlay upper dir to OCI layer tar), apply (tar to dir), compression and
//! digests.

pub mod apply;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod media;

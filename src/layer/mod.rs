//! Layers: diff (overlay upper dir to OCI layer tar), apply (tar to dir), the overlay format
//! (whiteouts, opaque dirs, xattrs), the merged view of a layer stack, compression and digests.

pub mod apply;
pub mod archive;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod media;
pub mod overlay;
pub mod snapshot;
pub mod stack;

//! Layers: diffing an upper dir into an OCI layer, against a reference applier.

mod diff;

//! The image store: its commands, crash and fault handling, hostile archives, integrity
//! checks, and interoperability with skopeo and Docker archives.

mod commands;
mod faults;
mod hostile_tar;
mod integrity;
mod interop;

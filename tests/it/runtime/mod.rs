//! The container runtime: policy (seccomp, capabilities), a pseudo-terminal, root and
//! rootless containers, and teardown.

mod policy;
mod pty;
mod root;
pub(crate) mod rootless;
mod teardown;

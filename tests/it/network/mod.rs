//! Container networking through the real binary, as root: a RUN step's own network namespace
//! (served by pasta) against the host's loopback, `--network host|none`, `/etc/hosts` with
//! `--add-host`, and published ports (`run -p`/`-P`, `port`, `ps`, `inspect`) with the notes'
//! static_web scenario. Needs root, busybox-static and pasta (Debian: passt); skips without
//! them, fails under CI=true. `top`, `exec`. The rootless side is in `runtime::rootless`.

mod build;
mod exec;
mod ports;

use crate::fixture::{have_tool, require, Fixture};

/// A store with busybox, when this machine has what the network tests need.
fn fixture() -> Option<Fixture> {
    if !require(have_tool("pasta"), "pasta (Debian package passt)") {
        return None;
    }
    Fixture::new()
}

//! The resource limits a container starts with: Docker's, not the caller's. dockerd sets none
//! itself; containers inherit containerd's, and the units Docker ships set
//! `LimitNOFILE=1048576` (docker.service) and `infinity`, the kernel's `nr_open` of 1048576
//! (containerd.service). So a RUN step sees `ulimit -n` 1048576 whatever the shell that
//! started rbuild had.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// `RLIMIT_NOFILE` (soft and hard) of every container process.
pub const NOFILE: u64 = 1 << 20;

/// The limit to set when the current hard limit is `hard` and raising it may be refused
/// (raising needs `CAP_SYS_RESOURCE` in the initial user namespace, which an unprivileged
/// build lacks): Docker's value, else as close to it as the hard limit allows.
fn nofile_within(hard: Option<u64>, may_raise: bool) -> u64 {
    match hard {
        Some(hard) if !may_raise => hard.min(NOFILE),
        _ => NOFILE,
    }
}

/// Sets the container's limits in the calling process (inherited by what it forks).
pub(crate) fn apply_container_rlimits() -> rustix::io::Result<()> {
    let current = getrlimit(Resource::Nofile);
    let wanted = nofile_within(current.maximum, true);
    let set = |n: u64| setrlimit(Resource::Nofile, Rlimit { current: Some(n), maximum: Some(n) });
    match set(wanted) {
        Err(rustix::io::Errno::PERM) => set(nofile_within(current.maximum, false)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hard_limit_caps_what_cannot_be_raised() {
        assert_eq!(nofile_within(Some(20_000), true), NOFILE);
        assert_eq!(nofile_within(Some(20_000), false), 20_000);
        assert_eq!(nofile_within(Some(4 << 20), false), NOFILE);
        assert_eq!(nofile_within(None, false), NOFILE);
    }
}

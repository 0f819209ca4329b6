//! `exec`: a new process in a running container. It joins the container's user (when the
//! container has its own), mount, PID, network, UTS and IPC namespaces through a pidfd of the
//! container's PID 1 (one `setns` call), forks so that it is inside the PID namespace, and
//! becomes the workload the way PID 1 did (user, environment, capabilities, seccomp), so it
//! sees the container's files, processes and `localhost`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use crate::runtime::container::process_plan;
use crate::runtime::error::{RuntimeError, SetupFailure};
use crate::runtime::init::{
    become_workload, exit_code, exit_with_child, fail, os_failure, ChildStdio, SetupReport, SETUP_FAILED,
};
use crate::runtime::spec::ContainerSpec;
use crate::runtime::userns::IdMap;

/// Runs `spec.args` in the running container whose PID 1 is `init_pid`, with rbuild's own
/// stdin, stdout and stderr; returns its exit code (`128 + n` when killed by signal `n`).
/// Only the process parts of `spec` count (args, env, user, working dir, privileged, seccomp).
pub fn exec_in_container(init_pid: i32, spec: &ContainerSpec) -> Result<i32, RuntimeError> {
    let own_userns = ns_id("self", "user") != ns_id(&init_pid.to_string(), "user");
    let id_map = own_userns.then(IdMap::for_current_user);
    let process = process_plan(spec, id_map.as_ref())?;
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, init_pid, 0) };
    if fd < 0 {
        return Err(RuntimeError::os("pidfd_open")(nix::errno::Errno::last()));
    }
    // SAFETY: a fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if own_userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::os("pipe2"))?;
    // SAFETY: the child only joins namespaces, forks and execs or _exits.
    let child = match unsafe { nix::unistd::fork() }.map_err(RuntimeError::os("fork"))? {
        ForkResult::Child => {
            let report = report_w.as_raw_fd();
            // SAFETY: setns with a pidfd we hold and namespace flags.
            if unsafe { libc::setns(pidfd.as_raw_fd(), flags.bits()) } < 0 {
                fail(report, os_failure("setns", &format!("{flags:?}"), nix::errno::Errno::last()));
            }
            // SAFETY: single-threaded fork child.
            match unsafe { nix::unistd::fork() } {
                Err(e) => fail(report, os_failure("fork", "exec", e)),
                Ok(ForkResult::Child) => {
                    // SAFETY: prctl with an integer argument.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                    become_workload(&process, ChildStdio::Inherit, report)
                }
                Ok(ForkResult::Parent { child }) => exit_with_child(child),
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    let status = loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    break code;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::os("waitpid")(e)),
        }
    };
    let mut report = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(report_r), &mut report);
    for line in report.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(SetupReport::Failed(failure)) = serde_json::from_slice::<SetupReport>(line) {
            return Err(RuntimeError::Setup { id: spec.id.clone(), failure });
        }
    }
    if status == SETUP_FAILED && report.is_empty() {
        let failure = SetupFailure::Other { message: "exec process ended before running the command".into() };
        return Err(RuntimeError::Setup { id: spec.id.clone(), failure });
    }
    Ok(status)
}

/// The namespace `kind` of process `pid` (`self` for rbuild) as the kernel names it.
fn ns_id(pid: &str, kind: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

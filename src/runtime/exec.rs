//! `exec`: a new process in a running container. It joins the container's user (when the
//! container has its own), mount, PID, network, UTS and IPC namespaces through a pidfd of the
//! container's PID 1 (one `setns` call), forks so that it is inside the PID namespace, and
//! becomes the workload the way PID 1 did (user, environment, capabilities, seccomp), so it
//! sees the container's files, processes and `localhost`. With `-t` it gets a pseudo-terminal
//! of its own, as `run -t` does.

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::runtime::container::process_plan;
use crate::runtime::error::{RuntimeError, SetupFailure};
use crate::runtime::init::{
    become_workload, exit_code, exit_with_child, fail, os_failure, ChildStdio, SetupReport, SETUP_FAILED,
};
use crate::runtime::pty::{copy_window_size, RawMode};
use crate::runtime::signals::SignalPipe;
use crate::runtime::spec::{ContainerSpec, StdioMode};
use crate::runtime::userns::IdMap;

/// Runs `spec.args` in the running container whose PID 1 is `init_pid`, with rbuild's own
/// stdin, stdout and stderr, or with [`StdioMode::Pty`] on a new pseudo-terminal (its
/// controlling terminal) that rbuild copies to its stdout, and `forward_stdin` from its stdin
/// (`exec -it`; rbuild's terminal in raw mode meanwhile). Returns its exit code (`128 + n` when
/// killed by signal `n`). Only the process parts of `spec` count (args, env, user, working
/// dir, privileged, seccomp, stdio).
pub fn exec_in_container(init_pid: i32, spec: &ContainerSpec, forward_stdin: bool) -> Result<i32, RuntimeError> {
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
    // With a terminal: the exec process opens it in the container's own devpts (so `tty` names
    // it there, `/dev/pts/N`) and sends rbuild the master side over this socket.
    let pty_channel = match spec.stdio {
        StdioMode::Pty => Some(std::os::unix::net::UnixStream::pair().map_err(RuntimeError::io("socketpair", "exec"))?),
        _ => None,
    };
    // SAFETY: the child only joins namespaces, forks and execs or _exits.
    let child = match unsafe { nix::unistd::fork() }.map_err(RuntimeError::os("fork"))? {
        ForkResult::Child => {
            let report = report_w.as_raw_fd();
            // SAFETY: setns with a pidfd we hold and namespace flags.
            if unsafe { libc::setns(pidfd.as_raw_fd(), flags.bits()) } < 0 {
                fail(report, os_failure("setns", &format!("{flags:?}"), nix::errno::Errno::last()));
            }
            let stdio = match &pty_channel {
                Some((_, send)) => ChildStdio::Pty { slave: open_container_pty(send.as_raw_fd(), report) },
                None => ChildStdio::Inherit,
            };
            // SAFETY: single-threaded fork child.
            match unsafe { nix::unistd::fork() } {
                Err(e) => fail(report, os_failure("fork", "exec", e)),
                Ok(ForkResult::Child) => {
                    // SAFETY: prctl with an integer argument.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                    become_workload(&process, stdio, report)
                }
                Ok(ForkResult::Parent { child }) => exit_with_child(child),
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    if let Some((receive, send)) = pty_channel {
        drop(send);
        // No master: the exec process failed before opening the terminal (it reported why).
        if let Some(master) = receive_master(&receive) {
            copy_window_size(std::io::stdin().as_fd(), master.as_fd());
            let raw_mode = if forward_stdin { RawMode::enter(std::io::stdin().as_fd()) } else { None };
            copy_pty_output(&master, forward_stdin, child)?;
            drop(raw_mode);
        }
    }
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

/// In the exec process (in the container's mount namespace): opens a new terminal on the
/// container's `/dev/ptmx`, sends its master side to rbuild over `socket`, returns the slave.
/// (`sendmsg` allocates its control buffer: fine here, this fork child comes from the
/// single-threaded `rbuild exec`.)
fn open_container_pty(socket: i32, report: i32) -> i32 {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)
        .unwrap_or_else(|e| fail(report, os_failure("open", "/dev/ptmx", e)));
    if let Err(e) = nix::pty::unlockpt(&master) {
        fail(report, os_failure("unlockpt", "/dev/ptmx", e));
    }
    let name = nix::pty::ptsname_r(&master).unwrap_or_else(|e| fail(report, os_failure("ptsname", "/dev/ptmx", e)));
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty())
        .unwrap_or_else(|e| fail(report, os_failure("open", &name, e)));
    let fds = [master.as_raw_fd()];
    let message = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let byte = [std::io::IoSlice::new(b"m")];
    if let Err(e) = nix::sys::socket::sendmsg::<()>(socket, &byte, &message, nix::sys::socket::MsgFlags::empty(), None)
    {
        fail(report, os_failure("sendmsg", "terminal", e));
    }
    std::os::fd::IntoRawFd::into_raw_fd(slave)
}

/// The terminal master the exec process sent, if it sent one.
fn receive_master(socket: &std::os::unix::net::UnixStream) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    // SAFETY: a descriptor the kernel just installed for us.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies the pseudo-terminal's output to rbuild's stdout (and, with `forward_stdin`, rbuild's
/// stdin to it) until the exec'd process `child` has ended and the output is drained. A
/// window size change of rbuild's terminal is passed on; SIGINT, SIGTERM or SIGHUP to rbuild
/// (in raw mode Ctrl-C reaches the command as a byte instead) kill the command and what it
/// started in the foreground, so that rbuild restores its terminal before it goes.
fn copy_pty_output(master: &OwnedFd, forward_stdin: bool, child: Pid) -> Result<(), RuntimeError> {
    let signals = SignalPipe::new()?;
    let pidfd = {
        // SAFETY: pidfd_open returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
        if fd < 0 {
            return Err(RuntimeError::os("pidfd_open")(nix::errno::Errno::last()));
        }
        // SAFETY: a fresh fd we own.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    };
    let stdin = std::io::stdin();
    let mut stdin_open = forward_stdin;
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds =
            vec![PollFd::new(master.as_fd(), PollFlags::POLLIN), PollFd::new(signals.fd(), PollFlags::POLLIN)];
        if !exited {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && !exited {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the process has ended, what is left in the terminal is drained without waiting.
        let timeout = if exited { PollTimeout::ZERO } else { PollTimeout::NONE };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::os("poll")(e)),
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        if ready[0] {
            // EIO: every holder of the terminal's other side is gone.
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                _ => return Ok(()),
            }
        }
        if ready[1] {
            for sig in signals.drain() {
                if sig == libc::SIGWINCH {
                    copy_window_size(stdin.as_fd(), master.as_fd());
                } else {
                    // The terminal's foreground process group (the command and what it
                    // started), then the process it dies with (its parent-death signal).
                    if let Ok(group) = nix::unistd::tcgetpgrp(master) {
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        if !exited && ready.get(2).copied().unwrap_or(false) {
            exited = true;
        }
        if ready.get(3).copied().unwrap_or(false) {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
                _ => stdin_open = false,
            }
        }
    }
}

/// The namespace `kind` of process `pid` (`self` for rbuild) as the kernel names it.
fn ns_id(pid: &str, kind: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

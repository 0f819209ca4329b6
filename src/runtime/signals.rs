//! Delivery of SIGINT, SIGTERM, SIGHUP and SIGWINCH to running containers' event loops: while
//! at least one [`SignalPipe`] exists, a process-wide handler writes each such signal's number
//! to every live pipe; when the last one goes, the previous handlers come back.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::runtime::error::RuntimeError;

/// Signals a running container reacts to.
pub(crate) const WATCHED: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGWINCH];

const SLOTS: usize = 64;
static PIPES: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

struct Installed {
    users: usize,
    previous: Vec<(Signal, SigAction)>,
}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed { users: 0, previous: Vec::new() });

extern "C" fn on_signal(sig: libc::c_int) {
    let saved = nix::errno::Errno::last_raw();
    let byte = sig as u8;
    for slot in &PIPES {
        let fd = slot.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; fd is a non-blocking pipe end.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
    }
    nix::errno::Errno::set_raw(saved);
}

/// A pipe that receives the numbers of [`WATCHED`] signals while it lives.
pub(crate) struct SignalPipe {
    slot: usize,
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    pub fn new() -> Result<Self, RuntimeError> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags).map_err(RuntimeError::os("pipe2"))?;
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        let slot = PIPES
            .iter()
            .position(|s| s.compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst).is_ok())
            .ok_or(RuntimeError::Os {
                op: "too many containers running at once for signal delivery",
                source: nix::errno::Errno::EBUSY,
            })?;
        if installed.users == 0 {
            let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
            for sig in WATCHED {
                // SAFETY: the handler only calls async-signal-safe functions.
                match unsafe { sigaction(sig, &action) } {
                    Ok(previous) => installed.previous.push((sig, previous)),
                    Err(e) => {
                        PIPES[slot].store(-1, Ordering::SeqCst);
                        return Err(RuntimeError::os("sigaction")(e));
                    }
                }
            }
        }
        installed.users += 1;
        Ok(SignalPipe { slot, read, _write: write })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Reads the signals delivered since the last call.
    pub fn drain(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        while let Ok(n) = nix::unistd::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|b| i32::from(*b)));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        PIPES[self.slot].store(-1, Ordering::SeqCst);
        installed.users -= 1;
        if installed.users == 0 {
            for (sig, previous) in installed.previous.drain(..) {
                // SAFETY: restores the action that was in place before the first pipe.
                let _ = unsafe { sigaction(sig, &previous) };
            }
        }
    }
}

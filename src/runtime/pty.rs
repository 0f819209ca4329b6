//! The `-it` side of a container: a new pseudo-terminal pair, rbuild's own terminal put in
//! raw mode (restored by [`RawMode`]'s drop), and window-size propagation.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::runtime::error::RuntimeError;

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// A pseudo-terminal: rbuild keeps the master, the container gets the slave.
pub(crate) struct PtyPair {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl PtyPair {
    pub fn open() -> Result<Self, RuntimeError> {
        let pty = nix::pty::openpty(None, None).map_err(RuntimeError::os("openpty"))?;
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .map_err(RuntimeError::os("fcntl"))?;
        }
        Ok(PtyPair { master: pty.master, slave: pty.slave })
    }
}

/// Copies the window size of the terminal `from` (rbuild's stdin or stdout) to `to`.
pub(crate) fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize struct we own.
    unsafe {
        if get_winsize(from.as_raw_fd(), &mut size).is_ok() && size.ws_row > 0 {
            let _ = set_winsize(to.as_raw_fd(), &size);
        }
    }
}

/// rbuild's terminal in raw mode; the previous settings come back on drop.
pub(crate) struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode, or returns `None` if it is not a terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        let fd = fd.try_clone_to_owned().ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

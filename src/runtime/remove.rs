//! Removing a directory tree that an unprivileged user's containers wrote. Such a tree holds
//! files owned by the user's subordinate ids and directories without write permission, which
//! the user cannot delete from the host's user namespace; a process that is root in a user
//! namespace with the containers' id map can (what `podman unshare rm -rf` does). The store
//! calls this through [`crate::store::trees`] when a plain removal is refused.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use crate::runtime::userns::IdMap;

/// Removes `path` (a directory tree) as root of a user namespace mapped like the caller's
/// containers; as root, a plain `remove_dir_all`.
pub fn remove_tree_in_user_namespace(path: &Path) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        return std::fs::remove_dir_all(path);
    }
    let map = IdMap::for_current_user();
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (go_r, go_w) = nix::unistd::pipe()?;
    // SAFETY: the child only unshares, reads and writes its pipes, removes the tree and calls
    // _exit; glibc's fork leaves the allocator usable in the child, and the commands that
    // remove trees (rmi, store gc, a work dir's drop) do not hold other locks across it.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop((ready_r, go_w));
            let code = remove_in_child(path, ready_w, go_r);
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r));
            let mut ready = std::fs::File::from(ready_r);
            let mut first = [0u8; 1];
            let n = ready.read(&mut first)?;
            let mut message = String::new();
            if n == 1 && first[0] == b'r' {
                let applied = map.apply(child.as_raw());
                let mut go = std::fs::File::from(go_w);
                if applied.is_ok() {
                    let _ = go.write_all(b"g");
                }
                drop(go);
                if let Err(e) = applied {
                    message = e.to_string();
                }
            } else {
                drop(go_w);
            }
            let _ = ready.read_to_string(&mut message);
            let status = waitpid(child, None)?;
            match status {
                WaitStatus::Exited(_, 0) if message.is_empty() => Ok(()),
                _ => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("removing {} in a user namespace: {}", path.display(), message.trim()),
                )),
            }
        }
    }
}

/// The child: enter a new user namespace, say so, wait for its id map, remove the tree.
/// Failures are written to `ready` as text.
fn remove_in_child(path: &Path, ready: OwnedFd, go: OwnedFd) -> i32 {
    let mut ready = std::fs::File::from(ready);
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
        let _ = write!(ready, "eunshare(CLONE_NEWUSER): {e}");
        return 1;
    }
    if ready.write_all(b"r").is_err() {
        return 1;
    }
    let mut byte = [0u8; 1];
    if !matches!(std::fs::File::from(go).read(&mut byte), Ok(1)) {
        return 1;
    }
    // The caller's uid is now root here, with every capability over inodes whose owners the
    // map covers: write permission on directories no longer matters.
    match std::fs::remove_dir_all(path) {
        Ok(()) => 0,
        Err(e) => {
            let _ = write!(ready, "{e}");
            1
        }
    }
}

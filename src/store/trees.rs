//! Removing a directory tree of the store (an unpacked layer, a work dir). An unprivileged
//! user's containers leave files owned by its subordinate ids and directories without write
//! permission, which the user cannot delete from the host's user namespace ("Permission
//! denied" on `tmp/trash-*`). Only a process that is root in a user namespace with the
//! containers' id map can; that is the runtime's, which sits above the store, so the program
//! registers it with [`set_unprivileged_remover`] when it starts (`rbuild`'s `cli::main`
//! does) and [`remove_tree`] falls back to it when a plain removal is refused.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

/// Removes one directory tree, whoever owns the files in it.
pub type TreeRemover = fn(&Path) -> io::Result<()>;

static UNPRIVILEGED_REMOVER: OnceLock<TreeRemover> = OnceLock::new();

/// Registers how to remove trees a plain removal cannot (first registration wins).
pub fn set_unprivileged_remover(remover: TreeRemover) {
    let _ = UNPRIVILEGED_REMOVER.set(remover);
}

/// Removes the tree at `path`: `remove_dir_all`, and when that is refused for permissions,
/// the registered remover. A tree that is already gone is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match UNPRIVILEGED_REMOVER.get() {
            Some(remove) => remove(path),
            None => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        },
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_and_ignores_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("t");
        std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        std::fs::write(tree.join("a/b/f"), "x").expect("write");
        remove_tree(&tree).expect("remove");
        assert!(!tree.exists());
        remove_tree(&tree).expect("already gone");
    }
}

//! The temporary names dockerd's `moby` exporter gives the images of rbuild's solves
//! (`rbuild-buildkit-<random>`), and their removal when a build ends before removing its own
//! name (killed, a second Ctrl-C, a crash).
//!
//! Before its solve, a build claims its name in the store: `buildkit/exporting/<name>`, a
//! file naming the dockerd socket, made under a temporary name, locked (flock) and then
//! renamed into place, so no other process ever sees a claim that is not held. The build holds
//! the lock until it has removed the name from dockerd, then deletes the claim. A claim whose
//! lock can be taken belongs to a build that died: a build against the same dockerd removes
//! those names from dockerd, and their claims, before it solves. Names in dockerds that no
//! build of this store talks to again stay (`docker image ls 'rbuild-buildkit-*'` shows them).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::store::ImageStore;

/// Where claims live, under the store root.
const CLAIMS: &str = "buildkit/exporting";

/// What every temporary name starts with.
pub const NAME_PREFIX: &str = "rbuild-buildkit-";

/// A build's claim on its temporary name; the lock is held while the value lives.
pub struct ExportName {
    name: String,
    path: PathBuf,
    _lock: File,
}

impl ExportName {
    /// Claims a new name for a solve on the dockerd at `socket`.
    pub fn claim(store: &ImageStore, socket: &Path, random: &str) -> io::Result<ExportName> {
        let dir = store.root().join(CLAIMS);
        std::fs::create_dir_all(&dir)?;
        let name = format!("{NAME_PREFIX}{random}");
        let part = dir.join(format!(".{name}.part"));
        let mut file = File::create(&part)?;
        flock(&file, FlockOperation::LockExclusive).map_err(io::Error::from)?;
        file.write_all(socket.as_os_str().as_encoded_bytes())?;
        let path = dir.join(&name);
        std::fs::rename(&part, &path)?;
        Ok(ExportName { name, path, _lock: file })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the claim: its name is no longer in dockerd.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The claim of a build that died, locked by this process until it is forgotten.
pub struct Abandoned {
    pub name: String,
    path: PathBuf,
    _lock: File,
}

impl Abandoned {
    /// Deletes the claim once its name is gone from dockerd.
    pub fn forget(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The claims for the dockerd at `socket` that no live build holds. Unreadable entries and
/// claims for other dockerds are passed over.
pub fn abandoned(store: &ImageStore, socket: &Path) -> Vec<Abandoned> {
    let Ok(entries) = std::fs::read_dir(store.root().join(CLAIMS)) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(NAME_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let for_this_dockerd = std::fs::read(&path).is_ok_and(|bytes| bytes == socket.as_os_str().as_encoded_bytes());
        if for_this_dockerd {
            found.push(Abandoned { name, path, _lock: file });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claims_no_live_build_holds_for_the_same_dockerd_are_abandoned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(&dir.path().join("store")).expect("store");
        let socket = Path::new("/var/run/docker.sock");
        let held = ExportName::claim(&store, socket, "held").expect("claim");
        let other = ExportName::claim(&store, Path::new("/other.sock"), "other").expect("claim");
        assert!(abandoned(&store, socket).is_empty(), "a held claim is not abandoned");
        let held_name = held.name().to_string();
        // A build that died: its claim file stays, its lock went with the process (here: the
        // file handle, dropped without release).
        drop(held);
        drop(other);
        let found = abandoned(&store, socket);
        assert_eq!(found.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), vec![held_name]);
        assert!(abandoned(&store, socket).is_empty(), "a claim being cleaned up is held by the cleaner");
        for a in found {
            a.forget();
        }
        assert!(abandoned(&store, socket).is_empty());
        assert_eq!(abandoned(&store, Path::new("/other.sock")).len(), 1, "another dockerd's claim stays");
        let released = ExportName::claim(&store, socket, "released").expect("claim");
        released.release();
        assert!(abandoned(&store, socket).is_empty(), "a released claim is gone");
    }
}

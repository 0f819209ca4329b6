//! The one atomic write: the bytes (or a stream, [`AtomicFile`]) go to a temporary name (`.<file>-<pid>-<seq>`, which
//! `tmp/`'s cleanup recognises) in a directory on the target's filesystem and are renamed over
//! the target, so a reader sees the old file or the new one, never half of one.
//!
//! How durable the write is when it returns is the caller's choice ([`Durability`]): the
//! store's own files (`index.json`, container records) fsync the file and its directory;
//! a build's cache records are written unsynced and made durable together by one
//! [`sync_filesystem`] per stage; hints (memo files) and the runtime's state records are never
//! synced (a crash loses a hint or leaves a state dir `cleanup_stale` removes).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fs_err as fs;

/// Whether [`write_atomic`] makes its write durable before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and its directory after.
    Synced,
    /// Rename only: durable after a later [`sync_filesystem`], or never (a hint).
    Unsynced,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file in `temp_dir` (on the same filesystem as
/// `path`) renamed over it. A failed write removes its temporary file.
pub fn write_atomic(temp_dir: &Path, path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let mut file = AtomicFile::create(temp_dir, path)?;
    file.write_all(bytes)?;
    file.commit(durability)
}

/// A file written as a stream and then renamed over its target by [`AtomicFile::commit`];
/// dropped without a commit, its temporary file is removed and the target left as it was.
#[derive(Debug)]
pub struct AtomicFile {
    temp: PathBuf,
    path: PathBuf,
    file: Option<fs::File>,
}

impl AtomicFile {
    /// Creates the temporary file for `path` in `temp_dir` (on the same filesystem).
    pub fn create(temp_dir: &Path, path: &Path) -> io::Result<Self> {
        let temp = temp_dir.join(format!(
            ".{}-{}-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = fs::File::create(&temp)?;
        Ok(AtomicFile { temp, path: path.to_path_buf(), file: Some(file) })
    }

    /// Renames the written file over the target, first making it durable if asked.
    pub fn commit(mut self, durability: Durability) -> io::Result<()> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let renamed = (|| {
            if durability == Durability::Synced {
                file.sync_all()?;
            }
            drop(file);
            fs::rename(&self.temp, &self.path)
        })();
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&self.temp);
            return Err(e);
        }
        if durability == Durability::Synced {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn file(&mut self) -> io::Result<&mut fs::File> {
        self.file.as_mut().ok_or_else(|| io::Error::other("atomic file already committed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// fsync of a directory (after a rename into it).
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    let dir = std::fs::File::open(path)?;
    dir.sync_all().map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", path.display())))
}

/// Makes every write on the filesystem holding `path` durable (`syncfs`): the one sync after
/// many [`Durability::Unsynced`] writes.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    rustix::fs::syncfs(fs::File::open(path)?.file()).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_target_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("record.json");
        std::fs::write(&target, b"old").expect("write");
        write_atomic(dir.path(), &target, b"new", Durability::Unsynced).expect("unsynced");
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        write_atomic(dir.path(), &target, b"newer", Durability::Synced).expect("synced");
        sync_filesystem(dir.path()).expect("syncfs");
        assert_eq!(std::fs::read(&target).expect("read"), b"newer");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["record.json"]);
        let missing = dir.path().join("no/such/dir/x");
        assert!(write_atomic(dir.path(), &missing, b"x", Durability::Unsynced).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "the temp file is removed on failure");
        let mut dropped = AtomicFile::create(dir.path(), &target).expect("create");
        dropped.write_all(b"never").expect("write");
        drop(dropped);
        assert_eq!(std::fs::read(&target).expect("read"), b"newer", "an uncommitted file changes nothing");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}

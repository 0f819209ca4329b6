//! Locking between rbuild processes sharing a store, and per-process work dirs in `tmp/`.
//!
//! - `lock` (flock, exclusive, held briefly): serialises changes to `index.json`, container
//!   and cache records, and every deletion of blobs or unpacked layers.
//! - `tmp/<work-id>/`: a writer's private work dir. The writer holds a flock on its `.pin`
//!   file while alive and appends to it every blob digest / layer chain ID it is about to move
//!   into the store *before* moving it, so a concurrent `rmi` or `gc` keeps them until the
//!   writer has referenced them from an image (or died: a dir whose `.pin` is not locked is
//!   garbage). Work dirs are created, and `tmp/` is scanned, only under the store lock, so a
//!   scan never mistakes a work dir being set up for a dead one.
//! - `tmp/lease-<pid>-…/`: a lease (see [`super::lease`]) is a work dir that lives as long as
//!   the command holding it, its `.pin` also naming its `owner` and the `image`s it uses.

use crate::layer::digest::Sha256Digest;
use fs_err as fs;
use rustix::fs::{flock, FlockOperation};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The store-wide exclusive lock; released on drop.
pub struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    /// Blocks until the store lock is held.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("locking {}: {e}", path.display())))?;
        Ok(Self { _file: file })
    }

    /// The store lock if nobody holds it now (this process included), else `None`.
    pub fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(io::Error::new(io::Error::from(e).kind(), format!("locking {}: {e}", path.display()))),
        }
    }
}

/// What live writers and leases have pinned.
#[derive(Default, Debug)]
pub struct Pins {
    pub blobs: HashSet<Sha256Digest>,
    pub layers: HashSet<Sha256Digest>,
    /// Leased image IDs, with who holds each lease (`build (pid 12)`).
    pub images: HashMap<Sha256Digest, Vec<String>>,
    /// The holders of every live lease.
    pub owners: Vec<String>,
}

/// A writer's work dir in `tmp/`, removed on drop.
pub struct WorkDir {
    path: PathBuf,
    pin_file: std::fs::File,
}

static WORK_SEQ: AtomicU64 = AtomicU64::new(0);

impl WorkDir {
    pub(crate) fn create(tmp: &Path) -> io::Result<Self> {
        Self::create_named(tmp, "work")
    }

    /// A work dir `tmp/<prefix>-<pid>-…`; leases are `lease-…` (see [`super::lease`]).
    pub(crate) fn create_named(tmp: &Path, prefix: &str) -> io::Result<Self> {
        let seq = WORK_SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = tmp.join(format!("{prefix}-{}-{seq}-{nanos:08x}", std::process::id()));
        fs::create_dir(&path)?;
        let pin_path = path.join(".pin");
        let pin_file = fs::OpenOptions::new().create(true).append(true).open(&pin_path)?.into_parts().0;
        flock(&pin_file, FlockOperation::LockExclusive).map_err(io::Error::from)?;
        Ok(Self { path, pin_file })
    }

    /// The directory (on the store's filesystem, so renames into the store are atomic).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pin(&self, kind: &str, digest: &Sha256Digest) -> io::Result<()> {
        self.pin_lines(&format!("{kind} {}\n", digest.hex()))
    }

    /// Appends whole pin lines (`blob <hex>`, `layer <hex>`, `image <hex>`, `owner <text>`) in
    /// one write.
    pub(crate) fn pin_lines(&self, lines: &str) -> io::Result<()> {
        (&self.pin_file).write_all(lines.as_bytes())
    }

    /// Reads the pins of every live work dir in `tmp/`; dead work dirs are listed as garbage.
    pub(crate) fn scan(tmp: &Path) -> io::Result<(Pins, Vec<PathBuf>)> {
        let mut pins = Pins::default();
        let mut dead = Vec::new();
        let entries = match fs::read_dir(tmp) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((pins, dead)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let pin_path = path.join(".pin");
            let file = match std::fs::File::open(&pin_path) {
                Ok(f) => f,
                Err(_) => {
                    if !written_by_live_process(&entry.file_name().to_string_lossy()) {
                        dead.push(path);
                    }
                    continue;
                }
            };
            match flock(&file, FlockOperation::NonBlockingLockShared) {
                Ok(()) => dead.push(path),
                Err(_) => {
                    let text = std::fs::read_to_string(&pin_path).unwrap_or_default();
                    let owner = text.lines().find_map(|l| l.strip_prefix("owner ")).map(str::to_owned);
                    if let Some(o) = &owner {
                        pins.owners.push(o.clone());
                    }
                    for line in text.lines() {
                        let Some((kind, hex)) = line.split_once(' ') else {
                            continue;
                        };
                        let Ok(d) = Sha256Digest::from_hex(hex) else {
                            continue;
                        };
                        match kind {
                            "layer" => {
                                pins.layers.insert(d);
                            }
                            "image" => {
                                let who = owner.clone().unwrap_or_else(|| path.display().to_string());
                                pins.images.entry(d).or_default().push(who);
                            }
                            _ => {
                                pins.blobs.insert(d);
                            }
                        }
                    }
                }
            }
        }
        Ok((pins, dead))
    }
}

/// Whether `name` is an atomic write's temp file (`.<file>-<pid>-<seq>`, see
/// `ImageStore::write_atomic`) whose process still runs: some are written without the store
/// lock (container records), so only the writer's death makes them garbage.
fn written_by_live_process(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    let mut parts = rest.rsplitn(3, '-');
    let (Some(_seq), Some(pid), Some(_file)) = (parts.next(), parts.next(), parts.next()) else { return false };
    pid.parse::<u32>().is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

impl std::fmt::Debug for WorkDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkDir").field("path", &self.path).finish()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = super::trees::remove_tree(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_in_progress_is_not_garbage() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let live = format!(".index.json-{}-3", std::process::id());
        // Above any pid_max (at most 2^22): that writer is dead.
        let dead = ".index.json-999999999-3";
        for name in [live.as_str(), dead] {
            std::fs::write(tmp.path().join(name), b"{}").expect("write");
        }
        let work = WorkDir::create(tmp.path()).expect("work dir");
        let (_, garbage) = WorkDir::scan(tmp.path()).expect("scan");
        assert_eq!(garbage, vec![tmp.path().join(dead)]);
        drop(work);
    }
}

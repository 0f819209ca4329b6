//! Applying a layer tar to a directory (`LayerApply`): compression detected by magic, entries
//! confined to the target directory, whiteouts turned into overlay whiteouts (or applied by
//! deletion when flattening a rootfs, or kept as ordinary names for a tar that is not a
//! layer), and modes, ownership, xattrs, mtimes, hard links, symlinks and device nodes
//! preserved.
//!
//! Confinement: every entry name is split into components; `..` is refused and a leading `/`
//! is dropped; a whiteout of `.` or `..` (`.wh..`, `.wh...`) is refused in every mode. Parent
//! directories are opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink in the tar that points
//! outside (`evil -> /`, `evil -> ../..`) is resolved as if the layer dir were `/`: a later
//! `evil/x` lands inside the layer dir, never outside it. The final component is created with
//! `*at` calls on that parent fd and never followed. Hard-link targets are resolved the same
//! way and must already exist in the layer. Duplicate entries replace the earlier one (a
//! directory over a directory keeps its contents), as tar does.

use crate::layer::compression::{decompressing_reader, Compression};
use crate::layer::digest::{HashingReader, Sha256Digest};
use crate::layer::overlay::{
    whiteout_hidden, OPAQUE_MARKER_SUFFIX, OPAQUE_XATTR, USER_OPAQUE_XATTR, USER_WHITEOUT_XATTR,
};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What to do with whiteout entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Each layer goes into its own dir used as an overlay lower dir: `.wh.name` becomes a 0/0
    /// character device, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Layers are applied one over the other into one rootfs: whiteouts delete.
    Delete,
    /// The archive is not a layer (a build context, an `ADD`ed tar): `.wh.` entries are
    /// ordinary names, as in Docker, and the commit of a layer refuses them later. A whiteout
    /// of `.` or `..` is still refused.
    Literal,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("reading layer tar: {0}")]
    Tar(io::Error),
    #[error("refused tar entry {entry:?}: {reason}")]
    Refused { entry: String, reason: &'static str },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(rustix::io::Errno) -> ApplyError {
    let path = path.into();
    move |e| ApplyError::Io { path, source: e.into() }
}

/// The result of applying one layer.
#[derive(Clone, Debug)]
pub struct AppliedLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: Sha256Digest,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    pub compression: Compression,
}

/// Who owns an applied entry and its permission bits, as the layer says: what the disk has
/// when the applier could not chown (an unprivileged user) or had to widen a directory's
/// permissions to fill it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedOwner {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (setuid, setgid and sticky included).
    pub mode: u32,
}

/// [`RecordedOwner`]s by path relative to the target directory.
pub type OwnerTable = HashMap<PathBuf, RecordedOwner>;

/// Applies layer tars to one target directory.
pub struct LayerApply {
    root: PathBuf,
    root_fd: OwnedFd,
    mode: WhiteoutMode,
    chown: bool,
    /// Paths (relative) written by the layer being applied, for opaque dirs in delete mode.
    written: HashSet<PathBuf>,
    /// Directory mtimes, set after all entries since creating children changes them.
    dir_times: Vec<(PathBuf, Timespec)>,
    /// See [`LayerApply::recording_owners`].
    owners: Option<OwnerTable>,
}

/// An entry name split into confined components.
fn confine(raw: &[u8]) -> Result<Vec<OsString>, &'static str> {
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path has a '..' component"),
            c if c.contains(&0) => return Err("path contains a NUL byte"),
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn join(comps: &[OsString]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// Refuses whiteout names that hide nothing or the directory itself or its parent, in every
/// mode: `.wh..` and `.wh...` would name the directory itself or the one above it (on the
/// parent fd, `..` is resolved by the kernel, outside the root).
fn check_whiteout_name(name: &[u8]) -> Result<(), &'static str> {
    match whiteout_hidden(name) {
        Some(b"." | b"..") => Err("whiteout of '.' or '..'"),
        Some(b"") => Err("whiteout without a name"),
        _ => Ok(()),
    }
}

/// An entry's owner and mtime (PAX records over the header's) and its `SCHILY.xattr.*`
/// extended attributes.
struct EntryMeta {
    uid: u64,
    gid: u64,
    mtime: f64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>, header: &tar::Header) -> EntryMeta {
    let mut meta = EntryMeta {
        uid: header.uid().unwrap_or(0),
        gid: header.gid().unwrap_or(0),
        mtime: header.mtime().unwrap_or(0) as f64,
        xattrs: Vec::new(),
    };
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            let key = ext.key_bytes();
            match key {
                b"uid" => meta.uid = pax_number(ext.value_bytes()).map(|v| v as u64).unwrap_or(meta.uid),
                b"gid" => meta.gid = pax_number(ext.value_bytes()).map(|v| v as u64).unwrap_or(meta.gid),
                b"mtime" => meta.mtime = pax_number(ext.value_bytes()).unwrap_or(meta.mtime),
                _ => {
                    if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                        meta.xattrs.push((OsString::from_vec(x.to_vec()), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    meta
}

fn pax_number(value: &[u8]) -> Option<f64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

impl LayerApply {
    /// Prepares to apply layers into `dest` (which must exist). Ownership is restored only
    /// when running as root.
    pub fn new(dest: &Path, mode: WhiteoutMode) -> Result<Self, ApplyError> {
        let root_fd =
            rfs::open(dest, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io_err(dest))?;
        Ok(Self {
            root: dest.to_path_buf(),
            root_fd,
            mode,
            chown: rustix::process::geteuid().is_root(),
            written: HashSet::new(),
            dir_times: Vec::new(),
            owners: None,
        })
    }

    /// Records every entry's owner and mode from the layer (see [`LayerApply::owners`]). Then,
    /// without root, directories are made writable and searchable by their owner (the layer's
    /// `0555` directory could not be filled otherwise) and device nodes the user may not make
    /// are left out: the table keeps what the layer says. The chroot-snapshot mode assembles
    /// its rootfs this way.
    pub fn recording_owners(mut self) -> Self {
        self.owners = Some(OwnerTable::new());
        self
    }

    /// The owners recorded so far (empty unless [`LayerApply::recording_owners`]).
    pub fn owners(self) -> OwnerTable {
        self.owners.unwrap_or_default()
    }

    /// Whether this apply widens what an unprivileged user cannot reproduce (see
    /// [`LayerApply::recording_owners`]).
    fn unprivileged_recording(&self) -> bool {
        self.owners.is_some() && !self.chown
    }

    /// Applies one layer blob (plain, gzip or zstd tar) and returns its diff ID.
    pub fn apply<R: Read>(&mut self, blob: R) -> Result<AppliedLayer, ApplyError> {
        self.written.clear();
        self.dir_times.clear();
        let (compression, tar_stream) = decompressing_reader(blob).map_err(ApplyError::Tar)?;
        let mut hashing = HashingReader::new(tar_stream);
        {
            let mut archive = tar::Archive::new(&mut hashing);
            for entry in archive.entries().map_err(ApplyError::Tar)? {
                let mut entry = entry.map_err(ApplyError::Tar)?;
                self.apply_entry(&mut entry)?;
            }
        }
        let (diff_id, tar_size) = hashing.finish().map_err(ApplyError::Tar)?;
        for (rel, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let times = Timestamps { last_access: mtime, last_modification: mtime };
            let target = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.clone() };
            if let Ok(fd) = self.open_in_root(&target, OFlags::PATH | OFlags::DIRECTORY) {
                let _ = rfs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH);
            }
        }
        Ok(AppliedLayer { diff_id, tar_size, compression })
    }

    fn open_in_root(&self, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        rfs::openat2(
            &self.root_fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Opens (creating as needed) the parent directory `comps`, resolved inside the root.
    fn parent_dir(&self, comps: &[OsString]) -> Result<OwnedFd, ApplyError> {
        let path = join(comps);
        match self.open_in_root(&path, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_err(self.root.join(&path))(e)),
        }
        let mut fd = self.open_in_root(Path::new("."), OFlags::PATH | OFlags::DIRECTORY).map_err(io_err(&self.root))?;
        for (i, c) in comps.iter().enumerate() {
            let sub = join(&comps[..=i]);
            match self.open_in_root(&sub, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(next) => fd = next,
                Err(rustix::io::Errno::NOENT) => {
                    match rfs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(io_err(self.root.join(&sub))(e)),
                    }
                    fd = self
                        .open_in_root(&sub, OFlags::PATH | OFlags::DIRECTORY)
                        .map_err(io_err(self.root.join(&sub)))?;
                }
                Err(e) => return Err(io_err(self.root.join(&sub))(e)),
            }
        }
        Ok(fd)
    }

    /// Removes whatever is at `parent/name`; keeps an existing directory when `keep_dir`.
    /// Returns true when a directory was kept.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, rel: &Path, keep_dir: bool) -> Result<bool, ApplyError> {
        match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err(self.root.join(rel))(e)),
            Ok(st) => {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    if keep_dir {
                        return Ok(true);
                    }
                    let via_proc = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
                    std::fs::remove_dir_all(&via_proc)
                        .map_err(|source| ApplyError::Io { path: self.root.join(rel), source })?;
                } else {
                    rfs::unlinkat(parent, name, AtFlags::empty()).map_err(io_err(self.root.join(rel)))?;
                }
                Ok(false)
            }
        }
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason| ApplyError::Refused { entry: shown.clone(), reason };
        let comps = confine(&raw_name).map_err(refuse)?;
        let kind = entry.header().entry_type();
        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer root itself ("./"): only its metadata could apply; leave the dir as is.
            return Ok(());
        };
        let rel = join(&comps);
        let name_bytes = name.as_bytes();

        // Whiteouts.
        check_whiteout_name(name_bytes).map_err(refuse)?;
        let whiteout = match self.mode {
            WhiteoutMode::Literal => None,
            WhiteoutMode::Overlay | WhiteoutMode::Delete => whiteout_hidden(name_bytes),
        };
        if let Some(hidden) = whiteout {
            return self.apply_whiteout(hidden, parent_comps);
        }

        let header = entry.header().clone();
        let EntryMeta { uid, gid, mtime, xattrs } = entry_meta(entry, &header);
        let perm = Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
        let mtime = Timespec { tv_sec: mtime.trunc() as i64, tv_nsec: ((mtime.fract()) * 1e9) as _ };
        let times = Timestamps { last_access: mtime, last_modification: mtime };
        let owner = (rustix::fs::Uid::from_raw(uid as u32), rustix::fs::Gid::from_raw(gid as u32));
        let parent = self.parent_dir(parent_comps)?;
        let path_err = |e: rustix::io::Errno| ApplyError::Io { path: self.root.join(&rel), source: e.into() };

        match kind {
            tar::EntryType::Directory => {
                if !self.clear(&parent, name, &rel, true)? {
                    rfs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700)).map_err(path_err)?;
                }
                let fd = rfs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(path_err)?;
                let on_disk = match self.unprivileged_recording() {
                    true => Mode::from_raw_mode(perm.as_raw_mode() | 0o700),
                    false => perm,
                };
                self.finish_fd(&fd, owner, on_disk, &xattrs, &rel)?;
                self.dir_times.push((rel.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.clear(&parent, name, &rel, false)?;
                let fd = self.write_file(&parent, name, &rel, entry)?;
                self.finish_fd(&fd, owner, perm, &xattrs, &rel)?;
                rfs::futimens(&fd, &times).map_err(path_err)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symlink without a target"))?.into_owned();
                if target.contains(&0) {
                    return Err(refuse("symlink target contains a NUL byte"));
                }
                self.clear(&parent, name, &rel, false)?;
                rfs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str()).map_err(path_err)?;
                if self.chown {
                    rfs::chownat(&parent, name.as_os_str(), Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(path_err)?;
                }
                let via_proc = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
                for (k, v) in &xattrs {
                    match rfs::lsetxattr(&via_proc, k.as_os_str(), v, rfs::XattrFlags::empty()) {
                        Ok(()) | Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {}
                        Err(e) => return Err(path_err(e)),
                    }
                }
                rfs::utimensat(&parent, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW).map_err(path_err)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("hard link without a target"))?.into_owned();
                if !self.hard_link(&target, &comps, &parent, &shown)? {
                    return Ok(());
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.make_node(&parent, name, &rel, &header, (perm, owner, times))?
            }
            // PAX/GNU metadata entries are consumed by the tar reader; anything else (sockets,
            // vendor types) carries no file content we can create.
            _ => return Ok(()),
        }
        if let Some(owners) = &mut self.owners {
            owners.insert(rel.clone(), RecordedOwner { uid: uid as u32, gid: gid as u32, mode: perm.as_raw_mode() });
        }
        self.written.insert(rel);
        Ok(())
    }

    /// A device node or FIFO entry `name` in `parent` with its permissions, owner and times.
    /// Without root, when recording owners, a device the user may not make is left out (its
    /// owner is recorded all the same).
    fn make_node(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        header: &tar::Header,
        (perm, owner, times): (Mode, (rustix::fs::Uid, rustix::fs::Gid), Timestamps),
    ) -> Result<(), ApplyError> {
        let path_err = |e: rustix::io::Errno| ApplyError::Io { path: self.root.join(rel), source: e.into() };
        self.clear(parent, name, rel, false)?;
        let (ft, dev) = match header.entry_type() {
            tar::EntryType::Fifo => (FileType::Fifo, 0),
            k => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let ft = if k == tar::EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                (ft, rfs::makedev(major, minor))
            }
        };
        match rfs::mknodat(parent, name, ft, perm, dev) {
            Err(rustix::io::Errno::PERM) if self.unprivileged_recording() && ft != FileType::Fifo => return Ok(()),
            result => result.map_err(path_err)?,
        }
        let fd = rfs::openat(parent, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(path_err)?;
        if self.chown {
            rfs::chownat(&fd, "", Some(owner.0), Some(owner.1), AtFlags::EMPTY_PATH).map_err(path_err)?;
        }
        rfs::chmodat(parent, name, perm, AtFlags::empty()).map_err(path_err)?;
        rfs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH).map_err(path_err)?;
        Ok(())
    }

    /// A whiteout entry in Overlay or Delete mode; `hidden`: its name after `.wh.`, in the
    /// directory `parent_comps`.
    fn apply_whiteout(&mut self, hidden: &[u8], parent_comps: &[OsString]) -> Result<(), ApplyError> {
        let parent_rel = join(parent_comps);
        if hidden == OPAQUE_MARKER_SUFFIX.as_bytes() {
            match self.mode {
                WhiteoutMode::Overlay => {
                    self.parent_dir(parent_comps)?;
                    let dir = self
                        .open_in_root(&parent_rel, OFlags::RDONLY | OFlags::DIRECTORY)
                        .map_err(io_err(self.root.join(&parent_rel)))?;
                    // trusted.* needs CAP_SYS_ADMIN; without it, the userxattr overlay's marker.
                    match rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", rfs::XattrFlags::empty()) {
                        Err(rustix::io::Errno::PERM) => {
                            rfs::fsetxattr(&dir, USER_OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
                        }
                        result => result,
                    }
                    .map_err(io_err(self.root.join(&parent_rel)))?;
                }
                // Literal mode has no whiteouts (see `apply_entry`).
                WhiteoutMode::Delete | WhiteoutMode::Literal => self.make_opaque(parent_comps)?,
            }
            return Ok(());
        }
        if whiteout_hidden(hidden).is_some() {
            return Ok(()); // aufs metadata (.wh..wh.plnk etc.): not content
        }
        let hidden = OsStr::from_bytes(hidden);
        let parent = self.parent_dir(parent_comps)?;
        let target_rel = parent_rel.join(hidden);
        self.clear(&parent, hidden, &target_rel, false)?;
        if self.mode == WhiteoutMode::Overlay {
            match rfs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0)) {
                // No CAP_MKNOD (an unprivileged user outside a user namespace): the overlay's
                // other whiteout form, an empty file with a whiteout xattr (Linux >= 6.7 reads
                // it; rbuild's merged view and diff always do).
                Err(rustix::io::Errno::PERM) => {
                    let fd = rfs::openat(
                        &parent,
                        hidden,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        // user.* xattrs need write permission on the file.
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(io_err(self.root.join(&target_rel)))?;
                    rfs::fsetxattr(&fd, USER_WHITEOUT_XATTR, b"y", rfs::XattrFlags::empty())
                        .map_err(io_err(self.root.join(&target_rel)))?;
                }
                result => result.map_err(io_err(self.root.join(&target_rel)))?,
            }
        }
        Ok(())
    }

    /// Creates the regular file `name` in `parent` (absent: cleared by the caller) with the
    /// entry's content; returns it open for its metadata.
    fn write_file<R: Read>(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<OwnedFd, ApplyError> {
        let fd = rfs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err(self.root.join(rel)))?;
        let mut file = std::fs::File::from(fd);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(ApplyError::Tar)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(|source| ApplyError::Io { path: self.root.join(rel), source })?;
        }
        Ok(OwnedFd::from(file))
    }

    /// The hard link at `comps` (in `parent`) to `target`, which must be in the layer and not
    /// a directory (`shown`: the entry's name, for a refusal). `false` for a link to itself:
    /// nothing is written.
    fn hard_link(&self, target: &[u8], comps: &[OsString], parent: &OwnedFd, shown: &str) -> Result<bool, ApplyError> {
        let refuse = |reason| ApplyError::Refused { entry: shown.to_string(), reason };
        let tcomps = confine(target).map_err(refuse)?;
        let Some((tname, tparent_comps)) = tcomps.split_last() else {
            return Err(refuse("hard link to the layer root"));
        };
        let tparent = self
            .open_in_root(&join(tparent_comps), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|_| refuse("hard link target is not in the layer"))?;
        match rfs::statat(&tparent, tname.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(refuse("hard link to a directory"))
            }
            Ok(_) => {}
            Err(_) => return Err(refuse("hard link target is not in the layer")),
        }
        if tcomps == comps {
            return Ok(false);
        }
        let Some(name) = comps.last() else { return Ok(false) };
        let rel = join(comps);
        self.clear(parent, name, &rel, false)?;
        rfs::linkat(&tparent, tname.as_os_str(), parent, name.as_os_str(), AtFlags::empty())
            .map_err(io_err(self.root.join(&rel)))?;
        Ok(true)
    }

    fn finish_fd(
        &self,
        fd: &OwnedFd,
        owner: (rustix::fs::Uid, rustix::fs::Gid),
        perm: Mode,
        xattrs: &[(OsString, Vec<u8>)],
        rel: &Path,
    ) -> Result<(), ApplyError> {
        let path_err = |e: rustix::io::Errno| ApplyError::Io { path: self.root.join(rel), source: e.into() };
        if self.chown {
            rfs::fchown(fd, Some(owner.0), Some(owner.1)).map_err(path_err)?;
        }
        rfs::fchmod(fd, perm).map_err(path_err)?;
        for (k, v) in xattrs {
            match rfs::fsetxattr(fd.as_fd(), k.as_os_str(), v, rfs::XattrFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
                Err(rustix::io::Errno::PERM) if !self.chown => {}
                Err(e) => return Err(path_err(e)),
            }
        }
        Ok(())
    }

    /// Delete mode: an opaque directory hides everything lower layers put in it.
    fn make_opaque(&mut self, dir_comps: &[OsString]) -> Result<(), ApplyError> {
        let dir_rel = join(dir_comps);
        let dir = self.parent_dir(dir_comps)?;
        let listing = self
            .open_in_root(&dir_rel, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(io_err(self.root.join(&dir_rel)))?;
        let mut names = Vec::new();
        let iter = rfs::Dir::read_from(&listing).map_err(io_err(self.root.join(&dir_rel)))?;
        for ent in iter {
            let ent = ent.map_err(io_err(self.root.join(&dir_rel)))?;
            let n = OsStr::from_bytes(ent.file_name().to_bytes()).to_os_string();
            if n != "." && n != ".." {
                names.push(n);
            }
        }
        for n in names {
            let rel = dir_rel.join(&n);
            if !self.written.contains(&rel) {
                self.clear(&dir, &n, &rel, false)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(body.len() as u64);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            b.append_data(&mut h, path, *body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_delete_when_flattening() {
        let t = tempfile::tempdir().unwrap();
        let dir = tar::EntryType::Directory;
        let file = tar::EntryType::Regular;
        let mut a = LayerApply::new(t.path(), WhiteoutMode::Delete).unwrap();
        a.apply(
            &tar_of(&[
                ("d/", b"", dir),
                ("d/x", b"1", file),
                ("d/y", b"1", file),
                ("o/", b"", dir),
                ("o/old", b"1", file),
            ])[..],
        )
        .unwrap();
        a.apply(&tar_of(&[("d/.wh.x", b"", file), ("o/.wh..wh..opq", b"", file), ("o/new", b"2", file)])[..]).unwrap();
        assert!(!t.path().join("d/x").exists());
        assert!(t.path().join("d/y").exists());
        assert!(!t.path().join("o/old").exists());
        assert!(t.path().join("o/new").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: overlay whiteouts need root (mknod, trusted.* xattrs)");
            return;
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let t = tempfile::tempdir().unwrap();
        let file = tar::EntryType::Regular;
        let tar = tar_of(&[("d/.wh.gone", b"", file), ("o/.wh..wh..opq", b"", file), ("o/kept", b"k", file)]);
        let applied = LayerApply::new(t.path(), WhiteoutMode::Overlay).unwrap().apply(&tar[..]).unwrap();
        assert_eq!(applied.diff_id, Sha256Digest::of(&tar));
        let m = std::fs::symlink_metadata(t.path().join("d/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(crate::layer::overlay::is_opaque_dir(&t.path().join("o")).unwrap());
        assert!(t.path().join("o/kept").exists());
    }

    #[test]
    fn literal_mode_keeps_wh_names_as_files_but_refuses_dot_and_dotdot() {
        let t = tempfile::tempdir().unwrap();
        let file = tar::EntryType::Regular;
        let mut a = LayerApply::new(t.path(), WhiteoutMode::Literal).unwrap();
        a.apply(&tar_of(&[("x", b"1", file), (".wh.x", b"2", file), ("d/.wh..wh..opq", b"", file)])[..]).unwrap();
        assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"1");
        assert_eq!(std::fs::read(t.path().join(".wh.x")).unwrap(), b"2");
        assert!(t.path().join("d/.wh..wh..opq").is_file());
        for name in [".wh...", "d/.wh..", ".wh."] {
            let err = a.apply(&tar_of(&[(name, b"", file)])[..]).unwrap_err();
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
        assert!(t.path().join("x").exists());
    }

    #[test]
    fn confine_refuses_dotdot_and_drops_leading_slash() {
        assert_eq!(confine(b"/etc/passwd").unwrap(), vec![OsString::from("etc"), OsString::from("passwd")]);
        assert_eq!(confine(b"./a//b/./c").unwrap().len(), 3);
        assert!(confine(b"a/../../b").is_err());
        assert!(confine(b"..").is_err());
        assert!(confine(b"").unwrap().is_empty());
    }
}

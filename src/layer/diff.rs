//! Layer diff: turns an overlay upper dir into an OCI layer blob, and lists what a container
//! changed (`rbuild diff`).
//!
//! Only the upper dir is walked. Overlay whiteouts (a 0/0 character device, or a file marked
//! with an `overlay.whiteout` xattr) become `.wh.<name>` entries; a directory marked opaque
//! (`trusted.overlay.opaque=y`, `user.overlay.opaque=y` in userxattr mode, or
//! `user.fuseoverlayfs.opaque=y`) is followed by a `.wh..wh..opq` entry, as the OCI image spec
//! describes. The `.wh.` prefix is reserved for those markers: a file so named in an upper
//! dir or a COPY tree is refused (it would be a file where it was built and a whiteout wherever
//! the image is unpacked), except in an upper dir written by fuse-overlayfs, whose own whiteout
//! files use that name ([`DiffOptions::whiteout_files`]). Within each directory the opaque
//! marker comes first, then whiteouts, then the other entries, each group sorted by name
//! bytes, so the same tree always gives the same tar.
//!
//! [`write_layer`] makes one streaming pass: tar bytes -> sha256 (diff_id) -> compressor
//! (gzip members compressed on all cores, or multithreaded zstd) -> sha256 (digest) -> blob file. No copy of the
//! tar is kept anywhere.

mod pax;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layer::digest::{BackgroundHashingWriter, HashingWriter, Sha256Digest};

pub use crate::layer::media::Compression;
use pax::{EntryHeader, EntryKind, PaxTarWriter, Xattr};

use crate::layer::overlay::{
    get_xattr, has_whiteout_xattr, is_opaque_dir, is_whiteout_device, list_xattrs, whiteout_name,
    PRIVATE_XATTR_PREFIXES,
};
pub use crate::layer::overlay::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::layer::stack::MergedView;

/// How [`write_layer`] encodes a layer.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Blob compression; gzip by default.
    pub compression: Compression,
    /// Compression level; `None` = gzip 6 / zstd 3.
    pub level: Option<i32>,
    /// Threads for compression; 0 = all cores.
    pub threads: usize,
    /// `SOURCE_DATE_EPOCH`: when set, every timestamp later than it is clamped to it.
    pub source_date_epoch: Option<i64>,
    /// The upper dir was written by fuse-overlayfs, which records a whiteout it cannot make
    /// as a device as a `.wh.<name>` file (and refuses such names from the container): such
    /// files are whiteouts. Otherwise a `.wh.` name in the upper dir is refused.
    pub whiteout_files: bool,
    /// The unprivileged mode's id mapping: an upper dir's files carry host ids, and the layer
    /// records the container ids they map back to. `None`: ids are written as they are.
    pub host_ids: Option<HostIdMap>,
    /// The lower dirs (top-most first) the upper dir was mounted on. When given, a file that
    /// is only a copy-up of a lower one (opened for writing, unchanged: see
    /// `unchanged_copy_up`) is left out, and an opaque directory that none of them has is
    /// written without its `.wh..wh..opq` marker: it hides nothing. overlayfs marks a directory opaque when it is renamed into a merged parent
    /// (dpkg unpacks every new directory as `<dir>.dpkg-new` and renames it), which is no
    /// change to the image; BuildKit's differ writes no marker there, and the chroot-snapshot
    /// mode, which cannot see renames, writes none either, so the modes agree.
    pub lowers: Vec<PathBuf>,
}

/// Id a host id outside every range becomes, as the kernel shows an unmapped id.
pub const OVERFLOW_ID: u32 = 65534;

/// One range of a user namespace's uid or gid map: container ids `container..container+count`
/// are host ids `host..host+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

/// A user namespace's uid and gid maps, read backwards: host id -> container id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl HostIdMap {
    /// The container uid of host uid `host` ([`OVERFLOW_ID`] when it is not mapped).
    pub fn uid(&self, host: u32) -> u32 {
        to_container(&self.uids, host)
    }

    /// The container gid of host gid `host` ([`OVERFLOW_ID`] when it is not mapped).
    pub fn gid(&self, host: u32) -> u32 {
        to_container(&self.gids, host)
    }
}

fn to_container(ranges: &[IdRange], host: u32) -> u32 {
    ranges
        .iter()
        .find(|r| host >= r.host && host - r.host < r.count)
        .map_or(OVERFLOW_ID, |r| r.container + (host - r.host))
}

impl DiffOptions {
    /// Sets [`DiffOptions::source_date_epoch`] from the `SOURCE_DATE_EPOCH` environment
    /// variable when it is set and not empty.
    pub fn with_source_date_epoch_from_env(mut self) -> Result<Self, LayerError> {
        if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
            if !value.is_empty() {
                let text = value.to_string_lossy().into_owned();
                let secs = text.trim().parse::<i64>().map_err(|_| LayerError::SourceDateEpoch { value: text })?;
                self.source_date_epoch = Some(secs);
            }
        }
        Ok(self)
    }
}

/// A layer blob written by [`write_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLayer {
    /// The blob file, inside the directory given to [`write_layer`].
    pub path: PathBuf,
    /// `sha256:<hex>` of the blob (compressed) bytes.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// Bytes the layer's files take once unpacked: regular file contents plus symlink
    /// targets, as Docker's overlay2 counts a layer's size (`docker history`, `docker images`).
    pub unpacked_size: u64,
    pub media_type: &'static str,
    /// The upper dir had no entries: the step changed nothing and adds no layer. The blob
    /// (an empty tar) is still written so that the fields above are valid.
    pub empty: bool,
}

/// What happened to a path, as `rbuild diff` prints it (`A`, `C`, `D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `rbuild diff`: `path` is absolute inside the container (`/etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: PathBuf,
}

/// Why a layer could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing layer blob {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("compressing layer blob {path}: {message}")]
    Compress { path: PathBuf, message: String },
    #[error("{path} changed size while it was being committed ({expected} bytes expected)")]
    FileChanged { path: PathBuf, expected: u64 },
    #[error("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds")]
    SourceDateEpoch { value: String },
    #[error(
        "{}{}: names starting with {WHITEOUT_PREFIX:?} are reserved for whiteouts in image layers; rename it",
        shown_layer_path(layer_path),
        host_file.as_ref().map(|s| format!(" (from {})", s.display())).unwrap_or_default()
    )]
    ReservedName { layer_path: Vec<u8>, host_file: Option<PathBuf> },
}

/// `/a/b` for the layer path `a/b`, as a user sees it in the image.
fn shown_layer_path(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Read { path: path.to_path_buf(), source }
}

/// Writes the layer for `upper` into a new blob file in `out_dir` (which must exist; give the
/// store's `tmp/`) in one streaming pass, and returns its digests and sizes. The file is
/// fsynced; the caller renames it into place. On error no file is left behind.
pub fn write_layer(upper: &Path, out_dir: &Path, opts: &DiffOptions) -> Result<CommittedLayer, LayerError> {
    write_blob(out_dir, opts, |walk| walk.walk_dir(upper, &[]))
}

/// Writes the layer that `tree` describes, as [`write_layer`] would write it for an upper dir
/// holding those entries, without creating any of them on disk: file contents are read from
/// their host sources. COPY uses this when nothing needs the unpacked layer right away (the
/// store unpacks it from the blob if something does later).
pub fn write_layer_tree(tree: &LayerTree, out_dir: &Path, opts: &DiffOptions) -> Result<CommittedLayer, LayerError> {
    write_blob(out_dir, opts, |walk| walk.tree_dir(&tree.root, &[]))
}

/// The streaming pipeline both writers share: `feed` writes tar entries; the tar is hashed
/// (diff_id) on a thread of its own, compressed, hashed again (digest) and written to a new
/// blob file. An uncompressed blob is the tar itself, so its digest is the diff_id and it is
/// hashed once.
fn write_blob(
    out_dir: &Path,
    opts: &DiffOptions,
    feed: impl FnOnce(&mut UpperWalk<BackgroundHashingWriter<LayerEncoder>>) -> Result<(), LayerError>,
) -> Result<CommittedLayer, LayerError> {
    let blob = PartialBlob::create(out_dir)?;
    let write_err = |source| LayerError::Write { path: blob.path.clone(), source };
    let file = blob.file.try_clone().map_err(write_err)?;
    let encoder =
        LayerEncoder::new(BufWriter::with_capacity(1 << 20, EarlyWriteback::new(file)), opts).map_err(write_err)?;
    let tar = PaxTarWriter::new(BackgroundHashingWriter::new(encoder).map_err(write_err)?);
    let mut walk = UpperWalk {
        tar,
        epoch: opts.source_date_epoch,
        hard_links: HashMap::new(),
        tree_links: HashMap::new(),
        buf: vec![0u8; 1 << 20],
        blob_path: blob.path.clone(),
        entries: 0,
        whiteout_files: opts.whiteout_files,
        content_bytes: 0,
        host_ids: opts.host_ids.clone(),
        lowers: (!opts.lowers.is_empty()).then(|| MergedView::from_top_first(opts.lowers.clone())),
    };
    feed(&mut walk)?;
    let (entries, unpacked_size) = (walk.entries, walk.content_bytes);
    let tar_hashing = walk.tar.finish().map_err(write_err)?;
    let (diff_id, uncompressed_size, encoder) = tar_hashing.finish().map_err(write_err)?;
    let (buffered, compressed) = encoder.finish(&blob.path)?;
    let (digest, compressed_size) = compressed.unwrap_or_else(|| (diff_id.clone(), uncompressed_size));
    let file = buffered.into_inner().map_err(|e| write_err(e.into_error()))?.into_file();
    file.sync_all().map_err(write_err)?;
    let path = blob.keep();
    Ok(CommittedLayer {
        path,
        digest: digest.to_string(),
        diff_id: diff_id.to_string(),
        compressed_size,
        uncompressed_size,
        unpacked_size,
        media_type: opts.compression.media_type(),
        empty: entries == 0,
    })
}

/// A layer described in memory: the entries an upper dir would hold, with file contents
/// still at their host paths. Children are kept sorted by name bytes, the order
/// [`write_layer`] writes an upper dir in, so both give the same tar for the same entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerTree {
    pub root: BTreeMap<Vec<u8>, TreeEntry>,
}

/// One entry of a [`LayerTree`], with the metadata its tar header gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub kind: TreeEntryKind,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntryKind {
    Dir(BTreeMap<Vec<u8>, TreeEntry>),
    /// A regular file whose content is read from `source`, which must still be `size` bytes
    /// long when the layer is written. Files with the same `link` number are one file with
    /// several names: the first written carries the content, the others are hard links to it.
    File {
        source: PathBuf,
        size: u64,
        link: Option<u64>,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A whiteout marker, written as the empty file an upper dir's whiteout becomes: its key
    /// is the marker's own name (`.wh.<hidden>`, or [`OPAQUE_MARKER`] for an opaque
    /// directory, whose entry carries that directory's metadata as the upper-dir walk gives
    /// it). Only the chroot-snapshot mode's comparison makes these; COPY never does.
    Whiteout,
}

/// Lists what the upper dir changed relative to `lowers` (top-most lower dir first, as in
/// overlay's `lowerdir=`): `Added` for paths no lower dir has, `Changed` for paths a lower dir
/// has (copied-up directories included, as `docker diff` shows them), `Deleted` for
/// whiteouts and for what an opaque directory hides. Sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, LayerError> {
    let mut out = Vec::new();
    changes_in(upper, &MergedView::from_top_first(lowers.to_vec()), Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn changes_in(upper: &Path, lowers: &MergedView, rel: &Path, out: &mut Vec<Change>) -> Result<(), LayerError> {
    let dir = upper.join(rel);
    for (name, meta) in sorted_children(&dir)? {
        let child_rel = rel.join(&name);
        let abs = dir.join(&name);
        let shown = Path::new("/").join(&child_rel);
        if let Some(hidden) = whiteout_target(&abs, &name, &meta, true) {
            out.push(Change { kind: ChangeKind::Deleted, path: Path::new("/").join(rel).join(hidden) });
            continue;
        }
        if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
            continue;
        }
        let in_lower = lower_has(lowers, &child_rel);
        out.push(Change { kind: if in_lower { ChangeKind::Changed } else { ChangeKind::Added }, path: shown.clone() });
        if meta.is_dir() {
            if in_lower && is_opaque(&abs, true)? {
                let upper_names: BTreeSet<OsString> = sorted_children(&abs)?.into_iter().map(|(n, _)| n).collect();
                for hidden in lower_children(lowers, &child_rel) {
                    if !upper_names.contains(&hidden) {
                        out.push(Change { kind: ChangeKind::Deleted, path: shown.join(&hidden) });
                    }
                }
            }
            changes_in(upper, lowers, &child_rel, out)?;
        }
    }
    Ok(())
}

/// Where the merged view of the lower dirs shows `rel`, by the one layer-stack resolver
/// ([`MergedView::lookup_exact`]: whiteouts and opaque dirs honoured, no symlink of a lower
/// layer followed on the way, so a hostile layer's `etc -> /host/etc` cannot point a lookup
/// outside the store). A name that is not UTF-8 cannot be looked up: `Err(())`.
fn lower_entry(lowers: &MergedView, rel: &Path) -> Result<Option<PathBuf>, ()> {
    let comps: Vec<String> = rel.iter().map(|c| c.to_str().map(str::to_string)).collect::<Option<_>>().ok_or(())?;
    Ok(lowers.lookup_exact(&comps).map(|e| e.host_path))
}

/// Whether the merged view of the lower dirs has `rel` (a name it cannot look up counts as
/// present: what depends on it is then kept).
fn lower_has(lowers: &MergedView, rel: &Path) -> bool {
    lower_entry(lowers, rel).map_or(true, |found| found.is_some())
}

/// Whether the upper dir's regular file `path` (`rel` in the image) is only a copy-up of the
/// lower file: overlayfs copies a file up when it is opened for writing, changed or not
/// (useradd's /etc/.pwd.lock, dpkg's lock files). As BuildKit's overlay differ does, such a
/// file is no change when its type, mode, owner, size, mtime and extended attributes equal
/// the lower's (and, when both mtimes have no sub-second part, its content too); the
/// chroot-snapshot mode, which sees no copy-up, agrees.
fn unchanged_copy_up(lowers: &MergedView, rel: &Path, path: &Path, meta: &Metadata) -> Result<bool, LayerError> {
    let Ok(Some(lower)) = lower_entry(lowers, rel) else { return Ok(false) };
    let Ok(below) = lower.symlink_metadata() else { return Ok(false) };
    let same_stat = below.is_file()
        && below.nlink() == 1
        && (below.mode(), below.uid(), below.gid(), below.len()) == (meta.mode(), meta.uid(), meta.gid(), meta.len())
        && (below.mtime(), below.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec());
    if !same_stat || layer_xattrs(&lower)? != layer_xattrs(path)? {
        return Ok(false);
    }
    if meta.mtime_nsec() != 0 {
        return Ok(true);
    }
    same_content(&lower, path)
}

/// Whether two files of the same size hold the same bytes, read in chunks.
fn same_content(a: &Path, b: &Path) -> Result<bool, LayerError> {
    let open = |p: &Path| File::open(p).map_err(read_err(p));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba).map_err(read_err(a))?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1]).map_err(read_err(b))? == 0);
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The names the merged view of the lower dirs lists in the directory `rel`, through the one
/// layer-stack listing ([`MergedView::read_dir`]: no lower layer's symlink followed on the
/// way), each checked as [`lower_has`] sees it (an opaque directory above `rel` in a lower
/// layer hides what is below it). A name that is not UTF-8 cannot be looked up: nothing.
fn lower_children(lowers: &MergedView, rel: &Path) -> BTreeSet<OsString> {
    let Some(comps) = rel.iter().map(|c| c.to_str().map(str::to_string)).collect::<Option<Vec<_>>>() else {
        return BTreeSet::new();
    };
    // A `.wh.` name in a lower dir is a marker (whiteout file, opaque marker), not an entry.
    let is_marker = |n: &OsString| n.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes());
    lowers.read_dir(&comps).into_keys().filter(|n| !is_marker(n) && lower_has(lowers, &rel.join(n))).collect()
}

/// If the upper-dir entry at `path` is a whiteout, the name it hides. `whiteout_files`: a
/// `.wh.<name>` file is a whiteout (see [`DiffOptions::whiteout_files`]).
fn whiteout_target(path: &Path, name: &OsString, meta: &Metadata, whiteout_files: bool) -> Option<OsString> {
    let ft = meta.file_type();
    if is_whiteout_device(meta) {
        return Some(name.clone());
    }
    if ft.is_file() {
        let bytes = name.as_bytes();
        // fuse-overlayfs without mknod rights writes OCI-style whiteout files.
        if whiteout_files && bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) && bytes != OPAQUE_MARKER.as_bytes() {
            return Some(OsString::from_vec(bytes[WHITEOUT_PREFIX.len()..].to_vec()));
        }
        if meta.len() == 0 && has_whiteout_xattr(path) {
            return Some(name.clone());
        }
    }
    None
}

fn is_opaque(dir: &Path, whiteout_files: bool) -> Result<bool, LayerError> {
    // Reading trusted.* without CAP_SYS_ADMIN, or a filesystem without xattrs, reads as unmarked.
    if is_opaque_dir(dir).map_err(read_err(dir))? {
        return Ok(true);
    }
    Ok(whiteout_files && dir.join(OPAQUE_MARKER).symlink_metadata().is_ok())
}

fn sorted_children(dir: &Path) -> Result<Vec<(OsString, Metadata)>, LayerError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let path = entry.path();
        let meta = path.symlink_metadata().map_err(read_err(&path))?;
        out.push((entry.file_name(), meta));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn layer_xattrs(path: &Path) -> Result<Vec<Xattr>, LayerError> {
    let names = list_xattrs(path).map_err(read_err(path))?;
    let mut out = Vec::new();
    for name in names {
        let text = name.to_string_lossy();
        if PRIVATE_XATTR_PREFIXES.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        // Gone since the listing, or unreadable without privileges: not recorded.
        if let Some(value) = get_xattr(path, name.as_os_str()).map_err(read_err(path))? {
            out.push((name.into_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The depth-first walk of an upper dir that feeds the tar stream.
struct UpperWalk<W: Write> {
    tar: PaxTarWriter<W>,
    epoch: Option<i64>,
    /// (dev, ino) of multiply-linked files already written -> their tar path.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    /// The same for a [`LayerTree`]: `link` number of a file already written -> its tar path.
    tree_links: HashMap<u64, Vec<u8>>,
    buf: Vec<u8>,
    blob_path: PathBuf,
    entries: u64,
    /// See [`DiffOptions::whiteout_files`].
    whiteout_files: bool,
    /// [`CommittedLayer::unpacked_size`] of the entries written so far.
    content_bytes: u64,
    /// Maps the host ids of an upper dir's files to container ids.
    host_ids: Option<HostIdMap>,
    /// The merged view of [`DiffOptions::lowers`], when given.
    lowers: Option<MergedView>,
}

impl<W: Write> UpperWalk<W> {
    fn mtime(&self, meta: &Metadata) -> i64 {
        match self.epoch {
            Some(epoch) => meta.mtime().min(epoch),
            None => meta.mtime(),
        }
    }

    fn write_err(&self) -> impl FnOnce(io::Error) -> LayerError + '_ {
        move |source| LayerError::Write { path: self.blob_path.clone(), source }
    }

    /// The container (uid, gid) of a file of an upper dir.
    fn owner(&self, meta: &Metadata) -> (u64, u64) {
        match &self.host_ids {
            Some(map) => (u64::from(map.uid(meta.uid())), u64::from(map.gid(meta.gid()))),
            None => (u64::from(meta.uid()), u64::from(meta.gid())),
        }
    }

    fn header(&mut self, header: &EntryHeader) -> Result<(), LayerError> {
        self.entries += 1;
        match &header.kind {
            EntryKind::File { size } => self.content_bytes += size,
            EntryKind::Symlink { target } => self.content_bytes += target.len() as u64,
            _ => {}
        }
        let result = self.tar.write_header(header);
        result.map_err(self.write_err())
    }

    fn marker(&mut self, path: Vec<u8>, meta: &Metadata) -> Result<(), LayerError> {
        let header = EntryHeader {
            path,
            kind: EntryKind::File { size: 0 },
            mode: meta.mode() & 0o7777,
            uid: self.owner(meta).0,
            gid: self.owner(meta).1,
            mtime: self.mtime(meta),
            xattrs: Vec::new(),
        };
        self.header(&header)
    }

    fn walk_dir(&mut self, dir: &Path, rel: &[u8]) -> Result<(), LayerError> {
        let children = sorted_children(dir)?;
        let join = |name: &[u8]| {
            let mut p = rel.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        if !rel.is_empty()
            && is_opaque(dir, self.whiteout_files)?
            && self.lowers.as_ref().is_none_or(|lowers| lower_has(lowers, Path::new(OsStr::from_bytes(rel))))
        {
            let meta = dir.symlink_metadata().map_err(read_err(dir))?;
            self.marker(join(OPAQUE_MARKER.as_bytes()), &meta)?;
        }
        let mut regular = Vec::new();
        let mut whiteouts = Vec::new();
        for (name, meta) in children {
            let path = dir.join(&name);
            if self.whiteout_files && name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                continue; // already written above (fuse-overlayfs marker file)
            }
            match whiteout_target(&path, &name, &meta, self.whiteout_files) {
                Some(hidden) => whiteouts.push((whiteout_name(&hidden), meta)),
                None if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) => {
                    return Err(LayerError::ReservedName { layer_path: join(name.as_bytes()), host_file: None })
                }
                None => regular.push((name, path, meta)),
            }
        }
        whiteouts.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (wh, meta) in whiteouts {
            self.marker(join(wh.as_bytes()), &meta)?;
        }
        for (name, path, meta) in regular {
            let tar_path = join(name.as_bytes());
            if let Some(lowers) = &self.lowers {
                if meta.is_file()
                    && meta.nlink() == 1
                    && unchanged_copy_up(lowers, Path::new(OsStr::from_bytes(&tar_path)), &path, &meta)?
                {
                    continue;
                }
            }
            self.entry(&path, tar_path, &meta)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, tar_path: Vec<u8>, meta: &Metadata) -> Result<(), LayerError> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                match self.hard_links.get(&key) {
                    Some(first) => EntryKind::HardLink { target: first.clone() },
                    None => {
                        self.hard_links.insert(key, tar_path.clone());
                        EntryKind::File { size: meta.len() }
                    }
                }
            } else {
                EntryKind::File { size: meta.len() }
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(read_err(path))?;
            EntryKind::Symlink { target: target.into_os_string().into_vec() }
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
            if ft.is_char_device() {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            return Ok(()); // sockets do not go into layers
        };
        let header = EntryHeader {
            path: tar_path.clone(),
            kind: kind.clone(),
            mode: meta.mode() & 0o7777,
            uid: self.owner(meta).0,
            gid: self.owner(meta).1,
            mtime: self.mtime(meta),
            xattrs: layer_xattrs(path)?,
        };
        self.header(&header)?;
        match kind {
            EntryKind::File { size } => self.copy_file(path, size)?,
            EntryKind::Dir => self.walk_dir(path, &tar_path)?,
            _ => {}
        }
        Ok(())
    }

    fn tree_dir(&mut self, children: &BTreeMap<Vec<u8>, TreeEntry>, rel: &[u8]) -> Result<(), LayerError> {
        let join = |name: &[u8]| {
            let mut p = rel.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        // The order `walk_dir` writes an upper dir in: the opaque marker, the whiteouts (by
        // marker name), then everything else by name.
        let is_marker = |e: &TreeEntry| matches!(e.kind, TreeEntryKind::Whiteout);
        let opaque = children.get_key_value(OPAQUE_MARKER.as_bytes()).filter(|(_, e)| is_marker(e));
        let whiteouts = children.iter().filter(|(k, e)| is_marker(e) && k.as_slice() != OPAQUE_MARKER.as_bytes());
        for (name, entry) in opaque.into_iter().chain(whiteouts) {
            let header = self.tree_header(join(name), EntryKind::File { size: 0 }, entry);
            self.header(&header)?;
        }
        for (name, entry) in children.iter().filter(|(_, e)| !is_marker(e)) {
            let tar_path = join(name);
            if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                let host_file = match &entry.kind {
                    TreeEntryKind::File { source, .. } => Some(source.clone()),
                    _ => None,
                };
                return Err(LayerError::ReservedName { layer_path: tar_path, host_file });
            }
            let kind = match &entry.kind {
                TreeEntryKind::Dir(_) => EntryKind::Dir,
                TreeEntryKind::File { link: Some(link), .. } if self.tree_links.contains_key(link) => {
                    EntryKind::HardLink { target: self.tree_links[link].clone() }
                }
                TreeEntryKind::File { size, link, .. } => {
                    if let Some(link) = link {
                        self.tree_links.insert(*link, tar_path.clone());
                    }
                    EntryKind::File { size: *size }
                }
                TreeEntryKind::Symlink { target } => EntryKind::Symlink { target: target.clone() },
                TreeEntryKind::Whiteout => continue,
            };
            let header = self.tree_header(tar_path.clone(), kind.clone(), entry);
            self.header(&header)?;
            match (&entry.kind, kind) {
                (TreeEntryKind::Dir(grandchildren), _) => self.tree_dir(grandchildren, &tar_path)?,
                (TreeEntryKind::File { source, size, .. }, EntryKind::File { .. }) => self.copy_file(source, *size)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The tar header of a [`LayerTree`] entry (mtime clamped to the epoch).
    fn tree_header(&self, path: Vec<u8>, kind: EntryKind, entry: &TreeEntry) -> EntryHeader {
        EntryHeader {
            path,
            kind,
            mode: entry.mode & 0o7777,
            uid: u64::from(entry.uid),
            gid: u64::from(entry.gid),
            mtime: self.epoch.map_or(entry.mtime, |epoch| entry.mtime.min(epoch)),
            xattrs: Vec::new(),
        }
    }

    fn copy_file(&mut self, path: &Path, size: u64) -> Result<(), LayerError> {
        let mut file = File::open(path).map_err(read_err(path))?;
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = file.read(&mut self.buf[..want]).map_err(read_err(path))?;
            if n == 0 {
                return Err(LayerError::FileChanged { path: path.to_path_buf(), expected: size });
            }
            let result = self.tar.write_data(&self.buf[..n]);
            result.map_err(self.write_err())?;
            left -= n as u64;
        }
        let result = self.tar.end_data(size);
        result.map_err(self.write_err())
    }
}

/// The blob file, buffered.
type BlobFile = BufWriter<EarlyWriteback>;

/// Where a compressor's output goes: hashed (the blob's digest) and counted into the file.
type BlobSink = HashingWriter<BlobFile>;

/// Uncompressed bytes per gzip member. gzip is written as independent members compressed in
/// parallel with libdeflate (a valid multi-member gzip stream that `gzip -d`, Go's and
/// flate2's readers take as one), so the output does not depend on the thread count.
const GZIP_MEMBER_SIZE: usize = 1 << 20;

/// The compressor stage of the pipeline.
enum LayerEncoder {
    /// The tar itself is the blob: nothing to hash again.
    Plain(BlobFile),
    Gzip(gzp::par::compress::ParCompress<'static, gzp::deflate::Mgzip, BlobSink>),
    Zstd(zstd::stream::write::Encoder<'static, BlobSink>),
}

impl LayerEncoder {
    fn new(file: BlobFile, opts: &DiffOptions) -> io::Result<Self> {
        let threads =
            if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
        let sink = HashingWriter::new(file);
        Ok(match opts.compression {
            Compression::None => LayerEncoder::Plain(sink.finish().2),
            Compression::Gzip => {
                let level = opts.level.unwrap_or(6).clamp(1, 9) as u32;
                let builder = gzp::par::compress::ParCompressBuilder::<gzp::deflate::Mgzip>::new()
                    .compression_level(gzp::Compression::new(level))
                    .buffer_size(GZIP_MEMBER_SIZE)
                    .and_then(|b| b.num_threads(threads))
                    .map_err(|e| io::Error::other(e.to_string()))?;
                LayerEncoder::Gzip(builder.from_writer(sink))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(sink, opts.level.unwrap_or(3))?;
                if threads > 1 {
                    encoder.multithread(threads as u32)?;
                }
                LayerEncoder::Zstd(encoder)
            }
        })
    }

    /// Ends the stream; returns the file and, for a compressed blob, its digest and size
    /// (an uncompressed blob's are the tar's).
    fn finish(self, blob: &Path) -> Result<(BlobFile, Option<(Sha256Digest, u64)>), LayerError> {
        let compress_err = |message: String| LayerError::Compress { path: blob.to_path_buf(), message };
        let sink = match self {
            LayerEncoder::Plain(file) => return Ok((file, None)),
            LayerEncoder::Gzip(mut encoder) => {
                use gzp::ZWriter;
                encoder.finish().map_err(|e| compress_err(e.to_string()))?
            }
            LayerEncoder::Zstd(encoder) => encoder.finish().map_err(|e| compress_err(e.to_string()))?,
        };
        let (digest, size, file) = sink.finish();
        Ok((file, Some((digest, size))))
    }
}

impl Write for LayerEncoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerEncoder::Plain(w) => w.write(buf),
            LayerEncoder::Gzip(w) => w.write(buf),
            LayerEncoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerEncoder::Plain(w) => w.flush(),
            LayerEncoder::Gzip(w) => w.flush(),
            LayerEncoder::Zstd(w) => w.flush(),
        }
    }
}

/// Bytes written between two writeback starts of [`EarlyWriteback`].
const WRITEBACK_STEP: u64 = 8 << 20;

/// The blob file, asking the kernel to start writing each 8 MiB to disk as soon as it is
/// written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so the disk works
/// while the rest of the layer is made and the closing fsync only waits for the tail instead
/// of the whole blob. Durability still comes from that fsync alone.
struct EarlyWriteback {
    file: File,
    written: u64,
    started_to: u64,
}

impl EarlyWriteback {
    fn new(file: File) -> Self {
        EarlyWriteback { file, written: 0, started_to: 0 }
    }

    fn into_file(self) -> File {
        self.file
    }
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started_to >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            let (from, len) = (self.started_to, self.written - self.started_to);
            // SAFETY: the fd is this open file's for the whole call; the call only reads its
            // arguments. A failure (a filesystem without it) is left to the closing fsync.
            let _ = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    i64::try_from(from).unwrap_or(i64::MAX),
                    i64::try_from(len).unwrap_or(i64::MAX),
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            self.started_to = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The blob file while it is being written: removed on drop unless kept.
struct PartialBlob {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl PartialBlob {
    fn create(out_dir: &Path) -> Result<Self, LayerError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("layer-{}-{}-{}.blob", std::process::id(), nanos, SEQ.fetch_add(1, Ordering::Relaxed));
        let path = out_dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| LayerError::Write { path: path.clone(), source })?;
        Ok(PartialBlob { path, file, keep: false })
    }

    fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for PartialBlob {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

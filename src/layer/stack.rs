//! A read-only merged view of a stack of unpacked layers, as overlayfs would show them,
//! without mounting anything: path lookup through the layers top-down (whiteouts and opaque
//! directories as [`crate::layer::overlay`] defines them), symlinks resolved inside the stack's
//! root, and merged directory listings. The engine reads images through it (COPY --from,
//! `--chown` name lookup, "is the destination a directory"); the runtime resolves mount
//! targets through it ([`MergedView::resolve_target`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layer::overlay::{has_whiteout_xattr, is_opaque_dir, is_opaque_dir_fd, is_whiteout_device};

/// Where a visible entry lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedEntry {
    /// The host path of the entry in the layer that provides it.
    pub host_path: PathBuf,
    pub metadata_kind: EntryType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    Other,
}

/// What one layer holds at a path being resolved component by component (see
/// [`MergedView::resolve`]); it gives [`MergedView::lookup_exact`]'s answer without walking
/// from the root again.
#[derive(Debug, Clone)]
enum LayerState {
    /// The path is in this layer. `opaque_above`: a directory on the way is opaque, so no
    /// lower layer shows through once this layer lacks a deeper component. `dir`: the
    /// directory held open, so the next component is looked up relative to it (one step,
    /// where a host path walks every component again: 100 nested WORKDIRs, each a layer,
    /// made resolving cubic in the kernel's path walk); `None` when it could not be opened.
    Found { host: PathBuf, kind: EntryType, opaque_above: bool, dir: Option<Arc<OwnedFd>> },
    /// A component is missing from this layer (after an opaque directory, when `opaque_above`).
    Missing { opaque_above: bool },
    /// A whiteout, or a file where a directory is needed, hides the path from here down.
    Blocked,
}

/// What a lookup of one entry tells.
struct Probe {
    kind: EntryType,
    whiteout: bool,
}

impl Probe {
    fn of_metadata(host: &Path, meta: &std::fs::Metadata) -> Probe {
        Probe { kind: kind_of(meta), whiteout: is_whiteout(host, meta) }
    }

    /// The entry `name` of the open directory `dir` (`host` is its host path, for the rare
    /// xattr whiteout of an empty file); `None` when it is missing.
    fn at(dir: &OwnedFd, name: &str, host: &Path) -> Option<Probe> {
        let stat = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let file_type = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        let kind = match file_type {
            rustix::fs::FileType::Directory => EntryType::Dir,
            rustix::fs::FileType::RegularFile => EntryType::File,
            rustix::fs::FileType::Symlink => EntryType::Symlink,
            _ => EntryType::Other,
        };
        let whiteout = match file_type {
            rustix::fs::FileType::CharacterDevice => stat.st_rdev == 0,
            rustix::fs::FileType::RegularFile => stat.st_size == 0 && has_whiteout_xattr(host),
            _ => false,
        };
        Some(Probe { kind, whiteout })
    }
}

/// Opens a directory for lookups relative to it (`parent` and `name`, or `host` alone).
fn open_dir(parent: Option<&OwnedFd>, name: &str, host: &Path) -> Option<Arc<OwnedFd>> {
    use rustix::fs::{Mode, OFlags, CWD};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match parent {
        Some(parent) => rustix::fs::openat(parent, name, flags, Mode::empty()),
        None => rustix::fs::openat(CWD, host, flags, Mode::empty()),
    };
    fd.ok().map(Arc::new)
}

impl LayerState {
    /// A layer's top directory (not opened: most layers of a lookup are never looked into).
    fn root(layer: &Path) -> LayerState {
        LayerState::Found { host: layer.to_path_buf(), kind: EntryType::Dir, opaque_above: false, dir: None }
    }

    /// This layer's state one component deeper. `below_root`: the current path is not the
    /// root (the root's opaque marker never hides anything).
    fn extend(&self, c: &str, below_root: bool) -> LayerState {
        match self {
            LayerState::Found { host, kind: EntryType::Dir, opaque_above, dir } => {
                let opaque_above = *opaque_above || (below_root && is_opaque_at(dir.as_deref(), host));
                let child = host.join(c);
                let probe = match dir {
                    Some(fd) => Probe::at(fd, c, &child),
                    None => std::fs::symlink_metadata(&child).ok().map(|meta| Probe::of_metadata(&child, &meta)),
                };
                match probe {
                    None => LayerState::Missing { opaque_above },
                    Some(probe) if probe.whiteout => LayerState::Blocked,
                    Some(probe) => {
                        let child_dir =
                            if probe.kind == EntryType::Dir { open_dir(dir.as_deref(), c, &child) } else { None };
                        LayerState::Found { kind: probe.kind, host: child, opaque_above, dir: child_dir }
                    }
                }
            }
            LayerState::Found { .. } | LayerState::Blocked => LayerState::Blocked,
            LayerState::Missing { opaque_above } => LayerState::Missing { opaque_above: *opaque_above },
        }
    }

    /// Lets go of the open directory (lookups below it go by path).
    fn close_dir(&mut self) {
        if let LayerState::Found { dir, .. } = self {
            *dir = None;
        }
    }
}

/// Every layer's state along the path being resolved, filled in lazily in overlayfs's own
/// lookup order: a layer is looked at, at some depth, only when every layer above it lacks
/// the path there. When an upper layer holds the path (a WORKDIR's layer holds all of it),
/// resolving costs one lookup per component instead of one per layer and component (100
/// nested WORKDIRs, each a layer, made every step's lookups quadratic, the build quartic).
struct LazyStates {
    /// Per layer (top first): its states for the path's prefixes of length 0, 1, ...
    layers: Vec<Vec<LayerState>>,
}

impl LazyStates {
    fn new(view: &MergedView) -> LazyStates {
        LazyStates { layers: view.layers.iter().map(|l| vec![LayerState::root(l)]).collect() }
    }

    /// The entry the merged image shows at `path` (non-empty components, no symlink among
    /// the parents), given that the states already computed are for prefixes of `path`.
    fn visible(&mut self, path: &[String]) -> Option<MergedEntry> {
        let depth = path.len();
        for states in &mut self.layers {
            while states.len() <= depth {
                let parent = states.len() - 1;
                let next = states[parent].extend(&path[parent], parent > 0);
                // Only a layer's deepest state keeps its directory open.
                states[parent].close_dir();
                states.push(next);
            }
            match &states[depth] {
                LayerState::Found { host, kind, .. } => {
                    return Some(MergedEntry { host_path: host.clone(), metadata_kind: *kind })
                }
                LayerState::Missing { opaque_above: true } | LayerState::Blocked => return None,
                LayerState::Missing { opaque_above: false } => {}
            }
        }
        None
    }

    /// The path now has only `depth` components of those the states were computed for (a
    /// `..`, a symlink replacing its last component, an absolute one restarting at the root).
    fn truncate(&mut self, depth: usize) {
        for states in &mut self.layers {
            states.truncate(depth + 1);
        }
    }
}

/// The layers of an image, top-most first.
#[derive(Debug, Clone)]
pub struct MergedView {
    layers: Vec<PathBuf>,
}

/// Upper bound on symlinks followed while resolving one path (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// overlayfs's whiteout: a 0/0 device, or (where the store could not make devices: an
/// unprivileged user without a user namespace) an empty file with a whiteout xattr.
fn is_whiteout(path: &Path, meta: &std::fs::Metadata) -> bool {
    is_whiteout_device(meta) || (meta.is_file() && meta.len() == 0 && has_whiteout_xattr(path))
}

/// An unreadable marker reads as "not opaque", as overlayfs treats it.
fn is_opaque(path: &Path) -> bool {
    is_opaque_dir(path).unwrap_or(false)
}

/// [`is_opaque`] of a directory held open (read through the descriptor), else by its path.
fn is_opaque_at(dir: Option<&OwnedFd>, path: &Path) -> bool {
    match dir {
        Some(fd) => is_opaque_dir_fd(fd).unwrap_or(false),
        None => is_opaque(path),
    }
}

fn kind_of(meta: &std::fs::Metadata) -> EntryType {
    let t = meta.file_type();
    if t.is_dir() {
        EntryType::Dir
    } else if t.is_file() {
        EntryType::File
    } else if t.is_symlink() {
        EntryType::Symlink
    } else {
        EntryType::Other
    }
}

/// Splits an image path into its components (`/a/./b/` -> `[a, b]`; `..` is kept for the
/// resolver to clamp at the root).
fn components(path: &str) -> Vec<String> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect()
}

impl MergedView {
    /// The view of `layers_bottom_first` (the order the store returns them in).
    pub fn new(layers_bottom_first: &[PathBuf]) -> Self {
        MergedView { layers: layers_bottom_first.iter().rev().cloned().collect() }
    }

    /// The view of `layers_top_first` (an overlay's upper dir, then its lower dirs).
    pub fn from_top_first(layers_top_first: Vec<PathBuf>) -> Self {
        MergedView { layers: layers_top_first }
    }

    /// The layers, top-most first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The entry at exactly these components, without following a final symlink; parent
    /// components must already be resolved (no symlinks among them), as [`MergedView::resolve`]
    /// returns them. Cheaper than [`MergedView::stat`], which resolves from the root again.
    pub fn lookup_exact(&self, comps: &[String]) -> Option<MergedEntry> {
        for layer in &self.layers {
            let mut host = layer.clone();
            let mut stop_below = false;
            for (i, c) in comps.iter().enumerate() {
                host.push(c);
                let Ok(meta) = std::fs::symlink_metadata(&host) else {
                    break;
                };
                if is_whiteout(&host, &meta) {
                    return None;
                }
                let last = i + 1 == comps.len();
                if !last {
                    if !meta.is_dir() {
                        // A file or link in an upper layer shadows the whole subtree.
                        return None;
                    }
                    if is_opaque(&host) {
                        stop_below = true;
                    }
                } else {
                    return Some(MergedEntry { host_path: host, metadata_kind: kind_of(&meta) });
                }
            }
            if comps.is_empty() {
                return Some(MergedEntry { host_path: layer.clone(), metadata_kind: EntryType::Dir });
            }
            if stop_below {
                return None;
            }
        }
        if comps.is_empty() {
            // An image with no layers still has a root directory.
            return self.layers.last().map(|l| MergedEntry { host_path: l.clone(), metadata_kind: EntryType::Dir });
        }
        None
    }

    /// The entry at each prefix of `comps` (`comps[..1]`, `comps[..2]`, ...), as
    /// [`MergedView::lookup_exact`] gives it, in one walk: O(layers x depth), not squared.
    /// `None` from the first prefix the image does not show.
    pub fn lookup_prefixes(&self, comps: &[String]) -> Vec<Option<MergedEntry>> {
        let mut states = LazyStates::new(self);
        (1..=comps.len()).map(|n| states.visible(&comps[..n])).collect()
    }

    /// Resolves `path` (absolute inside the image) to its components with every symlink
    /// followed, confined to the image root as the kernel confines a chroot. `follow_last`
    /// decides whether a final symlink is followed.
    ///
    /// Each layer's state for the prefix resolved so far is kept, so one more component costs
    /// one `stat` per layer that still has the prefix: O(layers x depth) for the whole path,
    /// where [`MergedView::lookup_exact`] of every prefix from the root would cost O(layers x
    /// depth^2) (100 nested WORKDIRs, each a layer, made that cubic).
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<(Vec<String>, MergedEntry)> {
        let (resolved, entry) = self.walk(path, follow_last, false)?;
        let entry = if resolved.is_empty() { self.lookup_exact(&resolved)? } else { entry? };
        Some((resolved, entry))
    }

    /// Resolves a path that need not exist (a mount target the runtime will create) as the
    /// kernel would inside the container: every symlink followed (an absolute one restarts at
    /// the root), `..` stopping at the root, missing components kept as they are. The
    /// components have no symlink in them, so mounting on them cannot leave the root. `None`
    /// after too many symlinks.
    pub fn resolve_target(&self, path: &str) -> Option<Vec<String>> {
        self.walk(path, true, true).map(|(resolved, _)| resolved)
    }

    /// The walk behind [`MergedView::resolve`] and [`MergedView::resolve_target`]: the
    /// resolved components and the entry the stack shows at them (`None` at the root, and
    /// for a missing path). `missing_ok`: a component the stack does not show is kept (and
    /// everything below it is missing too) instead of ending the walk with `None`.
    fn walk(&self, path: &str, follow_last: bool, missing_ok: bool) -> Option<(Vec<String>, Option<MergedEntry>)> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut resolved: Vec<String> = Vec::new();
        let mut states = LazyStates::new(self);
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop();
                states.truncate(resolved.len());
                continue;
            }
            resolved.push(c);
            let entry = match states.visible(&resolved) {
                Some(entry) => entry,
                None if missing_ok => continue,
                None => return None,
            };
            let is_last = pending.is_empty();
            if entry.metadata_kind == EntryType::Symlink && (!is_last || follow_last) {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return None;
                }
                let target = std::fs::read_link(&entry.host_path).ok()?;
                let target = target.to_string_lossy().into_owned();
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                states.truncate(resolved.len());
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
        }
        let entry = if resolved.is_empty() { None } else { states.visible(&resolved) };
        Some((resolved, entry))
    }

    /// The image path (`/a/b`) of a host path inside one of the view's layers, such as a
    /// [`MergedEntry::host_path`].
    pub fn image_path(&self, host: &Path) -> Option<String> {
        let rel = self.layers.iter().find_map(|layer| host.strip_prefix(layer).ok())?;
        Some(format!("/{}", rel.to_string_lossy()))
    }

    /// The entry visible at `path`, following symlinks (including a final one).
    pub fn stat(&self, path: &str) -> Option<MergedEntry> {
        self.resolve(path, true).map(|(_, e)| e)
    }

    /// Whether `path` is a directory in the image.
    pub fn is_dir(&self, path: &str) -> bool {
        self.stat(path).is_some_and(|e| e.metadata_kind == EntryType::Dir)
    }

    /// Reads a whole file of the image (e.g. `/etc/passwd`).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let entry = self.stat(path)?;
        (entry.metadata_kind == EntryType::File).then(|| std::fs::read(&entry.host_path).ok()).flatten()
    }

    /// The merged listing of the directory at the resolved `comps`: name -> host path of the
    /// entry that is visible, whiteouts removed, opaque directories honoured.
    pub fn read_dir(&self, comps: &[String]) -> BTreeMap<OsString, MergedEntry> {
        let mut out: BTreeMap<OsString, MergedEntry> = BTreeMap::new();
        let mut hidden: Vec<OsString> = Vec::new();
        for layer in &self.layers {
            let mut host = layer.clone();
            let mut ok = true;
            for c in comps {
                host.push(c);
                match std::fs::symlink_metadata(&host) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if is_whiteout(&host, &m) => return out,
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&host) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if out.contains_key(&name) || hidden.contains(&name) {
                        continue;
                    }
                    let Ok(meta) = entry.path().symlink_metadata() else { continue };
                    if is_whiteout(&entry.path(), &meta) {
                        hidden.push(name);
                        continue;
                    }
                    out.insert(name, MergedEntry { host_path: entry.path(), metadata_kind: kind_of(&meta) });
                }
            }
            if is_opaque(&host) {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn whiteout(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
        // SAFETY: a NUL-terminated path; mknod of a 0/0 char device needs CAP_MKNOD (root).
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
        assert_eq!(rc, 0, "mknod {}: {}", path.display(), std::io::Error::last_os_error());
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn lookup_symlinks_and_listing_without_whiteouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (l0, l1) = (dir.path().join("l0"), dir.path().join("l1"));
        std::fs::create_dir_all(l0.join("usr/lib")).expect("mkdir");
        std::fs::write(l0.join("usr/lib/libc.so"), b"libc").expect("write");
        symlink("usr/lib", l0.join("lib")).expect("symlink");
        std::fs::create_dir_all(l0.join("etc")).expect("mkdir");
        std::fs::write(l0.join("etc/passwd"), b"old").expect("write");
        std::fs::create_dir_all(l1.join("etc")).expect("mkdir");
        std::fs::write(l1.join("etc/passwd"), b"new").expect("write");
        std::fs::write(l1.join("etc/hosts"), b"h").expect("write");
        symlink("/../../etc/passwd", l1.join("escape")).expect("symlink");
        let view = MergedView::new(&[l0.clone(), l1.clone()]);
        assert_eq!(view.read("/etc/passwd").as_deref(), Some(&b"new"[..]), "the upper layer wins");
        assert_eq!(view.read("/lib/libc.so").as_deref(), Some(&b"libc"[..]), "parent symlink followed");
        assert_eq!(view.read("/escape").as_deref(), Some(&b"new"[..]), "links cannot climb out of the root");
        assert!(view.is_dir("/lib"));
        assert!(!view.is_dir("/etc/passwd"));
        assert!(view.stat("/nope").is_none());
        let names: Vec<String> =
            view.read_dir(&["etc".to_string()]).keys().map(|n| n.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["hosts", "passwd"]);
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_entries() {
        if !is_root() {
            eprintln!("skipped: whiteouts are 0/0 character devices and mknod needs root");
            assert!(std::env::var("CI").is_err(), "CI runs as root: this test must not skip there");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (l0, l1) = (dir.path().join("l0"), dir.path().join("l1"));
        std::fs::create_dir_all(l0.join("a/old")).expect("mkdir");
        std::fs::write(l0.join("a/keep"), b"k").expect("write");
        std::fs::write(l0.join("gone"), b"g").expect("write");
        std::fs::create_dir_all(l0.join("opq/inner")).expect("mkdir");
        std::fs::create_dir_all(l1.join("a")).expect("mkdir");
        whiteout(&l1.join("a/old"));
        whiteout(&l1.join("gone"));
        std::fs::create_dir_all(l1.join("opq")).expect("mkdir");
        std::fs::write(l1.join("opq/fresh"), b"f").expect("write");
        xattr_set(&l1.join("opq"), crate::layer::overlay::OPAQUE_XATTR, b"y");
        let view = MergedView::new(&[l0, l1]);
        assert!(view.stat("/gone").is_none());
        assert!(view.stat("/a/old").is_none());
        assert!(view.stat("/a/keep").is_some());
        assert!(view.stat("/opq/inner").is_none(), "opaque dir hides the lower subtree");
        let names: Vec<String> =
            view.read_dir(&["opq".to_string()]).keys().map(|n| n.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["fresh"]);
        let names: Vec<String> =
            view.read_dir(&["a".to_string()]).keys().map(|n| n.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["keep"]);
        // The one-walk lookups agree with looking each prefix up from the root.
        for path in ["/gone", "/a/old", "/a/keep", "/opq/inner", "/opq/fresh", "/a/keep/deeper", "/none/x"] {
            let comps = components(path);
            let each: Vec<Option<MergedEntry>> = (1..=comps.len()).map(|n| view.lookup_exact(&comps[..n])).collect();
            assert_eq!(view.lookup_prefixes(&comps), each, "{path}");
            assert_eq!(view.resolve(path, false).map(|(_, e)| e), each.last().cloned().flatten(), "{path}");
        }
    }

    fn xattr_set(path: &Path, name: &str, value: &[u8]) {
        rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).expect("setxattr");
    }
}

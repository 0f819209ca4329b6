//! The chroot-snapshot mode's change detection: a [`FsSnapshot`] records every entry of a
//! plain rootfs directory (type, permission bits, owner, size, mtime and ctime in ns, inode,
//! symlink target) before a step runs; after it, [`FsSnapshot::changes_since`] compares a
//! second snapshot with it and describes what the step changed as the [`LayerTree`] the
//! overlay upper dir of the same step gives in the namespaces mode, so both modes write the
//! same layer (and image ID):
//!
//! - a new entry, or one whose type, mode, owner, size, mtime, ctime or inode changed, is in
//!   the layer with its parent directories (overlay's copy-up: a changed file's ancestors
//!   appear with their own metadata; a directory whose entries changed has a new mtime);
//! - a vanished entry is a whiteout (`.wh.<name>`) in its parent, unless an ancestor vanished
//!   too (the ancestor's whiteout hides it) or was recreated;
//! - a directory where the lower state had something else (a file, or a directory with
//!   another inode: `rm -rf d && mkdir d`) is opaque (`.wh..wh..opq`), and everything in it is
//!   new, as overlayfs marks a directory it creates over a whiteout.
//!
//! Owners: an unprivileged user cannot chown, so the disk cannot hold the layers' owners; the
//! caller passes what the layers say ([`OwnerTable`]) and who owns new entries ([`Owners`]).
//! A file opened for writing but left unchanged is no change here, and none in the namespaces
//! mode either (its commit leaves such copy-ups out, see `DiffOptions::lowers`).
//! Not detected (documented limits): extended attributes, and new device nodes,
//! FIFOs and sockets (the unprivileged modes cannot make the first; the others are rare in
//! images and left out).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::layer::apply::OwnerTable;
use crate::layer::diff::{LayerError, LayerTree, TreeEntry, TreeEntryKind};
use crate::layer::overlay::{whiteout_name, OPAQUE_MARKER};

/// What an entry is, as far as a layer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryType {
    Dir,
    File,
    Symlink(Vec<u8>),
    /// Devices, FIFOs, sockets: compared, never written (see the module comment).
    Other,
}

/// The stat fields of one entry that a change shows in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryState {
    kind: EntryType,
    /// Permission bits (setuid, setgid, sticky included).
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    nlink: u64,
    /// A directory's birth time where the filesystem has one: `rm -rf d && mkdir d` may give
    /// the new `d` the old inode number, never the old birth time.
    birth: Option<(i64, u32)>,
}

impl EntryState {
    fn of(path: &Path, meta: &Metadata, target: Option<Vec<u8>>) -> Self {
        let ft = meta.file_type();
        let kind = match target {
            Some(t) => EntryType::Symlink(t),
            None if ft.is_dir() => EntryType::Dir,
            None if ft.is_file() => EntryType::File,
            None => EntryType::Other,
        };
        EntryState {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_dir() { 0 } else { meta.len() },
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            nlink: meta.nlink(),
            birth: if ft.is_dir() { birth_time(path) } else { None },
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == EntryType::Dir
    }
}

/// Every entry under a rootfs directory, by path relative to it (`a/b`), except the
/// excluded subtrees.
#[derive(Debug, Clone)]
pub struct FsSnapshot {
    root: PathBuf,
    entries: BTreeMap<Vec<u8>, EntryState>,
}

/// Who owns what the comparison puts in a layer.
#[derive(Debug, Clone, Copy)]
pub struct Owners<'a> {
    /// The layers' owners and modes of the entries the rootfs was assembled with.
    pub table: &'a OwnerTable,
    /// The owner of entries the step created (the step's user when the disk cannot say it),
    /// `None`: as on disk.
    pub new_entries: Option<(u32, u32)>,
}

impl FsSnapshot {
    /// Walks `root` (not following symlinks); `excluded` are relative paths whose entries and
    /// subtrees are left out (the mount points of `/proc`, `/dev`... that the namespaces mode
    /// keeps out of its upper dir).
    pub fn take(root: &Path, excluded: &[String]) -> Result<Self, LayerError> {
        let excluded: Vec<Vec<u8>> = excluded.iter().map(|e| e.trim_matches('/').as_bytes().to_vec()).collect();
        let mut entries = BTreeMap::new();
        let mut pending = vec![Vec::<u8>::new()];
        while let Some(rel) = pending.pop() {
            let dir = root.join(OsStr::from_bytes(&rel));
            let read = std::fs::read_dir(&dir).map_err(|source| LayerError::Read { path: dir.clone(), source })?;
            for item in read {
                let item = item.map_err(|source| LayerError::Read { path: dir.clone(), source })?;
                let child = join(&rel, item.file_name().as_bytes());
                if excluded.contains(&child) {
                    continue;
                }
                let path = item.path();
                let meta = path.symlink_metadata().map_err(|source| LayerError::Read { path: path.clone(), source })?;
                let target = match meta.file_type().is_symlink() {
                    true => Some(
                        std::fs::read_link(&path)
                            .map_err(|source| LayerError::Read { path: path.clone(), source })?
                            .into_os_string()
                            .as_bytes()
                            .to_vec(),
                    ),
                    false => None,
                };
                if meta.is_dir() {
                    pending.push(child.clone());
                }
                entries.insert(child, EntryState::of(&path, &meta, target));
            }
        }
        Ok(FsSnapshot { root: root.to_path_buf(), entries })
    }

    /// What changed from `before` to `self` (the same rootfs after the step), as the layer
    /// the overlay upper dir of the step would give; see the module comment.
    pub fn changes_since(&self, before: &FsSnapshot, owners: Owners<'_>) -> LayerTree {
        let recreated = |rel: &[u8], now: &EntryState| {
            now.is_dir()
                && before
                    .entries
                    .get(rel)
                    .is_some_and(|old| !old.is_dir() || old.ino != now.ino || old.birth != now.birth)
        };
        let mut opaque = BTreeSet::new();
        let mut included = BTreeSet::new();
        for (rel, now) in &self.entries {
            let under_opaque = ancestors(rel).any(|a| opaque.contains(a));
            if recreated(rel, now) && !under_opaque {
                opaque.insert(rel.clone());
            }
            let changed = before.entries.get(rel) != Some(now);
            if (changed || under_opaque) && now.kind != EntryType::Other {
                included.insert(rel.clone());
            }
        }
        // Whiteouts: a vanished entry whose parent is still the same directory.
        let mut whiteouts: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for rel in before.entries.keys().filter(|rel| !self.entries.contains_key(*rel)) {
            let (parent, name) = split_parent(rel);
            let parent_kept = parent.is_empty()
                || self.entries.get(parent).is_some_and(|p| p.is_dir() && !recreated(parent, p))
                    && !ancestors(parent).chain([parent]).any(|a| opaque.contains(a));
            if parent_kept {
                whiteouts.entry(parent.to_vec()).or_default().push(name.to_vec());
            }
        }
        let mut with_parents: BTreeSet<Vec<u8>> = BTreeSet::new();
        for rel in included.iter().chain(whiteouts.keys()).chain(opaque.iter()) {
            with_parents.extend(ancestors(rel).map(<[u8]>::to_vec));
            with_parents.insert(rel.clone());
        }
        with_parents.remove(&Vec::new());
        let mut tree = LayerTree::default();
        for rel in &with_parents {
            if let Some(entry) = self.tree_entry(rel, before, owners) {
                insert(&mut tree.root, rel, entry);
            }
        }
        for (parent, names) in &whiteouts {
            let mtime = self.entries.get(parent.as_slice()).map_or(0, |p| p.mtime.0);
            for name in names {
                let marker = join(parent, whiteout_name(OsStr::from_bytes(name)).as_bytes());
                // overlayfs makes a whiteout as a 0/0 device, mode 0, with the mounter's ids.
                let entry = TreeEntry { kind: TreeEntryKind::Whiteout, mode: 0, uid: 0, gid: 0, mtime };
                insert(&mut tree.root, &marker, entry);
            }
        }
        for dir in &opaque {
            if let Some(TreeEntry { mode, uid, gid, mtime, .. }) = self.tree_entry(dir, before, owners) {
                let entry = TreeEntry { kind: TreeEntryKind::Whiteout, mode, uid, gid, mtime };
                insert(&mut tree.root, &join(dir, OPAQUE_MARKER.as_bytes()), entry);
            }
        }
        tree
    }

    /// The layer entry for `rel` as it is now (a directory without children yet).
    fn tree_entry(&self, rel: &[u8], before: &FsSnapshot, owners: Owners<'_>) -> Option<TreeEntry> {
        let now = self.entries.get(rel)?;
        let kept =
            before.entries.get(rel).filter(|old| old.ino == now.ino && old.kind == now.kind && old.birth == now.birth);
        let recorded = kept.and_then(|_| owners.table.get(Path::new(OsStr::from_bytes(rel))));
        let (uid, gid) = match (kept, recorded) {
            // A chown the step really made (root) shows on disk; otherwise the layers say.
            (Some(old), Some(r)) if (old.uid, old.gid) == (now.uid, now.gid) => (r.uid, r.gid),
            (Some(_), _) => (now.uid, now.gid),
            (None, _) => owners.new_entries.unwrap_or((now.uid, now.gid)),
        };
        let mode = match (kept, recorded) {
            (Some(old), Some(r)) if old.mode == now.mode => r.mode,
            _ => now.mode,
        } & 0o7777;
        let kind = match &now.kind {
            EntryType::Dir => TreeEntryKind::Dir(BTreeMap::new()),
            EntryType::File => TreeEntryKind::File {
                source: self.root.join(OsStr::from_bytes(rel)),
                size: now.size,
                link: (now.nlink > 1).then_some(now.ino),
            },
            EntryType::Symlink(target) => TreeEntryKind::Symlink { target: target.clone() },
            EntryType::Other => return None,
        };
        Some(TreeEntry { kind, mode, uid, gid, mtime: now.mtime.0 })
    }
}

/// `statx`'s birth time of `path` (not following a symlink), if the filesystem records one.
fn birth_time(path: &Path) -> Option<(i64, u32)> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME).ok()?;
    (st.stx_mask & StatxFlags::BTIME.bits() != 0).then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// (`a/b`, `c`) for `a/b/c`; (``, `c`) for `c`.
fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// The proper ancestors of `rel` that are entries (`a`, `a/b` for `a/b/c`).
fn ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter().enumerate().filter(|(_, b)| **b == b'/').map(move |(i, _)| &rel[..i])
}

/// Puts `entry` at `rel` in the tree, under directories already inserted (parents first);
/// a directory already there keeps its children.
fn insert(root: &mut BTreeMap<Vec<u8>, TreeEntry>, rel: &[u8], entry: TreeEntry) {
    let mut children = root;
    let comps: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    let Some((last, parents)) = comps.split_last() else { return };
    for comp in parents {
        match children.get_mut(*comp) {
            Some(TreeEntry { kind: TreeEntryKind::Dir(next), .. }) => children = next,
            _ => return,
        }
    }
    match children.get_mut(*last) {
        Some(TreeEntry { kind: TreeEntryKind::Dir(_), .. }) if matches!(entry.kind, TreeEntryKind::Dir(_)) => {}
        _ => {
            children.insert(last.to_vec(), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::apply::RecordedOwner;
    use std::os::unix::fs::PermissionsExt;

    fn names(tree: &BTreeMap<Vec<u8>, TreeEntry>, prefix: &str, out: &mut Vec<String>) {
        for (name, entry) in tree {
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            match &entry.kind {
                TreeEntryKind::Dir(children) => {
                    out.push(format!("{path}/"));
                    names(children, &format!("{path}/"), out);
                }
                TreeEntryKind::Whiteout => out.push(format!("{path} (whiteout)")),
                _ => out.push(path),
            }
        }
    }

    fn listing(tree: &LayerTree) -> Vec<String> {
        let mut out = Vec::new();
        names(&tree.root, "", &mut out);
        out
    }

    fn base(root: &Path) {
        for d in ["etc", "keep/deep", "gone/sub", "redo", "proc/1"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for f in ["etc/passwd", "etc/motd", "keep/deep/file", "gone/sub/x", "redo/old", "etc/hosts", "proc/1/stat"] {
            std::fs::write(root.join(f), "base").expect("write");
        }
    }

    const EXCLUDED: [&str; 2] = ["proc", "etc/hosts"];

    fn excluded() -> Vec<String> {
        EXCLUDED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changes_are_found_as_an_overlay_upper_dir_holds_them() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        base(root);
        let before = FsSnapshot::take(root, &excluded()).expect("before");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("etc/motd"), "changed").expect("modify");
        std::fs::remove_file(root.join("etc/passwd")).expect("delete");
        std::fs::remove_dir_all(root.join("gone")).expect("delete dir");
        std::fs::remove_dir_all(root.join("redo")).expect("rm redo");
        std::fs::create_dir(root.join("redo")).expect("recreate");
        std::fs::write(root.join("redo/new"), "n").expect("new in recreated");
        std::fs::create_dir_all(root.join("new/dir")).expect("mkdir new");
        std::os::unix::fs::symlink("../etc/motd", root.join("new/link")).expect("symlink");
        std::fs::write(root.join("etc/hosts"), "ignored").expect("excluded");
        std::fs::write(root.join("proc/1/stat"), "ignored").expect("excluded");
        let after = FsSnapshot::take(root, &excluded()).expect("after");
        let table = OwnerTable::new();
        let tree = after.changes_since(&before, Owners { table: &table, new_entries: None });
        assert_eq!(
            listing(&tree),
            [
                ".wh.gone (whiteout)",
                "etc/",
                "etc/.wh.passwd (whiteout)",
                "etc/motd",
                "new/",
                "new/dir/",
                "new/link",
                "redo/",
                "redo/.wh..wh..opq (whiteout)",
                "redo/new",
            ]
        );
    }

    #[test]
    fn unchanged_ancestors_and_owners_come_from_the_layers() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        base(root);
        std::fs::set_permissions(root.join("keep"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut table = OwnerTable::new();
        table.insert(PathBuf::from("keep"), RecordedOwner { uid: 7, gid: 8, mode: 0o555 });
        table.insert(PathBuf::from("keep/deep/file"), RecordedOwner { uid: 9, gid: 9, mode: 0o644 });
        let before = FsSnapshot::take(root, &[]).expect("before");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("keep/deep/file"), "rewritten").expect("modify");
        std::fs::write(root.join("keep/deep/added"), "new").expect("add");
        let after = FsSnapshot::take(root, &[]).expect("after");
        let tree = after.changes_since(&before, Owners { table: &table, new_entries: Some((1000, 1000)) });
        let keep = &tree.root[b"keep".as_slice()];
        assert_eq!((keep.uid, keep.gid, keep.mode), (7, 8, 0o555), "the layer's owner and mode, not the disk's");
        let TreeEntryKind::Dir(keep_children) = &keep.kind else { panic!("keep is a dir") };
        let TreeEntryKind::Dir(deep) = &keep_children[b"deep".as_slice()].kind else { panic!("deep is a dir") };
        assert_eq!((deep[b"file".as_slice()].uid, deep[b"file".as_slice()].gid), (9, 9));
        assert_eq!((deep[b"added".as_slice()].uid, deep[b"added".as_slice()].gid), (1000, 1000), "the step's user");
        assert_eq!(listing(&tree), ["keep/", "keep/deep/", "keep/deep/added", "keep/deep/file"]);
    }

    #[test]
    fn nothing_changed_gives_an_empty_tree() {
        let t = tempfile::tempdir().expect("tempdir");
        base(t.path());
        let before = FsSnapshot::take(t.path(), &excluded()).expect("before");
        let _ = std::fs::read(t.path().join("etc/motd")).expect("read");
        let after = FsSnapshot::take(t.path(), &excluded()).expect("after");
        let table = OwnerTable::new();
        assert!(after.changes_since(&before, Owners { table: &table, new_entries: None }).root.is_empty());
    }
}
